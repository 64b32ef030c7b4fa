"""Calls a SOAP operation through Palisade with zeep and its WS-Security UsernameToken
(zeep.wsse: PasswordDigest with Nonce and Created, a wsu:Timestamp; or PasswordText), and
prints one JSON line per case: whether the call reached the service (zeep then fails on the
test upstream's answer, which is not SOAP) or what Fault Palisade answered.

usage: wssec_client.py WSDL USER PASSWORD
"""

import datetime
import json
import sys

import zeep
import zeep.exceptions
from zeep.wsse import utils
from zeep.wsse.username import UsernameToken

wsdl, user, password = sys.argv[1:4]
NS = {"p": "https://palisade.dev/soap-fault"}


def timestamp(created=None, lifetime=300):
    created = created or datetime.datetime.now(datetime.timezone.utc)
    return utils.WSU.Timestamp(
        utils.WSU.Created(created.strftime("%Y-%m-%dT%H:%M:%SZ")),
        utils.WSU.Expires((created + datetime.timedelta(seconds=lifetime)).strftime("%Y-%m-%dT%H:%M:%SZ")),
    )


def call(case, wsse, port="Orders11"):
    client = zeep.Client(wsdl, wsse=wsse)
    out = {"case": case}
    try:
        client.bind("Orders", port).GetOrder(id="42")
        out["fault"] = None
    except zeep.exceptions.Fault as f:
        out["fault"] = f.detail.findtext(".//p:code", namespaces=NS) if f.detail is not None else str(f.code)
    except Exception as e:  # noqa: BLE001 - not a Fault: the call went through
        out["fault"] = None
        out["after"] = type(e).__name__
    print(json.dumps(out), flush=True)


call("digest", UsernameToken(user, password, use_digest=True, timestamp_token=timestamp()))
call("digest-soap12", UsernameToken(user, password, use_digest=True, timestamp_token=timestamp()), port="Orders12")
call("wrong-password", UsernameToken(user, password + "x", use_digest=True, timestamp_token=timestamp()))
call("unknown-user", UsernameToken("mallory", password, use_digest=True, timestamp_token=timestamp()))
fixed = datetime.datetime.now(datetime.timezone.utc)
created = fixed.strftime("%Y-%m-%dT%H:%M:%SZ")
call("first", UsernameToken(user, password, use_digest=True, nonce="fixed-nonce-0001", created=fixed, timestamp_token=timestamp()))
call("replay", UsernameToken(user, password, use_digest=True, nonce="fixed-nonce-0001", created=fixed, timestamp_token=timestamp()))
old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
call("stale", UsernameToken(user, password, use_digest=True, created=old, timestamp_token=timestamp(old)))
call("no-timestamp", UsernameToken(user, password, use_digest=True))
call("text-over-http", UsernameToken(user, password, timestamp_token=timestamp()))
call("no-security", None)
