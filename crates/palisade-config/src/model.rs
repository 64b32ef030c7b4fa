//! The file model: what a user writes in YAML. Every struct rejects unknown fields.

use std::collections::BTreeMap;

use palisade_contract::ContractSpec;
use palisade_core::policies::credentials::RequireCredentialsSpec;
use palisade_core::policies::deny::DenySpec;
use palisade_core::policies::protocol::ProtocolSpec;
use palisade_core::policies::request_fields::RequestFieldsSpec;
use palisade_core::policies::responses::ResponsesSpec;
use palisade_core::policies::{headers::HeadersSpec, ip_filter::IpFilterSpec};
use palisade_identity::api_key::ApiKeyPolicySpec;
use palisade_identity::authorize::AuthorizeSpec;
use palisade_identity::introspection::IntrospectionSpec;
use palisade_identity::issuer::IssuerSpec;
use palisade_identity::jwt::JwtSpec;
use palisade_identity::mtls::MtlsSpec;
use palisade_identity::sealed::SealedSessionSpec;
use palisade_identity::signature::SignatureSpec;
use palisade_threat::pii::PiiSpec;
use palisade_threat::ThreatSpec;
use palisade_traffic::bandwidth::BandwidthSpec;
use palisade_traffic::concurrency::ConcurrencyLimitSpec;
use palisade_traffic::ownership::OwnershipSpec;
use palisade_traffic::quota::QuotaSpec;
use palisade_traffic::rate_limit::RateLimitSpec;
use serde::Deserialize;

use crate::duration::Dur;

/// Admin listener (health, readiness, metrics, the admin API and the console); never served
/// on a public port.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    /// Address to listen on, e.g. `127.0.0.1:9901`.
    pub listen: String,
    /// Who may use the admin API and the console. Without any, only `/healthz`, `/readyz`
    /// and `/metrics` answer.
    #[serde(default)]
    pub tokens: Vec<AdminTokenSpec>,
    /// How long a console session lasts after its login. Default 1h.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub session_ttl: Option<Dur>,
    /// How many security events the admin API keeps (the newest). Default 10000.
    #[serde(default)]
    pub events: Option<usize>,
    /// Reports of `palisade scan` and `palisade audit` (`--format json`) whose findings the
    /// admin API and console show beside the patches that answer them.
    #[serde(default)]
    pub reports: Vec<String>,
    /// Security events sent to an OpenTelemetry collector as OTLP/HTTP logs.
    #[serde(default)]
    pub otlp: Option<OtlpSpec>,
}

/// Where security events go as OTLP logs.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpSpec {
    /// The upstream of this config that is the collector (its targets, TLS, CA and timeouts
    /// are used as for any upstream).
    pub upstream: String,
    /// The path of the logs endpoint. Default `/v1/logs`.
    #[serde(default)]
    pub path: Option<String>,
    /// `service.name` of the records. Default `palisade`.
    #[serde(default)]
    pub service_name: Option<String>,
}

/// One admin credential.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenSpec {
    /// Who holds it (shown in the console and written in the security log).
    pub name: String,
    /// `viewer` (reads) or `operator` (reads and changes).
    pub role: String,
    /// `sha256:` and the hex SHA-256 of the token, as `palisade keys new --admin` prints it.
    pub hash: String,
}

/// Process-wide runtime settings.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSpec {
    /// Worker threads; 0 (default) uses one per core.
    #[serde(default)]
    pub workers: usize,
    /// How long in-flight requests may take to finish on shutdown. Default 30s.
    #[serde(default)]
    pub drain_timeout: Option<Dur>,
    /// Watch the config file (and the certificate files it names) and reload on change.
    /// Default true. SIGHUP always reloads.
    #[serde(default)]
    pub watch: Option<bool>,
    /// Where state that outlives a restart (local quota counters) is kept. Default
    /// `palisade-state` beside the config file.
    #[serde(default)]
    pub state_dir: Option<String>,
    /// The key (64 hex digits) that encrypts the state (AES-256-GCM): `${file:PATH}` or
    /// `${env:NAME}`. Without it the state is kept in clear (`validate` warns).
    #[serde(default)]
    pub state_key: Option<palisade_core::secret::SecretRef>,
    /// Earlier state keys, accepted to open the state while rotating: it is then re-wrapped
    /// under `state_key`.
    #[serde(default)]
    pub state_previous_keys: Vec<palisade_core::secret::SecretRef>,
    /// Serve whole, simple HTTP/1.1 requests on the gateway's own fast path (default true);
    /// false leaves every request to hyper's server. Both behave alike (the test suite runs
    /// both ways); the switch is for comparison and for ruling the fast path out.
    #[serde(default)]
    pub http1_fast_path: Option<bool>,
}

