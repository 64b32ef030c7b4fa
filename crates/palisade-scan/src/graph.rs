//! The resource graph: the objects the scan has seen in answers (lists, creates, `/me`-like
//! operations), what kind each is, who saw or made it, and so who owns it. Inputs of later
//! requests (path parameters, query parameters, body fields) are bound to these objects by
//! name, so that a create's answer feeds the read, update and delete of that object, and B can
//! be sent A's objects whatever their keys look like (numbers, strings, slugs, names).

use std::collections::BTreeSet;

use palisade_audit::names;
use serde_json::{Map, Value};

/// An identity of the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Who {
    /// Ordinary identity A.
    A,
    /// Ordinary identity B.
    B,
    /// The administrator.
    Admin,
}

impl Who {
    /// How reports name it.
    pub fn name(self) -> &'static str {
        match self {
            Who::A => "A",
            Who::B => "B",
            Who::Admin => "admin",
        }
    }
}

/// An object seen in an answer.
#[derive(Debug, Clone)]
pub struct Obj {
    /// Its kind, singular and lower case (`order` for `Order`, `orders`, `order_items`→`orderitem`).
    pub kind: String,
    /// Its scalar fields.
    pub fields: Map<String, Value>,
    /// Its fields as first seen (what the scan puts back after writing to it).
    pub original: Map<String, Value>,
    /// Who saw it.
    pub seen_by: BTreeSet<Who>,
    /// Who made it (a create of this scan), if anyone did.
    pub created_by: Option<Who>,
    /// The operation that made it, e.g. `POST /orders`.
    pub created_with: Option<String>,
    /// Whether the scan deleted it.
    pub deleted: bool,
}

/// Field names that identify an object (one of its keys).
fn is_key(name: &str) -> bool {
    let w = names::words(name);
    match w.last().map(String::as_str) {
        Some("id" | "uuid" | "guid" | "key" | "slug" | "code" | "number" | "ref" | "handle") => {
            true
        }
        Some("name") => w.len() <= 2,
        Some("username" | "login" | "email") => true,
        _ => false,
    }
}

/// Fields that name who an object belongs to (`owner`, `user_id`, `customer`, `created_by`).
fn is_owner_field(name: &str) -> bool {
    names::words(name).iter().any(|w| {
        matches!(
            w.as_str(),
            "owner"
                | "user"
                | "customer"
                | "author"
                | "creator"
                | "member"
                | "account"
                | "client"
                | "by"
        )
    })
}

/// Words that wrap a list in an answer without naming its items (`{"data": [...]}`).
const WRAPPERS: [&str; 10] = [
    "data", "items", "results", "content", "records", "list", "value", "entries", "rows", "hits",
];

/// A kind from a word: lower case, alphanumerics only, singular.
pub fn kind(word: &str) -> String {
    let w: String = names::words(word).join("");
    if let Some(s) = w.strip_suffix("ies") {
        format!("{s}y")
    } else if w.ends_with("sses")
        || w.ends_with("xes")
        || w.ends_with("ches")
        || w.ends_with("shes")
    {
        w[..w.len() - 2].to_string()
    } else if w.ends_with('s') && !w.ends_with("ss") && w.len() > 3 {
        w[..w.len() - 1].to_string()
    } else {
        w
    }
}

/// Path segments that stand for the caller's own account.
const SELF_WORDS: [&str; 8] = [
    "me",
    "self",
    "profile",
    "account",
    "whoami",
    "current",
    "currentuser",
    "myself",
];

/// The kind of what an operation's path is about: a trailing collection (`/shops/{shop}/products`
/// → `product`), else the object the last parameter names (`/orders/{id}` and the action
/// `/orders/{id}/refund` → `order`), else the last segment (`/me` → `user`).
pub fn path_kind(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let last_literal = segs
        .iter()
        .rev()
        .find(|s| !s.starts_with('{'))
        .copied()
        .unwrap_or("");
    let trailing_plural = segs.last().is_some_and(|s| !s.starts_with('{'))
        && last_literal.ends_with('s')
        && !last_literal.ends_with("ss");
    let before_param = segs.windows(2).rev().find_map(|w| match w {
        [a, b] if b.starts_with('{') && !a.starts_with('{') => Some(*a),
        _ => None,
    });
    let seg = if trailing_plural {
        last_literal
    } else {
        before_param.unwrap_or(last_literal)
    };
    if is_self_word(seg) {
        "user".into()
    } else {
        kind(seg)
    }
}

/// Whether a path stands for the caller's own account (`/me`, `/users/me`, `/account`).
pub fn is_self_path(path: &str) -> bool {
    path.split('/')
        .rfind(|s| !s.is_empty())
        .is_some_and(is_self_word)
}

