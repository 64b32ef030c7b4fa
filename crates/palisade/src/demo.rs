//! The built-in demo API used by `palisade quickstart`: a small JSON user directory with its
//! own OpenAPI description, served in-process on a loopback port. It doubles as a tiny token
//! issuer for the quickstart's JWT route: an ES256 key made at start, its JWK Set at
//! `/.well-known/jwks.json`, and `POST /token?sub=…&scope=…` (no client authentication: a demo,
//! never an identity provider).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The demo API's OpenAPI description.
pub const OPENAPI: &str = include_str!("../../../examples/demo-openapi.json");
/// The demo SOAP service's WSDL (`POST /soap`).
pub const WSDL: &str = include_str!("../../../examples/demo-orders.wsdl");

/// The demo SOAP service's answer to any body: a GetOrderResponse (the gateway in front is
/// what refuses what the WSDL does not allow).
fn soap_order() -> Response<Full<Bytes>> {
    let body = r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetOrderResponse xmlns="urn:demo:orders"><status>shipped</status></GetOrderResponse></soap:Body></soap:Envelope>"#;
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    r
}

struct Store {
    users: Vec<Value>,
    key: Option<aws_lc_rs::signature::EcdsaKeyPair>,
}

fn b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The demo issuer's name, as the quickstart config expects it.
pub const ISSUER: &str = "palisade-demo";

fn jwks(key: &aws_lc_rs::signature::EcdsaKeyPair) -> Value {
    use aws_lc_rs::signature::KeyPair as _;
    let p = key.public_key().as_ref();
    let (x, y) = (
        p.get(1..33).unwrap_or_default(),
        p.get(33..65).unwrap_or_default(),
    );
    json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "demo-1", "use": "sig", "alg": "ES256",
                     "x": b64(x), "y": b64(y)}]})
}

fn token(key: &aws_lc_rs::signature::EcdsaKeyPair, query: &str) -> Option<Value> {
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| {
                v.replace("%3A", ":")
                    .replace("%3a", ":")
                    .replace(['+'], " ")
                    .replace("%20", " ")
            })
    };
    let sub = param("sub").unwrap_or_else(|| "demo-user".into());
    let scope = param("scope").unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "demo-1"});
    let claims = json!({"iss": ISSUER, "aud": "demo-api", "sub": sub, "scope": scope,
                        "iat": now, "exp": now + 3600});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = key
        .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
        .ok()?;
    Some(
        json!({"access_token": format!("{input}.{}", b64(sig.as_ref())),
                "token_type": "Bearer", "expires_in": 3600, "scope": scope}),
    )
}

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn answer(store: Arc<Mutex<Store>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let segs: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
    match (&parts.method, segs.as_slice()) {
        (&Method::GET, ["health"]) => respond(StatusCode::OK, json!({"status": "ok"})),
        (&Method::GET, [".well-known", "jwks.json"]) => {
            let s = store.lock().unwrap_or_else(|p| p.into_inner());
            match &s.key {
                Some(k) => respond(StatusCode::OK, jwks(k)),
                None => respond(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "no key"})),
            }
        }
        (&Method::POST, ["token"]) => {
            let s = store.lock().unwrap_or_else(|p| p.into_inner());
            match s
                .key
                .as_ref()
                .and_then(|k| token(k, parts.uri.query().unwrap_or("")))
            {
                Some(t) => respond(StatusCode::OK, t),
                None => respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "cannot sign"}),
                ),
            }
        }
        (&Method::POST, ["soap"]) => soap_order(),
        (&Method::GET, ["soap"]) => {
            let mut r = Response::new(Full::new(Bytes::from_static(WSDL.as_bytes())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/xml; charset=utf-8"),
            );
            r
        }
        (&Method::GET, ["openapi.json"]) => {
            let v: Value = serde_json::from_str(OPENAPI).unwrap_or(Value::Null);
            respond(StatusCode::OK, v)
        }
        (&Method::GET, ["users"]) => {
            let users = store.lock().map(|s| s.users.clone()).unwrap_or_default();
            respond(StatusCode::OK, json!({"users": users}))
        }
        (&Method::GET, ["users", id]) => {
            let found = store.lock().ok().and_then(|s| {
                s.users
                    .iter()
                    .find(|u| u["id"].as_u64() == id.parse::<u64>().ok())
                    .cloned()
            });
            match found {
                Some(u) => respond(StatusCode::OK, u),
                None => respond(StatusCode::NOT_FOUND, json!({"error": "no such user"})),
            }
        }
        (&Method::POST, ["users"]) => {
            let bytes = match Limited::new(body, 64 * 1024).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => {
                    return respond(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        json!({"error": "body too large"}),
                    )
                }
            };
            let Ok(Value::Object(mut input)) = serde_json::from_slice::<Value>(&bytes) else {
                return respond(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "expected a JSON object"}),
                );
            };
            let Some(name) = input.remove("name").filter(Value::is_string) else {
                return respond(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "`name` (string) is required"}),
                );
            };
            let Ok(mut s) = store.lock() else {
                return respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "store unavailable"}),
                );
            };
            let id = s.users.len() + 1;
            let user = json!({"id": id, "name": name, "role": "user"});
            s.users.push(user.clone());
            respond(StatusCode::CREATED, user)
        }
        (_, ["admin", ..]) => respond(
            StatusCode::OK,
            json!({"stats": {"users": store.lock().map(|s| s.users.len()).unwrap_or(0)}}),
        ),
        (&Method::GET, ["reports", year]) => {
            respond(StatusCode::OK, json!({"year": year, "signups": 42}))
        }
        _ => respond(StatusCode::NOT_FOUND, json!({"error": "not found"})),
    }
}

/// Starts the demo API on `addr`; returns the bound address.
pub async fn start(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let key = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    )
    .ok();
    let store = Arc::new(Mutex::new(Store {
        users: vec![
            json!({"id": 1, "name": "Ada Lovelace", "role": "admin"}),
            json!({"id": 2, "name": "Grace Hopper", "role": "user"}),
        ],
        key,
    }));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let store = store.clone();
                    async move { Ok::<_, Infallible>(answer(store, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(local)
}

/// A few requests to the quickstart gateway on `public`, so that its console has something to
/// show at once: good ones, two attacks in headers, a call refused by address, one refused for
/// a missing key, and one a monitor-mode policy lets through. Only reads: the writes' rate
/// limit and everything the printed commands promise are untouched. Returns how many were
/// refused (or would have been).
pub async fn traffic(public: SocketAddr) -> usize {
    let requests: [(&str, &[(&str, &str)]); 7] = [
        ("/api/users", &[]),
        ("/api/users/1", &[]),
        ("/api/users", &[("x-search", "<script>alert(1)</script>")]),
        (
            "/api/users",
            &[(
                "referer",
                "http://shop.example/?q=1' UNION SELECT password FROM users--",
            )],
        ),
        ("/admin/stats", &[]),
        ("/partner/users", &[]),
        ("/reports/2026", &[]),
    ];
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let mut refused = 0;
    for (path, headers) in requests {
        let mut b = Request::builder()
            .method(Method::GET)
            .uri(format!("http://{public}{path}"))
            .header(header::USER_AGENT, "palisade-quickstart-demo");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let Ok(req) = b.body(Full::new(Bytes::new())) else {
            continue;
        };
        if let Ok(res) = client.request(req).await {
            if res.status().is_client_error() || path.starts_with("/reports") {
                refused += 1;
            }
            let _ = res.into_body().collect().await;
        }
    }
    refused
}
