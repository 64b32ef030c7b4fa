//! The `palisade` command: `run`, `validate`, `quickstart`.
//!
//! Exit codes: 0 ok, 1 refusal (an invalid config for `validate`), 2 usage or runtime error.

mod certs;
mod demo;
mod docs_cmd;
mod keys_cmd;
mod log_cmd;
mod patch_cmd;

// The proxy allocates small, short-lived buffers on every request; mimalloc's thread-local
// free lists beat glibc malloc there (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use palisade_proxy::Gateway;

#[derive(Parser)]
#[command(
    name = "palisade",
    version,
    about = "Palisade, an API security gateway",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the listeners of a config file (reloads on SIGHUP and on file change, drains on SIGTERM).
    Run {
        /// The YAML config file (`palisade run FILE`, as `validate FILE`).
        #[arg(
            value_name = "FILE",
            required_unless_present = "config",
            conflicts_with = "config"
        )]
        file: Option<PathBuf>,
        /// The YAML config file, named by flag.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Check a config file without binding a socket; report every problem with file, line and field.
    Validate {
        /// The YAML config file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Audit an API description (OpenAPI 3.0/3.1, Swagger 2.0) against the OWASP API Top 10.
    Audit {
        /// The description, YAML or JSON.
        #[arg(value_name = "SPEC")]
        spec: PathBuf,
        /// text (default), json, sarif or html.
        #[arg(long, default_value = "text")]
        format: String,
        /// Write the report to this file instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Exit 1 when a finding is at least this severe: low, medium, high, critical.
        #[arg(long, value_name = "SEVERITY")]
        fail_on: Option<String>,
        /// Findings to leave out: a YAML list of {rule, pointer?, reason}.
        #[arg(long, value_name = "FILE")]
        ignore: Option<PathBuf>,
        /// Exit 1 when the security score is below N (or the description is not valid).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100))]
        min_score: Option<u32>,
        /// At most N results in the SARIF report, the most severe first (GitHub code
        /// scanning takes 25,000 and shows 5,000); a notification says how many were left out.
        #[arg(long, value_name = "N", default_value_t = 5000)]
        max_results: usize,
    },
    /// Actively scan a running API described by SPEC; only TARGET is contacted.
    Scan {
        /// The API description (OpenAPI 3.0/3.1, Swagger 2.0).
        #[arg(long, value_name = "SPEC")]
        spec: PathBuf,
        /// Base URL of the API (http://…).
        #[arg(long, value_name = "URL")]
        target: String,
        /// Credential of an ordinary identity A: "Bearer eyJ…", a bare token, "X-Api-Key: …";
        /// `env:NAME` reads it from an environment variable, `@FILE` from a file.
        #[arg(long, value_name = "CREDENTIAL")]
        auth_a: String,
        /// Credential of a second ordinary identity B (enables the BOLA checks); same forms.
        #[arg(long, value_name = "CREDENTIAL")]
        auth_b: Option<String>,
        /// Credential of an administrator (baseline for the BFLA checks); same forms.
        #[arg(long, value_name = "CREDENTIAL")]
        auth_admin: Option<String>,
        /// An expired token of identity A (checks that expiry is enforced); same forms.
        #[arg(long, value_name = "CREDENTIAL")]
        auth_expired: Option<String>,
        /// Where the SSRF canary listens (the target must be able to reach it).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        canary: String,
        /// A CA (PEM) to trust for an https target, beside the Mozilla roots.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Most requests sent.
        #[arg(long, default_value_t = 3000)]
        budget: u64,
        /// Requests per second (at least 1).
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// Allow methods that change data (POST, PUT, PATCH, DELETE): creates, writes as B,
        /// mass assignment, injection in bodies, SSRF, login checks. Objects the scan creates
        /// are deleted afterwards where the API allows.
        #[arg(long)]
        allow_unsafe: bool,
        /// text (default), json, sarif or html.
        #[arg(long, default_value = "text")]
        format: String,
        /// Write the report to this file.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Exit 1 when a finding is at least this severe.
        #[arg(long, value_name = "SEVERITY")]
        fail_on: Option<String>,
    },
    /// Write a secure-by-default config from an API description (every policy in monitor mode first).
    Init {
        /// The API description (OpenAPI 3.0/3.1, Swagger 2.0).
        #[arg(long, value_name = "SPEC")]
        spec: PathBuf,
        /// The API's base URL (`http://127.0.0.1:3000`).
        #[arg(long, value_name = "URL")]
        upstream: String,
        /// Where to write the config (default: stdout).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Where the admin listener listens.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: String,
    },
    /// Turn the findings of a scan into virtual patches of a config: `--verify` runs them in
    /// front of the target first; `promote` and `rollback` deploy them by hot reload.
    Patch(Box<patch_cmd::PatchArgs>),
    /// Decrypt a value the `pii` policy encrypted (`enc:v1:…`), with the key from an environment variable.
    Decrypt {
        /// The `enc:v1:…` value.
        #[arg(value_name = "VALUE")]
        value: String,
        /// Environment variable holding the 64-hex-digit key.
        #[arg(long, default_value = "PALISADE_PII_KEY")]
        key_env: String,
    },
    /// Certificates for trying TLS: `certs dev` makes a local CA and certificates it signs.
    Certs {
        #[command(subcommand)]
        cmd: CertsCmd,
    },
    /// Manage API keys: `keys new` prints a fresh key once, and the hash line for the config.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// The tamper-evident security log: `log verify FILE` checks its chain and signatures.
    Log {
        #[command(subcommand)]
        cmd: LogCmd,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the JSON Schema of the config file, for editors (see docs/configuration.md).
    Schema,
    /// Write man pages (palisade.1 and one per command) to a folder.
    Man {
        /// The folder (created if needed).
        #[arg(long, default_value = "man")]
        out: PathBuf,
    },
    /// Start the gateway on 127.0.0.1:8080 in front of a built-in demo API, and print commands to try.
    Quickstart {
        /// Where the demo API listens.
        #[arg(long, default_value = "127.0.0.1:3000")]
        demo: SocketAddr,
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the admin API (health, metrics) listens.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// Folder for the generated config (default: a new temporary folder).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CertsCmd {
    /// A development CA (ca.pem) and, for each --name, NAME.pem and NAME.key signed by it.
    Dev {
        /// The folder to write them to.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Host names to certify (`localhost` also covers 127.0.0.1 and ::1).
        #[arg(long = "name", default_value = "localhost")]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Print a fresh random API key (shown once) and the `api_keys` entry with its hash.
    New {
        /// A label for the key in the config (e.g. the date or the device).
        #[arg(long)]
        label: Option<String>,
        /// Make an admin token instead, for `admin.tokens`, with this role (viewer or
        /// operator); the label is then the holder's name.
        #[arg(long, value_name = "ROLE", value_parser = ["viewer", "operator"])]
        admin: Option<String>,
    },
    /// Write an Ed25519 key pair (NAME.key, mode 0600, and NAME.pub.pem), e.g. to sign the
    /// security log's checkpoints.
    Signing {
        /// The folder to write them to.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// The files' name.
        #[arg(long, default_value = "signing")]
        name: String,
    },
    /// Re-wrap the state store under a new key (the gateway stopped; a running one rotates
    /// when its config names a new runtime.state_key and keeps the old as previous).
    Rotate {
        /// The state directory (runtime.state_dir).
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// The file with the key the store is wrapped in now (64 hex digits).
        #[arg(long, value_name = "FILE")]
        old_key: PathBuf,
        /// The file with the new key.
        #[arg(long, value_name = "FILE")]
        new_key: PathBuf,
    },
}

#[derive(Subcommand)]
enum LogCmd {
    /// Replay the security log's hash chain and check its signed checkpoints; exits 1 when a
    /// record was removed, reordered or edited.
    Verify {
        /// The log file.
        file: PathBuf,
        /// The public key (PEM) whose private half signs the checkpoints.
        #[arg(long, value_name = "PUBLIC.pem")]
        key: Option<PathBuf>,
    },
}

/// `--fail-on`: the least severity that fails the run.
fn fail_threshold(fail_on: Option<&str>) -> Result<Option<palisade_audit::Severity>, String> {
    match fail_on {
        None => Ok(None),
        Some(s) => palisade_audit::Severity::parse(s)
            .map(Some)
            .ok_or_else(|| format!("--fail-on `{s}`: use low, medium, high or critical")),
    }
}

/// Writes a report to `output`, or to stdout.
fn emit(rendered: &str, output: Option<&Path>) -> Result<(), String> {
    match output {
        Some(p) => {
            std::fs::write(p, rendered).map_err(|e| format!("cannot write {}: {e}", p.display()))
        }
        None => {
            print!("{rendered}");
            Ok(())
        }
    }
}

/// Exit 1 when the worst finding reaches the threshold.
fn verdict(
    threshold: Option<palisade_audit::Severity>,
    worst: Option<palisade_audit::Severity>,
) -> ExitCode {
    match (threshold, worst) {
        (Some(t), Some(w)) if w >= t => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

/// What `palisade audit` was asked for, beside the description.
struct AuditArgs<'a> {
    format: &'a str,
    output: Option<&'a Path>,
    fail_on: Option<&'a str>,
    ignore: Option<&'a Path>,
    min_score: Option<u32>,
    max_results: usize,
}

fn audit(spec: &Path, a: &AuditArgs<'_>) -> ExitCode {
    let AuditArgs {
        format,
        output,
        fail_on,
        ignore,
        min_score,
        max_results,
    } = *a;
    let fail = |m: String| {
        eprintln!("palisade audit: {m}");
        ExitCode::from(2)
    };
    let threshold = match fail_threshold(fail_on) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let ignores = match ignore {
        None => Vec::new(),
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| palisade_audit::parse_ignores(&t))
        {
            Ok(i) => i,
            Err(e) => return fail(format!("{}: {e}", p.display())),
        },
    };
    let text = match std::fs::read_to_string(spec) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", spec.display())),
    };
    let report = match palisade_audit::audit_in(
        &spec.display().to_string(),
        &text,
        Some(spec.parent().unwrap_or(Path::new("."))),
        &ignores,
    ) {
        Ok(r) => r,
        Err(e) => return fail(format!("{}: {e}", spec.display())),
    };
    let rendered = match format {
        "text" => report.text(),
        "json" => report.json(),
        "sarif" => report.sarif(Some(max_results)),
        "html" => report.html(),
        other => return fail(format!("--format `{other}`: use text, json, sarif or html")),
    };
    if let Err(e) = emit(&rendered, output) {
        return fail(e);
    }
    if output.is_some() || format != "text" {
        // the verdict on stderr when the report went elsewhere
        eprintln!("palisade audit: {}: {}", spec.display(), report.scores());
    }
    if !report.valid {
        eprintln!(
            "palisade audit: {} is not a valid {} description: fix its format findings (PAL-STRUCT-*) first",
            spec.display(),
            report.version
        );
        return ExitCode::from(1);
    }
    if let Some(n) = min_score {
        if report.score < n {
            eprintln!(
                "palisade audit: security score {} is below --min-score {n}",
                report.score
            );
            return ExitCode::from(1);
        }
    }
    verdict(threshold, report.worst())
}

fn scan_cmd(
    spec: &Path,
    opts: &palisade_scan::Options,
    format: &str,
    output: Option<&Path>,
    fail_on: Option<&str>,
) -> ExitCode {
    let fail = |m: String| {
        eprintln!("palisade scan: {m}");
        ExitCode::from(2)
    };
    let threshold = match fail_threshold(fail_on) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    if !matches!(format, "text" | "json" | "sarif" | "html") {
        return fail(format!(
            "--format `{format}`: use text, json, sarif or html"
        ));
    }
    let text = match std::fs::read_to_string(spec) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", spec.display())),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("runtime: {e}")),
    };
    eprintln!(
        "palisade scan: {} (budget {} requests, {}/s)…",
        opts.target, opts.budget, opts.rate
    );
    let report = match rt.block_on(palisade_scan::scan(&text, opts)) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    eprintln!(
        "palisade scan: done, {} requests, {} findings",
        report.requests,
        report.findings.len()
    );
    let rendered = match format {
        "json" => report.json(),
        "sarif" => report.sarif(),
        "html" => report.html(),
        _ => report.text(),
    };
    if let Err(e) = emit(&rendered, output) {
        return fail(e);
    }
    verdict(threshold, report.worst())
}

fn keys_new(label: Option<String>, admin: Option<String>) -> anyhow::Result<()> {
    let (key, hash) = palisade_identity::consumers::new_key().map_err(|e| anyhow::anyhow!(e))?;
    if let Some(role) = admin {
        let name = label.map_or_else(|| "admin".to_string(), |l| l.replace('"', ""));
        println!("Admin token (shown only now: give it to {name}, store it nowhere else):");
        println!("  {key}");
        println!();
        println!("Add under admin.tokens in the config (only the hash is kept):");
        println!("  - {{name: \"{name}\", role: {role}, hash: \"{hash}\"}}");
        return Ok(());
    }
    let label = label.map_or(String::new(), |l| {
        format!(", label: \"{}\"", l.replace('"', ""))
    });
    println!("API key (shown only now: hand it to the client, store it nowhere else):");
    println!("  {key}");
    println!();
    println!("Add under the consumer's api_keys in the config (only the hash is kept):");
    println!("  - {{hash: \"{hash}\"{label}}}");
    Ok(())
}

const QUICKSTART: &str = include_str!("../../../examples/quickstart.yaml");
/// The admin token hash of examples/quickstart.yaml (no token has it), which the quickstart
/// replaces with the hash of the token it prints.
const QUICKSTART_ADMIN_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // colours only for a person at a terminal, and never with NO_COLOR (no-color.org)
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Validate { file } => return validate(&file),
        Cmd::Run { file, config } => match file.or(config) {
            Some(path) => run(&path, None, None),
            None => return ExitCode::from(2),
        },
        Cmd::Keys {
            cmd: KeysCmd::New { label, admin },
        } => keys_new(label, admin).map(|()| ExitCode::SUCCESS),
        Cmd::Keys {
            cmd: KeysCmd::Signing { out, name },
        } => keys_cmd::signing_keys(&out, &name).map(|()| ExitCode::SUCCESS),
        Cmd::Keys {
            cmd:
                KeysCmd::Rotate {
                    state_dir,
                    old_key,
                    new_key,
                },
        } => keys_cmd::rotate_state(&state_dir, &old_key, &new_key).map(|()| ExitCode::SUCCESS),
        Cmd::Log {
            cmd: LogCmd::Verify { file, key },
        } => log_cmd::verify(&file, key.as_deref()),
        Cmd::Certs {
            cmd: CertsCmd::Dev { out, names },
        } => certs::dev(&out, &names).map(|()| ExitCode::SUCCESS),
        Cmd::Scan {
            spec,
            target,
            auth_a,
            auth_b,
            auth_admin,
            auth_expired,
            canary,
            ca,
            budget,
            rate,
            allow_unsafe,
            format,
            output,
            fail_on,
        } => {
            let read = |flag: &str,
                        v: Option<String>|
             -> Result<Option<palisade_scan::Identity>, String> {
                v.map(|v| {
                    patch_cmd::credential(&v)
                        .and_then(|c| palisade_scan::Identity::parse(&c))
                        .map_err(|e| format!("--{flag}: {e}"))
                })
                .transpose()
            };
            let ids = (|| -> Result<_, String> {
                Ok((
                    read("auth-a", Some(auth_a))?.ok_or("--auth-a is required")?,
                    read("auth-b", auth_b)?,
                    read("auth-admin", auth_admin)?,
                    read("auth-expired", auth_expired)?,
                ))
            })();
            let (a, b, admin, expired) = match ids {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("palisade scan: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = palisade_scan::Options {
                target,
                a,
                b,
                admin,
                budget,
                rate,
                allow_unsafe,
                expired,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                ca_pem: match ca.map(std::fs::read_to_string).transpose() {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("palisade scan: --ca: {e}");
                        return ExitCode::from(2);
                    }
                },
                canary,
            };
            return scan_cmd(&spec, &opts, &format, output.as_deref(), fail_on.as_deref());
        }
        Cmd::Patch(args) => return patch_cmd::run(*args),
        Cmd::Init {
            spec,
            upstream,
            output,
            listen,
            admin,
        } => return patch_cmd::init(&spec, &upstream, output.as_deref(), &listen, &admin),
        Cmd::Decrypt { value, key_env } => {
            let Ok(key) = std::env::var(&key_env) else {
                eprintln!("palisade decrypt: the environment variable `{key_env}` is not set");
                return ExitCode::from(2);
            };
            return match palisade_threat::pii::decrypt(&value, &key) {
                Ok(plain) => {
                    println!("{plain}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("palisade decrypt: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Cmd::Audit {
            spec,
            format,
            output,
            fail_on,
            ignore,
            min_score,
            max_results,
        } => {
            return audit(
                &spec,
                &AuditArgs {
                    format: &format,
                    output: output.as_deref(),
                    fail_on: fail_on.as_deref(),
                    ignore: ignore.as_deref(),
                    min_score,
                    max_results,
                },
            )
        }
        Cmd::Completions { shell } => return docs_cmd::completions::<Cli>(shell),
        Cmd::Man { out } => return docs_cmd::man::<Cli>(&out),
        Cmd::Schema => return docs_cmd::schema(),
        Cmd::Quickstart {
            demo,
            listen,
            admin,
            dir,
        } => quickstart(demo, listen, admin, dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("palisade: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn validate(file: &Path) -> ExitCode {
    // a file that cannot be read is an error of the command (2), not a finding of the config
    if let Err(e) = std::fs::File::open(file) {
        eprintln!("palisade validate: cannot read {}: {e}", file.display());
        return ExitCode::from(2);
    }
    match palisade_config::load(file) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: valid ({} listener(s), {} upstream(s), {} route(s))",
                file.display(),
                c.listeners.len(),
                c.upstreams.len(),
                c.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(errs) => {
            eprint!("{errs}");
            ExitCode::from(1)
        }
    }
}

/// Serves until SIGTERM; exit 1 when requests had to be cut at the drain deadline. `demo`:
/// also the demo API there (the quickstart), whose console token `console_token` is printed
/// with the commands to try.
fn run(
    path: &Path,
    demo: Option<SocketAddr>,
    console_token: Option<String>,
) -> anyhow::Result<ExitCode> {
    init_logs();
    let config = palisade_config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    // One worker runs everything on the current thread: no cross-thread wake-ups or work
    // stealing, which is what a single-core deployment wants.
    let mut rt = if config.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if config.workers > 0 {
            b.worker_threads(config.workers);
        }
        b
    };
    let rt = rt
        .enable_all()
        .thread_name("palisade-worker")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        if let Some(addr) = demo {
            let bound = demo::start(addr)
                .await
                .with_context(|| format!("starting the demo API on {addr}"))?;
            tracing::info!(addr = %bound, "demo API listening");
        }
        let gw = Arc::new(Gateway::start(config).await?);
        if demo.is_some() {
            // something for the console to show from the first look
            if let Some(public) = gw.addr("public") {
                let refused = demo::traffic(public).await;
                tracing::info!(refused, "demo traffic sent: the console shows it");
            }
            print_quickstart(&gw, path, console_token.as_deref().unwrap_or("-"));
        }
        let _watcher = gw.spawn_watcher();
        let drained = serve_signals(&gw).await?;
        Ok(if drained.requests_cut > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}

#[cfg(unix)]
async fn serve_signals(gw: &Arc<Gateway>) -> anyhow::Result<palisade_proxy::Drained> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                gw.file_changed().await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let deadline = gw.drain_timeout();
    tracing::info!(
        deadline_secs = deadline.as_secs(),
        "shutting down: draining connections"
    );
    let d = gw.shutdown(deadline).await;
    if d.connections_cut > 0 {
        tracing::warn!(
            connections = d.connections_cut,
            requests = d.requests_cut,
            "drain deadline passed; the remaining connections were closed and their requests cut (logged as shutdown.drain_deadline)"
        );
    } else {
        tracing::info!("drained; bye");
    }
    Ok(d)
}

#[cfg(not(unix))]
async fn serve_signals(gw: &Arc<Gateway>) -> anyhow::Result<palisade_proxy::Drained> {
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(gw.shutdown(gw.drain_timeout()).await)
}

fn quickstart(
    demo: SocketAddr,
    listen: SocketAddr,
    admin: SocketAddr,
    dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    /// A folder of our own, removed when the quickstart ends however it ends.
    struct Temporary(PathBuf);
    impl Drop for Temporary {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let (dir, _cleanup) = match dir {
        Some(d) => (d, None),
        None => {
            let d =
                std::env::temp_dir().join(format!("palisade-quickstart-{}", std::process::id()));
            (d.clone(), Some(Temporary(d)))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("palisade.yaml");
    // a one-time operator token for the console: its hash goes into the config, the token
    // itself only to the terminal
    let (token, hash) = palisade_identity::consumers::new_key().map_err(|e| anyhow::anyhow!(e))?;
    let text = QUICKSTART
        .replace(QUICKSTART_ADMIN_HASH, &hash)
        .replace("http://127.0.0.1:3000", &format!("http://{demo}"))
        .replace("listen: 127.0.0.1:8080", &format!("listen: \"{listen}\""))
        .replace("listen: 127.0.0.1:9901", &format!("listen: \"{admin}\""));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let spec = dir.join("demo-openapi.json");
    std::fs::write(&spec, demo::OPENAPI).with_context(|| format!("writing {}", spec.display()))?;
    let wsdl = dir.join("demo-orders.wsdl");
    std::fs::write(&wsdl, demo::WSDL).with_context(|| format!("writing {}", wsdl.display()))?;
    run(&path, Some(demo), Some(token)).map_err(|e| {
        let in_use = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
                || c.to_string().contains("in use")
        });
        if in_use {
            anyhow::anyhow!(
                "{e:#}\nhint: a port the quickstart uses is taken; choose others: palisade quickstart --listen 127.0.0.1:8081 --admin 127.0.0.1:9902 --demo 127.0.0.1:3001"
            )
        } else {
            e
        }
    })
}

fn print_quickstart(gw: &Gateway, path: &Path, token: &str) {
    let public = gw
        .addr("public")
        .map_or_else(|| "127.0.0.1:8080".to_string(), |a| a.to_string());
    let admin = gw
        .admin_addr()
        .map_or_else(|| "127.0.0.1:9901".to_string(), |a| a.to_string());
    eprintln!(
        r#"
Palisade is running on http://{public} in front of the demo API.
Config: {cfg} (edit it: Palisade reloads on save)

Security console: http://{admin}/console/
  one-time admin token (operator, for this run only): {token}
  (a few demo requests, attacks among them, are already in it)

Try:
  curl -i http://{public}/api/users                      # 200, proxied, with secure headers and an X-Request-Id
  curl -i http://{public}/api/users/1                    # 200
  curl -i -X POST http://{public}/api/users -H 'content-type: application/json' -d '{{"name":"Alan"}}'   # 201
  curl -i -X POST http://{public}/api/users -H 'content-type: application/json' \
    -d '{{"name":"<script>alert(1)</script>"}}'          # an injection: 403 threat.detected
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}}\n' -X POST http://{public}/api/users \
    -H 'content-type: application/json' -d '{{"name":"Bot"}}'; done
                     # 5 writes per 10 s, the two above included: 201 201 201 429 429 429
  curl -i http://{public}/partner/users -H 'x-api-key: pk_demo_quickstart_key_not_for_production'   # 200
                                                         # (a demo key; `palisade keys new` makes real ones)
  curl -i http://{public}/partner/users                  # no key: 401 with WWW-Authenticate
  TOKEN=$(curl -s -X POST 'http://{public}/idp/token?sub=ada&scope=users:read' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -i http://{public}/secure/users -H "Authorization: Bearer $TOKEN"      # JWT verified: 200
  curl -i -X POST http://{public}/secure/users -H "Authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d '{{"name":"Eve"}}'                 # 403 insufficient_scope
  curl -i http://{public}/api/users/abc                  # the contract, an id is an integer: 400 contract.invalid_request
  curl -i http://{public}/admin/stats                    # refused by ip_filter: 403 network.ip_denied, problem+json
  curl -i http://{public}/reports/2026                   # monitor mode: 200, logged as would-refuse
  curl -i http://{public}/nowhere                        # 404, problem+json
  curl -si http://{public}/soap -H 'content-type: text/xml' -H 'SOAPAction: "urn:demo:orders#GetOrder"' \
    -d '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><GetOrder xmlns="urn:demo:orders"><id>7</id></GetOrder></s:Body></s:Envelope>'   # SOAP, as the WSDL says: 200
  curl -si http://{public}/soap -H 'content-type: text/xml' -H 'SOAPAction: "urn:demo:orders#GetOrder"' \
    -d '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><GetOrder xmlns="urn:demo:orders"><id>0</id></GetOrder></s:Body></s:Envelope>'   # off the schema: 400 soap.invalid_body, a SOAP Fault
  curl -si http://{public}/soap -H 'content-type: text/xml' -H 'SOAPAction: "urn:demo:orders#DeleteOrder"' \
    -d '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><DeleteOrder xmlns="urn:demo:orders"><id>7</id></DeleteOrder></s:Body></s:Envelope>'   # not in the WSDL: 400 soap.unknown_operation
  curl -s http://{admin}/metrics | grep palisade_        # Prometheus metrics
  curl -si http://{admin}/api/v1/events?limit=5 -H 'Authorization: Bearer {token}'   # the admin API: 200, the refusals above and why
Stop with Ctrl-C.
"#,
        cfg = path.display()
    );
}
