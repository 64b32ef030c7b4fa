//! Palisade's own HTTP/1.1 client for the upstream side of the data path.
//!
//! hyper's client runs every connection in a task of its own and hands each request and
//! response over channels; for the requests a REST API mostly carries (no body, or a small
//! body the proxy has whole), that machinery cost more CPU than the work itself (see
//! BENCHMARKS.md). This client runs in the request's task: it writes the request head and
//! body with one write, parses the response head with `httparse` from a per-connection read
//! buffer, and hands the response body out of that buffer without copying. The connection
//! goes back to the pool when the body has been read to its end.
//!
//! Requests whose body streams (unknown length, or larger than [`MAX_WHOLE_BODY`]) keep
//! hyper's full-duplex client, which reads the response while the request body is still
//! being written.
//!
//! Framing follows RFC 9112 strictly, so that what the gateway forwards is exactly one
//! message: the request carries one `content-length` computed here (never the client's), and
//! the response is read by `transfer-encoding: chunked`, by a single consistent
//! `content-length`, or to the connection's end; anything ambiguous is a bad response and
//! the connection is not reused.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::body::BodyError;
use crate::h1wire::{has_token, parse_decimal, put_field, put_length, tokens};

/// Largest request body sent by this client; it is read whole before the request is written.
pub const MAX_WHOLE_BODY: u64 = 64 * 1024;
/// Largest response head accepted from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most header fields accepted in a response head.
const MAX_RESPONSE_HEADERS: usize = 128;
/// Largest write buffer a pooled connection keeps between requests.
const KEPT_WRITE_BUFFER: usize = 16 * 1024;
/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;
/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// Most bytes of trailer fields read (and dropped) after a chunked body.
const MAX_TRAILERS: usize = 16 * 1024;

/// The transport under an upstream connection.
pub enum Io {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS to the upstream.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Tcp(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One upstream HTTP/1.1 connection and its read buffer.
pub struct Conn {
    io: Io,
    buf: BytesMut,
    /// Scratch space of the head parser, kept between responses.
    spans: Vec<(HeaderName, usize, usize)>,
    /// The outgoing request, kept between requests so its allocation is reused.
    out: Vec<u8>,
    /// When it was last put back in the pool.
    pub since: Instant,
}

/// Idle connections of one target.
pub type RawIdle = Arc<Mutex<Vec<Box<Conn>>>>;

impl Conn {
    /// A fresh connection.
    pub fn new(io: Io) -> Box<Self> {
        Box::new(Conn {
            io,
            buf: BytesMut::new(),
            spans: Vec::new(),
            out: Vec::new(),
            since: Instant::now(),
        })
    }

    /// Whether an idle connection can carry a request: the upstream has neither closed it
    /// nor sent anything unasked. Costs no system call while the socket has had no event.
    pub fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [0u8; 1];
        let mut rb = ReadBuf::new(&mut probe);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut rb),
            Poll::Pending
        )
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Length(u64),
    Chunked(Chunk),
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
}

/// Why a round trip failed.
#[derive(Debug)]
pub struct Failure {
    /// What happened.
    pub error: io::Error,
    /// No byte of a response arrived, so the upstream cannot have answered the request.
    pub nothing_received: bool,
    /// Writing the request failed.
    pub write_failed: bool,
}

fn bad(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Writes `method pq` with `headers` and `body` on `conn` and reads the response head.
pub async fn round_trip(
    conn: &mut Conn,
    method: &Method,
    pq: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Response<()>, Framing), Failure> {
    let out = &mut conn.out;
    out.clear();
    encode_head(out, method, pq, headers, body.len());
    out.extend_from_slice(body);
    let mut write_failed = None;
    if let Err(e) = conn.io.write_all(&conn.out).await {
        write_failed = Some(e);
    } else if let Err(e) = conn.io.flush().await {
        write_failed = Some(e);
    }
    // a pooled connection keeps a request-sized buffer, not the largest body it ever sent
    if conn.out.capacity() > KEPT_WRITE_BUFFER {
        conn.out = Vec::new();
    }
    // An upstream may answer (413, 401) and close before it has read the whole request; its
    // answer is still read when writing failed.
    let mut received = false;
    loop {
        match parse_head(&mut conn.buf, &mut conn.spans, method) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(error) => {
                return Err(Failure {
                    error,
                    nothing_received: false,
                    write_failed: write_failed.is_some(),
                })
            }
        }
        if conn.buf.len() > MAX_RESPONSE_HEAD {
            return Err(Failure {
                error: bad("response head too large"),
                nothing_received: false,
                write_failed: false,
            });
        }
        let read = poll_fn(|cx| conn.poll_fill(cx)).await;
        match read {
            Ok(0) | Err(_) => {
                let failed_writing = write_failed.is_some();
                let error = match (read, write_failed) {
                    (_, Some(w)) => w,
                    (Err(e), None) => e,
                    (Ok(_), None) => io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before a response",
                    ),
                };
                return Err(Failure {
                    error,
                    nothing_received: !received && conn.buf.is_empty(),
                    write_failed: failed_writing,
                });
            }
            Ok(_) => received = true,
        }
    }
}

