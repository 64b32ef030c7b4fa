//! A WebSocket session a `websocket` policy accepted: the handshake goes to the upstream on
//! a connection of its own, and once both sides have switched protocols the frames are
//! relayed under the session's limits (`palisade_core::policies::websocket`). A client's
//! text message is held until its last frame, checked whole (UTF-8, the route's `threat`
//! policy), and only then forwarded, so an attack never reaches the upstream in part.
//! Binary messages and control frames pass as they come, counted. The policies' holds (a
//! `concurrency_limit` slot) last as long as the session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use palisade_core::policies::websocket::{
    apply_mask, close_frame, parse_head, FrameHead, Head, Limits,
};
use palisade_core::{Exchange, Held, RequestHead};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Mutex;

use super::{Ctx, Entries};
use crate::body::{empty, Counted};
use crate::render::codes;
use crate::upstream::{Pool, SendError};
use crate::Shared;

/// Sessions opened, messages relayed and sessions closed by a limit or a check.
pub(crate) static SESSIONS: AtomicU64 = AtomicU64::new(0);
pub(crate) static MESSAGES: AtomicU64 = AtomicU64::new(0);
pub(crate) static CLOSED_BY_POLICY: AtomicU64 = AtomicU64::new(0);
pub(crate) static OPEN: AtomicU64 = AtomicU64::new(0);

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2).
fn accept_of(key: &[u8]) -> String {
    use base64::Engine as _;
    let mut input = key.to_vec();
    input.extend_from_slice(GUID.as_bytes());
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(d.as_ref())
}

/// Who the session is, for its log lines and events.
struct Session {
    shared: Arc<Shared>,
    request_id: String,
    route: Arc<str>,
    consumer: Option<String>,
    client: std::net::IpAddr,
    path: String,
    limits: Arc<Limits>,
    /// The route's message check, with whether it only reports.
    check: Option<(Arc<dyn palisade_core::Policy>, bool)>,
}

/// Hands the accepted handshake to the upstream; on its `101`, answers the client with it
/// and relays the session in a task of its own.
pub(super) async fn handshake(
    cx: Ctx,
    mut x: Exchange,
    mut head: RequestHead,
    es: &Entries<'_>,
    pool: Arc<Pool>,
    pq: http::uri::PathAndQuery,
    limits: Arc<Limits>,
) -> Response<Counted> {
    let Some(on_client) = head.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return cx.refuse(
            x,
            &palisade_core::Rejection::new(
                StatusCode::BAD_REQUEST,
                palisade_core::policies::websocket::BAD_HANDSHAKE,
                "Bad WebSocket handshake",
            )
            .with_detail("this connection cannot switch protocols (WebSocket needs HTTP/1.1)"),
        );
    };
    let key = head
        .headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes().to_vec())
        .unwrap_or_default();
    let offered = head.headers.get(header::SEC_WEBSOCKET_PROTOCOL).cloned();
    // the forwarding removed the hop-by-hop fields; the handshake needs these two
    head.headers
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    head.headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let Some(ti) = pool.pick(None) else {
        return cx.refuse(x, &codes::no_healthy_target());
    };
    let mut req = http::Request::new(empty());
    *req.method_mut() = head.method.clone();
    *req.headers_mut() = std::mem::take(&mut head.headers);
    let mut cx = cx;
    cx.upstream = pool.targets.get(ti).map(|t| t.base.clone());
    let started = Instant::now();
    let outcome = pool.upgrade(ti, req, pq).await;
    pool.report(ti, outcome.is_ok());
    cx.upstream_ms = Some((started.elapsed().as_secs_f64() * 1e6).round() / 1e3);
    let (res, upstream_io) = match outcome {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(route = %x.route, upstream = %pool.cfg.name, error = %e, request_id = %x.request_id, "WebSocket handshake with the upstream failed");
            let r = match e {
                SendError::Timeout => codes::upstream_timeout(),
                SendError::Connect => codes::upstream_unreachable(),
                _ => codes::upstream_bad_response(),
            };
            return cx.refuse(x, &r);
        }
    };
    let Some(upstream_io) = upstream_io else {
        // the upstream said no: its answer goes back as it is
        let (mut parts, body) = res.into_parts();
        crate::forwarding::strip_hop_by_hop(&mut parts.headers);
        let body = body.map_err(crate::body::BodyError::Stream).boxed_unsync();
        return cx.finish(x, Response::from_parts(parts, body), None);
    };
    // what the upstream agreed to must be what the client asked for, and nothing the
    // gateway cannot read through
    let accept = res.headers().get(header::SEC_WEBSOCKET_ACCEPT).cloned();
    let chosen = res.headers().get(header::SEC_WEBSOCKET_PROTOCOL).cloned();
    let chosen_ok = chosen.as_ref().is_none_or(|c| {
        offered
            .as_ref()
            .and_then(|o| o.to_str().ok())
            .is_some_and(|o| {
                o.split(',')
                    .any(|p| c.to_str().is_ok_and(|c| p.trim() == c.trim()))
            })
    });
    let extensions = res.headers().contains_key(header::SEC_WEBSOCKET_EXTENSIONS);
    if accept.as_ref().map(HeaderValue::as_bytes) != Some(accept_of(&key).as_bytes())
        || !chosen_ok
        || extensions
    {
        tracing::warn!(route = %x.route, upstream = %pool.cfg.name, request_id = %x.request_id, "the upstream's WebSocket answer does not match the handshake (accept key, subprotocol or an extension nobody offered): refused");
        return cx.refuse(x, &codes::upstream_bad_response());
    }
    let mut out = Response::new(empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = out.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Some(a) = accept {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, a);
    }
    if let Some(c) = chosen {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, c);
    }
    let check = es
        .iter()
        .find(|(_, e)| e.policy.message_check().is_some())
        .map(|(i, e)| (e.policy.clone(), es.monitors(i, e)))
        .filter(|_| limits.inspect_messages);
    let session = Session {
        shared: cx.shared.clone(),
        request_id: x.request_id.clone(),
        route: x.route.clone(),
        consumer: x.principal().and_then(|p| p.consumer.clone()),
        client: x.client_ip,
        path: head.uri.path().to_string(),
        limits,
        check,
    };
    let held = x.take_held();
    tokio::spawn(async move {
        let client_io = match on_client.await {
            Ok(io) => io,
            Err(e) => {
                tracing::debug!(error = %e, "the client's side of a WebSocket upgrade failed");
                return;
            }
        };
        relay(
            session,
            TokioIo::new(client_io),
            TokioIo::new(upstream_io),
            held,
        )
        .await;
    });
    cx.finish(x, out, None)
}

