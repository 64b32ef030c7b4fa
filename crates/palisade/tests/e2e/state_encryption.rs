//! Encryption at rest through the real binary: local quota counters in an encrypted state
//! store survive restarts, the file read raw shows no counter name or key, a wrong key stops
//! the start with a clear error (nothing re-created), and a key rotated by SIGHUP while
//! requests flow loses no count.

use std::time::Duration;

use palisade_testkit::{free_port, MockUpstream, TempDir};

use crate::support::{bin, signal, start_binary, terminate};

const USER: &str = "alice-counter-name";

fn yaml(port: u16, admin: u16, upstream: &str, key: &str, previous: &str) -> String {
    format!(
        r#"{admin_section}
log: {{access: "off"}}
runtime:
  state_dir: state
  state_key: "${{file:{key}}}"
  state_previous_keys: [{previous}]
listeners:
  - {{name: public, listen: "127.0.0.1:{port}"}}
upstreams:
  app: {{targets: ["{upstream}"]}}
routes:
  - name: metered
    match: {{path_prefix: /}}
    upstream: app
    public: true
    policies:
      - {{type: quota, key: "header:x-user", period: day, requests: 100000}}
"#,
        admin_section = crate::support::admin_yaml(&format!("127.0.0.1:{admin}"))
    )
}

async fn used(admin: u16) -> u64 {
    let r = crate::support::admin_get(
        ([127, 0, 0, 1], admin).into(),
        &format!("/api/v1/quotas?key={USER}"),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["quotas"][0]["keys"][0]["requests"].as_u64().unwrap_or(0)
}

async fn send(port: u16, n: usize) {
    let c = palisade_testkit::HttpClient::h1();
    for _ in 0..n {
        let r = c
            .send(
                http::Method::GET,
                &format!("http://127.0.0.1:{port}/x"),
                &[("x-user", USER)],
                b"",
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
}

#[tokio::test]
async fn counters_are_sealed_survive_restarts_and_key_rotation_under_load() {
    let up = MockUpstream::start("app").await;
    let dir = TempDir::new("state-enc");
    for (name, byte) in [("k1.hex", "11"), ("k2.hex", "22"), ("wrong.hex", "33")] {
        let f = dir.write(name, &format!("{}\n", byte.repeat(32)));
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.write("palisade.yaml", &yaml(port, admin, &up.url(), "k1.hex", ""));

    let mut gw = start_binary(&cfg, admin).await;
    send(port, 20).await;
    assert_eq!(used(admin).await, 20);
    assert!(terminate(&mut gw, Duration::from_secs(10)).await.success());
    let raw = std::fs::read(dir.path().join("state/state.redb")).unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(
        !raw.contains(USER),
        "the counter name is in the file in clear"
    );
    assert!(
        !raw.contains("metered"),
        "the route is in the file in clear"
    );

    // the same key, this time printed by a program (as a KMS client would): the count goes on
    let by_cmd = yaml(port, admin, &up.url(), "k1.hex", "").replace(
        "${file:k1.hex}",
        &format!("${{cmd:cat {}}}", dir.path().join("k1.hex").display()),
    );
    let cmd_cfg = dir.write("cmd.yaml", &by_cmd);
    let mut gw = start_binary(&cmd_cfg, admin).await;
    assert_eq!(used(admin).await, 20);
    assert!(terminate(&mut gw, Duration::from_secs(10)).await.success());

    // a wrong key: the start is refused, and the store is left as it was
    let bad = dir.write("bad.yaml", &yaml(port, admin, &up.url(), "wrong.hex", ""));
    let out = bin().args(["run", "--config"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("none of the configured keys opens it") && err.contains("not re-created"),
        "{err}"
    );

    // rotation while requests flow: k2 becomes the key, k1 is kept as previous for the switch
    let mut gw = start_binary(&cfg, admin).await;
    let load: Vec<_> = (0..4).map(|_| tokio::spawn(send(port, 250))).collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    dir.write(
        "palisade.yaml",
        &yaml(port, admin, &up.url(), "k2.hex", r#""${file:k1.hex}""#),
    );
    signal(&gw.0, "HUP");
    let mut done_before_reload = 0;
    for l in load {
        done_before_reload += usize::from(l.is_finished());
        l.await.unwrap();
    }
    assert!(
        done_before_reload < 4,
        "the load ended before the reload was sent"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(used(admin).await, 1020);
    assert!(terminate(&mut gw, Duration::from_secs(10)).await.success());

    // k2 alone opens it now, with every count; k1 alone no longer does
    dir.write("palisade.yaml", &yaml(port, admin, &up.url(), "k2.hex", ""));
    let mut gw = start_binary(&cfg, admin).await;
    assert_eq!(used(admin).await, 1020);
    assert!(terminate(&mut gw, Duration::from_secs(10)).await.success());
    let old = dir.write("old.yaml", &yaml(port, admin, &up.url(), "k1.hex", ""));
    let out = bin().args(["run", "--config"]).arg(&old).output().unwrap();
    assert!(!out.status.success());

    // offline rotation with the CLI, back to k3 = the "wrong" key file: then only it opens
    let out = bin()
        .args(["keys", "rotate", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--old-key")
        .arg(dir.path().join("k2.hex"))
        .arg("--new-key")
        .arg(dir.path().join("wrong.hex"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut gw = start_binary(&bad, admin).await;
    assert_eq!(used(admin).await, 1020);
    assert!(terminate(&mut gw, Duration::from_secs(10)).await.success());
}
