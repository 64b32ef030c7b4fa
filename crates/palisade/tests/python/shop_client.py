"""zeep (a WSDL-driven SOAP client) calling the spyne shop through the gateway: the requests
a real client serializes from the WSDL must pass its schema check. Prints one JSON line per
call with its result or the fault.

    python shop_client.py WSDL GATEWAY_URL
"""
import datetime
import decimal
import json
import sys

import zeep
from zeep.exceptions import Fault

wsdl, url = sys.argv[1], sys.argv[2]
client = zeep.Client(wsdl=wsdl)
service = client.create_service("{urn:spyne:shop}Application", url)


def call(name, fn):
    try:
        print(json.dumps({"call": name, "result": str(fn())}), flush=True)
    except Fault as f:
        detail = zeep.helpers.serialize_object(f.detail) if f.detail is not None else None
        print(json.dumps({"call": name, "fault": f.message, "code": f.code,
                          "detail": None if detail is None else str(detail)}), flush=True)


call("place_order", lambda: service.PlaceOrder(
    customer="ACME Corp",
    address={"street": "Main Street 1", "city": "Bern", "zip": "30110"},
    line=[{"sku": "ABC-1234", "quantity": 2}, {"sku": "XYZ-0001", "quantity": 99}],
    priority="high",
    tip=decimal.Decimal("2.50"),
    gift=True,
    deliver_on=datetime.date(2026, 12, 24),
))
call("place_order_minimal", lambda: service.PlaceOrder(
    customer="B", address={"street": "s", "city": "c"}, line=[{"sku": "AAA-0000", "quantity": 1}]))
call("get_order", lambda: service.GetOrder(id=7))
