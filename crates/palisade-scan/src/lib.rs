//! `palisade scan`: an active, stateful scan of a running API described by an OpenAPI
//! document.
//!
//! The scan first learns the API as its identities see it: every operation is requested with
//! valid inputs (the description's examples, defaults, enums and formats), the objects in the
//! answers go into a resource graph, and later requests are bound to those objects (a create's
//! answer feeds the read, update and delete of that object). Then it attacks: B is sent A's
//! objects, ordinary identities are sent the administrator's operations, every input of every
//! operation gets injection probes while the rest of the request stays valid, fields that take
//! URLs get the address of a canary, tokens are forged. Only the target (and the scan's own
//! canary) is contacted, within a request budget and a rate; methods that change data are used
//! only with `allow_unsafe`, and objects the scan created are deleted at the end where the API
//! allows. Every finding carries its evidence and its OWASP API Security Top 10 (2023) category.

pub mod build;
pub mod canary;
mod checks;
pub mod client;
pub mod graph;
pub mod jwt;
mod report;
pub mod request;
pub mod schema;
pub mod tls;

use std::collections::BTreeSet;

use palisade_audit::spec::{self, Operation};
use palisade_audit::Severity;
use serde::Serialize;
use serde_json::Value;

use client::{Client, Exchange, Refused};
use graph::{Graph, Who};
use request::Req;

/// An identity the scanner acts as: one credential header.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The header's value, e.g. `Bearer eyJ…`.
    pub authorization: String,
    /// The header: `authorization` unless the credential was given as `X-Api-Key: …`.
    pub header: String,
}

impl Identity {
    /// An identity from what a user writes: `Bearer eyJ…`, `Basic …`, a bare token (sent as
    /// a bearer token) or `Header-Name: value` for API keys in another header.
    pub fn parse(text: &str) -> Result<Identity, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the credential is empty".into());
        }
        if let Some((name, value)) = text.split_once(':') {
            let is_header_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if is_header_name && !name.contains(' ') && name.len() < 64 && !value.trim().is_empty()
            {
                return Ok(Identity {
                    header: name.to_ascii_lowercase(),
                    authorization: value.trim().to_string(),
                });
            }
        }
        let authorization = if text.contains(' ') {
            text.to_string()
        } else {
            format!("Bearer {text}")
        };
        Ok(Identity {
            authorization,
            header: "authorization".into(),
        })
    }

    /// A bearer identity (tests and callers that have a token).
    pub fn bearer(token: &str) -> Identity {
        Identity {
            authorization: format!("Bearer {token}"),
            header: "authorization".into(),
        }
    }
}

/// What to scan and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Base URL of the target.
    pub target: String,
    /// Ordinary identity A (required).
    pub a: Identity,
    /// Ordinary identity B (for BOLA).
    pub b: Option<Identity>,
    /// An administrator (baseline for BFLA).
    pub admin: Option<Identity>,
    /// Most requests.
    pub budget: u64,
    /// Requests per second (at least 1).
    pub rate: u32,
    /// Use methods that change data (PUT, PATCH, POST, DELETE).
    pub allow_unsafe: bool,
    /// An expired token of identity A, to check that expiry is enforced.
    pub expired: Option<Identity>,
    /// Print each check as it starts (to stderr).
    pub progress: bool,
    /// Extra CA (PEM) trusted for an https target, beside the Mozilla roots.
    pub ca_pem: Option<String>,
    /// Where the SSRF canary listens (`127.0.0.1:0`: loopback, any free port).
    pub canary: String,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Check id.
    pub check: &'static str,
    /// Severity.
    pub severity: Severity,
    /// OWASP category.
    pub owasp: &'static str,
    /// What was found.
    pub title: String,
    /// The operation, as the description names it (`PATCH /orders/{orderId}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The input, where one is at fault (`body field /shipping/city`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The object at stake (BOLA): its kind and the field that keys it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    /// The exchanges that show it.
    pub evidence: Vec<Exchange>,
}

/// An object of the API, as a finding names it.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectRef {
    /// Its kind, singular and lower case (`patient`).
    pub kind: String,
    /// The field of the object that keys it (`pk`, `id`).
    pub key: String,
}

