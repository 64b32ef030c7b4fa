"""Signs requests to a Palisade route with the `http-message-signatures` package (an RFC 9421
implementation independent of Palisade), sends them with `requests`, and prints one JSON line
per case: what was sent and what came back. The Rust test decides what each case must get.

usage: sign_client.py PLAN.json   (base URL and keys: see crates/palisade/tests/e2e/signatures.rs)
"""

import base64
import copy
import datetime
import hashlib
import json
import sys

import requests
from cryptography.hazmat.primitives import serialization
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

plan = json.load(open(sys.argv[1]))
BASE = plan["base"]
KEYS = plan["keys"]  # keyid -> {alg, pem | secret_b64}
ALGS = {
    "ed25519": algorithms.ED25519,
    "ecdsa-p256-sha256": algorithms.ECDSA_P256_SHA256,
    "rsa-pss-sha512": algorithms.RSA_PSS_SHA512,
    "rsa-v1_5-sha256": algorithms.RSA_V1_5_SHA256,
    "hmac-sha256": algorithms.HMAC_SHA256,
}


class Keys(HTTPSignatureKeyResolver):
    def resolve_private_key(self, key_id):
        k = KEYS[key_id]
        if "secret_b64" in k:
            return base64.b64decode(k["secret_b64"])
        return serialization.load_pem_private_key(k["pem"].encode(), password=None)

    def resolve_public_key(self, key_id):
        raise NotImplementedError


session = requests.Session()


def signed(method, path, keyid, components, body=None, alg=None, created=None, nonce=None, digest=True, resolver=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    req = requests.Request(method, BASE + path, data=body, headers=headers).prepare()
    signer = HTTPMessageSigner(signature_algorithm=ALGS[alg or KEYS[keyid]["alg"]], key_resolver=resolver or Keys())
    signer.sign(
        req,
        key_id=keyid,
        covered_component_ids=components,
        created=created or datetime.datetime.now(datetime.timezone.utc),
        nonce=nonce,
        label="sig1",
        # Content-Digest (sha-256) added and covered when there is a body
        body=body if digest else None,
    )
    return req


def send(case, req):
    r = session.send(req)
    try:
        code = r.json().get("code")
    except ValueError:
        code = None
    print(json.dumps({
        "case": case,
        "status": r.status_code,
        "code": code,
        "accept_signature": r.headers.get("accept-signature"),
        "want_content_digest": r.headers.get("want-content-digest"),
        "sent": {k: v for k, v in req.headers.items() if k.lower() in ("signature-input", "content-digest")},
    }), flush=True)


FULL = ("@method", "@authority", "@path", "@query", "content-type")
body = json.dumps({"item": "book", "qty": 2}).encode()

# good traffic, one per algorithm
send("ed25519-post", signed("POST", "/orders?source=web", "client-ed25519", FULL, body))
p256 = signed("PUT", "/orders/7", "client-p256", ("@method", "@target-uri", "content-type"), body)
send("p256-put", p256)
send("rsa-pss-delete", signed("DELETE", "/orders/7", "client-rsa", ("@method", "@authority", "@path")))
send("hmac-get", signed("GET", "/orders/7?fields=id", "client-hmac", ("@method", "@target-uri")))
send("nonce-get", signed("GET", "/orders", "client-ed25519", ("@method", "@authority", "@path"), nonce="n-0001"))

# replays: the same signed change twice, the same nonce twice
send("replay-put", p256)
send("replay-nonce", signed("GET", "/orders", "client-ed25519", ("@method", "@authority", "@path"), nonce="n-0001"))

# tampering after signing
def tampered(case, change):
    # a nonce of its own: ed25519 is deterministic, and the same signed POST within the
    # same second would be refused as a replay of the first
    req = signed("POST", "/orders?source=web", "client-ed25519", FULL, body, nonce=case)
    change(req)
    send(case, req)

def set_method(r):
    r.method = "PATCH"

def set_path(r):
    r.url = BASE + "/orders/other?source=web"

def set_query(r):
    r.url = BASE + "/orders?source=partner"

def set_header(r):
    r.headers["Content-Type"] = "text/plain"

def set_body(r):
    r.body = json.dumps({"item": "book", "qty": 200}).encode()
    r.headers["Content-Length"] = str(len(r.body))

def set_body_and_digest(r):
    set_body(r)
    r.headers["Content-Digest"] = "sha-256=:" + base64.b64encode(hashlib.sha256(r.body).digest()).decode() + ":"

def set_signature(r):
    si = r.headers["Signature"]
    r.headers["Signature"] = si[:12] + ("A" if si[12] != "A" else "B") + si[13:]

def add_authorization(r):
    r.headers["Authorization"] = "Bearer injected"

tampered("tampered-method", set_method)
tampered("tampered-path", set_path)
tampered("tampered-query", set_query)
tampered("tampered-header", set_header)
tampered("tampered-body", set_body)
tampered("tampered-body-and-digest", set_body_and_digest)
tampered("tampered-signature", set_signature)
tampered("added-authorization", add_authorization)

# signatures that verify but do not meet the route's rules
send("uncovered-content-type", signed("POST", "/orders", "client-ed25519", ("@method", "@authority", "@path"), body))
old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
send("old", signed("GET", "/orders", "client-ed25519", ("@method", "@authority", "@path"), created=old))
future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
send("future", signed("GET", "/orders", "client-ed25519", ("@method", "@authority", "@path"), created=future))
send("unknown-key", signed("GET", "/orders", "client-unknown", ("@method", "@authority", "@path")))
# key confusion: an HMAC over the right base, keyed with the public key the attacker knows
class PublicAsSecret(HTTPSignatureKeyResolver):
    def resolve_private_key(self, key_id):
        return plan["ed25519_public_pem"].encode()

    def resolve_public_key(self, key_id):
        raise NotImplementedError

send("key-confusion", signed("GET", "/orders", "client-ed25519", ("@method", "@authority", "@path"), alg="hmac-sha256", resolver=PublicAsSecret()))
no_method = signed("GET", "/orders", "client-ed25519", ("@authority", "@path"))
send("uncovered-method", no_method)

# no signature at all, and a body without a digest
send("unsigned", requests.Request("GET", BASE + "/orders").prepare())
send("no-digest", signed("POST", "/orders", "client-ed25519", FULL, body, digest=False))
