//! `ownership`: object-level authorization learned from traffic, for APIs whose owner of an
//! object is only in their data (broken object level authorization, BOLA). Answers of the
//! operations that show a caller its own objects (its list, what it just created) teach the
//! gateway which caller owns which key; a later request by another caller that names one of
//! those keys (in the path, the query or the body) is refused, whatever the upstream would
//! have done. Objects the gateway has never seen pass to the upstream (`unknown: forward`,
//! the default) or are refused (`unknown: refuse`).
//!
//! Policies with the same `resource` share one table, across routes and reloads. Callers are
//! kept as keyed hashes of their identity (the consumer, or a header such as the upstream's
//! own token), never as the credential itself. The table lives in memory and is bounded.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, LazyLock, Mutex};

use http::StatusCode;
use palisade_core::fields::{self, scalar_text};
use palisade_core::policies::SpecError;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, ResponseHead, Stage,
    Verdict,
};
use serde::Deserialize;
use serde_json::Value;

/// Refusal code when the caller does not own the object it names.
pub const CODE_NOT_OWNER: &str = "ownership.not_owner";
/// Refusal code when the object is unknown and `unknown: refuse`.
pub const CODE_UNKNOWN: &str = "ownership.unknown_object";

/// Where a request names an object.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum In {
    /// A parameter of the route's path template (`{id}`).
    Path,
    /// A query parameter.
    Query,
    /// A field of the body (JSON dotted path, or a form field).
    Body,
}

/// Where a request names an object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// `path`, `query` or `body`.
    #[serde(rename = "in")]
    pub location: In,
    /// The parameter or field name.
    pub name: String,
}

/// What to do with an object nobody was seen to own.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unknown {
    /// Let the upstream decide (default).
    #[default]
    Forward,
    /// Refuse.
    Refuse,
}

/// Config of the `ownership` policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipSpec {
    /// `enforce` (default) refuses; `monitor` only logs and counts.
    #[serde(default)]
    pub mode: Mode,
    /// The kind of object (`patients`): policies with the same name share one table.
    pub resource: String,
    /// Who the caller is: `consumer` (default: the authenticated principal) or `header:NAME`
    /// (the value of a header, e.g. the upstream's own token; kept hashed).
    #[serde(default)]
    pub owner: Option<String>,
    /// The field of this operation's 2xx JSON answers that holds the key of an object the
    /// caller owns: in the answer object, in each item of an answer list, or in each item of
    /// a list the answer object holds (`{"results": […]}`).
    #[serde(default)]
    pub learn: Option<String>,
    /// Where this operation's requests name an object.
    #[serde(default)]
    pub check: Option<CheckSpec>,
    /// Objects nobody was seen to own. Default `forward`.
    #[serde(default)]
    pub unknown: Unknown,
    /// Most objects remembered per resource (the oldest are forgotten). Default 1,000,000.
    #[serde(default)]
    pub max_objects: Option<usize>,
}

#[derive(Debug, Clone)]
enum Owner {
    Consumer,
    Header(http::HeaderName),
}

/// The owners of each object of one resource.
#[derive(Debug, Default)]
pub struct Table {
    inner: Mutex<TableInner>,
}

#[derive(Debug, Default)]
struct TableInner {
    owners: HashMap<String, Vec<u64>>,
    order: VecDeque<String>,
}

/// Most owners kept per object (shared objects: the first ones seen).
const MAX_OWNERS: usize = 16;
/// Most keys learned from one answer.
const MAX_LEARNED: usize = 10_000;

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, TableInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `who` as an owner of `key`.
    pub fn learn(&self, key: &str, who: u64, max: usize) {
        let mut t = self.lock();
        if let Some(o) = t.owners.get_mut(key) {
            if !o.contains(&who) && o.len() < MAX_OWNERS {
                o.push(who);
            }
            return;
        }
        while t.owners.len() >= max.max(1) {
            match t.order.pop_front() {
                Some(old) => {
                    t.owners.remove(&old);
                }
                None => break,
            }
        }
        t.owners.insert(key.to_string(), vec![who]);
        t.order.push_back(key.to_string());
    }

    /// The owners of `key`, when it is known.
    pub fn owners(&self, key: &str) -> Option<Vec<u64>> {
        self.lock().owners.get(key).cloned()
    }

    /// Objects known.
    pub fn len(&self) -> usize {
        self.lock().owners.len()
    }

    /// Whether no object is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The tables of every resource, shared by the policies that name it and kept across reloads.
