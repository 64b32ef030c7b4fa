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
                i = palisade_core::json::string_end(raw, i);
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

/// Compiled `pattern`s (or why they cannot be), by source. The description is the only
/// source of patterns, so the cache is bounded by it; Rust's regex engine runs in linear
/// time, so no pattern can be made to backtrack for ever on attacker input. Every pattern is
/// compiled when the contract is built ([`compile_pattern`]), and one that cannot be is a
/// config error there.
static PATTERNS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, Result<regex::Regex, String>>>,
> = std::sync::LazyLock::new(Default::default);

/// The largest compiled pattern: Unicode classes (`\p{L}`) are large, and a description's
/// patterns are few.
const PATTERN_SIZE_LIMIT: usize = 32 << 20;

/// An ECMA-262 pattern in the syntax of Rust's regex engine: `\d` and `\w` are ASCII in
/// ECMA-262 and Unicode in Rust, so they are written out.
fn ecma_to_rust(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 8);
    let mut in_class = false;
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('d') if in_class => out.push_str("0-9"),
                Some('d') => out.push_str("[0-9]"),
                Some('w') if in_class => out.push_str("A-Za-z0-9_"),
                Some('w') => out.push_str("[A-Za-z0-9_]"),
                Some('D') if !in_class => out.push_str("[^0-9]"),
                Some('W') if !in_class => out.push_str("[^A-Za-z0-9_]"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // a `]` right after `[` or `[^` is a literal
                let rest = chars.as_str();
                let lead = if rest.starts_with('^') { 1 } else { 0 };
                if rest.get(lead..).is_some_and(|r| r.starts_with(']')) {
                    out.push_str(rest.get(..=lead).unwrap_or(""));
                    chars = rest.get(lead + 1..).unwrap_or("").chars();
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The compiled `pattern`, or why it cannot be enforced (look-around, back-references and
/// other syntax Rust's linear-time engine lacks); compiled once.
fn regex_for(pattern: &str) -> Result<regex::Regex, String> {
    let mut cache = PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| {
            regex::RegexBuilder::new(&ecma_to_rust(pattern))
                .size_limit(PATTERN_SIZE_LIMIT)
                .dfa_size_limit(PATTERN_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    let msg = e.to_string();
                    // regex's message spans lines (the pattern with a caret): the last says why
                    let last = msg.lines().last().unwrap_or("cannot be compiled").trim();
                    last.strip_prefix("error: ").unwrap_or(last).to_string()
                })
        })
        .clone()
}

/// Compiles `pattern`, or says why it cannot be enforced.
pub fn compile_pattern(pattern: &str) -> Result<(), String> {
    regex_for(pattern).map(|_| ())
}

/// Whether `x` matches the ECMA-262 `pattern` (unanchored, as JSON Schema says). A pattern
/// that cannot be compiled matches nothing: the contract refuses it when built, so this
/// only fails closed.
fn pattern_ok(pattern: &str, x: &str) -> bool {
    regex_for(pattern).is_ok_and(|r| r.is_match(x))
}

/// `a` and `b` are the same JSON value, numbers compared by value (`1` and `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
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
    if let Some(alts) = s.get("anyOf").and_then(Value::as_array) {
        if !alts
            .iter()
            .any(|a| validate_at(doc, a, v, path, mode, depth + 1).is_ok())
        {
            return err("matches none of the allowed shapes".into());
        }
    }
    if let Some(alts) = s.get("oneOf").and_then(Value::as_array) {
        let matching = alts
            .iter()
            .filter(|a| validate_at(doc, a, v, path, mode, depth + 1).is_ok())
            .take(2)
            .count();
        match matching {
            0 => return err("matches none of the allowed shapes".into()),
            1 => {}
            _ => return err("matches more than one of the exclusive shapes (oneOf)".into()),
        }
    }
    if let Some(n) = s.get("not") {
        if validate_at(doc, n, v, path, mode, depth + 1).is_ok() {
            return err("matches a shape that is not allowed".into());
        }
    }
    if let Some(cond) = s.get("if") {
        let branch = if validate_at(doc, cond, v, path, mode, depth + 1).is_ok() {
            s.get("then")
        } else {
            s.get("else")
        };
        if let Some(b) = branch {
            validate_at(doc, b, v, path, mode, depth + 1)?;
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
                if !pattern_ok(p, x) {
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
            // 3.1 (a number) and 3.0 (a boolean that makes maximum/minimum exclusive)
            let exclusive = |k: &str, bound: &str| match s.get(k) {
                Some(Value::Bool(true)) => s.get(bound).and_then(Value::as_f64),
                Some(v) => v.as_f64(),
                None => None,
            };
            if exclusive("exclusiveMaximum", "maximum").is_some_and(|m| f >= m) {
                return err("is too large".into());
            }
            if exclusive("exclusiveMinimum", "minimum").is_some_and(|m| f <= m) {
                return err("is too small".into());
            }
            if let Some(m) = s.get("multipleOf").and_then(Value::as_f64) {
                let q = f / m;
                if m > 0.0 && (q - q.round()).abs() > 1e-9 * q.abs().max(1.0) {
                    return err(format!("is not a multiple of {m}"));
                }
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
            if s.get("uniqueItems") == Some(&Value::Bool(true)) {
                for (i, a) in items.iter().enumerate() {
                    if items.iter().skip(i + 1).any(|b| same(a, b)) {
                        return err("has repeated items".into());
                    }
                }
            }
            // 3.1: the first items by position, then `items` for the rest
            let prefix = s.get("prefixItems").and_then(Value::as_array);
            let skip = prefix.map_or(0, Vec::len);
            for (i, (ps, it)) in prefix.into_iter().flatten().zip(items).enumerate() {
                validate_at(doc, ps, it, &format!("{path}[{i}]"), mode, depth + 1)?;
            }
            if let Some(is) = s.get("items") {
                for (i, it) in items.iter().enumerate().skip(skip) {
                    validate_at(doc, is, it, &format!("{path}[{i}]"), mode, depth + 1)?;
                }
            }
            if let Some(c) = s.get("contains") {
                let n = items
                    .iter()
                    .filter(|it| validate_at(doc, c, it, path, mode, depth + 1).is_ok())
                    .count() as u64;
                let min = s.get("minContains").and_then(Value::as_u64).unwrap_or(1);
                if n < min {
                    return err("does not contain the required items".into());
                }
                if s.get("maxContains")
                    .and_then(Value::as_u64)
                    .is_some_and(|m| n > m)
                {
                    return err("contains too many of the matching items".into());
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
            let count = m.len() as u64;
            if s.get("maxProperties")
                .and_then(Value::as_u64)
                .is_some_and(|n| count > n)
            {
                return err("has too many properties".into());
            }
            if s.get("minProperties")
                .and_then(Value::as_u64)
                .is_some_and(|n| count < n)
            {
                return err("has too few properties".into());
            }
            if let Some(deps) = s.get("dependentRequired").and_then(Value::as_object) {
                for (k, needs) in deps.iter().filter(|(k, _)| m.contains_key(*k)) {
                    for n in needs
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        if !m.contains_key(n) {
                            return err(format!("`{n}` is required with `{k}`"));
                        }
                    }
                }
            }
            let patterned = s.get("patternProperties").and_then(Value::as_object);
            let names = s.get("propertyNames");
            let additional = s.get("additionalProperties");
            for (k, val) in m {
                let p = format!("{path}.{k}");
                if let Some(n) = names {
                    let key = Value::String(k.clone());
                    if validate_at(doc, n, &key, &p, mode, depth + 1).is_err() {
                        return Err(format!("{p}: is not an allowed property name"));
                    }
                }
                let mut by_pattern = false;
                for (re, ps) in patterned.into_iter().flatten() {
                    if pattern_ok(re, k) {
                        by_pattern = true;
                        validate_at(doc, ps, val, &p, mode, depth + 1)?;
                    }
                }
                match props.and_then(|ps| ps.get(k)) {
                    _ if by_pattern && props.and_then(|ps| ps.get(k)).is_none() => {}
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

    #[test]
    fn every_keyword_the_coverage_check_accepts_is_enforced() {
        let doc = json!({});
        let req = Mode {
            strict: false,
            request: true,
        };
        let check = |schema: serde_json::Value, v: serde_json::Value| {
            validate(&doc, &schema, &v, "v", req).err()
        };
        let cases: Vec<(serde_json::Value, serde_json::Value, Option<&str>)> = vec![
            // oneOf is exclusive, anyOf is not
            (
                json!({"oneOf": [{"type": "integer"}, {"type": "number"}]}),
                json!(1.5),
                None,
            ),
            (
                json!({"oneOf": [{"type": "integer"}, {"type": "number"}]}),
                json!(2),
                Some("v: matches more than one of the exclusive shapes (oneOf)"),
            ),
            (
                json!({"anyOf": [{"type": "integer"}, {"type": "number"}]}),
                json!(2),
                None,
            ),
            (
                json!({"not": {"type": "string"}}),
                json!("x"),
                Some("v: matches a shape that is not allowed"),
            ),
            (json!({"not": {"type": "string"}}), json!(1), None),
            (json!({"multipleOf": 0.5}), json!(2.5), None),
            (
                json!({"multipleOf": 3}),
                json!(10),
                Some("v: is not a multiple of 3"),
            ),
            (
                json!({"uniqueItems": true}),
                json!([1, 2, 1.0]),
                Some("v: has repeated items"),
            ),
            (
                json!({"uniqueItems": true}),
                json!([{"a": 1}, {"a": 2}]),
                None,
            ),
            (
                json!({"minProperties": 2}),
                json!({"a": 1}),
                Some("v: has too few properties"),
            ),
            (
                json!({"maxProperties": 1}),
                json!({"a": 1, "b": 2}),
                Some("v: has too many properties"),
            ),
            // OpenAPI 3.0's boolean exclusiveMaximum, 3.1's number
            (
                json!({"maximum": 10, "exclusiveMaximum": true}),
                json!(10),
                Some("v: is too large"),
            ),
            (
                json!({"maximum": 10, "exclusiveMaximum": false}),
                json!(10),
                None,
            ),
            (
                json!({"exclusiveMinimum": 0}),
                json!(0),
                Some("v: is too small"),
            ),
            // patterns: Unicode classes compile; \d is ASCII as in ECMA-262
            (json!({"pattern": "^\\p{L}+$"}), json!("Zoë"), None),
            (
                json!({"pattern": "^\\p{L}+$"}),
                json!("Zoë1"),
                Some("v: does not match the required pattern"),
            ),
            (
                json!({"pattern": "^\\d+$"}),
                json!("١٢٣"),
                Some("v: does not match the required pattern"),
            ),
            (json!({"pattern": "^[\\d-]+$"}), json!("12-3"), None),
            (
                json!({"patternProperties": {"^x-": {"type": "string"}}}),
                json!({"x-a": 1}),
                Some("v.x-a: must be string"),
            ),
            (
                json!({"propertyNames": {"maxLength": 3}}),
                json!({"long-name": 1}),
                Some("v.long-name: is not an allowed property name"),
            ),
            (
                json!({"dependentRequired": {"card": ["cvv"]}}),
                json!({"card": "1"}),
                Some("v: `cvv` is required with `card`"),
            ),
            (
                json!({"prefixItems": [{"type": "string"}], "items": {"type": "integer"}}),
                json!(["a", 1, 2]),
                None,
            ),
            (
                json!({"prefixItems": [{"type": "string"}], "items": {"type": "integer"}}),
                json!(["a", "b"]),
                Some("v[1]: must be integer"),
            ),
            (
                json!({"contains": {"type": "string"}}),
                json!([1, 2]),
                Some("v: does not contain the required items"),
            ),
            (
                json!({"contains": {"type": "string"}, "maxContains": 1}),
                json!(["a", "b"]),
                Some("v: contains too many of the matching items"),
            ),
            (
                json!({"if": {"properties": {"kind": {"const": "card"}}}, "then": {"required": ["number"]}}),
                json!({"kind": "card"}),
                Some("v: `number` is required"),
            ),
            (
                json!({"if": {"properties": {"kind": {"const": "card"}}}, "then": {"required": ["number"]}}),
                json!({"kind": "cash"}),
                None,
            ),
        ];
        for (schema, v, want) in cases {
            assert_eq!(
                check(schema.clone(), v.clone()).as_deref(),
                want,
                "{schema} on {v}"
            );
        }
        // a pattern the engine cannot compile matches nothing (the contract refuses it first)
        assert!(compile_pattern("^(?!admin)").is_err());
        assert!(check(json!({"pattern": "^(?!admin)"}), json!("user")).is_some());
    }
}
