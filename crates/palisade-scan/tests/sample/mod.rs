//! A deliberately vulnerable shop API for the scanner's tests (test only). Its flaws sit where
//! real APIs have them: string keys (`ord_3`, `INV-1001`, slugs, user names), an invoice key
//! in a body, owners only in the data (`customer`), staff operations without "admin" in the
//! path, a weak numeric HS256 secret, a URL field fetched server-side, a login with distinct
//! errors, a slow regex on a body field, a public operation that shows the configuration.
//! Every flaw is behind a switch; all off is the fixed variant.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::sync::Mutex;

macro_rules! flaws {
    ($($name:ident),* $(,)?) => {
        /// The planted flaws, and `rs256`: tokens signed with RSA (published as a JWKS)
        /// rather than HS256, which is not a flaw.
        #[derive(Debug, Clone, Copy, Default)]
        pub struct Flaws { $(pub $name: bool,)* pub rs256: bool }
        impl Flaws {
            /// Every flaw but key confusion, which needs the RS256 variant (where an HS256
            /// secret cannot be weak): it is tested alone.
            pub fn all() -> Flaws { Flaws { $($name: true,)* rs256: false }.without_key_confusion() }
            /// Each flaw by name, alone.
            pub fn each() -> Vec<(&'static str, Flaws)> {
                vec![$((stringify!($name), Flaws { $name: true, ..Flaws::default() }),)*]
            }
        }
    };
}

flaws!(
    unauthenticated,
    alg_none,
    no_verify,
    kid,
    weak_secret,
    no_expiry,
    key_confusion,
    bola,
    bola_write,
    bola_delete,
    bola_action,
    bola_body,
    bfla,
    bfla_write,
    mass_assignment,
    excess_data,
    sqli,
    sqli_boolean,
    sqli_time,
    nosql,
    cmd_injection,
    template,
    traversal,
    xss,
    redos,
    ssrf,
    debug,
    user_enum,
    login_unlimited,
    verbose_errors,
    no_rate_limit,
    cors,
    missing_headers,
    server_header,
);

impl Flaws {
    fn without_key_confusion(mut self) -> Flaws {
        self.key_confusion = false;
        self
    }

    pub fn secret(&self) -> &'static str {
        if self.weak_secret {
            "482913"
        } else {
            "a-long-random-secret-6f1c2a9e0b7d44e8a1c3"
        }
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The RSA key of the RS256 variant.
fn rsa() -> &'static aws_lc_rs::rsa::KeyPair {
    static KEY: std::sync::OnceLock<aws_lc_rs::rsa::KeyPair> = std::sync::OnceLock::new();
    KEY.get_or_init(|| aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
}

fn rs256_mode(f: &Flaws) -> bool {
    f.rs256 || f.key_confusion
}

/// The public key as PEM, as a careless verifier reads it from its key file.
fn public_pem() -> String {
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::signature::KeyPair as _;
    let der = rsa().public_key().as_der().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

fn jwks() -> Value {
    use aws_lc_rs::signature::KeyPair as _;
    let k = rsa().public_key();
    json!({"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
        "n": b64(k.modulus().big_endian_without_leading_zero()),
        "e": b64(k.exponent().big_endian_without_leading_zero())}]})
}