/// `me`, `account`, `current-user` (singular: `accounts` is a collection).
fn is_self_word(seg: &str) -> bool {
    SELF_WORDS.contains(&names::words(seg).join("").as_str())
}

/// The kind a schema names through its `$ref` (`#/components/schemas/Order` → `order`).
fn ref_kind(schema: Option<&Value>) -> Option<String> {
    let s = schema?;
    let r = s
        .get("$ref")
        .or_else(|| s.get("items").and_then(|i| i.get("$ref")))?
        .as_str()?;
    Some(kind(r.rsplit('/').next()?))
}

/// The objects seen so far.
#[derive(Debug, Default)]
pub struct Graph {
    /// Every object, in the order first seen.
    pub objs: Vec<Obj>,
    /// Each identity's own account, as far as the scan saw it.
    pub me: Vec<(Who, Map<String, Value>)>,
    /// Values that identify each identity (its token's `sub`, its account's keys).
    pub ids: Vec<(Who, String)>,
    /// The kind of the caller's own account, as its schema names it (`account` for a `/me`
    /// answering an `Account`).
    pub self_kind: Option<String>,
}

impl Graph {
    /// Object `i`.
    pub fn obj(&self, i: usize) -> Option<&Obj> {
        self.objs.get(i)
    }

    /// Marks object `i` deleted (it is no longer bound or cleaned up).
    pub fn mark_deleted(&mut self, i: usize) {
        if let Some(o) = self.objs.get_mut(i) {
            o.deleted = true;
        }
    }

    /// Records what an identity knows itself by (a token's `sub`, a user name).
    pub fn identify(&mut self, who: Who, value: &str) {
        if !value.is_empty() && !self.ids.iter().any(|(w, v)| *w == who && v == value) {
            self.ids.push((who, value.to_string()));
        }
    }

    /// Learns the objects of an answer. `schema` is the documented response schema (for the
    /// kinds its `$ref`s name), `path` the operation's path, `who` the identity that got it.
    pub fn learn(
        &mut self,
        doc: &Value,
        path: &str,
        schema: Option<&Value>,
        body: &Value,
        who: Who,
        created_with: Option<&str>,
    ) -> Option<usize> {
        let top = ref_kind(schema).unwrap_or_else(|| path_kind(path));
        if is_self_path(path) && created_with.is_none() && top != "user" {
            self.self_kind = Some(top.clone());
        }
        let first = self.walk(doc, schema, body, &top, who, created_with, 0);
        if is_self_path(path) && created_with.is_none() {
            if let Some(fields) = body.as_object() {
                let fields: Map<String, Value> = fields
                    .iter()
                    .filter(|(_, v)| !v.is_object() && !v.is_array())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for (k, v) in &fields {
                    match v {
                        Value::String(s) if is_key(k) => self.identify(who, s),
                        // a number names the caller only in an owner-like field (see `owns`)
                        Value::Number(n) if is_key(k) => self.identify(who, &format!("#{n}")),
                        _ => {}
                    }
                }
                self.me.retain(|(w, _)| *w != who);
                self.me.push((who, fields));
            }
        }
        first
    }

    #[allow(clippy::too_many_arguments)]
    fn walk(
        &mut self,
        doc: &Value,
        schema: Option<&Value>,
        v: &Value,
        kind_here: &str,
        who: Who,
        created_with: Option<&str>,
        depth: usize,
    ) -> Option<usize> {
        if depth > 6 {
            return None;
        }
        let schema = schema.map(|s| palisade_audit::spec::deref(doc, s));
        match v {
            Value::Array(items) => {
                let item_schema = schema.and_then(|s| s.get("items"));
                let k = ref_kind(item_schema).unwrap_or_else(|| kind_here.to_string());
                let mut first = None;
                for x in items.iter().take(50) {
                    let i = self.walk(doc, item_schema, x, &k, who, None, depth + 1);
                    first = first.or(i);
                }
                first
            }
            Value::Object(m) => {
                let scalars: Map<String, Value> = m
                    .iter()
                    .filter(|(_, x)| !x.is_object() && !x.is_array())
                    .map(|(k, x)| (k.clone(), x.clone()))
                    .collect();
                let me = if scalars.keys().any(|k| is_key(k)) {
                    Some(self.add(kind_here, scalars, who, created_with))
                } else {
                    None
                };
                let mut first = me;
                for (k, x) in m.iter().filter(|(_, x)| x.is_object() || x.is_array()) {
                    let sub = schema
                        .and_then(|s| s.get("properties"))
                        .and_then(|p| p.get(k));
                    let wrapped = WRAPPERS.contains(&k.to_ascii_lowercase().as_str());
                    let k2 = ref_kind(sub).unwrap_or_else(|| {
                        if wrapped {
                            kind_here.to_string()
                        } else {
                            kind(k)
                        }
                    });
                    // a wrapped list is what a create answered with only when nothing else was
                    let cw = if wrapped && me.is_none() {
                        created_with
                    } else {
                        None
                    };
                    let i = self.walk(doc, sub, x, &k2, who, cw, depth + 1);
                    first = first.or(i);
                }
                first
            }
            _ => None,
        }
    }

