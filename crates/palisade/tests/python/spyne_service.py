"""A SOAP service written with spyne (PyPI), the upstream of the WSDL-contract tests: spyne
writes its own WSDL and XSD (document/literal, SOAP 1.1) from the typed signatures below,
so the schema Palisade validates against is one nobody here wrote. It parses requests
without validating them itself (a gateway in front is what is tested), and counts every
POST it receives (`GET /count`), so a test can check a refused request never reached it.

    python spyne_service.py PORT
"""
import json
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

from spyne import Application, ComplexModel, Integer, Iterable, Unicode, Decimal, Boolean, Date, rpc, ServiceBase
from spyne.model.primitive import UnsignedInteger
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

CALLS = {"n": 0}

Sku = Unicode(pattern="[A-Z]{3}-[0-9]{4}", min_len=8, max_len=8)
Priority = Unicode(values=["low", "normal", "high"])


class Address(ComplexModel):
    __namespace__ = "urn:spyne:shop"
    street = Unicode(max_len=64, min_occurs=1, nillable=False)
    city = Unicode(max_len=32, min_occurs=1, nillable=False)
    zip = Unicode(pattern="[0-9]{5}", min_occurs=0)


class Line(ComplexModel):
    __namespace__ = "urn:spyne:shop"
    sku = Sku(min_occurs=1, nillable=False)
    quantity = Integer(ge=1, le=99, min_occurs=1, nillable=False)


class Shop(ServiceBase):
    @rpc(Unicode(max_len=40, min_occurs=1, nillable=False), Address.customize(min_occurs=1, nillable=False),
         Line.customize(max_occurs=5, min_occurs=1), Priority(min_occurs=0), Decimal(ge=0, le=10000, min_occurs=0),
         Boolean(min_occurs=0), Date(min_occurs=0), _returns=Unicode)
    def PlaceOrder(ctx, customer, address, line, priority, tip, gift, deliver_on):
        CALLS["n"] += 1
        return "accepted: %d line(s) for %s" % (len(line or []), customer)

    @rpc(UnsignedInteger(min_occurs=1, nillable=False), _returns=Unicode)
    def GetOrder(ctx, id):
        CALLS["n"] += 1
        return "order %d" % id

    @rpc(_returns=Integer)
    def Calls(ctx):
        return CALLS["n"]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


POSTS = {"n": 0}


def counting(app):
    def wrapped(environ, start_response):
        if environ["REQUEST_METHOD"] == "GET" and environ.get("PATH_INFO") == "/count":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps({"posts": POSTS["n"]}).encode()]
        if environ["REQUEST_METHOD"] == "POST":
            POSTS["n"] += 1
        return app(environ, start_response)
    return wrapped


if __name__ == "__main__":
    app = Application([Shop], tns="urn:spyne:shop", in_protocol=Soap11(), out_protocol=Soap11())
    port = int(sys.argv[1])
    server = make_server("127.0.0.1", port, counting(WsgiApplication(app)), handler_class=Quiet)
    print(json.dumps({"listening": port}), flush=True)
    server.serve_forever()
