use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::Duration;

use palisade_proxy::Gateway;
use palisade_testkit::TempDir;

/// A gateway started in-process from YAML, with its folder.
pub struct TestGateway {
    pub gw: Gateway,
    pub dir: TempDir,
}

impl TestGateway {
    /// Writes `yaml` to a fresh folder as palisade.yaml and starts it. Listeners and the admin
    /// listener should use port 0.
    pub async fn start(yaml: &str) -> Self {
        let dir = TempDir::new("e2e");
        Self::start_in(dir, yaml).await
    }

    pub async fn start_in(dir: TempDir, yaml: &str) -> Self {
        let path = dir.write("palisade.yaml", yaml);
        let cfg = palisade_config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let gw = Gateway::start(cfg).await.unwrap();
        TestGateway { gw, dir }
    }

    /// The address of the first listener.
    pub fn addr(&self) -> SocketAddr {
        self.gw.addrs()[0].1
    }

    /// `http://addr` of the first listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// The admin listener's metrics text.
    pub async fn metrics(&self) -> String {
        let a = self.gw.admin_addr().expect("admin listener");
        palisade_testkit::get(&format!("http://{a}/metrics"))
            .await
            .text()
    }

    /// Rewrites the config file and applies it.
    pub fn rewrite(&self, yaml: &str) -> Result<(), palisade_proxy::ReloadError> {
        self.dir.write("palisade.yaml", yaml);
        self.gw.reload()
    }
}

/// A minimal config: one plain listener on port 0, an admin listener, one upstream, one
/// catch-all route with `policies` (YAML list, may be empty) and extra top-level YAML.
pub fn simple(upstream: &str, policies: &str, extra: &str) -> String {
    // deny by default: a route without an authentication policy must say it is public
    let public = ![
        "type: api_key",
        "type: jwt",
        "type: introspection",
        "type: mtls",
        "type: signature",
        "type: ws_security",
    ]
    .iter()
    .any(|t| policies.contains(t));
    format!(
        r#"{admin}
log: {{access: "off"}}
listeners:
  - {{name: public, listen: "127.0.0.1:0"}}
upstreams:
  app:
    targets: ["{upstream}"]
    timeouts: {{connect: 1s, request: 2s}}
routes:
  - name: all
    match: {{path_prefix: /}}
    upstream: app
    public: {public}
    policies: {policies}
{extra}
"#,
        admin = admin_yaml("127.0.0.1:0")
    )
}

/// The operator token of the test configs' admin section ([`admin_yaml`]).
pub const OPERATOR_TOKEN: &str = "pk_test_operator_token_0123456789";
/// The viewer token of the test configs' admin section.
pub const VIEWER_TOKEN: &str = "pk_test_viewer_token_0123456789ab";

/// An `admin:` section on `listen` with an operator (`ops`, [`OPERATOR_TOKEN`]) and a viewer
/// (`watcher`, [`VIEWER_TOKEN`]).
pub fn admin_yaml(listen: &str) -> String {
    format!(
        r#"admin:
  listen: "{listen}"
  tokens:
    - {{name: ops, role: operator, hash: "sha256:{}"}}
    - {{name: watcher, role: viewer, hash: "sha256:{}"}}"#,
        api_key_hash(OPERATOR_TOKEN),
        api_key_hash(VIEWER_TOKEN)
    )
}

/// `GET` of an admin API path with the operator token.
pub async fn admin_get(admin: SocketAddr, path: &str) -> palisade_testkit::Reply {
    let auth = format!("Bearer {OPERATOR_TOKEN}");
    palisade_testkit::HttpClient::h1()
        .send(
            http::Method::GET,
            &format!("http://{admin}{path}"),
            &[("authorization", auth.as_str())],
            b"",
        )
        .await
        .unwrap()
}

/// Asserts a problem+json refusal with this status and code.
pub fn assert_problem(r: &palisade_testkit::Reply, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "body: {}", r.text());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    let j = r.json();
    assert_eq!(j["code"], code, "{j}");
    assert_eq!(j["status"], status);
    assert!(j["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(
        r.header("x-request-id").as_deref(),
        j["request_id"].as_str()
    );
}

/// The real binary.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the gateway `child` answers /readyz on its admin port `admin` with 200; fails
/// at once, with its exit status, if the process ends first (its log on stderr says why).
pub async fn wait_ready(child: &mut Proc, admin: u16) {
    for _ in 0..100 {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("the gateway exited before it was ready ({status}); its log on stderr says why");
        }
        if let Ok(r) = palisade_testkit::HttpClient::h1()
            .send(
                http::Method::GET,
                &format!("http://127.0.0.1:{admin}/readyz"),
                &[],
                b"",
            )
            .await
        {
            if r.status == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway did not become ready within 10 s");
}

/// Starts the real binary on the config file `cfg` (its log on our stderr) and waits until
/// its admin listener on `admin` is ready.
pub async fn start_binary(cfg: &std::path::Path, admin: u16) -> Proc {
    let mut gw = Proc(
        bin()
            .args(["run", "--config"])
            .arg(cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    wait_ready(&mut gw, admin).await;
    gw
}

/// Sends `sig` (`HUP`, `TERM` …) to the process, with kill(1).
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Sends SIGTERM and waits for the process to exit, at most `within`; its exit status.
pub async fn terminate(child: &mut Proc, within: Duration) -> std::process::ExitStatus {
    signal(&child.0, "TERM");
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Some(s) = child.0.try_wait().unwrap() {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the process did not exit within {within:?} of SIGTERM");
}

/// The Python with the test packages (scripts/test makes it: target/pyenv).
pub fn python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("PALISADE_TEST_PYTHON") {
        return std::path::PathBuf::from(p);
    }
    let p =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/pyenv/bin/python3");
    assert!(
        p.exists(),
        "{} is missing: scripts/test makes it (python3 -m venv target/pyenv && pip install -r crates/palisade/tests/python/requirements.txt)",
        p.display()
    );
    p
}

/// Runs one of the Python scripts of tests/python with `args` (off the async runtime) and
/// reads the JSON line it prints per case.
pub async fn run_python(script: &str, args: Vec<std::ffi::OsString>) -> Vec<serde_json::Value> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(path)
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Starts one of the Python scripts of tests/python as a server (its args after the script),
/// and reads the JSON lines it prints as they come; the first (`{"listening": …}`) is
/// awaited and returned with the process.
pub fn python_server(
    script: &str,
    args: &[String],
) -> (
    Proc,
    serde_json::Value,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    use std::io::BufRead;
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut child = Command::new(python())
        .arg(path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{script} did not start"));
    (Proc(child), first, rx)
}

/// The hex SHA-256 of an API key, as `api_keys[].hash` holds it after `sha256:`.
pub fn api_key_hash(key: &str) -> String {
    palisade_core::hex::encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes()).as_ref(),
    )
}

/// Polls `f` until it holds, at most 15 s; fails naming `what` otherwise.
pub async fn eventually<F: std::future::Future<Output = bool>>(what: &str, f: impl Fn() -> F) {
    let end = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < end {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 15 s");
}