    fn add(
        &mut self,
        kind: &str,
        fields: Map<String, Value>,
        who: Who,
        created_with: Option<&str>,
    ) -> usize {
        let key = primary(&fields);
        let same = self.objs.iter().position(|o| {
            o.kind == kind
                && key
                    .as_ref()
                    .is_some_and(|(k, v)| o.fields.get(k) == Some(v))
        });
        let i = match same {
            Some(i) => {
                if let Some(o) = self.objs.get_mut(i) {
                    for (k, v) in fields {
                        o.fields.insert(k, v);
                    }
                }
                i
            }
            None => {
                self.objs.push(Obj {
                    kind: kind.to_string(),
                    original: fields.clone(),
                    fields,
                    seen_by: BTreeSet::new(),
                    created_by: None,
                    created_with: None,
                    deleted: false,
                });
                self.objs.len() - 1
            }
        };
        if let Some(o) = self.objs.get_mut(i) {
            o.seen_by.insert(who);
            // an object that was there before was found (a lookup), not made
            if let (Some(op), None) = (created_with, same) {
                o.created_by = Some(who);
                o.created_with = Some(op.to_string());
            }
        }
        i
    }

    /// Whether `who` owns object `i`: it made it, or the object names it (an owner field
    /// holding one of its ids), or only it has seen it.
    pub fn owns(&self, i: usize, who: Who) -> bool {
        let Some(o) = self.objs.get(i) else {
            return false;
        };
        if let Some(c) = o.created_by {
            return c == who;
        }
        let named: BTreeSet<Who> = self
            .ids
            .iter()
            .filter(|(_, id)| {
                o.fields
                    .iter()
                    .any(|(k, v)| match (v, id.strip_prefix('#')) {
                        (Value::String(s), None) => s == id,
                        (Value::Number(n), Some(num)) => n.to_string() == num && is_owner_field(k),
                        _ => false,
                    })
            })
            .map(|(w, _)| *w)
            .collect();
        if !named.is_empty() {
            return named.len() == 1 && named.contains(&who);
        }
        o.seen_by.len() == 1 && o.seen_by.contains(&who)
    }

    /// The objects of this kind that `who` owns, most recent first.
    pub fn owned(&self, who: Who) -> Vec<usize> {
        (0..self.objs.len())
            .rev()
            .filter(|&i| self.owns(i, who) && !self.objs.get(i).is_some_and(|o| o.deleted))
            .collect()
    }

    /// A value for an input called `name` of an operation on `path_kind`, taken from an
    /// object: `target` first when its kind fits, then one `who` owns, then one it saw.
    pub fn bind(
        &self,
        name: &str,
        path_kind: &str,
        who: Who,
        target: Option<usize>,
    ) -> Option<(Value, usize)> {
        let w = names::words(name);
        let (kind_wanted, fields): (String, Vec<String>) = match w.split_last() {
            Some((last, rest)) if !rest.is_empty() && is_key(name) => (
                kind(&rest.join("")),
                vec![name.to_string(), last.clone(), "id".into()],
            ),
            _ if matches!(w.as_slice(), [x] if x == "username" || x == "email" || x == "login") => {
                ("user".into(), vec![name.to_string()])
            }
            _ => (path_kind.to_string(), vec![name.to_string()]),
        };
        let usable = |i: usize| self.objs.get(i).filter(|o| !o.deleted);
        let pick = |i: usize, exact_kind: bool| -> Option<(Value, usize)> {
            let o = usable(i)?;
            if exact_kind && o.kind != kind_wanted {
                return None;
            }
            let candidates: Vec<&String> = if exact_kind {
                fields.iter().collect()
            } else {
                fields.iter().take(1).collect()
            };
            candidates
                .iter()
                .find_map(|f| o.fields.get(f.as_str()).cloned())
                // an `orderId` names an order by its own key, whatever that key is called
                .or_else(|| {
                    (exact_kind && names::words(name).len() > 1)
                        .then(|| primary(&o.fields).map(|(_, v)| v))
                        .flatten()
                })
                .filter(|v| !v.is_null())
                .map(|v| (v, i))
        };
        let order: Vec<usize> = target
            .into_iter()
            .chain(self.owned(who))
            .chain(
                (0..self.objs.len())
                    .rev()
                    .filter(|&i| self.objs.get(i).is_some_and(|o| o.seen_by.contains(&who))),
            )
            .collect();
        order
            .iter()
            .find_map(|&i| pick(i, true))
            .or_else(|| order.iter().find_map(|&i| pick(i, false)))
    }

