//! What of an API description the contract cannot enforce, found when it is built: a schema
//! keyword the validator does not implement, or a `pattern` the regex engine cannot compile
//! (look-around, back-references). Each is named with its JSON pointer in the description.
//! The contract refuses to build with any of them (unless
//! `dangerous_allow_unenforced_schema`), so no check of the description is dropped silently.

use serde_json::Value;

use palisade_audit::spec::esc as escape;

use crate::validate::compile_pattern;

/// Keywords the validator enforces.
const ENFORCED: &[&str] = &[
    "type",
    "enum",
    "const",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "maxLength",
    "minLength",
    "pattern",
    "format",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "multipleOf",
    "maxItems",
    "minItems",
    "uniqueItems",
    "items",
    "prefixItems",
    "contains",
    "minContains",
    "maxContains",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "nullable",
    "readOnly",
    "$ref",
];

/// Keywords that only describe (JSON Schema annotations and OpenAPI's own), never constrain.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "example",
    "examples",
    "deprecated",
    "writeOnly",
    "xml",
    "externalDocs",
    "discriminator",
    "$schema",
    "$id",
    "$anchor",
    "$comment",
    "$defs",
    "definitions",
    "contentMediaType",
    "contentEncoding",
    "contentSchema",
];

/// Keywords whose value is one subschema, a list of them, or a map of them.
enum Sub {
    One,
    List,
    Map,
}

fn sub(key: &str) -> Option<Sub> {
    Some(match key {
        "not"
        | "if"
        | "then"
        | "else"
        | "items"
        | "contains"
        | "propertyNames"
        | "additionalProperties"
        | "contentSchema" => Sub::One,
        "allOf" | "anyOf" | "oneOf" | "prefixItems" => Sub::List,
        "properties" | "patternProperties" | "$defs" | "definitions" => Sub::Map,
        _ => return None,
    })
}

fn schema(v: &Value, at: &str, out: &mut Vec<String>, depth: usize) {
    let Value::Object(m) = v else {
        return;
    };
    if depth > palisade_core::json::MAX_DEPTH {
        out.push(format!(
            "{at}: nests deeper than {}",
            palisade_core::json::MAX_DEPTH
        ));
        return;
    }
    for (k, x) in m {
        let here = format!("{at}/{}", escape(k));
        let known = ENFORCED.contains(&k.as_str())
            || ANNOTATIONS.contains(&k.as_str())
            || k.starts_with("x-");
        if !known {
            out.push(format!("{here}: `{k}` is not enforced by the contract"));
            continue;
        }
        if k == "pattern" {
            if let Some(p) = x.as_str() {
                if let Err(e) = compile_pattern(p) {
                    out.push(format!("{here}: the pattern cannot be enforced: {e}"));
                }
            }
        }
        if k == "patternProperties" {
            for p in x.as_object().into_iter().flat_map(|o| o.keys()) {
                if let Err(e) = compile_pattern(p) {
                    out.push(format!(
                        "{here}/{}: the pattern cannot be enforced: {e}",
                        escape(p)
                    ));
                }
            }
        }
        match sub(k) {
            Some(Sub::One) => schema(x, &here, out, depth + 1),
            Some(Sub::List) => {
                for (i, s) in x.as_array().into_iter().flatten().enumerate() {
                    schema(s, &format!("{here}/{i}"), out, depth + 1);
                }
            }
            Some(Sub::Map) => {
                for (name, s) in x.as_object().into_iter().flatten() {
                    schema(s, &format!("{here}/{}", escape(name)), out, depth + 1);
                }
            }
            None => {}
        }
    }
}

/// Looks for schemas in the description: values of `schema`, members of `schemas` and
/// `definitions`, and Swagger 2.0 parameters (which carry schema keywords themselves).
fn find(v: &Value, at: &str, out: &mut Vec<String>, depth: usize) {
    if depth > palisade_core::json::MAX_DEPTH {
        return;
    }
    match v {
        Value::Object(m) => {
            // a Swagger 2.0 non-body parameter: its `pattern` is enforced like a schema's
            if m.contains_key("in") && m.get("in").and_then(Value::as_str) != Some("body") {
                if let Some(p) = m.get("pattern").and_then(Value::as_str) {
                    if let Err(e) = compile_pattern(p) {
                        out.push(format!("{at}/pattern: the pattern cannot be enforced: {e}"));
                    }
                }
            }
            for (k, x) in m {
                let here = format!("{at}/{}", escape(k));
                match k.as_str() {
                    k if k.starts_with("x-") => {}
                    "example" | "examples" => {}
                    "schema" => schema(x, &here, out, 0),
                    "schemas" | "definitions" => {
                        for (name, s) in x.as_object().into_iter().flatten() {
                            schema(s, &format!("{here}/{}", escape(name)), out, 0);
                        }
                    }
                    _ => find(x, &here, out, depth + 1),
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                find(x, &format!("{at}/{i}"), out, depth + 1);
            }
        }
        _ => {}
    }
}

/// Every part of the description's schemas the contract cannot enforce, as
/// `pointer: problem`, in the order of the description's keys.
pub fn unenforced(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    find(doc, "#", &mut out, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_cannot_be_enforced_is_named_with_its_pointer() {
        let doc = json!({
            "openapi": "3.1.0",
            "paths": {"/a/{id}": {"get": {"parameters": [
                {"name": "id", "in": "path", "schema": {"type": "string", "pattern": "^(?!admin)\\w+$"}}
            ], "responses": {"200": {"description": "ok", "content": {"application/json":
                {"schema": {"type": "object", "unevaluatedProperties": false,
                            "properties": {"n/m": {"type": "string", "pattern": "\\p{L}+"}}}}}}}}}},
            "components": {"schemas": {
                "Fine": {"type": "object", "properties": {"x": {"oneOf": [{"type": "string"}, {"not": {"type": "null"}}]}},
                         "x-internal": {"anything": "goes"}, "example": {"unevaluatedItems": 1}},
                "Bad": {"allOf": [{"dependentSchemas": {}}], "patternProperties": {"(?<=x)y": {}}}
            }}
        });
        assert_eq!(
            unenforced(&doc),
            [
                "#/components/schemas/Bad/allOf/0/dependentSchemas: `dependentSchemas` is not enforced by the contract",
                "#/components/schemas/Bad/patternProperties/(?<=x)y: the pattern cannot be enforced: look-around, including look-ahead and look-behind, is not supported",
                "#/paths/~1a~1{id}/get/parameters/0/schema/pattern: the pattern cannot be enforced: look-around, including look-ahead and look-behind, is not supported",
                "#/paths/~1a~1{id}/get/responses/200/content/application~1json/schema/unevaluatedProperties: `unevaluatedProperties` is not enforced by the contract",
            ]
        );
    }
}
