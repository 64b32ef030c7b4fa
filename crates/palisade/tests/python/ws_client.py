"""WebSocket sessions through the gateway, made with the `websockets` library's client.

    ws_client.py URL CASES_JSON [CA_FILE]

With CA_FILE, a wss:// URL is verified against that CA (ALPN offers http/1.1 as browsers do).

CASES_JSON is a list of {"name", "headers": {...}, "subprotocols": [...], "send": [messages],
"binary": bool, "expect": N replies, "wait": seconds}. For each case, one JSON line:
{"name", "status" (the handshake's HTTP status, 101 when it switched), "replies": [...],
"close_code", "close_reason", "subprotocol", "extensions"}. Messages starting with "bin:"
are sent as that many binary bytes; "text:N" sends N bytes of text.
"""
import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def run(url, case, ssl_ctx):
    out = {"name": case["name"], "replies": [], "close_code": None, "close_reason": None}
    try:
        async with connect(url, ssl=ssl_ctx, additional_headers=case.get("headers", {}),
                           subprotocols=case.get("subprotocols") or None,
                           max_size=64 * 1024 * 1024, compression="deflate",
                           open_timeout=5, close_timeout=2,
                           ping_interval=None) as ws:
            out["status"] = 101
            out["subprotocol"] = ws.subprotocol
            out["extensions"] = [e.name for e in ws.protocol.extensions]
            try:
                for m in case.get("send", []):
                    if m.startswith("bin:"):
                        await ws.send(b"\x01" * int(m[4:]))
                    elif m.startswith("text:"):
                        await ws.send("y" * int(m[5:]))
                    else:
                        await ws.send(m)
                for _ in range(case.get("expect", 0)):
                    r = await asyncio.wait_for(ws.recv(), timeout=case.get("wait", 5))
                    out["replies"].append(r if isinstance(r, str) and len(r) < 200
                                          else f"<{len(r)} bytes>")
                if case.get("linger"):
                    await asyncio.wait_for(ws.recv(), timeout=case["linger"])
            except ConnectionClosed as e:
                pass
            except asyncio.TimeoutError:
                out["timeout"] = True
            await ws.wait_closed() if case.get("await_close") else None
            rcvd = ws.protocol.close_rcvd
            out["close_code"] = rcvd.code if rcvd else None
            out["close_reason"] = rcvd.reason if rcvd else None
    except InvalidStatus as e:
        out["status"] = e.response.status_code
        out["body"] = e.response.body.decode("utf-8", "replace") if e.response.body else ""
    print(json.dumps(out), flush=True)


async def main():
    url = sys.argv[1]
    ssl_ctx = None
    if len(sys.argv) > 3:
        import ssl
        ssl_ctx = ssl.create_default_context(cafile=sys.argv[3])
        ssl_ctx.set_alpn_protocols(["http/1.1"])
    for case in json.loads(sys.argv[2]):
        await run(url, case, ssl_ctx)


asyncio.run(main())
