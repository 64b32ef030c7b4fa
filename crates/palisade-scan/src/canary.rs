//! The SSRF canary: a listener of the scan's own (on loopback unless told otherwise) whose
//! address goes into the fields that take URLs. A target that fetches it has made a request
//! the attacker chose; each probe has its own token in the path, so a hit names its input.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the canary answers: a marker a reflected answer can be recognised by.
pub const BODY: &str = "palisade-scan-canary-7e1f: internal content";

/// A running canary.
pub struct Canary {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Canary {
    /// Listens on `bind` (`127.0.0.1:0` picks a free port).
    pub async fn start(bind: &str) -> Result<Canary, String> {
        let l = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| format!("the SSRF canary cannot listen on {bind}: {e}"))?;
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        let hits = Arc::new(Mutex::new(Vec::new()));
        let h = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let h = h.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or(0);
                    let head = String::from_utf8_lossy(buf.get(..n).unwrap_or(&[])).into_owned();
                    let path = head
                        .lines()
                        .next()
                        .and_then(|l| l.split(' ').nth(1))
                        .unwrap_or("")
                        .to_string();
                    if let Ok(mut v) = h.lock() {
                        v.push(path);
                    }
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
                        BODY.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Ok(Canary { addr, hits, task })
    }

    /// The URL for the probe with this token.
    pub fn url(&self, token: &str) -> String {
        format!("http://{}/{token}", self.addr)
    }

    /// Whether the probe with this token reached the canary (waiting up to `wait`).
    pub async fn hit(&self, token: &str, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let seen = self
                .hits
                .lock()
                .map(|v| {
                    v.iter()
                        .any(|p| p.trim_start_matches('/').starts_with(token))
                })
                .unwrap_or(false);
            if seen || tokio::time::Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.task.abort();
    }
}