/// The result of a scan.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The target.
    pub target: String,
    /// Requests sent to the target.
    pub requests: u64,
    /// Findings.
    pub findings: Vec<Finding>,
    /// Checks that could not run, and why.
    pub skipped: Vec<String>,
    /// What the scan created and what became of it.
    pub cleanup: Vec<String>,
    /// Answers 429 that stayed 429 after one wait and retry (outside the checks that count
    /// them): a check that met one may have missed a flaw.
    pub throttled: u64,
}

/// Why a scan did not run.
#[derive(Debug)]
pub enum ScanError {
    /// The options or the description cannot be used.
    Usage(String),
    /// An identity is not accepted by the target: nothing it would report could be trusted.
    Identity(String),
    /// The target stopped answering.
    Target(String),
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::Usage(m) | ScanError::Identity(m) | ScanError::Target(m) => f.write_str(m),
        }
    }
}

pub(crate) const API1: &str = "API1:2023 Broken Object Level Authorization";
pub(crate) const API2: &str = "API2:2023 Broken Authentication";
pub(crate) const API3: &str = "API3:2023 Broken Object Property Level Authorization";
pub(crate) const API4: &str = "API4:2023 Unrestricted Resource Consumption";
pub(crate) const API5: &str = "API5:2023 Broken Function Level Authorization";
pub(crate) const API7: &str = "API7:2023 Server Side Request Forgery";
pub(crate) const API8: &str = "API8:2023 Security Misconfiguration";
pub(crate) const INJ: &str = "API8:2023 Security Misconfiguration (injection)";

/// What the scan knows of one operation as one identity: the request it sent and the answer.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    pub op: usize,
    pub who: Who,
    pub req: Req,
    pub ex: Exchange,
}

pub(crate) struct Scan<'a> {
    pub opts: &'a Options,
    pub client: Client,
    pub spec: spec::Spec,
    pub graph: Graph,
    pub findings: Vec<Finding>,
    pub skipped: Vec<String>,
    pub cleanup: Vec<String>,
    pub seen: BTreeSet<(&'static str, String)>,
    pub weak: Option<String>,
    pub bases: Vec<Base>,
    /// A secured GET that A passes and no credentials do not: where tokens are tried.
    pub probe: Option<Base>,
    pub canary: Option<canary::Canary>,
    pub salt: u32,
    /// Set while a check counts refusals (a burst): a 429 is then an answer, not a pause.
    pub burst: bool,
    /// SSRF probes whose canary was not called yet.
    pub pending_ssrf: Vec<(String, Finding)>,
    /// Secrets the scan came across (leaked by the target, guessed): never in a report.
    pub redact: Vec<String>,
    /// Public operations called without credentials while learning the API.
    pub public: Vec<(String, Exchange)>,
    /// Answers still 429 after a wait and a retry.
    pub throttled: u64,
}

