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
pub use client::{get, raw_exchange, send_mtls, tls_connect, HttpClient, Reply};
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

/// A free port on 127.0.0.1 for a server a test starts itself (a gateway, redis-server).
///
/// Ports come from below the kernel's ephemeral range (32768 and up on Linux), where outgoing
/// connections never take them: a port bound to 0 and released could be handed to some other
/// test's client socket before the server bound it, and the server would then fail to start.
/// A counter keeps the tests of one process apart, the process id spreads test processes
/// over the range, and each candidate must bind before it is handed out.
pub fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) as u32;
        let port = (LOW + (start + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOW} and {}", LOW + SPAN);
}

/// A seeded generator (xorshift64*): small, fast and deterministic, so a failure found by
/// generated inputs is the same on every run.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Up to `max` - 1 random bytes.
    pub fn input(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next_u64() % max as u64) as usize;
        (0..n).map(|_| (self.next_u64() >> 24) as u8).collect()
    }

    /// One of `xs`.
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs.get((self.next_u64() % xs.len().max(1) as u64) as usize)
            .copied()
            .unwrap_or("")
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
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