/// A token for `sub` (HS256, or RS256 in that variant), expiring in an hour (or an hour ago).
pub fn token_at(flaws: &Flaws, sub: &str, staff: bool, expired: bool) -> String {
    let exp = if expired { now() - 3600 } else { now() + 3600 };
    let claims = json!({"sub": sub, "exp": exp, "role": if staff { "staff" } else { "customer" }});
    if rs256_mode(flaws) {
        let input = format!(
            "{}.{}",
            b64(br#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#),
            b64(claims.to_string().as_bytes())
        );
        let mut sig = vec![0; rsa().public_modulus_len()];
        rsa()
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .unwrap();
        return format!("{input}.{}", b64(&sig));
    }
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, flaws.secret().as_bytes());
    let tag = aws_lc_rs::hmac::sign(&k, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// A current token.
pub fn token(flaws: &Flaws, sub: &str, staff: bool) -> String {
    token_at(flaws, sub, staff, false)
}

struct State {
    flaws: Flaws,
    accounts: BTreeMap<String, Value>,
    passwords: HashMap<String, String>,
    orders: BTreeMap<String, Value>,
    invoices: Vec<Value>,
    next: u32,
    hits: HashMap<(String, String), (Instant, u32)>,
    failures: HashMap<String, (Instant, u32)>,
}

fn claims(st: &State, auth: Option<&str>) -> Option<Value> {
    let t = auth?.strip_prefix("Bearer ")?;
    let mut it = t.split('.');
    let (h, p, s) = (it.next()?, it.next()?, it.next().unwrap_or(""));
    let d = |x: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(x)
            .ok()
    };
    let header: Value = serde_json::from_slice(&d(h)?).ok()?;
    let payload: Value = serde_json::from_slice(&d(p)?).ok()?;
    let f = &st.flaws;
    let alg = header["alg"].as_str().unwrap_or("");
    let verified = if f.no_verify || (f.alg_none && alg.eq_ignore_ascii_case("none")) {
        true
    } else if rs256_mode(f) {
        use aws_lc_rs::signature::KeyPair as _;
        match alg {
            "RS256" => aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
                rsa().public_key().as_ref(),
            )
            .verify(format!("{h}.{p}").as_bytes(), &d(s)?)
            .is_ok(),
            // the library is handed "the key" whatever the algorithm: HS256 with the PEM text
            "HS256" if f.key_confusion => {
                let k = aws_lc_rs::hmac::Key::new(
                    aws_lc_rs::hmac::HMAC_SHA256,
                    public_pem().as_bytes(),
                );
                aws_lc_rs::hmac::verify(&k, format!("{h}.{p}").as_bytes(), &d(s)?).is_ok()
            }
            _ => false,
        }
    } else if alg != "HS256" {
        false
    } else {
        // the `kid` names a key file under keys/; /dev/null reads as an empty key
        let key: &[u8] = match header["kid"].as_str() {
            Some(kid) if f.kid && kid.ends_with("/dev/null") => b"",
            Some(_) => return None,
            None => f.secret().as_bytes(),
        };
        let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
        aws_lc_rs::hmac::verify(&k, format!("{h}.{p}").as_bytes(), &d(s)?).is_ok()
    };
    if !verified {
        return None;
    }
    (f.no_verify || f.no_expiry || payload["exp"].as_u64()? > now()).then_some(payload)
}

struct Ctx {
    origin: Option<String>,
    flaws: Flaws,
}

fn reply(cx: &Ctx, status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    raw(cx, status, "application/json", body.to_string())
}

fn raw(cx: &Ctx, status: StatusCode, ct: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", ct);
    if !cx.flaws.missing_headers {
        r = r
            .header("x-content-type-options", "nosniff")
            .header("cache-control", "no-store");
    }
    if cx.flaws.server_header {
        r = r.header("server", "Werkzeug/2.0.3 Python/3.8.10");
    }
    if let (true, Some(o)) = (cx.flaws.cors, &cx.origin) {
        r = r
            .header("access-control-allow-origin", o.as_str())
            .header("access-control-allow-credentials", "true");
    }
    r.body(Full::new(Bytes::from(body))).unwrap()
}

fn err(cx: &Ctx, status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    reply(cx, status, json!({"error": msg}))
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(q: Option<&str>, name: &str) -> Option<String> {
    q?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let c = headers.get("cookie")?.to_str().ok()?;
    c.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| decode(v))
    })
}

/// `{{a*b}}` evaluated, as a careless template engine would.
fn render(t: &str) -> String {
    let mut out = t.to_string();
    while let Some(start) = out.find("{{") {
        let Some(end) = out[start..].find("}}") else {
            break;
        };
        let expr = &out[start + 2..start + end];
        let v = expr
            .split_once('*')
            .and_then(|(a, b)| Some(a.trim().parse::<i64>().ok()? * b.trim().parse::<i64>().ok()?))
            .map_or(String::new(), |n| n.to_string());
        out.replace_range(start..start + end + 2, &v);
    }
    out
}

/// Fetches an http URL (the avatar feature): only what a test points it at, on loopback.
async fn fetch(url: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(host))
        .await
        .ok()?
        .ok()?;
    s.write_all(
        format!("GET /{path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    Some(
        text.split_once("\r\n\r\n")
            .map_or(text.clone(), |(_, b)| b.to_string()),
    )
}

