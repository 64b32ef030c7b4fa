//! The fast path of the HTTP/1.1 server: requests that arrive whole and unambiguous are
//! parsed, handled and answered here, in the connection's task, without hyper's dispatcher.
//!
//! It takes only what it fully understands: an HTTP/1.1 request whose head and (at most
//! [`MAX_WHOLE_BODY`] bytes of `content-length`) body are already in the read buffer, with a
//! standard method, an origin-form target, no `transfer-encoding`, one well-formed
//! `content-length` at most, no `expect` and no `upgrade`. The first request that is anything
//! else (split across reads, pipelined behind a partial one, chunked, malformed, oversized,
//! HTTP/1.0, the HTTP/2 preface) hands the connection, with every byte already read, to hyper's
//! server, which serves it from then on with all of its checks and limits. So every edge of
//! HTTP/1 parsing (and the smuggling defences) stays with one well-tested parser, and the
//! common request pays for none of the machinery it does not need.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use palisade_config::Limits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

use crate::body::ClientBody;
use crate::h1wire::{has_token, parse_decimal, put_field, put_length};
use crate::handler::{handle, ConnInfo};
use crate::Shared;

/// Largest request body taken by the fast path (it must already be in the buffer).
pub const MAX_WHOLE_BODY: usize = 64 * 1024;
/// Header slots parsed on the fast path; a request with more goes to hyper.
const MAX_FAST_HEADERS: usize = 64;
/// Bytes of pipelined requests read while a request is handled; past them the socket is
/// no longer watched for a close until the answer is written.
const MAX_PIPELINED: usize = 128 * 1024;
/// Output is written once it reaches this size.
const WRITE_CHUNK: usize = 64 * 1024;

/// How the fast path ended.
pub enum Exit<I> {
    /// The connection is over.
    Closed,
    /// hyper serves the rest of the connection, starting with these bytes.
    Handover(Bytes, I),
}

/// Serves requests on `io` until the connection ends or a request needs hyper.
pub async fn serve<I>(
    mut io: I,
    info: &Arc<ConnInfo>,
    shared: &Arc<Shared>,
    shutdown: &watch::Receiver<bool>,
    limits: &Limits,
) -> Exit<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(4 * 1024);
    // One timer for the whole connection, moved only when its deadline is more than an
    // eighth of the wait away from the wanted one: no timer work for most requests.
    let mut wait = limits.header_read_timeout;
    let mut deadline = Instant::now() + wait;
    let sleep = tokio::time::sleep_until(deadline.into());
    tokio::pin!(sleep);
    // one shutdown waiter for the whole connection, not one registration per request
    let mut watcher = shutdown.clone();
    let stop = watcher.changed();
    tokio::pin!(stop);
    loop {
        if *shutdown.borrow() {
            return Exit::Closed;
        }
        if buf.is_empty() {
            let wanted = Instant::now() + wait;
            if wanted.saturating_duration_since(deadline) > wait / 8 || wanted < deadline {
                deadline = wanted;
                sleep.as_mut().reset(deadline.into());
            }
            if buf.capacity() < 4 * 1024 {
                buf.reserve(8 * 1024);
            }
            tokio::select! {
                biased;
                r = io.read_buf(&mut buf) => match r {
                    Ok(0) | Err(_) => return Exit::Closed,
                    Ok(_) => {}
                },
                _ = &mut sleep => return Exit::Closed,
                _ = &mut stop => return Exit::Closed,
            }
        }
        let Some((req, keep_alive)) = take_request(&mut buf, limits) else {
            return Exit::Handover(buf.freeze(), io);
        };
        // between requests a keep-alive connection may wait for the idle timeout
        wait = limits.idle_timeout;
        let head_only = req.method() == Method::HEAD;
        // awaited in place: the handler's future is a few KiB, which boxing would copy.
        // Meanwhile the socket is watched: a client that closes its connection gives the
        // request up, which is then dropped (counted as cancelled, every slot given back),
        // as hyper does without half-close support; bytes of a pipelined request are kept.
        let fut = handle(shared.clone(), info.clone(), req);
        tokio::pin!(fut);
        let res = loop {
            tokio::select! {
                biased;
                res = &mut fut => break res,
                r = io.read_buf(&mut buf), if buf.len() < MAX_PIPELINED => match r {
                    Ok(0) | Err(_) => return Exit::Closed,
                    Ok(_) => {}
                },
            }
        };
        // a refusal that closes the connection (413, 414, 431, ambiguous framing) closes it
        // here as on hyper's path
        let closing = res
            .headers()
            .get(header::CONNECTION)
            .is_some_and(|v| has_token(v.as_bytes(), b"close"));
        let keep_alive = keep_alive && !closing && !*shutdown.borrow();
        match write_response(&mut io, &mut out, res, head_only, keep_alive).await {
            Ok(()) if keep_alive => {}
            _ => {
                let _ = io.shutdown().await;
                return Exit::Closed;
            }
        }
    }
}