impl Scan<'_> {
    pub(crate) fn find(&mut self, mut f: Finding) {
        if self.seen.insert((f.check, f.title.clone())) {
            f.evidence.truncate(4);
            self.findings.push(f);
        }
    }

    pub(crate) fn step(&self, what: &str) {
        if self.opts.progress {
            eprintln!(
                "palisade scan: {what} ({} requests so far)",
                self.client.used()
            );
        }
    }

    pub(crate) fn identity(&self, who: Who) -> Option<&Identity> {
        match who {
            Who::A => Some(&self.opts.a),
            Who::B => self.opts.b.as_ref(),
            Who::Admin => self.opts.admin.as_ref(),
        }
    }

    pub(crate) fn who_all(&self) -> Vec<Who> {
        [Who::A, Who::B, Who::Admin]
            .into_iter()
            .filter(|w| self.identity(*w).is_some())
            .collect()
    }

    pub(crate) fn op(&self, i: usize) -> Operation {
        self.spec
            .operations
            .get(i)
            .cloned()
            .unwrap_or_else(|| Operation {
                method: String::new(),
                path: String::new(),
                pointer: String::new(),
                raw: Value::Null,
                params: Vec::new(),
                request_schemas: Vec::new(),
                responses: Vec::new(),
                response_schemas: Vec::new(),
                response_headers: Vec::new(),
                security: Vec::new(),
                webhook: None,
            })
    }

    pub(crate) fn next_salt(&mut self) -> u32 {
        self.salt += 1;
        self.salt
    }

    /// Sends `req` with the credentials of `as_id` (none: without credentials); every answer
    /// is inspected for what shows in any answer (stack traces, secrets, headers).
    pub(crate) async fn send(
        &mut self,
        req: &Req,
        as_id: Option<&Identity>,
    ) -> Result<Exchange, Refused> {
        let mut h: Vec<(String, String)> = req.header_list();
        if let Some(id) = as_id {
            h.push((id.header.clone(), id.authorization.clone()));
        }
        let hr: Vec<(&str, String)> = h.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let body = req.body_text();
        let mut attempts = 0;
        let ex = loop {
            attempts += 1;
            let ex = self
                .client
                .send(
                    &req.method,
                    &req.target(),
                    &hr,
                    body.as_ref().map(|(ct, t)| (ct.as_str(), t.clone())),
                    as_id.map(|i| i.header.as_str()),
                )
                .await?;
            let retry_after = ex
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok());
            match (ex.status, retry_after, self.burst, attempts) {
                // the target asks to slow down for a short while: wait as it says, ask again once
                (429, Some(wait), false, 1) => {
                    tokio::time::sleep(std::time::Duration::from_secs(wait.min(3))).await;
                }
                _ => break ex,
            }
        };
        if ex.status == 429 && !self.burst {
            self.throttled += 1;
        }
        self.inspect(req, &ex, as_id.is_some());
        Ok(ex)
    }

    /// [`Scan::send`] as one of the scan's identities.
    pub(crate) async fn send_as(&mut self, req: &Req, who: Who) -> Result<Exchange, Refused> {
        let id = self.identity(who).cloned();
        self.send(req, id.as_ref()).await
    }

    /// Learns the objects of an answer into the graph.
    pub(crate) fn learn(
        &mut self,
        op: usize,
        who: Who,
        ex: &Exchange,
        created: bool,
    ) -> Option<usize> {
        if !ex.ok() {
            return None;
        }
        let body: Value = serde_json::from_str(&ex.body).ok()?;
        let o = self.op(op);
        let schema = o
            .response_schemas
            .iter()
            .find(|(_, p)| p.contains("/responses/2"))
            .map(|(s, _)| s.clone());
        let label = format!("{} {}", o.method, o.path);
        self.graph.learn(
            &self.spec.doc,
            &o.path,
            schema.as_ref(),
            &body,
            who,
            created.then_some(label.as_str()),
        )
    }

    /// The operation of the description a request was built for.
    pub(crate) fn op_index(&self, req: &Req) -> Option<usize> {
        self.spec
            .operations
            .iter()
            .position(|o| o.method == req.method && o.path == req.template)
    }

    /// [`Scan::op_index`]'s operation.
    pub(crate) fn op_of(&self, req: &Req) -> Option<&Operation> {
        self.op_index(req).and_then(|i| self.spec.operations.get(i))
    }

    /// The baseline of an operation for an identity.
    pub(crate) fn base(&self, op: usize, who: Who) -> Option<&Base> {
        self.bases.iter().rev().find(|b| b.op == op && b.who == who)
    }

    async fn run(&mut self) -> Result<(), Refused> {
        self.step("learning the API: every operation with valid inputs");
        self.crawl().await?;
        self.step("checking that each identity is accepted");
        self.check_identities().await?;
        if self.opts.allow_unsafe {
            self.step("creating objects as A and B");
            self.create().await?;
            self.crawl_bound().await?;
        } else {
            self.skipped.push(
                "writes (BOLA and BFLA on writes, mass assignment, injection in bodies, SSRF, login checks): need --allow-unsafe".into(),
            );
        }
        self.step("authentication: missing, forged and expired tokens");
        self.authentication().await?;
        self.step("object level authorization: B and A's objects");
        self.bola().await?;
        self.step("function level authorization: A and the administrator's operations");
        self.bfla().await?;
        if self.opts.allow_unsafe {
            self.step("mass assignment on creates and updates");
            self.mass_assignment().await?;
            self.step("login operations: enumeration and rate limits");
            self.login().await?;
        }
        self.step("injection in every input");
        self.injection().await?;
        self.step("server-side request forgery in fields that take URLs");
        self.ssrf().await?;
        self.step("exposure: rate limits, CORS, debug endpoints");
        self.exposure().await?;
        self.late_ssrf().await;
        self.tls().await;
        Ok(())
    }

    async fn tls(&mut self) {
        if !self.client.is_tls() {
            return;
        }
        self.step("TLS versions and cipher suites");
        let (host, port) = (self.client.host().to_string(), self.client.port());
        match tls::legacy_versions(&host, port).await {
            Ok(v) if !v.is_empty() => self.find(Finding::new(
                "tls.legacy_version",
                Severity::High,
                API8,
                format!("the server accepts {}", v.join(" and ")),
            )),
            Ok(_) => {}
            Err(e) => self.skipped.push(format!("TLS version probe: {e}")),
        }
        match tls::weak_suite(&host, port).await {
            Ok(Some(s)) => self.find(Finding::new(
                "tls.weak_cipher",
                Severity::High,
                API8,
                format!("the server agrees to the weak cipher suite {s} over TLS 1.2"),
            )),
            Ok(None) => {}
            Err(e) => self.skipped.push(format!("TLS cipher probe: {e}")),
        }
    }
}

