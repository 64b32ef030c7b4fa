//! Test helpers for Palisade: a generated CA and certificates (rcgen), temporary folders,
//! recording and misbehaving upstreams, and HTTP clients (h1, h2, TLS, raw TCP).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod certs;
mod client;
mod docs;
pub mod jwt;
mod redis;
mod upstream;

pub use certs::{ClientCertSpec, TestCa};
pub use client::{get, raw_exchange, send_mtls, HttpClient, Reply};
pub use docs::DocServer;
pub use redis::RedisServer;
pub use upstream::{Behaviour, MockUpstream, Recorded};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A temporary folder removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty folder.
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "palisade-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file inside and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Prints a measured figure (an accuracy, a rate) and, when `PALISADE_FIGURES` names a file,
/// appends it there too: `scripts/test` shows that file at the end of a run, since the output
/// of passing tests is otherwise hidden.
pub fn report_figure(line: &str) {
    println!("{line}");
    if let Some(path) = std::env::var_os("PALISADE_FIGURES") {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}
