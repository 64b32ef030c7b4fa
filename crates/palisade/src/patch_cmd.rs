//! `palisade patch`: findings → virtual patches (`palisade patch --findings …`), verified in
//! front of the target (`--verify`), then `promote` and `rollback`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use palisade_patch::{deploy, verify, Plan, PlanOptions};

/// `palisade patch`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PatchArgs {
    #[command(subcommand)]
    cmd: Option<PatchCmd>,
    #[command(flatten)]
    make: MakeArgs,
}

#[derive(Subcommand)]
enum PatchCmd {
    /// Turn the patches of a config to enforce, once the gateway's metrics show none of them
    /// would have refused anything over the observation period.
    Promote {
        /// The patched config the gateway serves.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The gateway's admin listener (`http://127.0.0.1:9901`), whose metrics are read.
        #[arg(long, value_name = "URL")]
        admin: String,
        /// How long to watch the metrics before promoting (e.g. 10m); 0s: judge by the
        /// counts since the gateway started.
        #[arg(long, default_value = "0s")]
        observe: String,
        /// Promote even though some patch would have refused requests.
        #[arg(long)]
        force: bool,
    },
    /// Restore the config as it was before the last `palisade patch` step.
    Rollback {
        /// The patched config the gateway serves.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Args)]
struct MakeArgs {
    /// The JSON report of `palisade scan --format json`.
    #[arg(long, value_name = "REPORT")]
    findings: Option<PathBuf>,
    /// The gateway's config, left as it is: the patches are written after it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The API description the scan used.
    #[arg(long, value_name = "SPEC")]
    spec: Option<PathBuf>,
    /// The JSON report of `palisade audit --format json` of the same description: its
    /// findings the gateway can answer get patches too.
    #[arg(long, value_name = "AUDIT")]
    audit: Option<PathBuf>,
    /// Where to write the patched config (default: stdout). The same path as --config
    /// patches it in place, keeping the old file as FILE.before-patch.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The gateway's path of the description's paths (default: the scan target's path).
    #[arg(long, value_name = "PATH")]
    base_path: Option<String>,
    /// The Host routes are matched with, when they match hosts.
    #[arg(long)]
    host: Option<String>,
    /// An issuer of the config that verifies the upstream's own tokens: forged-token findings
    /// are then closed by a `jwt` policy on every secured operation.
    #[arg(long, value_name = "NAME")]
    jwt_issuer: Option<String>,
    /// An environment variable with a 256-bit key (64 hex digits, `openssl rand -hex 32`):
    /// forged-token findings, a guessed secret among them, are closed by sealed sessions.
    #[arg(long, value_name = "NAME")]
    session_key_env: Option<String>,
    /// monitor (default) or enforce.
    #[arg(long, default_value = "monitor")]
    mode: String,
    /// Run the patched gateway in front of --target, replay benign traffic and re-scan; emit
    /// only the patches that close their finding and refuse no benign request.
    #[arg(long)]
    verify: bool,
    /// The API (a staging copy) the verification runs against, with its base path.
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// Identity A for the verification (the scan's forms: "Bearer …", env:NAME, @FILE).
    #[arg(long, value_name = "CREDENTIAL")]
    auth_a: Option<String>,
    /// Identity B.
    #[arg(long, value_name = "CREDENTIAL")]
    auth_b: Option<String>,
    /// The administrator: let through denied administrative operations (kept as a SHA-256).
    #[arg(long, value_name = "CREDENTIAL")]
    auth_admin: Option<String>,
    /// As for the scan: allow writes in the verification.
    #[arg(long)]
    allow_unsafe: bool,
    /// Requests per second of the re-scan.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Most requests of the re-scan.
    #[arg(long, default_value_t = 3000)]
    budget: u64,
    /// Where the SSRF canary listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    canary: String,
    /// Recorded traffic (a HAR file) replayed with the benign traffic: a patch that refuses
    /// a recorded request the target serves is not emitted.
    #[arg(long, value_name = "HAR")]
    replay: Option<PathBuf>,
    /// Write the verification's figures (JSON) here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

/// A credential as given on the command line: `env:NAME` and `@FILE` keep it out of the
/// process list and the shell history.
pub fn credential(v: &str) -> Result<String, String> {
    if let Some(name) = v.strip_prefix("env:") {
        std::env::var(name).map_err(|_| format!("the environment variable `{name}` is not set"))
    } else if let Some(path) = v.strip_prefix('@') {
        std::fs::read_to_string(path)
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("cannot read {path}: {e}"))
    } else {
        Ok(v.to_string())
    }
}

/// An identity flag's value.
pub fn identity(flag: &str, v: Option<&str>) -> Result<Option<palisade_scan::Identity>, String> {
    v.map(|v| {
        credential(v)
            .and_then(|c| palisade_scan::Identity::parse(&c))
            .map_err(|e| format!("--{flag}: {e}"))
    })
    .transpose()
}

fn fail(m: impl std::fmt::Display) -> ExitCode {
    eprintln!("palisade patch: {m}");
    ExitCode::from(2)
}

/// Runs `palisade patch`.
pub fn run(args: PatchArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("runtime: {e}")),
    };
    match args.cmd {
        Some(PatchCmd::Rollback { config }) => rollback(&config),
        Some(PatchCmd::Promote {
            config,
            admin,
            observe,
            force,
        }) => rt.block_on(promote(&config, &admin, &observe, force)),
        None => rt.block_on(make(args.make)),
    }
}

