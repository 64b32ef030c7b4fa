//! `palisade scan`: an active scan of a running API described by an OpenAPI document.
//!
//! Only the given target is contacted, within a request budget and a rate; methods that change
//! data are used only with `allow_unsafe`. Every finding carries its evidence (the request and
//! an excerpt of the answer) and its OWASP API Security Top 10 (2023) category.

pub mod client;
pub mod tls;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use base64::Engine as _;
use palisade_audit::spec::{self, Operation};
use palisade_audit::Severity;
use serde::Serialize;
use serde_json::{json, Value};

use client::{Client, Exchange, Refused};

/// An identity the scanner acts as: a bearer token (or any Authorization value).
#[derive(Debug, Clone)]
pub struct Identity {
    /// The Authorization header value, e.g. `Bearer eyJ…`.
    pub authorization: String,
}

/// What to scan and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Base URL of the target.
    pub target: String,
    /// Ordinary identity A (required).
    pub a: Identity,
    /// Ordinary identity B (for BOLA).
    pub b: Option<Identity>,
    /// An administrator (baseline for BFLA).
    pub admin: Option<Identity>,
    /// Most requests.
    pub budget: u64,
    /// Requests per second.
    pub rate: u32,
    /// Use methods that change data (PUT, PATCH, POST, DELETE).
    pub allow_unsafe: bool,
    /// An expired token of identity A, to check that expiry is enforced.
    pub expired: Option<Identity>,
    /// Print each check as it starts (to stderr).
    pub progress: bool,
    /// Extra CA (PEM) trusted for an https target, beside the Mozilla roots.
    pub ca_pem: Option<String>,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Check id.
    pub check: &'static str,
    /// Severity.
    pub severity: Severity,
    /// OWASP category.
    pub owasp: &'static str,
    /// What was found.
    pub title: String,
    /// The exchanges that show it.
    pub evidence: Vec<Exchange>,
}

/// The result of a scan.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The target.
    pub target: String,
    /// Requests made.
    pub requests: u64,
    /// Findings.
    pub findings: Vec<Finding>,
    /// Checks that could not run, and why.
    pub skipped: Vec<String>,
}

const API1: &str = "API1:2023 Broken Object Level Authorization";
const API2: &str = "API2:2023 Broken Authentication";
const API3: &str = "API3:2023 Broken Object Property Level Authorization";
const API4: &str = "API4:2023 Unrestricted Resource Consumption";
const API5: &str = "API5:2023 Broken Function Level Authorization";
const API8: &str = "API8:2023 Security Misconfiguration";