/// Findings are made with a builder: `Finding::new(…).at(op).input(loc).shown(evidence)`.
impl Finding {
    pub(crate) fn new(
        check: &'static str,
        severity: Severity,
        owasp: &'static str,
        title: String,
    ) -> Finding {
        Finding {
            check,
            severity,
            owasp,
            title,
            operation: None,
            location: None,
            object: None,
            evidence: Vec::new(),
        }
    }
    pub(crate) fn at(mut self, operation: String) -> Finding {
        self.operation = Some(operation);
        self
    }
    pub(crate) fn input(mut self, location: String) -> Finding {
        self.location = Some(location);
        self
    }
    pub(crate) fn object(mut self, kind: &str, key: &str) -> Finding {
        self.object = Some(ObjectRef {
            kind: kind.to_string(),
            key: key.to_string(),
        });
        self
    }
    pub(crate) fn shown(mut self, ev: Vec<Exchange>) -> Finding {
        self.evidence = ev;
        self
    }
}

/// The scan's state for `opts`, before any request: the options checked, the description
/// read, the client and the canary ready.
async fn prepare<'a>(spec_text: &str, opts: &'a Options) -> Result<Scan<'a>, ScanError> {
    if opts.rate == 0 {
        return Err(ScanError::Usage(
            "--rate 0: the rate is in requests per second and must be at least 1".into(),
        ));
    }
    if opts.budget == 0 {
        return Err(ScanError::Usage(
            "--budget 0: no request could be sent".into(),
        ));
    }
    let spec = spec::load(spec_text).map_err(ScanError::Usage)?;
    if spec.operations.is_empty() {
        return Err(ScanError::Usage(
            "the description has no operations to scan".into(),
        ));
    }
    let client = Client::new(&opts.target, opts.budget, opts.rate, opts.ca_pem.as_deref())
        .map_err(ScanError::Usage)?;
    let canary = Some(
        canary::Canary::start(&opts.canary)
            .await
            .map_err(ScanError::Usage)?,
    );
    Ok(Scan {
        opts,
        client,
        spec,
        graph: Graph::default(),
        findings: Vec::new(),
        skipped: Vec::new(),
        cleanup: Vec::new(),
        seen: BTreeSet::new(),
        weak: None,
        bases: Vec::new(),
        probe: None,
        canary,
        salt: 0,
        burst: false,
        pending_ssrf: Vec::new(),
        redact: Vec::new(),
        public: Vec::new(),
        throttled: 0,
    })
}

/// One request of a benign replay and its answer.
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    /// The operation (`GET /patients/{pk}`).
    pub operation: String,
    /// Who sent it: `A`, `B`, `admin`, or `anyone` (without credentials).
    pub who: &'static str,
    /// The exchange (credentials masked).
    pub exchange: Exchange,
    /// The refusal code of a Palisade gateway (a problem+json `code`), when it refused.
    pub code: Option<String>,
}

/// Whether an operation requires credentials (a security requirement, none of them empty).
pub fn secured(op: &Operation) -> bool {
    checks::secured(op)
}

/// Whether an operation of the description is a login (a POST named like one, with a
/// password field), as the scan's login checks decide.
pub fn is_login(doc: &Value, op: &Operation) -> bool {
    checks::auth::is_login(doc, op)
}

