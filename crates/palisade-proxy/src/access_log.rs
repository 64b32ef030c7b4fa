//! The JSON access log: one line per exchange, written by a dedicated thread so the request
//! path never blocks on output. Never carries Authorization, Cookie, keys, tokens or bodies.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use palisade_config::AccessLog;
use serde::Serialize;

/// One access-log record.
#[derive(Debug, Serialize)]
pub struct Record {
    /// RFC 3339 time the request head arrived.
    pub time: String,
    /// Request id.
    pub request_id: String,
    /// Listener name.
    pub listener: String,
    /// Client address (after trusted proxies).
    pub client: String,
    /// Method.
    pub method: String,
    /// Path (no query string: queries can carry credentials).
    pub path: String,
    /// Protocol version.
    pub protocol: &'static str,
    /// Matched route, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Authenticated consumer, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// Status sent.
    pub status: u16,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Upstream target, if one was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Milliseconds waiting for the upstream's response head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    /// Milliseconds from request head to the end of the response.
    pub total_ms: f64,
    /// Refusal or failure code, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// Codes monitor-mode policies would have refused with.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub monitored: Vec<&'static str>,
    /// Whether the response body was sent completely.
    pub complete: bool,
}

/// What the writer thread is sent.
#[derive(Debug)]
enum Msg {
    Record(Box<Record>),
    /// Write out what came before, then say so.
    Flush(SyncSender<()>),
}

/// Sends records to the writer thread.
#[derive(Debug, Clone)]
pub struct AccessLogger {
    tx: Option<SyncSender<Msg>>,
}

/// Records dropped because the writer could not keep up (counted, never silent).
pub static DROPPED: AtomicU64 = AtomicU64::new(0);

impl AccessLogger {
    /// Starts the writer for `target`.
    pub fn start(target: &AccessLog) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match target {
            AccessLog::Off => return Ok(AccessLogger { tx: None }),
            AccessLog::Stdout => Box::new(std::io::stdout()),
            AccessLog::Stderr => Box::new(std::io::stderr()),
            AccessLog::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (tx, rx) = sync_channel(65_536);
        std::thread::Builder::new()
            .name("palisade-access-log".into())
            .spawn(move || writer(rx, out))?;
        Ok(AccessLogger { tx: Some(tx) })
    }

    /// Whether records are wanted (skip building them otherwise).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a record. When the queue is full the record is counted as dropped rather than
    /// stalling the request path.
    pub fn log(&self, r: Record) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(Msg::Record(Box::new(r))) {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits (at most `wait`) until every record queued so far is written out.
    pub fn flush(&self, wait: std::time::Duration) {
        let Some(tx) = &self.tx else {
            return;
        };
        let (done, ack) = sync_channel(1);
        if tx.send(Msg::Flush(done)).is_ok() {
            let _ = ack.recv_timeout(wait);
        }
    }
}

fn writer(rx: Receiver<Msg>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut acks = Vec::new();
        while let Some(m) = next {
            match m {
                Msg::Record(r) => {
                    if serde_json::to_writer(&mut out, &r).is_ok() {
                        let _ = out.write_all(b"\n");
                    }
                }
                Msg::Flush(ack) => acks.push(ack),
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
        for a in acks {
            let _ = a.send(());
        }
    }
}

/// RFC 3339 UTC time with milliseconds, without pulling a date crate.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.{:03}Z",
        civil(now.as_secs() as i64),
        now.subsec_millis()
    )
}

/// RFC 3339 UTC time of Unix seconds `secs` (whole seconds).
pub fn rfc3339_secs(secs: i64) -> String {
    format!("{}Z", civil(secs))
}

/// `YYYY-MM-DDTHH:MM:SS` of Unix seconds (Howard Hinnant's civil-from-days).
fn civil(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_shape() {
        let t = super::now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z'));
        assert!(t.starts_with("20"));
    }
}