/// Takes a whole, unambiguous request off the front of `buf`, with whether the connection
/// may stay open after it; `None` leaves `buf` untouched for hyper.
fn take_request(buf: &mut BytesMut, limits: &Limits) -> Option<(Request<ClientBody>, bool)> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FAST_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let n = match parsed.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    if n > limits.max_header_bytes
        || parsed.version != Some(1)
        || parsed.headers.len() > limits.max_headers
    {
        return None;
    }
    let method = match parsed.method? {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        "HEAD" => Method::HEAD,
        "OPTIONS" => Method::OPTIONS,
        _ => return None,
    };
    let path = parsed.path?;
    if !path.starts_with('/') {
        return None;
    }
    let uri = Uri::try_from(path).ok()?;
    // room for the fields the gateway adds (forwarding, request id), so none of them grows it
    let mut headers = HeaderMap::with_capacity(parsed.headers.len() + 8);
    let mut length: Option<usize> = None;
    let mut keep_alive = true;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if name == header::TRANSFER_ENCODING || name == header::EXPECT || name == header::UPGRADE {
            return None;
        }
        if name == header::CONTENT_LENGTH {
            if length.is_some() {
                return None;
            }
            length = Some(usize::try_from(parse_decimal(h.value)?).ok()?);
        } else if name == header::CONNECTION && has_token(h.value, b"close") {
            keep_alive = false;
        }
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    let len = length.unwrap_or(0);
    if len > MAX_WHOLE_BODY || buf.len() < n + len {
        return None;
    }
    buf.advance(n);
    let body = buf.split_to(len).freeze();
    let mut req = Request::new(ClientBody::Whole(Some(body)));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Some((req, keep_alive))
}