/// The framing of a response body and whether its connection may be reused after it.
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    kind: Kind,
    keep_alive: bool,
}

fn encode_head(out: &mut Vec<u8>, method: &Method, pq: &str, headers: &HeaderMap, len: usize) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(pq.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        // framing is ours to set; hop-by-hop fields were removed by the handler
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if len > 0 || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        put_length(out, len as u64);
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether a Connection value lists nothing but `close` and `keep-alive`.
fn only_persistence_tokens(value: &[u8]) -> bool {
    tokens(value).all(|t| t.eq_ignore_ascii_case(b"close") || t.eq_ignore_ascii_case(b"keep-alive"))
}

/// Parses a response head at the start of `buf`, skipping interim (1xx) responses.
/// `Ok(None)`: more bytes are needed.
fn parse_head(
    buf: &mut BytesMut,
    spans: &mut Vec<(HeaderName, usize, usize)>,
    method: &Method,
) -> io::Result<Option<(Response<()>, Framing)>> {
    loop {
        let mut slots = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() };
            MAX_RESPONSE_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let n = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, buf, &mut slots)
        {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(bad("too many response headers")),
            Err(_) => return Err(bad("malformed response head")),
        };
        let code = res.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| bad("invalid status code"))?;
        if status.is_informational() {
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(bad("unrequested protocol switch"));
            }
            buf.advance(n);
            continue;
        }
        let version = if res.version == Some(1) {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        // room for the fields the gateway adds on the way back
        let mut headers = HeaderMap::with_capacity(res.headers.len() + 4);
        let base = buf.as_ptr() as usize;
        spans.clear();
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut has_te = false;
        let mut close = version == Version::HTTP_10;
        for h in res.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| bad("invalid response header name"))?;
            if name == header::CONTENT_LENGTH {
                for part in h.value.split(|b| *b == b',') {
                    let v = parse_decimal(part.trim_ascii())
                        .ok_or_else(|| bad("invalid content-length"))?;
                    if length.is_some_and(|l| l != v) {
                        return Err(bad("conflicting content-length values"));
                    }
                    length = Some(v);
                }
            } else if name == header::TRANSFER_ENCODING {
                has_te = true;
                // chunked counts only as the final coding
                chunked = h
                    .value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                continue;
            } else if name == header::CONNECTION {
                if has_token(h.value, b"close") {
                    close = true;
                } else if version == Version::HTTP_10 && has_token(h.value, b"keep-alive") {
                    close = false;
                }
                // hop-by-hop: a field that only says close or keep-alive (what upstreams
                // send) is consumed here; one that names other fields stays for the
                // handler to strip them with it
                if only_persistence_tokens(h.value) {
                    continue;
                }
            }
            // the value is taken out of the head's bytes below, without a copy
            let start = (h.value.as_ptr() as usize).wrapping_sub(base);
            spans.push((name, start, start + h.value.len()));
        }
        let head = buf.split_to(n).freeze();
        for (name, start, end) in spans.drain(..) {
            let value = head
                .get(start..end)
                .map(|v| head.slice_ref(v))
                .and_then(|v| HeaderValue::from_maybe_shared(v).ok())
                .ok_or_else(|| bad("invalid response header"))?;
            headers.append(name, value);
        }
        let no_body = *method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let kind = if no_body {
            Kind::Length(0)
        } else if has_te {
            // RFC 9112 6.3: transfer-encoding overrides content-length, and a message with
            // both may be an attempt at smuggling: the connection is not reused
            if length.is_some() {
                headers.remove(header::CONTENT_LENGTH);
                close = true;
            }
            if chunked && version == Version::HTTP_11 {
                Kind::Chunked(Chunk::Size)
            } else {
                close = true;
                Kind::Close
            }
        } else if let Some(l) = length {
            Kind::Length(l)
        } else {
            close = true;
            Kind::Close
        };
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        return Ok(Some((
            response,
            Framing {
                kind,
                keep_alive: !close,
            },
        )));
    }
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 15 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        Some(acc * 16 + u64::from(d))
    })
}

