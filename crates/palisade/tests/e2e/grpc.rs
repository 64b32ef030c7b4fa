//! gRPC end to end (issue 20), with Google's grpcio as server and client: routes and limits
//! per method, refusals as gRPC statuses a gRPC client reads (not HTTP statuses), the
//! upstream's statuses, messages, trailers and streams passed through.

use serde_json::{json, Value};

use crate::support::{api_key_hash, python_server, run_python, TestGateway};

const KEY: &str = "pk_test_grpc_key_0123456789abcdefgh";

#[tokio::test]
async fn grpc_methods_are_routed_limited_and_refused_as_grpc_statuses() {
    let (_server, first, seen) = python_server("grpc_server.py", &[]);
    let port = first["listening"].as_u64().unwrap();
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
consumers: [{{name: shop, api_keys: [{{hash: "sha256:{hash}"}}]}}]
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{orders: {{targets: ["http://127.0.0.1:{port}"], protocol: http2}}}}
routes:
  - name: get
    match: {{path: /demo.Orders/Get, methods: [POST]}}
    upstream: orders
    policies:
      - {{type: api_key}}
      - {{type: rate_limit, key: consumer, limits: [{{requests: 4, per: 1m}}]}}
  - name: watch
    match: {{path: /demo.Orders/Watch, methods: [POST]}}
    upstream: orders
    policies: [{{type: api_key}}]
  - name: delete
    match: {{path: /demo.Orders/Delete}}
    upstream: orders
    policies:
      - {{type: api_key}}
      - {{type: deny, reason: "orders are never deleted through the API"}}
"#,
        hash = api_key_hash(KEY),
    );
    let gw = TestGateway::start(&yaml).await;
    let key = json!({"x-api-key": KEY});
    let calls = json!([
        {"name": "no key", "method": "/demo.Orders/Get", "request": "7"},
        {"name": "get", "method": "/demo.Orders/Get", "request": "7", "metadata": key},
        {"name": "upstream error", "method": "/demo.Orders/Get", "request": "missing", "metadata": key},
        {"name": "stream", "method": "/demo.Orders/Watch", "metadata": key, "stream": true},
        {"name": "denied", "method": "/demo.Orders/Delete", "request": "7", "metadata": key},
        {"name": "unknown", "method": "/demo.Orders/Nope", "request": "7", "metadata": key},
        {"name": "get 3", "method": "/demo.Orders/Get", "request": "8", "metadata": key},
        {"name": "get 4", "method": "/demo.Orders/Get", "request": "9", "metadata": key},
        {"name": "over the limit", "method": "/demo.Orders/Get", "request": "10", "metadata": key}
    ]);
    let out = run_python(
        "grpc_client.py",
        vec![gw.addr().to_string().into(), calls.to_string().into()],
    )
    .await;
    let call = |name: &str| -> &Value {
        out.iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no result for {name}: {out:?}"))
    };
    // refusals are statuses a gRPC client understands, with Palisade's code in the message
    let r = call("no key");
    assert_eq!(r["code"], "UNAUTHENTICATED", "{r}");
    assert!(r["details"]
        .as_str()
        .unwrap()
        .contains("auth.missing_credential"));
    assert_eq!(call("denied")["code"], "PERMISSION_DENIED");
    assert!(call("denied")["details"]
        .as_str()
        .unwrap()
        .contains("never deleted"));
    assert_eq!(call("unknown")["code"], "UNIMPLEMENTED");
    assert_eq!(call("over the limit")["code"], "RESOURCE_EXHAUSTED");
    // what passes: replies, the upstream's own statuses and trailers, streams
    let r = call("get");
    assert_eq!(
        (r["code"].as_str(), r["reply"].as_str()),
        (Some("OK"), Some("order:7"))
    );
    assert_eq!(r["trailers"]["x-served-by"], "grpcio", "trailers pass: {r}");
    let r = call("upstream error");
    assert_eq!(r["code"], "NOT_FOUND");
    assert_eq!(r["details"], "no such order");
    assert_eq!(
        call("stream")["reply"],
        json!(["event-0", "event-1", "event-2"])
    );
    assert_eq!(call("get 4")["code"], "OK");
    // the upstream saw only what was allowed, with the verified consumer
    let got: Vec<Value> = seen.try_iter().collect();
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(got
        .iter()
        .all(|g| g["metadata"]["x-palisade-consumer"] == "shop"));
    assert!(!got.iter().any(|g| g["method"] == "Delete"));
}
