//! The tamper-evident security log: one JSON line per refusal, would-refuse (monitor mode)
//! and config change, each carrying the SHA-256 of the line before it (`prev`) and a
//! sequence number, with checkpoints signed by an Ed25519 key every `every` records or
//! `interval`, and on shutdown. `palisade log verify` replays the chain and checks the
//! signatures: a removed, reordered or edited record breaks the chain at the next line; an
//! edit of the last lines is caught by the checkpoint that follows them.
//!
//! Written by a dedicated thread behind a bounded queue, like the access log; records that
//! did not fit are counted and the count is written into the chain (`kind: dropped`), so a
//! loss is visible in the log itself. Records carry codes, routes, consumers, addresses and
//! paths without queries: never a credential, token, body or header value.

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use base64::Engine as _;
use palisade_identity::signature::keys::{SignKey, VerifyKey};
use serde_json::{Map, Value};

/// Records dropped because the writer could not keep up.
pub static DROPPED: AtomicU64 = AtomicU64::new(0);

/// What a checkpoint signs.
fn checkpoint_message(seq: u64, prev: &str) -> String {
    format!("palisade-security-log:{seq}:{prev}")
}

fn sha256_hex(line: &[u8]) -> String {
    palisade_core::hex::encode(digest::digest(&digest::SHA256, line).as_ref())
}

/// The `prev` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

enum Msg {
    Record(Map<String, Value>),
    Flush(SyncSender<()>),
}

/// Sends records to the writer.
#[derive(Clone)]
pub struct SecurityLogger {
    tx: Option<SyncSender<Msg>>,
}

impl std::fmt::Debug for SecurityLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityLogger")
            .field("enabled", &self.tx.is_some())
            .finish()
    }
}

struct Chain {
    out: std::io::BufWriter<std::fs::File>,
    seq: u64,
    prev: String,
    unsigned: u64,
    key: Option<Arc<SignKey>>,
    every: u64,
}

impl Chain {
    /// Opens `path` and continues the chain its last line ends (a new file starts one).
    fn open(cfg: &palisade_config::SecurityLog) -> std::io::Result<Chain> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&cfg.path)?;
        let len = f.metadata()?.len();
        let (mut seq, mut prev) = (0, GENESIS.to_string());
        if len > 0 {
            let start = len.saturating_sub(1 << 20);
            f.seek(SeekFrom::Start(start))?;
            let mut tail = Vec::new();
            f.read_to_end(&mut tail)?;
            let complete = tail.last() == Some(&b'\n');
            let body = if complete {
                tail.get(..tail.len() - 1).unwrap_or(&[])
            } else {
                &tail[..]
            };
            let last = body.rsplit(|b| *b == b'\n').next().unwrap_or(&[]);
            prev = sha256_hex(last);
            seq = serde_json::from_slice::<Value>(last)
                .ok()
                .and_then(|v| v.get("seq").and_then(Value::as_u64))
                .map_or(0, |s| s + 1);
            if !complete {
                // a line cut by a crash stays (the verifier reports it); the chain goes on
                f.write_all(b"\n")?;
            }
        }
        Ok(Chain {
            out: std::io::BufWriter::new(f),
            seq,
            prev,
            unsigned: 0,
            key: cfg.key.clone(),
            every: cfg.every,
        })
    }

    fn append(&mut self, mut rec: Map<String, Value>) {
        rec.insert("seq".into(), Value::from(self.seq));
        rec.insert("prev".into(), Value::from(self.prev.clone()));
        let Ok(line) = serde_json::to_vec(&rec) else {
            return;
        };
        if self.out.write_all(&line).is_err() || self.out.write_all(b"\n").is_err() {
            return;
        }
        self.prev = sha256_hex(&line);
        self.seq += 1;
        self.unsigned += 1;
    }

    fn checkpoint(&mut self) {
        if self.unsigned == 0 {
            return;
        }
        let Some(key) = self.key.clone() else {
            return;
        };
        let msg = checkpoint_message(self.seq, &self.prev);
        let Ok(sig) = key.sign(msg.as_bytes()) else {
            return;
        };
        let mut rec = Map::new();
        rec.insert("time".into(), Value::from(crate::access_log::now_rfc3339()));
        rec.insert("kind".into(), Value::from("checkpoint"));
        rec.insert(
            "signature".into(),
            Value::from(base64::engine::general_purpose::STANDARD.encode(sig)),
        );
        self.append(rec);
        self.unsigned = 0;
        let _ = self.out.flush();
        let _ = self.out.get_ref().sync_data();
    }
}

impl SecurityLogger {
    /// No security log.
    pub fn off() -> Self {
        SecurityLogger { tx: None }
    }

    /// Opens the log and starts its writer.
    pub fn start(cfg: Option<&palisade_config::SecurityLog>) -> std::io::Result<Self> {
        let Some(cfg) = cfg else {
            return Ok(Self::off());
        };
        let chain = Chain::open(cfg)?;
        let (tx, rx) = sync_channel(65_536);
        let interval = cfg.interval;
        std::thread::Builder::new()
            .name("palisade-security-log".into())
            .spawn(move || writer(rx, chain, interval))?;
        Ok(SecurityLogger { tx: Some(tx) })
    }