pub fn table(resource: &str) -> Arc<Table> {
    static TABLES: LazyLock<Mutex<HashMap<String, Arc<Table>>>> = LazyLock::new(Default::default);
    let mut m = TABLES.lock().unwrap_or_else(|p| p.into_inner());
    m.entry(resource.to_string()).or_default().clone()
}

/// The keyed hash callers are kept as (a key of this process: nothing a reader of memory
/// could turn back into a credential).
fn caller_hash(s: &str) -> u64 {
    static KEY: LazyLock<std::collections::hash_map::RandomState> =
        LazyLock::new(std::collections::hash_map::RandomState::new);
    KEY.hash_one(s)
}

/// The runtime `ownership` policy.
#[derive(Debug)]
pub struct Ownership {
    resource: String,
    owner: Owner,
    learn: Option<String>,
    check: Option<CheckSpec>,
    unknown: Unknown,
    max: usize,
    table: Arc<Table>,
}

/// The annotation that marks an exchange this policy refused (or would have): its answer
/// teaches nothing.
const REFUSED: &str = "ownership_refused";

impl OwnershipSpec {
    /// Builds the policy.
    pub fn build(&self) -> Result<Ownership, Vec<SpecError>> {
        let mut errors = Vec::new();
        if self.resource.trim().is_empty() {
            errors.push(SpecError::new(
                "resource",
                "name the kind of object, e.g. patients",
            ));
        }
        let owner = match self.owner.as_deref().unwrap_or("consumer") {
            "consumer" => Some(Owner::Consumer),
            o => match o
                .strip_prefix("header:")
                .map(|h| http::HeaderName::from_bytes(h.trim().as_bytes()))
            {
                Some(Ok(h)) => Some(Owner::Header(h)),
                _ => {
                    errors.push(SpecError::new(
                        "owner",
                        format!("`{o}`: use consumer or header:NAME"),
                    ));
                    None
                }
            },
        };
        if self.learn.is_none() && self.check.is_none() {
            errors.push(SpecError::new(
                "learn",
                "ownership needs `learn` (where answers show a caller's objects) or `check` (where requests name one)",
            ));
        }
        if self.learn.as_deref().is_some_and(str::is_empty) {
            errors.push(SpecError::new("learn", "a field name"));
        }
        if self.check.as_ref().is_some_and(|c| c.name.is_empty()) {
            errors.push(SpecError::new("check.name", "a parameter or field name"));
        }
        match (owner, errors.is_empty()) {
            (Some(owner), true) => Ok(Ownership {
                resource: self.resource.clone(),
                owner,
                learn: self.learn.clone(),
                check: self.check.clone(),
                unknown: self.unknown,
                max: self.max_objects.unwrap_or(1_000_000),
                table: table(&self.resource),
            }),
            _ => Err(errors),
        }
    }
}

/// The keys an answer shows under `field`.
fn keys_in(v: &Value, field: &str) -> Vec<String> {
    let item = |x: &Value| x.get(field).and_then(scalar_text);
    let mut out = Vec::new();
    match v {
        Value::Array(a) => out.extend(a.iter().filter_map(item)),
        Value::Object(m) => match item(v) {
            Some(k) => out.push(k),
            None => {
                for x in m.values() {
                    if let Value::Array(a) = x {
                        out.extend(a.iter().filter_map(item));
                    }
                }
            }
        },
        _ => {}
    }
    out.truncate(MAX_LEARNED);
    out
}

