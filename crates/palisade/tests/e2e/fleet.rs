//! Fleets (issue 19): three instances of the real binary share one config through a real
//! Redis. A config applied on one instance rolls out to all under load without a failed
//! request; a config that fails on any instance is refused everywhere; an instance that was
//! down rejoins at the current config; the records in Redis are sealed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use palisade_testkit::{free_port, HttpClient, MockUpstream, RedisServer, Reply, TempDir};

use crate::support::{
    admin_get, admin_yaml, bin, eventually, terminate, wait_ready, Proc, OPERATOR_TOKEN,
};

const PARTNER_KEY: &str = "pk_test_partner_key_0123456789abcdef";

const STATE_KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// The fleet's config; `version` goes into a response header, `extra` is more policies.
fn config(redis: &str, up: &str, version: &str, extra: &str) -> String {
    format!(
        r#"runtime: {{state_key: "${{file:state.key}}"}}
{admin}
log: {{access: "off"}}
redis: {{url: "{redis}"}}
fleet: {{name: e2e}}
listeners: [{{name: public, listen: "${{env:FLEET_LISTEN}}"}}]
upstreams: {{app: {{targets: ["{up}"]}}}}
consumers: [{{name: partner, api_keys: [{{hash: "sha256:{key}"}}]}}]
routes:
  - {{name: keyed, match: {{path_prefix: /keyed}}, upstream: app, policies: [{{type: api_key}}]}}
  - name: all
    upstream: app
    public: true
    policies:
      - {{type: headers, response: {{set: {{x-config: "{version}"}}}}}}
{extra}"#,
        admin = admin_yaml("${env:FLEET_ADMIN}"),
        key = crate::support::api_key_hash(PARTNER_KEY),
    )
}

struct Instance {
    dir: TempDir,
    admin: u16,
    public: u16,
    proc: Option<Proc>,
}

impl Instance {
    fn new(i: usize, text: &str) -> Self {
        let dir = TempDir::new(&format!("fleet-{i}"));
        dir.write("palisade.yaml", text);
        let key = dir.write("state.key", STATE_KEY);
        set_private(&key);
        Instance {
            dir,
            admin: free_port(),
            public: free_port(),
            proc: None,
        }
    }

    async fn start(&mut self) {
        let mut p = Proc(
            bin()
                .args(["run", "--config"])
                .arg(self.dir.path().join("palisade.yaml"))
                .env("FLEET_LISTEN", format!("127.0.0.1:{}", self.public))
                .env("FLEET_ADMIN", format!("127.0.0.1:{}", self.admin))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .spawn()
                .unwrap(),
        );
        wait_ready(&mut p, self.admin).await;
        self.proc = Some(p);
    }

    /// The config version this instance answers with.
    async fn serves(&self) -> Option<String> {
        let r = HttpClient::h1()
            .send(
                Method::GET,
                &format!("http://127.0.0.1:{}/x", self.public),
                &[],
                b"",
            )
            .await
            .ok()?;
        r.header("x-config")
    }

    /// The status of a call with the partner's API key.
    async fn keyed(&self) -> u16 {
        HttpClient::h1()
            .send(
                Method::GET,
                &format!("http://127.0.0.1:{}/keyed", self.public),
                &[("x-api-key", PARTNER_KEY)],
                b"",
            )
            .await
            .map_or(0, |r| r.status.as_u16())
    }

    async fn post(&self, path: &str, body: &str) -> Reply {
        let auth = format!("Bearer {OPERATOR_TOKEN}");
        HttpClient::h1()
            .send(
                Method::POST,
                &format!("http://127.0.0.1:{}{path}", self.admin),
                &[("authorization", auth.as_str())],
                body.as_bytes(),
            )
            .await
            .unwrap()
    }

