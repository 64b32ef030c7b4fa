//! The algorithms of RFC 9421 §3.3 and the keys a consumer signs with, on aws-lc-rs.
//!
//! A key is bound to one algorithm when it is configured: a signature's `alg` parameter can
//! only confirm it, never choose another (the key-confusion attacks JWT libraries had).

use std::fmt;

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use aws_lc_rs::{hmac, rand};
use base64::Engine as _;
use serde::Deserialize;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The signature algorithms of the HTTP Signature Algorithms registry (RFC 9421 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, schemars::JsonSchema)]
pub enum Alg {
    /// EdDSA over Curve25519 (deterministic).
    #[serde(rename = "ed25519")]
    Ed25519,
    /// ECDSA on P-256 with SHA-256, `r || s`.
    #[serde(rename = "ecdsa-p256-sha256")]
    EcdsaP256Sha256,
    /// ECDSA on P-384 with SHA-384, `r || s`.
    #[serde(rename = "ecdsa-p384-sha384")]
    EcdsaP384Sha384,
    /// RSASSA-PSS with SHA-512 (salt of 64 bytes).
    #[serde(rename = "rsa-pss-sha512")]
    RsaPssSha512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "rsa-v1_5-sha256")]
    RsaV15Sha256,
    /// HMAC with SHA-256 and a shared secret.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

impl Alg {
    /// The name in the registry, as the `alg` parameter carries it.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Ed25519 => "ed25519",
            Alg::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Alg::EcdsaP384Sha384 => "ecdsa-p384-sha384",
            Alg::RsaPssSha512 => "rsa-pss-sha512",
            Alg::RsaV15Sha256 => "rsa-v1_5-sha256",
            Alg::HmacSha256 => "hmac-sha256",
        }
    }

    /// The algorithm a registry name stands for.
    pub fn from_name(s: &str) -> Option<Alg> {
        [
            Alg::Ed25519,
            Alg::EcdsaP256Sha256,
            Alg::EcdsaP384Sha384,
            Alg::RsaPssSha512,
            Alg::RsaV15Sha256,
            Alg::HmacSha256,
        ]
        .into_iter()
        .find(|a| a.name() == s)
    }

    fn verifier(self) -> Option<&'static dyn VerificationAlgorithm> {
        Some(match self {
            Alg::Ed25519 => &signature::ED25519,
            Alg::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_FIXED,
            Alg::EcdsaP384Sha384 => &signature::ECDSA_P384_SHA384_FIXED,
            Alg::RsaPssSha512 => &signature::RSA_PSS_2048_8192_SHA512,
            Alg::RsaV15Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::HmacSha256 => return None,
        })
    }

    /// The public-key algorithm (OID) a key for this algorithm has.
    fn key_oid(self) -> Option<&'static str> {
        match self {
            Alg::Ed25519 => Some("1.3.101.112"),
            Alg::EcdsaP256Sha256 | Alg::EcdsaP384Sha384 => Some("1.2.840.10045.2.1"),
            Alg::RsaPssSha512 | Alg::RsaV15Sha256 => None, // rsaEncryption or RSASSA-PSS
            Alg::HmacSha256 => None,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A key that verifies signatures of one algorithm.
pub struct VerifyKey {
    alg: Alg,
    material: Material,
}

enum Material {
    Public(Vec<u8>),
    Secret(Box<hmac::Key>),
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // never the secret
        f.debug_struct("VerifyKey").field("alg", &self.alg).finish()
    }
}

/// `der` as a PEM block with `label` (64 columns, final newline).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The blocks of a PEM text: label and decoded bytes.
pub(crate) fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut b64 = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            if l == end {
                closed = true;
                break;
            }
            b64.push_str(l);
        }
        if !closed {
            return Err(format!("the PEM block `{label}` has no END line"));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|_| format!("the PEM block `{label}` is not base64"))?;
        out.push((label.to_string(), der));
    }
    if out.is_empty() {
        return Err("no PEM block (-----BEGIN PUBLIC KEY----- …) found".into());
    }
    Ok(out)
}

impl VerifyKey {
    /// A public key from PEM: SubjectPublicKeyInfo (`PUBLIC KEY`) for every algorithm, or
    /// PKCS#1 (`RSA PUBLIC KEY`) for RSA ones. The key's type must fit `alg`.
    pub fn public_pem(alg: Alg, pem: &str) -> Result<VerifyKey, String> {
        if alg == Alg::HmacSha256 {
            return Err("hmac-sha256 takes a shared secret, not a public key".into());
        }
        let blocks = pem_blocks(pem)?;
        let [(label, der)] = blocks.as_slice() else {
            return Err("give exactly one PEM block".into());
        };
        let raw = match label.as_str() {
            "PUBLIC KEY" => {
                let (rest, spki) = SubjectPublicKeyInfo::from_der(der).map_err(|_| {
                    "the PUBLIC KEY block is not a SubjectPublicKeyInfo".to_string()
                })?;
                if !rest.is_empty() {
                    return Err("the PUBLIC KEY block has bytes after the key".into());
                }
                let oid = spki.algorithm.algorithm.to_id_string();
                let fits = match alg.key_oid() {
                    Some(want) => oid == want,
                    // rsaEncryption, or RSASSA-PSS keys
                    None => oid == "1.2.840.113549.1.1.1" || oid == "1.2.840.113549.1.1.10",
                };
                if !fits {
                    return Err(format!("the key (algorithm {oid}) is not a key for {alg}"));
                }
                if let (Alg::EcdsaP256Sha256 | Alg::EcdsaP384Sha384, Some(p)) =
                    (alg, spki.algorithm.parameters.as_ref())
                {
                    let curve = p.as_oid().map(|o| o.to_id_string()).unwrap_or_default();
                    let want = if alg == Alg::EcdsaP256Sha256 {
                        "1.2.840.10045.3.1.7"
                    } else {
                        "1.3.132.0.34"
                    };
                    if curve != want {
                        return Err(format!(
                            "the EC key's curve ({curve}) is not the one {alg} uses"
                        ));
                    }
                }
                spki.subject_public_key.data.to_vec()
            }
            "RSA PUBLIC KEY" if matches!(alg, Alg::RsaPssSha512 | Alg::RsaV15Sha256) => der.clone(),
            other => {
                return Err(format!(
                    "a `{other}` PEM block is not a public key for {alg}"
                ))
            }
        };
        let key = VerifyKey {
            alg,
            material: Material::Public(raw),
        };
        key.check_usable()?;
        Ok(key)
    }

