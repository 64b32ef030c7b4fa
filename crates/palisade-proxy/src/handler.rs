//! The request path: transport checks, routing, the policy pipeline, forwarding with retries,
//! and the response back, streamed and counted. Nothing here panics; every refusal goes
//! through the one renderer.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::body::ClientBody;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use palisade_config::{PolicyEntry, Route};
use palisade_core::{BodyDirection, Completion, Exchange, Phase, Rejection, Verdict};

use crate::access_log::{now_rfc3339, Record};
use crate::body::{empty, Capped, Counted, OnDone, Paced, ProxyBody};
use crate::forwarding::{
    client_ip, prepare_upstream_request, set_identity, strip_hop_by_hop, strip_identity,
    X_REQUEST_ID,
};
use crate::metrics::RouteStats;
use crate::render::{self, codes};
use crate::upstream::SendError;
use crate::{Runtime, Shared};

mod websocket;
pub(crate) use websocket::{
    CLOSED_BY_POLICY as WS_CLOSED_BY_POLICY, MESSAGES as WS_MESSAGES, OPEN as WS_OPEN,
    SESSIONS as WS_SESSIONS,
};

/// What a connection knows about itself.
#[derive(Debug)]
pub struct ConnInfo {
    /// TCP peer.
    pub peer: SocketAddr,
    /// Whether TLS was terminated.
    pub tls: bool,
    /// Index of the listener in the config.
    pub listener: usize,
    /// Listener name.
    pub listener_name: Arc<str>,
    /// The peer address as a header value, made once per connection.
    pub peer_value: HeaderValue,
    /// `for=…;proto=…` for the Forwarded header, made once per connection.
    pub forwarded_for: String,
    /// The Forwarded value last made on this connection and the Host it was made for:
    /// clients send the same Host on every request of a connection.
    forwarded_cache: std::sync::Mutex<Option<(HeaderValue, HeaderValue)>>,
    /// The client certificate the listener verified (mTLS), once per connection.
    pub client_cert: Option<Arc<palisade_core::ClientCert>>,
}

impl ConnInfo {
    /// This connection's own Forwarded element for a request with `host` (the Host value
    /// when it can be quoted safely): made once for each Host the connection sends.
    pub(crate) fn forwarded_element(&self, host: Option<&HeaderValue>) -> Option<HeaderValue> {
        let Some(host) = host else {
            return HeaderValue::from_str(&self.forwarded_for).ok();
        };
        let mut cache = self.forwarded_cache.lock().ok();
        if let Some((h, v)) = cache.as_deref().and_then(Option::as_ref) {
            if h == host {
                return Some(v.clone());
            }
        }
        let text = host.to_str().ok()?;
        let v = HeaderValue::from_str(&format!("{};host=\"{text}\"", self.forwarded_for)).ok()?;
        if let Some(c) = cache.as_deref_mut() {
            *c = Some((host.clone(), v.clone()));
        }
        Some(v)
    }

    /// Connection facts, with the per-connection header values precomputed.
    pub fn new(peer: SocketAddr, tls: bool, listener: usize, listener_name: Arc<str>) -> Self {
        let ip = peer.ip();
        let node = match ip {
            IpAddr::V6(_) => format!("\"[{ip}]\""),
            IpAddr::V4(_) => ip.to_string(),
        };
        let proto = if tls { "https" } else { "http" };
        ConnInfo {
            peer,
            tls,
            listener,
            listener_name,
            peer_value: HeaderValue::from_str(&ip.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            forwarded_for: format!("for={node};proto={proto}"),
            forwarded_cache: std::sync::Mutex::new(None),
            client_cert: None,
        }
    }
}

fn request_id(h: &HeaderMap) -> String {
    if let Some(v) = h.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok()) {
        let ok = !v.is_empty()
            && v.len() <= 128
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if ok {
            return v.to_string();
        }
    }
    crate::ids::next()
}

/// Framing checks that close request-smuggling gaps the parser leaves open.
fn check_framing(req: &Request<ClientBody>) -> Option<Rejection> {
    let h = req.headers();
    let te = h.get_all(header::TRANSFER_ENCODING).iter().count();
    let cl: Vec<&HeaderValue> = h.get_all(header::CONTENT_LENGTH).iter().collect();
    if req.version() <= Version::HTTP_11 {
        if te > 0 && !cl.is_empty() {
            return Some(codes::ambiguous_framing(
                "Transfer-Encoding and Content-Length must not both be present",
            ));
        }
        if te > 0 {
            if req.version() == Version::HTTP_10 {
                return Some(codes::ambiguous_framing(
                    "HTTP/1.0 has no Transfer-Encoding",
                ));
            }
            let only_chunked = te == 1
                && h.get(header::TRANSFER_ENCODING)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
            if !only_chunked {
                return Some(codes::ambiguous_framing(
                    "Transfer-Encoding must be exactly `chunked`",
                ));
            }
        }
    }
    if cl.len() > 1 {
        return Some(codes::ambiguous_framing("Content-Length must appear once"));
    }
    if let Some(v) = cl.first() {
        if crate::h1wire::parse_decimal(v.as_bytes()).is_none() {
            return Some(codes::ambiguous_framing(
                "Content-Length must be a single decimal number",
            ));
        }
    }
    None
}

