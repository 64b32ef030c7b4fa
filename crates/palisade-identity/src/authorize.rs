//! `authorize`: what an authenticated caller may do, deny by default.
//!
//! Rules are tried in order; the first that is for the request applies (its `methods`, its
//! `paths` and its `services` select the requests it is for), and all of its conditions must
//! hold. A request no rule applies to is refused. With `services` and `paths` a list of rules
//! is a service-to-service policy: source identity → the operations it may call. Conditions cover
//! function level (scopes, groups, consumers, claims per method: admin-only operations) and
//! object level (`owner`: a path parameter must equal a claim of the caller, e.g. `/users/{id}`
//! only for the user `id`, unless the caller is in one of `unless_groups`).

use http::Method;
use palisade_core::policies::SpecError;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Principal, RequestHead, Stage, Verdict,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::refusals;

/// Object-level ownership: `param` of the route's path template must equal `claim`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnerSpec {
    /// The path parameter, e.g. `id` in `/users/{id}`.
    pub param: String,
    /// The caller's claim it must equal. Default `sub` (the subject).
    #[serde(default)]
    pub claim: Option<String>,
    /// Groups that may act on any object (e.g. `admin`).
    #[serde(default)]
    pub unless_groups: Vec<String>,
}

/// One rule.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Methods the rule is for; default all.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Every one of these scopes is needed.
    #[serde(default)]
    pub scopes_all: Vec<String>,
    /// One of these scopes is needed.
    #[serde(default)]
    pub scopes_any: Vec<String>,
    /// Membership in one of these groups is needed.
    #[serde(default)]
    pub groups_any: Vec<String>,
    /// Only these consumers (by name).
    #[serde(default)]
    pub consumers: Vec<String>,
    /// Never these consumers.
    #[serde(default)]
    pub deny_consumers: Vec<String>,
    /// The rule is for calling services with one of these identities (the verified client
    /// certificate's SPIFFE ID, DNS name or CN; exact, or a prefix ending in `*`); requests
    /// of other callers go on to the next rule. A rule with only `services` (and `methods`,
    /// `paths`) needs no other identity.
    #[serde(default)]
    pub services: Vec<String>,
    /// The rule is for these paths (as routed: decoded, canonical; exact, or a prefix ending
    /// in `*`, ASCII case ignored); default all.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Claims with the values they must have (a list: one of them).
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// Object-level ownership.
    #[serde(default)]
    pub owner: Option<OwnerSpec>,
    /// `deny` refuses the requests the rule applies to (e.g. a method no one may use).
    #[serde(default)]
    pub deny: bool,
}

/// Config of the `authorize` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeSpec {
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub mode: Mode,
    /// The rules, first applicable wins; none applicable: refused.
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug)]
struct Rule {
    methods: Option<Vec<Method>>,
    spec: RuleSpec,
}

impl Rule {
    /// Whether the rule is for this request.
    fn applies(&self, method: &Method, path: &str, service: Option<&str>) -> bool {
        self.methods.as_ref().is_none_or(|ms| ms.contains(method))
            && (self.spec.paths.is_empty() || self.spec.paths.iter().any(|p| path_is(p, path)))
            && (self.spec.services.is_empty()
                || service.is_some_and(|s| crate::mtls::allowed(&self.spec.services, s)))
    }
}

/// `path` is `pattern` (exact, or under a prefix ending in `*`), ASCII case ignored.
fn path_is(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix)),
        None => pattern.eq_ignore_ascii_case(path),
    }
}

/// The runtime `authorize` policy.
#[derive(Debug)]
pub struct Authorize {
    rules: Vec<Rule>,
}