#[allow(clippy::too_many_lines)]
async fn answer(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut st = state.lock().await;
    let f = st.flaws;
    let cx = Ctx {
        origin: parts
            .headers
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        flaws: f,
    };
    let path = parts.uri.path().to_string();
    let q = parts.uri.query();
    let method = parts.method.as_str().to_string();
    let segs: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let json_body = || -> Result<Value, ()> {
        if body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&body).map_err(|_| ())
    };
    let bad_json = |cx: &Ctx| {
        if f.verbose_errors {
            err(cx, StatusCode::INTERNAL_SERVER_ERROR, "Traceback (most recent call last):\n  File \"app.py\", line 88, in handler\njson.decoder.JSONDecodeError: Expecting value")
        } else {
            err(cx, StatusCode::BAD_REQUEST, "the body is not valid JSON")
        }
    };
    // public operations
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["status"]) => return reply(&cx, StatusCode::OK, json!({"status": "ok"})),
        ("GET", [".well-known", "jwks.json"]) if rs256_mode(&f) => {
            return reply(&cx, StatusCode::OK, jwks())
        }
        ("GET", ["status", "details"]) => {
            let mut v = json!({"version": "2.0.1", "uptime": 12});
            if f.debug {
                v["config"] = json!({"database": "postgres://shop@db/shop", "jwt_secret": f.secret(), "debug": true});
            }
            return reply(&cx, StatusCode::OK, v);
        }
        ("POST", ["newsletter"]) => {
            let Ok(v) = json_body() else {
                return bad_json(&cx);
            };
            let email = v["email"].as_str().unwrap_or("");
            if f.redos && email.len() > 1000 && !email.contains('@') {
                // ^([a-zA-Z0-9]+)+@…$ backtracking on a long run without `@`; its cost simulated
                drop(st);
                tokio::time::sleep(Duration::from_millis(1700)).await;
                return err(&cx, StatusCode::BAD_REQUEST, "invalid e-mail");
            }
            return reply(&cx, StatusCode::OK, json!({"subscribed": true}));
        }
        ("POST", ["auth", "login"]) => {
            let Ok(v) = json_body() else {
                return bad_json(&cx);
            };
            let user = v["username"].as_str().unwrap_or("").to_string();
            if !f.login_unlimited {
                let e = st
                    .failures
                    .entry(user.clone())
                    .or_insert((Instant::now(), 0));
                if e.0.elapsed() > Duration::from_secs(60) {
                    *e = (Instant::now(), 0);
                }
                if e.1 >= 5 {
                    return err(
                        &cx,
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many attempts, try later",
                    );
                }
            }
            let known = st.passwords.get(&user).cloned();
            let ok = match (&known, &v["password"]) {
                (Some(p), Value::String(s)) => p == s,
                (Some(_), Value::Object(o)) => f.nosql && o.contains_key("$ne"),
                _ => false,
            };
            if ok {
                let staff = st.accounts.get(&user).is_some_and(|a| a["role"] == "staff");
                return reply(
                    &cx,
                    StatusCode::OK,
                    json!({"token": token(&f, &user, staff)}),
                );
            }
            if let Some(e) = st.failures.get_mut(&user) {
                e.1 += 1;
            }
            let msg = if f.user_enum && known.is_none() {
                "no such user"
            } else {
                "invalid username or password"
            };
            return err(&cx, StatusCode::UNAUTHORIZED, msg);
        }
        ("GET", ["invoices"]) if f.unauthenticated => {
            let all = st.invoices.clone();
            return reply(&cx, StatusCode::OK, Value::Array(all));
        }
        _ => {}
    }
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let Some(who) = claims(&st, auth) else {
        return err(&cx, StatusCode::UNAUTHORIZED, "unauthorized");
    };
    let sub = who["sub"].as_str().unwrap_or("").to_string();
    let staff = st.accounts.get(&sub).is_some_and(|a| a["role"] == "staff");
    if !f.no_rate_limit && method == "GET" {
        let key = (sub.clone(), path.clone());
        let e = st.hits.entry(key).or_insert((Instant::now(), 0));
        if e.0.elapsed() > Duration::from_secs(10) {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
        if e.1 > 30 {
            return err(&cx, StatusCode::TOO_MANY_REQUESTS, "slow down");
        }
    }
    let account = |st: &State, name: &str| -> Option<Value> {
        let mut a = st.accounts.get(name)?.clone();
        if f.excess_data {
            a["password_hash"] =
                json!("$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW");
        }
        Some(a)
    };
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["me"]) => match account(&st, &sub) {
            Some(a) => reply(&cx, StatusCode::OK, a),
            None => err(&cx, StatusCode::NOT_FOUND, "no account"),
        },
        ("PUT", ["me"]) => {
            let Ok(v) = json_body() else {
                return bad_json(&cx);
            };
            let Some(a) = st.accounts.get_mut(&sub) else {
                return err(&cx, StatusCode::NOT_FOUND, "no account");
            };
            for (k, x) in v.as_object().into_iter().flatten() {
                if k == "display_name"
                    || k == "email"
                    || (f.mass_assignment && (k == "role" || k == "credit"))
                {
                    a[k] = x.clone();
                }
            }
            let a = account(&st, &sub).unwrap_or_default();
            reply(&cx, StatusCode::OK, a)
        }
        ("POST", ["me", "avatar"]) => {
            let Ok(v) = json_body() else {
                return bad_json(&cx);
            };
            let url = v["image_url"].as_str().unwrap_or("").to_string();
            if url.starts_with("http://") {
                let host = url
                    .trim_start_matches("http://")
                    .split(['/', ':'])
                    .next()
                    .unwrap_or("");
                let internal = host == "localhost"
                    || host.starts_with("127.")
                    || host.starts_with("10.")
                    || host.starts_with("192.168.");
                if internal && !f.ssrf {
                    return err(
                        &cx,
                        StatusCode::BAD_REQUEST,
                        "the picture must be on a public host",
                    );
                }
                drop(st);
                let got = fetch(&url).await.unwrap_or_default();
                let preview: String = got.chars().take(80).collect();
                return reply(
                    &cx,
                    StatusCode::OK,
                    json!({"avatar": {"bytes": got.len(), "preview": preview}}),
                );
            }
            reply(&cx, StatusCode::OK, json!({"avatar": {"stored": true}}))
        }
        ("GET", ["accounts"]) => {
            if !(staff || f.bfla) {
                return err(&cx, StatusCode::FORBIDDEN, "staff only");
            }
            let names: Vec<String> = st.accounts.keys().cloned().collect();
            let all: Vec<Value> = names.iter().filter_map(|n| account(&st, n)).collect();
            reply(&cx, StatusCode::OK, Value::Array(all))
        }
        ("PUT", ["accounts", name, "role"]) => {
            if !(staff || f.bfla_write) {
                return err(&cx, StatusCode::FORBIDDEN, "administrators only");
            }
            let Ok(v) = json_body() else {
                return bad_json(&cx);
            };
            let role = v["role"].as_str().unwrap_or("");
            if role != "customer" && role != "staff" {
                return err(&cx, StatusCode::BAD_REQUEST, "role: customer or staff");
            }
            match st.accounts.get_mut(*name) {
                Some(a) => {
                    a["role"] = json!(role);
                    let a = a.clone();
                    reply(&cx, StatusCode::OK, a)
                }
                None => err(&cx, StatusCode::NOT_FOUND, "no such account"),
            }
        }
        ("GET", ["orders"]) => {
            let status = query(q, "status");
            let mine: Vec<Value> = st
                .orders
                .values()
                .filter(|o| o["customer"] == sub.as_str())
                .filter(|o| status.as_deref().is_none_or(|s| o["status"] == s))
                .cloned()
                .collect();
            reply(&cx, StatusCode::OK, json!({"data": mine}))
        }
        ("POST", ["orders"]) => {
            let Ok(v) = json_body() else {
                return bad_json(&cx);
            };
            let qty = v["quantity"].as_i64().unwrap_or(0);
            if v["item"].as_str().is_none() || !(1..=10).contains(&qty) {
                return err(
                    &cx,
                    StatusCode::BAD_REQUEST,
                    "item and quantity (1 to 10) are required",
                );
            }
            let city = v["shipping"]["city"].as_str().unwrap_or("").to_string();
            st.next += 1;
            let id = format!("ord_{}", st.next);
            let order = json!({"id": id, "customer": sub, "item": v["item"], "quantity": qty,
                "note": v["note"].as_str().unwrap_or(""), "status": "open", "shipping": v["shipping"]});
            st.orders.insert(id, order.clone());
            if f.cmd_injection && (city.contains(";sleep 2") || city.contains("$(sleep 2)")) {
                // the label printer is called through a shell with the city in it
                drop(st);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            reply(&cx, StatusCode::CREATED, order)
        }
        (m, ["orders", id, rest @ ..]) => {
            let Some(order) = st.orders.get(*id).cloned() else {
                return err(&cx, StatusCode::NOT_FOUND, "no such order");
            };
            let mine = order["customer"] == sub.as_str() || staff;
            let allowed = mine
                || match (m, rest) {
                    ("GET", []) => f.bola,
                    ("PATCH", []) => f.bola_write,
                    ("DELETE", []) => f.bola_delete,
                    ("POST", ["refund"]) => f.bola_action,
                    _ => false,
                };
            if !allowed {
                return err(&cx, StatusCode::NOT_FOUND, "no such order");
            }
            match (m, rest) {
                ("GET", []) => reply(&cx, StatusCode::OK, order),
                ("PATCH", []) => {
                    let Ok(v) = json_body() else {
                        return bad_json(&cx);
                    };
                    let o = st.orders.get_mut(*id).unwrap();
                    if let Some(n) = v["note"].as_str() {
                        o["note"] = json!(n);
                    }
                    let o = o.clone();
                    reply(&cx, StatusCode::OK, o)
                }
                ("DELETE", []) => {
                    st.orders.remove(*id);
                    Response::builder()
                        .status(204)
                        .body(Full::new(Bytes::new()))
                        .unwrap()
                }
                ("POST", ["refund"]) => {
                    if let Some(o) = st.orders.get_mut(*id) {
                        o["status"] = json!("refunded");
                    }
                    reply(&cx, StatusCode::OK, json!({"refunded": true}))
                }
                _ => err(&cx, StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            }
        }
        ("GET", ["invoices"]) => {
            let mine: Vec<Value> = st
                .invoices
                .iter()
                .filter(|i| i["customer"] == sub.as_str())
                .cloned()
                .collect();
            reply(&cx, StatusCode::OK, Value::Array(mine))
        }
        ("POST", ["invoices", "lookup"]) => {
            let Ok(v) = json_body() else {
                return bad_json(&cx);
            };
            let n = v["invoiceNumber"].as_str().unwrap_or("");
            match st
                .invoices
                .iter()
                .find(|i| i["invoiceNumber"] == n && (f.bola_body || i["customer"] == sub.as_str()))
            {
                Some(i) => reply(&cx, StatusCode::OK, i.clone()),
                None => err(&cx, StatusCode::NOT_FOUND, "no such invoice"),
            }
        }
        ("GET", ["products", "search"]) => {
            let term = query(q, "q").unwrap_or_default();
            let region = cookie(&parts.headers, "region").unwrap_or_default();
            if f.sqli_time && region.contains("SLEEP(") {
                drop(st);
                tokio::time::sleep(Duration::from_secs(2)).await;
                return reply(&cx, StatusCode::OK, json!({"results": []}));
            }
            let products = json!([{"slug": "red-mug", "name": "Red mug", "price": 9.5, "hidden": false},
                                  {"slug": "prototype-x", "name": "Prototype X", "price": 999.0, "hidden": true}]);
            // WHERE name LIKE '%{term}%' AND hidden = false, as the flawed code writes it
            let quotes = term.matches('\'').count();
            if (f.sqli || f.sqli_boolean) && quotes % 2 == 1 {
                if f.sqli {
                    return err(&cx, StatusCode::INTERNAL_SERVER_ERROR, "SQLSTATE[42601]: syntax error at or near \"%\" LINE 1: ...WHERE name LIKE '%x'%'");
                }
                return reply(&cx, StatusCode::OK, json!({"results": []}));
            }
            let all = f.sqli_boolean && term.contains("' OR '1'='1");
            let lower = term.to_lowercase();
            let hits: Vec<Value> = products
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| {
                    all || (p["hidden"] == false
                        && p["slug"].as_str().unwrap().contains(lower.as_str()))
                })
                .map(|p| json!({"slug": p["slug"], "name": p["name"], "price": p["price"]}))
                .collect();
            reply(&cx, StatusCode::OK, json!({"results": hits}))
        }
        ("GET", ["products", slug]) => {
            if *slug == "red-mug" {
                return reply(
                    &cx,
                    StatusCode::OK,
                    json!({"slug": "red-mug", "name": "Red mug", "price": 9.5}),
                );
            }
            let msg = format!("no product called {slug}");
            err(
                &cx,
                StatusCode::NOT_FOUND,
                &if f.template { render(&msg) } else { msg },
            )
        }
        ("GET", ["pages", "help"]) => {
            let topic = query(q, "topic").unwrap_or_default();
            let shown = if f.xss {
                topic
            } else {
                topic
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&quot;")
            };
            raw(
                &cx,
                StatusCode::OK,
                "text/html; charset=utf-8",
                format!("<!doctype html><h1>Help: {shown}</h1><p>Ask us anything.</p>"),
            )
        }
        ("GET", ["files"]) => {
            let name = query(q, "name").unwrap_or_default();
            if name == "terms.txt" {
                return raw(&cx, StatusCode::OK, "text/plain", "Terms of sale.".into());
            }
            if f.traversal && name.contains("../") && name.ends_with("etc/passwd") {
                return raw(
                    &cx,
                    StatusCode::OK,
                    "text/plain",
                    "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n"
                        .into(),
                );
            }
            err(&cx, StatusCode::NOT_FOUND, "no such document")
        }
        _ => err(&cx, StatusCode::NOT_FOUND, "not found"),
    }
}