enum Miss {
    NotFound,
    Method(String),
}

fn find_route<'a>(
    routes: &'a [Route],
    conn: &ConnInfo,
    host: Option<&str>,
    path: &str,
    method: &Method,
) -> Result<(usize, &'a Route), Miss> {
    let mut allowed: Vec<&str> = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        if r.listener
            .as_deref()
            .is_some_and(|l| l != &*conn.listener_name)
        {
            continue;
        }
        if !r.services.is_empty() {
            let caller = conn.client_cert.as_deref().and_then(|c| c.identity());
            if !caller.is_some_and(|s| palisade_identity::mtls::allowed(&r.services, s)) {
                continue;
            }
        }
        if let Some(hm) = &r.host {
            if !host.is_some_and(|h| hm.matches(h)) {
                continue;
            }
        }
        if !r.path.matches(path) {
            continue;
        }
        match &r.methods {
            Some(ms) if !ms.contains(method) => allowed.extend(ms.iter().map(Method::as_str)),
            _ => return Ok((i, r)),
        }
    }
    if allowed.is_empty() {
        Err(Miss::NotFound)
    } else {
        allowed.sort_unstable();
        allowed.dedup();
        Err(Miss::Method(allowed.join(", ")))
    }
}

/// The largest response a `ResponseBody` policy buffers; a larger one is a bad response.
const RESPONSE_BUFFER_MAX: usize = 16 * 1024 * 1024;

/// What the log and metrics need once the response is finished.
struct Done {
    cx: Ctx,
    x: Exchange,
    status: StatusCode,
    code: Option<&'static str>,
}

impl OnDone for Done {
    fn done(self: Box<Self>, bytes_out: u64, complete: bool, failed: Option<&'static str>) {
        let Done {
            mut cx,
            x,
            status,
            code,
        } = *self;
        cx.answered = true;
        let total = x.started.elapsed();
        if let Some(route) = cx.route.and_then(|i| cx.rt.config.routes.get(i)) {
            let c = Completion {
                status,
                code,
                duration: total,
                bytes_in: cx.body_in.bytes.load(Ordering::Relaxed),
                bytes_out,
            };
            for e in &route.policies {
                if e.policy.phases().contains(Phase::Log) {
                    e.policy.on_log(&x, &c);
                }
            }
        }
        let consumer = x.principal().map(|p| p.subject.clone());
        let monitored = x.monitored.clone();
        // a body that broke off on the upstream's side says so (a client that went away
        // leaves the code as it was, with `complete: false`)
        let code = code.or(failed);
        cx.log(
            status.as_u16(),
            code,
            consumer,
            monitored,
            bytes_out,
            complete,
        );
        // `x` goes here, and with it every resource a policy held for the exchange
    }
}

/// The request's bookkeeping. Dropping it ends the request however the handler's future
/// ended: answered (through [`Done`]), refused, or dropped mid-way because the client went
/// away (h2 RST_STREAM, a closed connection). The in-flight count is given back by drop,
/// never by a return path that remembers to.
struct Ctx {
    shared: Arc<Shared>,
    rt: Arc<Runtime>,
    conn: Arc<ConnInfo>,
    time: String,
    started: Instant,
    client: IpAddr,
    method: Method,
    path: String,
    version: Version,
    body_in: Arc<crate::body::BodyProgress>,
    route: Option<usize>,
    upstream: Option<String>,
    upstream_ms: Option<f64>,
    rid: HeaderValue,
    /// A SOAP request's version: its refusals are SOAP Faults.
    soap: Option<render::Soap>,
    /// A gRPC request: refusals are gRPC statuses (the content type to answer with).
    grpc: Option<HeaderValue>,
    /// Set once the response is finished; a `Ctx` dropped without it was cancelled.
    answered: bool,
    /// The refusal's (or first would-refuse's) title and detail, for its security event.
    refusal: Option<(String, Option<String>)>,
    /// Where the deciding input was and a redacted excerpt of it (detection).
    evidence: Option<(String, String)>,
}

