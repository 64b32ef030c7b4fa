//! `palisade scan` through the binary, against an API written apart from the scanner's own
//! sample and in another style (`tests/upstreams/clinic`: Python's http.server, a Swagger 2.0
//! description in JSON, `Token` keys, integer keys, form-encoded writes, a key in a query
//! parameter, real SQLite, a real shell, real files, a real HTTP fetch). No rule of the
//! scanner was written against it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{bin, Proc};

pub(crate) fn clinic() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/upstreams/clinic")
}

pub(crate) async fn start(flaws: &str) -> (Proc, u16) {
    let port = palisade_testkit::free_port();
    let child = Command::new("python3")
        .arg(clinic().join("app.py"))
        .arg(port.to_string())
        .arg(flaws)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 (scripts/test installs it)");
    let p = Proc(child);
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (p, port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the clinic API did not listen on {port}");
}

pub(crate) struct Run {
    pub code: Option<i32>,
    pub report: serde_json::Value,
    pub stderr: String,
}

/// Runs the binary (off the async runtime: it takes a while) with identity A given as
/// `a_flag`, B from an environment variable and admin from a file.
pub(crate) async fn scan(port: u16, a_flag: &str, extra: &[&str]) -> Run {
    let dir = palisade_testkit::TempDir::new("scan-clinic");
    let admin_file = dir.path().join("admin.token");
    std::fs::write(&admin_file, "Token tok-admin-5d9a\n").unwrap();
    let out = dir.path().join("report.json");
    let mut cmd = bin();
    cmd.arg("scan")
        .arg("--spec")
        .arg(clinic().join("swagger.json"))
        .args(["--target", &format!("http://127.0.0.1:{port}/api/v2")])
        .args(["--auth-a", a_flag])
        .args(["--auth-b", "env:CLINIC_B"])
        .arg("--auth-admin")
        .arg(format!("@{}", admin_file.display()))
        .args(["--format", "json", "--fail-on", "high"])
        .args(if extra.contains(&"--rate") {
            &[][..]
        } else {
            &["--rate", "500"][..]
        })
        .arg("-o")
        .arg(&out)
        .args(extra)
        .env("CLINIC_B", "Token tok-bob-77e2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let report = std::fs::read_to_string(&out)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    Run {
        code: output.status.code(),
        report,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn checks(r: &serde_json::Value) -> BTreeSet<String> {
    r["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["check"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn the_binary_finds_the_flaws_of_an_api_it_was_not_written_against() {
    let (_app, port) = start("all").await;
    let r = scan(port, "Token tok-alice-0b1c", &["--allow-unsafe"]).await;
    assert_eq!(r.code, Some(1), "a high finding exits 1: {}", r.stderr);
    let want: BTreeSet<String> = [
        "auth.missing",
        "bola.read",
        "bola.write",
        "bfla",
        "mass_assignment",
        "data.secret",
        "data.excess",
        "injection.sql",
        "injection.command",
        "injection.path_traversal",
        "ssrf",
        "xss.reflected",
        "errors.verbose",
        "auth.user_enumeration",
        "auth.login_unlimited",
        "ratelimit.none",
        "cors.credentials",
        "headers.nosniff",
        "headers.cache",
        "disclosure.version",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    let got = checks(&r.report);
    assert_eq!(
        got,
        want,
        "{}",
        serde_json::to_string_pretty(&r.report).unwrap()
    );
    // B read A's patient by its path key and A's appointments by a key in the query
    let titles: Vec<&str> = r.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["title"].as_str())
        .collect();
    assert!(
        titles
            .iter()
            .any(|t| t.starts_with("GET /patients/{pk}: identity B reads")),
        "{titles:?}"
    );
    assert!(
        titles
            .iter()
            .any(|t| t.starts_with("GET /appointments: identity B reads")),
        "{titles:?}"
    );
    let sent = r.report["requests"].as_u64().unwrap();
    assert!(sent > 200 && sent <= 3000, "{sent} requests");
    // the keys never appear whole
    let text = r.report.to_string();
    for key in ["tok-alice-0b1c", "tok-bob-77e2", "tok-admin-5d9a"] {
        assert!(!text.contains(key), "{key} in the report");
    }
}

#[tokio::test]
async fn the_fixed_api_gives_no_finding_and_exit_0() {
    let (_app, port) = start("none").await;
    let r = scan(port, "Token tok-alice-0b1c", &["--allow-unsafe"]).await;
    assert_eq!(
        checks(&r.report),
        BTreeSet::new(),
        "{}",
        serde_json::to_string_pretty(&r.report).unwrap()
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // what it created, it deleted
    let cleanup = r.report["cleanup"].as_array().unwrap();
    assert!(!cleanup.is_empty());
    assert!(
        cleanup
            .iter()
            .all(|c| c.as_str().unwrap().contains("deleted")),
        "{cleanup:?}"
    );
}

#[tokio::test]
async fn a_refused_identity_and_a_zero_rate_exit_2_and_say_why() {
    let (_app, port) = start("none").await;
    let r = scan(port, "Token not-a-key", &[]).await;
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("identity A (--auth-a) is not accepted"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("GET /profile answers 401"),
        "{}",
        r.stderr
    );
    let r = scan(port, "Token tok-alice-0b1c", &["--rate", "0"]).await;
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("--rate 0"), "{}", r.stderr);
    let r = scan(port, "env:PALISADE_TEST_NO_SUCH_VARIABLE", &[]).await;
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains(
            "--auth-a: the environment variable `PALISADE_TEST_NO_SUCH_VARIABLE` is not set"
        ),
        "{}",
        r.stderr
    );
}
