"""An upstream on Python's WSGI reference server: PATH_INFO arrives percent-decoded (%2F
included); the app merges slashes and ignores a trailing slash, as Flask-style apps do."""

import re
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server


def app(environ, start_response):
    # WSGI gives the decoded path as latin-1 text; the app reads it as UTF-8
    path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    path = re.sub("/+", "/", path)
    if len(path) > 1:
        path = path.rstrip("/")
    host = environ.get("HTTP_HOST", "").lower().rsplit(":", 1)[0].rstrip(".")
    if path == "/secure" or path.startswith("/secure/"):
        body = "PROTECTED " + path
    elif path in ("/_debug", "/items/_debug"):
        body = "DEBUG"
    elif host == "internal.test":
        body = "INTERNAL"
    else:
        body = "PUBLIC " + path
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=Quiet).serve_forever()
