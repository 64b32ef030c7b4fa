//! The tamper-evident security log through the real binary: refusals, would-refuse records
//! and config changes are chained and signed; `palisade log verify` accepts the log as
//! written, across a restart, and catches each kind of tampering; no credential reaches it.

use std::time::Duration;

use palisade_testkit::{free_port, MockUpstream, TempDir};

use crate::support::{bin, signal, start_binary, terminate};

fn yaml(port: u16, admin: u16, upstream: &str, route_name: &str) -> String {
    format!(
        r#"admin: {{listen: "127.0.0.1:{admin}"}}
log:
  access: "off"
  security: {{path: security.log, signing_key: "${{file:logkey.key}}", checkpoint_every: 5}}
listeners:
  - {{name: public, listen: "127.0.0.1:{port}"}}
upstreams:
  app: {{targets: ["{upstream}"]}}
consumers:
  - name: app
    api_keys: [{{hash: "sha256:{hash}"}}]
routes:
  - name: {route_name}
    match: {{path_prefix: /}}
    upstream: app
    policies:
      - type: api_key
      - {{type: ip_filter, mode: monitor, deny: [127.0.0.0/8]}}
"#,
        hash = "00".repeat(32)
    )
}

async fn run_once(dir: &TempDir, port: u16, admin: u16, upstream: &str, requests: usize) {
    let mut gw = start_binary(&dir.path().join("palisade.yaml"), admin).await;
    let client = palisade_testkit::HttpClient::h1();
    for i in 0..requests {
        // refused (unknown key), with credentials that must never reach the log
        let r = client
            .send(
                http::Method::GET,
                &format!("http://127.0.0.1:{port}/orders/{i}?access_token=query-secret-{i}"),
                &[
                    ("x-api-key", "wrong-secret-key-value"),
                    ("authorization", "Bearer bearer-secret-value"),
                ],
                b"",
            )
            .await
            .unwrap();
        assert_eq!(r.status, 401);
    }
    // a config change, applied by SIGHUP, is a record of its own
    dir.write("palisade.yaml", &yaml(port, admin, upstream, "renamed"));
    signal(&gw.0, "HUP");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let status = terminate(&mut gw, Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}

fn verify(dir: &TempDir, file: &str, key: &str) -> (bool, String) {
    let out = bin()
        .args(["log", "verify"])
        .arg(dir.path().join(file))
        .arg("--key")
        .arg(dir.path().join(key))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn refusals_and_config_changes_are_chained_signed_and_verified() {
    let dir = TempDir::new("security-log");
    let out = bin()
        .args(["keys", "signing", "--name", "logkey", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // a second key, which did not sign this log
    let out = bin()
        .args(["keys", "signing", "--name", "other", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let up = MockUpstream::start("app").await;
    let (port, admin) = (free_port(), free_port());
    dir.write("palisade.yaml", &yaml(port, admin, &up.url(), "orders"));
    run_once(&dir, port, admin, &up.url(), 12).await;
    // a second run appends to the same chain
    dir.write("palisade.yaml", &yaml(port, admin, &up.url(), "orders"));
    run_once(&dir, port, admin, &up.url(), 3).await;

    let log = std::fs::read_to_string(dir.path().join("security.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let kinds: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "refusal").count(),
        15,
        "{kinds:?}"
    );
    assert!(
        kinds.iter().filter(|k| *k == "config").count() >= 4,
        "{kinds:?}"
    );
    assert!(
        kinds.iter().filter(|k| *k == "checkpoint").count() >= 4,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("checkpoint"),
        "a clean stop signs the end"
    );
    let refusal: serde_json::Value =
        serde_json::from_str(lines[kinds.iter().position(|k| k == "refusal").unwrap()]).unwrap();
    assert_eq!(refusal["code"], "auth.invalid_api_key");
    assert_eq!(refusal["route"], "orders");
    assert_eq!(refusal["monitored"][0], "network.ip_denied");
    assert!(refusal["path"].as_str().unwrap().starts_with("/orders/"));
    let reload = lines.iter().find(|l| l.contains("\"reloaded\"")).unwrap();
    assert!(reload.contains("\"sha256\""), "{reload}");
    for secret in [
        "wrong-secret-key",
        "bearer-secret",
        "query-secret",
        "access_token",
        "PRIVATE KEY",
    ] {
        assert!(!log.contains(secret), "{secret} reached the security log");
    }

    let (ok, text) = verify(&dir, "security.log", "logkey.pub.pem");
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("intact: {} records", lines.len())),
        "{text}"
    );

    // each kind of tampering, on a copy
    let middle = kinds.iter().position(|k| k == "refusal").unwrap() + 2;
    let write = |name: &str, ls: &[String]| {
        dir.write(name, &(ls.join("\n") + "\n"));
    };
    let owned: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    let mut removed = owned.clone();
    removed.remove(middle);
    write("removed.log", &removed);
    let mut swapped = owned.clone();
    swapped.swap(middle, middle + 1);
    write("swapped.log", &swapped);
    let mut edited = owned.clone();
    edited[middle] = edited[middle].replace("auth.invalid_api_key", "auth.forbidden");
    write("edited.log", &edited);
    // the record just before the final checkpoint: only the signature can vouch for it
    let mut last_edit = owned.clone();
    let n = last_edit.len();
    last_edit[n - 2] = last_edit[n - 2].replace("\"time\":\"20", "\"time\":\"19");
    assert_ne!(last_edit[n - 2], owned[n - 2]);
    write("last-edited.log", &last_edit);
    let mut forged = owned.clone();
    let cp = kinds.iter().rposition(|k| k == "checkpoint").unwrap();
    forged[cp] = forged[cp].replace("\"signature\":\"", "\"signature\":\"AAAA");
    write("forged.log", &forged);
    let headless: Vec<String> = owned[3..].to_vec();
    write("headless.log", &headless);
    for (file, why) in [
        ("removed.log", "does not follow"),
        ("swapped.log", "does not follow"),
        ("edited.log", "does not follow"),
        ("last-edited.log", "does not follow"),
        ("forged.log", "signature does not verify"),
        ("headless.log", "earlier records are missing"),
    ] {
        let (ok, text) = verify(&dir, file, "logkey.pub.pem");
        assert!(!ok, "{file} passed: {text}");
        assert!(
            text.contains("TAMPERED") && text.contains(why),
            "{file}: {text}"
        );
    }
    // a checkpoint re-signed by another key, or checked with another key, fails too
    let (ok, text) = verify(&dir, "security.log", "other.pub.pem");
    assert!(!ok && text.contains("signature does not verify"), "{text}");
    // cut after a record: the chain holds, and verify says the end is unsigned
    let cut: Vec<String> = owned[..n - 1].to_vec();
    write("cut.log", &cut);
    let (ok, text) = verify(&dir, "cut.log", "logkey.pub.pem");
    assert!(ok, "{text}");
    assert!(text.contains("not signed yet"), "{text}");
}
