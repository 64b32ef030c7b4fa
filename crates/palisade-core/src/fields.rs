//! The named fields of a request body, JSON or form-encoded, read once per exchange: what
//! `request_fields`, a rate-limit key from the body and `ownership` look at.

use std::sync::Arc;

use serde_json::Value;

use crate::{Exchange, RequestHead};

/// The fields of a request body.
#[derive(Debug, Clone)]
pub enum BodyFields {
    /// A JSON body (parsed once, shared through [`Exchange::json_body`]).
    Json(Arc<Value>),
    /// An `application/x-www-form-urlencoded` body.
    Form(Vec<(String, String)>),
    /// No body, or one of another media type (fields are not looked for there).
    Other,
}

/// Why a body's fields could not be read: the body claims a type it does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable(pub &'static str);

fn media_type(head: &RequestHead) -> String {
    head.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Reads the fields of `body`. A JSON or form body that does not parse is [`Unreadable`]:
/// a caller that needs its fields must refuse it rather than guess.
pub fn read(head: &RequestHead, body: &[u8], x: &mut Exchange) -> Result<BodyFields, Unreadable> {
    if body.is_empty() {
        return Ok(BodyFields::Other);
    }
    let mt = media_type(head);
    if mt == "application/json" || mt.ends_with("+json") {
        if let Some(v) = &x.json_body {
            return Ok(BodyFields::Json(v.clone()));
        }
        let v = Arc::new(
            crate::json::parse(body).map_err(|_| Unreadable("the JSON body cannot be read"))?,
        );
        x.json_body = Some(v.clone());
        return Ok(BodyFields::Json(v));
    }
    if mt == "application/x-www-form-urlencoded" {
        return crate::form::urlencoded(body)
            .map(BodyFields::Form)
            .map_err(|_| Unreadable("the form body cannot be read"));
    }
    if mt == "multipart/form-data" {
        let ct = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let boundary =
            crate::form::boundary(ct).ok_or(Unreadable("the multipart body has no boundary"))?;
        let parts = crate::form::multipart(body, &boundary)
            .map_err(|_| Unreadable("the multipart body cannot be read"))?;
        return Ok(BodyFields::Form(
            parts
                .into_iter()
                .map(|p| {
                    let text = if p.filename.is_none() && p.is_text() {
                        String::from_utf8_lossy(p.data).into_owned()
                    } else {
                        String::new()
                    };
                    (p.name, text)
                })
                .collect(),
        ));
    }
    Ok(BodyFields::Other)
}

/// A scalar as text: strings as they are, numbers and booleans printed.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl BodyFields {
    /// The value of a field named by a dotted path (`user.email`; a form has flat names), as
    /// text; the first value of a repeated form field.
    pub fn text(&self, path: &str) -> Option<String> {
        match self {
            BodyFields::Json(v) => {
                let mut at: &Value = v;
                for seg in path.split('.') {
                    at = match at {
                        Value::Object(m) => m.get(seg)?,
                        Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                        _ => return None,
                    };
                }
                scalar_text(at)
            }
            BodyFields::Form(f) => f.iter().find(|(k, _)| k == path).map(|(_, v)| v.clone()),
            BodyFields::Other => None,
        }
    }

    /// Whether a field named by a dotted path is present (whatever its value).
    pub fn has(&self, path: &str) -> bool {
        match self {
            BodyFields::Json(v) => {
                let mut at: &Value = v;
                for seg in path.split('.') {
                    at = match at {
                        Value::Object(m) => match m.get(seg) {
                            Some(x) => x,
                            None => return false,
                        },
                        _ => return false,
                    };
                }
                true
            }
            BodyFields::Form(f) => f.iter().any(|(k, _)| k == path),
            BodyFields::Other => false,
        }
    }

    /// The top-level field names (a JSON object's keys, a form's names); none for a JSON
    /// body that is not an object.
    pub fn names(&self) -> Vec<&str> {
        match self {
            BodyFields::Json(v) => v
                .as_object()
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default(),
            BodyFields::Form(f) => f.iter().map(|(k, _)| k.as_str()).collect(),
            BodyFields::Other => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(ct: &str) -> RequestHead {
        let (p, ()) = http::Request::builder()
            .header("content-type", ct)
            .body(())
            .unwrap()
            .into_parts();
        p
    }

    fn x() -> Exchange {
        let a: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        Exchange::new("r".into(), a, a.ip(), false)
    }

    #[test]
    fn json_and_form_fields_by_name() {
        let mut ex = x();
        let f = read(
            &head("application/json; charset=utf-8"),
            br#"{"user":{"email":"a@b.c"},"n":3,"ok":true}"#,
            &mut ex,
        )
        .unwrap();
        assert_eq!(f.text("user.email").as_deref(), Some("a@b.c"));
        assert_eq!(f.text("n").as_deref(), Some("3"));
        assert_eq!(f.text("ok").as_deref(), Some("true"));
        assert_eq!(f.text("user").as_deref(), None);
        assert_eq!(f.names(), vec!["n", "ok", "user"]);
        assert!(ex.json_body.is_some(), "the parse is shared");
        let f = read(
            &head("application/x-www-form-urlencoded"),
            b"email=a%40b.c&email=x&is_staff=1",
            &mut x(),
        )
        .unwrap();
        assert_eq!(f.text("email").as_deref(), Some("a@b.c"));
        assert_eq!(f.names(), vec!["email", "email", "is_staff"]);
    }

    #[test]
    fn a_body_that_lies_about_its_type_is_unreadable() {
        assert!(read(&head("application/json"), b"{\"a\":", &mut x()).is_err());
        let deep = "[".repeat(100);
        assert!(read(&head("application/json"), deep.as_bytes(), &mut x()).is_err());
        assert!(matches!(
            read(&head("text/plain"), b"hello", &mut x()).unwrap(),
            BodyFields::Other
        ));
        assert!(matches!(
            read(&head("application/json"), b"", &mut x()).unwrap(),
            BodyFields::Other
        ));
    }
}