fn b64d(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}
fn b64e(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The parts of a JWT bearer token, when the identity is one.
fn jwt_parts(id: &Identity) -> Option<(Value, Value, String)> {
    let t = id.authorization.strip_prefix("Bearer ")?;
    let mut it = t.split('.');
    let (h, p, s) = (it.next()?, it.next()?, it.next()?);
    let header: Value = serde_json::from_slice(&b64d(h)?).ok()?;
    let payload: Value = serde_json::from_slice(&b64d(p)?).ok()?;
    Some((header, payload, s.to_string()))
}

/// Sets `key` on a JSON object (nothing for other values).
fn set(v: &mut Value, key: &str, val: Value) {
    if let Some(m) = v.as_object_mut() {
        m.insert(key.to_string(), val);
    }
}

fn subject(id: &Identity) -> Option<String> {
    jwt_parts(id).and_then(|(_, p, _)| p.get("sub").and_then(Value::as_str).map(str::to_string))
}

const WEAK_SECRETS: [&str; 24] = [
    "secret",
    "password",
    "123456",
    "changeme",
    "key",
    "jwt",
    "admin",
    "test",
    "qwerty",
    "letmein",
    "supersecret",
    "secretkey",
    "secret123",
    "jwt_secret",
    "jwtsecret",
    "your-256-bit-secret",
    "mysecret",
    "default",
    "token",
    "passw0rd",
    "s3cr3t",
    "hmac",
    "development",
    "example",
];

const ERROR_SIGNS: [&str; 12] = [
    "SQL syntax",
    "SQLSTATE",
    "ORA-0",
    "PostgreSQL",
    "sqlite3.",
    "syntax error at or near",
    "Traceback (most recent call last)",
    "Exception in thread",
    "at java.",
    "panicked at",
    "stack trace",
    "NullPointerException",
];

struct Scan<'a> {
    opts: &'a Options,
    client: Client,
    spec: spec::Spec,
    findings: Vec<Finding>,
    skipped: Vec<String>,
    seen: BTreeSet<(&'static str, String)>,
    weak: Option<String>,
}

impl Scan<'_> {
    fn find(
        &mut self,
        check: &'static str,
        severity: Severity,
        owasp: &'static str,
        title: String,
        evidence: Vec<Exchange>,
    ) {
        if self.seen.insert((check, title.clone())) {
            self.findings.push(Finding {
                check,
                severity,
                owasp,
                title,
                evidence,
            });
        }
    }

    fn path_for(&self, op: &Operation, id: &str) -> String {
        let mut p = op.path.clone();
        for prm in op.params.iter().filter(|p| p.location == "path") {
            p = p.replace(&format!("{{{}}}", prm.name), id);
        }
        p
    }

    async fn get(
        &self,
        path: &str,
        who: Option<&Identity>,
        extra: &[(&str, String)],
    ) -> Result<Exchange, Refused> {
        let mut h: Vec<(&str, String)> = extra.to_vec();
        if let Some(w) = who {
            h.push(("authorization", w.authorization.clone()));
        }
        self.client.send("GET", path, &h, None).await
    }

    fn secured(op: &Operation) -> bool {
        !op.security.is_empty() && !op.security.iter().any(serde_json::Map::is_empty)
    }

    fn is_admin(op: &Operation) -> bool {
        let p = op.path.to_ascii_lowercase();
        p.split('/')
            .any(|s| s == "admin" || s == "internal" || s == "management")
            || op
                .raw
                .get("tags")
                .and_then(Value::as_array)
                .is_some_and(|t| t.iter().any(|x| x.as_str() == Some("admin")))
    }

    async fn run(&mut self) -> Result<(), Refused> {
        let a = self.opts.a.clone();
        let id_a = subject(&a).unwrap_or_else(|| "1".into());
        let ops: Vec<Operation> = self.spec.operations.clone();
        let gets: Vec<&Operation> = ops.iter().filter(|o| o.method == "GET").collect();
        // a baseline: secured GETs that A can call
        let mut reachable = Vec::new();
        for op in gets
            .iter()
            .filter(|o| Self::secured(o) && !Self::is_admin(o))
        {
            let path = self.path_for(op, &id_a);
            let r = self.get(&path, Some(&a), &[]).await?;
            self.inspect(&r);
            if r.ok() {
                reachable.push((path, r));
            }
        }
        // API2: answers without credentials
        for op in gets.iter().filter(|o| Self::secured(o)) {
            let path = self.path_for(op, &id_a);
            let r = self.get(&path, None, &[]).await?;
            if r.ok() {
                self.find(
                    "auth.missing",
                    Severity::High,
                    API2,
                    format!("GET {} answers without credentials", op.path),
                    vec![r],
                );
            }
        }
        // API2: forged tokens
        if let (Some((header, payload, sig)), Some((path, _))) =
            (jwt_parts(&a), reachable.first().cloned())
        {
            let hp = |h: &Value, p: &Value| {
                format!(
                    "{}.{}",
                    b64e(h.to_string().as_bytes()),
                    b64e(p.to_string().as_bytes())
                )
            };
            let mut none_h = header.clone();
            set(&mut none_h, "alg", json!("none"));
            let mut expired = payload.clone();
            set(&mut expired, "exp", json!(1));
            let forged = [
                ("jwt.alg_none", "a token with alg none is accepted", format!("{}.", hp(&none_h, &payload))),
                ("jwt.no_signature", "a token without its signature is accepted", format!("{}.", hp(&header, &payload))),
                ("jwt.not_verified", "a token whose claims were altered (exp in 1970) is accepted with its old signature", format!("{}.{sig}", hp(&header, &expired))),
            ];
            for (check, title, token) in forged {
                let r = self
                    .get(
                        &path,
                        Some(&Identity {
                            authorization: format!("Bearer {token}"),
                        }),
                        &[],
                    )
                    .await?;
                if r.ok() {
                    self.find(check, Severity::Critical, API2, title.to_string(), vec![r]);
                }
            }
            if header.get("alg").and_then(Value::as_str) == Some("HS256") {
                let input = hp(&header, &payload);
                let input = a
                    .authorization
                    .trim_start_matches("Bearer ")
                    .rsplit_once('.')
                    .map_or(input, |(i, _)| i.to_string());
                let want = b64d(&sig).unwrap_or_default();
                if let Some(weak) = WEAK_SECRETS.iter().find(|s| {
                    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, s.as_bytes());
                    aws_lc_rs::hmac::verify(&k, input.as_bytes(), &want).is_ok()
                }) {
                    // prove it: an admin token signed with the guessed secret
                    let mut admin = payload.clone();
                    set(&mut admin, "sub", json!("palisade-scan-forged"));
                    set(&mut admin, "groups", json!(["admin"]));
                    set(&mut admin, "role", json!("admin"));
                    let body = hp(&header, &admin);
                    let k =
                        aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, weak.as_bytes());
                    let tag = aws_lc_rs::hmac::sign(&k, body.as_bytes());
                    let r = self
                        .get(
                            &path,
                            Some(&Identity {
                                authorization: format!("Bearer {body}.{}", b64e(tag.as_ref())),
                            }),
                            &[],
                        )
                        .await?;
                    self.weak = Some(weak.to_string());
                    let masked: String = weak.chars().take(2).collect();
                    self.find("jwt.weak_secret", Severity::Critical, API2,
                        format!("the HS256 signing secret is a common word ({masked}…, from a list of {}): anyone can mint tokens", WEAK_SECRETS.len()), vec![r]);
                }
            }
        } else {
            self.skipped
                .push("forged tokens: identity A is not a JWT, or no operation answered it".into());
        }
        // API1: B reads A's objects
        match self.opts.b.clone() {
            Some(b) => {
                for op in gets
                    .iter()
                    .filter(|o| Self::secured(o) && o.params.iter().any(|p| p.location == "path"))
                {
                    let path = self.path_for(op, &id_a);
                    let mine = self.get(&path, Some(&a), &[]).await?;
                    if !mine.ok() {
                        continue;
                    }
                    let theirs = self.get(&path, Some(&b), &[]).await?;
                    if theirs.ok() {
                        self.find(
                            "bola.read",
                            Severity::High,
                            API1,
                            format!("GET {}: identity B reads identity A's object", op.path),
                            vec![mine, theirs],
                        );
                    }
                }
            }
            None => self
                .skipped
                .push("BOLA: no second identity (--token-b)".into()),
        }
        // API5: an ordinary identity reaches admin operations
        for op in gets.iter().filter(|o| Self::is_admin(o)) {
            let path = self.path_for(op, &id_a);
            let r = self.get(&path, Some(&a), &[]).await?;
            if r.ok() {
                let mut ev = vec![r];
                if let Some(adm) = self.opts.admin.clone() {
                    ev.push(self.get(&path, Some(&adm), &[]).await?);
                }
                self.find(
                    "bfla",
                    Severity::High,
                    API5,
                    format!(
                        "GET {}: an ordinary identity reaches an admin operation",
                        op.path
                    ),
                    ev,
                );
            }
        }
        // injection (error-based) in query parameters
        for op in gets.iter().filter(|o| !Self::is_admin(o)) {
            for prm in op.params.iter().filter(|p| p.location == "query") {
                let base = self.path_for(op, &id_a);
                for (probe, label) in [
                    ("%27", "'"),
                    ("%27%20OR%20%271%27%3D%271", "' OR '1'='1"),
                    ("%7B%22%24ne%22%3A1%7D", "{\"$ne\":1}"),
                ] {
                    let r = self
                        .get(&format!("{base}?{}={probe}", prm.name), Some(&a), &[])
                        .await?;
                    if ERROR_SIGNS.iter().any(|s| r.body.contains(s))
                        && ERROR_SIGNS[..6].iter().any(|s| r.body.contains(s))
                    {
                        self.find(
                            "injection.sql",
                            Severity::Critical,
                            "API8:2023 Security Misconfiguration (injection)",
                            format!(
                                "GET {} `{}`={label}: a database error comes back",
                                op.path, prm.name
                            ),
                            vec![r],
                        );
                        break;
                    }
                    self.inspect(&r);
                }
            }
        }
        // API4: a burst gets no 429
        if let Some((path, _)) = reachable.first().cloned() {
            let mut last = None;
            let mut limited = false;
            for _ in 0..30 {
                let r = self.get(&path, Some(&a), &[]).await?;
                limited |= r.status == 429;
                last = Some(r);
                if limited {
                    break;
                }
            }
            if let (false, Some(r)) = (limited, last) {
                self.find(
                    "ratelimit.none",
                    Severity::Medium,
                    API4,
                    format!("GET {path}: 30 requests in a row, no 429"),
                    vec![r],
                );
            }
        }
        // CORS with credentials for any origin
        if let Some((path, _)) = reachable.first().cloned() {
            let r = self
                .get(
                    &path,
                    Some(&a),
                    &[("origin", "https://evil.example".into())],
                )
                .await?;
            let acao = r.header("access-control-allow-origin").unwrap_or("");
            if (acao == "*" || acao == "https://evil.example")
                && r.header("access-control-allow-credentials") == Some("true")
            {
                self.find(
                    "cors.credentials",
                    Severity::High,
                    API8,
                    format!("GET {path}: any origin may read it with the user's credentials"),
                    vec![r],
                );
            }
        }
        // API3: mass assignment (changes data)
        if self.opts.allow_unsafe {
            for op in ops.iter().filter(|o| {
                matches!(o.method.as_str(), "PUT" | "PATCH")
                    && o.params.iter().any(|p| p.location == "path")
            }) {
                let path = self.path_for(op, &id_a);
                let body = json!({"role": "admin", "isAdmin": true}).to_string();
                let w = self
                    .client
                    .send(
                        &op.method,
                        &path,
                        &[("authorization", a.authorization.clone())],
                        Some(body),
                    )
                    .await?;
                if !w.ok() {
                    continue;
                }
                let r = self.get(&path, Some(&a), &[]).await?;
                let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                if v.get("role") == Some(&json!("admin")) || v.get("isAdmin") == Some(&json!(true))
                {
                    self.find(
                        "mass_assignment",
                        Severity::High,
                        API3,
                        format!(
                            "{} {}: privileged properties sent by the client are kept",
                            op.method, op.path
                        ),
                        vec![w, r],
                    );
                }
            }
        } else {
            self.skipped
                .push("mass assignment: needs --allow-unsafe (it changes data)".into());
        }
        self.more(&a, &id_a, &ops, &reachable).await?;
        if self.client.is_tls() {
            self.step("TLS versions and cipher suites");
            let (host, port) = (self.client.host().to_string(), self.client.port());
            match tls::legacy_versions(&host, port).await {
                Ok(v) if !v.is_empty() => self.find(
                    "tls.legacy_version",
                    Severity::High,
                    API8,
                    format!("the server accepts {}", v.join(" and ")),
                    Vec::new(),
                ),
                Ok(_) => {}
                Err(e) => self.skipped.push(format!("TLS version probe: {e}")),
            }
            match tls::weak_suite(&host, port).await {
                Ok(Some(s)) => self.find(
                    "tls.weak_cipher",
                    Severity::High,
                    API8,
                    format!("the server agrees to the weak cipher suite {s} over TLS 1.2"),
                    Vec::new(),
                ),
                Ok(None) => {}
                Err(e) => self.skipped.push(format!("TLS cipher probe: {e}")),
            }
        }
        // API3: data the description does not promise
        for (path, r) in &reachable {
            let Some(op) = ops
                .iter()
                .find(|o| o.method == "GET" && self.path_for(o, &id_a) == *path)
            else {
                continue;
            };
            let declared: BTreeSet<String> = op
                .response_schemas
                .iter()
                .flat_map(|(s, _)| {
                    spec::deref(&self.spec.doc, s)
                        .get("properties")
                        .and_then(Value::as_object)
                        .map(|m| m.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default()
                })
                .collect();
            let got: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            if let (Some(obj), false) = (got.as_object(), declared.is_empty()) {
                let extra: Vec<&String> = obj.keys().filter(|k| !declared.contains(*k)).collect();
                if !extra.is_empty() {
                    let secret = extra.iter().any(|k| {
                        let k = k.to_ascii_lowercase();
                        ["password", "secret", "token", "hash", "ssn", "card"]
                            .iter()
                            .any(|s| k.contains(s))
                    });
                    let names: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
                    self.find(
                        "data.excess",
                        if secret {
                            Severity::High
                        } else {
                            Severity::Medium
                        },
                        API3,
                        format!(
                            "GET {}: fields not in the description: {}",
                            op.path,
                            names.join(", ")
                        ),
                        vec![r.clone()],
                    );
                }
            }
        }
        Ok(())
    }

    fn step(&self, what: &str) {
        if self.opts.progress {
            eprintln!("  [{:>4} requests] {what}", self.client.used());
        }
    }

    /// Token forgery with other keys, expiry, BOLA writes, user enumeration, and the blind
    /// and time-based injections.
    async fn more(
        &mut self,
        a: &Identity,
        id_a: &str,
        ops: &[Operation],
        reachable: &[(String, Exchange)],
    ) -> Result<(), Refused> {
        let hp = |h: &Value, p: &Value| {
            format!(
                "{}.{}",
                b64e(h.to_string().as_bytes()),
                b64e(p.to_string().as_bytes())
            )
        };
        if let (Some((header, payload, sig)), Some((path, _))) = (jwt_parts(a), reachable.first()) {
            self.step("tokens signed with another key, expired tokens");
            let alg = header
                .get("alg")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let input = hp(&header, &payload);
            let other: Option<Vec<u8>> = match alg.as_str() {
                "HS256" => {
                    let mut k = [0u8; 32];
                    let _ = aws_lc_rs::rand::fill(&mut k);
                    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &k);
                    Some(
                        aws_lc_rs::hmac::sign(&key, input.as_bytes())
                            .as_ref()
                            .to_vec(),
                    )
                }
                "ES256" => aws_lc_rs::signature::EcdsaKeyPair::generate(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                )
                .ok()
                .and_then(|k| {
                    k.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
                        .ok()
                })
                .map(|s| s.as_ref().to_vec()),
                "RS256" => aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .ok()
                    .and_then(|k| {
                        let mut out = vec![0; k.public_modulus_len()];
                        k.sign(
                            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                            &aws_lc_rs::rand::SystemRandom::new(),
                            input.as_bytes(),
                            &mut out,
                        )
                        .ok()
                        .map(|_| out)
                    }),
                _ => None,
            };
            if let Some(sig2) = other.filter(|x| b64e(x) != sig) {
                let t = Identity {
                    authorization: format!("Bearer {input}.{}", b64e(&sig2)),
                };
                let r = self.get(path, Some(&t), &[]).await?;
                if r.ok() {
                    self.find(
                        "jwt.other_key",
                        Severity::Critical,
                        API2,
                        format!("a token signed with another {alg} key is accepted"),
                        vec![r],
                    );
                }
            }
            let expired = match &self.opts.expired {
                Some(e) => Some(e.clone()),
                None => self.weak.clone().map(|secret| {
                    let mut p = payload.clone();
                    set(&mut p, "exp", json!(1));
                    let body = hp(&header, &p);
                    let k =
                        aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
                    let tag = aws_lc_rs::hmac::sign(&k, body.as_bytes());
                    Identity {
                        authorization: format!("Bearer {body}.{}", b64e(tag.as_ref())),
                    }
                }),
            };
            if let Some(e) = expired {
                let r = self.get(path, Some(&e), &[]).await?;
                if r.ok() {
                    self.find(
                        "jwt.expired",
                        Severity::High,
                        API2,
                        "an expired token is accepted".into(),
                        vec![r],
                    );
                }
            } else {
                self.skipped
                    .push("expired tokens: give --auth-expired (an expired token of A)".into());
            }
        }
        if self.opts.allow_unsafe {
            if let Some(b) = self.opts.b.clone() {
                self.step("BOLA: B changes A's objects");
                for op in ops.iter().filter(|o| {
                    matches!(o.method.as_str(), "PUT" | "PATCH")
                        && o.params.iter().any(|p| p.location == "path")
                }) {
                    let path = self.path_for(op, id_a);
                    let body = json!({"name": "palisade-scan"}).to_string();
                    let w = self
                        .client
                        .send(
                            &op.method,
                            &path,
                            &[("authorization", b.authorization.clone())],
                            Some(body),
                        )
                        .await?;
                    if w.ok() {
                        self.find(
                            "bola.write",
                            Severity::Critical,
                            API1,
                            format!(
                                "{} {}: identity B changes identity A's object",
                                op.method, op.path
                            ),
                            vec![w],
                        );
                    }
                }
            }
            self.step("user enumeration on login operations");
            for op in ops.iter().filter(|o| {
                o.method == "POST" && {
                    let p = o.path.to_ascii_lowercase();
                    ["login", "signin", "sign-in", "session"]
                        .iter()
                        .any(|k| p.contains(k))
                }
            }) {
                let known = json!({"username": id_a, "password": "palisade-scan-wrong-password"})
                    .to_string();
                let unknown = json!({"username": "palisade-scan-no-such-user-7f3a", "password": "palisade-scan-wrong-password"}).to_string();
                let r1 = self.client.send("POST", &op.path, &[], Some(known)).await?;
                let r2 = self
                    .client
                    .send("POST", &op.path, &[], Some(unknown))
                    .await?;
                if r1.status != r2.status || r1.body != r2.body {
                    self.find(
                        "auth.user_enumeration",
                        Severity::Medium,
                        API2,
                        format!(
                            "POST {}: a wrong password and an unknown user get different answers",
                            op.path
                        ),
                        vec![r1, r2],
                    );
                }
            }
        } else {
            self.skipped
                .push("BOLA writes and user enumeration: need --allow-unsafe".into());
        }
        self.step("blind and time-based injection, ReDoS");
        for op in ops
            .iter()
            .filter(|o| o.method == "GET" && !Self::is_admin(o))
        {
            for prm in op.params.iter().filter(|p| p.location == "query") {
                let base = self.path_for(op, id_a);
                let q = |v: &str| format!("{base}?{}={v}", prm.name);
                let normal = self.get(&q("1"), Some(a), &[]).await?;
                if !normal.ok() {
                    continue;
                }
                let t = self
                    .get(&q("1%27%20AND%20%271%27%3D%271"), Some(a), &[])
                    .await?;
                let f = self
                    .get(&q("1%27%20AND%20%271%27%3D%272"), Some(a), &[])
                    .await?;
                if t.ok() && f.ok() && t.body != f.body && t.body.len() != normal.body.len() {
                    self.find(
                        "injection.sql_boolean",
                        Severity::Critical,
                        "API8:2023 Security Misconfiguration (injection)",
                        format!(
                            "GET {} `{}`: true and false SQL conditions give different answers",
                            op.path, prm.name
                        ),
                        vec![t, f],
                    );
                }
                let n = self
                    .get(&q("%7B%22%24ne%22%3Anull%7D"), Some(a), &[])
                    .await?;
                if n.ok() && n.body.len() > normal.body.len() + 8 {
                    self.find(
                        "injection.nosql",
                        Severity::Critical,
                        "API8:2023 Security Misconfiguration (injection)",
                        format!(
                            "GET {} `{}`: a {{\"$ne\": null}} operator returns more data",
                            op.path, prm.name
                        ),
                        vec![normal.clone(), n],
                    );
                }
                let s = self.get(&q("1%3Bsleep%202"), Some(a), &[]).await?;
                if s.millis >= 1800 && s.millis > normal.millis.saturating_add(1500) {
                    self.find(
                        "injection.command",
                        Severity::Critical,
                        "API8:2023 Security Misconfiguration (injection)",
                        format!(
                            "GET {} `{}`: `;sleep 2` delays the answer by {} ms",
                            op.path, prm.name, s.millis
                        ),
                        vec![s],
                    );
                }
                let st = self
                    .get(&q("1%27%20AND%20SLEEP(2)--%20-"), Some(a), &[])
                    .await?;
                if st.millis >= 1800 && st.millis > normal.millis.saturating_add(1500) {
                    self.find(
                        "injection.sql_time",
                        Severity::Critical,
                        "API8:2023 Security Misconfiguration (injection)",
                        format!(
                            "GET {} `{}`: `' AND SLEEP(2)` delays the answer by {} ms",
                            op.path, prm.name, st.millis
                        ),
                        vec![st],
                    );
                }
                let long = format!("{}!", "a".repeat(3000));
                let r = self.get(&q(&long), Some(a), &[]).await?;
                if r.millis >= 1500 && r.millis > normal.millis.saturating_add(1200) {
                    self.find(
                        "redos",
                        Severity::Medium,
                        API4,
                        format!(
                            "GET {} `{}`: a 3 KB input takes {} ms",
                            op.path, prm.name, r.millis
                        ),
                        vec![r],
                    );
                }
            }
        }
        Ok(())
    }

    /// Passive checks on any answer: verbose errors and missing security headers.
    fn inspect(&mut self, r: &Exchange) {
        if ERROR_SIGNS[6..].iter().any(|s| r.body.contains(s)) {
            let line = r.request.lines().next().unwrap_or("").to_string();
            self.find(
                "errors.verbose",
                Severity::Medium,
                API8,
                format!("{line}: the answer shows a stack trace"),
                vec![r.clone()],
            );
        }
        if r.ok() {
            let line = r.request.lines().next().unwrap_or("").to_string();
            if r.header("x-content-type-options") != Some("nosniff") {
                self.find(
                    "headers.nosniff",
                    Severity::Low,
                    API8,
                    "responses lack X-Content-Type-Options: nosniff".into(),
                    vec![r.clone()],
                );
            }
            if r.request.contains("authorization:")
                && !r
                    .header("cache-control")
                    .is_some_and(|c| c.contains("no-store") || c.contains("private"))
            {
                self.find("headers.cache", Severity::Low, API8, format!("{line}: an authenticated answer may be cached (no Cache-Control: no-store or private)"), vec![r.clone()]);
            }
        }
    }
}