impl Ownership {
    fn caller(&self, req: &RequestHead, x: &Exchange) -> Option<u64> {
        let id = match &self.owner {
            Owner::Consumer => x
                .principal()
                .map(|p| format!("c:{}", p.consumer.as_deref().unwrap_or(&p.subject)))?,
            Owner::Header(h) => {
                let v = req.headers.get(h)?.to_str().ok()?.trim();
                if v.is_empty() {
                    return None;
                }
                format!("h:{v}")
            }
        };
        Some(caller_hash(&id))
    }

    /// The decision for a request naming `key` (none: it names no object) by `caller`.
    pub fn decide(&self, key: Option<&str>, caller: Option<u64>) -> Verdict {
        let Some(key) = key else {
            return Verdict::Continue;
        };
        match self.table.owners(key) {
            None if self.unknown == Unknown::Forward => Verdict::Continue,
            None => Verdict::Reject(
                Rejection::new(StatusCode::NOT_FOUND, CODE_UNKNOWN, "Not found")
                    .with_detail(format!("no {} of yours has this key", self.resource)),
            ),
            Some(o) if caller.is_some_and(|c| o.contains(&c)) => Verdict::Continue,
            Some(_) => Verdict::Reject(
                Rejection::new(StatusCode::NOT_FOUND, CODE_NOT_OWNER, "Not found")
                    .with_detail(format!("no {} of yours has this key", self.resource)),
            ),
        }
    }

    fn judged(&self, v: Verdict, x: &mut Exchange) -> Outcome {
        if matches!(v, Verdict::Reject(_)) {
            x.annotations.insert(REFUSED, self.resource.clone());
        }
        Ok(v)
    }

    /// Records the caller as owner of the objects `body` shows.
    pub fn learn_from(&self, body: &[u8], caller: u64) -> usize {
        let Some(field) = &self.learn else {
            return 0;
        };
        let Ok(v) = palisade_core::json::parse(body) else {
            return 0;
        };
        let keys = keys_in(&v, field);
        for k in &keys {
            self.table.learn(k, caller, self.max);
        }
        keys.len()
    }

    fn query_value(req: &RequestHead, name: &str) -> Option<String> {
        req.uri.query()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (palisade_core::uri::decode_form(k).as_deref() == Some(name))
                .then(|| palisade_core::uri::decode_form(v))
                .flatten()
        })
    }
}

