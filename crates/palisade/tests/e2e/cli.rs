//! The real binary: --version/--help, `validate` with every error at once, every example
//! config validating, `run` with SIGHUP reload and SIGTERM drain, and `quickstart`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use palisade_testkit::{free_port, MockUpstream, TempDir, TestCa};

use crate::support::{bin, signal, terminate, wait_ready, Proc};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn version_and_help() {
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("palisade "));
    for sub in [
        "run",
        "validate",
        "quickstart",
        "keys",
        "audit",
        "scan",
        "patch",
        "init",
    ] {
        let out = bin().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "{sub} --help");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
    let out = bin().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn keys_new_prints_a_key_once_and_only_its_hash_for_the_config() {
    let run = || {
        let out = bin()
            .args(["keys", "new", "--label", "ci"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let (a, b) = (run(), run());
    assert_ne!(a, b, "every key is fresh");
    let key = a.lines().nth(1).unwrap().trim().to_string();
    assert!(key.starts_with("pk_") && key.len() >= 40, "{a}");
    let line = a.lines().find(|l| l.contains("hash:")).unwrap();
    let hash = line.split('"').nth(1).unwrap();
    let want: String = palisade_identity::consumers::hash_key(&key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hash, format!("sha256:{want}"));
    assert!(line.contains("label: \"ci\""));
    assert!(!line.contains(&key));
}

#[test]
fn validate_reports_every_error_with_file_and_line() {
    let dir = TempDir::new("cli-validate");
    let f = dir.write(
        "bad.yaml",
        "listeners:\n  - name: web\n    listen: 127.0.0.1:99999\nupstreams:\n  app: {targets: [\"http://127.0.0.1:1\"], balanse: round_robin}\nroutes:\n  - {name: r, upstream: nope, public: true}\n",
    );
    let out = bin().arg("validate").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let shown = f.display().to_string();
    assert!(
        err.contains(&format!("{shown}:3: listeners[0].listen:")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{shown}:5: upstreams.app.balanse: unknown field `balanse`"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{shown}:7: routes[0].upstream: no upstream named `nope`"
        )),
        "{err}"
    );
    assert!(err.contains("3 problems"), "{err}");

    // a missing file: see validate_and_run_on_a_missing_file_exit_2_and_say_so
}

fn validate_ok(path: &Path) {
    let out = bin().arg("validate").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_example_config_validates() {
    let examples = repo().join("examples");
    let mut checked = 0;
    for e in std::fs::read_dir(&examples).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        // examples that name certificate files get real ones, generated next to a copy
        let dir = TempDir::new("example");
        let ca = TestCa::new();
        std::fs::create_dir_all(dir.path().join("certs")).unwrap();
        for line in text.lines() {
            for part in line.split(['{', '}', ',', ' ']) {
                if let Some(f) = part.strip_prefix("certs/") {
                    let name = f.trim_end_matches(".pem").trim_end_matches(".key");
                    if !dir.path().join(format!("certs/{name}.pem")).exists() {
                        let host = name.to_string();
                        ca.write_server_cert(&dir.path().join("certs"), name, &[host.as_str()]);
                    }
                }
            }
        }
        // and the descriptions they name, beside the copy
        for j in std::fs::read_dir(&examples).unwrap() {
            let j = j.unwrap().path();
            if j.extension().is_some_and(|x| x == "json" || x == "wsdl") {
                std::fs::copy(&j, dir.path().join(j.file_name().unwrap())).unwrap();
            }
        }
        let copy = dir.path().join(p.file_name().unwrap());
        std::fs::write(&copy, &text).unwrap();
        validate_ok(&copy);
        checked += 1;
    }
    assert!(checked >= 2, "examples/ has {checked} configs");
}

fn run_yaml(port: u16, admin: u16, upstream: &str, version: &str) -> String {
    format!(
        r#"admin: {{listen: "127.0.0.1:{admin}"}}
runtime: {{workers: 1, drain_timeout: 5s, watch: false}}
log: {{access: "off"}}
listeners: [{{name: public, listen: "127.0.0.1:{port}"}}]
upstreams: {{app: {{targets: ["{upstream}"]}}}}
routes:
  - name: all
    upstream: app
    public: true
    policies: [{{type: headers, response: {{set: {{x-version: "{version}"}}}}}}]
"#
    )
}

#[tokio::test]
async fn run_reloads_on_sighup_and_drains_on_sigterm() {
    let up = MockUpstream::start("a").await;
    let dir = TempDir::new("cli-run");
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.write("palisade.yaml", &run_yaml(port, admin, &up.url(), "one"));
    let mut child = Proc(
        bin()
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_ready(&mut child, admin).await;
    let url = format!("http://127.0.0.1:{port}/x");
    assert_eq!(
        palisade_testkit::get(&url)
            .await
            .header("x-version")
            .as_deref(),
        Some("one")
    );

    std::fs::write(&cfg, run_yaml(port, admin, &up.url(), "two")).unwrap();
    signal(&child.0, "HUP");
    let mut v = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        v = palisade_testkit::get(&url).await.header("x-version");
        if v.as_deref() == Some("two") {
            break;
        }
    }
    assert_eq!(v.as_deref(), Some("two"));

    // a broken edit is refused and the old config keeps serving
    std::fs::write(&cfg, "listeners: [\n").unwrap();
    signal(&child.0, "HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        palisade_testkit::get(&url)
            .await
            .header("x-version")
            .as_deref(),
        Some("two")
    );

    let status = terminate(&mut child, Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("reload refused"), "{err}");
    assert!(err.contains("drained"), "{err}");
}

#[test]
fn run_refuses_an_invalid_config_with_exit_2() {
    let dir = TempDir::new("cli-bad");
    let f = dir.write("p.yaml", "listeners: []\n");
    let out = bin().args(["run", "--config"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least one listener"));
    // the file may be given as `validate` takes it, without the flag
    let out = bin().arg("run").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least one listener"));
    // a run with no file at all is a usage error
    let out = bin().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn validate_and_run_on_a_missing_file_exit_2_and_say_so() {
    let missing = std::env::temp_dir().join("palisade-no-such-config-7f3a.yaml");
    let out = bin().arg("validate").arg(&missing).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "README: 2 is an error of the command"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read") && err.contains("palisade-no-such-config-7f3a.yaml"),
        "{err}"
    );
    let out = bin().arg("run").arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[tokio::test]
async fn quickstart_serves_the_demo_api() {
    let dir = TempDir::new("cli-qs");
    let (demo, port, admin) = (free_port(), free_port(), free_port());
    let mut child = Proc(
        bin()
            .args([
                "quickstart",
                "--demo",
                &format!("127.0.0.1:{demo}"),
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin",
                &format!("127.0.0.1:{admin}"),
                "--dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(&mut child, admin).await;
    let r = palisade_testkit::get(&format!("http://127.0.0.1:{port}/api/users/1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "Ada Lovelace");
    assert_eq!(
        r.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    let r = palisade_testkit::get(&format!("http://127.0.0.1:{port}/admin/stats")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "network.ip_denied");
    // an injection in a write: refused by the threat policy (it counts toward the write limit)
    let r = palisade_testkit::HttpClient::h1()
        .send(
            http::Method::POST,
            &format!("http://127.0.0.1:{port}/api/users"),
            &[("content-type", "application/json")],
            br#"{"name":"<script>alert(1)</script>"}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.json()["code"], "threat.detected", "{}", r.text());
    // writes are limited to 5 per 10 s per client
    let mut codes = Vec::new();
    for _ in 0..6 {
        let r = palisade_testkit::HttpClient::h1()
            .send(
                http::Method::POST,
                &format!("http://127.0.0.1:{port}/api/users"),
                &[("content-type", "application/json")],
                br#"{"name":"Bot"}"#,
            )
            .await
            .unwrap();
        codes.push(r.status.as_u16());
    }
    assert_eq!(codes, [201, 201, 201, 201, 429, 429]);

    // the contract and the injection detection on the demo API
    let c = palisade_testkit::HttpClient::h1();
    let r = c
        .send(
            http::Method::GET,
            &format!("http://127.0.0.1:{port}/api/users/abc"),
            &[],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.json()["code"], "contract.invalid_request");
    let r = c
        .send(
            http::Method::GET,
            &format!("http://127.0.0.1:{port}/api/nowhere"),
            &[],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.json()["code"], "contract.unknown_operation");

    // the API-key route, with the demo key the quickstart prints
    let c = palisade_testkit::HttpClient::h1();
    let partner = format!("http://127.0.0.1:{port}/partner/users");
    let r = c.send(http::Method::GET, &partner, &[], b"").await.unwrap();
    assert_eq!(r.status, 401);
    let key = [("x-api-key", "pk_demo_quickstart_key_not_for_production")];
    let r = c
        .send(http::Method::GET, &partner, &key, b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // the JWT route, with a token from the demo issuer, as the printed commands do
    let r = c
        .send(
            http::Method::POST,
            &format!("http://127.0.0.1:{port}/idp/token?sub=ada&scope=users:read"),
            &[],
            b"",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    let auth = format!("Bearer {token}");
    let secure = format!("http://127.0.0.1:{port}/secure/users");
    let r = c
        .send(http::Method::GET, &secure, &[("authorization", &auth)], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c
        .send(
            http::Method::POST,
            &secure,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            br#"{"name":"Eve"}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "auth.insufficient_scope");
    let r = c.send(http::Method::GET, &secure, &[], b"").await.unwrap();
    assert_eq!(r.status, 401);
    validate_ok(&dir.path().join("palisade.yaml"));
}

#[test]
fn audit_reports_and_exit_codes() {
    let data = repo().join("crates/palisade-audit/tests/data");
    let dir = TempDir::new("cli-audit");
    let run = |args: &[&str]| bin().arg("audit").args(args).output().unwrap();
    let vulnerable = data.join("vulnerable.yaml");
    let fixed = data.join("fixed.yaml");
    let v = vulnerable.to_str().unwrap();
    let f = fixed.to_str().unwrap();
    // findings do not fail the run unless asked
    let out = run(&[v]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("security score 2/100, data validation 90/100"),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no terminal escapes when not a terminal"
    );
    assert_eq!(run(&[v, "--fail-on", "high"]).status.code(), Some(1));
    assert_eq!(run(&[f, "--fail-on", "low"]).status.code(), Some(0));
    // a score gate for CI
    assert_eq!(run(&[f, "--min-score", "100"]).status.code(), Some(0));
    let out = run(&[v, "--min-score", "50"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("security score 2 is below --min-score 50")
    );
    assert_eq!(run(&[v, "--min-score", "101"]).status.code(), Some(2));
    // a description that breaks the format is not scored, and fails the run
    let broken = data.join("broken.yaml");
    let out = run(&[broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not scored"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PAL-STRUCT"));
    let nopaths = dir.write(
        "nopaths.yaml",
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: [1, 2]\n",
    );
    assert_eq!(run(&[nopaths.to_str().unwrap()]).status.code(), Some(1));
    // references to other files are followed from the description's folder
    std::fs::create_dir_all(dir.path().join("parts")).unwrap();
    dir.write(
        "parts/user.yaml",
        "User: {type: object, additionalProperties: false, properties: {bio: {type: string}}}\n",
    );
    let main = dir.write(
        "split.yaml",
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /u:\n    post:\n      requestBody: {content: {application/json: {schema: {$ref: 'parts/user.yaml#/User'}}}}\n      responses: {'200': {description: ok}}\n",
    );
    let out = run(&[main.to_str().unwrap(), "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bio = j["report"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["rule"] == "PAL-LIMIT-001")
        .expect("the string of parts/user.yaml");
    assert_eq!(bio["pointer"], "parts/user.yaml#/User/properties/bio");
    assert_eq!(bio["line"], 1);
    // reports to files, in every format
    for (fmt, marker) in [
        ("json", "\"findings\""),
        ("sarif", "\"2.1.0\""),
        ("html", "<!doctype html>"),
    ] {
        let path = dir.path().join(format!("report.{fmt}"));
        let out = run(&[v, "--format", fmt, "--output", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{fmt}");
        assert!(
            std::fs::read_to_string(&path).unwrap().contains(marker),
            "{fmt}"
        );
    }
    // an ignore file: entries need a reason
    let ok = dir.write(
        "ignore.yaml",
        "- {rule: PAL-TLS-001, reason: an internal test server}\n",
    );
    let out = run(&[v, "--ignore", ok.to_str().unwrap(), "--format", "json"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("PAL-TLS-001\","));
    let bad = dir.write("bad-ignore.yaml", "- {rule: PAL-TLS-001, reason: \"\"}\n");
    let out = run(&[v, "--ignore", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no reason"));
    // errors: exit 2 with a message
    let junk = dir.write("junk.yaml", "hello: world\n");
    let out = run(&[junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an API description"));
    assert_eq!(run(&[v, "--format", "pdf"]).status.code(), Some(2));
    assert_eq!(run(&[v, "--fail-on", "severe"]).status.code(), Some(2));
}

/// A few hundred bytes of nested YAML aliases ("billion laughs") are refused with the line
/// where the expansion budget ran out, by `audit` (a description) and `validate` (a config)
/// alike, in well under a second and without growing memory.
#[test]
fn alias_bombs_are_refused_by_every_yaml_reader() {
    let dir = TempDir::new("alias-bomb");
    let mut aliases = String::from("x-a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        let list = vec![format!("*a{p}"); 10].join(", ");
        aliases.push_str(&format!("x-a{i}: &a{i} [{list}]\n"));
    }
    let spec = dir.write(
        "openapi.yaml",
        &format!("openapi: 3.0.3\ninfo: {{title: t, version: '1'}}\n{aliases}paths: {{}}\n"),
    );
    let cfg = dir.write(
        "palisade.yaml",
        &format!("admin: {{listen: 127.0.0.1:0}}\n{aliases}"),
    );
    for (cmd, file, line) in [("audit", &spec, 7), ("validate", &cfg, 6)] {
        let out = bin().arg(cmd).arg(file).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{cmd}: {text}");
        assert!(
            text.contains("aliases expand to more than"),
            "{cmd}: {text}"
        );
        assert!(
            text.contains(&format!("{}:{line}", file.display()))
                || text.contains(&format!("line {line}")),
            "{cmd}: {text}"
        );
    }
}

/// Requests still in flight at the drain deadline are cut, logged as such (the access log
/// is flushed before the process exits), and `run` exits 1 instead of 0.
#[tokio::test]
async fn requests_cut_at_the_drain_deadline_are_logged_and_exit_1() {
    let up = MockUpstream::start_with(
        "slow",
        palisade_testkit::Behaviour::Slow(Duration::from_secs(30)),
    )
    .await;
    let dir = TempDir::new("cli-cut");
    let (port, admin) = (free_port(), free_port());
    let log = dir.path().join("access.log");
    let yaml = run_yaml(port, admin, &up.url(), "one")
        .replace("drain_timeout: 5s", "drain_timeout: 300ms")
        .replace(
            r#"log: {access: "off"}"#,
            &format!(r#"log: {{access: "{}"}}"#, log.display()),
        );
    let cfg = dir.write("palisade.yaml", &yaml);
    let mut child = Proc(
        bin()
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_ready(&mut child, admin).await;
    let url = format!("http://127.0.0.1:{port}/slow");
    let pending = tokio::spawn(async move {
        palisade_testkit::HttpClient::h1()
            .send(http::Method::GET, &url, &[], b"")
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = terminate(&mut child, Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(1), "{status:?}");
    let _ = pending.await;
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("/slow"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(r#""code":"shutdown.drain_deadline""#),
        "{line}"
    );
    assert!(line.contains(r#""status":503"#), "{line}");
}

/// A taken port stops the quickstart with a hint to choose others, and the temporary folder
/// it made is gone when it ends.
#[test]
fn the_quickstart_says_what_to_do_when_a_port_is_taken_and_cleans_up() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let child = bin()
        .args(["quickstart", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--admin",
            &format!("127.0.0.1:{}", palisade_testkit::free_port()),
        ])
        .args([
            "--demo",
            &format!("127.0.0.1:{}", palisade_testkit::free_port()),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("hint: a port the quickstart uses is taken"),
        "{err}"
    );
    let dir = std::env::temp_dir().join(format!("palisade-quickstart-{pid}"));
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

/// `scripts/package` with the test binary: the tarball holds the binary (which runs), the
/// unit and the docs; the Debian package installs the binary and the systemd unit.
#[test]
fn the_package_script_builds_a_tarball_and_a_debian_package() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = palisade_testkit::TempDir::new("package");
    let o = std::process::Command::new(root.join("scripts/package"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_palisade"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let made: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let tar = made
        .iter()
        .find(|p| p.ends_with(".tar.gz"))
        .expect("a tarball");
    let x = palisade_testkit::TempDir::new("package-x");
    let st = std::process::Command::new("tar")
        .args(["-xzf", tar, "-C"])
        .arg(x.path())
        .status()
        .unwrap();
    assert!(st.success());
    let top = std::fs::read_dir(x.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for f in [
        "palisade",
        "palisade.service",
        "README.md",
        "docs/install.md",
        "examples",
    ] {
        assert!(top.join(f).exists(), "{f} in the tarball");
    }
    let v = std::process::Command::new(top.join("palisade"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("palisade "));
    let deb = made
        .iter()
        .find(|p| p.ends_with(".deb"))
        .expect("a Debian package (dpkg-deb)");
    let c = std::process::Command::new("dpkg-deb")
        .args(["--contents", deb])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&c.stdout);
    for f in [
        "./usr/bin/palisade",
        "./lib/systemd/system/palisade.service",
        "./usr/share/doc/palisade/README.md",
    ] {
        assert!(listing.contains(f), "{f} in the package:\n{listing}");
    }
    let i = std::process::Command::new("dpkg-deb")
        .args(["--field", deb, "Package", "Version"])
        .output()
        .unwrap();
    let fields = String::from_utf8_lossy(&i.stdout);
    assert!(
        fields.contains("Package: palisade")
            && fields.contains(concat!("Version: ", env!("CARGO_PKG_VERSION"))),
        "{fields}"
    );
}

/// `palisade certs dev` makes what `examples/https.yaml` needs, so the example validates after
/// the one command its header gives; keys are readable by their owner only, and the
/// certificates chain to the CA (checked by OpenSSL).
#[test]
fn certs_dev_makes_the_https_example_valid() {
    let dir = palisade_testkit::TempDir::new("certs-dev");
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/https.yaml");
    let cfg = dir.path().join("https.yaml");
    std::fs::copy(&example, &cfg).unwrap();
    let v = bin().arg("validate").arg(&cfg).output().unwrap();
    assert_eq!(
        v.status.code(),
        Some(1),
        "without certificates the example cannot load"
    );
    let certs = dir.path().join("certs");
    let o = bin()
        .args(["certs", "dev", "--out"])
        .arg(&certs)
        .args([
            "--name",
            "api.example.com",
            "--name",
            "admin.example.com",
            "--name",
            "localhost",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = bin().arg("validate").arg(&cfg).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for k in ["ca.key", "api.example.com.key", "localhost.key"] {
            let mode = std::fs::metadata(certs.join(k))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{k} is readable by others");
        }
    }
    for name in ["api.example.com", "localhost"] {
        let ok = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(certs.join("ca.pem"))
            .arg(certs.join(format!("{name}.pem")))
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stdout)
        );
    }
}

/// Shell completions and man pages come from the command-line definition: bash completes
/// commands and flags with the real script, and every man page renders with groff without a
/// warning and documents the flags of its command.
#[test]
fn completions_and_man_pages_are_generated_from_the_cli() {
    let out = bin().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let dir = TempDir::new("completions");
    let script = dir.write("palisade.bash", &String::from_utf8_lossy(&out.stdout));
    let probe = format!(
        "source {}; complete -p palisade; \
         COMP_WORDS=(palisade au); COMP_CWORD=1; _palisade palisade au palisade; echo \"1:${{COMPREPLY[*]}}\"; \
         COMP_WORDS=(palisade audit x --min); COMP_CWORD=3; _palisade palisade --min x; echo \"2:${{COMPREPLY[*]}}\"",
        script.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &probe])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("-F _palisade palisade"), "{text}");
    assert!(text.contains("1:audit"), "{text}");
    assert!(text.contains("2:--min-score"), "{text}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("quickstart"),
            "{shell}"
        );
    }
    assert_eq!(
        bin()
            .args(["completions", "tcsh"])
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
    let man = dir.path().join("man");
    let out = bin()
        .args(["man", "--out", man.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pages: Vec<std::path::PathBuf> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(pages.len() >= 15, "{pages:?}");
    for page in &pages {
        let out = std::process::Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-P-bcu"])
            .arg(page)
            .output()
            .expect("groff (scripts/test installs groff-base)");
        assert!(out.status.success(), "{}", page.display());
        assert!(
            out.stderr.is_empty(),
            "{}: {}",
            page.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let name = page.file_stem().unwrap().to_string_lossy().into_owned();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains("NAME") && text.contains(&name),
            "{name}: {text}"
        );
        if name == "palisade-audit" {
            assert!(
                text.contains("--min-score") && text.contains("--max-results"),
                "{text}"
            );
        }
    }
}

/// `palisade schema` describes the config model for editors: every shipped example and a
/// config `palisade init` writes validate against it with ajv (the validator editors use),
/// and the mistakes `validate` reports (an unknown field, a wrong type, an unknown policy)
/// are refused by it too.
#[test]
fn the_config_schema_accepts_every_example_and_refuses_mistakes() {
    let dir = TempDir::new("schema");
    let out = bin().arg("schema").output().unwrap();
    assert!(out.status.success());
    let schema = dir.write(
        "palisade.schema.json",
        &String::from_utf8_lossy(&out.stdout),
    );
    let as_json = |name: &str, yaml: &str| -> PathBuf {
        let v = palisade_core::yaml::parse(yaml)
            .unwrap_or_else(|e| panic!("{name}: {}", e.message))
            .value;
        dir.write(&format!("{name}.json"), &v.to_string())
    };
    let mut good = Vec::new();
    for e in ["quickstart.yaml", "https.yaml"] {
        let text = std::fs::read_to_string(repo().join("examples").join(e)).unwrap();
        good.push(as_json(e, &text));
    }
    let written = dir.path().join("init.yaml");
    let out = bin()
        .arg("init")
        .arg("--spec")
        .arg(repo().join("examples/demo-openapi.json"))
        .args(["--upstream", "http://127.0.0.1:3000", "-o"])
        .arg(&written)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    good.push(as_json("init", &std::fs::read_to_string(&written).unwrap()));
    let validator = repo().join("crates/palisade/tests/schema");
    assert!(
        validator.join("node_modules/ajv").exists(),
        "npm ci --prefix {} (scripts/test does)",
        validator.display()
    );
    let check = |files: &[PathBuf]| {
        std::process::Command::new("node")
            .arg(validator.join("validate.js"))
            .arg(&schema)
            .args(files)
            .output()
            .unwrap()
    };
    let out = check(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // mistakes: each one refused, with the place named
    let base = "listeners: [{name: public, listen: 127.0.0.1:8080}]\nupstreams:\n  users: {targets: [http://127.0.0.1:9000]}\nroutes:\n  - {name: r, match: {path_prefix: /}, upstream: users, public: true}\n";
    for (name, yaml, want) in [
        (
            "typo",
            base.replace("{targets:", "{balanse: round_robin, targets:"),
            "\"additionalProperty\":\"balanse\"",
        ),
        (
            "type",
            base.replace("[http://127.0.0.1:9000]", "5"),
            "should be array",
        ),
        (
            "policy",
            base.replace(
                "public: true}",
                "public: true, policies: [{type: firewall}]}",
            ),
            ".routes[0].policies[0]",
        ),
        (
            "section",
            format!("{base}listen: 1\n"),
            "\"additionalProperty\":\"listen\"",
        ),
    ] {
        let f = as_json(name, &yaml);
        let out = check(std::slice::from_ref(&f));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{name} passed the schema");
        assert!(text.contains(want), "{name}: {text}");
    }
    let ok = as_json("base", base);
    assert!(check(&[ok]).status.success());
}
