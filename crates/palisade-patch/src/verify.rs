//! `--verify`: the patched gateway, every patch enforced, on loopback in front of the target
//! (a staging copy). Benign traffic (what the scan sends to learn the API: every read with
//! valid inputs as each identity, the public operations, the creates) goes to the target
//! directly and through the gateway; a patch that refuses a request the target answers
//! without error is dropped, and the gateway is run again without it. Then the scan runs
//! again through the gateway: a finding it no longer reports is closed.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use palisade_proxy::Gateway;
use palisade_scan::{Options, Replayed};
use serde::Serialize;
use serde_json::{json, Value};

use crate::{findings_of, FindingRef, Plan};

/// How many times the gateway is run with fewer patches before giving up.
const ROUNDS: usize = 3;
/// The pace of benign traffic: an ordinary client's, under any rate limit a patch sets.
const BENIGN_RATE: u32 = 8;

/// What verification needs.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The scan's options; `target` is the API (the staging copy), with its base path.
    pub scan: Options,
    /// The API description.
    pub spec_text: String,
    /// Recorded traffic replayed beside the scan's (`--replay`).
    pub replay: Vec<crate::replay::Entry>,
}

/// One benign request as the gateway answered it, with what the target said to it.
struct Sample {
    /// Method and path (a description template or a concrete path), as the gateway sees it.
    method: String,
    path: String,
    /// How the report names it.
    label: String,
    /// The gateway's refusal code, when it refused.
    code: Option<String>,
    /// Whether the target itself answered it without error.
    target_ok: bool,
}

/// What became of one patch.
#[derive(Debug, Clone, Serialize)]
pub struct BlockOutcome {
    /// Index into [`Plan::blocks`].
    pub block: usize,
    /// `verified` (closes a scan finding, refuses no benign request), `benign_only` (answers
    /// audit findings only: refuses no benign request, nothing to re-run), `refuses_benign`
    /// or `closes_nothing`.
    pub status: &'static str,
    /// Benign requests of its operation (or route) sent through the gateway.
    pub benign_requests: usize,
    /// Benign requests it refused (`METHOD /path as WHO: code`), when it was dropped.
    pub refused: Vec<String>,
    /// Findings it answers that the re-scan no longer reports.
    pub closed: Vec<usize>,
    /// Findings it answers that the re-scan still reports.
    pub open: Vec<usize>,
}

/// The verification's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Per patch.
    pub blocks: Vec<BlockOutcome>,
    /// Benign requests sent through the gateway in the last run, and refused by a patch.
    pub benign_sent: usize,
    /// Benign requests refused by the patches that were dropped for it, in all runs.
    pub benign_refused: usize,
    /// Findings before and after.
    pub findings_before: usize,
    /// The re-scan's findings.
    pub findings_after: Vec<FindingRef>,
    /// The re-scan's requests, those throttled (429 after a retry: a check that met one may
    /// have missed a flaw), and the checks it could not run.
    pub rescan_requests: u64,
    /// See `rescan_requests`.
    pub rescan_throttled: u64,
    /// See `rescan_requests`.
    pub rescan_skipped: Vec<String>,
    /// Gateway runs.
    pub rounds: usize,
}

impl Verification {
    /// Indices of the blocks to emit.
    pub fn kept(&self) -> Vec<usize> {
        self.blocks
            .iter()
            .filter(|b| b.status == "verified" || b.status == "benign_only")
            .map(|b| b.block)
            .collect()
    }
}

/// The origin (`http://host:port`) of a URL.
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

/// The config the verifying gateway runs: the user's, with one loopback listener, every
/// upstream pointed at the target, no admin listener, no access log, state in `state`, and
/// the patches (only `keep`) enforced.
fn verifying_config(
    config_text: &str,
    plan: &Plan,
    keep: &[usize],
    target: &str,
    state: &Path,
) -> Result<String, String> {
    let mut root = palisade_core::yaml::parse(config_text)
        .map_err(|e| format!("the config cannot be read: line {}: {}", e.line, e.message))?
        .value;
    let Some(m) = root.as_object_mut() else {
        return Err("the config is not a mapping".into());
    };
    m.insert(
        "listeners".into(),
        json!([{"name": "verify", "listen": "127.0.0.1:0"}]),
    );
    m.remove("admin");
    m.insert("log".into(), json!({"access": "off"}));
    let mut runtime = match m.remove("runtime") {
        Some(Value::Object(r)) => r,
        _ => serde_json::Map::new(),
    };
    runtime.insert("watch".into(), json!(false));
    runtime.insert("state_dir".into(), json!(state.display().to_string()));
    m.insert("runtime".into(), Value::Object(runtime));
    let up = origin(target);
    if let Some(Value::Object(ups)) = m.get_mut("upstreams") {
        for u in ups.values_mut() {
            if let Some(u) = u.as_object_mut() {
                u.insert("targets".into(), json!([up]));
                u.remove("health_check");
                if up.starts_with("http://") {
                    u.remove("tls");
                }
            }
        }
    }
    let all = plan.entries("enforce");
    let entries: Vec<Value> = keep.iter().filter_map(|&i| all.get(i).cloned()).collect();
    m.insert("patches".into(), Value::Array(entries));
    serde_json::to_string(&root).map_err(|e| e.to_string())
}

