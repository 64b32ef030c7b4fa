//! Valid values from a schema, so that a request reaches the code behind it before one of its
//! inputs is poisoned: the description's own examples, defaults and enums first, then a value
//! of the right type and format within the declared bounds.

use palisade_audit::names;
use palisade_audit::spec::deref;
use serde_json::{json, Map, Value};

/// The scanner's marker in the values it makes up, so that its objects can be told apart.
pub const MARK: &str = "palisade-scan";

/// The merged view of an object schema: its properties (through `allOf`, and the first
/// `oneOf`/`anyOf` branch), which are required, and the schema of each.
pub fn properties(doc: &Value, schema: &Value) -> Vec<(String, Value, bool)> {
    let mut out: Vec<(String, Value, bool)> = Vec::new();
    collect(doc, schema, &mut out, 0);
    out
}

fn collect(doc: &Value, schema: &Value, out: &mut Vec<(String, Value, bool)>, depth: usize) {
    if depth > 8 {
        return;
    }
    let s = deref(doc, schema);
    let required: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let v = deref(doc, v).clone();
            match out.iter_mut().find(|(n, _, _)| n == k) {
                Some(e) => e.2 |= required.contains(&k.as_str()),
                None => out.push((k.clone(), v, required.contains(&k.as_str()))),
            }
        }
    }
    for key in ["allOf"] {
        for sub in s.get(key).and_then(Value::as_array).into_iter().flatten() {
            collect(doc, sub, out, depth + 1);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(first) = s.get(key).and_then(Value::as_array).and_then(|a| a.first()) {
            collect(doc, first, out, depth + 1);
        }
    }
}

/// The first type of a schema (`type: [string, "null"]` gives `string`), guessed from its
/// keywords when it has none.
pub fn type_of(doc: &Value, schema: &Value) -> String {
    let s = deref(doc, schema);
    match s.get("type") {
        Some(Value::String(t)) => return t.clone(),
        Some(Value::Array(a)) => {
            if let Some(t) = a.iter().filter_map(Value::as_str).find(|t| *t != "null") {
                return t.to_string();
            }
        }
        _ => {}
    }
    if s.get("properties").is_some() || s.get("allOf").is_some() {
        "object".into()
    } else if s.get("items").is_some() {
        "array".into()
    } else if let Some(first) = ["oneOf", "anyOf"]
        .iter()
        .find_map(|k| s.get(*k).and_then(Value::as_array).and_then(|a| a.first()))
    {
        type_of(doc, first)
    } else {
        String::new()
    }
}

/// Whether a property is read-only (the server sets it).
pub fn read_only(schema: &Value) -> bool {
    schema.get("readOnly") == Some(&Value::Bool(true))
}

/// A valid value for `schema`, for a field called `name` (its name is a hint when the schema
/// says little). `salt` varies the strings so that two objects made by the scan differ.
pub fn value(doc: &Value, schema: &Value, name: &str, salt: u32) -> Value {
    make(doc, schema, name, salt, 0)
}

fn make(doc: &Value, schema: &Value, name: &str, salt: u32, depth: usize) -> Value {
    let s = deref(doc, schema);
    if let Some(v) = s.get("example") {
        return v.clone();
    }
    if let Some(v) = s
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return v.clone();
    }
    if let Some(v) = s.get("default").or_else(|| s.get("const")) {
        return v.clone();
    }
    if let Some(v) = s
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    {
        return v.clone();
    }
    if depth > 8 {
        return Value::Null;
    }
    match type_of(doc, s).as_str() {
        "object" => {
            let mut m = Map::new();
            for (k, v, _) in properties(doc, s) {
                if !read_only(&v) {
                    m.insert(k.clone(), make(doc, &v, &k, salt, depth + 1));
                }
            }
            Value::Object(m)
        }
        "array" => {
            let items = s.get("items").cloned().unwrap_or(Value::Null);
            let n = s
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 4);
            Value::Array(
                (0..n)
                    .map(|i| make(doc, &items, name, salt + i as u32, depth + 1))
                    .collect(),
            )
        }
        "integer" => json!(number(s, 1.0).round() as i64),
        "number" => json!(number(s, 1.5)),
        "boolean" => json!(false),
        _ => Value::String(string(s, name, salt)),
    }
}