/// Scans the target described by `spec_text`.
pub async fn scan(spec_text: &str, opts: &Options) -> Result<Report, String> {
    let spec = spec::load(spec_text)?;
    let client = Client::new(&opts.target, opts.budget, opts.rate, opts.ca_pem.as_deref())?;
    let mut s = Scan {
        opts,
        client,
        spec,
        findings: Vec::new(),
        skipped: Vec::new(),
        seen: BTreeSet::new(),
        weak: None,
    };
    match s.run().await {
        Ok(()) => {}
        Err(Refused::Budget) => s.skipped.push(format!(
            "the request budget ({}) ran out; later checks did not run",
            opts.budget
        )),
        Err(Refused::Network(e)) => return Err(format!("the target stopped answering: {e}")),
    }
    s.findings
        .sort_by(|a, b| b.severity.cmp(&a.severity).then(a.check.cmp(b.check)));
    Ok(Report {
        target: opts.target.clone(),
        requests: s.client.used(),
        findings: s.findings,
        skipped: s.skipped,
    })
}

impl Report {
    /// The most severe finding.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Readable text.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{}: {} requests, {} findings\n",
            self.target,
            self.requests,
            self.findings.len()
        );
        for f in &self.findings {
            let _ = writeln!(
                out,
                "\n[{}] {} {}\n  {}",
                f.severity.name(),
                f.check,
                f.title,
                f.owasp
            );
            for e in &f.evidence {
                let _ = writeln!(out, "  > {}", e.request.replace('\n', "\n    "));
                let _ = writeln!(out, "  < {} {}", e.status, e.excerpt.replace('\n', " "));
            }
        }
        for s in &self.skipped {
            let _ = writeln!(out, "\nnot run: {s}");
        }
        out
    }

    /// JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A self-contained HTML page.
    pub fn html(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let mut rows = String::new();
        for f in &self.findings {
            let ev: Vec<String> = f
                .evidence
                .iter()
                .map(|e| {
                    format!(
                        "<pre>{}\n&lt; {} {}</pre>",
                        esc(&e.request),
                        e.status,
                        esc(&e.excerpt)
                    )
                })
                .collect();
            let _ = write!(
                rows,
                "<tr class=\"{sev}\"><td>{sev}</td><td>{check}</td><td>{owasp}</td><td>{title}</td><td>{ev}</td></tr>",
                sev = f.severity.name(),
                check = f.check,
                owasp = esc(f.owasp),
                title = esc(&f.title),
                ev = ev.join("")
            );
        }
        format!(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Palisade scan: {t}</title>\
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #ccc;padding:4px 6px;vertical-align:top}}\
pre{{margin:0 0 4px;white-space:pre-wrap;font-size:12px}}tr.critical td:first-child,tr.high td:first-child{{background:#f8d7da}}tr.medium td:first-child{{background:#fff3cd}}</style>\
<h1>Palisade scan: {t}</h1><p>{n} requests, {f} findings</p>\
<table><tr><th>severity</th><th>check</th><th>OWASP</th><th>finding</th><th>evidence</th></tr>{rows}</table></html>\n",
            t = esc(&self.target),
            n = self.requests,
            f = self.findings.len()
        )
    }

    /// SARIF 2.1.0.
    pub fn sarif(&self) -> String {
        let level = |s: Severity| match s {
            Severity::Low => "note",
            Severity::Medium => "warning",
            _ => "error",
        };
        let checks: BTreeSet<&str> = self.findings.iter().map(|f| f.check).collect();
        let rules: Vec<Value> = checks.iter().map(|c| json!({"id": c, "name": c})).collect();
        let results: Vec<Value> = self
            .findings
            .iter()
            .map(|f| {
                json!({
                    "ruleId": f.check,
                    "ruleIndex": checks.iter().position(|c| *c == f.check),
                    "level": level(f.severity),
                    "message": {"text": format!("{} ({})", f.title, f.owasp)},
                    "locations": [{"physicalLocation": {"artifactLocation": {"uri": self.target}}}],
                    "properties": {"evidence": f.evidence}
                })
            })
            .collect();
        serde_json::to_string_pretty(&json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "palisade scan", "version": env!("CARGO_PKG_VERSION"), "rules": rules}},
                      "results": results}]
        }))
        .unwrap_or_default()
    }
}