    /// A shared secret for `hmac-sha256` (at least 32 bytes: RFC 9421 §3.3.3 asks for a key
    /// as long as the hash).
    pub fn secret(alg: Alg, secret: &[u8]) -> Result<VerifyKey, String> {
        if alg != Alg::HmacSha256 {
            return Err(format!("{alg} takes a public key, not a shared secret"));
        }
        if secret.len() < 32 {
            return Err("the shared secret must be at least 32 bytes".into());
        }
        Ok(VerifyKey {
            alg,
            material: Material::Secret(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret))),
        })
    }

    /// The key's algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// A malformed public key is found when configured, not on the first request: a
    /// signature over nothing must fail as a bad signature, not as a bad key.
    fn check_usable(&self) -> Result<(), String> {
        if let Material::Public(raw) = &self.material {
            let ok = match self.alg {
                Alg::Ed25519 => raw.len() == 32,
                Alg::EcdsaP256Sha256 => raw.len() == 65 && raw.first() == Some(&4),
                Alg::EcdsaP384Sha384 => raw.len() == 97 && raw.first() == Some(&4),
                // a DER SEQUENCE of modulus and exponent, 2048 bits at least
                _ => raw.first() == Some(&0x30) && raw.len() >= 256,
            };
            if !ok {
                return Err(format!("the key is not a valid {} public key", self.alg));
            }
        }
        Ok(())
    }

    /// Whether `sig` is this key's signature of `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match (&self.material, self.alg.verifier()) {
            (Material::Public(raw), Some(v)) => {
                UnparsedPublicKey::new(v, raw).verify(msg, sig).is_ok()
            }
            (Material::Secret(k), _) => hmac::verify(k, msg, sig).is_ok(),
            (Material::Public(_), None) => false,
        }
    }
}

/// A key that signs: Palisade's own (toward upstreams), or a test client's.
pub struct SignKey {
    alg: Alg,
    inner: SignInner,
}

enum SignInner {
    Ed(signature::Ed25519KeyPair),
    Ec(signature::EcdsaKeyPair),
    Rsa(signature::RsaKeyPair),
    Hmac(Box<hmac::Key>),
}

impl fmt::Debug for SignKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignKey").field("alg", &self.alg).finish()
    }
}

impl SignKey {
    /// A private key from PEM (`PRIVATE KEY`, PKCS#8) for an asymmetric algorithm.
    pub fn private_pem(alg: Alg, pem: &str) -> Result<SignKey, String> {
        let blocks = pem_blocks(pem)?;
        let Some((_, der)) = blocks.iter().find(|(l, _)| l == "PRIVATE KEY") else {
            return Err("the private key must be a PKCS#8 `PRIVATE KEY` PEM block".into());
        };
        let bad = |_| format!("the private key is not a valid PKCS#8 key for {alg}");
        let inner = match alg {
            Alg::Ed25519 => SignInner::Ed(
                signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(bad)?,
            ),
            Alg::EcdsaP256Sha256 => SignInner::Ec(
                signature::EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                )
                .map_err(bad)?,
            ),
            Alg::EcdsaP384Sha384 => SignInner::Ec(
                signature::EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                    der,
                )
                .map_err(bad)?,
            ),
            Alg::RsaPssSha512 | Alg::RsaV15Sha256 => {
                SignInner::Rsa(signature::RsaKeyPair::from_pkcs8(der).map_err(bad)?)
            }
            Alg::HmacSha256 => return Err("hmac-sha256 takes a shared secret".into()),
        };
        Ok(SignKey { alg, inner })
    }

    /// A shared secret for `hmac-sha256` (at least 32 bytes).
    pub fn secret(secret: &[u8]) -> Result<SignKey, String> {
        if secret.len() < 32 {
            return Err("the shared secret must be at least 32 bytes".into());
        }
        Ok(SignKey {
            alg: Alg::HmacSha256,
            inner: SignInner::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret))),
        })
    }

    /// The key's algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let rng = rand::SystemRandom::new();
        match &self.inner {
            SignInner::Ed(k) => Ok(k.sign(msg).as_ref().to_vec()),
            SignInner::Ec(k) => k
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "ECDSA signing failed".to_string()),
            SignInner::Rsa(k) => {
                let pad: &'static dyn signature::RsaEncoding = if self.alg == Alg::RsaPssSha512 {
                    &signature::RSA_PSS_SHA512
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut out = vec![0u8; k.public_modulus_len()];
                k.sign(pad, &rng, msg, &mut out)
                    .map_err(|_| "RSA signing failed".to_string())?;
                Ok(out)
            }
            SignInner::Hmac(k) => Ok(hmac::sign(k, msg).as_ref().to_vec()),
        }
    }
}