fn rollback(config: &Path) -> ExitCode {
    match deploy::rolled_back(config).and_then(|t| deploy::write(config, &t, false)) {
        Ok(()) => {
            let _ = std::fs::remove_file(deploy::backup_path(config));
            println!(
                "{}: restored as it was before the patches; a watching gateway reloads it (or send SIGHUP)",
                config.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn metrics(admin: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hostport = admin
        .strip_prefix("http://")
        .ok_or("--admin: the admin listener's http:// URL, e.g. http://127.0.0.1:9901")?
        .trim_end_matches('/');
    let mut s = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(hostport),
    )
    .await
    .map_err(|_| format!("{admin}: no answer"))?
    .map_err(|e| format!("{admin}: {e}"))?;
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .map_err(|_| format!("{admin}: the metrics did not arrive"))?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("{admin}/metrics did not answer 200")),
    }
}

async fn promote(config: &Path, admin: &str, observe: &str, force: bool) -> ExitCode {
    let text = match std::fs::read_to_string(config) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", config.display())),
    };
    let Some(window) = palisade_config::duration::parse_duration(observe) else {
        return fail(format!(
            "--observe `{observe}`: a duration such as 0s, 30s, 10m, 1h"
        ));
    };
    let codes = deploy::codes(&text);
    let before = match metrics(admin).await {
        Ok(m) => deploy::would_refuse(&m, &codes),
        Err(e) => return fail(e),
    };
    let counts = if window.is_zero() {
        before
    } else {
        eprintln!("palisade patch: watching {admin} for {observe}…");
        tokio::time::sleep(window).await;
        let after = match metrics(admin).await {
            Ok(m) => deploy::would_refuse(&m, &codes),
            Err(e) => return fail(e),
        };
        after
            .into_iter()
            .map(|(c, n)| {
                let was = before.iter().find(|(b, _)| *b == c).map_or(0, |(_, m)| *m);
                (c, n.saturating_sub(was))
            })
            .collect()
    };
    let would: Vec<&(String, u64)> = counts.iter().filter(|(_, n)| *n > 0).collect();
    if !would.is_empty() && !force {
        eprintln!("palisade patch: not promoted: in monitor mode the patches would have refused requests:");
        for (c, n) in &would {
            eprintln!("  {c}: {n}");
        }
        eprintln!("look at these requests in the log (\"monitor mode: request would have been refused\"); if they are attacks, promote with --force");
        return ExitCode::from(1);
    }
    let promoted = match deploy::promoted(&text) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    // the promoted file must load before it replaces the one being served
    if let Err(e) = palisade_config::load_str(config, &promoted) {
        return fail(format!("the promoted config does not load:\n{e}"));
    }
    match deploy::write(config, &promoted, true) {
        Ok(()) => {
            println!(
                "{}: patches promoted to enforce (the previous file is {}); a watching gateway reloads it",
                config.display(),
                deploy::backup_path(config).display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn make(a: MakeArgs) -> ExitCode {
    let (Some(findings), Some(config)) = (&a.findings, &a.config) else {
        return fail(
            "give --findings REPORT.json and --config FILE (or `patch promote`, `patch rollback`)",
        );
    };
    if a.mode != "monitor" && a.mode != "enforce" {
        return fail(format!("--mode `{}`: monitor or enforce", a.mode));
    }
    let report: serde_json::Value = match std::fs::read_to_string(findings)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => return fail(format!("{}: {e}", findings.display())),
    };
    let config_text = match std::fs::read_to_string(config) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", config.display())),
    };
    let cfg = match palisade_config::load_str(config, &config_text) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return fail("the config must be valid before it is patched");
        }
    };
    let spec_text = match a.spec.as_ref().map(std::fs::read_to_string).transpose() {
        Ok(t) => t,
        Err(e) => return fail(format!("--spec: {e}")),
    };
    let spec = match spec_text
        .as_deref()
        .map(palisade_audit::spec::load)
        .transpose()
    {
        Ok(s) => s,
        Err(e) => return fail(format!("--spec: {e}")),
    };
    let admin = match identity("auth-admin", a.auth_admin.as_deref()) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let opts = PlanOptions {
        base_path: a.base_path.clone(),
        host: a.host.clone(),
        admin: admin
            .as_ref()
            .map(|i| (i.header.clone(), i.authorization.clone())),
        jwt_issuer: a.jwt_issuer.clone(),
        session_key_env: a.session_key_env.clone(),
        audit: match a
            .audit
            .as_ref()
            .map(|f| {
                std::fs::read_to_string(f)
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
                    .map_err(|e| format!("--audit {}: {e}", f.display()))
            })
            .transpose()
        {
            Ok(a) => a,
            Err(e) => return fail(e),
        },
    };
    let mut plan = match palisade_patch::plan(&report, &cfg, spec.as_ref(), &opts) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    eprint!("{}", palisade_patch::summary(&plan));
    if a.verify {
        let Some(spec_text) = &spec_text else {
            return fail("--verify needs --spec");
        };
        match verified(&a, &plan, config, &config_text, spec_text, admin, &report).await {
            Ok(p) => plan = p,
            Err(e) => return fail(e),
        }
    }
    let section = plan.section(&a.mode, &findings.display().to_string());
    let out = match palisade_patch::splice(&config_text, &section) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    if let Err(e) = palisade_config::load_str(config, &out) {
        return fail(format!(
            "the patched config does not load (a bug of palisade patch):\n{e}"
        ));
    }
    match &a.output {
        None => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Some(o) => match deploy::write(o, &out, o == config) {
            Ok(()) => {
                eprintln!(
                    "palisade patch: {} patch(es) written to {} in {} mode",
                    plan.blocks.len(),
                    o.display(),
                    a.mode
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
    }
}

/// Verifies the plan; the plan of the patches that passed.
async fn verified(
    a: &MakeArgs,
    plan: &Plan,
    config: &Path,
    config_text: &str,
    spec_text: &str,
    admin: Option<palisade_scan::Identity>,
    report: &serde_json::Value,
) -> Result<Plan, String> {
    let target = a
        .target
        .clone()
        .ok_or("--verify needs --target URL (a staging copy of the API)")?;
    let ia = identity("auth-a", a.auth_a.as_deref())?.ok_or("--verify needs --auth-a")?;
    let opts = verify::VerifyOptions {
        scan: palisade_scan::Options {
            target,
            a: ia,
            b: identity("auth-b", a.auth_b.as_deref())?,
            admin,
            budget: a.budget,
            rate: a.rate,
            allow_unsafe: a.allow_unsafe,
            expired: None,
            progress: false,
            ca_pem: None,
            canary: a.canary.clone(),
        },
        spec_text: spec_text.to_string(),
        replay: match &a.replay {
            None => Vec::new(),
            Some(f) => std::fs::read_to_string(f)
                .map_err(|e| e.to_string())
                .and_then(|t| palisade_patch::replay::har(&t))
                .map_err(|e| format!("--replay {}: {e}", f.display()))?,
        },
    };
    let base = a
        .base_path
        .clone()
        .unwrap_or_else(|| palisade_patch::url_path(report["target"].as_str().unwrap_or("")));
    eprintln!("palisade patch: verifying: benign traffic direct and through the patched gateway, then a re-scan…");
    let v = verify::verify(plan, config, config_text, &base, &opts).await?;
    let text = verification_text(plan, &v);
    eprint!("{text}");
    if let Some(r) = &a.report {
        let json = serde_json::json!({"plan": plan, "verification": v});
        std::fs::write(r, serde_json::to_string_pretty(&json).unwrap_or_default())
            .map_err(|e| format!("--report: {e}"))?;
    }
    let keep = v.kept();
    let mut out = plan.clone();
    out.blocks = plan
        .blocks
        .iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, b)| b.clone())
        .collect();
    // a finding whose patches were all dropped is left to the code, with the reason
    for f in 0..plan.findings.len() {
        if out.blocks.iter().any(|b| b.findings.contains(&f))
            || out.manual.iter().any(|m| m.finding == f)
        {
            continue;
        }
        let refused: Vec<&str> = v
            .blocks
            .iter()
            .filter(|b| {
                plan.blocks
                    .get(b.block)
                    .is_some_and(|x| x.findings.contains(&f))
            })
            .flat_map(|b| b.refused.iter().map(String::as_str))
            .collect();
        let why = if refused.is_empty() {
            "its patch did not close it (the re-scan still found it): fix the code".to_string()
        } else {
            format!(
                "its patch refused benign requests ({}): fix the code",
                refused.join(", ")
            )
        };
        out.manual.push(palisade_patch::Manual { finding: f, why });
    }
    Ok(out)
}

fn verification_text(plan: &Plan, v: &verify::Verification) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "verification: {} benign requests through the gateway, {} refused by patches that were dropped; findings {} before, {} after ({} gateway run(s))",
        v.benign_sent,
        v.benign_refused,
        v.findings_before,
        v.findings_after.len(),
        v.rounds
    );
    for b in &v.blocks {
        let Some(blk) = plan.blocks.get(b.block) else {
            continue;
        };
        let _ = writeln!(
            out,
            "  {:<15} {} on {}{}: {} benign request(s), closes {} of {} finding(s){}",
            b.status,
            blk.policy
                .get("type")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?"),
            blk.route,
            blk.operation
                .as_deref()
                .map(|o| format!(" {o}"))
                .unwrap_or_default(),
            b.benign_requests,
            b.closed.len(),
            blk.findings.len(),
            if b.refused.is_empty() {
                String::new()
            } else {
                format!("; refused {}", b.refused.join(", "))
            }
        );
    }
    let _ = writeln!(
        out,
        "  re-scan: {} requests, {} throttled (429 after a retry){}",
        v.rescan_requests,
        v.rescan_throttled,
        if v.rescan_throttled > 0 {
            ": a check that met one may have missed a flaw; verify with a lower --rate"
        } else {
            ""
        }
    );
    for s in &v.rescan_skipped {
        let _ = writeln!(out, "  re-scan did not run: {s}");
    }
    for f in &v.findings_after {
        let _ = writeln!(out, "  still found: {}", f.answers());
    }
    for m in &plan.manual {
        if let Some(f) = plan.findings.get(m.finding).filter(|f| f.source == "scan") {
            if !v.findings_after.iter().any(|a| f.same(a)) {
                let _ = writeln!(
                    out,
                    "  not patched but no longer found (another patch covers it): {}",
                    f.answers()
                );
            }
        }
    }
    out
}