/// Logging.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// Where the JSON access log goes: `stdout` (default), `stderr`, `off`, or a file path.
    #[serde(default)]
    pub access: Option<String>,
    /// The tamper-evident security log: every refusal, would-refuse and config change,
    /// hash-chained and signed at checkpoints.
    #[serde(default)]
    pub security: Option<SecurityLogSpec>,
}

/// The security log.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityLogSpec {
    /// The file, appended to (relative to the config file).
    pub path: String,
    /// An Ed25519 private key (PKCS#8 PEM, e.g. `openssl genpkey -algorithm ed25519`) that
    /// signs checkpoints: `${file:PATH}` or `${env:NAME}`. Without one the records are only
    /// hash-chained, and the newest ones can be cut or edited unnoticed.
    #[serde(default)]
    pub signing_key: Option<palisade_core::secret::SecretRef>,
    /// A checkpoint after this many records. Default 100.
    #[serde(default)]
    pub checkpoint_every: Option<u64>,
    /// A checkpoint when records have waited this long unsigned. Default 10s.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub checkpoint_interval: Option<Dur>,
}

/// Hardening limits of the public listeners.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Largest request head (request line and headers) in bytes. Default 32 KiB.
    pub max_header_bytes: Option<usize>,
    /// Most request headers. Default 100.
    pub max_headers: Option<usize>,
    /// Longest request target in bytes (414 beyond). Default 8 KiB.
    pub max_uri_bytes: Option<usize>,
    /// Largest request body in bytes (413 beyond); a route may lower it. Default 10 MiB.
    pub max_body_bytes: Option<u64>,
    /// Time allowed for a client to send a whole request head (slowloris). Default 10s.
    pub header_read_timeout: Option<Dur>,
    /// Keep-alive connections with no request for this long are closed. Default 60s.
    pub idle_timeout: Option<Dur>,
    /// Most open client connections; more are closed at once. Default 10000.
    pub max_connections: Option<usize>,
    /// Most requests in flight; more are shed with 503. Default 10000.
    pub max_in_flight: Option<usize>,
    /// HTTP/2 concurrent streams per connection. Default 100.
    pub h2_max_concurrent_streams: Option<u32>,
}

/// A listener: an address, and TLS when it serves HTTPS.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerSpec {
    /// Name used in logs and metrics.
    pub name: String,
    /// Address to listen on, e.g. `0.0.0.0:8443`.
    pub listen: String,
    /// TLS termination; absent for plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// On a plain-HTTP listener: answer every request with a redirect to HTTPS on this port.
    #[serde(default)]
    pub redirect_to_https_port: Option<u16>,
    /// Strict-Transport-Security sent on responses of this (TLS) listener.
    #[serde(default)]
    pub hsts: Option<HstsSpec>,
    /// Serve HTTP/2 (ALPN `h2` on TLS, prior knowledge on plain). Default true.
    #[serde(default)]
    pub http2: Option<bool>,
}

/// TLS termination.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// Certificates; chosen by SNI, the first is the default.
    pub certificates: Vec<CertificateSpec>,
    /// Lowest TLS version: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: Option<String>,
    /// Client certificates (mutual TLS).
    #[serde(default)]
    pub client_auth: Option<ClientAuthSpec>,
}

/// Client-certificate verification on a listener.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthSpec {
    /// PEM files with the CAs that sign client certificates.
    pub ca: Vec<String>,
    /// PEM files with certificate revocation lists of those CAs.
    #[serde(default)]
    pub crls: Vec<String>,
    /// Refuse the handshake without a certificate. Default false: routes decide (`mtls`).
    #[serde(default)]
    pub required: bool,
}

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateSpec {
    /// PEM file with the certificate chain, leaf first.
    pub cert: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

/// HTTP Strict Transport Security.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HstsSpec {
    /// `max-age`. Default 365d.
    #[serde(default)]
    pub max_age: Option<Dur>,
    /// Adds `includeSubDomains`.
    #[serde(default)]
    pub include_subdomains: bool,
    /// Adds `preload`.
    #[serde(default)]
    pub preload: bool,
}

/// Load balancing between the targets of an upstream.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each target in turn.
    #[default]
    RoundRobin,
    /// The target with the fewest requests in flight (ties: in turn).
    LeastRequests,
}

