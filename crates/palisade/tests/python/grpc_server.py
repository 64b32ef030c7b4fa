"""A gRPC service written with grpcio (Google's C-core stack), the upstream of the gRPC
tests. Methods take and return raw bytes (no code generation needed):

    /demo.Orders/Get      echoes the request; trailing metadata x-served-by: grpcio;
                          a request b"missing" fails with NOT_FOUND "no such order"
    /demo.Orders/Delete   answers b"deleted"
    /demo.Orders/Watch    server streaming: three messages b"event-0" … b"event-2"

Prints {"listening": PORT}, then {"method", "metadata"} for every call it receives.
"""
import json
import sys
from concurrent import futures

import grpc


def log(method, context):
    md = {k: v for k, v in context.invocation_metadata()}
    print(json.dumps({"method": method, "metadata": md}), flush=True)


def get(request, context):
    log("Get", context)
    if request == b"missing":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such order")
    context.set_trailing_metadata((("x-served-by", "grpcio"),))
    return b"order:" + request


def delete(request, context):
    log("Delete", context)
    return b"deleted"


def watch(request, context):
    log("Watch", context)
    for i in range(3):
        yield f"event-{i}".encode()


handlers = grpc.method_handlers_generic_handler("demo.Orders", {
    "Get": grpc.unary_unary_rpc_method_handler(get),
    "Delete": grpc.unary_unary_rpc_method_handler(delete),
    "Watch": grpc.unary_stream_rpc_method_handler(watch),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handlers,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(json.dumps({"listening": port}), flush=True)
server.wait_for_termination()
