//! `palisade keys signing`: an Ed25519 key pair (the security log's checkpoints);
//! `palisade keys rotate`: the state store re-wrapped under a new key, offline.

use std::path::Path;

use anyhow::Context as _;

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

/// Re-wraps the state store in `dir` (the gateway stopped: the file is locked while it runs)
/// from the key in `old` to the key in `new` (64 hex digits each); new writes then use a fresh
/// data key. A running gateway does the same when its config gets a new `runtime.state_key`
/// with the old one in `runtime.state_previous_keys`.
pub fn rotate_state(dir: &Path, old: &Path, new: &Path) -> anyhow::Result<()> {
    use palisade_traffic::state::crypt::{Kek, StateKeys};
    let read = |p: &Path| -> anyhow::Result<Kek> {
        let t =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        Kek::from_hex(&t).ok_or_else(|| anyhow::anyhow!("{} must hold 64 hex digits", p.display()))
    };
    let (old, new) = (read(old)?, read(new)?);
    let keys = StateKeys {
        current: Some(new.clone()),
        previous: vec![old],
    };
    let db = palisade_traffic::state::StateDb::open(dir, &keys).map_err(|e| anyhow::anyhow!(e))?;
    db.flush();
    println!(
        "{}: keys re-wrapped under {}; set runtime.state_key to that key",
        dir.join("state.redb").display(),
        new.fingerprint()
    );
    Ok(())
}
