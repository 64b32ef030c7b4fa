//! JWS compact serialization (RFC 7515) and JSON Web Keys (RFC 7517/7518), verification only.
//!
//! Strict by construction: the algorithm comes from a closed list (`none` in any casing is a
//! refusal of its own), the key must be of the algorithm's type and fit for verification
//! (`use`, `key_ops`, its own `alg`), header parameters that would let the token choose its
//! own key (`jku`, `x5u`, `jwk`, `x5c`) are refused, and so is any `crit` extension, since we
//! implement none. Signatures are checked by aws-lc-rs; RSA keys below 2048 bits are refused.

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::Engine as _;
use serde_json::{Map, Value};

/// Longest token accepted by default (bytes of the compact form).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token was refused. The text is for logs and problem details: it never contains the
/// token or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// Not three base64url parts, or bad base64, or bad JSON.
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    /// Larger than the configured maximum.
    #[error("the token is too large")]
    TooLarge,
    /// `alg: none` in any casing.
    #[error("unsigned tokens (alg none) are never accepted")]
    AlgNone,
    /// An algorithm we do not implement, or one this issuer does not allow.
    #[error("the algorithm {0} is not allowed")]
    AlgNotAllowed(String),
    /// A header parameter that would let the token pick its own key.
    #[error("the header parameter `{0}` is not trusted")]
    UntrustedHeader(&'static str),
    /// A `crit` extension (we implement none).
    #[error("the token requires extensions this verifier does not implement (crit)")]
    Critical,
    /// No key of the issuer can verify it (unknown `kid`, or none of the right type).
    #[error("no key matches the token")]
    NoKey,
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
}

/// A JWS algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
}

impl Alg {
    /// Parses the exact registered name.
    pub fn parse(s: &str) -> Result<Alg, JoseError> {
        Ok(match s {
            "HS256" => Alg::HS256,
            "HS384" => Alg::HS384,
            "HS512" => Alg::HS512,
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "ES512" => Alg::ES512,
            "EdDSA" => Alg::EdDSA,
            other if other.eq_ignore_ascii_case("none") => return Err(JoseError::AlgNone),
            other => {
                let shown: String = other.chars().take(20).collect();
                return Err(JoseError::AlgNotAllowed(shown));
            }
        })
    }

    /// Its registered name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// Whether it is an HMAC (shared secret) algorithm.
    pub fn is_symmetric(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }

    /// Every asymmetric algorithm: the default allow-list of an issuer with public keys.
    pub const ASYMMETRIC: [Alg; 10] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::EdDSA,
    ];
}

#[derive(Clone, PartialEq, Eq)]
enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { crv: Curve, point: Vec<u8> },
    Ed25519(Vec<u8>),
    Oct(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
    P521,
}

/// A public (or, for HMAC, secret) key that can verify signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwk {
    /// Key id.
    pub kid: Option<String>,
    /// The one algorithm the key is for, when the JWK says so.
    pub alg: Option<Alg>,
    material: Material,
    usable: bool,
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.material {
            Material::Rsa { .. } => "RSA",
            Material::Ec { .. } => "EC",
            Material::Ed25519(_) => "OKP",
            Material::Oct(_) => "oct (secret)",
        };
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kty", &kind)
            .finish_non_exhaustive()
    }
}

fn b64(s: &str) -> Result<Vec<u8>, JoseError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JoseError::Malformed("bad base64url"))
}

/// JWE key-management algorithms: a key labelled with one is for encryption, never for us.
fn is_encryption_alg(a: &str) -> bool {
    a.starts_with("RSA-OAEP")
        || a == "RSA1_5"
        || a.starts_with("ECDH-ES")
        || a.starts_with("PBES2")
        || a == "dir"
        || (a.starts_with('A') && (a.ends_with("KW") || a.ends_with("GCM")))
}

fn field<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