    async fn fleet(&self) -> serde_json::Value {
        let r = admin_get(([127, 0, 0, 1], self.admin).into(), "/api/v1/fleet").await;
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    async fn apply(&self, text: &str) -> Reply {
        self.post("/api/v1/config", text).await
    }

    /// Another handle on a running instance, by its ports.
    fn handle((admin, public): (u16, u16)) -> Self {
        Instance {
            dir: TempDir::new("fleet-handle"),
            admin,
            public,
            proc: None,
        }
    }
}

fn set_private(p: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn live_instances(v: &serde_json::Value) -> Vec<(String, String)> {
    v["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["state"] == "serving")
                .map(|i| {
                    (
                        i["instance"].as_str().unwrap_or_default().to_string(),
                        i["version"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_fleet_rolls_out_one_config_refuses_it_everywhere_or_nowhere_and_rejoins() {
    let redis = RedisServer::start();
    let up = MockUpstream::start("app").await;
    let v1 = config(&redis.url(), &up.url(), "v1", "");
    let mut fleet: Vec<Instance> = (0..3).map(|i| Instance::new(i, &v1)).collect();
    for i in fleet.iter_mut() {
        i.start().await;
    }
    let ports: Vec<(u16, u16)> = fleet.iter().map(|i| (i.admin, i.public)).collect();
    let at = |i: usize| ports[i];
    let first = Instance::handle(at(0));
    eventually("three instances in the status view", || async {
        live_instances(&first.fleet().await).len() == 3
    })
    .await;

    // load on all three while a new config rolls out
    let publics: Vec<u16> = (0..3).map(|i| at(i).1).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut load = Vec::new();
    for t in 0..4 {
        let (stop, failed, seen, publics) =
            (stop.clone(), failed.clone(), seen.clone(), publics.clone());
        load.push(tokio::spawn(async move {
            let c = HttpClient::h1();
            let mut n = t;
            while !stop.load(Ordering::Relaxed) {
                let port = publics[n % 3];
                n += 1;
                match c
                    .send(Method::GET, &format!("http://127.0.0.1:{port}/x"), &[], b"")
                    .await
                {
                    Ok(r) if r.status == 200 => seen
                        .lock()
                        .unwrap()
                        .push(r.header("x-config").unwrap_or_default()),
                    Ok(r) => failed.lock().unwrap().push(format!("{}", r.status)),
                    Err(e) => failed.lock().unwrap().push(e),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v2 = config(&redis.url(), &up.url(), "v2", "");
    let second = Instance::handle(at(1));
    let r = second.apply(&v2).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(answer["applied"], true, "{answer}");
    assert_eq!(answer["fleet"]["instances"].as_array().unwrap().len(), 3);
    for i in 0..3 {
        let inst = Instance::handle(at(i));
        assert_eq!(inst.serves().await.as_deref(), Some("v2"), "instance {i}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "failed during the rollout: {failed:?}");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().any(|v| v == "v1") && seen.iter().any(|v| v == "v2"));
    // every instance wrote it over its file: a restart serves it
    for i in fleet.iter() {
        let text = std::fs::read_to_string(i.dir.path().join("palisade.yaml")).unwrap();
        assert!(text.contains("\"v2\""));
    }

    // a config that only one instance cannot serve (a file it lacks) is refused everywhere
    let v3_contract = config(
        &redis.url(),
        &up.url(),
        "v3",
        "      - {type: contract, spec: api.yaml}\n",
    );
    let spec = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /x: {get: {responses: {'200': {description: ok}}}}\n";
    for i in fleet.iter().take(2) {
        i.dir.write("api.yaml", spec);
    }
    let r = first.apply(&v3_contract).await;
    assert_eq!(r.status, 409, "{}", r.text());
    let refusal: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(refusal["code"], "admin.fleet_refused");
    let problems = refusal["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{refusal}");
    assert!(problems[0]["problems"][0]
        .as_str()
        .unwrap()
        .contains("api.yaml"));
    for i in 0..3 {
        let inst = Instance::handle(at(i));
        assert_eq!(inst.serves().await.as_deref(), Some("v2"), "instance {i}");
    }
    // one that is not valid at all is refused by the instance it was sent to
    let r = first.apply("routes: [").await;
    assert_eq!(r.status, 422, "{}", r.text());

    // the records in Redis are sealed: no config text, no instance status in clear
    let raw = redis.command(&["GET", "palisade:fleet:e2e:config"]);
    // (words of the config that random ciphertext does not hold by chance)
    assert!(
        !raw.contains("upstreams") && !raw.contains("x-config") && raw.len() > 100,
        "{raw}"
    );

    // the config file edited on one instance (by hand, by config management) is put up for
    // the whole fleet, not served there alone
    let v2b = config(&redis.url(), &up.url(), "v2b", "");
    fleet[1].dir.write("palisade.yaml", &v2b);
    for i in 0..3 {
        let inst = Instance::handle(at(i));
        eventually("the edited file reaching every instance", || async {
            inst.serves().await.as_deref() == Some("v2b")
        })
        .await;
    }
    // one the others cannot serve stays unserved everywhere, and the view says why
    let v2c = config(
        &redis.url(),
        &up.url(),
        "v2c",
        "      - {type: contract, spec: only-on-one.yaml}\n",
    );
    fleet[1].dir.write("only-on-one.yaml", spec);
    fleet[1].dir.write("palisade.yaml", &v2c);
    eventually("the refusal shown in the status view", || async {
        first.fleet().await["instances"]
            .as_array()
            .is_some_and(|a| {
                a.iter().any(|i| {
                    i["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("only-on-one.yaml"))
                })
            })
    })
    .await;
    for i in 0..3 {
        assert_eq!(
            Instance::handle(at(i)).serves().await.as_deref(),
            Some("v2b"),
            "instance {i}"
        );
    }

    // a credential revoked on one instance is refused by all of them; lifted on another, it
    // works everywhere again
    let third_handle = Instance::handle(at(2));
    assert_eq!(third_handle.keyed().await, 200);
    let body = format!("{{\"api_key\": \"{PARTNER_KEY}\"}}");
    let r = first.post("/api/v1/revocations", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"fleet\":true"), "{}", r.text());
    eventually("the revocation reaching every instance", || async {
        [second.keyed().await, third_handle.keyed().await] == [401, 401]
    })
    .await;
    let r = second.post("/api/v1/revocations/lift", &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually("the lift reaching every instance", || async {
        [first.keyed().await, third_handle.keyed().await] == [200, 200]
    })
    .await;

    // an instance that was down while a config rolled out rejoins at it
    let mut stopped = fleet[2].proc.take().unwrap();
    terminate(&mut stopped, Duration::from_secs(10)).await;
    eventually("the stopped instance leaving the view", || async {
        live_instances(&first.fleet().await).len() == 2
    })
    .await;
    let v4 = config(&redis.url(), &up.url(), "v4", "");
    let r = first.apply(&v4).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut third = fleet.remove(2);
    third.start().await;
    eventually(
        "the restarted instance serving the fleet's config",
        || async { third.serves().await.as_deref() == Some("v4") },
    )
    .await;
    let view = first.fleet().await;
    let live = live_instances(&view);
    assert_eq!(live.len(), 3, "{view}");
    let version = view["committed"]["version"].as_str().unwrap().to_string();
    assert!(live.iter().all(|(_, v)| *v == version), "{view}");
}