use http_body_util::BodyExt as _;

type Io = TokioIo<hyper::upgrade::Upgraded>;

/// Why a session ended.
#[derive(Debug, Clone)]
struct End {
    /// The close code sent to both sides (`None`: a side closed or left).
    code: Option<u16>,
    reason: String,
}

impl End {
    fn closed(reason: &str) -> Self {
        End {
            code: None,
            reason: reason.into(),
        }
    }
    fn with(code: u16, reason: impl Into<String>) -> Self {
        End {
            code: Some(code),
            reason: reason.into(),
        }
    }
}

/// The two sides' writers, shared by both directions (a violation closes both).
struct Writers {
    client: Mutex<WriteHalf<Io>>,
    upstream: Mutex<WriteHalf<Io>>,
}

async fn relay(s: Session, client: Io, upstream: Io, held: Vec<Box<dyn Held>>) {
    SESSIONS.fetch_add(1, Ordering::Relaxed);
    OPEN.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let (mut client_r, client_w) = tokio::io::split(client);
    let (mut up_r, up_w) = tokio::io::split(upstream);
    let w = Writers {
        client: Mutex::new(client_w),
        upstream: Mutex::new(up_w),
    };
    let last = AtomicU64::new(0);
    let counts = [AtomicU64::new(0), AtomicU64::new(0)];
    let end = {
        let from_client = pump(&s, &mut client_r, &w, true, (&last, started), &counts[0]);
        let from_upstream = pump(&s, &mut up_r, &w, false, (&last, started), &counts[1]);
        let watch = watchdog(&s, &last, started);
        tokio::select! {
            e = from_client => e,
            e = from_upstream => e,
            e = watch => e,
        }
    };
    if let Some(code) = end.code {
        let _ = w
            .client
            .lock()
            .await
            .write_all(&close_frame(code, &end.reason, None))
            .await;
        let _ = w
            .upstream
            .lock()
            .await
            .write_all(&close_frame(code, &end.reason, Some(random_mask())))
            .await;
    }
    let _ = w.client.lock().await.shutdown().await;
    let _ = w.upstream.lock().await.shutdown().await;
    // what a side still sends is read and dropped for a moment: closing a socket with
    // unread data resets it, and the reset would destroy the close frame on its way
    let drain = async {
        let mut scratch = vec![0u8; 16 * 1024];
        let _ = tokio::join!(
            async { while matches!(client_r.read(&mut scratch).await, Ok(n) if n > 0) {} },
            async {
                let mut more = vec![0u8; 16 * 1024];
                while matches!(up_r.read(&mut more).await, Ok(n) if n > 0) {}
            }
        );
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    drop(held);
    OPEN.fetch_sub(1, Ordering::Relaxed);
    tracing::info!(
        route = %s.route,
        request_id = %s.request_id,
        seconds = started.elapsed().as_secs(),
        messages_in = counts[0].load(Ordering::Relaxed),
        messages_out = counts[1].load(Ordering::Relaxed),
        close_code = end.code.unwrap_or(1000),
        reason = %end.reason,
        "WebSocket session ended"
    );
}

fn random_mask() -> [u8; 4] {
    let mut m = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut m);
    m
}

