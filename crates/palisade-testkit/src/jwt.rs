//! Signing keys and tokens for tests: RSA, ECDSA and Ed25519 keys generated on the spot, their
//! public JWK Set, and JWS tokens with any header and claims (including broken ones).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

/// base64url without padding.
pub fn b64url(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, &'static str, usize),
    Ed(Ed25519KeyPair),
    Hmac(Vec<u8>),
}

/// A key that signs tokens, with its `kid`.
pub struct SigningKey {
    /// Its key id.
    pub kid: String,
    pair: Pair,
}

impl SigningKey {
    /// A fresh 2048-bit RSA key.
    pub fn rsa(kid: &str) -> Self {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        SigningKey {
            kid: kid.into(),
            pair: Pair::Rsa(pair),
        }
    }

    /// A fresh P-256 key.
    pub fn es256(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        SigningKey {
            kid: kid.into(),
            pair: Pair::Ec(pair, "P-256", 32),
        }
    }

    /// A fresh P-384 key.
    pub fn es384(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        SigningKey {
            kid: kid.into(),
            pair: Pair::Ec(pair, "P-384", 48),
        }
    }

    /// A fresh Ed25519 key.
    pub fn ed25519(kid: &str) -> Self {
        SigningKey {
            kid: kid.into(),
            pair: Pair::Ed(Ed25519KeyPair::generate().unwrap()),
        }
    }

    /// An HMAC secret.
    pub fn hmac(kid: &str, secret: &[u8]) -> Self {
        SigningKey {
            kid: kid.into(),
            pair: Pair::Hmac(secret.to_vec()),
        }
    }

    /// The public JWK (for HMAC: the secret as an `oct` key).
    pub fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Rsa(k) => {
                let pk = k.public_key();
                json!({"kty": "RSA", "kid": self.kid, "use": "sig",
                       "n": b64url(pk.modulus().big_endian_without_leading_zero()),
                       "e": b64url(pk.exponent().big_endian_without_leading_zero())})
            }
            Pair::Ec(k, crv, len) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "kid": self.kid, "crv": crv,
                       "x": b64url(&p[1..1 + len]), "y": b64url(&p[1 + len..])})
            }
            Pair::Ed(k) => {
                json!({"kty": "OKP", "kid": self.kid, "crv": "Ed25519", "x": b64url(k.public_key().as_ref())})
            }
            Pair::Hmac(s) => json!({"kty": "oct", "kid": self.kid, "k": b64url(s)}),
        }
    }

    /// Signs `signing_input` with `alg` (which must suit the key, except on purpose).
    pub fn sign_raw(&self, alg: &str, signing_input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(k) => {
                let enc: &'static dyn signature::RsaEncoding = match alg {
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(enc, &rng, signing_input, &mut sig).unwrap();
                sig
            }
            Pair::Ec(k, _, _) => k.sign(&rng, signing_input).unwrap().as_ref().to_vec(),
            Pair::Ed(k) => k.sign(signing_input).as_ref().to_vec(),
            Pair::Hmac(s) => {
                let a = match alg {
                    "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
                    "HS512" => aws_lc_rs::hmac::HMAC_SHA512,
                    _ => aws_lc_rs::hmac::HMAC_SHA256,
                };
                aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(a, s), signing_input)
                    .as_ref()
                    .to_vec()
            }
        }
    }

    /// A compact JWS with this header (as given: `alg` and `kid` are not added) and claims.
    pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        let alg = header["alg"].as_str().unwrap_or("RS256").to_string();
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = self.sign_raw(&alg, input.as_bytes());
        format!("{input}.{}", b64url(&sig))
    }

    /// A compact JWS with `{"alg": alg, "kid": kid, "typ": "JWT"}` and these claims.
    pub fn token(&self, alg: &str, claims: &Value) -> String {
        self.token_with_header(&json!({"alg": alg, "kid": self.kid, "typ": "JWT"}), claims)
    }
}

/// A JWK Set of these keys' public parts.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
