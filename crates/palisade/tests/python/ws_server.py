"""A WebSocket echo service written with the `websockets` library (another stack than ours),
the upstream of the WebSocket tests.

    ws_server.py

Prints {"listening": PORT}, then one JSON line per message it receives
({"got": TEXT or "<N binary bytes>", "path": PATH, "headers": {...}}). Every message is
echoed back; the text "big:N" is answered with N bytes of text; "close" makes the server
close with 4000.
"""
import asyncio
import json
import sys

from websockets.asyncio.server import serve


async def handler(ws):
    headers = {k.lower(): v for k, v in ws.request.headers.raw_items()}
    async for msg in ws:
        shown = msg if isinstance(msg, str) else f"<{len(msg)} binary bytes>"
        print(json.dumps({"got": shown, "path": ws.request.path, "headers": headers,
                          "subprotocol": ws.subprotocol}), flush=True)
        if isinstance(msg, str) and msg.startswith("big:"):
            await ws.send("x" * int(msg[4:]))
        elif msg == "close":
            await ws.close(4000, "asked to")
            return
        else:
            await ws.send(msg)


async def main():
    async with serve(handler, "127.0.0.1", 0, subprotocols=["chat.v1", "chat.v2"],
                     max_size=64 * 1024 * 1024, compression="deflate") as server:
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"listening": port}), flush=True)
        await asyncio.Future()


asyncio.run(main())
