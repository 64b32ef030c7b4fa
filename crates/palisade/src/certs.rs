//! `palisade certs dev`: a local certificate authority and certificates it signs, for trying
//! TLS (and `examples/https.yaml`) on a development machine. Never for production: the CA
//! key sits beside the certificates.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// Writes a file readable by its owner only (a private key).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// A fresh CA in `out/ca.pem` (its key in `out/ca.key`) and, for each name, `out/NAME.pem`
/// and `out/NAME.key` signed by it. `localhost` also covers 127.0.0.1 and ::1.
pub fn dev(out: &Path, names: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(
        DnType::CommonName,
        "Palisade development CA (not for production)",
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca = params.self_signed(&ca_key)?;
    std::fs::write(out.join("ca.pem"), ca.pem())
        .with_context(|| format!("writing {}", out.join("ca.pem").display()))?;
    write_private(&out.join("ca.key"), &ca_key.serialize_pem())?;
    let issuer = Issuer::new(params, ca_key);
    for name in names {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            anyhow::bail!("`{name}` is not a host name");
        }
        let mut sans = vec![name.clone()];
        if name == "localhost" {
            sans.extend(["127.0.0.1".to_string(), "::1".to_string()]);
        }
        let mut p = CertificateParams::new(sans)?;
        p.distinguished_name.push(DnType::CommonName, name.clone());
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        std::fs::write(out.join(format!("{name}.pem")), cert.pem())
            .with_context(|| format!("writing {name}.pem"))?;
        write_private(&out.join(format!("{name}.key")), &key.serialize_pem())?;
    }
    println!(
        "wrote a development CA and {} certificate(s) to {}:",
        names.len(),
        out.display()
    );
    println!(
        "  {}/ca.pem (trust it in clients: curl --cacert {}/ca.pem …)",
        out.display(),
        out.display()
    );
    for n in names {
        println!("  {0}/{n}.pem and {0}/{n}.key", out.display());
    }
    println!(
        "for trying TLS only: the CA's key is beside them ({}/ca.key)",
        out.display()
    );
    Ok(())
}