enum Step {
    Data(Bytes),
    NeedMore,
    End,
}

/// Takes the next piece of a chunked body out of `buf`.
fn decode_chunked(state: &mut Chunk, buf: &mut BytesMut) -> io::Result<Step> {
    loop {
        match *state {
            Chunk::Size => {
                let Some(eol) = buf.iter().position(|b| *b == b'\n') else {
                    if buf.len() > MAX_CHUNK_LINE {
                        return Err(bad("chunk size line too long"));
                    }
                    return Ok(Step::NeedMore);
                };
                if eol > MAX_CHUNK_LINE {
                    return Err(bad("chunk size line too long"));
                }
                let line = buf.get(..eol).unwrap_or_default();
                let line = line
                    .strip_suffix(b"\r")
                    .ok_or_else(|| bad("chunk size line without CRLF"))?;
                // extensions after ';' are ignored
                let size = line.split(|b| *b == b';').next().unwrap_or_default();
                let size = parse_hex(size).ok_or_else(|| bad("invalid chunk size"))?;
                buf.advance(eol + 1);
                *state = if size == 0 {
                    Chunk::Trailers(0)
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(rem) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let take = rem.min(buf.len() as u64);
                let data = buf.split_to(take as usize).freeze();
                *state = if take == rem {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(rem - take)
                };
                return Ok(Step::Data(data));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Step::NeedMore);
                }
                if buf.get(..2) != Some(b"\r\n".as_slice()) {
                    return Err(bad("chunk data not followed by CRLF"));
                }
                buf.advance(2);
                *state = Chunk::Size;
            }
            Chunk::Trailers(seen) => {
                let Some(eol) = buf.iter().position(|b| *b == b'\n') else {
                    if seen + buf.len() > MAX_TRAILERS {
                        return Err(bad("trailers too large"));
                    }
                    return Ok(Step::NeedMore);
                };
                let empty = matches!(buf.get(..eol), Some(b"\r") | Some(b""));
                buf.advance(eol + 1);
                if empty {
                    return Ok(Step::End);
                }
                if seen + eol > MAX_TRAILERS {
                    return Err(bad("trailers too large"));
                }
                *state = Chunk::Trailers(seen + eol + 1);
            }
        }
    }
}

/// A response body read from an upstream connection; read to its end, the connection goes
/// back to the pool. Dropped early, the connection is closed (it is mid-message).
pub struct RawBody {
    conn: Option<Box<Conn>>,
    kind: Kind,
    keep_alive: bool,
    back: RawIdle,
    max_idle: usize,
}

impl RawBody {
    /// The body after `head`, read from `conn`.
    pub fn new(conn: Box<Conn>, head: Framing, back: RawIdle, max_idle: usize) -> Self {
        let mut b = RawBody {
            conn: Some(conn),
            kind: head.kind,
            keep_alive: head.keep_alive,
            back,
            max_idle,
        };
        if b.kind == Kind::Length(0) {
            b.finish();
        }
        b
    }

