//! A small YAML writer for the patches section: block mappings and lists, strings always
//! double-quoted (JSON escapes are valid YAML), lists of scalars on one line.

use std::fmt::Write as _;

use serde_json::Value;

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// Keys written first, in this order, wherever they appear: a patch reads from what it
/// answers to what it adds, a policy from its type.
const FIRST: &[&str] = &[
    "type",
    "name",
    "answers",
    "reason",
    "route",
    "operation",
    "match",
    "upstream",
    "public",
    "mode",
];

/// Writes the members of `m` at `indent`, the first one after `first` (a list dash) when given.
pub fn mapping(
    out: &mut String,
    m: &serde_json::Map<String, Value>,
    indent: usize,
    first: Option<&str>,
) {
    let mut members: Vec<(&String, &Value)> = m.iter().collect();
    members.sort_by_key(|(k, _)| FIRST.iter().position(|f| f == k).unwrap_or(FIRST.len()));
    for (i, (k, v)) in members.into_iter().enumerate() {
        match (i, first) {
            (0, Some(lead)) => out.push_str(lead),
            _ => out.push_str(&" ".repeat(indent)),
        }
        out.push_str(k);
        out.push(':');
        value(out, v, indent);
    }
}

fn value(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if m.is_empty() => out.push_str(" {}\n"),
        Value::Object(m) => {
            out.push('\n');
            mapping(out, m, indent + 2, None);
        }
        Value::Array(a) if a.iter().all(is_scalar) => {
            let items: Vec<String> = a.iter().map(scalar).collect();
            let _ = writeln!(out, " [{}]", items.join(", "));
        }
        Value::Array(a) => {
            out.push('\n');
            for x in a {
                let lead = format!("{}- ", " ".repeat(indent + 2));
                match x {
                    Value::Object(m) if !m.is_empty() => mapping(out, m, indent + 4, Some(&lead)),
                    other => {
                        out.push_str(&lead);
                        out.push_str(&scalar(other));
                        out.push('\n');
                    }
                }
            }
        }
        s => {
            out.push(' ');
            out.push_str(&scalar(s));
            out.push('\n');
        }
    }
}

/// A comment block: each line prefixed by `#` at `indent`.
pub fn comment(out: &mut String, text: &str, indent: usize) {
    for line in text.lines() {
        let _ = writeln!(out, "{}# {}", " ".repeat(indent), line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_it_writes_reads_back_the_same() {
        let v = serde_json::json!({
            "patches": [
                {"answers": "a: \"quoted\" {x}", "route": "api", "policies": [
                    {"type": "threat", "classes": ["sqli", "xss"]},
                    {"type": "headers", "response": {"set": {"cache-control": "no-store"}, "secure_defaults": false}},
                    {"type": "rate_limit", "limits": [{"requests": 10, "per": "1s"}], "key": ["body:email"]}
                ]},
                {"answers": "b", "empty": {}, "n": null}
            ]
        });
        let mut out = String::new();
        mapping(&mut out, v.as_object().unwrap(), 0, None);
        let back = palisade_core::yaml::parse(&out).unwrap().value;
        assert_eq!(back, v, "{out}");
    }
}
