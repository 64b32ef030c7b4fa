//! `palisade log verify`: replays the security log's hash chain and checks its signed
//! checkpoints.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

/// Verifies `file`, with the public key in `key` (PEM) when given.
pub fn verify(file: &Path, key: Option<&Path>) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let key = match key {
        None => None,
        Some(p) => {
            let pem = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Some(
                palisade_identity::signature::keys::VerifyKey::public_pem(
                    palisade_identity::signature::keys::Alg::Ed25519,
                    &pem,
                )
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            )
        }
    };
    match palisade_proxy::security_log::verify(&text, key.as_ref()) {
        Ok(v) => {
            println!(
                "{}: intact: {} records, {} signed checkpoints{}",
                file.display(),
                v.records,
                v.checkpoints,
                if key.is_none() {
                    " (no key given: chain only)"
                } else {
                    ""
                }
            );
            if v.unsigned_tail > 0 {
                println!(
                    "  the last {} records follow the last checkpoint: not signed yet (the gateway is running, or the end of the log was cut)",
                    v.unsigned_tail
                );
            }
            if v.dropped > 0 {
                println!(
                    "  the log says {} records were dropped (the writer could not keep up)",
                    v.dropped
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            eprintln!("{}: TAMPERED or damaged:", file.display());
            for p in problems {
                eprintln!("  {p}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
