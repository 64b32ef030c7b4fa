//! Sidecar mode: Palisade beside one service of a service mesh, with mutual TLS both ways.
//!
//! The `mesh:` section is written in a few lines and becomes ordinary listeners, upstreams
//! and routes before the config is built, so every check, metric and policy of those applies
//! to the mesh as well:
//!
//! | written | becomes |
//! |---|---|
//! | `identity` (SVID cert, key, trust bundle) | the inbound listener's certificate and client CAs; the client certificate and CA of every destination |
//! | `inbound.listen` | listener `mesh-inbound`: TLS with the SVID, client certificate required (bundle) |
//! | `inbound.service` | upstream `mesh-service` (the local service, plain HTTP on loopback) |
//! | `inbound.allow` | route `mesh-inbound`: `mtls` + `authorize` (source identity → operations, deny by default), then `inbound.policies` |
//! | `outbound.listen` | listener `mesh-outbound`: plain HTTP, loopback only |
//! | `outbound.destinations.NAME` | upstream `mesh-to-NAME` (mTLS with the SVID, the peer verified by SPIFFE ID) and route `mesh-to-NAME` (listener `mesh-outbound`, host `NAME`) |
//!
//! Problems in what was generated are reported at the `mesh` lines they came from.

use std::collections::BTreeMap;

use palisade_identity::authorize::{AuthorizeSpec, RuleSpec};
use palisade_identity::mtls::MtlsSpec;
use serde::Deserialize;

use super::Ctx;
use crate::model::{
    CertificateSpec, ClientAuthSpec, FileSpec, HealthCheckSpec, ListenerSpec, MatchSpec,
    PassiveSpec, PolicySpec, RetrySpec, RouteSpec, TlsSpec, UpstreamProtocol, UpstreamSpec,
    UpstreamTimeoutsSpec, UpstreamTlsSpec,
};

/// Name of the inbound listener and route.
pub const INBOUND: &str = "mesh-inbound";
/// Name of the outbound listener.
pub const OUTBOUND: &str = "mesh-outbound";
/// Name of the local service's upstream.
pub const SERVICE: &str = "mesh-service";

/// Sidecar mode (see the module docs and docs/mesh.md).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeshSpec {
    /// This service's identity, an X.509-SVID as files (written by a SPIRE agent through
    /// spiffe-helper, cert-manager's csi-driver-spiffe, or any CA). The files are watched: a
    /// renewed SVID is used for new connections at once, open connections are not dropped.
    pub identity: MeshIdentitySpec,
    /// Calls into the local service.
    #[serde(default)]
    pub inbound: Option<MeshInboundSpec>,
    /// Calls the local service makes to other services.
    #[serde(default)]
    pub outbound: Option<MeshOutboundSpec>,
}

/// An X.509-SVID.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeshIdentitySpec {
    /// PEM certificate chain, leaf first; the leaf carries this service's SPIFFE ID.
    pub cert: String,
    /// PEM private key of the certificate.
    pub key: String,
    /// PEM trust bundle: the CAs of the trust domain (and of federated ones) that sign the
    /// other services' SVIDs.
    pub bundle: String,
}

/// The inbound side.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeshInboundSpec {
    /// Address other services' sidecars connect to, e.g. `0.0.0.0:8443`.
    pub listen: String,
    /// The local service, e.g. `http://127.0.0.1:8080`.
    pub service: String,
    /// Who may call what: `authorize` rules with `services` (SPIFFE IDs or prefixes),
    /// `methods` and `paths`. The first rule for the caller and operation applies; a call no
    /// rule allows is refused (403).
    pub allow: Vec<RuleSpec>,
    /// More policies on every inbound call, e.g. a `rate_limit` with `key: service`.
    #[serde(default)]
    pub policies: Vec<PolicySpec>,
    /// Largest request body (413 beyond); default the global limit.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Timeouts towards the local service.
    #[serde(default)]
    pub timeouts: UpstreamTimeoutsSpec,
    /// Serve HTTP/2 (ALPN) to callers. Default true.
    #[serde(default)]
    pub http2: Option<bool>,
}

/// The outbound side.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeshOutboundSpec {
    /// Loopback address the local service calls in plain HTTP, e.g. `127.0.0.1:15001`.
    pub listen: String,
    /// The services it may call, by name: a call to `http://NAME/…` through `listen` (Host
    /// `NAME`, or `NAME` in an absolute-form proxy request) goes to that service; any other
    /// host gets 404, so the sidecar is never an open proxy.
    pub destinations: BTreeMap<String, MeshDestinationSpec>,
    /// Listen on an address other hosts can reach. Anyone who can connect would call other
    /// services with this service's identity. Default false (loopback only).
    #[serde(default)]
    pub dangerous_listen_beyond_loopback: bool,
}