/// `palisade init`: a config from an API description, checked before it is written.
pub fn init(
    spec: &Path,
    upstream: &str,
    output: Option<&Path>,
    listen: &str,
    admin: &str,
) -> ExitCode {
    let fail = |m: String| {
        eprintln!("palisade init: {m}");
        ExitCode::from(2)
    };
    let text = match std::fs::read_to_string(spec) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", spec.display())),
    };
    if !upstream.starts_with("http://") && !upstream.starts_with("https://") {
        return fail(format!(
            "--upstream `{upstream}`: the API's base URL, e.g. http://127.0.0.1:3000"
        ));
    }
    // the description as the config names it: beside the config by its name, else absolute
    let abs = std::fs::canonicalize(spec).unwrap_or_else(|_| spec.to_path_buf());
    let out_dir = output.and_then(Path::parent).map(|p| {
        std::fs::canonicalize(if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        })
        .unwrap_or_else(|_| p.to_path_buf())
    });
    let spec_path = match (out_dir, abs.parent(), abs.file_name()) {
        (Some(d), Some(sp), Some(name)) if d == sp => name.to_string_lossy().into_owned(),
        _ => abs.display().to_string(),
    };
    let opts = palisade_patch::init::InitOptions {
        spec_path,
        upstream: upstream.trim_end_matches('/').to_string(),
        listen: listen.to_string(),
        admin: admin.to_string(),
    };
    let config = match palisade_patch::init::init(&text, &opts) {
        Ok(c) => c,
        Err(e) => return fail(format!("{}: {e}", spec.display())),
    };
    let anchor = output.map_or_else(
        || {
            std::env::current_dir()
                .unwrap_or_default()
                .join("palisade.yaml")
        },
        Path::to_path_buf,
    );
    if let Err(e) = palisade_config::load_str(&anchor, &config) {
        return fail(format!(
            "the config it wrote does not load (a bug of palisade init):\n{e}"
        ));
    }
    match output {
        None => {
            print!("{config}");
            ExitCode::SUCCESS
        }
        Some(o) => match deploy::write(o, &config, false) {
            Ok(()) => {
                eprintln!(
                    "palisade init: wrote {} (every policy in monitor mode); check it with `palisade validate {}`, serve it with `palisade run {}`",
                    o.display(),
                    o.display(),
                    o.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
    }
}