/// Protocol spoken to the upstream.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (on TLS: whatever ALPN picks, h2 preferred when `auto`).
    #[default]
    Http1,
    /// HTTP/2 only (prior knowledge on plain TCP).
    Http2,
    /// On TLS, let ALPN choose between h2 and http/1.1; plain TCP uses HTTP/1.1.
    Auto,
}

/// A pool of upstream targets.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// Target base URLs: `http://10.0.0.5:8080` or `https://api.internal:443`.
    pub targets: Vec<String>,
    /// `round_robin` (default) or `least_requests`.
    #[serde(default)]
    pub balance: Balance,
    /// Protocol to the upstream: `http1` (default), `http2`, or `auto` (ALPN).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// TLS to the upstream (for `https://` targets).
    #[serde(default)]
    pub tls: Option<UpstreamTlsSpec>,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: UpstreamTimeoutsSpec,
    /// Active health checks.
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    /// Passive ejection of failing targets.
    #[serde(default)]
    pub passive: Option<PassiveSpec>,
    /// Retries of idempotent requests without a body.
    #[serde(default)]
    pub retries: Option<RetrySpec>,
    /// Sign every request forwarded to this upstream (RFC 9421), so it can verify that a
    /// request passed the gateway unchanged.
    #[serde(default)]
    pub sign_requests: Option<palisade_identity::signature::sign::UpstreamSigningSpec>,
    /// Send the client's Host header upstream instead of the target's. Default false.
    #[serde(default)]
    pub preserve_host: bool,
}

/// TLS towards an upstream.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSpec {
    /// PEM bundle of CAs that sign the upstream's certificate. Default: the Mozilla roots
    /// are not bundled, so a CA file is required for https targets.
    #[serde(default)]
    pub ca: Option<String>,
    /// Name sent in SNI and checked against the certificate; default: the target's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Client certificate (PEM) for mutual TLS to the upstream.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// Private key (PEM) of the client certificate.
    #[serde(default)]
    pub client_key: Option<String>,
    /// Verify the upstream by its SPIFFE ID instead of its host name (service mesh): the
    /// certificate must chain to `ca` and carry one of these SPIFFE IDs (exact, or a prefix
    /// ending in `*`). Any other identity fails the connection (502).
    #[serde(default)]
    pub peer_ids: Vec<String>,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTimeoutsSpec {
    /// TCP (and TLS) connect. Default 3s.
    #[serde(default)]
    pub connect: Option<Dur>,
    /// From sending the request to receiving the response head (504 beyond). Default 30s.
    #[serde(default)]
    pub request: Option<Dur>,
    /// Pooled connections unused this long are closed. Default 60s.
    #[serde(default)]
    pub idle: Option<Dur>,
    /// The longest pause inside a response body (no byte from the upstream); the response
    /// is then cut off and the request ends. Default 60s.
    #[serde(default)]
    pub body_idle: Option<Dur>,
}

/// Active health checks.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    /// Path probed with GET, e.g. `/healthz`.
    pub path: String,
    /// Time between probes. Default 5s.
    #[serde(default)]
    pub interval: Option<Dur>,
    /// Probe timeout. Default 2s.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Consecutive failures that mark a target down. Default 2.
    #[serde(default)]
    pub unhealthy_threshold: Option<u32>,
    /// Consecutive successes that mark it up again. Default 2.
    #[serde(default)]
    pub healthy_threshold: Option<u32>,
}

/// Passive ejection: a target that fails this often in a row is left out for a while.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PassiveSpec {
    /// Consecutive connection failures or 5xx that eject a target. Default 5.
    #[serde(default)]
    pub consecutive_failures: Option<u32>,
    /// How long an ejected target is left out. Default 30s.
    #[serde(default)]
    pub ejection_time: Option<Dur>,
}

/// Retries for idempotent requests without a body, bounded by a budget.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Extra attempts after the first. Default 1.
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Retries allowed as a share of requests over the last 10 s. Default 0.2.
    #[serde(default)]
    pub budget_ratio: Option<f64>,
    /// Retries per second always allowed, whatever the ratio. Default 10.
    #[serde(default)]
    pub min_per_second: Option<u32>,
    /// Also retry when the upstream answers 502, 503 or 504. Default true.
    #[serde(default)]
    pub on_5xx: Option<bool>,
}

