//! A small Redis client for shared limits: one pipelined connection per server, RESP2,
//! optional TLS and AUTH, and reconnection by itself.
//!
//! Why our own: a decision is one `EVALSHA` whose answer is a few integers, and the request
//! path needs exact control over the time a call may take and over what happens while the
//! server is away. Calls never wait for a connection: while the server is unreachable they
//! fail at once ([`RedisError::Unavailable`]) and the policy applies its configured failure
//! mode; a background task reconnects with backoff and reloads the scripts.
//!
//! The connection task is started on first use, inside the runtime, so building a config (in
//! `palisade validate`, say) never opens a socket. Clients are shared by configuration, so a
//! reload that keeps the same `redis` section keeps the same connection.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Where and how to reach Redis.
#[derive(Clone)]
pub struct RedisConfig {
    /// `host:port`.
    pub addr: String,
    /// TLS to the server: the client config and the name to verify.
    pub tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
    /// ACL user name (Redis 6+); `None` with a password means the default user.
    pub username: Option<String>,
    /// Password for AUTH. Never logged.
    pub password: Option<String>,
    /// Database number.
    pub db: u32,
    /// Longest a call may take before it counts as a failure.
    pub timeout: Duration,
    /// Longest a connection attempt may take.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisConfig {
    fn identity(&self) -> String {
        // the password is part of the identity (a new password needs a new connection) but
        // only as a hash, so that the map of clients never holds it in clear
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.password.hash(&mut h);
        format!(
            "{}|{}|{:?}|{}|{}|{:?}|{:?}",
            self.addr,
            self.tls.as_ref().map_or("", |(_, n)| match n {
                rustls_pki_types::ServerName::DnsName(d) => d.as_ref(),
                _ => "ip",
            }),
            self.username,
            h.finish(),
            self.db,
            self.timeout,
            self.tls.as_ref().map(|(c, _)| Arc::as_ptr(c)),
        )
    }
}

/// A RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR …`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$n` bulk string, `None` for nil.
    Bulk(Option<Vec<u8>>),
    /// `*n` array, `None` for nil.
    Array(Option<Vec<Value>>),
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    /// No connection at the moment (the server is down or unreachable).
    #[error("redis is unavailable")]
    Unavailable,
    /// The call took longer than the configured timeout.
    #[error("redis did not answer in time")]
    Timeout,
    /// The server answered with an error.
    #[error("redis error: {0}")]
    Server(String),
    /// The answer had an unexpected shape.
    #[error("unexpected answer from redis")]
    Protocol,
}

struct Call {
    frame: Vec<u8>,
    reply: oneshot::Sender<Result<Value, RedisError>>,
}

/// A shared connection to one Redis server.
pub struct RedisClient {
    cfg: RedisConfig,
    tx: OnceLock<mpsc::Sender<Call>>,
    up: Arc<AtomicBool>,
    /// Becomes true once the first connection attempt has ended, well or badly: until then
    /// calls wait for it (within their timeout) instead of failing.
    tried: Arc<tokio::sync::watch::Sender<bool>>,
    scripts: Arc<Mutex<Vec<(String, String)>>>, // (sha1, source), loaded on every (re)connect
    /// Calls that failed (unavailable, timeout, server error).
    pub failures: AtomicU64,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("cfg", &self.cfg)
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish()
    }
}

fn registry() -> &'static Mutex<HashMap<String, Weak<RedisClient>>> {
    static R: OnceLock<Mutex<HashMap<String, Weak<RedisClient>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

impl RedisClient {
    /// The client for `cfg`: the same one for the same configuration while it is in use.
    pub fn shared(cfg: RedisConfig) -> Arc<RedisClient> {
        let id = cfg.identity();
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(c) = reg.get(&id).and_then(Weak::upgrade) {
            return c;
        }
        let c = Arc::new(RedisClient {
            cfg,
            tx: OnceLock::new(),
            up: Arc::new(AtomicBool::new(false)),
            tried: Arc::new(tokio::sync::watch::Sender::new(false)),
            scripts: Arc::new(Mutex::new(Vec::new())),
            failures: AtomicU64::new(0),
        });
        reg.insert(id, Arc::downgrade(&c));
        c
    }

    /// The server address, for logs.
    pub fn addr(&self) -> &str {
        &self.cfg.addr
    }

    /// Whether the connection is up now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Registers a Lua script; returns its SHA1 for [`RedisClient::eval`].
    pub fn register_script(&self, source: &str) -> String {
        let sha = sha1_hex(source.as_bytes());
        let mut s = self.scripts.lock().unwrap_or_else(|p| p.into_inner());
        if !s.iter().any(|(h, _)| *h == sha) {
            s.push((sha.clone(), source.to_string()));
        }
        sha
    }