/// The status an access-log record gives a request whose client went away before the answer
/// (nginx's convention).
const CLIENT_CLOSED: u16 = 499;
/// The code such a record carries.
pub const CODE_CANCELLED: &str = "request.cancelled";
/// The code of a request the gateway dropped at the drain deadline of a shutdown.
pub const CODE_CUT: &str = "shutdown.drain_deadline";

impl Drop for Ctx {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.answered {
            return;
        }
        // dropped by the gateway at the drain deadline, or given up by its client
        let cut = *self.shared.hard_stop.borrow();
        let (status, code, counter) = if cut {
            (503, CODE_CUT, &self.shared.metrics.requests_cut)
        } else {
            (
                CLIENT_CLOSED,
                CODE_CANCELLED,
                &self.shared.metrics.requests_cancelled,
            )
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.stats().count(status);
        self.log(status, Some(code), None, Vec::new(), 0, false);
    }
}

impl Ctx {
    fn log(
        &mut self,
        status: u16,
        code: Option<&'static str>,
        consumer: Option<String>,
        monitored: Vec<&'static str>,
        bytes_out: u64,
        complete: bool,
    ) {
        if code.is_some() || !monitored.is_empty() {
            if self.shared.security_log.enabled() {
                self.security_event(status, code, consumer.as_deref(), &monitored);
            }
            self.record_event(status, code, consumer.as_deref(), &monitored);
        }
        if !self.shared.access_log.enabled() {
            return;
        }
        let total = self.started.elapsed();
        let route = self
            .route
            .and_then(|i| self.rt.config.routes.get(i))
            .map(|r| r.name.to_string());
        self.shared.access_log.log(Record {
            time: std::mem::take(&mut self.time),
            request_id: self.rid.to_str().unwrap_or("-").to_string(),
            listener: self.conn.listener_name.to_string(),
            client: self.client.to_string(),
            method: self.method.to_string(),
            path: std::mem::take(&mut self.path),
            protocol: match self.version {
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_2 => "HTTP/2",
                _ => "HTTP/1.1",
            },
            route,
            consumer,
            status,
            bytes_in: self.body_in.bytes.load(Ordering::Relaxed),
            bytes_out,
            upstream: self.upstream.take(),
            upstream_ms: self.upstream_ms,
            total_ms: (total.as_secs_f64() * 1e6).round() / 1e3,
            code,
            monitored,
            complete,
        });
    }
}