    /// Whether records are wanted.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a record (`kind` and its fields; the time is added here).
    pub fn log(&self, kind: &'static str, fields: Map<String, Value>) {
        let Some(tx) = &self.tx else {
            return;
        };
        let mut rec = fields;
        rec.insert("time".into(), Value::from(crate::access_log::now_rfc3339()));
        rec.insert("kind".into(), Value::from(kind));
        if let Err(TrySendError::Full(_)) = tx.try_send(Msg::Record(rec)) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes out what was queued and signs a checkpoint (at shutdown), waiting at most `wait`.
    pub fn flush(&self, wait: Duration) {
        let Some(tx) = &self.tx else {
            return;
        };
        let (done, ack) = sync_channel(1);
        if tx.send(Msg::Flush(done)).is_ok() {
            let _ = ack.recv_timeout(wait);
        }
    }
}

fn writer(rx: Receiver<Msg>, mut chain: Chain, interval: Duration) {
    let mut oldest_unsigned: Option<Instant> = None;
    let mut dropped_seen = 0;
    loop {
        let wait = oldest_unsigned.map_or(Duration::from_secs(3600), |t| {
            interval.saturating_sub(t.elapsed())
        });
        let first = match rx.recv_timeout(wait) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                chain.checkpoint();
                let _ = chain.out.flush();
                return;
            }
        };
        let mut acks = Vec::new();
        let mut next = first;
        while let Some(m) = next {
            match m {
                Msg::Record(r) => chain.append(r),
                Msg::Flush(a) => acks.push(a),
            }
            if chain.unsigned >= chain.every {
                chain.checkpoint();
            }
            next = rx.try_recv().ok();
        }
        let dropped = DROPPED.load(Ordering::Relaxed);
        if dropped > dropped_seen {
            let mut rec = Map::new();
            rec.insert("time".into(), Value::from(crate::access_log::now_rfc3339()));
            rec.insert("kind".into(), Value::from("dropped"));
            rec.insert("count".into(), Value::from(dropped - dropped_seen));
            chain.append(rec);
            dropped_seen = dropped;
        }
        if !acks.is_empty() || oldest_unsigned.is_some_and(|t| t.elapsed() >= interval) {
            chain.checkpoint();
        }
        let _ = chain.out.flush();
        oldest_unsigned = match (chain.unsigned, oldest_unsigned) {
            (0, _) => None,
            (_, Some(t)) => Some(t),
            (_, None) => Some(Instant::now()),
        };
        for a in acks {
            let _ = a.send(());
        }
    }
}

/// What `palisade log verify` found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Records read.
    pub records: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// Records after the last checkpoint (not yet signed: the gateway was still running, or
    /// the log's end was cut).
    pub unsigned_tail: u64,
    /// Records the writer could not keep up with, as the log itself says.
    pub dropped: u64,
}

/// Replays the chain of `text`; every break is reported with its line (1-based).
pub fn verify(text: &str, key: Option<&VerifyKey>) -> Result<Verified, Vec<String>> {
    let mut problems = Vec::new();
    let mut v = Verified::default();
    let mut prev_hash: Option<String> = None;
    let mut expected_seq: Option<u64> = None;
    let mut saw_checkpoint_without_key = false;
    for (i, line) in text.split_terminator('\n').enumerate() {
        let n = i + 1;
        let rec: Map<String, Value> = match serde_json::from_str(line) {
            Ok(Value::Object(m)) => m,
            _ => {
                problems.push(format!("line {n}: not a record (cut or edited)"));
                prev_hash = Some(sha256_hex(line.as_bytes()));
                expected_seq = None;
                continue;
            }
        };
        v.records += 1;
        let prev = rec.get("prev").and_then(Value::as_str).unwrap_or("");
        let seq = rec.get("seq").and_then(Value::as_u64);
        match &prev_hash {
            None if prev != GENESIS => problems.push(format!(
                "line {n}: the log does not begin with the start of its chain (earlier records are missing)"
            )),
            Some(h) if h != prev => problems.push(format!(
                "line {n}: does not follow line {} (a record was removed, reordered or edited there)",
                n - 1
            )),
            _ => {}
        }
        match (seq, expected_seq) {
            (None, _) => problems.push(format!("line {n}: has no sequence number")),
            (Some(s), Some(e)) if s != e => problems.push(format!(
                "line {n}: sequence {s} where {e} was due (records removed or reordered)"
            )),
            _ => {}
        }
        if rec.get("kind").and_then(Value::as_str) == Some("checkpoint") {
            let sig = rec
                .get("signature")
                .and_then(Value::as_str)
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
            match (key, sig, seq) {
                (None, _, _) => saw_checkpoint_without_key = true,
                (Some(k), Some(sig), Some(s)) if k.verify(checkpoint_message(s, prev).as_bytes(), &sig) => {
                    v.checkpoints += 1;
                    v.unsigned_tail = 0;
                }
                (Some(_), _, _) => problems.push(format!(
                    "line {n}: the checkpoint's signature does not verify (the records before it, or the checkpoint, were changed)"
                )),
            }
        } else {
            v.unsigned_tail += 1;
        }
        if rec.get("kind").and_then(Value::as_str) == Some("dropped") {
            v.dropped += rec.get("count").and_then(Value::as_u64).unwrap_or(0);
        }
        prev_hash = Some(sha256_hex(line.as_bytes()));
        expected_seq = seq.map(|s| s + 1);
    }
    if saw_checkpoint_without_key {
        problems
            .push("the log has signed checkpoints: give --key PUBLIC.pem to verify them".into());
    }
    if problems.is_empty() {
        Ok(v)
    } else {
        Err(problems)
    }
}
