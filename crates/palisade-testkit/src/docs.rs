//! A tiny HTTP server of documents (a stand-in identity provider's discovery document and key
//! set, say): paths map to JSON bodies that tests can change while it runs, and every GET is
//! counted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

/// A running document server on 127.0.0.1.
#[derive(Clone)]
pub struct DocServer {
    /// Its address.
    pub addr: SocketAddr,
    docs: Arc<Mutex<HashMap<String, (u16, String)>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl DocServer {
    /// Starts an empty server.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let docs: Arc<Mutex<HashMap<String, (u16, String)>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (d, h) = (docs.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (d, h) = (d.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let path = req.uri().path().to_string();
                        *h.lock().unwrap().entry(path.clone()).or_default() += 1;
                        let body = d.lock().unwrap().get(&path).cloned();
                        async move {
                            let res = match body {
                                Some((status, b)) => Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(b))),
                                None => Response::builder()
                                    .status(StatusCode::NOT_FOUND)
                                    .body(Full::new(Bytes::new())),
                            };
                            Ok::<_, Infallible>(res.unwrap())
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
                });
            }
        });
        DocServer { addr, docs, hits }
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `body` at `path` from now on.
    pub fn set(&self, path: &str, body: &str) {
        self.set_status(path, 200, body);
    }

    /// Serves `body` with `status` at `path` from now on.
    pub fn set_status(&self, path: &str, status: u16, body: &str) {
        self.docs
            .lock()
            .unwrap()
            .insert(path.into(), (status, body.into()));
    }

    /// GETs of `path` so far.
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}