impl Ctx {
    /// A refusal (or would-refuse) for the security log: who, where, which code; never a
    /// query, header value or body.
    fn security_event(
        &self,
        status: u16,
        code: Option<&'static str>,
        consumer: Option<&str>,
        monitored: &[&'static str],
    ) {
        use serde_json::Value;
        let mut m = serde_json::Map::new();
        m.insert(
            "request_id".into(),
            Value::from(self.rid.to_str().unwrap_or("-")),
        );
        m.insert("client".into(), Value::from(self.client.to_string()));
        m.insert("listener".into(), Value::from(&*self.conn.listener_name));
        m.insert("method".into(), Value::from(self.method.as_str()));
        m.insert("path".into(), Value::from(self.path.as_str()));
        if let Some(r) = self.route.and_then(|i| self.rt.config.routes.get(i)) {
            m.insert("route".into(), Value::from(&*r.name));
        }
        if let Some(c) = consumer {
            m.insert("consumer".into(), Value::from(c));
        }
        m.insert("status".into(), Value::from(status));
        let kind = match code {
            Some(c) => {
                m.insert("code".into(), Value::from(c));
                if status < 500 {
                    "refusal"
                } else {
                    "failure"
                }
            }
            None => "would_refuse",
        };
        if !monitored.is_empty() {
            m.insert("monitored".into(), Value::from(monitored.to_vec()));
        }
        self.shared.security_log.log(kind, m);
    }

    /// The refusal (or would-refuse) as an event of the admin API's store and live stream.
    fn record_event(
        &mut self,
        status: u16,
        code: Option<&'static str>,
        consumer: Option<&str>,
        monitored: &[&'static str],
    ) {
        let (title, detail) = self
            .refusal
            .take()
            .map_or((None, None), |(t, d)| (Some(t), d));
        let (location, excerpt) = self
            .evidence
            .take()
            .map_or((None, None), |(l, e)| (Some(l), Some(e)));
        let kind = match code {
            Some(_) if status >= 500 => "failure",
            Some(_) => "refusal",
            None => "would_refuse",
        };
        self.shared.events.record(crate::events::Event {
            id: 0,
            time: if self.time.is_empty() {
                now_rfc3339()
            } else {
                self.time.clone()
            },
            unix_ms: 0,
            kind: kind.into(),
            mode: if code.is_some() { "enforce" } else { "monitor" }.into(),
            request_id: self.rid.to_str().unwrap_or("-").to_string(),
            route: self
                .route
                .and_then(|i| self.rt.config.routes.get(i))
                .map(|r| r.name.clone()),
            consumer: consumer.map(str::to_string),
            client: self.client,
            method: self.method.to_string(),
            path: if self.path.is_empty() {
                "-".to_string()
            } else {
                self.path.clone()
            },
            status,
            code: code.map(str::to_string),
            title,
            detail,
            monitored: monitored.iter().map(|c| c.to_string()).collect(),
            location,
            excerpt,
        });
    }

    fn stats(&self) -> Arc<RouteStats> {
        match self.route.and_then(|i| self.rt.route_stats.get(i)) {
            Some(s) => s.clone(),
            None => self.rt.unrouted.clone(),
        }
    }

    fn finish(
        mut self,
        mut x: Exchange,
        res: Response<ProxyBody>,
        code: Option<&'static str>,
    ) -> Response<Counted> {
        if let (Some(l), Some(e)) = (
            x.annotations.remove(palisade_core::EVIDENCE_LOCATION),
            x.annotations.remove(palisade_core::EVIDENCE_EXCERPT),
        ) {
            self.evidence = Some((l, e));
        }
        if let Some(t) = x.annotations.remove(MONITOR_TITLE) {
            self.refusal = Some((t, x.annotations.remove(MONITOR_DETAIL)));
        }
        let (mut parts, body) = res.into_parts();
        let stats = self.stats();
        stats.count(parts.status.as_u16());
        stats.latency.observe(x.started.elapsed());
        parts.headers.insert(X_REQUEST_ID.clone(), self.rid.clone());
        if self.conn.tls {
            if let Some(hsts) = self
                .rt
                .config
                .listeners
                .get(self.conn.listener)
                .and_then(|l| l.hsts.clone())
            {
                parts
                    .headers
                    .insert(header::STRICT_TRANSPORT_SECURITY, hsts);
            }
        }
        let done = Done {
            status: parts.status,
            code,
            x,
            cx: self,
        };
        Response::from_parts(parts, Counted::new(body, Box::new(done)))
    }

    fn refuse(mut self, x: Exchange, r: &Rejection) -> Response<Counted> {
        self.refusal = Some((r.title.to_string(), r.detail.clone()));
        let res = match (self.soap, self.grpc.take()) {
            (Some(v), _) => render::soap_fault(r, &x.request_id, v),
            (None, Some(ct)) => render::grpc_refusal(r, &x.request_id, ct),
            (None, None) => render::rejection(r, &x.request_id),
        };
        self.finish(x, res, Some(r.code))
    }
}

/// Handles one request. Never fails: every problem becomes a rendered response.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    mut req: Request<ClientBody>,
) -> Response<Counted> {
    let rt = shared.runtime.load_full();
    // given back when `cx` drops, however the request ends
    shared.in_flight.fetch_add(1, Ordering::Relaxed);
    let cfg = rt.config.clone();
    let rid = request_id(req.headers());
    let cip = client_ip(conn.peer.ip(), req.headers(), &cfg.trusted_proxies);
    let mut x = Exchange::new(rid, conn.peer, cip, conn.tls);
    x.client_cert = conn.client_cert.clone();
    let cx = Ctx {
        shared: shared.clone(),
        rt: rt.clone(),
        conn: conn.clone(),
        time: if shared.access_log.enabled() {
            now_rfc3339()
        } else {
            String::new()
        },
        started: x.started,
        client: cip,
        method: req.method().clone(),
        path: if shared.access_log.enabled()
            || shared.security_log.enabled()
            || !cfg.admin_api.tokens.is_empty()
        {
            req.uri().path().to_string()
        } else {
            String::new()
        },
        version: req.version(),
        body_in: Arc::default(),
        route: None,
        upstream: None,
        upstream_ms: None,
        rid: HeaderValue::from_str(&x.request_id).unwrap_or_else(|_| HeaderValue::from_static("-")),
        soap: render::soap_of(req.headers()),
        grpc: render::grpc_of(req.headers()),
        answered: false,
        refusal: None,
        evidence: None,
    };
    let limits = &cfg.limits;

    if let Some(r) = check_framing(&req) {
        return cx.refuse(x, &r);
    }
    let target_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target_len > limits.max_uri_bytes {
        return cx.refuse(x, &codes::uri_too_long(limits.max_uri_bytes));
    }
    if req.headers().len() > limits.max_headers {
        return cx.refuse(
            x,
            &codes::headers_too_large(format!(
                "at most {} headers are accepted",
                limits.max_headers
            )),
        );
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > limits.max_header_bytes {
        return cx.refuse(
            x,
            &codes::headers_too_large(format!(
                "headers may total at most {} bytes",
                limits.max_header_bytes
            )),
        );
    }

    if req.method() == Method::CONNECT {
        return cx.refuse(x, &codes::malformed("CONNECT is not supported"));
    }
    // one host and one path from here on, for the router, every policy and the upstream
    let canon = match crate::canon::canonicalise(&mut req) {
        Ok(c) => c,
        Err(r) => return cx.refuse(x, &r),
    };
    x.target_as_sent = canon.as_sent.clone();
    let host = canon.authority.as_ref().map(|a| a.host.as_str());

    // A plain listener that only redirects to HTTPS.
    if let Some(port) = cfg
        .listeners
        .get(conn.listener)
        .and_then(|l| l.redirect_to_https_port)
    {
        let host = host.unwrap_or("localhost");
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let loc = if port == 443 {
            format!("https://{host}{pq}")
        } else {
            format!("https://{host}:{port}{pq}")
        };
        let mut res = Response::new(empty());
        *res.status_mut() = StatusCode::PERMANENT_REDIRECT;
        match HeaderValue::from_str(&loc) {
            Ok(v) => {
                res.headers_mut().insert(header::LOCATION, v);
            }
            Err(_) => {
                return cx.refuse(
                    x,
                    &codes::malformed("the Host header is not usable in a redirect"),
                )
            }
        }
        return cx.finish(x, res, None);
    }

    let route_path = canon.decoded.as_deref().unwrap_or(req.uri().path());
    let (ri, route) = match find_route(&cfg.routes, &conn, host, route_path, req.method()) {
        Ok(r) => r,
        Err(Miss::NotFound) => return cx.refuse(x, &codes::not_found()),
        Err(Miss::Method(allow)) => return cx.refuse(x, &codes::method_not_allowed(&allow)),
    };
    let mut cx = cx;
    cx.route = Some(ri);
    x.route = route.name.clone();
    // shed after routing (a few microseconds), so a shed request counts under its route
    if shared.in_flight.load(Ordering::Relaxed) > limits.max_in_flight {
        shared.metrics.requests_shed.fetch_add(1, Ordering::Relaxed);
        return cx.refuse(x, &codes::shed());
    }
    x.path_params = route.path.params(route_path);

    let (mut head, body) = req.into_parts();
    // identity headers come only from us: whatever a client sent under those names goes
    strip_identity(&mut head.headers, &cfg.identity_headers);
    let es = Entries::of(&rt, ri, route);
    if let Err(stop) = run_phase(&es, Phase::RequestHead, &mut head, &mut x).await {
        return cx.stop(x, stop);
    }

    // Body cap: refuse early on a declared length, enforce while streaming otherwise.
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.max_body_bytes) {
        return cx.refuse(x, &codes::body_too_large(route.max_body_bytes));
    }
    let pool = rt.pools.get(route.upstream).cloned();
    let mut body_empty = body.is_end_stream() || declared == Some(0);
    // policies that read the body get it whole, buffered under the route's cap
    let mut buffered: Option<bytes::Bytes> = None;
    let mut body = Some(body);
    // (an upstream that gets signed requests gets their body's digest: buffered too)
    let signs = pool.as_ref().is_some_and(|p| p.cfg.signer.is_some());
    if signs
        || route
            .policies
            .iter()
            .any(|e| e.policy.phases().contains(Phase::RequestBody))
    {
        let bytes = if body_empty {
            bytes::Bytes::new()
        } else {
            let incoming = body.take();
            let Some(incoming) = incoming else {
                return cx.refuse(x, &codes::bad_body());
            };
            let capped = Capped::new(incoming, route.max_body_bytes, cx.body_in.clone());
            // the body must keep arriving: a pause of the upstream's request timeout is a
            // stalled client (408), which must not hold the request's slots for ever
            let idle = pool
                .as_ref()
                .map_or(palisade_config::DEFAULT_REQUEST_TIMEOUT, |p| {
                    p.cfg.request_timeout
                });
            match crate::body::IdleTimeout::new(capped, idle).collect().await {
                Ok(c) => c.to_bytes(),
                Err(crate::body::BodyError::Idle(_)) => {
                    return cx.refuse(x, &codes::body_timeout())
                }
                Err(crate::body::BodyError::TooLarge(_)) => {
                    return cx.refuse(x, &codes::body_too_large(route.max_body_bytes))
                }
                Err(_) => return cx.refuse(x, &codes::bad_body()),
            }
        };
        let mut bytes = bytes;
        for (i, e) in es.iter() {
            if !e.policy.phases().contains(Phase::RequestBody) {
                continue;
            }
            let verdict = e.policy.on_request_body(&head, &bytes, &mut x).await;
            if let Some(stop) = judge(&es, i, e, verdict, &mut x) {
                return cx.stop(x, stop);
            }
            // a policy that cut something out of the body: the next ones and the upstream
            // get the new one (a monitor-mode policy changes nothing)
            if let Some(new) = x.replace_request_body.take() {
                if !es.monitors(i, e) {
                    x.json_body = None;
                    head.headers.remove(header::TRANSFER_ENCODING);
                    head.headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(new.len()));
                    bytes = new;
                }
            }
        }
        body_empty = bytes.is_empty();
        buffered = Some(bytes);
    }

