//! WebSocket through the whole pipeline (issue 20), with a server and a client of another
//! stack (Python's `websockets`): the handshake authenticated and checked, subprotocols
//! narrowed, compression taken out so messages stay inspectable, and the session relayed
//! under its limits: message size both ways (1009), message rate (1008), attacks in text
//! messages (1008, never reaching the upstream), idle timeout (1001), the upstream's own
//! close passed through.

use serde_json::{json, Value};

use crate::support::{admin_get, admin_yaml, api_key_hash, python_server, run_python, TestGateway};

const KEY: &str = "pk_test_websocket_key_0123456789abcd";

#[tokio::test]
async fn websocket_sessions_are_authenticated_limited_and_inspected() {
    let (_server, first, seen) = python_server("ws_server.py", &[]);
    let port = first["listening"].as_u64().unwrap();
    let yaml = format!(
        r#"{admin}
log: {{access: "off"}}
consumers: [{{name: app, api_keys: [{{hash: "sha256:{hash}"}}]}}]
listeners: [{{name: public, listen: "127.0.0.1:0"}}]
upstreams: {{ws: {{targets: ["http://127.0.0.1:{port}"]}}}}
routes:
  - name: chat
    match: {{path_prefix: /chat}}
    upstream: ws
    policies:
      - {{type: api_key}}
      - {{type: threat}}
      - type: websocket
        max_message_bytes: 1024
        messages_per_second: 1
        burst: 4
        idle_timeout: 1s
        origins: ["https://app.example.com"]
        protocols: [chat.v2]
"#,
        admin = admin_yaml("127.0.0.1:0"),
        hash = api_key_hash(KEY),
    );
    let gw = TestGateway::start(&yaml).await;
    let ok = json!({"x-api-key": KEY, "origin": "https://app.example.com"});
    let cases = json!([
        {"name": "no key", "headers": {"origin": "https://app.example.com"}},
        {"name": "foreign origin", "headers": {"x-api-key": KEY, "origin": "https://evil.example"}},
        {"name": "no allowed subprotocol", "headers": ok, "subprotocols": ["chat.v1"]},
        {"name": "echo", "headers": ok, "subprotocols": ["chat.v1", "chat.v2"],
         "send": ["hello", "bin:10", "{\"say\": \"hi there\"}"], "expect": 3},
        {"name": "too big", "headers": ok, "subprotocols": ["chat.v2"], "send": ["text:2000"], "expect": 1},
        {"name": "too fast", "headers": ok, "subprotocols": ["chat.v2"],
         "send": ["1", "2", "3", "4", "5", "6", "7", "8"], "expect": 8},
        {"name": "attack", "headers": ok, "subprotocols": ["chat.v2"],
         "send": ["{\"q\": \"<script>alert(document.cookie)</script>\"}"], "expect": 1},
        {"name": "idle", "headers": ok, "subprotocols": ["chat.v2"], "linger": 4},
        {"name": "big reply", "headers": ok, "subprotocols": ["chat.v2"], "send": ["big:5000"], "expect": 1},
        {"name": "upstream closes", "headers": ok, "subprotocols": ["chat.v2"], "send": ["close"], "expect": 1}
    ]);
    let url = format!("ws://{}/chat/room", gw.addr());
    let out = run_python("ws_client.py", vec![url.into(), cases.to_string().into()]).await;
    let case = |name: &str| -> &Value {
        out.iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no result for {name}: {out:?}"))
    };
    // the handshake is a request like any other: refused before anything reaches the service
    assert_eq!(case("no key")["status"], 401, "{out:?}");
    assert_eq!(case("foreign origin")["status"], 403);
    assert!(case("foreign origin")["body"]
        .as_str()
        .unwrap()
        .contains("websocket.origin_denied"));
    assert_eq!(case("no allowed subprotocol")["status"], 400);
    // a session: messages both ways, the allowed subprotocol, no compression
    let echo = case("echo");
    assert_eq!(echo["status"], 101, "{echo}");
    assert_eq!(
        echo["replies"],
        json!(["hello", "<10 bytes>", "{\"say\": \"hi there\"}"])
    );
    assert_eq!(echo["subprotocol"], "chat.v2");
    assert_eq!(
        echo["extensions"],
        json!([]),
        "compression would hide messages"
    );
    // limits and checks close the session with the code that says why
    assert_eq!(case("too big")["close_code"], 1009, "{out:?}");
    let fast = case("too fast");
    assert_eq!(fast["close_code"], 1008, "{fast}");
    assert_eq!(fast["close_reason"], "message rate exceeded");
    assert!(fast["replies"].as_array().unwrap().len() <= 5, "{fast}");
    let attack = case("attack");
    assert_eq!(attack["close_code"], 1008, "{attack}");
    assert!(
        attack["close_reason"].as_str().unwrap().contains("xss"),
        "{attack}"
    );
    assert_eq!(case("idle")["close_code"], 1001);
    assert_eq!(
        case("big reply")["close_code"],
        1009,
        "limits hold both ways"
    );
    assert_eq!(case("upstream closes")["close_code"], 4000);

    // what the service saw: authenticated sessions only, no attack, no compression offer
    let got: Vec<Value> = seen.try_iter().collect();
    assert!(got.iter().any(|g| g["got"] == "hello"), "{got:?}");
    assert!(!got
        .iter()
        .any(|g| g["got"].as_str().unwrap_or("").contains("script")));
    assert!(got
        .iter()
        .all(|g| g["headers"].get("sec-websocket-extensions").is_none()));
    assert!(got
        .iter()
        .all(|g| g["headers"]["x-palisade-consumer"] == "app"));
    assert!(got.iter().all(|g| g["path"] == "/chat/room"));

    // counted, and the refused message is a security event with its excerpt
    let m = gw.metrics().await;
    let value = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert!(value("palisade_websocket_sessions_total") >= 7);
    assert!(value("palisade_websocket_closed_by_policy_total") >= 4);
    let admin = gw.gw.admin_addr().unwrap();
    let events = admin_get(admin, "/api/v1/events?code=websocket.").await;
    let events: Value = serde_json::from_slice(&events.body).unwrap();
    let refused = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["code"] == "websocket.message_refused")
        .unwrap_or_else(|| panic!("{events}"));
    assert_eq!(refused["route"], "chat");
    assert_eq!(refused["consumer"], "app");
    assert!(refused["excerpt"].as_str().unwrap().contains("<script>"));
}

