//! Sensitive data in responses: masked, encrypted (and decrypted with `palisade decrypt`), or
//! refused; named fields only when the route says so.

use http::Method;
use palisade_testkit::{DocServer, HttpClient, Reply, TempDir};

use crate::support::{assert_problem, bin, simple, TestGateway};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

async fn get(gw: &TestGateway, path: &str) -> Reply {
    HttpClient::h1()
        .send(Method::GET, &gw.url(path), &[], b"")
        .await
        .unwrap()
}

#[tokio::test]
async fn sensitive_data_is_masked_encrypted_or_refused() {
    let up = DocServer::start().await;
    up.set(
        "/customer",
        r#"{"name":"Ada","email":"ada@example.com","card":"4111 1111 1111 1111","note":"ssn 078-05-1120","orders":[{"id":7,"iban":"DE89370400440532013000"}],"version":"2.0.1"}"#,
    );
    // mask (the default), everywhere
    let gw = TestGateway::start(&simple(&up.url(), "[{type: pii}]", "")).await;
    let r = get(&gw, "/customer").await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["name"], "Ada");
    assert_eq!(v["version"], "2.0.1");
    assert_eq!(v["card"], "***************1111");
    assert_eq!(v["orders"][0]["iban"], "******************3000");
    assert_eq!(v["note"], "ssn ***********");
    assert!(!r.text().contains("ada@example.com"));

    // only named fields
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: pii, fields: [email, \"orders.*.iban\"]}]",
        "",
    ))
    .await;
    let v: serde_json::Value = serde_json::from_slice(&get(&gw, "/customer").await.body).unwrap();
    assert_eq!(v["card"], "4111 1111 1111 1111", "not named: left alone");
    assert_ne!(v["email"], "ada@example.com");
    assert_ne!(v["orders"][0]["iban"], "DE89370400440532013000");

    // encrypted, then decrypted by the operator
    std::env::set_var("PALISADE_E2E_PII_KEY", KEY);
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: pii, action: encrypt, key_env: PALISADE_E2E_PII_KEY, kinds: [card]}]",
        "",
    ))
    .await;
    let v: serde_json::Value = serde_json::from_slice(&get(&gw, "/customer").await.body).unwrap();
    let enc = v["card"].as_str().unwrap().to_string();
    assert!(enc.starts_with("enc:v1:"), "{enc}");
    assert_eq!(v["email"], "ada@example.com", "only the configured kinds");
    let out = bin()
        .args(["decrypt", &enc, "--key-env", "PALISADE_E2E_PII_KEY"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "4111 1111 1111 1111"
    );

    // refused
    let gw = TestGateway::start(&simple(
        &up.url(),
        "[{type: pii, action: refuse, kinds: [card]}]",
        "",
    ))
    .await;
    assert_problem(&get(&gw, "/customer").await, 502, "pii.refused");
}

#[tokio::test]
async fn properties_the_description_marks_as_personal_are_treated_whatever_they_hold() {
    let up = DocServer::start().await;
    up.set(
        "/customer",
        r#"{"name":"Ada Lovelace","card":"4111 1111 1111 1111","address":{"street":"12 St James's Square","city":"London"},"version":"2.0.1"}"#,
    );
    let dir = TempDir::new("e2e-pii");
    dir.write(
        "api.yaml",
        r##"openapi: 3.1.0
info: {title: shop, version: "1"}
paths:
  /customer:
    get:
      responses:
        "200":
          description: a customer
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Customer"}
components:
  schemas:
    Customer:
      type: object
      properties:
        name: {type: string, x-palisade-pii: true}
        card: {type: string}
        address: {$ref: "#/components/schemas/Address"}
        version: {type: string}
    Address:
      type: object
      x-palisade-pii: true
      properties:
        street: {type: string}
        city: {type: string}
"##,
    );
    let gw =
        TestGateway::start_in(dir, &simple(&up.url(), "[{type: pii, spec: api.yaml}]", "")).await;
    let r = get(&gw, "/customer").await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["name"], "************",
        "a marked property, though no pattern matches it"
    );
    assert_eq!(
        v["address"]["street"], "********************",
        "under a marked object"
    );
    assert_eq!(v["address"]["city"], "******");
    assert_eq!(
        v["card"], "4111 1111 1111 1111",
        "fields are named: others left alone"
    );
    assert_eq!(v["version"], "2.0.1");

    // a description that marks nothing is a configuration mistake
    let dir = TempDir::new("e2e-pii");
    dir.write(
        "api.yaml",
        "openapi: 3.1.0\ninfo: {title: t, version: \"1\"}\npaths: {}\n",
    );
    let path = dir.write(
        "palisade.yaml",
        &simple(&up.url(), "[{type: pii, spec: api.yaml}]", ""),
    );
    let err = palisade_config::load(&path).unwrap_err().to_string();
    assert!(err.contains("x-palisade-pii"), "{err}");
}

/// A response that is declared JSON but cannot be read whole (nested past the bound, or
/// malformed) cannot be masked, so it is withheld rather than passed as it is.
#[tokio::test]
async fn json_that_cannot_be_masked_is_withheld() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deep = format!(
        r#"{}"card 4111 1111 1111 1111"{}"#,
        r#"{"a":"#.repeat(80),
        "}".repeat(80)
    );
    for body in [deep, r#"{"card": "4111 1111 1111 1111""#.to_string()] {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let b = body.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    b.len()
                );
                let _ = s.write_all(format!("{head}{b}").as_bytes()).await;
            }
        });
        let gw = TestGateway::start(&simple(&url, "[{type: pii}]", "")).await;
        let r = palisade_testkit::get(&gw.url("/x")).await;
        assert_problem(&r, 502, "pii.refused");
        assert!(!r.text().contains("4111"), "{}", r.text());
    }
}