/// One service this one calls.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeshDestinationSpec {
    /// Its sidecars' inbound addresses, `https://…` only.
    pub targets: Vec<String>,
    /// The SPIFFE IDs it must present (exact, or a prefix ending in `*`); a target with
    /// another identity fails the call (502) before any byte of the request is sent.
    pub identities: Vec<String>,
    /// Protocol: `auto` (default: HTTP/2 when the peer offers it), `http1` or `http2`.
    #[serde(default)]
    pub protocol: Option<UpstreamProtocol>,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: UpstreamTimeoutsSpec,
    /// Active health checks.
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    /// Passive ejection of failing targets.
    #[serde(default)]
    pub passive: Option<PassiveSpec>,
    /// Retries of idempotent requests.
    #[serde(default)]
    pub retries: Option<RetrySpec>,
    /// Policies on the calls to it (e.g. a `rate_limit` or a `contract`).
    #[serde(default)]
    pub policies: Vec<PolicySpec>,
}

/// Where generated items are placed in the spec lists: far beyond any position a file can
/// have, so their problems are told apart and placed at the `mesh` lines.
const GENERATED: usize = 1 << 40;

/// Adds the listeners, upstreams and routes the `mesh` section stands for to `spec`.
pub(super) fn expand(cx: &mut Ctx<'_>, spec: &mut FileSpec) {
    let Some(m) = spec.mesh.take() else {
        return;
    };
    let id = &m.identity;
    let svid = CertificateSpec {
        cert: id.cert.clone(),
        key: id.key.clone(),
    };
    check_identity(cx, id);
    if m.inbound.is_none() && m.outbound.is_none() {
        cx.err("mesh", "add `inbound`, `outbound` or both");
    }
    if let Some(i) = m.inbound {
        add_listener(
            cx,
            spec,
            "mesh.inbound",
            ListenerSpec {
                name: INBOUND.into(),
                listen: i.listen.clone(),
                tls: Some(TlsSpec {
                    certificates: vec![svid.clone()],
                    min_version: Some("1.3".into()),
                    client_auth: Some(ClientAuthSpec {
                        ca: vec![id.bundle.clone()],
                        crls: Vec::new(),
                        required: true,
                    }),
                }),
                redirect_to_https_port: None,
                hsts: None,
                http2: i.http2,
            },
        );
        if !i.service.starts_with("http://") {
            cx.err(
                "mesh.inbound.service",
                "the local service is reached in plain HTTP on loopback, e.g. http://127.0.0.1:8080",
            );
        }
        add_upstream(
            cx,
            spec,
            SERVICE,
            "mesh.inbound",
            UpstreamSpec {
                targets: vec![i.service.clone()],
                timeouts: i.timeouts.clone(),
                ..upstream_defaults()
            },
        );
        let mut policies = i.policies.clone();
        let n = policies.len();
        policies.push(PolicySpec::Mtls(MtlsSpec {
            mode: Default::default(),
            allow: Vec::new(),
            require_consumer: false,
        }));
        if i.allow.is_empty() {
            cx.err(
                "mesh.inbound.allow",
                "at least one rule, e.g. `- {services: [\"spiffe://example.org/ns/prod/sa/frontend\"], methods: [GET]}`; deny by default: without one no service could call this one",
            );
        }
        let authz = AuthorizeSpec {
            mode: Default::default(),
            rules: i.allow.clone(),
        };
        match authz.build() {
            Ok(_) => policies.push(PolicySpec::Authorize(authz)),
            Err(errs) => {
                for e in errs {
                    let at = e.field.strip_prefix("rules").unwrap_or(&e.field);
                    cx.err(format!("mesh.inbound.allow{at}"), e.message);
                }
            }
        }
        let route = add_route(
            cx,
            spec,
            "mesh.inbound",
            RouteSpec {
                name: INBOUND.into(),
                matcher: MatchSpec {
                    listener: Some(INBOUND.into()),
                    ..MatchSpec::default()
                },
                upstream: SERVICE.into(),
                strip_prefix: false,
                max_body_bytes: i.max_body_bytes,
                policies,
                public: false,
            },
        );
        // the user's policies keep their own place; the generated ones point at `allow`
        cx.aliases
            .push((format!("{route}.policies[{n}]"), "mesh.inbound".into()));
        cx.aliases.push((
            format!("{route}.policies[{}]", n + 1),
            "mesh.inbound.allow".into(),
        ));
        cx.aliases
            .push((format!("{route}.policies"), "mesh.inbound.policies".into()));
    }
    if let Some(o) = m.outbound {
        let loopback = o
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        if !loopback && !o.dangerous_listen_beyond_loopback {
            cx.err(
                "mesh.outbound.listen",
                format!(
                    "`{}` is not a loopback address: anyone reaching it would call other services as this one; listen on 127.0.0.1 (or set dangerous_listen_beyond_loopback: true)",
                    o.listen
                ),
            );
        }
        add_listener(
            cx,
            spec,
            "mesh.outbound",
            ListenerSpec {
                name: OUTBOUND.into(),
                listen: o.listen.clone(),
                tls: None,
                redirect_to_https_port: None,
                hsts: None,
                http2: Some(true),
            },
        );
        if o.destinations.is_empty() {
            cx.err(
                "mesh.outbound.destinations",
                "at least one service, e.g. `orders: {targets: [\"https://orders.prod:8443\"], identities: [\"spiffe://example.org/ns/prod/sa/orders\"]}`",
            );
        }
        for (name, d) in o.destinations {
            let at = format!("mesh.outbound.destinations.{name}");
            check_destination(cx, &at, &d);
            let upstream = format!("mesh-to-{name}");
            add_upstream(
                cx,
                spec,
                &upstream,
                &at,
                UpstreamSpec {
                    targets: d.targets.clone(),
                    protocol: d.protocol.unwrap_or(UpstreamProtocol::Auto),
                    tls: Some(UpstreamTlsSpec {
                        ca: Some(id.bundle.clone()),
                        server_name: None,
                        client_cert: Some(id.cert.clone()),
                        client_key: Some(id.key.clone()),
                        peer_ids: d.identities.clone(),
                    }),
                    timeouts: d.timeouts.clone(),
                    health_check: d.health_check.clone(),
                    passive: d.passive.clone(),
                    retries: d.retries.clone(),
                    ..upstream_defaults()
                },
            );
            let route = add_route(
                cx,
                spec,
                &at,
                RouteSpec {
                    name: upstream.clone(),
                    matcher: MatchSpec {
                        listener: Some(OUTBOUND.into()),
                        host: Some(name.clone()),
                        ..MatchSpec::default()
                    },
                    upstream,
                    strip_prefix: false,
                    max_body_bytes: None,
                    policies: d.policies.clone(),
                    // the caller is the local service on loopback; the destination's sidecar
                    // authenticates this one by its certificate
                    public: true,
                },
            );
            cx.aliases
                .push((format!("{route}.policies"), format!("{at}.policies")));
        }
    }
}

