use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// How a mock upstream answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// 200 with a small JSON body naming the upstream, the method and the path.
    Ok,
    /// This status, same body.
    Status(u16),
    /// Waits, then answers 200.
    Slow(Duration),
    /// Closes the TCP connection as soon as a request arrives.
    Reset,
    /// Writes bytes that are not HTTP, then closes.
    Garbage,
    /// 200 with a body of this many bytes.
    Large(usize),
}

/// A request the upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: Method,
    /// Request target.
    pub uri: Uri,
    /// Headers as received.
    pub headers: HeaderMap,
    /// Whole body (what arrived, when the stream was aborted).
    pub body: Bytes,
    /// Whether the body arrived completely (false: the sender aborted the stream).
    pub complete: bool,
}

/// A recording HTTP upstream on 127.0.0.1 (HTTP/1.1 and h2c).
#[derive(Clone)]
pub struct MockUpstream {
    /// Its address.
    pub addr: SocketAddr,
    name: String,
    behaviour: Arc<Mutex<Behaviour>>,
    seen: Arc<Mutex<Vec<Recorded>>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl MockUpstream {
    /// Starts an upstream answering `Behaviour::Ok`, named `name` (sent as `x-upstream`).
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, Behaviour::Ok).await
    }

    /// Starts an HTTPS upstream with this certificate; with `client_ca`, it requires a client
    /// certificate signed by that CA (mutual TLS) and refuses the handshake otherwise.
    pub async fn start_tls(
        name: &str,
        cert_pem: &str,
        key_pem: &str,
        client_ca: Option<&str>,
    ) -> Self {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let cfg = match client_ca {
            None => builder
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(c.unwrap()).unwrap();
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(certs, key)
                    .unwrap()
            }
        };
        Self::start_inner(
            name,
            Behaviour::Ok,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))),
        )
        .await
    }

    /// Starts an upstream with a behaviour.
    pub async fn start_with(name: &str, b: Behaviour) -> Self {
        Self::start_inner(name, b, None).await
    }

    async fn start_inner(name: &str, b: Behaviour, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let behaviour = Arc::new(Mutex::new(b));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (b2, s2, n2) = (behaviour.clone(), seen.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                let current = b2.lock().unwrap().clone();
                match current {
                    Behaviour::Reset => {
                        // read something, then slam the door
                        let mut buf = [0u8; 1024];
                        let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await;
                        drop(tcp);
                        continue;
                    }
                    Behaviour::Garbage => {
                        let mut buf = [0u8; 1024];
                        let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await;
                        let _ = tcp
                            .write_all(b"SSH-2.0-OpenSSH_9.0 this is not http\r\n\r\n")
                            .await;
                        continue;
                    }
                    _ => {}
                }
                let (b3, s3, n3, tls) = (b2.clone(), s2.clone(), n2.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (b4, s4, n4) = (b3.clone(), s3.clone(), n3.clone());
                        async move { Ok::<_, Infallible>(answer(req, &b4, &s4, &n4).await) }
                    });
                    if let Some(acceptor) = tls {
                        let Ok(stream) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                        return;
                    }
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
                });
            }
        });
        MockUpstream {
            addr,
            name: name.to_string(),
            behaviour,
            seen,
            task: Arc::new(task),
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the behaviour for new connections and requests.
    pub fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    /// Forgets recorded requests.
    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops accepting (existing connections finish).
    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn answer(
    req: Request<Incoming>,
    b: &Mutex<Behaviour>,
    seen: &Mutex<Vec<Recorded>>,
    name: &str,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let collected = body.collect().await.map(|c| c.to_bytes());
    let complete = collected.is_ok();
    let body = collected.unwrap_or_default();
    let body_len = body.len();
    seen.lock().unwrap().push(Recorded {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        headers: parts.headers.clone(),
        body,
        complete,
    });
    let current = b.lock().unwrap().clone();
    let mut status = 200;
    let mut payload = None;
    match current {
        Behaviour::Slow(d) => tokio::time::sleep(d).await,
        Behaviour::Status(s) => status = s,
        Behaviour::Large(n) => payload = Some(Bytes::from(vec![b'x'; n])),
        _ => {}
    }
    let payload = payload.unwrap_or_else(|| {
        Bytes::from(format!(
            "{{\"upstream\":\"{name}\",\"method\":\"{}\",\"path\":\"{}\",\"body_bytes\":{body_len}}}",
            parts.method,
            parts.uri.path()
        ))
    });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-upstream", name)
        .header("server", "mock/1.0")
        .body(Full::new(payload))
        .unwrap()
}
