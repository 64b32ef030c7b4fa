"""Signs SOAP envelopes the way a WS-Security client does, with zeep's own BinarySignature
(xmlsec from PyPI underneath): an X.509 BinarySecurityToken, an XML Signature with exclusive
C14N and RSA-SHA256 (or ECDSA-SHA256 for an EC key) over the Body and the wsu:Timestamp. Prints one JSON line with the
signed envelope.

    python wssec_sign.py KEY.pem CERT.pem BODY_XML [soap11|soap12] [LIFETIME_SECONDS]
"""
import json
import sys
from datetime import datetime, timedelta, timezone

import xmlsec
from lxml import etree
from zeep import ns
from zeep.wsse.signature import BinarySignature
from zeep.wsse.utils import WSU, get_security_header

key, cert, body = sys.argv[1], sys.argv[2], sys.argv[3]
version = sys.argv[4] if len(sys.argv) > 4 else "soap11"
lifetime = int(sys.argv[5]) if len(sys.argv) > 5 else 300
env_ns = ns.SOAP_ENV_11 if version == "soap11" else ns.SOAP_ENV_12

envelope = etree.fromstring(
    f'<soap:Envelope xmlns:soap="{env_ns}"><soap:Header/><soap:Body>{body}</soap:Body></soap:Envelope>'
)
security = get_security_header(envelope)
now = datetime.now(timezone.utc).replace(microsecond=0)
stamp = WSU.Timestamp()
stamp.append(WSU.Created(now.strftime("%Y-%m-%dT%H:%M:%SZ")))
stamp.append(WSU.Expires((now + timedelta(seconds=lifetime)).strftime("%Y-%m-%dT%H:%M:%SZ")))
security.append(stamp)

# RSA-SHA256 for an RSA key, ECDSA-SHA256 for an EC one
with open(key, "rb") as f:
    pem = f.read()
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

is_ec = isinstance(load_pem_private_key(pem, password=None), ec.EllipticCurvePrivateKey)
signer = BinarySignature(
    key, cert,
    signature_method=xmlsec.Transform.ECDSA_SHA256 if is_ec else xmlsec.Transform.RSA_SHA256,
    digest_method=xmlsec.Transform.SHA256,
)
envelope, _ = signer.apply(envelope, {})
print(json.dumps({"envelope": etree.tostring(envelope).decode()}), flush=True)
