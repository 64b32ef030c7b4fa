//! The documented commands are tests: README.md's "Try it" block and the commands the
//! quickstart prints are run as written (only the ports differ: the test picks free ones)
//! with a real shell and curl against a fresh quickstart, and every comment's promise is
//! checked: the status codes it names, in order; the refusal codes it names; `problem+json`,
//! secure headers, a request id and `WWW-Authenticate` where it says so.

use std::process::Stdio;

use palisade_testkit::{free_port, TempDir};

use crate::support::{bin, wait_ready, Proc};

/// One command of a block (continuation lines joined) and the comment that follows it.
#[derive(Debug)]
struct Step {
    shell: String,
    promise: String,
}

/// Splits a shell block into commands and their comments. A line that is only a comment adds
/// to the previous command's promise.
fn steps(block: &str) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    let mut pending = String::new();
    let mut pending_comment = String::new();
    for line in block.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if t.starts_with('#') && pending.is_empty() {
            if let Some(last) = out.last_mut() {
                last.promise.push(' ');
                last.promise.push_str(t.trim_start_matches('#').trim());
            }
            continue;
        }
        let (code, comment) = match t.find("  #") {
            Some(i) => (t[..i].trim_end(), t[i + 3..].trim()),
            None => (t, ""),
        };
        if !comment.is_empty() {
            pending_comment.push_str(comment);
        }
        match code.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(code);
                out.push(Step {
                    shell: std::mem::take(&mut pending),
                    promise: std::mem::take(&mut pending_comment),
                });
            }
        }
    }
    out
}

/// Status codes named in a promise, in order.
fn codes(promise: &str) -> Vec<String> {
    promise
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| w.len() == 3 && matches!(w.as_bytes()[0], b'1'..=b'5'))
        .map(str::to_string)
        .collect()
}

/// Refusal codes named in a promise (`threat.detected`, `network.ip_denied`).
fn refusal_codes(promise: &str) -> Vec<String> {
    promise
        .split(|c: char| !(c.is_ascii_lowercase() || c == '_' || c == '.'))
        .filter(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 2 && parts.iter().all(|p| p.len() > 1)
        })
        .map(str::to_string)
        .collect()
}

/// Runs every step in one shell (so `TOKEN=…` carries over) and returns each one's output and
/// exit status.
fn run(steps: &[Step]) -> Vec<(String, i32)> {
    let mut script = String::from("set +e\n");
    for (i, s) in steps.iter().enumerate() {
        script.push_str(&format!(
            "echo '@@step {i}'\n{{ {}\n}} 2>&1\necho \"@@rc $?\"\n",
            s.shell
        ));
    }
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut results = Vec::new();
    for part in text.split("@@step ").skip(1) {
        let body = part.split_once('\n').map_or("", |(_, b)| b);
        let (output, rc) = body.rsplit_once("@@rc ").unwrap_or((body, "-1"));
        results.push((output.to_string(), rc.trim().parse().unwrap_or(-1)));
    }
    results
}

/// Checks each step's promise against what it printed.
fn check(what: &str, steps: &[Step]) {
    assert!(
        steps.len() >= 10,
        "{what}: only {} commands found",
        steps.len()
    );
    let results = run(steps);
    assert_eq!(results.len(), steps.len(), "{what}: every command ran");
    let mut failures = Vec::new();
    for (s, (output, rc)) in steps.iter().zip(&results) {
        let lower = output.to_ascii_lowercase();
        let mut fail = |why: String| {
            failures.push(format!(
                "`{}`\n  promise: {}\n  {why}\n  output: {}",
                s.shell,
                s.promise,
                output.chars().take(600).collect::<String>()
            ))
        };
        if *rc != 0 {
            fail(format!("exit status {rc}"));
            continue;
        }
        let statuses: Vec<String> = output
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                if let Some(rest) = l.strip_prefix("HTTP/") {
                    rest.split_whitespace().nth(1).map(str::to_string)
                } else if l.len() == 3 && l.bytes().all(|b| b.is_ascii_digit()) {
                    Some(l.to_string())
                } else {
                    None
                }
            })
            .collect();
        let want = codes(&s.promise);
        if !want.is_empty() && statuses != want {
            fail(format!("statuses {statuses:?}, promised {want:?}"));
        }
        for c in refusal_codes(&s.promise) {
            // problem+json, a WWW-Authenticate error, or a SOAP Fault's detail
            if !output.contains(&format!("\"code\":\"{c}\""))
                && !output.contains(&format!("error=\"{c}\""))
                && !output.contains(&format!("<p:code>{c}</p:code>"))
            {
                fail(format!("no `{c}` in the answer"));
            }
        }
        let promise = s.promise.to_ascii_lowercase();
        let mut needs = |word: &str, header: &str| {
            if promise.contains(word) && !lower.contains(header) {
                fail(format!("promised {word}, no `{header}`"));
            }
        };
        needs("problem+json", "content-type: application/problem+json");
        needs("secure headers", "x-content-type-options: nosniff");
        needs("x-request-id", "x-request-id:");
        needs("www-authenticate", "www-authenticate:");
        if s.shell.contains("/metrics") && !output.contains("palisade_") {
            fail("no metrics".into());
        }
    }
    assert!(failures.is_empty(), "{what}:\n{}", failures.join("\n\n"));
}

