use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;

/// Which body a pacer is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyDirection {
    /// The request body, client to upstream.
    Request,
    /// The response body, upstream to client.
    Response,
}

/// Slows a body down instead of refusing it (bandwidth throttling). A policy puts pacers on
/// the [`Exchange`]; the proxy asks them before passing on each chunk of a body.
pub trait Pace: Send + Sync + std::fmt::Debug {
    /// Reserves `bytes` of the body going `dir`; returns how long to wait before passing them
    /// on (zero: at once).
    fn reserve(&self, dir: BodyDirection, bytes: u64) -> Duration;
}

/// The verified client certificate of the connection (mTLS): the device or service identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject's common name.
    pub common_name: Option<String>,
    /// DNS names of the subject alternative name.
    pub dns: Vec<String>,
    /// URIs of the subject alternative name.
    pub uris: Vec<String>,
    /// The SPIFFE ID (`spiffe://trust-domain/path`), when a URI is one.
    pub spiffe: Option<String>,
    /// SHA-256 of the certificate (DER), for RFC 8705 `cnf.x5t#S256` binding.
    pub sha256: [u8; 32],
}

impl ClientCert {
    /// The identity the certificate stands for: its SPIFFE ID, else its first URI, first DNS
    /// name, or common name.
    pub fn identity(&self) -> Option<&str> {
        self.spiffe
            .as_deref()
            .or(self.uris.first().map(String::as_str))
            .or(self.dns.first().map(String::as_str))
            .or(self.common_name.as_deref())
    }
}