/// Closes the session when it has been silent for its idle timeout, or when the gateway
/// drains.
async fn watchdog(s: &Session, last: &AtomicU64, started: Instant) -> End {
    let tick = (s.limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        if s.shared.draining.load(Ordering::Relaxed) {
            return End::with(1001, "the gateway is shutting down");
        }
        let quiet = started
            .elapsed()
            .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
        if quiet >= s.limits.idle_timeout {
            return End::with(1001, "idle timeout");
        }
    }
}

/// A token bucket of client messages.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Reads frames from one side and forwards them to the other, under the limits.
async fn pump(
    s: &Session,
    r: &mut ReadHalf<Io>,
    w: &Writers,
    from_client: bool,
    (last, epoch): (&AtomicU64, Instant),
    count: &AtomicU64,
) -> End {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    // the frames of a text message from the client, held until its last one
    let mut held_frames = BytesMut::new();
    let mut text = Vec::new();
    // (opcode of the message in progress, its bytes so far)
    let mut message: Option<(u8, u64)> = None;
    let mut bucket = s.limits.rate.map(|(_, burst)| Bucket {
        tokens: f64::from(burst),
        at: Instant::now(),
    });
    loop {
        // a whole frame head
        let h: FrameHead = loop {
            match parse_head(&buf) {
                Head::Frame(h) => break h,
                Head::Invalid(why) => return End::with(1002, why),
                Head::Incomplete => {}
            }
            match r.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return End::closed(side_left(from_client)),
                Ok(_) => {}
            }
        };
        if from_client != h.mask.is_some() {
            return End::with(
                1002,
                if from_client {
                    "client frames must be masked"
                } else {
                    "server frames must not be masked"
                },
            );
        }
        if !h.is_control() {
            let so_far = match (h.opcode, message) {
                (0, Some((_, n))) => n,
                (0, None) => return End::with(1002, "a continuation without a message"),
                (_, Some(_)) => return End::with(1002, "a new message before the last ended"),
                (op, None) => {
                    if from_client {
                        if let (Some(b), Some((rate, burst))) = (bucket.as_mut(), s.limits.rate) {
                            let now = Instant::now();
                            b.tokens = (b.tokens
                                + now.duration_since(b.at).as_secs_f64() * f64::from(rate))
                            .min(f64::from(burst));
                            b.at = now;
                            if b.tokens < 1.0 {
                                return policy_close(s, 1008, "message rate exceeded", None);
                            }
                            b.tokens -= 1.0;
                        }
                    }
                    message = Some((op, 0));
                    0
                }
            };
            if so_far.saturating_add(h.len) > s.limits.max_message_bytes {
                return policy_close(
                    s,
                    1009,
                    &format!("message over {} bytes", s.limits.max_message_bytes),
                    None,
                );
            }
            message = message.map(|(op, _)| (op, so_far + h.len));
        }
        // the whole frame: its length is bounded by the message limit (or 125 for control)
        let total = h.head_len as u64 + h.len;
        while (buf.len() as u64) < total {
            match r.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return End::closed(side_left(from_client)),
                Ok(_) => {}
            }
        }
        let Ok(total) = usize::try_from(total) else {
            return End::with(1009, "frame too large");
        };
        let frame = buf.split_to(total);
        last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let inspect_text =
            from_client && s.check.is_some() && matches!(message, Some((1, _))) && !h.is_control();
        if inspect_text {
            let mut payload = frame.get(h.head_len..).unwrap_or_default().to_vec();
            if let Some(m) = h.mask {
                // each frame has its own key, from the frame's first payload byte
                apply_mask(&mut payload, m, 0);
            }
            text.extend_from_slice(&payload);
            held_frames.extend_from_slice(&frame);
            if !h.fin {
                continue;
            }
            message = None;
            count.fetch_add(1, Ordering::Relaxed);
            MESSAGES.fetch_add(1, Ordering::Relaxed);
            let Ok(t) = std::str::from_utf8(&text) else {
                return End::with(1007, "a text message that is not UTF-8");
            };
            if let Some((check, monitor)) = &s.check {
                if let Some((what, input)) = check.message_check().and_then(|c| c.check_message(t))
                {
                    if !monitor {
                        return policy_close(s, 1008, &what, Some(input));
                    }
                    event(s, &what, Some(input), true);
                }
            }
            text.clear();
            let frames = std::mem::take(&mut held_frames);
            if write(w, from_client, &frames).await.is_err() {
                return End::closed(side_left(!from_client));
            }
            continue;
        }
        if !h.is_control() && h.fin {
            message = None;
            count.fetch_add(1, Ordering::Relaxed);
            MESSAGES.fetch_add(1, Ordering::Relaxed);
        }
        // (a close is passed on like any frame: the other side answers it, and the session
        // ends when a side then leaves)
        if write(w, from_client, &frame).await.is_err() {
            return End::closed(side_left(!from_client));
        }
    }
}

