"""An OTLP/HTTP logs receiver for the tests: every body POSTed to /v1/logs is parsed with the
OpenTelemetry project's own protobuf definitions (opentelemetry-proto, JSON mapping, unknown
fields refused), answered 200, and each log record printed as one JSON line on stdout:
its severity, body, and attributes as a flat map.

    python otlp_receiver.py PORT
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path != "/v1/logs" or self.headers.get("content-type") != "application/json":
            self.send_response(404)
            self.end_headers()
            return
        req = ExportLogsServiceRequest()
        try:
            json_format.Parse(body, req, ignore_unknown_fields=False)
        except json_format.ParseError as e:
            print(json.dumps({"error": str(e)}), flush=True)
            self.send_response(400)
            self.end_headers()
            return
        for rl in req.resource_logs:
            service = {a.key: value(a.value) for a in rl.resource.attributes}.get("service.name")
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    print(json.dumps({
                        "service": service,
                        "scope": sl.scope.name,
                        "severity": r.severity_number,
                        "severity_text": r.severity_text,
                        "time_unix_nano": r.time_unix_nano,
                        "body": value(r.body),
                        "attributes": {a.key: value(a.value) for a in r.attributes},
                    }), flush=True)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    print(json.dumps({"listening": int(sys.argv[1])}), flush=True)
    HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
