"""A second deliberately vulnerable API for `palisade scan` (test only), written apart from the
Rust sample and in another style: Python's http.server, a Swagger 2.0 description, DRF-like
`Authorization: Token …` keys, integer primary keys, form-encoded writes, a key in a query
parameter, real SQLite, a real shell, real files and a real HTTP fetch.

    python3 app.py PORT FLAWS      FLAWS: "all", "none" or a comma-separated list
"""

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALL = {
    "unauthenticated", "bola", "bola_write", "bola_query", "bfla", "mass_assignment",
    "excess_data", "sqli", "cmd_injection", "traversal", "ssrf", "xss", "verbose_errors",
    "user_enum", "login_unlimited", "no_rate_limit", "cors", "missing_headers", "server_header",
}

TOKENS = {"tok-alice-0b1c": 1, "tok-bob-77e2": 2, "tok-admin-5d9a": 3}
USERS = {
    1: {"pk": 1, "email": "alice@clinic.example", "full_name": "Alice Martin", "is_staff": False},
    2: {"pk": 2, "email": "bob@clinic.example", "full_name": "Bob Stone", "is_staff": False},
    3: {"pk": 3, "email": "admin@clinic.example", "full_name": "Ada Admin", "is_staff": True},
}
PASSWORDS = {"alice@clinic.example": "alice-pass-2019", "bob@clinic.example": "bob-pass-2020",
             "admin@clinic.example": "admin-pass-2021"}
DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "docs")


class State:
    def __init__(self, flaws):
        self.flaws = flaws
        self.lock = threading.Lock()
        self.patients = {
            11: {"pk": 11, "name": "Rex", "owner": 1, "notes": "vaccinated"},
            12: {"pk": 12, "name": "Tom", "owner": 2, "notes": "allergic"},
        }
        self.next_pk = 100
        self.appointments = [
            {"pk": 501, "patient_id": 11, "when": "2026-03-01T10:00:00Z"},
            {"pk": 502, "patient_id": 12, "when": "2026-03-02T11:00:00Z"},
        ]
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        self.db.execute("CREATE TABLE drugs (name TEXT, restricted INTEGER)")
        self.db.executemany("INSERT INTO drugs VALUES (?, ?)",
                            [("amoxicillin", 0), ("carprofen", 0), ("ketamine", 1)])
        self.hits = {}
        self.failures = {}


