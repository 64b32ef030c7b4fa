//! Exposure: what any answer shows (stack traces, secrets and password hashes, other users'
//! data, fields the description does not declare, version-revealing headers, missing security
//! headers), and what a few targeted requests show (no rate limit, CORS with credentials,
//! debug endpoints, verbose errors on malformed bodies).

use std::collections::BTreeSet;

use palisade_audit::names;
use palisade_audit::Severity;
use serde_json::Value;

use crate::client::{Exchange, Refused};
use crate::graph::Who;
use crate::request::{Body, Req};
use crate::{Finding, Scan, API3, API4, API8};

/// Names of fields that hold secrets (as words of the name).
const SECRET_WORDS: [&str; 8] = [
    "password", "passwd", "secret", "ssn", "cvv", "pin", "hash", "salt",
];

/// Whether a value is a password hash (bcrypt, argon2, scrypt, PBKDF2 in crypt form).
fn is_hash(s: &str) -> bool {
    (s.len() == 60 && (s.starts_with("$2a$") || s.starts_with("$2b$") || s.starts_with("$2y$")))
        || s.starts_with("$argon2")
        || s.starts_with("$scrypt$")
        || s.starts_with("pbkdf2_sha256$")
}

/// Secret fields of an answer: `(pointer, why, value)`. A field counts when its name says secret
/// and it holds a non-empty string that is not masked, or when its value is a password hash
/// whatever its name; booleans and objects never count (`password_set: true`, `secret: {…}`).
pub(crate) fn secrets(v: &Value, tokens: bool) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    fn walk(
        v: &Value,
        at: &str,
        out: &mut Vec<(String, String, String)>,
        depth: usize,
        tokens: bool,
    ) {
        if depth > 10 || out.len() > 8 {
            return;
        }
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let p = format!("{at}/{k}");
                    if let Value::String(s) = x {
                        let w = names::words(k);
                        let named = w.iter().any(|x| SECRET_WORDS.contains(&x.as_str()))
                            || (w.len() >= 2
                                && w.last().is_some_and(|l| l == "key")
                                && w.iter()
                                    .any(|x| x == "api" || x == "private" || x == "secret"))
                            || (tokens
                                && w.last().is_some_and(|l| l == "token")
                                && !w.iter().any(|x| {
                                    matches!(
                                        x.as_str(),
                                        "next"
                                            | "page"
                                            | "continuation"
                                            | "cursor"
                                            | "sync"
                                            | "csrf"
                                    )
                                }));
                        let masked = s.is_empty()
                            || s.chars()
                                .all(|c| c == '*' || c == '•' || c == 'x' || c == 'X')
                            || s.len() < 4;
                        if is_hash(s) {
                            out.push((p, "a password hash".into(), s.clone()));
                        } else if named && !masked {
                            out.push((p, format!("`{k}`"), s.clone()));
                        }
                    } else {
                        walk(x, &p, out, depth + 1, tokens);
                    }
                }
            }
            Value::Array(a) => {
                for x in a.iter().take(20) {
                    walk(x, &format!("{at}/0"), out, depth + 1, tokens);
                }
            }
            _ => {}
        }
    }
    walk(v, "", &mut out, 0, tokens);
    out.sort();
    out.dedup_by(|a, b| a.1 == b.1);
    out
}

/// Headers that reveal the server's software and version.
const VERSION_HEADERS: [&str; 5] = [
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-runtime-version",
];

/// Paths where frameworks expose debugging and configuration, tried on the target.
const DEBUG_PATHS: [&str; 10] = [
    "/debug",
    "/debug/vars",
    "/actuator/env",
    "/actuator/configprops",
    "/.env",
    "/env",
    "/config",
    "/server-status",
    "/phpinfo.php",
    "/__debug__/",
];

/// Signs of a configuration or environment dump.
const DUMP_SIGNS: [&str; 10] = [
    "DATABASE_URL",
    "SECRET_KEY",
    "AWS_SECRET",
    "JWT_SECRET",
    "\"activeProfiles\"",
    "PHP Version",
    "Server Version:",
    "\"memstats\"",
    "PATH=",
    "jwt_secret",
];

