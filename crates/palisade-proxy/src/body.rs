//! Body types and wrappers: a request body that counts bytes and enforces the size cap while
//! streaming, and a response body that counts bytes and reports when the exchange is over.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Errors a body can carry through the proxy.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client sent more than the route allows.
    #[error("request body exceeds {0} bytes")]
    TooLarge(u64),
    /// The underlying connection failed.
    #[error("body stream failed: {0}")]
    Stream(#[from] hyper::Error),
    /// The upstream's response body could not be read (reset, truncated, malformed).
    #[error("upstream body: {0}")]
    Upstream(std::io::Error),
    /// The body (the upstream's, or the client's read for a policy) sent no byte for this
    /// long.
    #[error("body idle for {0:?}")]
    Idle(std::time::Duration),
}

impl BodyError {
    /// The code an access-log record carries for a response body that ended this way.
    pub fn log_code(&self) -> &'static str {
        match self {
            BodyError::Idle(_) => "upstream.body_timeout",
            BodyError::Upstream(_) => "upstream.body_truncated",
            BodyError::TooLarge(_) | BodyError::Stream(_) => "upstream.body_failed",
        }
    }
}

/// The body type used on both sides of the proxy.
pub type ProxyBody = UnsyncBoxBody<Bytes, BodyError>;

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body with these bytes.
pub fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A client's request body: streamed by hyper, or already whole (read by the HTTP/1.1 fast
/// path together with its head).
pub enum ClientBody {
    /// Read by hyper's server as it arrives.
    Hyper(hyper::body::Incoming),
    /// The whole body; taken by the first poll.
    Whole(Option<Bytes>),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ClientBody::Hyper(b) => Pin::new(b).poll_frame(cx),
            ClientBody::Whole(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Hyper(b) => b.is_end_stream(),
            ClientBody::Whole(b) => b.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Hyper(b) => b.size_hint(),
            ClientBody::Whole(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// How far the client's request body has come, shared by the body wrapper that reads it and
/// the upstream timer that must tell a stalled client from a slow upstream.
#[derive(Debug, Default)]
pub struct BodyProgress {
    /// Bytes received so far.
    pub bytes: AtomicU64,
    /// The last read of the body is waiting for the client (not for the upstream to read).
    pub waiting_on_client: std::sync::atomic::AtomicBool,
    /// The body has ended.
    pub done: std::sync::atomic::AtomicBool,
}

pin_project_lite::pin_project! {
    /// Streams the client's body upstream, counting bytes and failing past `limit`.
    pub struct Capped {
        #[pin]
        inner: ClientBody,
        limit: u64,
        seen: Arc<BodyProgress>,
    }
}

impl Capped {
    /// Wraps `inner`; `seen` follows its progress.
    pub fn new(inner: ClientBody, limit: u64, seen: Arc<BodyProgress>) -> Self {
        Capped { inner, limit, seen }
    }
}

impl Body for Capped {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        this.seen
            .waiting_on_client
            .store(r.is_pending(), Ordering::Relaxed);
        match r {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    let n = d.len() as u64;
                    let total = this.seen.bytes.fetch_add(n, Ordering::Relaxed) + n;
                    if total > *this.limit {
                        return Poll::Ready(Some(Err(BodyError::TooLarge(*this.limit))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Stream(e)))),
            Poll::Ready(None) => {
                this.seen.done.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Called once when a response body is finished or dropped, with the bytes sent.
pub trait OnDone: Send + 'static {
    /// The exchange is over; `failed` says why the body broke off, when it did on our side
    /// (the upstream's body failed or stalled), as opposed to a client that went away.
    fn done(self: Box<Self>, bytes_out: u64, complete: bool, failed: Option<&'static str>);
}

pin_project_lite::pin_project! {
    /// Streams the response to the client, counting bytes; reports completion once.
    pub struct Counted {
        #[pin]
        inner: ProxyBody,
        sent: u64,
        complete: bool,
        failed: Option<&'static str>,
        on_done: Option<Box<dyn OnDone>>,
    }
    impl PinnedDrop for Counted {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(d) = this.on_done.take() {
                d.done(*this.sent, *this.complete, *this.failed);
            }
        }
    }
}

impl Counted {
    /// Wraps a response body.
    pub fn new(inner: ProxyBody, on_done: Box<dyn OnDone>) -> Self {
        let complete = inner.is_end_stream();
        Counted {
            inner,
            sent: 0,
            complete,
            failed: None,
            on_done: Some(on_done),
        }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        let r = this.inner.as_mut().poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    *this.sent += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    *this.complete = true;
                }
            }
            Poll::Ready(None) => *this.complete = true,
            Poll::Ready(Some(Err(e))) => *this.failed = Some(e.log_code()),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// Fails a body that sends nothing for `limit` with [`BodyError::Idle`]: an upstream that
    /// sends its head and then stalls, or a client that stops sending the body a policy
    /// waits for, must not hold the request (and its slots) forever. The timer is armed only
    /// when the body has nothing ready, so a body that streams without pause costs none.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        limit: std::time::Duration,
        armed: bool,
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, limit: std::time::Duration) -> Self {
        IdleTimeout {
            inner,
            limit,
            armed: false,
            sleep: tokio::time::sleep(limit),
        }
    }
}

impl<B: Body<Data = Bytes, Error = BodyError>> Body for IdleTimeout<B> {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Pending => {
                if !*this.armed {
                    let deadline = tokio::time::Instant::now() + *this.limit;
                    this.sleep.as_mut().reset(deadline);
                    *this.armed = true;
                }
                if std::future::Future::poll(this.sleep.as_mut(), cx).is_ready() {
                    return Poll::Ready(Some(Err(BodyError::Idle(*this.limit))));
                }
                Poll::Pending
            }
            r => {
                *this.armed = false;
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Largest chunk passed on at once by [`Paced`], so that pacing is smooth whatever the size of
/// the frames the other side sends.
const PACE_CHUNK: usize = 16 * 1024;

pin_project_lite::pin_project! {
    /// Passes a body on no faster than its pacers allow: each chunk waits for what they say.
    pub struct Paced {
        #[pin]
        inner: ProxyBody,
        pacers: Vec<Arc<dyn palisade_core::Pace>>,
        dir: palisade_core::BodyDirection,
        held: Option<Bytes>,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
    }
}

impl Paced {
    /// Wraps `inner`.
    pub fn new(
        inner: ProxyBody,
        pacers: Vec<Arc<dyn palisade_core::Pace>>,
        dir: palisade_core::BodyDirection,
    ) -> Self {
        Paced {
            inner,
            pacers,
            dir,
            held: None,
            sleep: None,
        }
    }
}

impl Body for Paced {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        // `held` is the rest of a frame; its next chunk is already reserved with the pacers
        // and may go once `sleep` (if any) is over
        let mut this = self.project();
        loop {
            if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
                if std::future::Future::poll(sleep, cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep.set(None);
            }
            if let Some(mut data) = this.held.take() {
                let chunk = data.split_to(data.len().min(PACE_CHUNK));
                if !data.is_empty() {
                    let wait = reserve(this.pacers, *this.dir, data.len().min(PACE_CHUNK));
                    *this.held = Some(data);
                    if !wait.is_zero() {
                        this.sleep.set(Some(tokio::time::sleep(wait)));
                    }
                }
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => {
                        let wait = reserve(this.pacers, *this.dir, data.len().min(PACE_CHUNK));
                        *this.held = Some(data);
                        if !wait.is_zero() {
                            this.sleep.set(Some(tokio::time::sleep(wait)));
                        }
                    }
                    Ok(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    // trailers pass as they are
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let held = self.held.as_ref().map_or(0, |d| d.len() as u64);
        let inner = self.inner.size_hint();
        let mut h = SizeHint::new();
        h.set_lower(inner.lower().saturating_add(held));
        if let Some(u) = inner.upper() {
            h.set_upper(u.saturating_add(held));
        }
        h
    }
}

fn reserve(
    pacers: &[Arc<dyn palisade_core::Pace>],
    dir: palisade_core::BodyDirection,
    bytes: usize,
) -> std::time::Duration {
    pacers
        .iter()
        .map(|p| p.reserve(dir, bytes as u64))
        .max()
        .unwrap_or_default()
}
