"""gRPC calls through the gateway with grpcio's client (HTTP/2 without TLS).

    grpc_client.py HOST:PORT CALLS_JSON

CALLS_JSON: a list of {"name", "method" (/demo.Orders/Get), "request" (text), "metadata"
({k: v}), "stream": bool}. One JSON line per call: {"name", "code" (a grpc.StatusCode name),
"details", "reply" (text, or a list for a stream), "trailers" ({k: v})}.
"""
import json
import sys

import grpc


def main():
    target, calls = sys.argv[1], json.loads(sys.argv[2])
    with grpc.insecure_channel(target) as ch:
        for c in calls:
            md = tuple((c.get("metadata") or {}).items())
            out = {"name": c["name"], "code": "OK", "details": None, "reply": None, "trailers": {}}
            try:
                if c.get("stream"):
                    call = ch.unary_stream(c["method"])(c.get("request", "").encode(), metadata=md, timeout=5)
                    out["reply"] = [m.decode() for m in call]
                    out["trailers"] = {k: v for k, v in (call.trailing_metadata() or ())}
                else:
                    reply, call = ch.unary_unary(c["method"]).with_call(
                        c.get("request", "").encode(), metadata=md, timeout=5)
                    out["reply"] = reply.decode()
                    out["trailers"] = {k: v for k, v in (call.trailing_metadata() or ())}
            except grpc.RpcError as e:
                out["code"] = e.code().name
                out["details"] = e.details()
                out["trailers"] = {k: v for k, v in (e.trailing_metadata() or ())}
            print(json.dumps(out), flush=True)


main()