impl Jwk {
    /// Reads a JWK. Private members are ignored (only the public part is kept), except for
    /// `oct` keys, whose `k` is the secret. Returns `None` for keys of other types (they are
    /// skipped in a key set, not an error).
    pub fn from_json(v: &Value) -> Result<Option<Jwk>, String> {
        let Some(m) = v.as_object() else {
            return Err("a key must be a JSON object".into());
        };
        let kid = field(m, "kid").map(str::to_string);
        let alg = match field(m, "alg") {
            None => None,
            Some(a) if is_encryption_alg(a) => return Ok(None),
            // an unregistered name (Wycheproof's "ES521"): the key type alone decides
            Some(a) => Alg::parse(a).ok(),
        };
        let need = |k: &str| -> Result<Vec<u8>, String> {
            let s = field(m, k).ok_or_else(|| format!("missing `{k}`"))?;
            b64(s).map_err(|_| format!("`{k}` is not base64url"))
        };
        let material = match field(m, "kty") {
            Some("RSA") => {
                let strip = |v: Vec<u8>| {
                    let first = v.iter().position(|&b| b != 0).unwrap_or(v.len());
                    v.get(first..).map(<[u8]>::to_vec).unwrap_or_default()
                };
                Material::Rsa {
                    n: strip(need("n")?),
                    e: strip(need("e")?),
                }
            }
            Some("EC") => {
                let (crv, len) = match field(m, "crv") {
                    Some("P-256") => (Curve::P256, 32),
                    Some("P-384") => (Curve::P384, 48),
                    Some("P-521") => (Curve::P521, 66),
                    _ => return Ok(None),
                };
                let (x, y) = (need("x")?, need("y")?);
                if x.len() != len || y.len() != len {
                    return Err(format!("EC coordinates must be {len} bytes"));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Material::Ec { crv, point }
            }
            Some("OKP") => match field(m, "crv") {
                Some("Ed25519") => {
                    let x = need("x")?;
                    if x.len() != 32 {
                        return Err("an Ed25519 key is 32 bytes".into());
                    }
                    Material::Ed25519(x)
                }
                _ => return Ok(None),
            },
            Some("oct") => {
                let k = need("k")?;
                if k.is_empty() {
                    return Err("an empty secret".into());
                }
                Material::Oct(k)
            }
            _ => return Ok(None),
        };
        // fit for verifying signatures: `use` and `key_ops`, when present, must say so
        let use_ok = field(m, "use").is_none_or(|u| u == "sig");
        let ops_ok = match m.get("key_ops") {
            None => true,
            Some(Value::Array(ops)) => ops.iter().any(|o| o.as_str() == Some("verify")),
            Some(_) => false,
        };
        Ok(Some(Jwk {
            kid,
            alg,
            material,
            usable: use_ok && ops_ok,
        }))
    }

    /// A secret for HMAC algorithms.
    pub fn secret(kid: Option<String>, bytes: Vec<u8>) -> Jwk {
        Jwk {
            kid,
            alg: None,
            material: Material::Oct(bytes),
            usable: true,
        }
    }

    /// Whether it is a shared secret.
    pub fn is_symmetric(&self) -> bool {
        matches!(self.material, Material::Oct(_))
    }

    /// Whether the key may verify `alg` (type, curve, its own `alg`, use and key_ops).
    pub fn fits(&self, alg: Alg) -> bool {
        if !self.usable || self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        match (&self.material, alg) {
            (Material::Oct(_), a) => a.is_symmetric(),
            (Material::Rsa { .. }, a) => matches!(
                a,
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ),
            (Material::Ec { crv, .. }, a) => matches!(
                (crv, a),
                (Curve::P256, Alg::ES256) | (Curve::P384, Alg::ES384) | (Curve::P521, Alg::ES512)
            ),
            (Material::Ed25519(_), a) => a == Alg::EdDSA,
        }
    }

    /// Verifies `sig` over `msg` with `alg`; false when the key does not fit or it fails.
    pub fn verify(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        match &self.material {
            Material::Oct(k) => {
                let a = match alg {
                    Alg::HS256 => aws_lc_rs::hmac::HMAC_SHA256,
                    Alg::HS384 => aws_lc_rs::hmac::HMAC_SHA384,
                    _ => aws_lc_rs::hmac::HMAC_SHA512,
                };
                aws_lc_rs::hmac::verify(&aws_lc_rs::hmac::Key::new(a, k), msg, sig).is_ok()
            }
            Material::Rsa { n, e } => {
                let params = match alg {
                    Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    _ => &signature::RSA_PSS_2048_8192_SHA512,
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .is_ok()
            }
            Material::Ec { crv, point } => {
                let a = match crv {
                    Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
                    Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED,
                };
                UnparsedPublicKey::new(a, point).verify(msg, sig).is_ok()
            }
            Material::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(msg, sig)
                .is_ok(),
        }
    }
}

/// Reads a JWK Set (`{"keys": [...]}`); keys of unsupported types are skipped.
pub fn parse_jwks(text: &[u8]) -> Result<Vec<Jwk>, String> {
    let v: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("a JWK Set is an object with a `keys` array")?;
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match Jwk::from_json(k) {
            Ok(Some(k)) => out.push(k),
            Ok(None) => {}
            Err(e) => return Err(format!("keys[{i}]: {e}")),
        }
    }
    Ok(out)
}

/// A token whose signature has been verified.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// The algorithm.
    pub alg: Alg,
}