/// A fresh quickstart on free ports; its stderr (where it prints its commands) in a file.
async fn quickstart(dir: &TempDir) -> (Proc, u16, u16, std::path::PathBuf) {
    let (demo, port, admin) = (free_port(), free_port(), free_port());
    let log = dir.path().join("stderr.txt");
    let mut child = Proc(
        bin()
            .args(["quickstart", "--demo", &format!("127.0.0.1:{demo}")])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .arg("--dir")
            .arg(dir.path().join("qs"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_ready(&mut child, admin).await;
    (child, port, admin, log)
}

/// What the quickstart printed on stderr, once it printed all of it.
async fn printed(log: &std::path::Path) -> String {
    let mut printed = String::new();
    for _ in 0..100 {
        printed = std::fs::read_to_string(log).unwrap_or_default();
        if printed.contains("Stop with Ctrl-C.") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    printed
}

#[tokio::test]
async fn the_readme_try_it_block_does_what_its_comments_say() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let after = readme.split_once("## Try it").expect("a Try it section").1;
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, b)| b.split_once("```"))
        .expect("a sh block")
        .0;
    let dir = TempDir::new("readme-try");
    let (_qs, port, admin, _) = quickstart(&dir).await;
    let block = block
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"));
    let s = steps(&block);
    tokio::task::spawn_blocking(move || check("README.md", &s))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_commands_the_quickstart_prints_do_what_they_say() {
    let dir = TempDir::new("readme-printed");
    let (_qs, _, _, log) = quickstart(&dir).await;
    let printed = printed(&log).await;
    let block = printed
        .split_once("Try:\n")
        .and_then(|(_, b)| b.split_once("Stop with Ctrl-C."))
        .expect("the printed commands")
        .0
        .to_string();
    let s = steps(&block);
    tokio::task::spawn_blocking(move || check("the quickstart's printed commands", &s))
        .await
        .unwrap();
}

#[test]
fn promises_are_read_from_comments() {
    let s = steps("curl -i a \\\n  -d x   # an injection: 403 threat.detected\nfor i in 1; do x; done\n    # then: 201 429\n");
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].shell, "curl -i a  -d x");
    assert_eq!(codes(&s[0].promise), ["403"]);
    assert_eq!(refusal_codes(&s[0].promise), ["threat.detected"]);
    assert_eq!(codes(&s[1].promise), ["201", "429"]);
    assert_eq!(codes("5 writes per 10 s: 201"), ["201"]);
}

#[tokio::test]
async fn the_quickstart_prints_a_console_token_and_fills_the_console_with_demo_traffic() {
    let dir = TempDir::new("readme-console");
    let (_qs, _, admin, log) = quickstart(&dir).await;
    let printed = printed(&log).await;
    assert!(
        printed.contains(&format!("http://127.0.0.1:{admin}/console/")),
        "{printed}"
    );
    let token = printed
        .lines()
        .find_map(|l| {
            l.split_once("for this run only): ")
                .map(|(_, t)| t.trim().to_string())
        })
        .expect("the one-time token is printed");
    // the config holds its hash only
    let cfg = std::fs::read_to_string(dir.path().join("qs/palisade.yaml")).unwrap();
    assert!(!cfg.contains(&token) && cfg.contains("role: operator"));
    let auth = format!("Bearer {token}");
    let overview = palisade_testkit::HttpClient::h1()
        .send(
            http::Method::GET,
            &format!("http://127.0.0.1:{admin}/api/v1/overview"),
            &[("authorization", auth.as_str())],
            b"",
        )
        .await
        .unwrap()
        .json();
    let refused = overview["last_hour"]["refused"].as_u64().unwrap();
    let monitored = overview["last_hour"]["would_refuse"].as_u64().unwrap();
    assert!(refused >= 4 && monitored >= 1, "{overview}");
    let codes = overview["last_hour"]["by_code"].to_string();
    for c in [
        "threat.detected",
        "network.ip_denied",
        "auth.missing_credential",
    ] {
        assert!(codes.contains(c), "{c} not in {codes}");
    }
}
