//! The audit rules. Each has an id, a severity, its OWASP API Security Top 10 (2023) category,
//! why it matters and how to fix it; findings point at the JSON pointer of the node at fault.

use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Low,
    /// Should be fixed.
    Medium,
    /// Fix before going live.
    High,
    /// Exploitable as described.
    Critical,
}

impl Severity {
    /// Parses `low`, `medium`, `high`, `critical`.
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_lowercase().as_str() {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
    /// Its SARIF `level`: `note`, `warning` or `error` (high and critical), for the audit's
    /// and the scanner's reports alike.
    pub fn sarif_level(self) -> &'static str {
        match self {
            Severity::Low => "note",
            Severity::Medium => "warning",
            _ => "error",
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What a rule judges, and so which score it counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A security weakness (the security score).
    Security,
    /// How well inputs are defined and constrained (the data-validation score).
    Data,
    /// The description breaks the OpenAPI format: tools (and the gateway) cannot read it as
    /// meant, so it is not scored until fixed.
    Structure,
}

/// A rule's description.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    /// Stable id.
    pub id: &'static str,
    /// Severity of its findings.
    pub severity: Severity,
    /// The score it counts in.
    pub kind: Kind,
    /// OWASP API Security Top 10 (2023) category.
    pub owasp: &'static str,
    /// One-line title.
    pub title: &'static str,
    /// Why it matters.
    pub why: &'static str,
    /// How to fix it.
    pub fix: &'static str,
}

/// One finding: one cause, reported once where it is written, with the operations it
/// affects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// The rule.
    pub rule: &'static str,
    /// JSON pointer of the node at fault, in the file that holds it (`other.yaml#/User` for a
    /// node of a referenced file).
    pub pointer: String,
    /// What exactly was found.
    pub message: String,
    /// The operations it affects (`GET /users/{id}`), each once; empty when it concerns the
    /// whole description (a server, an unused scheme).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<String>,
    /// 1-based line of the node in its file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column of the node, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// Whether it concerns the whole description (a server, no rate-limit header anywhere),
    /// and so every operation, when `uses` is empty.
    #[serde(skip)]
    pub whole: bool,
}

const API1: &str = "API1:2023 Broken Object Level Authorization";
const API2: &str = "API2:2023 Broken Authentication";
const API3: &str = "API3:2023 Broken Object Property Level Authorization";
const API4: &str = "API4:2023 Unrestricted Resource Consumption";
const API5: &str = "API5:2023 Broken Function Level Authorization";
const API7: &str = "API7:2023 Server Side Request Forgery";
const API8: &str = "API8:2023 Security Misconfiguration";
const API6: &str = "API6:2023 Unrestricted Access to Sensitive Business Flows";
const API9: &str = "API9:2023 Improper Inventory Management";
const API10: &str = "API10:2023 Unsafe Consumption of APIs";
const STRUCT: &str = "OpenAPI format";