/// The parts of a compact JWS, decoded but not verified.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The algorithm it names (already checked against the closed list).
    pub alg: Alg,
    /// Its `kid`.
    pub kid: Option<String>,
    signing_input: &'a [u8],
    payload_b64: &'a str,
    signature: Vec<u8>,
}

/// Decodes a compact JWS and applies the header rules; the signature is not checked yet.
pub fn parse(token: &str, max_bytes: usize) -> Result<Parsed<'_>, JoseError> {
    if token.len() > max_bytes {
        return Err(JoseError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JoseError::Malformed("a JWS has three parts"));
    };
    if h.is_empty() {
        return Err(JoseError::Malformed("empty header"));
    }
    if s.is_empty() {
        return Err(JoseError::Malformed("missing signature"));
    }
    let header: Value = serde_json::from_slice(&b64(h)?)
        .map_err(|_| JoseError::Malformed("the header is not JSON"))?;
    let Value::Object(header) = header else {
        return Err(JoseError::Malformed("the header is not a JSON object"));
    };
    let alg = match header.get("alg") {
        Some(Value::String(a)) => Alg::parse(a)?,
        _ => return Err(JoseError::Malformed("the header has no `alg`")),
    };
    for (name, key) in [
        ("jku", "jku"),
        ("x5u", "x5u"),
        ("jwk", "jwk"),
        ("x5c", "x5c"),
    ] {
        if header.contains_key(key) {
            return Err(JoseError::UntrustedHeader(name));
        }
    }
    if header.contains_key("crit") {
        return Err(JoseError::Critical);
    }
    if header.get("b64").is_some_and(|v| v != &Value::Bool(true)) {
        return Err(JoseError::Critical);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if k.len() <= 256 => Some(k.clone()),
        Some(_) => return Err(JoseError::Malformed("`kid` must be a short string")),
    };
    let signature = b64(s)?;
    let signing_input = token
        .as_bytes()
        .get(..h.len() + 1 + p.len())
        .ok_or(JoseError::Malformed("truncated"))?;
    Ok(Parsed {
        header,
        alg,
        kid,
        signing_input,
        payload_b64: p,
        signature,
    })
}

impl Parsed<'_> {
    /// Verifies with the first fitting key of `keys` (those with the token's `kid`, when it has
    /// one) whose algorithm is in `allowed`.
    pub fn verify(self, keys: &[Jwk], allowed: &[Alg]) -> Result<Verified, JoseError> {
        if !allowed.contains(&self.alg) {
            return Err(JoseError::AlgNotAllowed(self.alg.name().to_string()));
        }
        let mut candidates = keys
            .iter()
            .filter(|k| self.kid.is_none() || k.kid == self.kid)
            .filter(|k| k.fits(self.alg))
            .take(8)
            .peekable();
        if candidates.peek().is_none() {
            return Err(JoseError::NoKey);
        }
        let ok = candidates.any(|k| k.verify(self.alg, self.signing_input, &self.signature));
        if !ok {
            return Err(JoseError::BadSignature);
        }
        Ok(Verified {
            payload: b64(self.payload_b64)?,
            header: self.header,
            alg: self.alg,
        })
    }
}

#[cfg(test)]
mod tests;
