//! A request of the scan as parts (path parameters, query, headers, cookies, body), so that
//! one input at a time can be replaced by a probe while the rest stays valid.

use serde_json::Value;

use crate::schema;

/// Where an input is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Loc {
    /// A path parameter.
    Path(String),
    /// A query parameter.
    Query(String),
    /// A request header.
    Header(String),
    /// A cookie.
    Cookie(String),
    /// A field of a JSON body, by JSON pointer.
    Json(String),
    /// A field of a form body.
    Form(String),
}

impl Loc {
    /// How reports name it: `query q`, `body /shipping/city`.
    pub fn describe(&self) -> String {
        match self {
            Loc::Path(n) => format!("path parameter {n}"),
            Loc::Query(n) => format!("query parameter {n}"),
            Loc::Header(n) => format!("header {n}"),
            Loc::Cookie(n) => format!("cookie {n}"),
            Loc::Json(p) => format!("body field {p}"),
            Loc::Form(n) => format!("form field {n}"),
        }
    }

    /// The input's own name (a JSON field's last token).
    pub fn name(&self) -> String {
        match self {
            Loc::Path(n) | Loc::Query(n) | Loc::Header(n) | Loc::Cookie(n) | Loc::Form(n) => {
                n.clone()
            }
            Loc::Json(p) => schema::field_name(p),
        }
    }
}

/// The body of a request.
#[derive(Debug, Clone)]
pub enum Body {
    /// None.
    None,
    /// JSON.
    Json(Value),
    /// `application/x-www-form-urlencoded`.
    Form(Vec<(String, String)>),
    /// Bytes sent as they are, with their content type (a malformed body).
    Raw(String, String),
}

/// A request before it is written.
#[derive(Debug, Clone)]
pub struct Req {
    /// Upper-case method.
    pub method: String,
    /// The path template of the operation (`/orders/{orderId}`).
    pub template: String,
    /// Path parameters.
    pub path: Vec<(String, String)>,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// Headers (besides credentials).
    pub headers: Vec<(String, String)>,
    /// Cookies.
    pub cookies: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

/// Percent-encodes everything but the unreserved characters (RFC 3986).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Req {
    /// `GET /orders/{orderId}` as the description names it.
    pub fn operation(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    /// The path and query, encoded.
    pub fn target(&self) -> String {
        let mut p = self.template.clone();
        for (k, v) in &self.path {
            p = p.replace(&format!("{{{k}}}"), &encode(v));
        }
        if !self.query.is_empty() {
            let q: Vec<String> = self
                .query
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            p.push('?');
            p.push_str(&q.join("&"));
        }
        p
    }

    /// Headers to send: the request's own and its cookies.
    pub fn header_list(&self) -> Vec<(String, String)> {
        let mut h = self.headers.clone();
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect();
            h.push(("cookie".into(), c.join("; ")));
        }
        h
    }

    /// The body as (content type, text).
    pub fn body_text(&self) -> Option<(String, String)> {
        match &self.body {
            Body::None => None,
            Body::Json(v) => Some(("application/json".into(), v.to_string())),
            Body::Form(f) => {
                let t: Vec<String> = f
                    .iter()
                    .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                    .collect();
                Some(("application/x-www-form-urlencoded".into(), t.join("&")))
            }
            Body::Raw(ct, t) => Some((ct.clone(), t.clone())),
        }
    }

    /// Every input that a probe can replace, with its current value.
    pub fn inputs(&self) -> Vec<(Loc, Value)> {
        let mut out: Vec<(Loc, Value)> = Vec::new();
        let s = |v: &String| Value::String(v.clone());
        out.extend(self.path.iter().map(|(k, v)| (Loc::Path(k.clone()), s(v))));
        out.extend(
            self.query
                .iter()
                .map(|(k, v)| (Loc::Query(k.clone()), s(v))),
        );
        out.extend(
            self.headers
                .iter()
                .map(|(k, v)| (Loc::Header(k.clone()), s(v))),
        );
        out.extend(
            self.cookies
                .iter()
                .map(|(k, v)| (Loc::Cookie(k.clone()), s(v))),
        );
        match &self.body {
            Body::Json(v) => {
                for p in schema::leaves(v, 64) {
                    if let Some(x) = v.pointer(&p) {
                        out.push((Loc::Json(p.clone()), x.clone()));
                    }
                }
            }
            Body::Form(f) => out.extend(f.iter().map(|(k, v)| (Loc::Form(k.clone()), s(v)))),
            Body::None | Body::Raw(..) => {}
        }
        out
    }

    /// The value at an input.
    pub fn get(&self, loc: &Loc) -> Option<Value> {
        self.inputs()
            .into_iter()
            .find(|(l, _)| l == loc)
            .map(|(_, v)| v)
    }

    /// This request with the input at `loc` set to `v` (added when absent).
    pub fn with(&self, loc: &Loc, v: Value) -> Req {
        let mut r = self.clone();
        let put =
            |list: &mut Vec<(String, String)>, k: &str| match list.iter_mut().find(|(n, _)| n == k)
            {
                Some(e) => e.1 = text(&v),
                None => list.push((k.to_string(), text(&v))),
            };
        match loc {
            Loc::Path(k) => put(&mut r.path, k),
            Loc::Query(k) => put(&mut r.query, k),
            Loc::Header(k) => put(&mut r.headers, k),
            Loc::Cookie(k) => put(&mut r.cookies, k),
            Loc::Form(k) => {
                if let Body::Form(f) = &mut r.body {
                    put(f, k);
                }
            }
            Loc::Json(p) => {
                if let Body::Json(b) = &mut r.body {
                    if p.is_empty() {
                        *b = v;
                    } else if let Some(slot) = b.pointer_mut(p) {
                        *slot = v;
                    } else if let Some((parent, _)) = p.rsplit_once('/') {
                        let name = schema::field_name(p);
                        let target = if parent.is_empty() {
                            Some(&mut *b)
                        } else {
                            b.pointer_mut(parent)
                        };
                        if let Some(Value::Object(m)) = target {
                            m.insert(name, v);
                        }
                    }
                }
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inputs_are_replaced_one_at_a_time() {
        let r = Req {
            method: "POST".into(),
            template: "/shops/{shop}/orders".into(),
            path: vec![("shop".into(), "a b".into())],
            query: vec![("dry".into(), "1".into())],
            headers: vec![("x-tenant".into(), "t1".into())],
            cookies: vec![("pref".into(), "eu".into())],
            body: Body::Json(json!({"item": "x", "shipping": {"city": "Lyon"}})),
        };
        assert_eq!(r.target(), "/shops/a%20b/orders?dry=1");
        let locs: Vec<String> = r.inputs().iter().map(|(l, _)| l.describe()).collect();
        assert_eq!(locs.len(), 6, "{locs:?}");
        let p = r.with(&Loc::Json("/shipping/city".into()), json!("' OR 1=1"));
        assert_eq!(
            p.body_text().unwrap().1,
            r#"{"item":"x","shipping":{"city":"' OR 1=1"}}"#
        );
        let p = r.with(&Loc::Json("/role".into()), json!("admin"));
        assert!(p.body_text().unwrap().1.contains(r#""role":"admin""#));
        let p = r.with(&Loc::Cookie("pref".into()), json!("x;y"));
        assert!(p
            .header_list()
            .contains(&("cookie".into(), "pref=x%3By".into())));
    }
}