    prepare_upstream_request(&mut head, &conn, &cx.rt.config.trusted_proxies, &cx.rid);
    if let Err(stop) = run_phase(&es, Phase::Upstream, &mut head, &mut x).await {
        return cx.stop(x, stop);
    }
    if let Some(p) = x.principal() {
        set_identity(&mut head.headers, &cfg.identity_headers, p);
    }
    // the device or service behind the connection, when a route checked its certificate
    if let (Some(c), true) = (&x.client_cert, x.annotations.contains_key("mtls")) {
        if let Some(v) = c.identity().and_then(|i| HeaderValue::from_str(i).ok()) {
            head.headers
                .insert(cfg.identity_headers.client_cert.clone(), v);
        }
    }

    let Some(pool) = pool else {
        return cx.refuse(x, &codes::upstream_unreachable());
    };
    if pool.cfg.preserve_host && !head.headers.contains_key(header::HOST) {
        if let Some(auth) = head
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            head.headers.insert(header::HOST, auth);
        }
    }
    let pq = upstream_path(&head.uri, route.strip_prefix.as_deref());
    if let Some(limits) = x.websocket.clone() {
        return websocket::handshake(cx, x, head, &es, pool, pq, limits).await;
    }
    if let Some(signer) = &pool.cfg.signer {
        if let Err(e) = signer.sign(
            head.method.as_str(),
            &pq,
            &mut head.headers,
            buffered.as_deref(),
            &route.name,
        ) {
            // never forwarded unsigned to an upstream that expects signatures
            tracing::error!(error = %e, "cannot sign the request for the upstream");
            return cx.refuse(x, &codes::policy_error());
        }
    }
    let replayable = body_empty && crate::h1wire::idempotent(&head.method);
    let mut body = Some(if body_empty {
        empty()
    } else if let Some(bytes) = buffered {
        let full = crate::body::full(bytes);
        if x.pacers.is_empty() {
            full
        } else {
            Paced::new(full, x.pacers.clone(), BodyDirection::Request).boxed_unsync()
        }
    } else {
        let Some(body) = body.take() else {
            return cx.refuse(x, &codes::bad_body());
        };
        let capped = Capped::new(body, route.max_body_bytes, cx.body_in.clone()).boxed_unsync();
        if x.pacers.is_empty() {
            capped
        } else {
            Paced::new(capped, x.pacers.clone(), BodyDirection::Request).boxed_unsync()
        }
    });

    pool.note_request();
    let max_attempts = pool.cfg.retries.as_ref().map_or(1, |r| r.attempts + 1);
    let retry_5xx = pool.cfg.retries.as_ref().is_some_and(|r| r.on_5xx);
    let mut attempt = 0;
    let mut avoid = None;
    let up_started = Instant::now();
    let response = loop {
        attempt += 1;
        let Some(ti) = pool.pick(avoid) else {
            return cx.refuse(x, &codes::no_healthy_target());
        };
        let b = if replayable {
            empty()
        } else {
            body.take().unwrap_or_else(empty)
        };
        let mut req = Request::new(b);
        *req.method_mut() = head.method.clone();
        let can_retry = replayable && attempt < max_attempts;
        // the headers are needed again only when this attempt may be retried
        *req.headers_mut() = if can_retry {
            head.headers.clone()
        } else {
            std::mem::take(&mut head.headers)
        };
        cx.upstream = pool.targets.get(ti).map(|t| t.base.clone());
        let progress = (!replayable && !body_empty).then_some(&*cx.body_in);
        let outcome = pool.send(ti, req, pq.clone(), progress).await;
        // (the target answered well, the failure is worth another attempt)
        let (ok, retryable) = match &outcome {
            Ok(res) => {
                let failed = matches!(res.status().as_u16(), 502..=504);
                (!failed, failed && retry_5xx)
            }
            // the client's fault, not the target's
            Err(SendError::BodyTooLarge) => {
                return cx.refuse(x, &codes::body_too_large(route.max_body_bytes));
            }
            Err(SendError::ClientBody) => return cx.refuse(x, &codes::bad_body()),
            Err(SendError::ClientBodyTimeout) => return cx.refuse(x, &codes::body_timeout()),
            Err(e) => (false, matches!(e, SendError::Connect | SendError::Other(_))),
        };
        pool.report(ti, ok);
        if retryable && can_retry && pool.take_retry() {
            shared
                .metrics
                .upstream_retries
                .fetch_add(1, Ordering::Relaxed);
            avoid = Some(ti);
            continue;
        }
        match outcome {
            Ok(res) => break res,
            Err(e) => {
                tracing::warn!(route = %route.name, upstream = %pool.cfg.name, target = cx.upstream.as_deref().unwrap_or("-"), error = %e, request_id = %x.request_id, "upstream request failed");
                let r = match e {
                    SendError::Timeout => codes::upstream_timeout(),
                    SendError::Connect => codes::upstream_unreachable(),
                    _ => codes::upstream_bad_response(),
                };
                return cx.refuse(x, &r);
            }
        }
    };
    let up = up_started.elapsed();
    cx.upstream_ms = Some((up.as_secs_f64() * 1e6).round() / 1e3);
    if let Some(s) = cx.rt.route_stats.get(ri) {
        s.upstream_latency.observe(up);
    }

    let (mut parts, upstream_body) = response.into_parts();
    let upstream_body = crate::body::IdleTimeout::new(upstream_body, pool.cfg.body_idle_timeout);
    strip_hop_by_hop(&mut parts.headers);
    for (i, e) in es.iter().rev() {
        if !e.policy.phases().contains(Phase::ResponseHead) {
            continue;
        }
        let verdict = e.policy.on_response_head(&mut parts, &mut x).await;
        if let Some(stop) = judge(&es, i, e, verdict, &mut x) {
            return cx.refuse(x, &stop.in_response());
        }
    }
    let mut body = if route
        .policies
        .iter()
        .any(|e| e.policy.phases().contains(Phase::ResponseBody))
    {
        // policies that read the response get it whole (bounded), then may rewrite it
        let collected = http_body_util::Limited::new(upstream_body, RESPONSE_BUFFER_MAX)
            .collect()
            .await;
        let mut bytes = match collected {
            Ok(c) => c.to_bytes(),
            Err(_) => return cx.refuse(x, &codes::upstream_bad_response()),
        };
        for (i, e) in es.iter().rev() {
            if !e.policy.phases().contains(Phase::ResponseBody) {
                continue;
            }
            let verdict = e
                .policy
                .on_response_body(&mut parts, &mut bytes, &mut x)
                .await;
            if let Some(stop) = judge(&es, i, e, verdict, &mut x) {
                return cx.refuse(x, &stop.in_response());
            }
        }
        parts.headers.remove(header::CONTENT_LENGTH);
        crate::body::full(bytes)
    } else {
        upstream_body.boxed_unsync()
    };
    if !x.pacers.is_empty() {
        body = Paced::new(body, x.pacers.clone(), BodyDirection::Response).boxed_unsync();
    }
    cx.finish(x, Response::from_parts(parts, body), None)
}

