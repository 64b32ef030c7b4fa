//! `GET /api/v1/events/stream`: security events as Server-Sent Events, live, with the same
//! filters as `/api/v1/events`. A client that reconnects with `Last-Event-ID` (or `after`)
//! first gets what it missed that the store still has. A subscriber that falls behind is told
//! how many events it lost (`event: lost`); the request path never waits for it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::sync::{broadcast, mpsc};

use super::problem;
use crate::body::{BodyError, ProxyBody};
use crate::events::Event;
use crate::Shared;

/// A comment line sent this often keeps proxies and browsers from closing an idle stream.
const KEEPALIVE: Duration = Duration::from_secs(15);

struct Channel(mpsc::Receiver<Bytes>);

impl Body for Channel {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn frame(e: &Event) -> Bytes {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("id: {}\nevent: security\ndata: {data}\n\n", e.id))
}

/// Starts a stream for `query`, or explains the bad filter.
pub fn events(
    shared: &Arc<Shared>,
    query: Option<&str>,
    last_event_id: Option<u64>,
) -> Response<ProxyBody> {
    let (mut filter, _) = match super::api::filter_of(query) {
        Ok(f) => f,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "admin.bad_request",
                "Bad filter",
                &e,
            )
        }
    };
    if filter.after.is_none() {
        filter.after = last_event_id;
    }
    // subscribe before reading the backlog: nothing falls between the two
    let mut live = shared.events.subscribe();
    let backlog = match filter.after {
        Some(_) => shared.events.all(&filter),
        None => Vec::new(),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut shutdown = shared.admin_closing.subscribe();
    tokio::spawn(async move {
        let mut last = 0;
        if tx
            .send(Bytes::from_static(
                b": palisade security events\nretry: 2000\n\n",
            ))
            .await
            .is_err()
        {
            return;
        }
        for e in backlog {
            last = e.id;
            if tx.send(frame(&e)).await.is_err() {
                return;
            }
        }
        loop {
            let next = tokio::select! {
                r = live.recv() => r,
                _ = tokio::time::sleep(KEEPALIVE) => {
                    if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        return;
                    }
                    continue;
                }
                _ = shutdown.changed() => return,
            };
            let bytes = match next {
                Ok(e) if e.id > last && filter.keeps(&e) => {
                    last = e.id;
                    frame(&e)
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    Bytes::from(format!("event: lost\ndata: {{\"lost\":{n}}}\n\n"))
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if tx.send(bytes).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(Channel(rx).boxed_unsync());
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}