/// Starts the sample API with these flaws on 127.0.0.1.
pub async fn start(flaws: Flaws) -> SocketAddr {
    start_inner(flaws, None, 0).await
}

/// The same on a given port.
#[allow(dead_code)]
pub async fn start_on(flaws: Flaws, port: u16) -> SocketAddr {
    start_inner(flaws, None, port).await
}

/// The same over TLS (rustls, modern protocols only) with this certificate and key (PEM).
pub async fn start_tls(flaws: Flaws, cert: &str, key: &str) -> SocketAddr {
    use rustls_pki_types::pem::PemObject as _;
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    start_inner(
        flaws,
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))),
        0,
    )
    .await
}

async fn start_inner(
    flaws: Flaws,
    tls: Option<tokio_rustls::TlsAcceptor>,
    port: u16,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut accounts = BTreeMap::new();
    let mut passwords = HashMap::new();
    for (name, display, role) in [
        ("alice", "Alice", "customer"),
        ("bob", "Bob", "customer"),
        ("root", "Root", "staff"),
    ] {
        accounts.insert(
            name.to_string(),
            json!({"username": name, "email": format!("{name}@shop.example"), "display_name": display, "role": role, "credit": 0}),
        );
        passwords.insert(name.to_string(), format!("{name}-long-password-1"));
    }
    let mut orders = BTreeMap::new();
    for (id, customer) in [("ord_1", "alice"), ("ord_2", "bob")] {
        orders.insert(
            id.to_string(),
            json!({"id": id, "customer": customer, "item": "red-mug", "quantity": 1, "note": "", "status": "open",
                   "shipping": {"street": "1 Main St", "city": "Lyon"}}),
        );
    }
    let invoices = vec![
        json!({"invoiceNumber": "INV-1001", "customer": "alice", "amount": 9.5}),
        json!({"invoiceNumber": "INV-1002", "customer": "bob", "amount": 19.0}),
    ];
    let state = Arc::new(Mutex::new(State {
        flaws,
        accounts,
        passwords,
        orders,
        invoices,
        next: 100,
        hits: HashMap::new(),
        failures: HashMap::new(),
    }));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let st = state.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let st = st.clone();
                    async move { Ok::<_, Infallible>(answer(st, req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                match tls {
                    None => {
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                            .await;
                    }
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            let _ = builder
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                .await;
                        }
                    }
                }
            });
        }
    });
    addr
}