fn side_left(from_client: bool) -> &'static str {
    if from_client {
        "the client closed the connection"
    } else {
        "the upstream closed the connection"
    }
}

async fn write(w: &Writers, from_client: bool, bytes: &[u8]) -> std::io::Result<()> {
    if from_client {
        w.upstream.lock().await.write_all(bytes).await
    } else {
        w.client.lock().await.write_all(bytes).await
    }
}

/// A session closed by a limit or a check: counted, logged and recorded as a security event.
fn policy_close(s: &Session, code: u16, why: &str, input: Option<String>) -> End {
    CLOSED_BY_POLICY.fetch_add(1, Ordering::Relaxed);
    event(s, why, input, false);
    End::with(code, why)
}

/// The event of the admin API's store and live stream (and a security-log record) for a
/// message refused, or that would have been in monitor mode.
fn event(s: &Session, why: &str, input: Option<String>, monitored: bool) {
    let code = if input.is_some() {
        "websocket.message_refused"
    } else {
        "websocket.limit"
    };
    tracing::warn!(route = %s.route, request_id = %s.request_id, code, monitored, "WebSocket message refused: {why}");
    let excerpt = input.as_deref().map(palisade_core::excerpt::redact);
    s.shared.events.record(crate::events::Event {
        id: 0,
        time: crate::access_log::now_rfc3339(),
        unix_ms: 0,
        kind: if monitored { "would_refuse" } else { "refusal" }.into(),
        mode: if monitored { "monitor" } else { "enforce" }.into(),
        request_id: s.request_id.clone(),
        route: Some(s.route.clone()),
        consumer: s.consumer.clone(),
        client: s.client,
        method: "WEBSOCKET".into(),
        path: s.path.clone(),
        status: 101,
        code: (!monitored).then(|| code.to_string()),
        title: Some("WebSocket message refused".into()),
        detail: Some(why.to_string()),
        monitored: if monitored {
            vec![code.to_string()]
        } else {
            Vec::new()
        },
        location: input.as_ref().map(|_| "a WebSocket message".to_string()),
        excerpt,
    });
    if s.shared.security_log.enabled() {
        let mut m = serde_json::Map::new();
        m.insert("request_id".into(), s.request_id.clone().into());
        m.insert("client".into(), s.client.to_string().into());
        m.insert("route".into(), s.route.to_string().into());
        m.insert("path".into(), s.path.clone().into());
        m.insert("code".into(), code.into());
        s.shared
            .security_log
            .log(if monitored { "would_refuse" } else { "refusal" }, m);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_key_of_rfc_6455() {
        assert_eq!(
            super::accept_of(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