#[async_trait::async_trait]
impl Policy for Ownership {
    fn kind(&self) -> &'static str {
        "ownership"
    }
    fn stage(&self) -> Stage {
        Stage::Authz
    }
    fn phases(&self) -> PhaseSet {
        let mut p = PhaseSet::EMPTY;
        match self.check.as_ref().map(|c| c.location) {
            Some(In::Body) => p = p.with(Phase::RequestBody),
            Some(_) => p = p.with(Phase::RequestHead),
            None => {}
        }
        if self.learn.is_some() {
            // the caller is read from the request head, the answer from the body
            p = p.with(Phase::RequestHead).with(Phase::ResponseBody);
        }
        p
    }
    async fn on_request_head(&self, req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        let caller = self.caller(req, x);
        if self.learn.is_some() {
            if let Some(c) = caller {
                x.annotations.insert("ownership_caller", c.to_string());
            }
        }
        let key = match &self.check {
            Some(CheckSpec {
                location: In::Path,
                name,
            }) => x
                .path_params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
            Some(CheckSpec {
                location: In::Query,
                name,
            }) => Self::query_value(req, name),
            _ => return Ok(Verdict::Continue),
        };
        let v = self.decide(key.as_deref(), caller);
        self.judged(v, x)
    }
    async fn on_request_body(
        &self,
        req: &RequestHead,
        body: &bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        let Some(CheckSpec { name, .. }) = &self.check else {
            return Ok(Verdict::Continue);
        };
        let key = match fields::read(req, body, x) {
            Ok(f) => f.text(name),
            Err(e) => {
                return Ok(Verdict::Reject(
                    Rejection::new(StatusCode::BAD_REQUEST, CODE_NOT_OWNER, "Unreadable body")
                        .with_detail(e.0),
                ))
            }
        };
        let caller = self.caller(req, x);
        let v = self.decide(key.as_deref(), caller);
        self.judged(v, x)
    }
    async fn on_response_body(
        &self,
        res: &mut ResponseHead,
        body: &mut bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        // a refused request (or one that would have been, in monitor mode) teaches nothing
        if !res.status.is_success() || x.annotations.contains_key(REFUSED) {
            return Ok(Verdict::Continue);
        }
        if let Some(c) = x
            .annotations
            .get("ownership_caller")
            .and_then(|c| c.parse::<u64>().ok())
        {
            self.learn_from(body, c);
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(resource: &str, learn: Option<&str>, unknown: Unknown) -> Ownership {
        OwnershipSpec {
            mode: Mode::Enforce,
            resource: resource.into(),
            owner: Some("header:authorization".into()),
            learn: learn.map(str::to_string),
            check: Some(CheckSpec {
                location: In::Path,
                name: "pk".into(),
            }),
            unknown,
            max_objects: Some(3),
        }
        .build()
        .unwrap()
    }

    #[test]
    fn decision_table() {
        let p = policy("test-table", Some("pk"), Unknown::Forward);
        let (a, b) = (caller_hash("h:Token a"), caller_hash("h:Token b"));
        assert_eq!(p.learn_from(br#"[{"pk":11},{"pk":12,"x":1}]"#, a), 2);
        assert_eq!(p.learn_from(br#"{"pk":"b-1"}"#, b), 1);
        // (key, caller, allowed)
        let rows: &[(Option<&str>, Option<u64>, bool)] = &[
            (Some("11"), Some(a), true),
            (Some("11"), Some(b), false),
            (Some("11"), None, false),
            (Some("b-1"), Some(b), true),
            (Some("b-1"), Some(a), false),
            (Some("999"), Some(b), true),
            (None, Some(b), true),
        ];
        for (key, caller, allowed) in rows {
            let v = p.decide(*key, *caller);
            assert_eq!(
                matches!(v, Verdict::Continue),
                *allowed,
                "{key:?} {caller:?}"
            );
        }
        // bounded: the oldest keys are forgotten first (max_objects 3)
        assert_eq!(p.learn_from(br#"{"results":[{"pk":13}]}"#, a), 1);
        assert_eq!(p.table.len(), 3, "11 made room for 13");
        assert!(p.table.owners("11").is_none());
        let strict = policy("test-strict", None, Unknown::Refuse);
        match strict.decide(Some("1"), Some(a)) {
            Verdict::Reject(r) => assert_eq!(r.code, CODE_UNKNOWN),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn shared_objects_have_several_owners_and_tables_are_shared_by_name() {
        let p = policy("test-shared", Some("id"), Unknown::Forward);
        let q = policy("test-shared", None, Unknown::Forward);
        let (a, b) = (caller_hash("h:a"), caller_hash("h:b"));
        p.learn_from(br#"[{"id":1}]"#, a);
        p.learn_from(br#"[{"id":1}]"#, b);
        assert!(matches!(q.decide(Some("1"), Some(b)), Verdict::Continue));
        assert!(matches!(
            q.decide(Some("1"), Some(caller_hash("h:c"))),
            Verdict::Reject(_)
        ));
    }

    #[test]
    fn bad_specs_name_their_field() {
        let base = OwnershipSpec {
            mode: Mode::Enforce,
            resource: "x".into(),
            owner: None,
            learn: None,
            check: None,
            unknown: Unknown::Forward,
            max_objects: None,
        };
        assert_eq!(base.build().unwrap_err()[0].field, "learn");
        let bad_owner = OwnershipSpec {
            owner: Some("cookie:x".into()),
            learn: Some("id".into()),
            ..base
        };
        assert_eq!(bad_owner.build().unwrap_err()[0].field, "owner");
    }
}
