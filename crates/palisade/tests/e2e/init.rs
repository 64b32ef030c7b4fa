//! `palisade init` through the binary: a config written from an API description validates,
//! serves, lets good traffic through without a single would-refuse, and counts attacks in
//! monitor mode. On the clinic (Swagger 2.0: form and JSON bodies, `Token` keys, a login) and
//! the shop (OpenAPI 3.0, bearer tokens).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use palisade_testkit::{free_port, HttpClient, TempDir};

use crate::support::{bin, wait_ready, Proc};

fn init(spec: &Path, upstream: &str, out: &Path, port: u16, admin: u16) -> std::process::Output {
    bin()
        .arg("init")
        .arg("--spec")
        .arg(spec)
        .args(["--upstream", upstream])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

async fn send(m: http::Method, url: &str, h: &[(&str, &str)], body: &str) -> u16 {
    HttpClient::h1()
        .send(m, url, h, body.as_bytes())
        .await
        .unwrap()
        .status
        .as_u16()
}

fn would_refuse(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| l.contains("verdict=\"monitor_deny\""))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_config_from_the_clinics_description_passes_good_traffic_and_counts_attacks() {
    let (_app, api) = crate::scan::start("none").await;
    let dir = TempDir::new("init-clinic");
    let spec = dir.path().join("swagger.json");
    std::fs::copy(crate::scan::clinic().join("swagger.json"), &spec).unwrap();
    let out = dir.path().join("palisade.yaml");
    let (port, admin) = (free_port(), free_port());
    let o = init(&spec, &format!("http://127.0.0.1:{api}"), &out, port, admin);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    // explained, monitor first, the description named beside the config
    assert!(text.contains("# Every policy starts in monitor mode"));
    assert!(text.contains("spec: \"swagger.json\""), "{text}");
    assert!(text.contains("base_path: \"/api/v2\""), "{text}");
    let policies = text.matches("      - type: ").count();
    let headers = text.matches("      - type: \"headers\"").count();
    assert_eq!(
        text.matches("        mode: \"monitor\"").count(),
        policies - headers
    );
    assert!(
        text.contains("name: \"login-auth-token\""),
        "a route of its own: {text}"
    );
    assert!(
        text.contains("key: [\"client_ip\", \"body:email\"]"),
        "{text}"
    );
    let v = bin().arg("validate").arg(&out).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));

    let mut gw = Proc(
        bin()
            .args(["run"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(&mut gw, admin).await;
    let url = |p: &str| format!("http://127.0.0.1:{port}/api/v2{p}");
    let alice = [("authorization", "Token tok-alice-0b1c")];
    use http::Method;
    // good traffic, every kind of input the description has: not one would-refuse
    for p in [
        "/profile",
        "/patients",
        "/patients/11",
        "/drugs?term=amox",
        "/appointments?patient_id=11",
    ] {
        assert_eq!(send(Method::GET, &url(p), &alice, "").await, 200, "{p}");
    }
    assert_eq!(send(Method::GET, &url("/health"), &[], "").await, 200);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(
        send(
            Method::POST,
            &url("/auth/token"),
            &form,
            "email=alice%40clinic.example&password=alice-pass-2019"
        )
        .await,
        200
    );
    let form_a = [alice[0], form[0]];
    assert_eq!(
        send(
            Method::POST,
            &url("/patients"),
            &form_a,
            "name=Rex2&notes=ok"
        )
        .await,
        201
    );
    let json_a = [alice[0], ("content-type", "application/json")];
    assert_eq!(
        send(
            Method::PATCH,
            &url("/profile"),
            &json_a,
            r#"{"full_name":"Alice M"}"#
        )
        .await,
        200
    );
    let a = palisade_testkit::get(&format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .text();
    assert_eq!(
        would_refuse(&a),
        Vec::<String>::new(),
        "good traffic is never refused"
    );

    // attacks: counted, not refused (monitor mode)
    assert_eq!(
        send(Method::GET, &url("/profile"), &[], "").await,
        401,
        "the clinic refuses itself"
    );
    assert_eq!(
        send(
            Method::GET,
            &url("/drugs?term=x%27%20OR%201%3D1--"),
            &alice,
            ""
        )
        .await,
        200
    );
    assert_eq!(
        send(Method::POST, &url("/patients"), &form_a, "notes=no-name").await,
        400
    );
    // the clinic takes JSON here too; the description says form: counted by the contract
    send(
        Method::POST,
        &url("/patients"),
        &json_a,
        r#"{"name":"Rex"}"#,
    )
    .await;
    for _ in 0..11 {
        send(
            Method::POST,
            &url("/auth/token"),
            &form,
            "email=bob%40clinic.example&password=guess",
        )
        .await;
    }
    let m = palisade_testkit::get(&format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .text();
    let w = would_refuse(&m).join("\n");
    for code in [
        "credentials.missing",
        "threat.detected",
        "contract.invalid_request",
        "contract.unsupported_media_type",
        "ratelimit.exceeded",
    ] {
        assert!(w.contains(code), "{code} counted:\n{w}");
    }
}

#[tokio::test]
async fn a_config_from_the_shops_description_validates() {
    let dir = TempDir::new("init-shop");
    let spec = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../palisade-scan/tests/data/sample-api.yaml");
    let out = dir.path().join("palisade.yaml");
    let o = init(
        &spec,
        "http://127.0.0.1:3000",
        &out,
        free_port(),
        free_port(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("scheme: \"Bearer\""), "{text}");
    assert!(text.contains("name: \"login-auth-login\""), "{text}");
    let v = bin().arg("validate").arg(&out).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    // a bad upstream is refused with a reason
    let o = init(&spec, "localhost:3000", &out, free_port(), free_port());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--upstream `localhost:3000`"));
}
