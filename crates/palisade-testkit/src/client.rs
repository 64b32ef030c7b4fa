use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response as a client saw it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// Protocol version.
    pub version: Version,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json_lite::Value {
        serde_json_lite::parse(&self.body)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// Minimal JSON access for tests without pulling serde into the testkit's API.
pub mod serde_json_lite {
    /// Re-export of a parsed JSON value.
    pub type Value = serde_json::Value;
    /// Parses bytes as JSON (panics on invalid JSON: a test failure).
    pub fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
    }
}

/// A plain-HTTP client (HTTP/1.1, or h2 with prior knowledge).
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    /// An HTTP/1.1 client.
    pub fn h1() -> Self {
        HttpClient {
            inner: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// An h2c (prior knowledge) client.
    pub fn h2c() -> Self {
        HttpClient {
            inner: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    /// Sends a request.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, String> {
        let mut b = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| e.to_string())?;
        let res = tokio::time::timeout(Duration::from_secs(30), self.inner.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            version: parts.version,
        })
    }

    /// Sends a request over TLS to `addr`, with SNI `sni`, trusting `ca_pem`; `h2` offers only
    /// h2 in ALPN, otherwise only http/1.1. Returns the reply and the negotiated ALPN.
    pub async fn send_tls(
        addr: SocketAddr,
        sni: &str,
        ca_pem: &str,
        h2: bool,
        req: Request<Full<Bytes>>,
    ) -> Result<(Reply, Option<Vec<u8>>, Vec<CertificateDer<'static>>), String> {
        let tls = tls_connect(
            addr,
            sni,
            ca_pem,
            if h2 { &[b"h2"] } else { &[b"http/1.1"] },
        )
        .await?;
        let (_, conn) = tls.get_ref();
        let alpn = conn.alpn_protocol().map(|a| a.to_vec());
        let peer = conn
            .peer_certificates()
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let io = TokioIo::new(tls);
        let res = if alpn.as_deref() == Some(b"h2") {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            send.send_request(req).await.map_err(|e| e.to_string())?
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            send.send_request(req).await.map_err(|e| e.to_string())?
        };
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((
            Reply {
                status: parts.status,
                headers: parts.headers,
                body,
                version: parts.version,
            },
            alpn,
            peer,
        ))
    }
}

/// Opens a TLS connection to `addr` with SNI `sni`, trusting only `ca_pem`.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    tls_connect_as(addr, sni, ca_pem, alpn, None).await
}

/// Sends one HTTP/1.1 request over TLS, presenting the client certificate `client`
/// (certificate PEM, key PEM) when given.
pub async fn send_mtls(
    addr: SocketAddr,
    sni: &str,
    ca_pem: &str,
    client: Option<(&str, &str)>,
    req: Request<Full<Bytes>>,
) -> Result<Reply, String> {
    let tls = tls_connect_as(addr, sni, ca_pem, &[b"http/1.1"], client).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let res = send.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = res.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
        version: parts.version,
    })
}

/// [`tls_connect`] with an optional client certificate (certificate PEM, key PEM).
pub async fn tls_connect_as(
    addr: SocketAddr,
    sni: &str,
    ca_pem: &str,
    alpn: &[&[u8]],
    client: Option<(&str, &str)>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let mut cfg = match client {
        None => cfg.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| e.to_string())?;
            cfg.with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// GET over HTTP/1.1.
pub async fn get(url: &str) -> Reply {
    HttpClient::h1()
        .send(Method::GET, url, &[], b"")
        .await
        .unwrap()
}

/// Writes raw bytes to `addr` and reads until the server closes or `wait` passes in silence.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}
