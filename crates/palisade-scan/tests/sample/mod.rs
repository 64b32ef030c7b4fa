//! A deliberately vulnerable API for the scanner's tests (test only): users, an admin area,
//! an order search. Every flaw is behind a switch; all off is the fixed variant.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};

/// The planted flaws.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flaws {
    pub unauthenticated: bool,
    pub alg_none: bool,
    pub no_verify: bool,
    pub weak_secret: bool,
    pub bola: bool,
    pub bfla: bool,
    pub mass_assignment: bool,
    pub sqli: bool,
    pub verbose_errors: bool,
    pub no_rate_limit: bool,
    pub cors: bool,
    pub excess_data: bool,
    pub missing_headers: bool,
    pub bola_write: bool,
    pub user_enum: bool,
    pub sqli_boolean: bool,
    pub nosql: bool,
    pub cmd_injection: bool,
    pub redos: bool,
    pub sqli_time: bool,
}

impl Flaws {
    pub fn all() -> Flaws {
        Flaws {
            unauthenticated: true,
            alg_none: true,
            no_verify: true,
            weak_secret: true,
            bola: true,
            bfla: true,
            mass_assignment: true,
            sqli: true,
            verbose_errors: true,
            no_rate_limit: true,
            cors: true,
            excess_data: true,
            missing_headers: true,
            bola_write: true,
            user_enum: true,
            sqli_boolean: true,
            nosql: true,
            cmd_injection: true,
            redos: true,
            sqli_time: true,
        }
    }
    pub fn secret(&self) -> &'static str {
        if self.weak_secret {
            "changeme"
        } else {
            "a-long-random-secret-6f1c2a9e0b7d44e8a1c3"
        }
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// An HS256 token for `sub` (and the admin group).
pub fn token(flaws: &Flaws, sub: &str, admin: bool) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let mut claims = json!({"sub": sub, "exp": exp});
    if admin {
        claims["groups"] = json!(["admin"]);
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

struct State {
    flaws: Flaws,
    users: HashMap<String, Value>,
    hits: HashMap<(String, String), (Instant, u32)>,
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
    if f.no_verify || (f.alg_none && header["alg"] == "none") {
        return Some(payload);
    }
    if header["alg"] != "HS256" {
        return None;
    }
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, f.secret().as_bytes());
    aws_lc_rs::hmac::verify(&k, format!("{h}.{p}").as_bytes(), &d(s)?).ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    (payload["exp"].as_u64()? > now).then_some(payload)
}

fn reply(
    st: &State,
    status: StatusCode,
    body: Value,
    origin: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if !st.flaws.missing_headers {
        r = r
            .header("x-content-type-options", "nosniff")
            .header("cache-control", "no-store");
    }
    if let (true, Some(o)) = (st.flaws.cors, origin) {
        r = r
            .header("access-control-allow-origin", o)
            .header("access-control-allow-credentials", "true");
    }
    r.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

async fn answer(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut st = state.lock().await;
    let origin = parts
        .headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let origin = origin.as_deref();
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let who = claims(&st, auth);
    let path = parts.uri.path().to_string();
    if path == "/health" {
        return reply(&st, StatusCode::OK, json!({"status": "ok"}), origin);
    }
    if path == "/login" && parts.method == http::Method::POST {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let user = v["username"].as_str().unwrap_or("");
        let known = st.users.contains_key(user);
        let msg = if st.flaws.user_enum && !known {
            "no such user"
        } else {
            "invalid username or password"
        };
        return reply(&st, StatusCode::UNAUTHORIZED, json!({"error": msg}), origin);
    }
    let Some(who) = who.or_else(|| {
        st.flaws
            .unauthenticated
            .then(|| json!({"sub": "anonymous"}))
    }) else {
        return reply(
            &st,
            StatusCode::UNAUTHORIZED,
            json!({"error": "unauthorized"}),
            origin,
        );
    };
    let sub = who["sub"].as_str().unwrap_or("").to_string();
    let admin = who["groups"]
        .as_array()
        .is_some_and(|g| g.iter().any(|x| x == "admin"));
    if !st.flaws.no_rate_limit {
        let key = (sub.clone(), path.clone());
        let now = Instant::now();
        let e = st.hits.entry(key).or_insert((now, 0));
        if now.duration_since(e.0) > Duration::from_secs(10) {
            *e = (now, 0);
        }
        e.1 += 1;
        if e.1 > 20 {
            return reply(
                &st,
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": "slow down"}),
                origin,
            );
        }
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (parts.method.as_str(), segs.as_slice()) {
        ("GET", ["users", id]) => {
            if !(st.flaws.bola
                || admin
                || sub == *id
                || st.flaws.unauthenticated && sub == "anonymous")
            {
                return reply(
                    &st,
                    StatusCode::FORBIDDEN,
                    json!({"error": "forbidden"}),
                    origin,
                );
            }
            match st.users.get(*id) {
                Some(u) => {
                    let mut u = u.clone();
                    if st.flaws.excess_data {
                        u["password_hash"] = json!("$2b$12$KIXQz0y1");
                    }
                    reply(&st, StatusCode::OK, u, origin)
                }
                None => reply(
                    &st,
                    StatusCode::NOT_FOUND,
                    json!({"error": "no such user"}),
                    origin,
                ),
            }
        }
        ("PUT", ["users", id]) => {
            if !(admin || sub == *id || st.flaws.bola_write) {
                return reply(
                    &st,
                    StatusCode::FORBIDDEN,
                    json!({"error": "forbidden"}),
                    origin,
                );
            }
            let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mass = st.flaws.mass_assignment;
            if let Some(u) = st.users.get_mut(*id) {
                for (k, v) in patch.as_object().into_iter().flatten() {
                    if k == "name" || mass {
                        u[k] = v.clone();
                    }
                }
            }
            let u = st.users.get(*id).cloned().unwrap_or(Value::Null);
            reply(&st, StatusCode::OK, u, origin)
        }
        ("GET", ["admin", "stats"]) => {
            if !(admin || st.flaws.bfla) {
                return reply(
                    &st,
                    StatusCode::FORBIDDEN,
                    json!({"error": "forbidden"}),
                    origin,
                );
            }
            let n = st.users.len();
            reply(&st, StatusCode::OK, json!({"users": n}), origin)
        }
        ("GET", ["orders"]) => {
            let q = parts.uri.query().unwrap_or("");
            let lone_quote = (q.contains("%27") || q.contains('\'')) && !q.contains("AND");
            if lone_quote {
                if st.flaws.sqli {
                    return reply(
                        &st,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"error": "You have an error in your SQL syntax near ''' at line 1 (SQLSTATE 42000)"}),
                        origin,
                    );
                }
                if st.flaws.verbose_errors {
                    return reply(
                        &st,
                        StatusCode::BAD_REQUEST,
                        json!({"error": "Traceback (most recent call last):\n  File \"orders.py\", line 12\nValueError: q"}),
                        origin,
                    );
                }
                return reply(
                    &st,
                    StatusCode::BAD_REQUEST,
                    json!({"error": "bad query"}),
                    origin,
                );
            }
            let decoded = q
                .replace("%20", " ")
                .replace("%27", "'")
                .replace("%3D", "=")
                .replace("%7B", "{")
                .replace("%22", "\"")
                .replace("%24", "$")
                .replace("%3A", ":")
                .replace("%7D", "}")
                .replace("%3B", ";");
            if st.flaws.cmd_injection && decoded.contains(";sleep") {
                drop(st);
                tokio::time::sleep(Duration::from_secs(2)).await;
                return Response::builder()
                    .status(200)
                    .body(Full::new(Bytes::from("{\"orders\":[]}")))
                    .unwrap();
            }
            if st.flaws.sqli_time && decoded.contains("SLEEP(") {
                drop(st);
                tokio::time::sleep(Duration::from_secs(2)).await;
                return Response::builder()
                    .status(200)
                    .body(Full::new(Bytes::from("{\"orders\":[]}")))
                    .unwrap();
            }
            if st.flaws.redos && decoded.len() > 1000 {
                drop(st);
                tokio::time::sleep(Duration::from_millis(1600)).await;
                return Response::builder()
                    .status(200)
                    .body(Full::new(Bytes::from("{\"orders\":[]}")))
                    .unwrap();
            }
            let all = json!({"orders": [{"id": 1, "owner": "alice"}, {"id": 2, "owner": "bob"}]});
            if st.flaws.sqli_boolean && decoded.contains("'1'='1") {
                return reply(&st, StatusCode::OK, all, origin);
            }
            if st.flaws.nosql && decoded.contains("$ne") {
                return reply(&st, StatusCode::OK, all, origin);
            }
            reply(&st, StatusCode::OK, json!({"orders": []}), origin)
        }
        _ => reply(
            &st,
            StatusCode::NOT_FOUND,
            json!({"error": "not found"}),
            origin,
        ),
    }
}

/// Starts the sample API with these flaws on 127.0.0.1.
pub async fn start(flaws: Flaws) -> SocketAddr {
    start_inner(flaws, None).await
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
    start_inner(flaws, Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))).await
}

async fn start_inner(flaws: Flaws, tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut users = HashMap::new();
    for (id, name) in [("alice", "Alice"), ("bob", "Bob"), ("root", "Root")] {
        users.insert(
            id.to_string(),
            json!({"id": id, "name": name, "role": if id == "root" { "admin" } else { "user" }}),
        );
    }
    let state = Arc::new(Mutex::new(State {
        flaws,
        users,
        hits: HashMap::new(),
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
