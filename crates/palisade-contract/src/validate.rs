//! JSON limits checked on the raw bytes before a value tree is built, and JSON Schema
//! validation (the subset OpenAPI 3.0 and 3.1 use) of request values. Errors name the field
//! and the rule, never the value.

use serde_json::Value;

use palisade_audit::spec::deref;

/// Structural limits of a JSON document.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of arrays and objects.
    pub max_depth: usize,
    /// Most keys in one object.
    pub max_keys: usize,
    /// Most items in one array.
    pub max_items: usize,
    /// Longest string (bytes, as written).
    pub max_string: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 32,
            max_keys: 1000,
            max_items: 10_000,
            max_string: 64 * 1024,
        }
    }
}

/// Scans raw JSON for the limits, without allocating per value: one pass, a stack of counters.
pub fn check_limits(raw: &[u8], l: &Limits) -> Result<(), String> {
    // (is_object, keys or commas so far) per open container
    let mut stack: Vec<(bool, usize)> = Vec::new();
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'"' => {
                let start = i;
                i += 1;
                while let Some(&c) = raw.get(i) {
                    match c {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                if i - start - 1 > l.max_string {
                    return Err(format!("a string is longer than {} bytes", l.max_string));
                }
            }
            b'{' | b'[' => {
                // items are counted by their separators: n items, n - 1 commas
                stack.push((b == b'{', 0));
                if stack.len() > l.max_depth {
                    return Err(format!("nesting is deeper than {}", l.max_depth));
                }
            }
            b'}' | b']' => {
                stack.pop();
            }
            b':' => {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                    if top.1 > l.max_keys {
                        return Err(format!("an object has more than {} keys", l.max_keys));
                    }
                }
            }
            b',' => {
                if let Some(top) = stack.last_mut() {
                    if !top.0 {
                        top.1 += 1;
                        if top.1 >= l.max_items {
                            return Err(format!("an array has more than {} items", l.max_items));
                        }
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// What validation is asked to do beyond the schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// A missing `additionalProperties` means false.
    pub strict: bool,
    /// The value is a request: `readOnly` properties are refused.
    pub request: bool,
}

fn types(s: &Value) -> Vec<&str> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn format_ok(format: &str, s: &str) -> bool {
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    match format {
        "uuid" => {
            let parts: Vec<&str> = s.split('-').collect();
            parts.len() == 5
                && [8, 4, 4, 4, 12]
                    .iter()
                    .zip(&parts)
                    .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_hexdigit()))
        }
        "date" => {
            let p: Vec<&str> = s.split('-').collect();
            p.len() == 3
                && p.first().is_some_and(|y| y.len() == 4 && digits(y))
                && p.get(1).is_some_and(|m| m.len() == 2 && digits(m))
                && p.get(2).is_some_and(|d| d.len() == 2 && digits(d))
        }
        "date-time" => {
            s.len() >= 20
                && s.get(..10).is_some_and(|d| format_ok("date", d))
                && matches!(s.as_bytes().get(10), Some(b'T' | b't'))
        }
        "email" => s.split_once('@').is_some_and(|(a, d)| {
            !a.is_empty()
                && d.contains('.')
                && !d.starts_with('.')
                && !s.contains(char::is_whitespace)
        }),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    }
}

/// Compiled `pattern`s, by source. The description is the only source of patterns, so the
/// cache is bounded by it; Rust's regex engine runs in linear time, so no pattern can be made
/// to backtrack for ever on attacker input.
static PATTERNS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, Option<regex::Regex>>>,
> = std::sync::LazyLock::new(Default::default);

/// Whether `x` matches the ECMA-262 `pattern` (unanchored, as JSON Schema says); `None` when
/// the pattern uses syntax this engine does not have (look-around, back-references): such a
/// pattern is not enforced rather than refusing every value.
fn pattern_ok(pattern: &str, x: &str) -> Option<bool> {
    let re = {
        let mut cache = PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(pattern.to_string())
            .or_insert_with(|| {
                regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .build()
                    .ok()
            })
            .clone()
    };
    re.map(|r| r.is_match(x))
}

/// Validates `v` against `schema` (refs resolved against `doc`); returns the first problem as
/// `path: rule`.
pub fn validate(
    doc: &Value,
    schema: &Value,
    v: &Value,
    path: &str,
    mode: Mode,
) -> Result<(), String> {
    validate_at(doc, schema, v, path, mode, 0)
}

fn validate_at(
    doc: &Value,
    schema: &Value,
    v: &Value,
    path: &str,
    mode: Mode,
    depth: usize,
) -> Result<(), String> {
    if depth > 64 {
        return Err(format!("{path}: the schema nests too deeply"));
    }
    let s = deref(doc, schema);
    let err = |m: String| Err(format!("{path}: {m}"));
    if v.is_null() && s.get("nullable") == Some(&Value::Bool(true)) {
        return Ok(());
    }
    let ts = types(s);
    if !ts.is_empty() && !ts.iter().any(|t| type_ok(t, v)) {
        return err(format!("must be {}", ts.join(" or ")));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return err("is not one of the allowed values".into());
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            return err("is not the allowed value".into());
        }
    }
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate_at(doc, sub, v, path, mode, depth + 1)?;
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s.get(key).and_then(Value::as_array) {
            if !alts
                .iter()
                .any(|a| validate_at(doc, a, v, path, mode, depth + 1).is_ok())
            {
                return err("matches none of the allowed shapes".into());
            }
        }
    }
    match v {
        Value::String(x) => {
            let n = x.chars().count();
            if s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| n as u64 > m)
            {
                return err("is too long".into());
            }
            if s.get("minLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| (n as u64) < m)
            {
                return err("is too short".into());
            }
            if let Some(f) = s.get("format").and_then(Value::as_str) {
                if !format_ok(f, x) {
                    return err(format!("is not a valid {f}"));
                }
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                if pattern_ok(p, x) == Some(false) {
                    return err("does not match the required pattern".into());
                }
            }
        }
        Value::Number(x) => {
            let f = x.as_f64().unwrap_or(0.0);
            if s.get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| f > m)
            {
                return err("is too large".into());
            }
            if s.get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| f < m)
            {
                return err("is too small".into());
            }
            if s.get("exclusiveMaximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| f >= m)
            {
                return err("is too large".into());
            }
            if s.get("exclusiveMinimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| f <= m)
            {
                return err("is too small".into());
            }
            match s.get("format").and_then(Value::as_str) {
                Some("int32") if !(f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX)) => {
                    return err("is out of the int32 range".into())
                }
                _ => {}
            }
        }
        Value::Array(items) => {
            if s.get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| items.len() as u64 > m)
            {
                return err("has too many items".into());
            }
            if s.get("minItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| (items.len() as u64) < m)
            {
                return err("has too few items".into());
            }
            if let Some(is) = s.get("items") {
                for (i, it) in items.iter().enumerate() {
                    validate_at(doc, is, it, &format!("{path}[{i}]"), mode, depth + 1)?;
                }
            }
        }
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let ro = props
                    .and_then(|p| p.get(r))
                    .map(|p| deref(doc, p))
                    .is_some_and(|p| p.get("readOnly") == Some(&Value::Bool(true)));
                if !(m.contains_key(r) || mode.request && ro) {
                    return err(format!("`{r}` is required"));
                }
            }
            let additional = s.get("additionalProperties");
            for (k, val) in m {
                let p = format!("{path}.{k}");
                match props.and_then(|ps| ps.get(k)) {
                    Some(ps) => {
                        if mode.request
                            && deref(doc, ps).get("readOnly") == Some(&Value::Bool(true))
                        {
                            return Err(format!("{p}: is read-only and cannot be sent"));
                        }
                        validate_at(doc, ps, val, &p, mode, depth + 1)?;
                    }
                    None => match additional {
                        Some(Value::Bool(false)) => {
                            return Err(format!("{p}: is not a known property"))
                        }
                        Some(a @ Value::Object(_)) => {
                            validate_at(doc, a, val, &p, mode, depth + 1)?
                        }
                        None if mode.strict && props.is_some() => {
                            return Err(format!("{p}: is not a known property"))
                        }
                        _ => {}
                    },
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits_are_checked_on_the_raw_bytes() {
        let l = Limits {
            max_depth: 3,
            max_keys: 2,
            max_items: 3,
            max_string: 5,
        };
        assert!(check_limits(br#"{"a":[1,2],"b":"abc"}"#, &l).is_ok());
        assert!(check_limits(br#"[[[[1]]]]"#, &l)
            .unwrap_err()
            .contains("deeper"));
        assert!(check_limits(br#"{"a":1,"b":2,"c":3}"#, &l)
            .unwrap_err()
            .contains("keys"));
        assert!(check_limits(br#"[1,2,3,4]"#, &l)
            .unwrap_err()
            .contains("items"));
        assert!(check_limits(br#"{"a":"abcdefgh"}"#, &l)
            .unwrap_err()
            .contains("string"));
        assert!(
            check_limits(br#"{"a":"a\"b"}"#, &l).is_ok(),
            "an escaped quote does not end the string"
        );
        // found by the json_limits fuzz property: a nested container was counted twice
        assert!(check_limits(br#"[[1],[2],{"a":[3]}]"#, &l).is_ok());
        assert!(check_limits(br#"[[1],[2],[3],[4]]"#, &l)
            .unwrap_err()
            .contains("items"));
    }

    #[test]
    fn schema_decision_table() {
        let doc = json!({"components": {"schemas": {"Qty": {"type": "integer", "minimum": 1, "maximum": 100}}}});
        let schema = json!({
            "type": "object", "required": ["name", "id"],
            "properties": {
                "id": {"type": "integer", "readOnly": true},
                "name": {"type": "string", "maxLength": 5},
                "email": {"type": "string", "format": "email"},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "enum": ["a", "b"]}},
                "qty": {"$ref": "#/components/schemas/Qty"},
                "ref": {"type": "string", "format": "uuid", "nullable": true}
            },
            "additionalProperties": false
        });
        let req = Mode {
            strict: false,
            request: true,
        };
        let cases: Vec<(serde_json::Value, Option<&str>)> = vec![
            (json!({"name": "ada"}), None),
            (
                json!({"name": "ada", "qty": 5, "tags": ["a"], "email": "a@b.co", "ref": null}),
                None,
            ),
            (json!({}), Some("body: `name` is required")),
            (json!({"name": 5}), Some("body.name: must be string")),
            (json!({"name": "toolong"}), Some("body.name: is too long")),
            (
                json!({"name": "a", "id": 7}),
                Some("body.id: is read-only and cannot be sent"),
            ),
            (
                json!({"name": "a", "admin": true}),
                Some("body.admin: is not a known property"),
            ),
            (
                json!({"name": "a", "qty": 0}),
                Some("body.qty: is too small"),
            ),
            (
                json!({"name": "a", "qty": 1.5}),
                Some("body.qty: must be integer"),
            ),
            (
                json!({"name": "a", "tags": ["c"]}),
                Some("body.tags[0]: is not one of the allowed values"),
            ),
            (
                json!({"name": "a", "tags": ["a", "b", "a"]}),
                Some("body.tags: has too many items"),
            ),
            (
                json!({"name": "a", "email": "nope"}),
                Some("body.email: is not a valid email"),
            ),
            (
                json!({"name": "a", "ref": "123"}),
                Some("body.ref: is not a valid uuid"),
            ),
            (json!(["not", "an", "object"]), Some("body: must be object")),
        ];
        for (v, want) in cases {
            assert_eq!(
                validate(&doc, &schema, &v, "body", req).err().as_deref(),
                want,
                "{v}"
            );
        }
        // strict mode: a missing additionalProperties counts as false
        let open = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        assert!(validate(&doc, &open, &json!({"b": 1}), "body", req).is_ok());
        let strict = Mode {
            strict: true,
            request: true,
        };
        assert!(validate(&doc, &open, &json!({"b": 1}), "body", strict).is_err());
        // the value never appears in a message
        let e = validate(
            &doc,
            &schema,
            &json!({"name": "<script>alert(1)</script>"}),
            "body",
            req,
        )
        .unwrap_err();
        assert!(!e.contains("script"));
    }
}