    /// The object a request writes to: the one its path names, or the caller's own account
    /// for a `/me`-like path.
    pub fn written(&self, path: &str, path_values: &[String], who: Who) -> Option<usize> {
        if is_self_path(path) {
            let (k, v) = primary(self.me(who)?)?;
            return self
                .objs
                .iter()
                .position(|o| o.created_by.is_none() && o.fields.get(&k) == Some(&v));
        }
        let kind = path_kind(path);
        self.objs.iter().rposition(|o| {
            o.kind == kind
                && o.fields.values().any(|v| {
                    let t = match v {
                        Value::String(s) => s.clone(),
                        x => x.to_string(),
                    };
                    path_values.contains(&t)
                })
        })
    }

    /// The kind an operation's path is about, with `/me`-like paths read as the account kind.
    pub fn kind_of(&self, path: &str) -> String {
        match (&self.self_kind, is_self_path(path)) {
            (Some(k), true) => k.clone(),
            _ => path_kind(path),
        }
    }

    /// The account fields of `who`, if the scan saw them.
    pub fn me(&self, who: Who) -> Option<&Map<String, Value>> {
        self.me.iter().find(|(w, _)| *w == who).map(|(_, m)| m)
    }
}

/// The field that identifies an object, and its value: a stable key first (`id`, `uuid`,
/// `username`, `slug`…), then any `…Id`, then other key-like names.
fn primary(fields: &Map<String, Value>) -> Option<(String, Value)> {
    const STABLE: [&str; 12] = [
        "id", "pk", "uuid", "guid", "username", "login", "slug", "handle", "key", "code", "number",
        "email",
    ];
    let found = |k: &str| {
        fields
            .get(k)
            .filter(|v| !v.is_null())
            .map(|v| (k.to_string(), v.clone()))
    };
    STABLE
        .iter()
        .find_map(|k| found(k))
        .or_else(|| {
            fields
                .iter()
                .find(|(k, v)| {
                    !v.is_null()
                        && names::words(k)
                            .last()
                            .is_some_and(|w| w == "id" || w == "number")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
        })
        .or_else(|| {
            fields
                .iter()
                .find(|(k, v)| is_key(k) && !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_and_paths() {
        assert_eq!(kind("orders"), "order");
        assert_eq!(kind("categories"), "category");
        assert_eq!(kind("addresses"), "address");
        assert_eq!(kind("OrderItems"), "orderitem");
        assert_eq!(path_kind("/orders/{orderId}/refund"), "order");
        assert_eq!(path_kind("/api/v1/shops/{shop}/products"), "product");
        assert_eq!(path_kind("/me"), "user");
        assert!(is_self_path("/users/me"));
        assert!(is_self_path("/account"));
        assert!(!is_self_path("/accounts"));
        assert_eq!(path_kind("/accounts/{username}/role"), "account");
    }

    #[test]
    fn objects_are_bound_by_name_and_owner() {
        let doc = json!({});
        let mut g = Graph::default();
        g.identify(Who::A, "alice");
        g.identify(Who::B, "bob");
        g.learn(&doc, "/orders", None, &json!({"orders": [{"id": "ord_1", "customer": "alice"}, {"id": "ord_2", "customer": "bob"}]}), Who::A, None);
        g.learn(
            &doc,
            "/invoices",
            None,
            &json!([{"invoiceNumber": "INV-9", "total": 3}]),
            Who::A,
            None,
        );
        let (v, _) = g.bind("orderId", "order", Who::A, None).unwrap();
        assert_eq!(v, "ord_1", "A's own order, named in the data");
        let (v, _) = g.bind("orderId", "order", Who::B, None).unwrap();
        assert_eq!(v, "ord_2");
        let (v, _) = g.bind("id", "order", Who::A, None).unwrap();
        assert_eq!(v, "ord_1");
        let (v, _) = g.bind("invoiceNumber", "payment", Who::A, None).unwrap();
        assert_eq!(v, "INV-9", "a key in a body, found by its own name");
        assert!(g.bind("shipmentId", "shipment", Who::A, None).is_none());
    }
}
