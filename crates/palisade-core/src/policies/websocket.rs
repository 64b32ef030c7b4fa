//! `websocket`: WebSocket (RFC 6455) through the whole pipeline. The handshake is an HTTP
//! request like any other, so every policy of the route runs on it first (authentication,
//! authorization, rate limits, threat detection on its URL and headers); this policy checks
//! that it is a well-formed WebSocket handshake, applies the route's allow-lists (origins,
//! subprotocols), removes the extensions the gateway could not inspect through
//! (`permessage-deflate` compresses messages past any check), and hands the proxy the limits
//! of the session: the largest message, messages per second, the idle timeout. The proxy
//! then relays frames with [`parse_head`] and closes a session that goes past them, with the
//! close code of RFC 6455 that says why.
//!
//! | request | answer |
//! |---|---|
//! | no `Upgrade` header | not a handshake: the route serves it as plain HTTP |
//! | `Upgrade` other than `websocket` | 400 `websocket.bad_handshake` |
//! | not GET, not HTTP/1.1, no `Connection: upgrade`, key not 16 bytes of base64 | 400 `websocket.bad_handshake` |
//! | `Sec-WebSocket-Version` other than 13 | 426 `websocket.version`, `Sec-WebSocket-Version: 13` |
//! | `origins` set and `Origin` not in it (or missing) | 403 `websocket.origin_denied` |
//! | `protocols` set and none offered is in it | 400 `websocket.protocol_not_allowed` |
//! | otherwise | the handshake goes upstream without `Sec-WebSocket-Extensions`, offering only the allowed subprotocols |
//!
//! In the session: a message over `max_message_bytes` closes with 1009, more messages than
//! the rate allows or a text message the route's `threat` policy refuses with 1008, a frame
//! that breaks RFC 6455 with 1002, silence longer than `idle_timeout` with 1001.

use std::time::Duration;

use http::{header, HeaderValue, Method, StatusCode, Version};
use serde::Deserialize;

use super::SpecError;
use crate::duration::Dur;
use crate::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, Stage, Verdict,
};

/// The handshake is not a WebSocket handshake the gateway relays.
pub const BAD_HANDSHAKE: &str = "websocket.bad_handshake";
/// Another WebSocket version than 13.
pub const VERSION: &str = "websocket.version";
/// The page's origin is not allowed.
pub const ORIGIN_DENIED: &str = "websocket.origin_denied";
/// No offered subprotocol is allowed.
pub const PROTOCOL_NOT_ALLOWED: &str = "websocket.protocol_not_allowed";

/// Config of the `websocket` policy.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebSocketSpec {
    /// `enforce` (default) or `monitor` (handshake refusals are logged, not sent; the session
    /// limits always apply).
    #[serde(default)]
    pub mode: Mode,
    /// The largest message (all its frames), either way. Default 1 MiB, at most 64 MiB.
    #[serde(default)]
    pub max_message_bytes: Option<u64>,
    /// Messages per second a client may send on one connection (a token bucket); default
    /// no limit.
    #[serde(default)]
    pub messages_per_second: Option<u32>,
    /// Messages at once above the rate. Default: `messages_per_second`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// A session with no frame either way for this long is closed (1001). Default 60s.
    #[serde(default)]
    pub idle_timeout: Option<Dur>,
    /// Page origins allowed to open a session (`https://app.example.com`): a browser sends
    /// its cookies with the handshake, so without this any site could open one in the name
    /// of a logged-in user (cross-site WebSocket hijacking). Default: any, and no `Origin`.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Subprotocols (`Sec-WebSocket-Protocol`) a client may ask for; default: any.
    #[serde(default)]
    pub protocols: Vec<String>,
    /// Pass the client's text messages to the route's `threat` policy, which closes the
    /// session (1008) on an attack. Default true (no effect without a `threat` policy).
    #[serde(default)]
    pub inspect_messages: Option<bool>,
}

