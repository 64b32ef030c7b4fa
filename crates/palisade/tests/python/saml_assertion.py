"""A SAML 2.0 assertion as an identity provider issues it, signed with python3-saml's own
signer (OneLogin_Saml2_Utils.add_sign: enveloped XML Signature, exclusive C14N, over xmlsec),
inside the wsse:Security header of a SOAP 1.1 envelope (SAML Token Profile 1.1). Prints one
JSON line with the envelope.

    python saml_assertion.py KEY.pem CERT.pem ISSUER AUDIENCE SUBJECT NOT_BEFORE_S NOT_AFTER_S
      (NOT_BEFORE_S / NOT_AFTER_S: seconds from now, may be negative)
    python saml_assertion.py keygen DIR NAME
      (the identity provider's RSA key and self-signed certificate: DIR/NAME.key, DIR/NAME.pem)
"""
import json
import sys
import uuid
from datetime import datetime, timedelta, timezone

from onelogin.saml2.utils import OneLogin_Saml2_Utils

if sys.argv[1] == "keygen":
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    folder, name = sys.argv[2], sys.argv[3]
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(k.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .sign(k, hashes.SHA256()))
    with open(f"{folder}/{name}.key", "wb") as f:
        f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))
    with open(f"{folder}/{name}.pem", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    print(json.dumps({"key": f"{folder}/{name}.key", "cert": f"{folder}/{name}.pem"}), flush=True)
    sys.exit(0)

key_file, cert_file, issuer, audience, subject = sys.argv[1:6]
not_before, not_after = int(sys.argv[6]), int(sys.argv[7])
key = open(key_file).read()
cert = open(cert_file).read()
now = datetime.now(timezone.utc).replace(microsecond=0)
fmt = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
aid = "_" + uuid.uuid4().hex

assertion = f"""<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="{aid}" Version="2.0" IssueInstant="{fmt(now)}"><saml2:Issuer>{issuer}</saml2:Issuer><saml2:Subject><saml2:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">{subject}</saml2:NameID><saml2:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"/></saml2:Subject><saml2:Conditions NotBefore="{fmt(now + timedelta(seconds=not_before))}" NotOnOrAfter="{fmt(now + timedelta(seconds=not_after))}"><saml2:AudienceRestriction><saml2:Audience>{audience}</saml2:Audience></saml2:AudienceRestriction></saml2:Conditions><saml2:AuthnStatement AuthnInstant="{fmt(now)}"><saml2:AuthnContext><saml2:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml2:AuthnContextClassRef></saml2:AuthnContext></saml2:AuthnStatement><saml2:AttributeStatement><saml2:Attribute Name="groups"><saml2:AttributeValue>clerks</saml2:AttributeValue><saml2:AttributeValue>emea</saml2:AttributeValue></saml2:Attribute></saml2:AttributeStatement></saml2:Assertion>"""

signed = OneLogin_Saml2_Utils.add_sign(
    assertion, key, cert,
    sign_algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    digest_algorithm="http://www.w3.org/2001/04/xmlenc#sha256",
)
if isinstance(signed, bytes):
    signed = signed.decode()
signed = signed.replace('<?xml version="1.0"?>', "").strip()
stamp = f'<wsu:Timestamp><wsu:Created>{fmt(now)}</wsu:Created><wsu:Expires>{fmt(now + timedelta(minutes=5))}</wsu:Expires></wsu:Timestamp>'
envelope = (
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" '
    'xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd">'
    f"<soap:Header><wsse:Security>{stamp}{signed}</wsse:Security></soap:Header>"
    '<soap:Body><GetOrder xmlns="urn:orders"><id>1</id></GetOrder></soap:Body></soap:Envelope>'
)
print(json.dumps({"envelope": envelope, "assertion": signed}), flush=True)