    /// The message is over: the connection goes back to the pool if it may be reused.
    fn finish(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        self.kind = Kind::Length(0);
        if !self.keep_alive || !conn.buf.is_empty() {
            return;
        }
        conn.since = Instant::now();
        let mut idle = self.back.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.conn = None;
        self.kind = Kind::Length(0);
        Poll::Ready(Some(Err(BodyError::Upstream(e))))
    }
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.kind {
                Kind::Length(rem) => {
                    if *rem == 0 {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    if !conn.buf.is_empty() {
                        let take = (*rem).min(conn.buf.len() as u64);
                        let data = conn.buf.split_to(take as usize).freeze();
                        *rem -= take;
                        if *rem == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Kind::Chunked(state) => match decode_chunked(state, &mut conn.buf) {
                    Ok(Step::Data(d)) => return Poll::Ready(Some(Ok(Frame::data(d)))),
                    Ok(Step::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::NeedMore) => {}
                    Err(e) => return this.fail(e),
                },
                Kind::Close => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if this.kind == Kind::Close => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return this.fail(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upstream closed the connection mid-body",
                    ))
                }
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.kind == Kind::Length(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.kind {
            Kind::Length(n) => SizeHint::with_exact(n),
            _ if self.conn.is_none() => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str, method: Method) -> io::Result<Option<(Response<()>, Framing)>> {
        let mut b = BytesMut::from(raw.as_bytes());
        parse_head(&mut b, &mut Vec::new(), &method)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let (r, k) = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!((k.kind, k.keep_alive), (Kind::Length(5), true));
        // interim responses are skipped
        let (r, _) = head(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
            Method::POST,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.status(), 201);
        // both framings: chunked wins, content-length goes, the connection is not reused
        let (r, k) = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(r.headers().get("content-length").is_none());
        assert!(r.headers().get("transfer-encoding").is_none());
        assert_eq!((k.kind, k.keep_alive), (Kind::Chunked(Chunk::Size), false));
        // a coding other than a final chunked: read to the end of the connection
        let (_, k) = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!((k.kind, k.keep_alive), (Kind::Close, false));
        // no framing at all
        let (_, k) = head("HTTP/1.1 200 OK\r\n\r\n", Method::GET)
            .unwrap()
            .unwrap();
        assert_eq!((k.kind, k.keep_alive), (Kind::Close, false));
        // HEAD and 304 have no body whatever they say
        let (_, k) = head("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", Method::HEAD)
            .unwrap()
            .unwrap();
        assert_eq!(k.kind, Kind::Length(0));
        // HTTP/1.0 closes unless it asks to stay
        let (_, k) = head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", Method::GET)
            .unwrap()
            .unwrap();
        assert!(!k.keep_alive);
        let (_, k) = head(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(!k.keep_alive);
        assert!(head("HTTP/1.1 200 OK\r\ncontent-length", Method::GET)
            .unwrap()
            .is_none());
    }

    #[test]
    fn connection_fields_are_consumed_unless_they_name_others() {
        let (r, k) = head(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\ncontent-length: 0\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(r.headers().get("connection").is_none());
        assert!(k.keep_alive);
        let (r, k) = head(
            "HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 0\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(r.headers().get("connection").is_none());
        assert!(!k.keep_alive);
        // a field the Connection header names stays visible, so the handler strips both
        let (r, k) = head(
            "HTTP/1.1 200 OK\r\nconnection: keep-alive, x-hop\r\nx-hop: 1\r\ncontent-length: 0\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.headers()["connection"], "keep-alive, x-hop");
        assert!(k.keep_alive);
        let (mut parts, ()) = r.into_parts();
        crate::forwarding::strip_hop_by_hop(&mut parts.headers);
        assert_eq!(
            parts.headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["content-length"]
        );
    }

    #[test]
    fn ambiguous_or_malformed_heads_are_refused() {
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 999999 OK\r\n\r\n",
            "garbage\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        ] {
            assert!(head(raw, Method::GET).is_err(), "{raw:?}");
        }
        // equal repeated values are one length
        let (_, k) = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(k.kind, Kind::Length(3));
    }

    fn dechunk(raw: &[u8]) -> io::Result<(Vec<u8>, bool, usize)> {
        let mut buf = BytesMut::from(raw);
        let mut state = Chunk::Size;
        let mut out = Vec::new();
        loop {
            match decode_chunked(&mut state, &mut buf)? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::NeedMore => return Ok((out, false, buf.len())),
                Step::End => return Ok((out, true, buf.len())),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_strictly() {
        let (out, end, rest) =
            dechunk(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT").unwrap();
        assert_eq!(out, b"hello world");
        assert!(end);
        assert_eq!(rest, 4, "bytes after the message stay in the buffer");
        let (out, end, _) = dechunk(b"A\r\n01234").unwrap();
        assert_eq!((out.as_slice(), end), (b"01234".as_slice(), false));
        for raw in [
            &b"5\r\nhelloXX0\r\n\r\n"[..],
            b"-1\r\n",
            b"g\r\n",
            b"\r\n",
            b"5\nhello\r\n",
            b"ffffffffffffffffff\r\n",
        ] {
            assert!(dechunk(raw).is_err(), "{raw:?}");
        }
        assert!(dechunk(&vec![b'1'; MAX_CHUNK_LINE + 10]).is_err());
    }

    #[test]
    fn the_request_carries_our_framing_only() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("up"));
        h.insert("content-length", HeaderValue::from_static("999"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        encode_head(&mut out, &Method::POST, "/p?q=1", &h, 3);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: up\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 3\r\n\r\n"
        );
        let mut out = Vec::new();
        encode_head(&mut out, &Method::GET, "/", &HeaderMap::new(), 0);
        assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
        let mut out = Vec::new();
        encode_head(&mut out, &Method::PUT, "/", &HeaderMap::new(), 0);
        assert_eq!(out, b"PUT / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
    }
}