/// Over TLS (`wss://`, ALPN `http/1.1` as browsers offer it) the handshake switches too.
#[tokio::test]
async fn websocket_sessions_over_tls() {
    let (_server, first, _seen) = python_server("ws_server.py", &[]);
    let port = first["listening"].as_u64().unwrap();
    let dir = palisade_testkit::TempDir::new("wss");
    let ca = palisade_testkit::TestCa::new();
    let (cert, key) = ca.write_server_cert(dir.path(), "server", &["localhost"]);
    let ca_file = ca.write_ca(dir.path());
    let yaml = format!(
        r#"admin: {{listen: "127.0.0.1:0"}}
log: {{access: "off"}}
listeners:
  - name: tls
    listen: "127.0.0.1:0"
    tls: {{certificates: [{{cert: {}, key: {}}}]}}
upstreams: {{ws: {{targets: ["http://127.0.0.1:{port}"]}}}}
routes:
  - {{name: chat, upstream: ws, public: true, policies: [{{type: websocket}}]}}
"#,
        cert.display(),
        key.display()
    );
    let gw = TestGateway::start_in(dir, &yaml).await;
    let cases = json!([{"name": "tls echo", "subprotocols": ["chat.v2"], "send": ["over tls"], "expect": 1}]);
    let url = format!("wss://localhost:{}/chat", gw.addr().port());
    let out = run_python(
        "ws_client.py",
        vec![url.into(), cases.to_string().into(), ca_file.into()],
    )
    .await;
    assert_eq!(out[0]["status"], 101, "{out:?}");
    assert_eq!(out[0]["replies"], json!(["over tls"]));
}