/// Why an operation is reserved for privileged callers (its scopes, tags, id, summary,
/// description, `x-` extensions or an admin path), as the BFLA checks decide; `None` for an
/// ordinary one.
pub fn privileged(op: &Operation) -> Option<String> {
    checks::access::privileged(op)
}

/// The refusal code of an answer that is a gateway's problem+json.
pub fn refusal_code(ex: &Exchange) -> Option<String> {
    let ct = ex.header("content-type").unwrap_or("");
    if !ct.starts_with("application/problem+json") {
        return None;
    }
    serde_json::from_str::<Value>(&ex.body)
        .ok()?
        .get("code")?
        .as_str()
        .map(str::to_string)
}

/// Benign traffic: what the scan sends to learn the API, and nothing else. Every GET of the
/// description with valid inputs, as each identity (bound to objects it owns), the public
/// operations without credentials, and with `allow_unsafe` the creates (objects made are
/// deleted afterwards where the API allows). It is how `palisade patch --verify` checks
/// that a patch refuses no ordinary request.
pub async fn benign(spec_text: &str, opts: &Options) -> Result<Vec<Replayed>, ScanError> {
    let mut s = prepare(spec_text, opts).await?;
    s.client.release_reserve();
    let outcome = async {
        s.crawl().await?;
        if s.opts.allow_unsafe {
            s.create().await?;
            s.crawl_bound().await?;
        }
        Ok::<(), Refused>(())
    }
    .await;
    if opts.allow_unsafe {
        let _ = s.clean_up().await;
    }
    match outcome {
        Ok(()) | Err(Refused::Budget) => {}
        Err(Refused::Network(e)) => {
            return Err(ScanError::Target(format!(
                "the target stopped answering: {e}"
            )))
        }
        Err(Refused::Identity(e)) => return Err(ScanError::Identity(e)),
    }
    // an operation the description reserves for privileged callers is ordinary traffic only
    // for the administrator
    let ordinary = |b: &&Base| {
        b.who == Who::Admin
            || s.spec
                .operations
                .get(b.op)
                .is_none_or(|o| checks::access::privileged(o).is_none())
    };
    Ok(s.bases
        .iter()
        .filter(ordinary)
        .map(|b| Replayed {
            operation: b.req.operation(),
            who: b.who.name(),
            code: refusal_code(&b.ex),
            exchange: b.ex.clone(),
        })
        .chain(s.public.iter().map(|(op, ex)| Replayed {
            operation: op.clone(),
            who: "anyone",
            code: refusal_code(ex),
            exchange: ex.clone(),
        }))
        .collect())
}

/// Scans the target described by `spec_text`.
pub async fn scan(spec_text: &str, opts: &Options) -> Result<Report, ScanError> {
    let mut s = prepare(spec_text, opts).await?;
    if !opts.allow_unsafe {
        // nothing to clean up: the checks have the whole budget
        s.client.release_reserve();
    }
    let outcome = s.run().await;
    // what the scan created goes, whatever happened
    if opts.allow_unsafe && !matches!(outcome, Err(Refused::Identity(_))) {
        s.client.release_reserve();
        let _ = s.clean_up().await;
    }
    match outcome {
        Ok(()) => {}
        Err(Refused::Budget) => s.skipped.push(format!(
            "the request budget ({}) ran out; later checks did not run",
            opts.budget
        )),
        Err(Refused::Network(e)) => {
            return Err(ScanError::Target(format!(
                "the target stopped answering: {e}"
            )))
        }
        Err(Refused::Identity(e)) => return Err(ScanError::Identity(e)),
    }
    s.redact.extend(s.weak.clone());
    s.redact.retain(|x| x.len() >= 4);
    for f in &mut s.findings {
        for e in &mut f.evidence {
            for secret in &s.redact {
                e.excerpt = e.excerpt.replace(secret.as_str(), "‹redacted›");
            }
        }
    }
    s.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.check.cmp(b.check))
            .then(a.title.cmp(&b.title))
    });
    Ok(Report {
        target: opts.target.clone(),
        requests: s.client.used(),
        findings: s.findings,
        skipped: s.skipped,
        cleanup: s.cleanup,
        throttled: s.throttled,
    })
}