/// Writes `res` as HTTP/1.1 with framing of our own: the body's exact length when it is
/// known, chunked otherwise.
async fn write_response<I, B>(
    io: &mut I,
    out: &mut Vec<u8>,
    res: http::Response<B>,
    head_only: bool,
    keep_alive: bool,
) -> std::io::Result<()>
where
    I: AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
{
    let (parts, mut body) = res.into_parts();
    out.clear();
    let status = parts.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // no body for HEAD, 1xx, 204 and 304: their content-length (if any) says what a GET
    // would have carried, and goes as it is
    let bodiless = head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut has_date = false;
    for (name, value) in &parts.headers {
        if name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
            || (name == header::CONTENT_LENGTH && !bodiless)
        {
            continue;
        }
        has_date |= name == header::DATE;
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !has_date {
        put_field(out, b"date", &http_date());
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let length = body.size_hint().exact();
    if !bodiless {
        match length {
            Some(n) => put_length(out, n),
            None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
    }
    out.extend_from_slice(b"\r\n");
    if bodiless {
        drop(body);
        return flush_all(io, out).await;
    }
    let mut sent = 0u64;
    loop {
        // what the body has ready goes out together; when it has nothing ready, what is
        // buffered is written first, so a slow stream (server-sent events, long polling) is
        // not held back
        let frame = match ready_frame(&mut body) {
            Poll::Ready(f) => f,
            Poll::Pending => {
                flush_all(io, out).await?;
                body.frame().await
            }
        };
        let Some(frame) = frame else { break };
        let Ok(frame) = frame else {
            // the status line and what came of the body reach the client, whose framing
            // shows the body incomplete; the connection then closes
            let _ = flush_all(io, out).await;
            return Err(broken("response body failed"));
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers are not sent on HTTP/1.1
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if length.is_some_and(|n| sent > n) {
            return Err(broken("response body longer than its length"));
        }
        if length.is_none() {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        if data.len() >= WRITE_CHUNK / 4 {
            flush_all(io, out).await?;
            io.write_all(&data).await?;
        } else {
            out.extend_from_slice(&data);
        }
        if length.is_none() {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= WRITE_CHUNK {
            flush_all(io, out).await?;
        }
    }
    match length {
        None => out.extend_from_slice(b"0\r\n\r\n"),
        Some(n) if sent != n => {
            let _ = flush_all(io, out).await;
            return Err(broken("response body shorter than its length"));
        }
        Some(_) => {}
    }
    flush_all(io, out).await
}

/// A body's next frame, or its end.
type NextFrame<B> = Option<Result<http_body::Frame<<B as Body>::Data>, <B as Body>::Error>>;

/// The body's next frame if it is ready now, without waiting.
fn ready_frame<B: Body + Unpin>(body: &mut B) -> Poll<NextFrame<B>> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    Pin::new(body).poll_frame(&mut cx)
}

async fn flush_all<I: AsyncWrite + Unpin>(io: &mut I, out: &mut Vec<u8>) -> std::io::Result<()> {
    io.write_all(out).await?;
    out.clear();
    io.flush().await
}

fn broken(msg: &'static str) -> std::io::Error {
    std::io::Error::other(msg)
}

/// The `date` header value, formatted once a second per thread.
fn http_date() -> [u8; 29] {
    use std::cell::Cell;
    thread_local! {
        static CACHE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    CACHE.with(|c| {
        let (at, text) = c.get();
        if at == secs {
            return text;
        }
        let mut fresh = [0u8; 29];
        let formatted = httpdate::fmt_http_date(now);
        for (d, s) in fresh.iter_mut().zip(formatted.bytes()) {
            *d = s;
        }
        c.set((secs, fresh));
        fresh
    })
}

/// A transport whose first bytes were already read: they are read again first.
pub struct Prefixed<I> {
    prefix: Bytes,
    io: I,
}

impl<I> Prefixed<I> {
    /// `io` with `prefix` in front.
    pub fn new(prefix: Bytes, io: I) -> Self {
        Prefixed { prefix, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 1 << 20,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10,
            max_in_flight: 10,
            h2_max_concurrent_streams: 100,
        }
    }

    fn take(raw: &[u8]) -> (Option<(Request<ClientBody>, bool)>, usize) {
        let mut b = BytesMut::from(raw);
        let r = take_request(&mut b, &limits());
        (r, b.len())
    }

    #[test]
    fn whole_plain_requests_are_taken() {
        let (r, rest) = take(b"GET /a?b=1 HTTP/1.1\r\nhost: x\r\n\r\nGET /next");
        let (req, keep) = r.unwrap();
        assert_eq!(
            (req.method(), req.uri().path(), keep),
            (&Method::GET, "/a", true)
        );
        assert_eq!(rest, 9, "the pipelined rest stays for the next round");
        let (r, rest) =
            take(b"POST / HTTP/1.1\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc");
        let (req, keep) = r.unwrap();
        assert!(!keep);
        assert_eq!(req.body().size_hint().exact(), Some(3));
        assert_eq!(rest, 0);
    }

    #[test]
    fn anything_unusual_is_left_to_hyper() {
        for raw in [
            &b"GET / HTTP/1.1\r\nhost: x\r\n"[..], // partial head
            b"POST / HTTP/1.1\r\ncontent-length: 10\r\n\r\nabc", // partial body
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n", // chunked
            b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\na",
            b"POST / HTTP/1.1\r\ncontent-length: +1\r\n\r\na",
            b"POST / HTTP/1.1\r\ncontent-length: 1000000\r\n\r\n",
            b"POST / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nupgrade: websocket\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"CONNECT x:443 HTTP/1.1\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
            b"GET / HTTP/1.1\r\nx: a\r\n b\r\n\r\n", // obs-fold
            b"GET / HTTP/1.1\r\nx : a\r\n\r\n",
        ] {
            let (r, rest) = take(raw);
            assert!(r.is_none(), "{}", String::from_utf8_lossy(raw));
            assert_eq!(rest, raw.len(), "the buffer is left as it was");
        }
        let many: String = (0..70).map(|i| format!("x-{i}: 1\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(take(raw.as_bytes()).0.is_none());
    }

    #[test]
    fn the_prefix_is_read_first() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, mut b) = tokio::io::duplex(64);
            let mut p = Prefixed::new(Bytes::from_static(b"abc"), a);
            b.write_all(b"def").await.unwrap();
            drop(b);
            let mut got = Vec::new();
            p.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"abcdef");
        });
    }
}