/// Who made the request, as established by an authentication policy. Every authenticator
/// yields the same shape, so authorization and traffic policies need not know which one ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// Consumer name (from config) or token subject.
    pub subject: String,
    /// The configured consumer this principal is, when one matches.
    pub consumer: Option<String>,
    /// How the principal was authenticated (`api_key`, `jwt`, `mtls` …).
    pub method: &'static str,
    /// The token issuer, for tokens.
    pub issuer: Option<String>,
    /// Groups the principal belongs to.
    pub groups: Vec<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Token claims, or the consumer's metadata.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl Principal {
    /// A claim as text: strings as they are, numbers and booleans printed, others `None`.
    pub fn claim_text(&self, name: &str) -> Option<String> {
        match self.claims.get(name)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// Another authenticator already established who the caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrincipalTaken;

/// The annotation where a detecting policy says where the input that decided was (`a query
/// parameter`), for the request's security event.
pub const EVIDENCE_LOCATION: &str = "evidence.location";
/// The annotation with a redacted excerpt of that input (kept for the admin API, never sent
/// to the client or written to the access log).
pub const EVIDENCE_EXCERPT: &str = "evidence.excerpt";

/// Per-request state carried through every phase, like Pingora's context.
#[derive(Debug)]
pub struct Exchange {
    /// The request id (propagated from `X-Request-Id` or generated).
    pub request_id: String,
    /// The TCP peer of the connection.
    pub peer: SocketAddr,
    /// The client address after honouring trusted proxies.
    pub client_ip: std::net::IpAddr,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// The matched route's name.
    pub route: std::sync::Arc<str>,
    /// The authenticated principal, once one is established.
    principal: Option<Principal>,
    /// Codes that monitor-mode policies would have refused with.
    pub monitored: Vec<&'static str>,
    /// When the request head was received.
    pub started: Instant,
    /// Free-form annotations for the access log (never secrets).
    pub annotations: BTreeMap<&'static str, String>,
    /// Pacers of the request and response bodies (bandwidth limits).
    pub pacers: Vec<std::sync::Arc<dyn Pace>>,
    /// Parameters of the matched route's path template (`{id}` → value, decoded from the
    /// canonical path).
    pub path_params: Vec<(String, String)>,
    /// The request target (path and query) as the client sent it, when canonicalisation
    /// rewrote it (what a client signed; policies otherwise read the canonical one).
    pub target_as_sent: Option<std::sync::Arc<str>>,
    /// The connection's verified client certificate, when mTLS is on.
    pub client_cert: Option<std::sync::Arc<ClientCert>>,
    /// The request body as JSON, parsed once by the first policy that needed it, so the
    /// next one does not parse it again. A policy that changes the request body must clear
    /// it.
    pub json_body: Option<std::sync::Arc<serde_json::Value>>,
    /// The request body to forward instead of the one received, set by a body policy that
    /// removes what the upstream must not get (a WS-Security header): the policies after it
    /// read the new body, and the upstream gets it with its own Content-Length.
    pub replace_request_body: Option<bytes::Bytes>,
    /// The limits of a WebSocket session, set by a `websocket` policy that accepted the
    /// handshake: the proxy relays the session under them.
    pub websocket: Option<std::sync::Arc<crate::policies::websocket::Limits>>,
    /// What policies hold for the life of the exchange (a `concurrency_limit` slot …),
    /// released by drop when the exchange ends: answered, refused or cancelled.
    held: Vec<Box<dyn Held>>,
    /// The route's policies (by position, the first 64) whose allow has been counted for
    /// this request: a policy with several hooks makes one decision.
    pub decided: u64,
}

/// A resource a policy holds until the exchange ends; its `Drop` gives it back.
pub trait Held: Send + Sync + std::fmt::Debug {}

/// The route name of an exchange no route matched (yet): one shared empty name.
fn no_route() -> std::sync::Arc<str> {
    static EMPTY: std::sync::LazyLock<std::sync::Arc<str>> =
        std::sync::LazyLock::new(|| std::sync::Arc::from(""));
    EMPTY.clone()
}

impl Exchange {
    /// Notes where the input that decided was and a redacted excerpt of it, for the
    /// request's security event (the first note stands).
    pub fn note_evidence(&mut self, location: &str, input: &str) {
        if !self.annotations.contains_key(EVIDENCE_LOCATION) {
            self.annotations
                .insert(EVIDENCE_LOCATION, location.to_string());
            // as the application reads it: percent-decoded when that decodes
            let decoded = crate::uri::decode(input);
            let shown = decoded.as_deref().unwrap_or(input);
            self.annotations
                .insert(EVIDENCE_EXCERPT, crate::excerpt::redact(shown));
        }
    }

    /// A fresh exchange for a request.
    pub fn new(
        request_id: String,
        peer: SocketAddr,
        client_ip: std::net::IpAddr,
        tls: bool,
    ) -> Self {
        Self {
            request_id,
            peer,
            client_ip,
            tls,
            route: no_route(),
            principal: None,
            monitored: Vec::new(),
            started: Instant::now(),
            annotations: BTreeMap::new(),
            pacers: Vec::new(),
            path_params: Vec::new(),
            target_as_sent: None,
            client_cert: None,
            json_body: None,
            replace_request_body: None,
            websocket: None,
            held: Vec::new(),
            decided: 0,
        }
    }

    /// Keeps `r` until the exchange ends (dropped with it, however the request ends).
    pub fn hold(&mut self, r: Box<dyn Held>) {
        self.held.push(r);
    }

    /// What policies hold, taken over by what outlives the exchange's answer (a WebSocket
    /// session keeps its `concurrency_limit` slot until it closes).
    pub fn take_held(&mut self) -> Vec<Box<dyn Held>> {
        std::mem::take(&mut self.held)
    }

    /// The authenticated principal, if any.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// Sets the principal. Fails when another authenticator already set one: two
    /// authenticators must never overwrite each other's identity. The one exception is a
    /// principal from a client certificate (`mtls`): a user token on the same route names the
    /// user, while the certificate stays available as the device identity (`client_cert`).
    pub fn set_principal(&mut self, principal: Principal) -> Result<(), PrincipalTaken> {
        if self.principal.as_ref().is_some_and(|p| p.method != "mtls") {
            return Err(PrincipalTaken);
        }
        self.principal = Some(principal);
        Ok(())
    }
}

/// What happened to an exchange, given to `on_log` hooks.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Final status sent to the client.
    pub status: StatusCode,
    /// Refusal code, when the gateway refused or failed.
    pub code: Option<&'static str>,
    /// Total time from request head to the end of the response.
    pub duration: Duration,
    /// Request body bytes received from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
}