/// The route's policies with their decision counters, by position.
struct Entries<'a> {
    entries: &'a [PolicyEntry],
    stats: &'a [Arc<crate::metrics::DecisionStats>],
    /// Modes set through the admin API, by position (see [`crate::ModeOverride`]).
    modes: &'a [std::sync::atomic::AtomicU8],
}

impl<'a> Entries<'a> {
    fn of(rt: &'a Runtime, ri: usize, route: &'a Route) -> Self {
        Entries {
            entries: &route.policies,
            stats: rt.decision_stats.get(ri).map_or(&[], Vec::as_slice),
            modes: rt.modes.get(ri).map_or(&[], |m| &m[..]),
        }
    }

    /// Whether the entry at `i` only monitors: as the config says, unless an operator turned
    /// it since.
    fn monitors(&self, i: usize, e: &PolicyEntry) -> bool {
        crate::effective_mode(self.modes.get(i), e.mode) == palisade_core::Mode::Monitor
    }

    fn iter(&self) -> impl DoubleEndedIterator<Item = (usize, &'a PolicyEntry)> + 'a {
        self.entries.iter().enumerate()
    }
}

/// The annotations that carry the first would-refuse's title and detail to its event.
const MONITOR_TITLE: &str = "monitor.title";
const MONITOR_DETAIL: &str = "monitor.detail";

/// What ends an exchange before the upstream's answer is sent on.
enum Stop {
    /// A refusal.
    Refuse(Rejection),
    /// A policy's own answer in the upstream's place.
    Answer(Box<palisade_core::Answer>),
}

impl Stop {
    /// In a response phase the upstream has answered already: a policy that answers there
    /// is a policy failure.
    fn in_response(self) -> Rejection {
        match self {
            Stop::Refuse(r) => r,
            Stop::Answer(_) => codes::policy_error(),
        }
    }
}

impl Ctx {
    fn stop(self, x: Exchange, stop: Stop) -> Response<Counted> {
        match stop {
            Stop::Refuse(r) => self.refuse(x, &r),
            Stop::Answer(a) => {
                let mut x = x;
                x.annotations.insert("answered_by", a.note.to_string());
                let mut res = Response::new(crate::body::full(a.body));
                *res.status_mut() = a.status;
                for (k, v) in a.headers {
                    res.headers_mut().append(k, v);
                }
                self.finish(x, res, None)
            }
        }
    }
}

/// Applies a verdict with the entry's mode; returns what stops the exchange, if any. A
/// policy's decision on a request is counted once: its first allow (a policy with several
/// hooks allows once), or its refusal.
fn judge(
    es: &Entries<'_>,
    i: usize,
    e: &PolicyEntry,
    outcome: palisade_core::Outcome,
    x: &mut Exchange,
) -> Option<Stop> {
    let kind = e.policy.kind();
    let monitor = es.monitors(i, e);
    let stats = es.stats.get(i);
    let count = |verdict: &'static str, code: &'static str| {
        if let Some(s) = stats {
            s.refusal(verdict, code);
        }
    };
    let allowed = |x: &mut Exchange| {
        // past the 64th policy of a route every allow counts (no bit to remember it)
        let bit = 1u64
            .checked_shl(u32::try_from(i).unwrap_or(u32::MAX))
            .unwrap_or(0);
        if bit == 0 || x.decided & bit == 0 {
            x.decided |= bit;
            if let Some(s) = stats {
                s.allow();
            }
        }
    };
    match outcome {
        Ok(Verdict::Continue) => {
            allowed(x);
            None
        }
        // a monitor-mode policy never answers in the upstream's place
        Ok(Verdict::Answer(a)) => {
            allowed(x);
            (!monitor).then_some(Stop::Answer(a))
        }
        Ok(Verdict::Reject(r)) if monitor => {
            count("monitor_deny", r.code);
            // the detail is what the client would have read (never its input): which field
            // failed and why, so the would-refuse can be judged before promoting a patch
            tracing::info!(policy = kind, code = r.code, detail = r.detail.as_deref().unwrap_or(""), request_id = %x.request_id, route = %x.route, "monitor mode: request would have been refused");
            if x.monitored.is_empty() {
                // the first would-refuse explains the request's event
                x.annotations.insert(MONITOR_TITLE, r.title.to_string());
                if let Some(d) = r.detail {
                    x.annotations.insert(MONITOR_DETAIL, d);
                }
            }
            x.monitored.push(r.code);
            None
        }
        Ok(Verdict::Reject(r)) => {
            count("deny", r.code);
            Some(Stop::Refuse(r))
        }
        Err(err) => {
            count("error", "policy.error");
            tracing::error!(policy = kind, error = %err, request_id = %x.request_id, route = %x.route, "policy failed");
            if monitor {
                None
            } else {
                Some(Stop::Refuse(codes::policy_error()))
            }
        }
    }
}

async fn run_phase(
    es: &Entries<'_>,
    phase: Phase,
    head: &mut http::request::Parts,
    x: &mut Exchange,
) -> Result<(), Stop> {
    for (i, e) in es.iter() {
        if !e.policy.phases().contains(phase) {
            continue;
        }
        let outcome = match phase {
            Phase::RequestHead => e.policy.on_request_head(head, x).await,
            Phase::Upstream => e.policy.on_upstream(head, x).await,
            _ => Ok(Verdict::Continue),
        };
        if let Some(r) = judge(es, i, e, outcome, x) {
            return Err(r);
        }
    }
    Ok(())
}

fn upstream_path(uri: &http::Uri, strip: Option<&str>) -> http::uri::PathAndQuery {
    let path = uri.path();
    let stripped = match strip.and_then(|p| palisade_config::PathMatch::strip(path, p)) {
        Some("") => "/",
        Some(rest) => rest,
        None => match uri.path_and_query() {
            // the common case: forward the client's path and query as they are, no copy
            Some(pq) => return pq.clone(),
            None => path,
        },
    };
    let text = match uri.query() {
        Some(q) => format!("{stripped}?{q}"),
        None => stripped.to_string(),
    };
    // the parts came from a valid URI, so they form a valid path and query
    http::uri::PathAndQuery::try_from(text)
        .unwrap_or_else(|_| http::uri::PathAndQuery::from_static("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_prefix_keeps_query() {
        let uri: http::Uri = "/api/users?x=1".parse().unwrap();
        assert_eq!(upstream_path(&uri, Some("/api")), "/users?x=1");
        let uri: http::Uri = "/api".parse().unwrap();
        assert_eq!(upstream_path(&uri, Some("/api")), "/");
    }
}