impl Scan<'_> {
    /// What any answer shows.
    pub(crate) fn inspect(&mut self, req: &Req, r: &Exchange, authed: bool) {
        let line = format!("{} {}", req.method, req.template);
        if palisade_core::leaks::stack_trace(&r.body) {
            self.find(
                Finding::new(
                    "errors.verbose",
                    Severity::Medium,
                    API8,
                    format!("{line}: the answer shows a stack trace"),
                )
                .at(line.clone())
                .shown(vec![r.clone()]),
            );
        }
        for h in VERSION_HEADERS {
            if let Some(v) = r
                .header(h)
                .filter(|v| v.bytes().any(|b| b.is_ascii_digit()))
            {
                self.find(
                    Finding::new(
                        "disclosure.version",
                        Severity::Low,
                        API8,
                        format!("answers name the server's software and version ({h}: {v})"),
                    )
                    .shown(vec![r.clone()]),
                );
            }
        }
        if !r.ok() || r.body.is_empty() {
            return;
        }
        if r.header("x-content-type-options") != Some("nosniff") {
            self.find(
                Finding::new(
                    "headers.nosniff",
                    Severity::Low,
                    API8,
                    "responses lack X-Content-Type-Options: nosniff".into(),
                )
                .shown(vec![r.clone()]),
            );
        }
        if authed
            && !r
                .header("cache-control")
                .is_some_and(|c| c.contains("no-store") || c.contains("private"))
        {
            self.find(
                Finding::new(
                    "headers.cache",
                    Severity::Low,
                    API8,
                    "authenticated answers may be cached (no Cache-Control: no-store or private)"
                        .into(),
                )
                .at(line.clone())
                .shown(vec![r.clone()]),
            );
        }
        let Ok(body) = serde_json::from_str::<Value>(&r.body) else {
            return;
        };
        let sent = req.body_text().map(|(_, t)| t).unwrap_or_default();
        // what the request itself carried (a password being set) is not a leak
        // a login answers with a token: that is its job
        let login = self
            .op_of(req)
            .is_some_and(|o| super::auth::is_login(&self.spec.doc, o));
        let leaked: Vec<(String, String, String)> = secrets(&body, !login)
            .into_iter()
            .filter(|(_, _, v)| !sent.contains(v.as_str()))
            .collect();
        if !leaked.is_empty() {
            self.redact.extend(leaked.iter().map(|(_, _, v)| v.clone()));
            let what: Vec<String> = leaked.iter().map(|(_, w, _)| w.clone()).collect();
            let who = if authed { "" } else { ", without credentials" };
            self.find(
                Finding::new(
                    "data.secret",
                    Severity::High,
                    API3,
                    format!("{line} returns secrets{who}: {}", what.join(", ")),
                )
                .at(line.clone())
                .input(
                    leaked
                        .iter()
                        .map(|(p, _, _)| format!("response field {p}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                )
                .shown(vec![r.clone()]),
            );
        }
        self.undeclared(req, &line, &body, r);
    }

    /// Fields an answer has that the description does not declare for it.
    fn undeclared(&mut self, req: &Req, line: &str, body: &Value, r: &Exchange) {
        let Some(op) = self.op_of(req) else {
            return;
        };
        let declared: BTreeSet<String> = op
            .response_schemas
            .iter()
            .filter(|(_, p)| p.contains("/responses/2"))
            .flat_map(|(s, _)| {
                crate::schema::properties(&self.spec.doc, s)
                    .into_iter()
                    .map(|(n, _, _)| n)
            })
            .collect();
        let open = op.response_schemas.iter().any(|(s, _)| {
            palisade_audit::spec::deref(&self.spec.doc, s)
                .get("additionalProperties")
                .is_some_and(|a| a != &Value::Bool(false))
        });
        let Some(obj) = body.as_object() else { return };
        if declared.is_empty() || open {
            return;
        }
        let extra: Vec<&String> = obj.keys().filter(|k| !declared.contains(*k)).collect();
        if !extra.is_empty() {
            let names: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
            self.find(
                Finding::new(
                    "data.excess",
                    Severity::Medium,
                    API3,
                    format!(
                        "{line}: fields not in the description: {}",
                        names.join(", ")
                    ),
                )
                .at(line.to_string())
                .shown(vec![r.clone()]),
            );
        }
    }

    pub(crate) async fn exposure(&mut self) -> Result<(), Refused> {
        // other users' account data in A's answers
        if let Some(me_b) = self.graph.me(Who::B).cloned() {
            let private: Vec<String> = me_b
                .iter()
                .filter(|(k, v)| {
                    let w = names::words(k);
                    w.iter().any(|x| {
                        matches!(
                            x.as_str(),
                            "email" | "phone" | "address" | "iban" | "birthdate" | "dob"
                        )
                    }) && v.as_str().is_some_and(|s| s.len() >= 5)
                })
                .filter_map(|(_, v)| v.as_str().map(str::to_string))
                .collect();
            let seen: Vec<crate::Base> = self
                .bases
                .iter()
                .filter(|b| b.who == Who::A && b.ex.ok())
                .cloned()
                .collect();
            for b in seen {
                if private.iter().any(|v| b.ex.body.contains(v.as_str())) {
                    let op = b.req.operation();
                    self.find(
                        Finding::new(
                            "data.other_users",
                            Severity::High,
                            crate::API1,
                            format!("{op}: identity A's answer holds identity B's personal data"),
                        )
                        .at(op)
                        .shown(vec![b.ex.clone()]),
                    );
                }
            }
        }
        let Some(probe) = self.probe.clone() else {
            self.skipped.push("rate limit and CORS: no operation refuses a caller without credentials and passes A".into());
            return self.debug_endpoints().await;
        };
        // a burst gets no 429
        let mut last = None;
        let mut limited = false;
        self.burst = true;
        for _ in 0..30 {
            let r = self.send_as(&probe.req, Who::A).await?;
            limited |= r.status == 429;
            last = Some(r);
            if limited {
                break;
            }
        }
        self.burst = false;
        let op = probe.req.operation();
        if let (false, Some(r)) = (limited, last) {
            self.find(
                Finding::new(
                    "ratelimit.none",
                    Severity::Medium,
                    API4,
                    format!("{op}: 30 requests in a row, no 429"),
                )
                .at(op.clone())
                .shown(vec![r]),
            );
        }
        let mut req = probe.req.clone();
        req.headers
            .push(("origin".into(), "https://evil.example".into()));
        let r = self.send_as(&req, Who::A).await?;
        let acao = r.header("access-control-allow-origin").unwrap_or("");
        if (acao == "*" || acao == "https://evil.example")
            && r.header("access-control-allow-credentials") == Some("true")
        {
            self.find(
                Finding::new(
                    "cors.credentials",
                    Severity::High,
                    API8,
                    format!("{op}: any origin may read it with the user's credentials"),
                )
                .at(op.clone())
                .shown(vec![r]),
            );
        }
        // malformed bodies: a verbose error is caught by `inspect`
        if self.opts.allow_unsafe {
            let writes: Vec<crate::Base> = self
                .bases
                .iter()
                .filter(|b| b.who == Who::A && matches!(b.req.body, Body::Json(_)))
                .cloned()
                .collect();
            for b in writes {
                let mut bad = b.req.clone();
                bad.body = Body::Raw("application/json".into(), "{\"palisade-scan\": ".into());
                self.send_as(&bad, Who::A).await?;
            }
        }
        self.debug_endpoints().await
    }

    async fn debug_endpoints(&mut self) -> Result<(), Refused> {
        for p in DEBUG_PATHS {
            let req = Req {
                method: "GET".into(),
                template: p.into(),
                path: Vec::new(),
                query: Vec::new(),
                headers: Vec::new(),
                cookies: Vec::new(),
                body: Body::None,
            };
            let r = self.send(&req, None).await?;
            if r.ok() && DUMP_SIGNS.iter().any(|s| r.body.contains(s)) {
                self.find(
                    Finding::new("disclosure.debug", Severity::High, API8, format!("GET {p} answers without credentials with the server's configuration or environment"))
                        .at(format!("GET {p}"))
                        .shown(vec![r]),
                );
            }
        }
        Ok(())
    }
}