/// What the proxy enforces on a session (put on the exchange by the handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message, either way.
    pub max_message_bytes: u64,
    /// Client messages per second and burst.
    pub rate: Option<(u32, u32)>,
    /// Longest silence.
    pub idle_timeout: Duration,
    /// Text messages to the route's `threat` policy.
    pub inspect_messages: bool,
}

/// The runtime `websocket` policy.
#[derive(Debug)]
pub struct WebSocket {
    limits: std::sync::Arc<Limits>,
    origins: Vec<String>,
    protocols: Vec<String>,
}

const MAX_MESSAGE_CEILING: u64 = 64 * 1024 * 1024;

impl WebSocketSpec {
    /// Builds the policy.
    pub fn build(&self) -> Result<WebSocket, Vec<SpecError>> {
        let mut errors = Vec::new();
        let max = self.max_message_bytes.unwrap_or(1024 * 1024);
        if max == 0 || max > MAX_MESSAGE_CEILING {
            errors.push(SpecError::new(
                "max_message_bytes",
                "from 1 to 67108864 (64 MiB)",
            ));
        }
        if self.messages_per_second == Some(0) {
            errors.push(SpecError::new(
                "messages_per_second",
                "at least 1; leave it out for no limit",
            ));
        }
        if self.burst.is_some() && self.messages_per_second.is_none() {
            errors.push(SpecError::new("burst", "goes with messages_per_second"));
        }
        if self.burst == Some(0) {
            errors.push(SpecError::new("burst", "at least 1"));
        }
        let idle = self.idle_timeout.map_or(Duration::from_secs(60), |d| d.0);
        if idle.is_zero() {
            errors.push(SpecError::new("idle_timeout", "greater than zero"));
        }
        for (i, o) in self.origins.iter().enumerate() {
            let ok = (o.starts_with("https://") || o.starts_with("http://"))
                && !o.trim_end_matches('/').contains(['?', '#', '*'])
                && o.matches('/').count() == 2;
            if !ok {
                errors.push(SpecError::new(
                    format!("origins[{i}]"),
                    "an origin: scheme, host and port only, e.g. https://app.example.com",
                ));
            }
        }
        for (i, p) in self.protocols.iter().enumerate() {
            if p.is_empty() || !p.bytes().all(is_token_byte) {
                errors.push(SpecError::new(
                    format!("protocols[{i}]"),
                    "a subprotocol name (an HTTP token, e.g. graphql-transport-ws)",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(WebSocket {
            limits: std::sync::Arc::new(Limits {
                max_message_bytes: max,
                rate: self
                    .messages_per_second
                    .map(|r| (r, self.burst.unwrap_or(r))),
                idle_timeout: idle,
                inspect_messages: self.inspect_messages.unwrap_or(true),
            }),
            origins: self
                .origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            protocols: self.protocols.clone(),
        })
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn bad(detail: &str) -> Verdict {
    Verdict::Reject(
        Rejection::new(
            StatusCode::BAD_REQUEST,
            BAD_HANDSHAKE,
            "Bad WebSocket handshake",
        )
        .with_detail(detail.to_string()),
    )
}

/// Whether a comma-separated header has `token` (ASCII case ignored), in any of its fields.
fn has_token(req: &RequestHead, name: header::HeaderName, token: &str) -> bool {
    req.headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Whether `req` asks for a protocol upgrade at all.
pub fn is_upgrade(req: &RequestHead) -> bool {
    req.headers.contains_key(header::UPGRADE)
}

impl WebSocket {
    fn check(&self, req: &mut RequestHead) -> Verdict {
        let upgrade: Vec<&HeaderValue> = req.headers.get_all(header::UPGRADE).iter().collect();
        let websocket =
            matches!(upgrade.as_slice(), [v] if v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        if !websocket {
            return bad("this route upgrades to WebSocket only (`Upgrade: websocket`)");
        }
        if req.method != Method::GET || req.version != Version::HTTP_11 {
            return bad("a WebSocket handshake is an HTTP/1.1 GET");
        }
        if !has_token(req, header::CONNECTION, "upgrade") {
            return bad("`Connection: Upgrade` is missing");
        }
        let version: Vec<&HeaderValue> = req
            .headers
            .get_all(header::SEC_WEBSOCKET_VERSION)
            .iter()
            .collect();
        if !matches!(version.as_slice(), [v] if v.as_bytes() == b"13") {
            return Verdict::Reject(
                Rejection::new(
                    StatusCode::UPGRADE_REQUIRED,
                    VERSION,
                    "Unsupported WebSocket version",
                )
                .with_detail("only version 13 (RFC 6455) is relayed".to_string())
                .with_header(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                ),
            );
        }
        let keys: Vec<&HeaderValue> = req
            .headers
            .get_all(header::SEC_WEBSOCKET_KEY)
            .iter()
            .collect();
        let key_ok = matches!(keys.as_slice(), [k] if {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(k.as_bytes())
                .is_ok_and(|d| d.len() == 16)
        });
        if !key_ok {
            return bad("`Sec-WebSocket-Key` must be one value: 16 bytes in base64");
        }
        if !self.origins.is_empty() {
            let origin = req
                .headers
                .get(header::ORIGIN)
                .and_then(|o| o.to_str().ok())
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase());
            if !origin.is_some_and(|o| self.origins.contains(&o)) {
                return Verdict::Reject(
                    Rejection::new(StatusCode::FORBIDDEN, ORIGIN_DENIED, "Origin not allowed")
                        .with_detail(
                        "the page this WebSocket was opened from is not one of the route's origins"
                            .to_string(),
                    ),
                );
            }
        }
        if !self.protocols.is_empty() {
            let offered: Vec<String> = req
                .headers
                .get_all(header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|p| p.trim().to_string())
                .filter(|p| self.protocols.contains(p))
                .collect();
            let Some(kept) = (!offered.is_empty())
                .then(|| HeaderValue::from_str(&offered.join(", ")).ok())
                .flatten()
            else {
                return Verdict::Reject(
                    Rejection::new(
                        StatusCode::BAD_REQUEST,
                        PROTOCOL_NOT_ALLOWED,
                        "Subprotocol not allowed",
                    )
                    .with_detail(format!("ask for one of: {}", self.protocols.join(", "))),
                );
            };
            req.headers.insert(header::SEC_WEBSOCKET_PROTOCOL, kept);
        }
        // compressed messages would pass every check unread, and reserved bits are refused
        req.headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
        Verdict::Continue
    }
}

#[async_trait::async_trait]
impl Policy for WebSocket {
    fn kind(&self) -> &'static str {
        "websocket"
    }
    fn stage(&self) -> Stage {
        Stage::Validate
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY.with(Phase::RequestHead)
    }
    async fn on_request_head(&self, req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        if !is_upgrade(req) {
            return Ok(Verdict::Continue);
        }
        let v = self.check(req);
        if v == Verdict::Continue {
            x.websocket = Some(self.limits.clone());
        }
        Ok(v)
    }
}

/// What a text message was found to hold by a policy that inspects them (`threat`).
pub trait MessageCheck: Send + Sync + std::fmt::Debug {
    /// What was found in a client's text message (a description for the log and the close
    /// reason) and the input that matched; `None` when it is clean.
    fn check_message(&self, text: &str) -> Option<(String, String)>;
}

/// The head of a frame (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// Last frame of its message.
    pub fin: bool,
    /// 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong.
    pub opcode: u8,
    /// The masking key, when masked.
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
    /// Bytes of the head.
    pub head_len: usize,
}

impl FrameHead {
    /// A control frame (close, ping, pong).
    pub fn is_control(&self) -> bool {
        self.opcode >= 8
    }
}

/// What [`parse_head`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// More bytes are needed.
    Incomplete,
    /// A frame head.
    Frame(FrameHead),
    /// A frame RFC 6455 forbids (the session is closed with 1002).
    Invalid(&'static str),
}

/// Reads a frame head from the start of `buf`. Strict: reserved bits set (no extension is
/// negotiated), unknown opcodes, fragmented or long control frames, lengths not in their
/// shortest form and 64-bit lengths with the top bit set are all refused.
pub fn parse_head(buf: &[u8]) -> Head {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Head::Incomplete;
    };
    if b0 & 0x70 != 0 {
        return Head::Invalid("reserved bits set without an extension");
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
        return Head::Invalid("unknown opcode");
    }
    let masked = b1 & 0x80 != 0;
    let short = u64::from(b1 & 0x7f);
    let (len, mut at) = match short {
        126 => {
            let Some(b) = buf.get(2..4).and_then(|b| <[u8; 2]>::try_from(b).ok()) else {
                return Head::Incomplete;
            };
            let n = u64::from(u16::from_be_bytes(b));
            if n < 126 {
                return Head::Invalid("length not in its shortest form");
            }
            (n, 4)
        }
        127 => {
            let Some(b) = buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
                return Head::Incomplete;
            };
            let n = u64::from_be_bytes(b);
            if n >> 63 != 0 {
                return Head::Invalid("64-bit length with the top bit set");
            }
            if n <= 0xffff {
                return Head::Invalid("length not in its shortest form");
            }
            (n, 10)
        }
        n => (n, 2),
    };
    if opcode >= 8 && (!fin || len > 125) {
        return Head::Invalid("control frames are whole and at most 125 bytes");
    }
    let mask = if masked {
        let Some(m) = buf
            .get(at..at + 4)
            .and_then(|m| <[u8; 4]>::try_from(m).ok())
        else {
            return Head::Incomplete;
        };
        at += 4;
        Some(m)
    } else {
        None
    };
    Head::Frame(FrameHead {
        fin,
        opcode,
        mask,
        len,
        head_len: at,
    })
}

/// Unmasks (or masks) `data` in place; `offset` is the position of `data[0]` in its payload.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    for (i, b) in data.iter_mut().enumerate() {
        let k = mask
            .get(((offset + i as u64) % 4) as usize)
            .copied()
            .unwrap_or(0);
        *b ^= k;
    }
}

/// A close frame with `code` and `reason` (cut to fit 125 bytes), masked with `mask` when
/// it goes to a server.
pub fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    let mut reason = reason;
    while reason.len() > 123 {
        let mut cut = 123;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason = reason.get(..cut).unwrap_or("");
    }
    payload.extend_from_slice(reason.as_bytes());
    let mut out = vec![0x88];
    match mask {
        Some(m) => {
            out.push(0x80 | payload.len() as u8);
            out.extend_from_slice(&m);
            apply_mask(&mut payload, m, 0);
        }
        None => out.push(payload.len() as u8),
    }
    out.extend_from_slice(&payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> RequestHead {
        let mut b = http::Request::builder()
            .method("GET")
            .uri("/chat")
            .version(Version::HTTP_11);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    fn policy(yaml: serde_json::Value) -> WebSocket {
        serde_json::from_value::<WebSocketSpec>(yaml)
            .unwrap()
            .build()
            .unwrap()
    }

    fn code(v: &Verdict) -> Option<&'static str> {
        match v {
            Verdict::Continue | Verdict::Answer(_) => None,
            Verdict::Reject(r) => Some(r.code),
        }
    }

    #[test]
    fn handshake_decision_table() {
        let p = policy(serde_json::json!({
            "origins": ["https://app.example.com"],
            "protocols": ["graphql-transport-ws"]
        }));
        let with = |extra: &[(&str, &str)], drop: &str| {
            let mut h: Vec<(&str, &str)> =
                GOOD.iter().copied().filter(|(k, _)| *k != drop).collect();
            h.extend_from_slice(extra);
            h.push(("origin", "https://app.example.com"));
            head(&h)
        };
        let cases: Vec<(&str, RequestHead, Option<&str>)> = vec![
            (
                "good",
                with(&[("sec-websocket-protocol", "x, graphql-transport-ws")], ""),
                None,
            ),
            (
                "other upgrade",
                with(&[("upgrade", "h2c")], ""),
                Some(BAD_HANDSHAKE),
            ),
            (
                "no connection token",
                with(&[("connection", "close")], "connection"),
                Some(BAD_HANDSHAKE),
            ),
            (
                "version 8",
                with(&[("sec-websocket-version", "8")], "sec-websocket-version"),
                Some(VERSION),
            ),
            (
                "short key",
                with(&[("sec-websocket-key", "c2hvcnQ=")], "sec-websocket-key"),
                Some(BAD_HANDSHAKE),
            ),
            (
                "no protocol allowed",
                with(&[("sec-websocket-protocol", "chat")], ""),
                Some(PROTOCOL_NOT_ALLOWED),
            ),
        ];
        for (name, mut h, want) in cases {
            assert_eq!(code(&p.check(&mut h)), want, "{name}");
        }
        let mut post = with(&[("sec-websocket-protocol", "graphql-transport-ws")], "");
        post.method = Method::POST;
        assert_eq!(code(&p.check(&mut post)), Some(BAD_HANDSHAKE));
        let mut foreign = head(&GOOD);
        foreign
            .headers
            .insert("origin", HeaderValue::from_static("https://evil.example"));
        assert_eq!(code(&p.check(&mut foreign)), Some(ORIGIN_DENIED));
        // extensions are removed, subprotocols narrowed to the allowed ones
        let mut h = with(
            &[
                ("sec-websocket-protocol", "chat, graphql-transport-ws"),
                ("sec-websocket-extensions", "permessage-deflate"),
            ],
            "",
        );
        assert_eq!(p.check(&mut h), Verdict::Continue);
        assert!(!h.headers.contains_key("sec-websocket-extensions"));
        assert_eq!(h.headers["sec-websocket-protocol"], "graphql-transport-ws");
    }

    #[test]
    fn frame_heads_are_read_strictly() {
        // a masked text frame "Hello" (RFC 6455 §5.7)
        let mut f = vec![
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let Head::Frame(h) = parse_head(&f) else {
            panic!("a frame")
        };
        assert_eq!((h.fin, h.opcode, h.len, h.head_len), (true, 1, 5, 6));
        let mut payload = f.split_off(6);
        apply_mask(&mut payload, h.mask.unwrap(), 0);
        assert_eq!(payload, b"Hello");
        for n in 0..6 {
            assert_eq!(parse_head(&f[..n.min(f.len())]), Head::Incomplete, "{n}");
        }
        assert_eq!(parse_head(&[0x82, 126, 0x01, 0x00]).len(), 256);
        let invalid: [&[u8]; 6] = [
            &[0xc1, 0x00],            // RSV1 without an extension
            &[0x83, 0x00],            // opcode 3
            &[0x09, 0x00],            // a fragmented ping
            &[0x89, 126, 0x00, 0x7e], // a 126-byte ping
            &[0x82, 126, 0x00, 0x10], // 16 in the two-byte form
            &[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0],
        ];
        for bytes in invalid {
            assert!(matches!(parse_head(bytes), Head::Invalid(_)), "{bytes:?}");
        }
        let close = close_frame(1009, "message too big", Some([1, 2, 3, 4]));
        let Head::Frame(c) = parse_head(&close) else {
            panic!()
        };
        assert_eq!((c.opcode, c.len), (8, 17));
    }

    impl Head {
        fn len(self) -> u64 {
            match self {
                Head::Frame(h) => h.len,
                _ => u64::MAX,
            }
        }
    }

    #[test]
    fn spec_errors() {
        let bad: WebSocketSpec = serde_json::from_value(serde_json::json!({
            "max_message_bytes": 0, "burst": 3, "origins": ["app.example.com", "https://a.example/x"],
            "protocols": ["a b"]
        }))
        .unwrap();
        let errs = bad.build().unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "max_message_bytes",
                "burst",
                "origins[0]",
                "origins[1]",
                "protocols[0]"
            ]
        );
    }
}