/// Every rule.
pub const RULES: &[Rule] = &[
    Rule { id: "PAL-AUTH-001", severity: Severity::High, kind: Kind::Security, owasp: API2, title: "Operation without security",
        why: "Anyone can call it: no credential is required.",
        fix: "Add a security requirement (globally or on the operation); mark truly public operations with an explicit empty requirement only after review." },
    Rule { id: "PAL-AUTH-002", severity: Severity::Medium, kind: Kind::Security, owasp: API2, title: "HTTP Basic authentication",
        why: "Basic sends a reusable password with every request and invites brute force.",
        fix: "Use OAuth 2.0 bearer tokens or mTLS; if Basic must stay, only over TLS and with rate limits." },
    Rule { id: "PAL-AUTH-003", severity: Severity::High, kind: Kind::Security, owasp: API2, title: "API key in the query string",
        why: "URLs are logged by proxies and servers and kept in browser histories: the key leaks.",
        fix: "Send API keys in a header (`in: header`)." },
    Rule { id: "PAL-AUTH-004", severity: Severity::High, kind: Kind::Security, owasp: API2, title: "OAuth implicit or password flow",
        why: "Both are deprecated (OAuth 2.0 Security BCP): tokens in URLs, or user passwords handed to clients.",
        fix: "Use the authorization code flow with PKCE, or client credentials for machines." },
    Rule { id: "PAL-AUTH-005", severity: Severity::Low, kind: Kind::Security, owasp: API2, title: "Bearer scheme without bearerFormat",
        why: "Clients and gateways cannot tell what token to expect or validate.",
        fix: "Set `bearerFormat: JWT` (or the format you issue)." },
    Rule { id: "PAL-AUTH-006", severity: Severity::Medium, kind: Kind::Security, owasp: API5, title: "Inconsistent security on one resource",
        why: "Some methods of a path are protected and others are not: often an oversight an attacker tries first.",
        fix: "Give every operation of the resource a security requirement, or document why one is public." },
    Rule { id: "PAL-TLS-001", severity: Severity::High, kind: Kind::Security, owasp: API8, title: "Server over plain http",
        why: "Credentials and data travel in clear text.",
        fix: "Serve the API over https only." },
    Rule { id: "PAL-INV-001", severity: Severity::Low, kind: Kind::Security, owasp: API9, title: "Server on localhost or a private host",
        why: "A description that names development hosts is out of date or exposes internal inventory.",
        fix: "List the production servers; keep development servers out of published descriptions." },
    Rule { id: "PAL-INV-002", severity: Severity::Low, kind: Kind::Security, owasp: API9, title: "Deprecated operation still present",
        why: "Deprecated operations are forgotten, unmaintained and often less protected.",
        fix: "Remove the operation, or set a sunset date and monitor its use." },
    Rule { id: "PAL-RESP-001", severity: Severity::Low, kind: Kind::Security, owasp: API8, title: "No 401/403 response documented",
        why: "Clients cannot handle refusals correctly, and tests do not check them.",
        fix: "Document 401 (and 403 where authorization applies) on protected operations." },
    Rule { id: "PAL-RESP-002", severity: Severity::Low, kind: Kind::Security, owasp: API4, title: "No 429 response documented",
        why: "Without a documented limit, none is likely enforced or handled by clients.",
        fix: "Enforce a rate limit and document 429 with Retry-After." },
    Rule { id: "PAL-RATE-001", severity: Severity::Low, kind: Kind::Security, owasp: API4, title: "No rate-limit headers documented",
        why: "Clients cannot pace themselves; abuse is harder to notice.",
        fix: "Document RateLimit / RateLimit-Policy (or X-RateLimit-*) and Retry-After headers." },
    Rule { id: "PAL-LIMIT-001", severity: Severity::Medium, kind: Kind::Data, owasp: API4, title: "Unbounded string",
        why: "Inputs of any size reach the service: memory, storage and ReDoS risks.",
        fix: "Set `maxLength` (or an `enum`, or a bounded `format` such as uuid or date)." },
    Rule { id: "PAL-LIMIT-002", severity: Severity::Medium, kind: Kind::Data, owasp: API4, title: "Unbounded array",
        why: "A request with millions of items costs the service, not the caller.",
        fix: "Set `maxItems`." },
    Rule { id: "PAL-LIMIT-003", severity: Severity::Low, kind: Kind::Data, owasp: API4, title: "Unbounded number",
        why: "Huge or negative values (page sizes, amounts) break assumptions.",
        fix: "Set `minimum` and `maximum`." },
    Rule { id: "PAL-MASS-001", severity: Severity::Medium, kind: Kind::Data, owasp: API3, title: "Object open to additional properties",
        why: "Unknown properties pass validation: mass assignment of fields the client must not set.",
        fix: "Set `additionalProperties: false` on request objects." },
    Rule { id: "PAL-MASS-002", severity: Severity::High, kind: Kind::Security, owasp: API3, title: "Privileged property writable in a request",
        why: "A client can set role, admin flags, owner or balance by sending the property (mass assignment).",
        fix: "Mark the property `readOnly: true` or remove it from request schemas." },
    Rule { id: "PAL-MASS-003", severity: Severity::High, kind: Kind::Security, owasp: API3, title: "Secret property in a response",
        why: "Passwords, secrets and tokens sent back to clients leak (excessive data exposure).",
        fix: "Remove the property from responses or mark it `writeOnly: true` and make sure the service omits it." },
    Rule { id: "PAL-BOLA-001", severity: Severity::Medium, kind: Kind::Security, owasp: API1, title: "Identifier without format or pattern",
        why: "Sequential or free-form ids are easy to enumerate: the first step of BOLA.",
        fix: "Use random identifiers (`format: uuid`) or constrain them with a `pattern`, and check ownership server-side." },
    Rule { id: "PAL-DATA-001", severity: Severity::High, kind: Kind::Security, owasp: API3, title: "Sensitive data in the URL",
        why: "Passwords, tokens, secrets or card numbers in paths and query strings end up in logs.",
        fix: "Move the value to a header or the request body." },
    Rule { id: "PAL-BFLA-001", severity: Severity::High, kind: Kind::Security, owasp: API5, title: "Admin operation without a distinct scope",
        why: "If ordinary callers hold the scopes an admin operation needs, any of them can call it.",
        fix: "Require a scope (or role) that only administrators hold." },
    Rule { id: "PAL-SSRF-001", severity: Severity::Medium, kind: Kind::Security, owasp: API7, title: "URL-typed input",
        why: "The server may fetch attacker-chosen URLs: internal services and cloud metadata are reachable.",
        fix: "Validate against an allow-list of hosts, refuse private and link-local addresses, or do not fetch." },
    Rule { id: "PAL-RESP-003", severity: Severity::Low, kind: Kind::Data, owasp: API8, title: "No validation error response documented",
        why: "An operation that takes input says nothing of how it refuses bad input: clients cannot handle it, and error paths (often verbose stack traces) are untested.",
        fix: "Document 400 (or 422) with an error schema such as RFC 9457 problem details." },
    Rule { id: "PAL-RESP-004", severity: Severity::Low, kind: Kind::Security, owasp: API8, title: "No server error response documented",
        why: "Undocumented 5xx answers are where stack traces, SQL errors and internal hosts leak.",
        fix: "Document `default` or 500 with a generic error schema (no internals), and make the service answer only that." },
    Rule { id: "PAL-CORS-001", severity: Severity::Medium, kind: Kind::Security, owasp: API8, title: "CORS open to every origin",
        why: "`Access-Control-Allow-Origin: *` lets any web page read the answers; with credentials allowed as well, any site can act as the logged-in user.",
        fix: "Answer CORS with an allow-list of origins; never `*` on authenticated operations." },
    Rule { id: "PAL-FLOW-001", severity: Severity::Medium, kind: Kind::Security, owasp: API6, title: "Sensitive business flow without a documented limit",
        why: "Login, sign-up, password reset, one-time codes, payments and redemptions are automated by attackers (credential stuffing, scalping, card testing) unless they are limited.",
        fix: "Limit the flow per client and per account (rate limit, quota, CAPTCHA or proof of work) and document 429 with Retry-After." },
    Rule { id: "PAL-CONS-001", severity: Severity::Medium, kind: Kind::Security, owasp: API10, title: "Callback to a URL the client chooses",
        why: "The API sends requests to, and reads answers from, an address taken from the caller's request: a way into internal networks (SSRF) and a third party whose answers are trusted.",
        fix: "Allow-list callback hosts (public addresses only, https), sign what is sent, and validate and bound what comes back." },
    Rule { id: "PAL-CONS-002", severity: Severity::Low, kind: Kind::Security, owasp: API10, title: "Webhook without a documented signature",
        why: "Receivers cannot tell the API's webhook calls from forged ones unless each carries a signature or credential they can check.",
        fix: "Sign webhook requests (an HMAC or RFC 9421 signature header) and document the header and how to verify it." },
    Rule { id: "PAL-STRUCT-001", severity: Severity::Critical, kind: Kind::Structure, owasp: STRUCT, title: "Not a valid description",
        why: "A required field is missing or has the wrong type: tools, gateways and code generators read something other than what was meant (or nothing), so no score would mean anything.",
        fix: "Fix the node as the message says; the OpenAPI or Swagger specification gives each object's fields." },
    Rule { id: "PAL-STRUCT-002", severity: Severity::High, kind: Kind::Structure, owasp: STRUCT, title: "Reference that resolves to nothing",
        why: "A `$ref` names no node (or a file that is not followed): whatever it should constrain is unchecked.",
        fix: "Point the `$ref` at an existing node, or define the target." },
    Rule { id: "PAL-STRUCT-003", severity: Severity::High, kind: Kind::Structure, owasp: STRUCT, title: "Reference cycle with no definition",
        why: "`$ref`s that only point at each other never reach a schema: the node is undefined.",
        fix: "Make one of the references a real definition." },
    Rule { id: "PAL-STRUCT-004", severity: Severity::Medium, kind: Kind::Data, owasp: STRUCT, title: "Path parameter not declared as such",
        why: "A `{name}` of the path template without a required `in: path` parameter (or the reverse) is validated by nobody.",
        fix: "Declare every template variable as a required path parameter, and no other." },
    Rule { id: "PAL-STRUCT-005", severity: Severity::Medium, kind: Kind::Data, owasp: STRUCT, title: "Duplicate operationId",
        why: "Two operations with one id confuse code generators, gateways and audit trails.",
        fix: "Give every operation its own `operationId`." },
    Rule { id: "PAL-STRUCT-006", severity: Severity::High, kind: Kind::Security, owasp: API2, title: "Security requirement names no scheme",
        why: "A requirement whose scheme is not defined cannot be enforced: the operation looks protected and is not.",
        fix: "Define the scheme under securitySchemes (securityDefinitions in 2.0), or fix the name." },
    Rule { id: "PAL-STRUCT-007", severity: Severity::Low, kind: Kind::Data, owasp: STRUCT, title: "Inconsistent schema",
        why: "An unknown type, an array without items, a `required` property that is not declared, or bounds that cannot both hold: the schema does not constrain what it seems to.",
        fix: "Fix the schema as the message says." },
    Rule { id: "PAL-STRUCT-009", severity: Severity::Medium, kind: Kind::Data, owasp: STRUCT, title: "Unknown field",
        why: "A field the format does not define is ignored by every tool: a misspelt `security`, `parameters` or `requestBody` silently drops what it was meant to declare.",
        fix: "Fix the spelling, or prefix a field of your own with `x-`." },
    Rule { id: "PAL-STRUCT-008", severity: Severity::Low, kind: Kind::Data, owasp: STRUCT, title: "Response code that is not a status",
        why: "A response key that is neither a status code, a range (`4XX`) nor `default` documents nothing.",
        fix: "Use a three-digit status, a range such as `4XX`, or `default`." },
];

/// The description of rule `id`.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}