/// What a route matches.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Only requests that came in on this listener (by name). Default: any listener.
    #[serde(default)]
    pub listener: Option<String>,
    /// Only calls of these services: the identity of the client certificate the listener
    /// verified (its SPIFFE ID, else DNS name or CN; exact, or a prefix ending in `*`), so
    /// that one service gets other policies (a contract, a threat sensitivity) than the
    /// rest on the same paths. Default: any caller.
    #[serde(default)]
    pub services: Vec<String>,
    /// Host (without port), e.g. `api.example.com` or `*.example.com`. Default: any.
    #[serde(default)]
    pub host: Option<String>,
    /// Exact path (`/health`) or template (`/users/{id}`).
    #[serde(default)]
    pub path: Option<String>,
    /// Path prefix, matched on whole segments (`/api` matches `/api` and `/api/x`, not `/apix`).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Methods; default: any.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// The closed list of policies. Adding one here makes the compiler point at every match.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PolicySpec {
    /// Allow or deny by client address.
    IpFilter(IpFilterSpec),
    /// Header changes and secure response defaults.
    Headers(HeadersSpec),
    /// Requests per period per client, consumer, route or header value.
    RateLimit(RateLimitSpec),
    /// Requests in flight per client, consumer, route or header value.
    ConcurrencyLimit(ConcurrencyLimitSpec),
    /// Requests and bytes per calendar period.
    Quota(QuotaSpec),
    /// Bytes per second, by pacing bodies.
    Bandwidth(BandwidthSpec),
    /// API keys of configured consumers.
    ApiKey(ApiKeyPolicySpec),
    /// JWT bearer tokens of configured issuers.
    Jwt(JwtSpec),
    /// Authorization rules, deny by default.
    Authorize(AuthorizeSpec),
    /// Opaque tokens checked with the issuer's introspection endpoint.
    Introspection(IntrospectionSpec),
    /// The connection's client certificate as device or service identity.
    Mtls(MtlsSpec),
    /// The OpenAPI contract enforced on requests.
    Contract(ContractSpec),
    /// Injection detection in every input location.
    Threat(ThreatSpec),
    /// Sensitive data in responses masked, encrypted or refused.
    Pii(PiiSpec),
    /// Refuse every request (an operation that must not be reachable).
    Deny(DenySpec),
    /// Safe resends of POST and PATCH under an `Idempotency-Key`.
    Idempotency(palisade_traffic::idempotency::IdempotencySpec),
    /// WebSocket sessions: the handshake checked, messages limited and inspected.
    Websocket(palisade_core::policies::websocket::WebSocketSpec),
    /// What the route accepts at the HTTP level: methods, versions, content types, headers,
    /// Host, ranges, uploads.
    Protocol(ProtocolSpec),
    /// Refuse requests without a credential, where the upstream verifies it.
    RequireCredentials(RequireCredentialsSpec),
    /// Which fields a request body may set (mass assignment).
    RequestFields(RequestFieldsSpec),
    /// What answers may tell: uniform errors, withheld traces, removed fields.
    Responses(ResponsesSpec),
    /// Object ownership learned from answers and enforced on requests (BOLA).
    Ownership(OwnershipSpec),
    /// The gateway's own sealed session token in place of the upstream's.
    SealedSession(SealedSessionSpec),
    /// RFC 9421 HTTP Message Signatures of configured consumers, with RFC 9530 digests.
    Signature(SignatureSpec),
    /// XML bodies parsed once under limits; DTDs, entities, instructions, XInclude and
    /// malformed XML refused.
    XmlProtection(palisade_threat::xml_protection::XmlProtectionSpec),
    /// The WSDL of a SOAP service enforced on requests: only its operations, body and
    /// SOAPAction agreeing.
    SoapContract(palisade_contract::soap::SoapContractSpec),
    /// WS-Security UsernameToken and Timestamp of configured consumers' users (SOAP).
    WsSecurity(palisade_identity::wssec::WsSecuritySpec),
    /// The gateway's own RFC 9421 signature on its answers.
    ResponseSignature(palisade_identity::signature::sign::ResponseSignatureSpec),
}

/// A route: what it matches, where it goes, and the policies on the way.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// What requests the route takes.
    #[serde(default, rename = "match")]
    pub matcher: MatchSpec,
    /// Name of the upstream in `upstreams`.
    pub upstream: String,
    /// Remove the matched `path_prefix` before forwarding. Default false.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Largest request body for this route (413 beyond); at most the global limit.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Policies, run in this order within each stage.
    #[serde(default)]
    pub policies: Vec<PolicySpec>,
    /// A route without an authentication policy must say it is public (deny by default).
    #[serde(default)]
    pub public: bool,
}