impl AuthorizeSpec {
    /// Builds the policy, reporting every problem.
    pub fn build(&self) -> Result<Authorize, Vec<SpecError>> {
        let mut errors = Vec::new();
        if self.rules.is_empty() {
            errors.push(SpecError::new(
                "rules",
                "at least one rule; with none, everything is refused",
            ));
        }
        let mut rules = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            let methods = r.methods.as_ref().map(|ms| {
                ms.iter()
                    .enumerate()
                    .filter_map(|(j, m)| {
                        match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                            Ok(m) => Some(m),
                            Err(_) => {
                                errors.push(SpecError::new(
                                    format!("rules[{i}].methods[{j}]"),
                                    "not an HTTP method",
                                ));
                                None
                            }
                        }
                    })
                    .collect::<Vec<_>>()
            });
            for (j, a) in r.services.iter().enumerate() {
                if a.is_empty() || a.trim_end_matches('*').contains('*') {
                    errors.push(SpecError::new(
                        format!("rules[{i}].services[{j}]"),
                        "an identity, or a prefix ending in a single `*`",
                    ));
                }
            }
            for (j, a) in r.paths.iter().enumerate() {
                if !a.starts_with('/') || a.trim_end_matches('*').contains('*') {
                    errors.push(SpecError::new(
                        format!("rules[{i}].paths[{j}]"),
                        "a path starting with /, or a prefix ending in a single `*` (e.g. /orders/*)",
                    ));
                }
            }
            if let Some(o) = &r.owner {
                if o.param.is_empty() {
                    errors.push(SpecError::new(
                        format!("rules[{i}].owner.param"),
                        "names the path parameter, e.g. id",
                    ));
                }
            }
            rules.push(Rule {
                methods,
                spec: r.clone(),
            });
        }
        if errors.is_empty() {
            Ok(Authorize { rules })
        } else {
            Err(errors)
        }
    }
}

