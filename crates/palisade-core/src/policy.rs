use std::fmt;

use serde::Deserialize;

use crate::{Exchange, PolicyError, Rejection};

/// The request head as policies see it (method, URI, version, headers).
pub type RequestHead = http::request::Parts;
/// The response head as policies see it.
pub type ResponseHead = http::response::Parts;

/// The result of a policy hook: go on, or refuse with a [`Rejection`].
#[must_use = "an ignored verdict lets the request through"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the exchange go on to the next policy.
    Continue,
    /// Refuse the exchange; nothing further reaches the upstream.
    Reject(Rejection),
    /// Answer in the upstream's place (a replayed response), before the request is sent;
    /// only from request phases. Not a refusal: counted as an allow, logged with its code.
    Answer(Box<Answer>),
}

/// A response a policy gives in the upstream's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Its status.
    pub status: http::StatusCode,
    /// Its headers.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Its body.
    pub body: bytes::Bytes,
    /// What the access log notes (e.g. `idempotency.replayed`).
    pub note: &'static str,
}

/// A hook's outcome: a verdict, or our own failure (fails closed with a 5xx).
pub type Outcome = Result<Verdict, PolicyError>;

/// The phases of an exchange, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The TCP/TLS connection is known (peer address, client certificate).
    Connection,
    /// The request head has arrived.
    RequestHead,
    /// The request body has been buffered (only when a policy asks for it).
    RequestBody,
    /// Just before the request leaves for the upstream.
    Upstream,
    /// The upstream's response head has arrived.
    ResponseHead,
    /// The response body has been buffered (only when a policy asks for it).
    ResponseBody,
    /// The exchange is over; always runs, also after a refusal.
    Log,
}

/// A set of phases, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhaseSet(u8);

impl PhaseSet {
    /// No phase.
    pub const EMPTY: PhaseSet = PhaseSet(0);

    const fn bit(p: Phase) -> u8 {
        match p {
            Phase::Connection => 1,
            Phase::RequestHead => 2,
            Phase::RequestBody => 4,
            Phase::Upstream => 8,
            Phase::ResponseHead => 16,
            Phase::ResponseBody => 32,
            Phase::Log => 64,
        }
    }

    /// This set plus `p`.
    #[must_use]
    pub const fn with(self, p: Phase) -> Self {
        PhaseSet(self.0 | Self::bit(p))
    }

    /// Whether `p` is in the set.
    pub const fn contains(self, p: Phase) -> bool {
        self.0 & Self::bit(p) != 0
    }
}

/// Orders policies within a phase: the network is checked before identity, identity before
/// permissions, permissions before quotas, quotas before content validation and threat checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Network origin (IP filters).
    Network,
    /// Authentication.
    Authn,
    /// Authorization.
    Authz,
    /// Rate limits and quotas.
    Quota,
    /// Contract validation.
    Validate,
    /// Threat detection.
    Threat,
    /// Header and body transformations, after every check.
    Transform,
}

/// Whether a policy's refusals are enforced or only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Refusals are sent to the client.
    #[default]
    Enforce,
    /// Refusals are logged and counted; the request goes through.
    Monitor,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        })
    }
}

/// A policy: pure decision logic attached to a route, called in the phases it declares.
///
/// Hooks are only called for the phases in [`Policy::phases`]. Request phases run in chain
/// order, response phases in reverse. A hook returns `Ok(Verdict::Continue)` to let the
/// exchange go on, `Ok(Verdict::Reject(..))` to refuse it (the client's fault, a 4xx), or
/// `Err(PolicyError)` when the policy itself failed (a 5xx, failing closed).
#[async_trait::async_trait]
pub trait Policy: fmt::Debug + Send + Sync + 'static {
    /// The config `type` of the policy; a log and metric label.
    fn kind(&self) -> &'static str;
    /// Where the policy stands within a phase.
    fn stage(&self) -> Stage;
    /// The phases whose hooks are called.
    fn phases(&self) -> PhaseSet;

    /// Called once the request head has arrived, before anything reaches the upstream.
    async fn on_request_head(&self, _req: &mut RequestHead, _x: &mut Exchange) -> Outcome {
        Ok(Verdict::Continue)
    }

    /// Called with the whole request body, buffered under the route's body cap, when the
    /// policy declares [`Phase::RequestBody`] (contract validation, say).
    async fn on_request_body(
        &self,
        _req: &RequestHead,
        _body: &bytes::Bytes,
        _x: &mut Exchange,
    ) -> Outcome {
        Ok(Verdict::Continue)
    }

    /// Called just before the request is sent upstream; may rewrite headers.
    async fn on_upstream(&self, _req: &mut RequestHead, _x: &mut Exchange) -> Outcome {
        Ok(Verdict::Continue)
    }

    /// Called when the upstream's response head arrives; may rewrite headers or refuse.
    async fn on_response_head(&self, _res: &mut ResponseHead, _x: &mut Exchange) -> Outcome {
        Ok(Verdict::Continue)
    }

    /// Called with the whole response body, buffered (at most 16 MiB), when the policy declares
    /// [`Phase::ResponseBody`]; the policy may rewrite it (the length is recomputed).
    async fn on_response_body(
        &self,
        _res: &mut ResponseHead,
        _body: &mut bytes::Bytes,
        _x: &mut Exchange,
    ) -> Outcome {
        Ok(Verdict::Continue)
    }

    /// Called once before the policy serves (when the gateway starts, and for each policy
    /// of a reloaded config before it is swapped in): acquire what serving needs (a state
    /// database, say). An error stops the start (or refuses the reload) with this message,
    /// so a policy never serves in a weaker mode than the one configured.
    fn prepare(&self) -> Result<(), String> {
        Ok(())
    }

    /// Called after the exchange, also after a refusal.
    fn on_log(&self, _x: &Exchange, _done: &crate::Completion) {}

    /// State an operator may read on the admin listener (quota usage, say), for one key or,
    /// without one, for the keys the policy has at hand. `None`: nothing to show.
    async fn usage(&self, _key: Option<&str>) -> Option<serde_json::Value> {
        None
    }

    /// Forgets what the policy counted for `key` in the current period (an operator's quota
    /// reset). `None`: the policy counts nothing per key.
    async fn reset(&self, _key: &str) -> Option<Result<(), String>> {
        None
    }

    /// Operations seen that the policy's API description does not have (shadow APIs), for the
    /// admin listener. `None`: the policy keeps no inventory.
    fn inventory(&self) -> Option<serde_json::Value> {
        None
    }

    /// The check a policy runs on a WebSocket client's text messages (`threat` has one).
    fn message_check(&self) -> Option<&dyn crate::policies::websocket::MessageCheck> {
        None
    }
}