/// A virtual patch: policies added to a route, or to one operation of it, in answer to a
/// finding of `palisade scan` or `palisade audit` (written by `palisade patch`).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSpec {
    /// The finding answered (its check and title), for people and for `palisade patch`.
    pub answers: String,
    /// Why this closes it.
    #[serde(default)]
    pub reason: Option<String>,
    /// The route that serves the operation.
    pub route: String,
    /// `METHOD /path/{param}` as the gateway sees it; absent: the whole route.
    #[serde(default)]
    pub operation: Option<String>,
    /// `monitor` (default: count and log what would be refused) or `enforce`; it applies to
    /// every policy of the patch.
    #[serde(default)]
    pub mode: Option<palisade_core::Mode>,
    /// The policies added.
    #[serde(default)]
    pub policies: Vec<PolicySpec>,
}

/// The shared store of cluster-wide limits.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    /// `redis://host:port[/db]`, or `rediss://…` for TLS. No credentials in the URL.
    pub url: String,
    /// ACL user (Redis 6+). Default: the default user.
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable that holds the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File that holds the password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<String>,
    /// The password as `${env:NAME}` or `${file:PATH}`.
    #[serde(default)]
    pub password: Option<palisade_core::secret::SecretRef>,
    /// CA bundle (PEM) that signs the server's certificate, for `rediss://`.
    #[serde(default)]
    pub ca: Option<String>,
    /// Client certificate and key (PEM) when the server asks for one.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// Key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<String>,
    /// Longest a decision may wait for Redis before the failure mode applies. Default 100ms.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Longest a connection attempt may take. Default 2s.
    #[serde(default)]
    pub connect_timeout: Option<Dur>,
    /// Prefix of every key. Default `palisade:`.
    #[serde(default)]
    pub key_prefix: Option<String>,
}

/// Headers that carry the verified identity to upstreams. Every one of them (and every
/// header starting with `x-palisade-`) is removed from what clients send.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeadersSpec {
    /// The subject. Default `x-palisade-subject`.
    #[serde(default)]
    pub subject: Option<String>,
    /// The consumer name. Default `x-palisade-consumer`.
    #[serde(default)]
    pub consumer: Option<String>,
    /// Groups, comma-separated. Default `x-palisade-groups`.
    #[serde(default)]
    pub groups: Option<String>,
    /// Scopes, space-separated. Default `x-palisade-scopes`.
    #[serde(default)]
    pub scopes: Option<String>,
    /// How the caller was authenticated. Default `x-palisade-auth-method`.
    #[serde(default)]
    pub method: Option<String>,
    /// The client certificate's identity (mTLS), for the device or service. Default
    /// `x-palisade-client-cert`.
    #[serde(default)]
    pub client_cert: Option<String>,
    /// Token claims to forward: claim name → header name.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}

/// The whole file.
#[derive(Debug, Clone, Default)]
pub struct FileSpec {
    /// Token issuers by name.
    pub issuers: BTreeMap<String, IssuerSpec>,
    /// Identity headers to upstreams.
    pub identity_headers: IdentityHeadersSpec,
    /// Shared store for cluster-wide limits.
    pub redis: Option<RedisSpec>,
    /// Admin listener.
    pub admin: Option<AdminSpec>,
    /// Runtime settings.
    pub runtime: RuntimeSpec,
    /// Logging.
    pub log: LogSpec,
    /// Hardening limits.
    pub limits: LimitsSpec,
    /// Peers whose X-Forwarded-For / Forwarded headers are believed.
    pub trusted_proxies: Vec<String>,
    /// Public listeners.
    pub listeners: Vec<ListenerSpec>,
    /// Upstream pools by name.
    pub upstreams: BTreeMap<String, UpstreamSpec>,
    /// Routes.
    pub routes: Vec<RouteSpec>,
    /// Virtual patches of routes and operations.
    pub patches: Vec<PatchSpec>,
    /// Sidecar mode: listeners, upstreams and routes of a service mesh.
    pub mesh: Option<crate::runtime::mesh::MeshSpec>,
    /// Several instances run as one: one config, rolled out through Redis.
    pub fleet: Option<crate::runtime::fleet::FleetSpec>,
}

/// The top-level keys, for the unknown-key message.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "consumers",
    "issuers",
    "identity_headers",
    "admin",
    "runtime",
    "redis",
    "log",
    "limits",
    "trusted_proxies",
    "listeners",
    "upstreams",
    "routes",
    "patches",
    "mesh",
    "fleet",
];