fn claim_matches(p: &Principal, name: &str, want: &Value) -> bool {
    let wanted: Vec<&Value> = match want {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    match p.claims.get(name) {
        Some(Value::Array(items)) => items.iter().any(|i| wanted.contains(&i)),
        Some(v) => wanted.contains(&v),
        None => false,
    }
}

impl Authorize {
    /// The refusal for `p` (calling from `service`) doing `method` on `path` with these path
    /// parameters, or `None` when allowed.
    pub fn decide(
        &self,
        p: Option<&Principal>,
        service: Option<&str>,
        method: &Method,
        path: &str,
        params: &[(String, String)],
    ) -> Option<palisade_core::Rejection> {
        let Some(rule) = self.rules.iter().find(|r| r.applies(method, path, service)) else {
            return Some(refusals::forbidden(&match service {
                Some(_) if self.rules.iter().any(|r| !r.spec.services.is_empty()) => {
                    format!("the calling service may not {method} {path}")
                }
                _ => format!("no rule allows {method} here"),
            }));
        };
        let r = &rule.spec;
        if r.deny {
            return Some(refusals::forbidden(&format!(
                "{method} is not allowed here"
            )));
        }
        if !r.services.is_empty() {
            // service-to-service: the certificate is the identity
            let needs_principal = !r.consumers.is_empty()
                || !r.deny_consumers.is_empty()
                || !r.scopes_all.is_empty()
                || !r.scopes_any.is_empty()
                || !r.groups_any.is_empty()
                || !r.claims.is_empty()
                || r.owner.is_some();
            if !needs_principal {
                return None;
            }
        }
        let Some(p) = p else {
            return Some(refusals::forbidden("the caller is not authenticated"));
        };
        let consumer = p.consumer.as_deref();
        if consumer.is_some_and(|c| r.deny_consumers.iter().any(|d| d == c)) {
            return Some(refusals::forbidden("this consumer is not allowed here"));
        }
        if !r.consumers.is_empty() && !consumer.is_some_and(|c| r.consumers.iter().any(|a| a == c))
        {
            return Some(refusals::forbidden("this consumer is not allowed here"));
        }
        let missing_all: Vec<String> = r
            .scopes_all
            .iter()
            .filter(|s| !p.scopes.contains(s))
            .cloned()
            .collect();
        if !missing_all.is_empty() {
            return Some(refusals::insufficient_scope(&r.scopes_all));
        }
        if !r.scopes_any.is_empty() && !r.scopes_any.iter().any(|s| p.scopes.contains(s)) {
            return Some(refusals::insufficient_scope(&r.scopes_any));
        }
        if !r.groups_any.is_empty() && !r.groups_any.iter().any(|g| p.groups.contains(g)) {
            return Some(refusals::forbidden(
                "the caller is not in a group this operation needs",
            ));
        }
        for (name, want) in &r.claims {
            if !claim_matches(p, name, want) {
                return Some(refusals::forbidden(&format!(
                    "the caller's `{name}` does not allow this"
                )));
            }
        }
        if let Some(o) = &r.owner {
            let privileged = o.unless_groups.iter().any(|g| p.groups.contains(g));
            if !privileged {
                let claim = o.claim.as_deref().unwrap_or("sub");
                let mine = if claim == "sub" {
                    Some(p.subject.clone())
                } else {
                    p.claim_text(claim)
                };
                let theirs = params
                    .iter()
                    .find(|(k, _)| *k == o.param)
                    .map(|(_, v)| v.clone());
                match (mine, theirs) {
                    (Some(a), Some(b)) if a == b => {}
                    _ => {
                        return Some(refusals::forbidden(
                            "the caller may act only on their own objects",
                        ))
                    }
                }
            }
        }
        None
    }
}

#[async_trait::async_trait]
impl Policy for Authorize {
    fn kind(&self) -> &'static str {
        "authorize"
    }
    fn stage(&self) -> Stage {
        Stage::Authz
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY.with(Phase::RequestHead)
    }
    async fn on_request_head(&self, req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        let service = x.client_cert.as_deref().and_then(|c| c.identity());
        match self.decide(
            x.principal(),
            service,
            &req.method,
            req.uri.path(),
            &x.path_params,
        ) {
            None => Ok(Verdict::Continue),
            Some(r) => Ok(Verdict::Reject(r)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml_rules: Value) -> Authorize {
        let spec: AuthorizeSpec =
            serde_json::from_value(serde_json::json!({ "rules": yaml_rules }))
                .unwrap_or_else(|e| panic!("{e}"));
        spec.build().unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn who(sub: &str, groups: &[&str], scopes: &[&str]) -> Principal {
        Principal {
            subject: sub.into(),
            method: "jwt",
            groups: groups.iter().map(|g| g.to_string()).collect(),
            scopes: scopes.iter().map(|g| g.to_string()).collect(),
            ..Principal::default()
        }
    }

    fn params(id: &str) -> Vec<(String, String)> {
        vec![("id".into(), id.into())]
    }

    #[test]
    fn decision_table() {
        let p = policy(serde_json::json!([
            {"methods": ["GET"], "scopes_any": ["users:read", "users:admin"],
             "owner": {"param": "id", "unless_groups": ["admin"]}},
            {"methods": ["DELETE"], "groups_any": ["admin"]},
            {"methods": ["PUT", "PATCH"], "scopes_all": ["users:write"], "owner": {"param": "id"}},
            {"methods": ["TRACE"], "deny": true}
        ]));
        let alice = who("alice", &[], &["users:read", "users:write"]);
        let bob = who("bob", &[], &["users:read"]);
        let root = who("root", &["admin"], &["users:read"]);
        let noscope = who("alice", &[], &[]);
        type Case<'a> = (
            &'a str,
            Option<&'a Principal>,
            Method,
            &'a str,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            ("own object", Some(&alice), Method::GET, "alice", None),
            (
                "BOLA: another's object",
                Some(&bob),
                Method::GET,
                "alice",
                Some(refusals::FORBIDDEN),
            ),
            (
                "admin reads any object",
                Some(&root),
                Method::GET,
                "alice",
                None,
            ),
            (
                "no scope",
                Some(&noscope),
                Method::GET,
                "alice",
                Some(refusals::INSUFFICIENT_SCOPE),
            ),
            (
                "BFLA: delete without admin",
                Some(&alice),
                Method::DELETE,
                "alice",
                Some(refusals::FORBIDDEN),
            ),
            ("admin deletes", Some(&root), Method::DELETE, "alice", None),
            ("write own", Some(&alice), Method::PUT, "alice", None),
            (
                "write without scope",
                Some(&bob),
                Method::PUT,
                "bob",
                Some(refusals::INSUFFICIENT_SCOPE),
            ),
            (
                // values arrive decoded by the router: no second decoding here
                "an escape in a decoded value is literal",
                Some(&alice),
                Method::PUT,
                "%61lice",
                Some(refusals::FORBIDDEN),
            ),
            (
                "no rule for POST",
                Some(&root),
                Method::POST,
                "x",
                Some(refusals::FORBIDDEN),
            ),
            (
                "explicit deny",
                Some(&root),
                Method::TRACE,
                "x",
                Some(refusals::FORBIDDEN),
            ),
            (
                "anonymous",
                None,
                Method::GET,
                "alice",
                Some(refusals::FORBIDDEN),
            ),
        ];
        for (name, who, m, id, want) in cases {
            let got = p.decide(who, None, &m, "/", &params(id)).map(|r| r.code);
            assert_eq!(got, want, "{name}");
        }
        // no path parameter where the rule needs one: refused (fails closed)
        assert!(p
            .decide(Some(&alice), None, &Method::GET, "/", &[])
            .is_some());
    }

    #[test]
    fn consumers_and_claims() {
        let p = policy(serde_json::json!([
            {"consumers": ["acme", "globex"], "deny_consumers": ["globex"], "claims": {"tier": ["gold", "platinum"]}}
        ]));
        let mut acme = who("acme", &[], &[]);
        acme.consumer = Some("acme".into());
        acme.claims.insert("tier".into(), "gold".into());
        assert!(p
            .decide(Some(&acme), None, &Method::GET, "/", &[])
            .is_none());
        acme.claims.insert("tier".into(), "free".into());
        assert!(p
            .decide(Some(&acme), None, &Method::GET, "/", &[])
            .is_some());
        let mut globex = who("globex", &[], &[]);
        globex.consumer = Some("globex".into());
        globex.claims.insert("tier".into(), "gold".into());
        assert!(p
            .decide(Some(&globex), None, &Method::GET, "/", &[])
            .is_some());
        let stranger = who("x", &[], &[]);
        assert!(p
            .decide(Some(&stranger), None, &Method::GET, "/", &[])
            .is_some());
    }

    /// A service-to-service policy: each rule names its callers and operations; a caller no
    /// rule is for is refused, whatever rules follow for other callers.
    #[test]
    fn rules_by_calling_service_and_path() {
        let p = policy(serde_json::json!([
            {"services": ["spiffe://td/sa/frontend"], "methods": ["GET"], "paths": ["/orders", "/orders/*"]},
            {"services": ["spiffe://td/sa/billing"], "methods": ["GET", "POST"], "paths": ["/orders/*"]},
            {"services": ["spiffe://td/sa/*"], "methods": ["GET"], "paths": ["/health"]}
        ]));
        let d = |svc: Option<&str>, m: Method, path: &str| {
            p.decide(None, svc, &m, path, &[])
                .map(|r| r.detail.unwrap_or_default())
        };
        let fe = Some("spiffe://td/sa/frontend");
        let billing = Some("spiffe://td/sa/billing");
        let other = Some("spiffe://td/sa/search");
        assert_eq!(d(fe, Method::GET, "/orders"), None);
        assert_eq!(d(fe, Method::GET, "/ORDERS/7"), None);
        assert_eq!(d(billing, Method::POST, "/orders/7"), None);
        assert_eq!(d(other, Method::GET, "/health"), None);
        // the first rule does not stop billing: it is not for billing
        assert_eq!(d(billing, Method::GET, "/orders/7"), None);
        let refused = [
            (fe, Method::POST, "/orders/7"),
            (fe, Method::GET, "/ordersx"),
            (billing, Method::GET, "/orders"),
            (other, Method::GET, "/orders"),
            (None, Method::GET, "/orders"),
            (Some("spiffe://other/sa/frontend"), Method::GET, "/orders"),
        ];
        for (svc, m, path) in refused {
            let why = d(svc, m.clone(), path);
            assert!(why.is_some(), "{svc:?} {m} {path} must be refused");
        }
        assert!(d(fe, Method::POST, "/orders/7")
            .unwrap()
            .contains("calling service may not POST /orders/7"));
        let bad: AuthorizeSpec = serde_json::from_value(serde_json::json!({
            "rules": [{"paths": ["orders", "/a*b*"]}]
        }))
        .unwrap();
        assert_eq!(bad.build().unwrap_err().len(), 2);
    }
}
