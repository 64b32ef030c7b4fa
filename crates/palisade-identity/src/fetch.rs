//! A small HTTPS GET client for key sets and discovery documents: one request per connection,
//! bounded in time and size, no redirects, TLS verified against the configured CA or the
//! Mozilla roots. Plain HTTP only when the issuer says `dangerous_allow_http`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

/// Largest document accepted.
pub const MAX_BYTES: usize = 1024 * 1024;

/// How to fetch.
#[derive(Clone)]
pub struct Fetcher {
    tls: Arc<rustls::ClientConfig>,
    allow_http: bool,
    timeout: Duration,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("allow_http", &self.allow_http)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The Mozilla root certificates.
pub fn public_roots() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

impl Fetcher {
    /// A fetcher trusting `roots`.
    pub fn new(
        roots: rustls::RootCertStore,
        allow_http: bool,
        timeout: Duration,
    ) -> Result<Fetcher, String> {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Fetcher {
            tls: Arc::new(tls),
            allow_http,
            timeout,
        })
    }

    /// GETs `url` and returns the body of a 200 answer.
    pub async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        tokio::time::timeout(self.timeout, self.request(url, None))
            .await
            .map_err(|_| format!("{url}: no answer within {:?}", self.timeout))?
    }

    /// POSTs a form to `url` with HTTP Basic client authentication (RFC 7662 section 2.1);
    /// returns the body of a 200 answer. The credentials are never logged.
    pub async fn post_form(
        &self,
        url: &str,
        basic: (&str, &str),
        body: &str,
    ) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        let creds = format!(
            "{}:{}",
            crate::issuer::form_encode(basic.0),
            crate::issuer::form_encode(basic.1)
        );
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        );
        tokio::time::timeout(
            self.timeout,
            self.request(url, Some((auth, body.to_string()))),
        )
        .await
        .map_err(|_| format!("{url}: no answer within {:?}", self.timeout))?
    }

    async fn request(&self, url: &str, form: Option<(String, String)>) -> Result<Vec<u8>, String> {
        let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if self.allow_http => false,
            Some("http") => {
                return Err(format!(
                    "{url}: plain http is refused for keys (set dangerous_allow_http on the issuer to allow it)"
                ))
            }
            _ => return Err(format!("`{url}` is not an http(s) URL")),
        };
        let host = uri.host().ok_or_else(|| format!("`{url}` has no host"))?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::net::TcpStream::connect((bare, port))
            .await
            .map_err(|e| format!("{url}: connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let pq = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let mut b = http::Request::builder()
            .uri(pq)
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("palisade/", env!("CARGO_PKG_VERSION")),
            );
        let body = match form {
            None => {
                b = b.method(http::Method::GET);
                Bytes::new()
            }
            Some((auth, body)) => {
                b = b
                    .method(http::Method::POST)
                    .header(http::header::AUTHORIZATION, auth)
                    .header(
                        http::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    );
                Bytes::from(body)
            }
        };
        let req = b.body(Full::new(body)).map_err(|e| e.to_string())?;
        let res = if https {
            let name = rustls_pki_types::ServerName::try_from(bare.to_string())
                .map_err(|_| format!("`{host}` is not a valid server name"))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("{url}: TLS: {e}"))?;
            send(TokioIo::new(tls), req).await
        } else {
            send(TokioIo::new(tcp), req).await
        }
        .map_err(|e| format!("{url}: {e}"))?;
        if res.status() != http::StatusCode::OK {
            return Err(format!("{url}: answered {}", res.status()));
        }
        let body = Limited::new(res.into_body(), MAX_BYTES)
            .collect()
            .await
            .map_err(|e| format!("{url}: body: {e}"))?;
        Ok(body.to_bytes().to_vec())
    }
}

async fn send<T>(
    io: TokioIo<T>,
    req: http::Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))
}