async fn start(
    config_path: &Path,
    config_text: &str,
    plan: &Plan,
    keep: &[usize],
    target: &str,
    state: &Path,
) -> Result<(Gateway, String), String> {
    let text = verifying_config(config_text, plan, keep, target, state)?;
    let cfg = palisade_config::load_str(config_path, &text)
        .map_err(|e| format!("the patched config does not load: {e}"))?;
    let gw = Gateway::start(cfg)
        .await
        .map_err(|e| format!("the patched gateway does not start: {e}"))?;
    let addr = gw
        .addr("verify")
        .ok_or("the patched gateway has no listener")?;
    Ok((gw, format!("http://{addr}")))
}

/// Runs the verification.
pub async fn verify(
    plan: &Plan,
    config_path: &Path,
    config_text: &str,
    base: &str,
    opts: &VerifyOptions,
) -> Result<Verification, String> {
    let state = std::env::temp_dir().join(format!("palisade-verify-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&state);
    let result = run(plan, config_path, config_text, base, opts, &state).await;
    let _ = std::fs::remove_dir_all(&state);
    result
}

async fn run(
    plan: &Plan,
    config_path: &Path,
    config_text: &str,
    base: &str,
    opts: &VerifyOptions,
    state: &Path,
) -> Result<Verification, String> {
    let benign_opts = Options {
        rate: opts.scan.rate.min(BENIGN_RATE),
        progress: false,
        ..opts.scan.clone()
    };
    let direct = palisade_scan::benign(&opts.spec_text, &benign_opts)
        .await
        .map_err(|e| format!("benign traffic to the target: {e}"))?;
    let direct_replay = crate::replay::send(
        &opts.replay,
        &origin(&opts.scan.target),
        BENIGN_RATE,
        opts.scan.allow_unsafe,
    )
    .await
    .map_err(|e| format!("the replay to the target: {e}"))?;
    let mut keep: Vec<usize> = (0..plan.blocks.len()).collect();
    let mut refused_by: std::collections::HashMap<usize, Vec<String>> = Default::default();
    let mut benign_count: std::collections::HashMap<usize, usize> = Default::default();
    let target_path = crate::url_path(&opts.scan.target);
    let mut rounds = 0;
    loop {
        rounds += 1;
        let (gw, url) = start(
            config_path,
            config_text,
            plan,
            &keep,
            &opts.scan.target,
            state,
        )
        .await?;
        let sealer = sealer_of(plan, &keep)?;
        let through = Options {
            target: format!("{url}{target_path}"),
            ..sealed_identities(&benign_opts, sealer.as_ref())
        };
        let replay = palisade_scan::benign(&opts.spec_text, &through).await;
        let replay = match replay {
            Ok(r) => r,
            Err(e) => {
                gw.shutdown(Duration::from_secs(1)).await;
                return Err(format!("benign traffic through the patched gateway: {e}"));
            }
        };
        let through_replay = match crate::replay::send(
            &opts.replay,
            &url,
            BENIGN_RATE,
            opts.scan.allow_unsafe,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                gw.shutdown(Duration::from_secs(1)).await;
                return Err(format!("the replay through the patched gateway: {e}"));
            }
        };
        let mut samples: Vec<Sample> = replay
            .iter()
            .map(|r| {
                let (method, path) = r.operation.split_once(' ').unwrap_or(("", ""));
                Sample {
                    method: method.to_string(),
                    path: format!("{base}{path}"),
                    label: format!("{} as {}", r.operation, r.who),
                    code: r.code.clone(),
                    target_ok: target_ok(r, &direct),
                }
            })
            .collect();
        for (i, ex) in &through_replay {
            let Some(e) = opts.replay.get(*i) else {
                continue;
            };
            samples.push(Sample {
                method: e.method.clone(),
                path: e.target.clone(),
                label: format!("{} {} (replayed #{})", e.method, e.target, i + 1),
                code: palisade_scan::refusal_code(ex),
                target_ok: direct_replay
                    .iter()
                    .find(|(j, _)| j == i)
                    .is_none_or(|(_, d)| d.status < 400),
            });
        }
        let last_sent = samples.len();
        let mut dropped = BTreeSet::new();
        benign_count.clear();
        for smp in &samples {
            let on: Vec<usize> = keep
                .iter()
                .copied()
                .filter(|&b| {
                    plan.blocks.get(b).is_some_and(|blk| {
                        blk.operation
                            .as_deref()
                            .is_none_or(|o| crate::replay::op_matches(o, &smp.method, &smp.path))
                    })
                })
                .collect();
            for &b in &on {
                *benign_count.entry(b).or_default() += 1;
            }
            let Some(code) = &smp.code else { continue };
            if !smp.target_ok {
                continue;
            }
            for &b in &on {
                if plan.blocks.get(b).is_some_and(|blk| blk.code == code) {
                    refused_by
                        .entry(b)
                        .or_default()
                        .push(format!("{}: {code}", smp.label));
                    dropped.insert(b);
                }
            }
        }
        if !dropped.is_empty() && rounds < ROUNDS {
            keep.retain(|b| !dropped.contains(b));
            gw.shutdown(Duration::from_secs(1)).await;
            continue;
        }
        keep.retain(|b| !dropped.contains(b));
        // the re-scan, through the gateway with the patches that refuse no benign request
        // (with none left, every finding is open and there is nothing to re-scan)
        let (after, rescan_requests, rescan_throttled, rescan_skipped) = if keep.is_empty() {
            gw.shutdown(Duration::from_secs(1)).await;
            (
                plan.findings.clone(),
                0,
                0,
                vec!["no patch was left to verify, so nothing was re-scanned".to_string()],
            )
        } else {
            let (gw2, url2) = if dropped.is_empty() {
                (gw, url)
            } else {
                gw.shutdown(Duration::from_secs(1)).await;
                start(
                    config_path,
                    config_text,
                    plan,
                    &keep,
                    &opts.scan.target,
                    state,
                )
                .await?
            };
            let sealer = sealer_of(plan, &keep)?;
            let rescan_opts = Options {
                target: format!("{url2}{target_path}"),
                ..sealed_identities(&opts.scan, sealer.as_ref())
            };
            let rescan = palisade_scan::scan(&opts.spec_text, &rescan_opts).await;
            // sealed sessions: the scan cannot forge from a sealed token, so the forged-token
            // findings are re-tested directly: A's own valid upstream token, unsealed, must be
            // refused (and with it every token the gateway did not seal)
            let retest = match &sealer {
                Some(_) => Some(unsealed_refused(&url2, &target_path, &opts.scan, &direct).await),
                None => None,
            };
            gw2.shutdown(Duration::from_secs(1)).await;
            let rescan =
                rescan.map_err(|e| format!("the re-scan through the patched gateway: {e}"))?;
            let mut after =
                findings_of(&serde_json::to_value(&rescan).map_err(|e| e.to_string())?)?;
            let mut skipped = rescan.skipped.clone();
            match retest {
                Some(Ok(what)) => skipped.push(format!("forged tokens re-tested directly: {what}")),
                Some(Err(what)) => {
                    skipped.push(format!(
                        "forged tokens re-tested directly, and not closed: {what}"
                    ));
                    after.extend(
                        plan.findings
                            .iter()
                            .filter(|f| f.check.starts_with("jwt."))
                            .cloned(),
                    );
                }
                None => {}
            }
            (after, rescan.requests, rescan.throttled, skipped)
        };
        let open = |f: usize| {
            plan.findings
                .get(f)
                .is_some_and(|x| after.iter().any(|a| x.same(a)))
        };
        let blocks = plan
            .blocks
            .iter()
            .enumerate()
            .map(|(b, blk)| {
                // audit findings are not re-run: neither closed nor open by the re-scan
                let scanned: Vec<usize> = blk
                    .findings
                    .iter()
                    .copied()
                    .filter(|&f| plan.findings.get(f).is_some_and(|x| x.source == "scan"))
                    .collect();
                let (closed, still): (Vec<usize>, Vec<usize>) =
                    scanned.iter().partition(|&&f| !open(f));
                let from_audit_only = blk
                    .findings
                    .iter()
                    .all(|&f| plan.findings.get(f).is_some_and(|x| x.source == "audit"));
                let status = if !keep.contains(&b) {
                    "refuses_benign"
                } else if from_audit_only {
                    // a finding of the description: nothing to re-run, benign traffic passed
                    "benign_only"
                } else if closed.is_empty() {
                    "closes_nothing"
                } else {
                    "verified"
                };
                BlockOutcome {
                    block: b,
                    status,
                    benign_requests: benign_count.get(&b).copied().unwrap_or(0),
                    refused: refused_by.get(&b).cloned().unwrap_or_default(),
                    closed,
                    open: still,
                }
            })
            .collect();
        return Ok(Verification {
            blocks,
            benign_sent: last_sent,
            benign_refused: refused_by.values().map(Vec::len).sum(),
            findings_before: plan.findings.len(),
            findings_after: after,
            rescan_requests,
            rescan_throttled,
            rescan_skipped,
            rounds,
        });
    }
}

/// The sealer of the kept `sealed_session` patches (their key), when there is one.
fn sealer_of(
    plan: &Plan,
    keep: &[usize],
) -> Result<Option<palisade_identity::sealed::SealedSession>, String> {
    let Some(policy) = keep
        .iter()
        .filter_map(|&b| plan.blocks.get(b))
        .map(|b| &b.policy)
        .find(|p| p.get("type").and_then(Value::as_str) == Some("sealed_session"))
    else {
        return Ok(None);
    };
    let mut spec = policy.clone();
    if let Some(m) = spec.as_object_mut() {
        m.remove("type");
        m.remove("issue");
    }
    let spec: palisade_identity::sealed::SealedSessionSpec =
        serde_json::from_value(spec).map_err(|e| format!("a sealed_session patch: {e}"))?;
    spec.build().map(Some).map_err(|e| {
        format!(
            "a sealed_session patch: {}",
            e.iter()
                .map(|x| x.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

/// The scan's identities as they are after logging in through a gateway that seals sessions.
fn sealed_identities(
    o: &Options,
    sealer: Option<&palisade_identity::sealed::SealedSession>,
) -> Options {
    let Some(s) = sealer else { return o.clone() };
    let seal = |i: &palisade_scan::Identity| {
        let (scheme, token) = i
            .authorization
            .split_once(' ')
            .unwrap_or(("Bearer", i.authorization.as_str()));
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + 3600;
        palisade_scan::Identity {
            authorization: format!("{scheme} {}", s.seal(token, exp).unwrap_or_default()),
            header: i.header.clone(),
        }
    };
    Options {
        a: seal(&o.a),
        b: o.b.as_ref().map(seal),
        admin: o.admin.as_ref().map(seal),
        expired: None,
        ..o.clone()
    }
}

/// A's own upstream credential, sent through the gateway to a read A passes at the target,
/// must be refused as not sealed by it. What was sent and answered, or why not.
async fn unsealed_refused(
    gateway: &str,
    base: &str,
    o: &Options,
    direct: &[Replayed],
) -> Result<String, String> {
    let Some(r) = direct
        .iter()
        .find(|r| r.who == "A" && r.exchange.status < 300)
    else {
        return Err("no read that A passes at the target to try it on".into());
    };
    let path = r
        .exchange
        .request
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|p| p.strip_prefix(base))
        .unwrap_or("/")
        .to_string();
    let client = palisade_scan::client::Client::new(&format!("{gateway}{base}"), 2, 10, None)?;
    let ex = client
        .send(
            "GET",
            &path,
            &[(o.a.header.as_str(), o.a.authorization.clone())],
            None,
            Some(o.a.header.as_str()),
        )
        .await
        .map_err(|_| "the gateway did not answer".to_string())?;
    let code = palisade_scan::refusal_code(&ex);
    let what = format!(
        "GET {base}{path} with A's own unsealed token: {} {}",
        ex.status,
        code.as_deref().unwrap_or("")
    );
    if ex.status == 401 && code.as_deref() == Some("session.invalid") {
        Ok(what)
    } else {
        Err(what)
    }
}

/// Whether the target itself answers the request of `through` without error.
fn target_ok(through: &Replayed, direct: &[Replayed]) -> bool {
    match direct
        .iter()
        .find(|d| d.operation == through.operation && d.who == through.who)
    {
        Some(d) => d.exchange.status < 400,
        None => true,
    }
}
