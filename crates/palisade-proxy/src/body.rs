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

pin_project_lite::pin_project! {
    /// Streams the client's body upstream, counting bytes and failing past `limit`.
    pub struct Capped {
        #[pin]
        inner: hyper::body::Incoming,
        limit: u64,
        seen: Arc<AtomicU64>,
    }
}

impl Capped {
    /// Wraps `inner`; `seen` receives the running byte count.
    pub fn new(inner: hyper::body::Incoming, limit: u64, seen: Arc<AtomicU64>) -> Self {
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
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    let total =
                        this.seen.fetch_add(d.len() as u64, Ordering::Relaxed) + d.len() as u64;
                    if total > *this.limit {
                        return Poll::Ready(Some(Err(BodyError::TooLarge(*this.limit))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Stream(e)))),
            Poll::Ready(None) => Poll::Ready(None),
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
    /// The exchange is over.
    fn done(self: Box<Self>, bytes_out: u64, complete: bool);
}

pin_project_lite::pin_project! {
    /// Streams the response to the client, counting bytes; reports completion once.
    pub struct Counted {
        #[pin]
        inner: ProxyBody,
        sent: u64,
        complete: bool,
        on_done: Option<Box<dyn OnDone>>,
    }
    impl PinnedDrop for Counted {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(d) = this.on_done.take() {
                d.done(*this.sent, *this.complete);
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
            _ => {}
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