    fn sender(&self) -> Option<&mpsc::Sender<Call>> {
        if let Some(tx) = self.tx.get() {
            return Some(tx);
        }
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(4096);
            let task = Task {
                cfg: self.cfg.clone(),
                up: self.up.clone(),
                tried: self.tried.clone(),
                scripts: self.scripts.clone(),
            };
            handle.spawn(task.run(rx));
            tx
        });
        Some(tx)
    }

    /// Sends one command and waits (at most the configured timeout) for its answer.
    pub async fn call(&self, args: &[&[u8]]) -> Result<Value, RedisError> {
        let r = self.call_inner(args).await;
        if r.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    async fn call_inner(&self, args: &[&[u8]]) -> Result<Value, RedisError> {
        let tx = self.sender().ok_or(RedisError::Unavailable)?;
        if !self.is_up() {
            if *self.tried.borrow() {
                return Err(RedisError::Unavailable);
            }
            // the first connection is being made: wait for it rather than fail the first
            // requests after a start
            let mut rx = self.tried.subscribe();
            let _ = tokio::time::timeout(self.cfg.timeout, rx.wait_for(|t| *t)).await;
            if !self.is_up() {
                return Err(RedisError::Unavailable);
            }
        }
        let (reply, rx) = oneshot::channel();
        let call = Call {
            frame: encode(args),
            reply,
        };
        tx.try_send(call).map_err(|_| RedisError::Unavailable)?;
        match tokio::time::timeout(self.cfg.timeout, rx).await {
            Err(_) => Err(RedisError::Timeout),
            Ok(Err(_)) => Err(RedisError::Unavailable),
            Ok(Ok(Ok(Value::Error(e)))) => Err(RedisError::Server(e)),
            Ok(Ok(r)) => r,
        }
    }

    /// Runs a registered script by SHA1, falling back to its source when the server has
    /// forgotten it (after a restart, say).
    pub async fn eval(
        &self,
        sha: &str,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<Value, RedisError> {
        let nkeys = keys.len().to_string();
        let mut a: Vec<&[u8]> = Vec::with_capacity(3 + keys.len() + args.len());
        a.push(b"EVALSHA");
        a.push(sha.as_bytes());
        a.push(nkeys.as_bytes());
        a.extend_from_slice(keys);
        a.extend_from_slice(args);
        match self.call(&a).await {
            Err(RedisError::Server(e)) if e.starts_with("NOSCRIPT") => {
                let source = {
                    let s = self.scripts.lock().unwrap_or_else(|p| p.into_inner());
                    s.iter().find(|(h, _)| h == sha).map(|(_, src)| src.clone())
                };
                let source = source.ok_or(RedisError::Server(e))?;
                if let Some(first) = a.get_mut(0) {
                    *first = b"EVAL";
                }
                if let Some(second) = a.get_mut(1) {
                    *second = source.as_bytes();
                }
                self.call(&a).await
            }
            r => r,
        }
    }
}

struct Task {
    cfg: RedisConfig,
    up: Arc<AtomicBool>,
    tried: Arc<tokio::sync::watch::Sender<bool>>,
    scripts: Arc<Mutex<Vec<(String, String)>>>,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Task {
    async fn run(self, mut rx: mpsc::Receiver<Call>) {
        let mut backoff = Duration::from_millis(50);
        let mut logged_down = false;
        loop {
            match self.connect().await {
                Ok(conn) => {
                    backoff = Duration::from_millis(50);
                    tracing::info!(redis = %self.cfg.addr, "redis connected");
                    self.up.store(true, Ordering::Relaxed);
                    self.tried.send_replace(true);
                    let ended = serve(conn, &mut rx).await;
                    self.up.store(false, Ordering::Relaxed);
                    match ended {
                        Ended::Closed => return,
                        Ended::Failed(why) => {
                            tracing::warn!(redis = %self.cfg.addr, error = %why, "redis connection lost; reconnecting");
                            logged_down = true;
                        }
                    }
                }
                Err(why) => {
                    self.tried.send_replace(true);
                    if !logged_down {
                        tracing::warn!(redis = %self.cfg.addr, error = %why, "redis unreachable; retrying in the background");
                        logged_down = true;
                    }
                }
            }
            // fail whatever queued while down, then wait before the next attempt
            let sleep = tokio::time::sleep(backoff);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    c = rx.recv() => match c {
                        Some(c) => { let _ = c.reply.send(Err(RedisError::Unavailable)); }
                        None => return,
                    }
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, String> {
        let fut = async {
            let tcp = tokio::net::TcpStream::connect(&self.cfg.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let mut s: Box<dyn Stream> = match &self.cfg.tls {
                None => Box::new(tcp),
                Some((cfg, name)) => {
                    let c = tokio_rustls::TlsConnector::from(cfg.clone());
                    Box::new(
                        c.connect(name.clone(), tcp)
                            .await
                            .map_err(|e| format!("TLS: {e}"))?,
                    )
                }
            };
            let mut buf = BytesMut::new();
            if let Some(pw) = &self.cfg.password {
                let mut a: Vec<&[u8]> = vec![b"AUTH"];
                if let Some(u) = &self.cfg.username {
                    a.push(u.as_bytes());
                }
                a.push(pw.as_bytes());
                if let Value::Error(e) = roundtrip(&mut s, &mut buf, &a).await? {
                    // the server's text, never ours: it does not contain the password
                    return Err(format!("AUTH refused: {e}"));
                }
            }
            if self.cfg.db != 0 {
                let db = self.cfg.db.to_string();
                if let Value::Error(e) =
                    roundtrip(&mut s, &mut buf, &[b"SELECT", db.as_bytes()]).await?
                {
                    return Err(format!("SELECT {db}: {e}"));
                }
            }
            let scripts = self
                .scripts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            for (_, src) in &scripts {
                if let Value::Error(e) =
                    roundtrip(&mut s, &mut buf, &[b"SCRIPT", b"LOAD", src.as_bytes()]).await?
                {
                    return Err(format!("SCRIPT LOAD: {e}"));
                }
            }
            Ok(s)
        };
        tokio::time::timeout(self.cfg.connect_timeout, fut)
            .await
            .map_err(|_| "connect timed out".to_string())?
    }
}

async fn roundtrip(
    s: &mut Box<dyn Stream>,
    buf: &mut BytesMut,
    args: &[&[u8]],
) -> Result<Value, String> {
    s.write_all(&encode(args))
        .await
        .map_err(|e| format!("write: {e}"))?;
    loop {
        if let Some(v) = parse(buf).map_err(|_| "bad reply".to_string())? {
            return Ok(v);
        }
        let n = s.read_buf(buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed".into());
        }
    }
}

enum Ended {
    Closed,
    Failed(String),
}

async fn serve(mut s: Box<dyn Stream>, rx: &mut mpsc::Receiver<Call>) -> Ended {
    let mut pending: VecDeque<oneshot::Sender<Result<Value, RedisError>>> = VecDeque::new();
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    let ended = loop {
        tokio::select! {
            c = rx.recv() => {
                let Some(c) = c else { break Ended::Closed };
                out.clear();
                out.extend_from_slice(&c.frame);
                pending.push_back(c.reply);
                // take whatever else is queued: one write for a burst of calls
                while let Ok(c) = rx.try_recv() {
                    out.extend_from_slice(&c.frame);
                    pending.push_back(c.reply);
                }
                if let Err(e) = s.write_all(&out).await {
                    break Ended::Failed(format!("write: {e}"));
                }
            }
            r = s.read_buf(&mut buf) => {
                match r {
                    Ok(0) => break Ended::Failed("connection closed by the server".into()),
                    Err(e) => break Ended::Failed(format!("read: {e}")),
                    Ok(_) => {}
                }
                loop {
                    match parse(&mut buf) {
                        Ok(Some(v)) => match pending.pop_front() {
                            Some(tx) => { let _ = tx.send(Ok(v)); }
                            None => return Ended::Failed("an answer nobody asked for".into()),
                        },
                        Ok(None) => break,
                        Err(()) => return Ended::Failed("malformed reply".into()),
                    }
                }
            }
        }
    };
    for tx in pending {
        let _ = tx.send(Err(RedisError::Unavailable));
    }
    ended
}

/// Encodes a command as a RESP array of bulk strings.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

const MAX_BULK: i64 = 64 * 1024 * 1024;
const MAX_DEPTH: usize = 8;

/// Parses one complete value off the front of `buf`; `Ok(None)` when more bytes are needed.
fn parse(buf: &mut BytesMut) -> Result<Option<Value>, ()> {
    let mut pos = 0;
    match parse_at(buf, &mut pos, 0)? {
        Some(v) => {
            buf.advance(pos);
            Ok(Some(v))
        }
        None => Ok(None),
    }
}

fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let rest = buf.get(*pos..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    let l = rest.get(..end)?;
    *pos += end + 2;
    Some(l)
}

fn int(l: &[u8]) -> Result<i64, ()> {
    std::str::from_utf8(l)
        .map_err(|_| ())?
        .parse::<i64>()
        .map_err(|_| ())
}

fn parse_at(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Value>, ()> {
    if depth > MAX_DEPTH {
        return Err(());
    }
    let Some(&tag) = buf.get(*pos) else {
        return Ok(None);
    };
    *pos += 1;
    let Some(l) = line(buf, pos) else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(l).into_owned();
    Ok(Some(match tag {
        b'+' => Value::Simple(text()),
        b'-' => Value::Error(text()),
        b':' => Value::Int(int(l)?),
        b'$' => {
            let n = int(l)?;
            if n < 0 {
                Value::Bulk(None)
            } else if n > MAX_BULK {
                return Err(());
            } else {
                let n = usize::try_from(n).map_err(|_| ())?;
                let Some(data) = buf.get(*pos..*pos + n) else {
                    return Ok(None);
                };
                if buf.get(*pos + n..*pos + n + 2).is_none() {
                    return Ok(None);
                }
                let v = data.to_vec();
                *pos += n + 2;
                Value::Bulk(Some(v))
            }
        }
        b'*' => {
            let n = int(l)?;
            if n < 0 {
                Value::Array(None)
            } else if n > 1_000_000 {
                return Err(());
            } else {
                let mut items = Vec::new();
                for _ in 0..n {
                    match parse_at(buf, pos, depth + 1)? {
                        Some(v) => items.push(v),
                        None => return Ok(None),
                    }
                }
                Value::Array(Some(items))
            }
        }
        _ => return Err(()),
    }))
}

/// SHA-1 of a script, as Redis names it (hex). Scripts are ours, so this is an identifier,
/// not a security measure.
fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks_exact(4).enumerate() {
            if let (Some(slot), Ok(b)) = (w.get_mut(i), <[u8; 4]>::try_from(word)) {
                *slot = u32::from_be_bytes(b);
            }
        }
        for i in 16..80 {
            let v = w.get(i - 3).copied().unwrap_or(0)
                ^ w.get(i - 8).copied().unwrap_or(0)
                ^ w.get(i - 14).copied().unwrap_or(0)
                ^ w.get(i - 16).copied().unwrap_or(0);
            if let Some(slot) = w.get_mut(i) {
                *slot = v.rotate_left(1);
            }
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (s, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *s = s.wrapping_add(v);
        }
    }
    h.iter().map(|v| format!("{v:08x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_known_digests() {
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            sha1_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
    }

    #[test]
    fn parses_values_and_waits_for_partial_input() {
        let mut b = BytesMut::from(&b"*3\r\n:1\r\n$3\r\nabc\r\n$-1\r\n+OK\r\n-ERR x\r\n"[..]);
        assert_eq!(
            parse(&mut b),
            Ok(Some(Value::Array(Some(vec![
                Value::Int(1),
                Value::Bulk(Some(b"abc".to_vec())),
                Value::Bulk(None)
            ]))))
        );
        assert_eq!(parse(&mut b), Ok(Some(Value::Simple("OK".into()))));
        assert_eq!(parse(&mut b), Ok(Some(Value::Error("ERR x".into()))));
        assert_eq!(parse(&mut b), Ok(None));
        for cut in 1..12 {
            let full = b"*2\r\n:17\r\n$2\r\nhi\r\n";
            let mut p = BytesMut::from(&full[..cut]);
            assert_eq!(parse(&mut p), Ok(None), "cut at {cut}");
            assert_eq!(p.len(), cut, "nothing consumed from a partial reply");
        }
        assert_eq!(parse(&mut BytesMut::from(&b"?x\r\n"[..])), Err(()));
        assert_eq!(parse(&mut BytesMut::from(&b":x\r\n"[..])), Err(()));
        let deep = "*1\r\n".repeat(20) + ":1\r\n";
        assert_eq!(parse(&mut BytesMut::from(deep.as_bytes())), Err(()));
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        assert_eq!(
            encode(&[b"GET", b"k y"]),
            b"*2\r\n$3\r\nGET\r\n$3\r\nk y\r\n".to_vec()
        );
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let cfg = RedisConfig {
            addr: "127.0.0.1:6379".into(),
            tls: None,
            username: None,
            password: Some("hunter2-secret".into()),
            db: 0,
            timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(1),
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(!cfg.identity().contains("hunter2"));
    }
}