fn upstream_defaults() -> UpstreamSpec {
    UpstreamSpec {
        targets: Vec::new(),
        balance: Default::default(),
        protocol: Default::default(),
        tls: None,
        timeouts: UpstreamTimeoutsSpec::default(),
        health_check: None,
        passive: None,
        retries: None,
        sign_requests: None,
        preserve_host: false,
    }
}

/// The SVID must name this service by one SPIFFE ID.
fn check_identity(cx: &mut Ctx<'_>, id: &MeshIdentitySpec) {
    let path = cx.output_path(&id.cert);
    let Ok(chain) = crate::tls::load_certs(&path) else {
        // the listener or upstream that loads it reports why it cannot be read
        return;
    };
    let leaf = chain
        .first()
        .and_then(|c| palisade_identity::mtls::parse_client_cert(c));
    if leaf.and_then(|c| c.spiffe).is_none() {
        cx.err(
            "mesh.identity.cert",
            format!(
                "{} is not an X.509-SVID: its leaf must carry exactly one URI SAN, the service's SPIFFE ID (spiffe://trust-domain/path)",
                path.display()
            ),
        );
    }
}

fn check_destination(cx: &mut Ctx<'_>, at: &str, d: &MeshDestinationSpec) {
    if d.identities.is_empty() {
        cx.err(
            format!("{at}.identities"),
            "name the SPIFFE ID the service must present: without it any service of the trust domain could answer",
        );
    }
    for (j, t) in d.targets.iter().enumerate() {
        if !t.starts_with("https://") {
            cx.err(
                format!("{at}.targets[{j}]"),
                "services are called with mutual TLS: write https://host:port of their sidecar",
            );
        }
    }
}

fn add_listener(cx: &mut Ctx<'_>, spec: &mut FileSpec, from: &str, l: ListenerSpec) {
    let at = generated(cx, "listeners", spec.listeners.len());
    cx.aliases.push((at, from.into()));
    spec.listeners.push(l);
}

fn add_upstream(cx: &mut Ctx<'_>, spec: &mut FileSpec, name: &str, from: &str, u: UpstreamSpec) {
    if spec.upstreams.contains_key(name) {
        cx.err(
            from,
            format!("the upstream name `{name}` is taken by the mesh; rename yours"),
        );
        return;
    }
    cx.aliases.push((format!("upstreams.{name}"), from.into()));
    spec.upstreams.insert(name.into(), u);
}

/// Adds a route; returns the path its problems are reported under before aliasing.
fn add_route(cx: &mut Ctx<'_>, spec: &mut FileSpec, from: &str, r: RouteSpec) -> String {
    let at = generated(cx, "routes", spec.routes.len());
    cx.aliases.push((at.clone(), from.into()));
    spec.routes.push(r);
    at
}

/// Records the position of a generated item of the list `key` (the `i`-th read).
fn generated(cx: &mut Ctx<'_>, key: &str, i: usize) -> String {
    let positions = cx.positions.entry(key.to_string()).or_default();
    // a list read without failures has no entry yet: its items are where they were read
    while positions.len() < i {
        positions.push(positions.len());
    }
    let pos = GENERATED + positions.len();
    positions.push(pos);
    format!("{key}[{pos}]")
}
