//! The scanner's only way out: HTTP/1.1 requests to the one target, within a request budget
//! and a rate, never following redirects, never to another host.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

/// A request and its answer, kept as evidence.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exchange {
    /// `GET /users/1`, with the headers that matter (credentials masked).
    pub request: String,
    /// Status code.
    pub status: u16,
    /// Response headers, lower-case names.
    #[serde(skip)]
    pub headers: Vec<(String, String)>,
    /// Response body (at most 64 KiB kept).
    #[serde(skip)]
    pub body: String,
    /// The first 300 characters of the body, for reports.
    pub excerpt: String,
    /// How long the answer took.
    pub millis: u64,
}

impl Exchange {
    /// A response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The target and the limits.
pub struct Client {
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    host: String,
    port: u16,
    base_path: String,
    budget: u64,
    reserve: std::sync::atomic::AtomicU64,
    used: AtomicU64,
    interval: Duration,
    next: Mutex<Instant>,
}

/// Why a request was not made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The request budget is spent.
    Budget,
    /// The target could not be reached.
    Network(String),
    /// An identity of the scan is not accepted: the scan stops.
    Identity(String),
}

impl Client {
    /// A client for `target` (`http://host:port/base`), at most `budget` requests, `rate` per
    /// second.
    pub fn new(
        target: &str,
        budget: u64,
        rate: u32,
        ca_pem: Option<&str>,
    ) -> Result<Client, String> {
        let uri: http::Uri = target
            .parse()
            .map_err(|_| format!("`{target}` is not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => {
                let mut roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                if let Some(pem) = ca_pem {
                    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes()) {
                        let c: rustls_pki_types::CertificateDer<'static> =
                            c.map_err(|e| format!("the CA file: {e}"))?;
                        roots.add(c).map_err(|e| format!("the CA file: {e}"))?;
                    }
                }
                let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
                Some(std::sync::Arc::new(cfg))
            }
            _ => return Err(format!("`{target}` is not an http(s) URL")),
        };
        let host = uri.host().ok_or("the target has no host")?.to_string();
        Ok(Client {
            port: uri
                .port_u16()
                .unwrap_or(if tls.is_some() { 443 } else { 80 }),
            tls,
            base_path: uri.path().trim_end_matches('/').to_string(),
            host,
            budget,
            reserve: AtomicU64::new((budget / 10).min(64)),
            used: AtomicU64::new(0),
            interval: Duration::from_secs_f64(1.0 / f64::from(rate.max(1))),
            next: Mutex::new(Instant::now()),
        })
    }

    /// The target's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The target's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the target is https.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Lets the requests kept back for cleaning up be used (the budget still holds: the
    /// checks were given the budget less that reserve).
    pub fn release_reserve(&self) {
        self.reserve.store(0, Ordering::Relaxed);
    }

    /// Requests made so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Sends one request to the target. `path` is relative to the target's base path.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<(&str, String)>,
        masked_header: Option<&str>,
    ) -> Result<Exchange, Refused> {
        // counted only when sent: the report's count is the number of requests made
        if self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n + self.reserve.load(Ordering::Relaxed) < self.budget).then_some(n + 1)
            })
            .is_err()
        {
            return Err(Refused::Budget);
        }
        {
            // pacing: one request per interval
            let mut next = self.next.lock().await;
            let now = Instant::now();
            if *next > now {
                tokio::time::sleep(*next - now).await;
            }
            *next = Instant::now().max(*next) + self.interval;
        }
        let started = Instant::now();
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_path))
            .header(http::header::HOST, format!("{}:{}", self.host, self.port))
            .header(
                http::header::USER_AGENT,
                concat!("palisade-scan/", env!("CARGO_PKG_VERSION")),
            );
        let mut shown = format!("{method} {}{path}", self.base_path);
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
            let masked =
                if is_credential(k) || masked_header.is_some_and(|m| k.eq_ignore_ascii_case(m)) {
                    mask(v)
                } else {
                    v.clone()
                };
            shown.push_str(&format!("\n{k}: {masked}"));
        }
        let body = match body {
            Some((ct, text)) => {
                b = b.header(http::header::CONTENT_TYPE, ct);
                let cut: String = text.chars().take(400).collect();
                let more = if cut.len() < text.len() {
                    format!("… ({} bytes)", text.len())
                } else {
                    String::new()
                };
                shown.push_str(&format!("\ncontent-type: {ct}\n\n{cut}{more}"));
                Some(text)
            }
            None => None,
        };
        let req = b
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Refused::Network(e.to_string()))?;
        let fut = async {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| Refused::Network(format!("connect: {e}")))?;
            let res = match &self.tls {
                None => send_over(TokioIo::new(tcp), req).await?,
                Some(cfg) => {
                    let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                        .map_err(|e| Refused::Network(e.to_string()))?;
                    let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|e| Refused::Network(format!("TLS: {e}")))?;
                    send_over(TokioIo::new(tls), req).await?
                }
            };
            let (parts, body) = res.into_parts();
            let bytes = Limited::new(body, 64 * 1024)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Ok::<_, Refused>((parts, bytes))
        };
        let (parts, bytes) = tokio::time::timeout(Duration::from_secs(15), fut)
            .await
            .map_err(|_| Refused::Network("no answer within 15 s".into()))??;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(Exchange {
            request: shown,
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            excerpt: mask_tokens(&text.chars().take(300).collect::<String>()),
            body: text,
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// Headers that carry credentials: masked in evidence.
fn is_credential(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "proxy-authorization"
        || n.contains("api-key")
        || n.contains("apikey")
        || n.contains("token")
        || n.contains("session")
}

/// Text with every JWT in it masked (an answer that hands out a token is evidence, the token
/// is not).
pub fn mask_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("eyJ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
            .unwrap_or(tail.len());
        let candidate = &tail[..end];
        if candidate.matches('.').count() == 2 && candidate.len() > 20 {
            out.push_str(&mask(candidate));
        } else {
            out.push_str(candidate);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A credential as evidence: enough to tell two apart, never enough to reuse. A JWT keeps its
/// header (algorithm, `kid`) and the start of its claims; every value ends with a SHA-256
/// prefix of the whole, so two forged tokens never look alike.
pub fn mask(v: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, v.as_bytes());
    let hash = palisade_core::hex::encode(digest.as_ref().get(..6).unwrap_or_default());
    let (scheme, token) = v.split_once(' ').unwrap_or(("", v));
    let shown = match token.split_once('.') {
        Some((header, rest)) if header.starts_with("eyJ") && header.len() <= 200 => {
            let start: String = rest.chars().take(8).collect();
            format!("{header}.{start}")
        }
        _ => token.chars().take(6).collect(),
    };
    let scheme = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme} ")
    };
    format!("{scheme}{shown}… (sha256 {hash})")
}

async fn send_over<T>(
    io: TokioIo<T>,
    req: http::Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, Refused>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Refused::Network(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| Refused::Network(e.to_string()))
}
