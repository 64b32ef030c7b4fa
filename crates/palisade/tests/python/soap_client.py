"""Calls a SOAP operation through Palisade with zeep (a WSDL-driven SOAP client we did not
write), over the SOAP 1.1 and the SOAP 1.2 binding of the same WSDL, without a key and then
with a key and an injected value. Prints one JSON line per call: what zeep made of the answer.

usage: soap_client.py WSDL API_KEY
"""

import json
import sys

import requests
import zeep
import zeep.exceptions
from zeep.transports import Transport

wsdl, api_key = sys.argv[1], sys.argv[2]
NS = {"p": "https://palisade.dev/soap-fault"}

for port in ["Orders11", "Orders12"]:
    for case, headers, order_id in [("no-key", {}, "42"), ("injection", {"x-api-key": api_key}, "1' UNION SELECT password FROM users--")]:
        session = requests.Session()
        session.headers.update(headers)
        client = zeep.Client(wsdl, transport=Transport(session=session))
        service = client.bind("Orders", port)
        out = {"port": port, "case": case}
        try:
            service.GetOrder(id=order_id)
            out["fault"] = None
        except zeep.exceptions.Fault as f:
            detail = f.detail
            out["fault"] = {
                "message": f.message,
                "code": str(f.code),
                "palisade_code": detail.findtext(".//p:code", namespaces=NS) if detail is not None else None,
                "status": detail.findtext(".//p:status", namespaces=NS) if detail is not None else None,
                "request_id": detail.findtext(".//p:request-id", namespaces=NS) if detail is not None else None,
            }
        except Exception as e:  # noqa: BLE001 - what zeep did is the output
            out["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(out), flush=True)