fn number(s: &Value, fallback: f64) -> f64 {
    let min = s.get("minimum").and_then(Value::as_f64);
    let max = s.get("maximum").and_then(Value::as_f64);
    let mut v = fallback;
    if let Some(m) = min {
        v = v.max(m + f64::from(u8::from(s.get("exclusiveMinimum") == Some(&json!(true)))));
    }
    if let Some(m) = s.get("exclusiveMinimum").and_then(Value::as_f64) {
        v = v.max(m + 1.0);
    }
    if let Some(m) = max {
        v = v.min(m);
    }
    v
}

fn string(s: &Value, name: &str, salt: u32) -> String {
    let format = s.get("format").and_then(Value::as_str).unwrap_or("");
    let words = names::words(name);
    let has = |w: &str| words.iter().any(|x| x == w);
    let v = match format {
        "email" => format!("{MARK}+{salt}@example.com"),
        "uri" | "url" | "iri" | "uri-reference" => "https://example.com/".to_string(),
        "uuid" => format!("5ca11ab1-0000-4000-8000-{salt:012}"),
        "date" => "2026-01-01".into(),
        "date-time" => "2026-01-01T00:00:00Z".into(),
        "time" => "12:00:00".into(),
        "password" => "Palisade-scan-1!".into(),
        "ipv4" => "192.0.2.1".into(),
        "ipv6" => "2001:db8::1".into(),
        "hostname" => "example.com".into(),
        "byte" => "cGFsaXNhZGU=".into(),
        _ if has("email") => format!("{MARK}+{salt}@example.com"),
        _ if names::takes_url(name, s) => "https://example.com/".into(),
        _ if has("phone") => "+15555550100".into(),
        _ if has("password") => "Palisade-scan-1!".into(),
        _ => format!("{MARK}-{salt}"),
    };
    let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max = s
        .get("maxLength")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |m| m as usize);
    let mut v = v;
    while v.chars().count() < min {
        v.push('x');
    }
    if v.chars().count() > max {
        v = v.chars().take(max).collect();
    }
    v
}

/// The leaves of a JSON value that a probe can replace (strings, numbers, booleans), as JSON
/// pointers, depth first, at most `limit`.
pub fn leaves(v: &Value, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, at: &str, out: &mut Vec<String>, limit: usize, depth: usize) {
        if out.len() >= limit || depth > 16 {
            return;
        }
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    walk(
                        x,
                        &format!("{at}/{}", palisade_audit::spec::esc(k)),
                        out,
                        limit,
                        depth + 1,
                    );
                }
            }
            Value::Array(a) => {
                if let Some(x) = a.first() {
                    walk(x, &format!("{at}/0"), out, limit, depth + 1);
                }
            }
            Value::Null => {}
            _ => out.push(at.to_string()),
        }
    }
    walk(v, "", &mut out, limit, 0);
    out
}

/// The last token of a JSON pointer, unescaped: the field's name.
pub fn field_name(pointer: &str) -> String {
    let last = pointer.rsplit('/').next().unwrap_or("");
    last.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_examples_formats_and_bounds() {
        let doc = json!({"components": {"schemas": {"Addr": {"type": "object", "required": ["city"],
            "properties": {"city": {"type": "string", "example": "Lyon"}, "zip": {"type": "string", "maxLength": 5}}}}}});
        let s = json!({"type": "object", "properties": {
            "email": {"type": "string", "format": "email"},
            "qty": {"type": "integer", "minimum": 3, "maximum": 9},
            "kind": {"type": "string", "enum": ["gift", "plain"]},
            "id": {"type": "string", "readOnly": true},
            "avatar_url": {"type": "string"},
            "address": {"$ref": "#/components/schemas/Addr"},
            "tags": {"type": "array", "items": {"type": "string", "minLength": 20}}}});
        let v = value(&doc, &s, "", 7);
        assert_eq!(v["email"], "palisade-scan+7@example.com");
        assert_eq!(v["qty"], 3);
        assert_eq!(v["kind"], "gift");
        assert!(v.get("id").is_none(), "read-only properties are not sent");
        assert_eq!(v["avatar_url"], "https://example.com/");
        assert_eq!(v["address"]["city"], "Lyon");
        assert_eq!(v["address"]["zip"].as_str().map(str::len), Some(5));
        assert!(v["tags"][0].as_str().is_some_and(|t| t.len() >= 20));
        let l = leaves(&v, 64);
        assert!(l.contains(&"/address/city".to_string()), "{l:?}");
        assert!(l.contains(&"/tags/0".to_string()), "{l:?}");
        assert_eq!(field_name("/address/city"), "city");
    }
}
