//! `palisade log verify`: replays the security log's hash chain and checks its signed
//! checkpoints; `palisade keys signing`: an Ed25519 key pair to sign them with.

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

use palisade_identity::signature::keys::pem_encode as pem;

/// Writes `NAME.key` (PKCS#8, mode 0600) and `NAME.pub.pem` (SubjectPublicKeyInfo) to `dir`.
pub fn signing_keys(dir: &Path, name: &str) -> anyhow::Result<()> {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
        .map_err(|_| anyhow::anyhow!("the generated key does not read back"))?;
    // SubjectPublicKeyInfo for Ed25519: the algorithm identifier, then the 32 key bytes
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(pair.public_key().as_ref());
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key_path = dir.join(format!("{name}.key"));
    let pub_path = dir.join(format!("{name}.pub.pem"));
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .with_context(|| {
                format!(
                    "cannot create {} (it must not exist yet)",
                    key_path.display()
                )
            })?;
        f.write_all(pem("PRIVATE KEY", doc.as_ref()).as_bytes())?;
    }
    std::fs::write(&pub_path, pem("PUBLIC KEY", &spki))?;
    println!(
        "wrote {} (private, mode 0600) and {}",
        key_path.display(),
        pub_path.display()
    );
    println!("sign the security log with it:");
    println!(
        "  log: {{security: {{path: security.log, signing_key: \"${{file:{}}}\"}}}}",
        key_path.display()
    );
    println!(
        "and check a log with: palisade log verify security.log --key {}",
        pub_path.display()
    );
    Ok(())
}
