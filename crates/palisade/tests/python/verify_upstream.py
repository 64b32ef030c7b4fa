"""Verifies, with the `http-message-signatures` package (not Palisade's code), the signature
the gateway put on requests it forwarded: reads JSON lines of {method, url, headers, body_b64}
and a public key PEM, prints one JSON line per request: {"ok": bool, "error": str|None,
"covered": [...]}.

usage: verify_upstream.py REQUESTS.jsonl PUBLIC.pem TAG
"""

import base64
import json
import sys

import requests
from cryptography.hazmat.primitives import serialization
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms

public = serialization.load_pem_public_key(open(sys.argv[2], "rb").read())
tag = sys.argv[3]


class Keys(HTTPSignatureKeyResolver):
    def resolve_public_key(self, key_id):
        if key_id != "palisade-gw":
            raise KeyError(key_id)
        return public

    def resolve_private_key(self, key_id):
        raise NotImplementedError


verifier = HTTPMessageVerifier(signature_algorithm=algorithms.ED25519, key_resolver=Keys())
for line in open(sys.argv[1]):
    r = json.loads(line)
    body = base64.b64decode(r["body_b64"])
    req = requests.Request(r["method"], r["url"], data=body or None, headers=r["headers"]).prepare()
    # what the upstream received, as received
    req.headers.clear()
    req.headers.update(r["headers"])
    try:
        results = verifier.verify(req, expect_tag=tag, require_components=("@method", "@path"), body=body)
        covered = [str(c) for c in results[0].covered_components]
        print(json.dumps({"ok": True, "error": None, "covered": covered}), flush=True)
    except Exception as e:  # noqa: BLE001 - the verdict is the output
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}", "covered": []}), flush=True)
