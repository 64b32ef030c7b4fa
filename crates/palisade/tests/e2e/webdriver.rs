//! A small W3C WebDriver client for the console tests: Debian's chromedriver driving
//! headless Chromium, spoken to in JSON over HTTP (the protocol is a handful of calls; a
//! client crate would bring a second HTTP stack for them).

use std::time::{Duration, Instant};

use http::Method;
use palisade_testkit::{free_port, HttpClient, TempDir};
use serde_json::{json, Value};

use crate::support::Proc;

/// The W3C name of an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver, started on a free port; stopped when dropped.
pub struct Driver {
    _proc: Proc,
    base: String,
    _profile: TempDir,
    profile: String,
}

impl Driver {
    /// Starts Debian's chromedriver (scripts/test installs chromium and chromium-driver).
    pub async fn start() -> Driver {
        let exe = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver (Debian's chromium-driver; scripts/test installs it)");
        let port = free_port();
        let proc = Proc(
            std::process::Command::new(exe)
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let base = format!("http://127.0.0.1:{port}");
        let profile = TempDir::new("chromium-profile");
        let d = Driver {
            _proc: proc,
            base,
            profile: profile.path().display().to_string(),
            _profile: profile,
        };
        for _ in 0..100 {
            if let Ok(r) = HttpClient::h1()
                .send(Method::GET, &format!("{}/status", d.base), &[], b"")
                .await
            {
                if r.status == 200 && r.json()["value"]["ready"] == true {
                    return d;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not become ready");
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let r = HttpClient::h1()
            .send(
                method,
                &format!("{}{path}", self.base),
                &[("content-type", "application/json")],
                bytes.as_bytes(),
            )
            .await
            .unwrap();
        let v = r.json();
        assert!(r.status.is_success(), "WebDriver {path}: {v}");
        v["value"].clone()
    }

    /// A new headless browser session.
    pub async fn session(&self) -> Session<'_> {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("Debian's chromium");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", format!("--user-data-dir={}", self.profile)],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = self.call(Method::POST, "/session", Some(caps)).await;
        let id = v["sessionId"].as_str().unwrap().to_string();
        Session { d: self, id }
    }
}

/// One browser session.
pub struct Session<'a> {
    d: &'a Driver,
    id: String,
}

impl Session<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.d
            .call(method, &format!("/session/{}{path}", self.id), body)
            .await
    }

    /// Opens a URL and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.call(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs a script (its body; `arguments` are `args`) and returns its value.
    pub async fn exec(&self, script: &str, args: Value) -> Value {
        self.call(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Runs an async script: it calls `arguments[arguments.length - 1]` with its result.
    pub async fn exec_async(&self, script: &str) -> Value {
        self.call(
            Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// The first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    /// Types into an element.
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            Method::POST,
            &format!("/element/{e}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks an element.
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// The text of the first element matching `css`, or "" when there is none.
    pub async fn text(&self, css: &str) -> String {
        self.exec(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    /// Polls `script` (returning a truthy value when done) until it holds or `within` passes;
    /// how long it took.
    pub async fn wait_for(&self, what: &str, script: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let v = self.exec(script, json!([])).await;
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return start.elapsed();
            }
            if start.elapsed() >= within {
                let seen = self
                    .exec(
                        "return location.href + ' :: ' + (document.body ? document.body.innerText : '')",
                        json!([]),
                    )
                    .await;
                panic!("{what}: not within {within:?}; the page: {seen}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Saves a screenshot (PNG) under target/test-artifacts.
    pub async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        use base64::Engine as _;
        let v = self.call(Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// The browser console's entries since the last call (chromedriver's log endpoint).
    pub async fn console_log(&self) -> Vec<Value> {
        self.call(Method::POST, "/se/log", Some(json!({"type": "browser"})))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Ends the session (the browser exits).
    pub async fn quit(self) {
        self.call(Method::DELETE, "", None).await;
    }
}
