"""Calls GetOrder through Palisade with zeep and its WS-Security X.509 signature
(zeep.wsse.signature.BinarySignature over xmlsec: RSA-SHA256 or ECDSA-SHA256, exclusive C14N,
the Body and a wsu:Timestamp signed), as a zeep service call, and prints one JSON line:
whether the call reached the service (zeep then fails on the test upstream's answer, which is
not SOAP) or the Fault Palisade answered.

usage: wssec_x509_client.py WSDL KEY.pem CERT.pem
"""
import datetime
import json
import sys

import xmlsec
import zeep
import zeep.exceptions
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from zeep.wsse import utils
from zeep.wsse.signature import BinarySignature

wsdl, key, cert = sys.argv[1:4]
NS = {"p": "https://palisade.dev/soap-fault"}


class Timestamp:
    """A wsu:Timestamp in the Security header, for BinarySignature to sign."""

    def apply(self, envelope, headers):
        now = datetime.datetime.now(datetime.timezone.utc)
        security = utils.get_security_header(envelope)
        security.append(utils.WSU.Timestamp(
            utils.WSU.Created(now.strftime("%Y-%m-%dT%H:%M:%SZ")),
            utils.WSU.Expires((now + datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")),
        ))
        return envelope, headers

    def verify(self, envelope):
        return envelope


with open(key, "rb") as f:
    is_ec = isinstance(load_pem_private_key(f.read(), password=None), ec.EllipticCurvePrivateKey)
signature = BinarySignature(
    key, cert,
    signature_method=xmlsec.Transform.ECDSA_SHA256 if is_ec else xmlsec.Transform.RSA_SHA256,
    digest_method=xmlsec.Transform.SHA256,
)
client = zeep.Client(wsdl, wsse=[Timestamp(), signature])
out = {"case": "x509"}
try:
    client.bind("Orders", "Orders11").GetOrder(id="42")
    out["fault"] = None
except zeep.exceptions.Fault as f:
    out["fault"] = f.detail.findtext(".//p:code", namespaces=NS) if f.detail is not None else str(f.code)
except Exception as e:  # noqa: BLE001 - not a Fault: the call went through
    out["fault"] = None
    out["after"] = type(e).__name__
print(json.dumps(out), flush=True)
