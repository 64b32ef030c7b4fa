"""Sends requests through a Palisade route with `response_signature`, and verifies each
answer's signature with the `http-message-signatures` package (not Palisade's code): once
with the body received, once with a changed body. Prints one JSON line per request.

usage: verify_response.py BASE_URL PUBLIC.pem
"""

import json
import sys

import requests
from cryptography.hazmat.primitives import serialization
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms

base = sys.argv[1]
public = serialization.load_pem_public_key(open(sys.argv[2], "rb").read())


class Keys(HTTPSignatureKeyResolver):
    def resolve_public_key(self, key_id):
        if key_id != "palisade-gw":
            raise KeyError(key_id)
        return public

    def resolve_private_key(self, key_id):
        raise NotImplementedError


verifier = HTTPMessageVerifier(signature_algorithm=algorithms.ED25519, key_resolver=Keys())


def check(resp, body):
    try:
        r = verifier.verify(resp, require_components=("@status", "x-request-id"), body=body)
        return True, [str(c) for c in r[0].covered_components], None
    except Exception as e:  # noqa: BLE001 - the verdict is the output
        return False, [], f"{type(e).__name__}: {e}"


for method, path, data in [("GET", "/api/orders/7", None), ("POST", "/api/orders", b'{"item": "book"}')]:
    resp = requests.request(method, base + path, data=data, headers={"content-type": "application/json"})
    ok, covered, err = check(resp, resp.content)
    changed_ok, _, changed_err = check(resp, resp.content + b" ")
    print(json.dumps({"method": method, "status": resp.status_code, "ok": ok, "covered": covered, "error": err,
                      "changed_body_ok": changed_ok, "request_id": resp.headers.get("x-request-id")}), flush=True)
