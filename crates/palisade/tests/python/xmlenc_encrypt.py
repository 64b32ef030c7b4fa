"""Encrypts the payload of a SOAP Body for the gateway with xmlsec (PyPI), the way a
WS-Security client encrypts an element: AES-256-GCM for the element, its key wrapped with
RSA-OAEP for the gateway's certificate (an EncryptedKey in the EncryptedData's KeyInfo).
Prints one JSON line with the envelope.

    python xmlenc_encrypt.py GATEWAY_CERT.pem ENVELOPE_XML
"""
import json
import sys

import xmlsec
from lxml import etree

cert, envelope = sys.argv[1], sys.argv[2]
env = etree.fromstring(envelope)
body = next(c for c in env if etree.QName(c).localname == "Body")
payload = body[0]

manager = xmlsec.KeysManager()
manager.add_key(xmlsec.Key.from_file(cert, xmlsec.KeyFormat.CERT_PEM, None))
data = xmlsec.template.encrypted_data_create(
    env, xmlsec.Transform.AES256_GCM, type=xmlsec.EncryptionType.ELEMENT, ns="xenc"
)
xmlsec.template.encrypted_data_ensure_cipher_value(data)
key_info = xmlsec.template.encrypted_data_ensure_key_info(data, ns="dsig")
wrapped = xmlsec.template.add_encrypted_key(key_info, xmlsec.Transform.RSA_OAEP)
xmlsec.template.encrypted_data_ensure_cipher_value(wrapped)
ctx = xmlsec.EncryptionContext(manager)
ctx.key = xmlsec.Key.generate(xmlsec.KeyData.AES, 256, xmlsec.KeyDataType.SESSION)
ctx.encrypt_xml(data, payload)
print(json.dumps({"envelope": etree.tostring(env).decode()}), flush=True)