class Handler(BaseHTTPRequestHandler):
    state = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def version_string(self):
        return "WSGIServer/0.2 CPython/3.8.10" if self.flag("server_header") else "clinic"

    def flag(self, name):
        return name in self.state.flaws

    # --- answers -----------------------------------------------------------------------
    def send(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if not self.flag("missing_headers"):
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "private, no-store")
        origin = self.headers.get("Origin")
        if self.flag("cors") and origin:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
        self.end_headers()
        self.wfile.write(data)

    def fail(self, status, detail):
        self.send(status, {"detail": detail})

    # --- requests ----------------------------------------------------------------------
    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("application/x-www-form-urlencoded"):
            return {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
        return json.loads(raw or b"{}")

    def user(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Token "):
            return None
        pk = TOKENS.get(auth[6:])
        return USERS.get(pk) if pk else None

    def limited(self, who, path):
        if self.flag("no_rate_limit") or self.command != "GET":
            return False
        key = (who["pk"], path)
        start, n = self.state.hits.get(key, (time.time(), 0))
        if time.time() - start > 10:
            start, n = time.time(), 0
        self.state.hits[key] = (start, n + 1)
        return n + 1 > 30

    def do_GET(self):
        self.route()

    def do_POST(self):
        self.route()

    def do_PUT(self):
        self.route()

    def do_PATCH(self):
        self.route()

    def do_DELETE(self):
        self.route()

    def route(self):
        try:
            self.handle_api()
        except Exception:  # a bug of the handler: the flawed variant shows its traceback
            if self.flag("verbose_errors"):
                self.send(500, {"detail": traceback.format_exc()})
            else:
                self.fail(400, "bad request")

    def handle_api(self):
        url = urllib.parse.urlsplit(self.path)
        path = url.path.rstrip("/")
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        if not path.startswith("/api/v2"):
            return self.fail(404, "not found")
        path = path[len("/api/v2"):]
        segs = [urllib.parse.unquote(s) for s in path.strip("/").split("/")]
        st = self.state
        m = self.command
        if m == "GET" and path == "/health":
            return self.send(200, {"ok": True})
        if m == "POST" and path == "/auth/token":
            form = self.read_body()
            email = form.get("email", "")
            fails = st.failures.get(email, 0)
            if not self.flag("login_unlimited") and fails >= 5:
                return self.fail(429, "too many attempts")
            if PASSWORDS.get(email) == form.get("password"):
                pk = next(u["pk"] for u in USERS.values() if u["email"] == email)
                tok = next(t for t, p in TOKENS.items() if p == pk)
                return self.send(200, {"token": tok})
            st.failures[email] = fails + 1
            if self.flag("user_enum") and email not in PASSWORDS:
                return self.fail(400, "Unknown e-mail address.")
            return self.fail(400, "Unable to log in with provided credentials.")
        if m == "GET" and path == "/patients" and self.flag("unauthenticated") and not self.user():
            return self.send(200, list(st.patients.values()))
        who = self.user()
        if who is None:
            return self.fail(401, "Authentication credentials were not provided.")
        if self.limited(who, path):
            return self.fail(429, "Request was throttled.")
        staff = who["is_staff"]

        if path == "/profile":
            if m == "GET":
                return self.send(200, self.profile(who))
            if m == "PATCH":
                body = self.read_body()
                for k, v in body.items():
                    if k == "full_name" or (k == "is_staff" and self.flag("mass_assignment")):
                        who[k] = v
                return self.send(200, self.profile(who))
        if path == "/patients":
            if m == "GET":
                return self.send(200, [p for p in st.patients.values() if p["owner"] == who["pk"]])
            if m == "POST":
                form = self.read_body()
                if not form.get("name"):
                    return self.fail(400, "name is required")
                with st.lock:
                    st.next_pk += 1
                    p = {"pk": st.next_pk, "name": form["name"], "owner": who["pk"],
                         "notes": form.get("notes", "")}
                    st.patients[p["pk"]] = p
                return self.send(201, p)
        if len(segs) == 2 and segs[0] == "patients":
            pk = int(segs[1])  # a non-number is a bug here: the handler raises
            p = st.patients.get(pk)
            mine = p is not None and (p["owner"] == who["pk"] or staff)
            allowed = mine or (p is not None and (
                (m == "GET" and self.flag("bola")) or (m == "PUT" and self.flag("bola_write"))))
            if not allowed:
                return self.fail(404, "Not found.")
            if m == "GET":
                return self.send(200, p)
            if m == "PUT":
                form = self.read_body()
                for k in ("name", "notes"):
                    if k in form:
                        p[k] = form[k]
                return self.send(200, p)
            if m == "DELETE":
                del st.patients[pk]
                return self.send(204, b"")
        if m == "GET" and path == "/appointments":
            pid = int(q.get("patient_id", "0"))
            p = st.patients.get(pid)
            if p is None or not (p["owner"] == who["pk"] or staff or self.flag("bola_query")):
                return self.send(200, [])
            return self.send(200, [a for a in st.appointments if a["patient_id"] == pid])
        if m == "GET" and path == "/drugs":
            term = q.get("term", "")
            if self.flag("sqli"):
                sql = "SELECT name FROM drugs WHERE restricted = 0 AND name LIKE '%" + term + "%'"
                try:
                    rows = st.db.execute(sql).fetchall()
                except sqlite3.Error as e:
                    return self.send(500, {"detail": "sqlite3.OperationalError: " + str(e)})
            else:
                rows = st.db.execute(
                    "SELECT name FROM drugs WHERE restricted = 0 AND name LIKE ?",
                    ("%" + term + "%",)).fetchall()
            return self.send(200, {"results": [{"name": r[0]} for r in rows]})
        if m == "POST" and path == "/labels":
            body = self.read_body()
            name = str(body.get("patient_name", ""))
            if self.flag("cmd_injection"):
                out = subprocess.run("printf '%s\\n' " + name, shell=True, capture_output=True,
                                     timeout=10).stdout.decode(errors="replace")
            else:
                out = name + "\n"
            return self.send(200, {"label": out})
        if m == "GET" and path == "/documents":
            name = q.get("path", "")
            full = os.path.normpath(os.path.join(DOCS, name))
            if not self.flag("traversal") and not full.startswith(DOCS + os.sep):
                return self.fail(404, "Not found.")
            try:
                with open(full, encoding="utf-8", errors="replace") as f:
                    return self.send(200, f.read(2000), "text/plain")
            except OSError:
                return self.fail(404, "Not found.")
        if m == "POST" and path == "/webhooks":
            body = self.read_body()
            target = body.get("callback", "")
            host = urllib.parse.urlsplit(target).hostname or ""
            internal = host in ("localhost", "127.0.0.1") or host.startswith("10.")
            if internal and not self.flag("ssrf"):
                return self.fail(400, "callback must be a public https URL")
            if target.startswith("http://"):
                # the webhook is verified by calling it once
                try:
                    with urllib.request.urlopen(target, timeout=2) as r:
                        status = r.status
                except Exception:
                    status = 0
                return self.send(201, {"callback": target, "verified": status == 200})
            return self.send(201, {"callback": target, "verified": False})
        if m == "GET" and path == "/audit-trail":
            if not (staff or self.flag("bfla")):
                return self.fail(403, "You do not have permission to perform this action.")
            return self.send(200, [{"at": "2026-01-01T00:00:00Z", "actor": 3, "action": "login"}])
        if m == "GET" and path == "/preview":
            text = q.get("text", "")
            if not self.flag("xss"):
                text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            return self.send(200, "<html><body><p>" + text + "</p></body></html>",
                             "text/html; charset=utf-8")
        return self.fail(404, "Not found.")

    def profile(self, who):
        p = dict(who)
        if self.flag("excess_data"):
            p["password"] = "pbkdf2_sha256$260000$Zq4n$" + "A1b2C3d4" * 5
        return p


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # a client (a scan, a gateway) that closes a connection early is not a server error
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def main():
    port = int(sys.argv[1])
    spec = sys.argv[2] if len(sys.argv) > 2 else "none"
    flaws = ALL if spec == "all" else set() if spec == "none" else set(spec.split(","))
    unknown = flaws - ALL
    if unknown:
        sys.exit("unknown flaws: " + ", ".join(sorted(unknown)))
    Handler.state = State(flaws)
    Server(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
