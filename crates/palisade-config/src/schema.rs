//! The JSON Schema (draft-07) of the config file, generated from the config model itself
//! (every section's types derive `schemars::JsonSchema` beside `Deserialize`), for editors:
//! completion, hover docs and red squiggles for unknown fields, wrong types and missing
//! fields. `palisade validate` remains the authority (it also checks references between
//! sections, files and limits); the suite checks that every example validates against it.

use serde_json::{json, Map, Value};

use crate::model::*;
use palisade_identity::consumers::ConsumerSpec;
use palisade_identity::issuer::IssuerSpec;

/// The schema, as `palisade schema` prints it.
pub fn json_schema() -> Value {
    let mut g = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut props = Map::new();
    let mut put = |k: &str, v: Value| {
        props.insert(k.to_string(), v);
    };
    put(
        "consumers",
        json!({"type": "array", "items": g.subschema_for::<ConsumerSpec>()}),
    );
    put(
        "issuers",
        json!({"type": "object", "additionalProperties": g.subschema_for::<IssuerSpec>()}),
    );
    put(
        "identity_headers",
        g.subschema_for::<IdentityHeadersSpec>().to_value(),
    );
    put("admin", g.subschema_for::<AdminSpec>().to_value());
    put("runtime", g.subschema_for::<RuntimeSpec>().to_value());
    put("redis", g.subschema_for::<RedisSpec>().to_value());
    put("log", g.subschema_for::<LogSpec>().to_value());
    put("limits", g.subschema_for::<LimitsSpec>().to_value());
    put(
        "trusted_proxies",
        json!({"type": "array", "items": {"type": "string"}}),
    );
    put(
        "listeners",
        json!({"type": "array", "items": g.subschema_for::<ListenerSpec>()}),
    );
    put(
        "upstreams",
        json!({"type": "object", "additionalProperties": g.subschema_for::<UpstreamSpec>()}),
    );
    put(
        "routes",
        json!({"type": "array", "items": g.subschema_for::<RouteSpec>()}),
    );
    put(
        "patches",
        json!({"type": "array", "items": g.subschema_for::<PatchSpec>()}),
    );
    put(
        "mesh",
        g.subschema_for::<crate::runtime::mesh::MeshSpec>()
            .to_value(),
    );
    put(
        "fleet",
        g.subschema_for::<crate::runtime::fleet::FleetSpec>()
            .to_value(),
    );
    debug_assert!(TOP_LEVEL_KEYS.iter().all(|k| props.contains_key(*k)));
    let mut schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://github.com/palisade-gateway/palisade/palisade.schema.json",
        "title": "Palisade configuration",
        "description": "The config file of the Palisade API security gateway (see docs/configuration.md).",
        "type": "object",
        "additionalProperties": false,
        "properties": props,
        "definitions": g.take_definitions(true),
    });
    drop_rust_formats(&mut schema);
    schema
}

/// Removes the `format`s schemars writes for Rust number types (`uint32`, `double`…): no
/// JSON Schema draft defines them, strict validators refuse them, and the bounds they stand
/// for are already given by `minimum`.
fn drop_rust_formats(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let rust = m.get("format").and_then(Value::as_str).is_some_and(|f| {
                matches!(
                    f,
                    "int"
                        | "int8"
                        | "int16"
                        | "int32"
                        | "int64"
                        | "uint"
                        | "uint8"
                        | "uint16"
                        | "uint32"
                        | "uint64"
                        | "float"
                        | "double"
                )
            });
            if rust {
                m.remove("format");
            }
            m.values_mut().for_each(drop_rust_formats);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_rust_formats),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_top_level_section_is_described() {
        let s = super::json_schema();
        for k in crate::model::TOP_LEVEL_KEYS {
            assert!(s.pointer(&format!("/properties/{k}")).is_some(), "{k}");
        }
    }
}
