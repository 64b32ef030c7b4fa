//! Consumers declared in config, and their API keys, which config holds only as hashes.

use std::collections::HashMap;

use aws_lc_rs::digest;
use serde::Deserialize;
use serde_json::{Map, Value};

/// An API key as written in config.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySpec {
    /// `sha256:` and the hex SHA-256 of the key, as `palisade keys new` prints it.
    pub hash: String,
    /// After this instant (RFC 3339) the key is refused.
    #[serde(default)]
    pub expires: Option<String>,
    /// A name for logs (never the key).
    #[serde(default)]
    pub label: Option<String>,
}

/// A key a consumer signs requests with (the `signature` policy).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatureKeySpec {
    /// The `keyid` its signatures carry; unique across consumers.
    pub keyid: String,
    /// The one algorithm the key is used with.
    pub alg: crate::signature::keys::Alg,
    /// The public key, PEM (`PUBLIC KEY`, or `RSA PUBLIC KEY` for RSA), for every algorithm
    /// but `hmac-sha256`.
    #[serde(default)]
    pub public_key: Option<String>,
    /// Environment variable holding the shared secret of an `hmac-sha256` key (at least 32
    /// bytes; `base64:` before the value for binary secrets).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The shared secret as `${env:NAME}` or `${file:PATH}` (instead of `secret_env`).
    #[serde(default)]
    pub secret: Option<palisade_core::secret::SecretRef>,
    /// After this instant (RFC 3339) the key is refused.
    #[serde(default)]
    pub expires: Option<String>,
}

/// A WS-Security UsernameToken user of a consumer (the `ws_security` policy).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WsUserSpec {
    /// The `Username` of its tokens; unique across consumers.
    pub username: String,
    /// Its password: `${env:NAME}`, `${file:PATH}` or `${cmd:…}` (PasswordDigest needs the
    /// password itself, so it cannot be kept as a hash).
    pub password: palisade_core::secret::SecretRef,
}

/// A consumer as written in config.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSpec {
    /// Unique name.
    pub name: String,
    /// Groups, for authorization rules.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Free metadata, available to rules as claims.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// API keys (hashes); several for rotation.
    #[serde(default)]
    pub api_keys: Vec<ApiKeySpec>,
    /// Client-certificate identities of this consumer (SPIFFE IDs, URIs, DNS names or
    /// common names), for the `mtls` policy.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// Keys the consumer signs requests with (RFC 9421), for the `signature` policy.
    #[serde(default)]
    pub signature_keys: Vec<SignatureKeySpec>,
    /// WS-Security UsernameToken users, for the `ws_security` policy.
    #[serde(default)]
    pub ws_users: Vec<WsUserSpec>,
}

/// A consumer at runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Its name.
    pub name: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// Its metadata.
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Clone)]
struct KeyEntry {
    consumer: usize,
    hash: [u8; 32],
    expires: Option<i64>,
    label: Option<String>,
}

impl Consumer {
    /// The principal this consumer is, authenticated by `method` (a key, a signature, a
    /// WS-Security user): its name, groups, and metadata as claims.
    pub fn principal(&self, method: &'static str) -> palisade_core::Principal {
        palisade_core::Principal {
            subject: self.name.clone(),
            consumer: Some(self.name.clone()),
            method,
            groups: self.groups.clone(),
            claims: self.metadata.clone(),
            ..palisade_core::Principal::default()
        }
    }
}

/// Every consumer and the index of their key hashes.
#[derive(Debug, Default)]
pub struct Directory {
    consumers: Vec<Consumer>,
    by_name: HashMap<String, usize>,
    keys: HashMap<[u8; 32], KeyEntry>,
    certs: HashMap<String, usize>,
    sig_keys: HashMap<String, SigKeyEntry>,
    ws_users: HashMap<String, (usize, zeroize::Zeroizing<Vec<u8>>)>,
}

#[derive(Debug)]
struct SigKeyEntry {
    consumer: usize,
    key: crate::signature::keys::VerifyKey,
    expires: Option<i64>,
}

/// What a signature's `keyid` turned out to be.
#[derive(Debug)]
pub enum SigKeyCheck<'a> {
    /// A current key of this consumer.
    Valid(&'a Consumer, &'a crate::signature::keys::VerifyKey),
    /// A known key past its expiry.
    Expired,
    /// No such key.
    Unknown,
}

/// Builds a [`Directory`] one consumer at a time, as a config reader hands them over: no
/// list of every consumer's spec is kept beside the directory. Problems name the
/// consumer's position in the file (`[i].field`).
#[derive(Debug, Default)]
pub struct DirectoryBuilder {
    dir: Directory,
    errors: Vec<(String, String)>,
}

impl DirectoryBuilder {
    /// Adds the consumer at position `i` of the file.
    pub fn add(&mut self, i: usize, c: ConsumerSpec) {
        let at = self.dir.consumers.len();
        let errors = &mut self.errors;
        let dir = &mut self.dir;
        if c.name.is_empty() {
            errors.push((format!("[{i}].name"), "must not be empty".into()));
        }
        if dir.by_name.insert(c.name.clone(), at).is_some() {
            errors.push((
                format!("[{i}].name"),
                format!("consumer `{}` is declared twice", c.name),
            ));
        }
        for (j, id) in c.certificates.into_iter().enumerate() {
            match dir.certs.entry(id) {
                std::collections::hash_map::Entry::Occupied(e) => errors.push((
                    format!("[{i}].certificates[{j}]"),
                    format!("`{}` belongs to two consumers", e.key()),
                )),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(at);
                }
            }
        }
        for (j, k) in c.api_keys.into_iter().enumerate() {
            let path = format!("[{i}].api_keys[{j}]");
            let Some(hash) = parse_hash(&k.hash) else {
                errors.push((
                    format!("{path}.hash"),
                    "must be `sha256:` and 64 hex digits, as `palisade keys new` prints it (never the key itself)".into(),
                ));
                continue;
            };
            let expires = match &k.expires {
                None => None,
                Some(e) => match parse_instant(e) {
                    Some(t) => Some(t),
                    None => {
                        errors.push((
                            format!("{path}.expires"),
                            format!("`{e}` is not an RFC 3339 instant, e.g. 2027-01-31T00:00:00Z"),
                        ));
                        None
                    }
                },
            };
            let entry = KeyEntry {
                consumer: at,
                hash,
                expires,
                label: k.label,
            };
            if dir.keys.insert(hash, entry).is_some() {
                errors.push((format!("{path}.hash"), "this key is listed twice".into()));
            }
        }
        for (j, k) in c.signature_keys.into_iter().enumerate() {
            let path = format!("[{i}].signature_keys[{j}]");
            if let Some((field, msg)) = add_signature_key(dir, at, k) {
                errors.push((format!("{path}{field}"), msg));
            }
        }
        for (j, u) in c.ws_users.into_iter().enumerate() {
            let path = format!("[{i}].ws_users[{j}]");
            match u.password.resolve() {
                Ok(p) => {
                    if dir.ws_users.insert(u.username.clone(), (at, p)).is_some() {
                        errors.push((
                            format!("{path}.username"),
                            format!("`{}` is declared twice", u.username),
                        ));
                    }
                }
                Err(e) => errors.push((format!("{path}.password"), e)),
            }
        }
        dir.consumers.push(Consumer {
            name: c.name,
            groups: c.groups,
            metadata: c.metadata,
        });
    }

    /// The directory, or every problem found.
    pub fn finish(self) -> Result<Directory, Vec<(String, String)>> {
        if self.errors.is_empty() {
            Ok(self.dir)
        } else {
            Err(self.errors)
        }
    }
}

/// Adds one signature key; on a problem, the field (`.keyid` …) and the message.
fn add_signature_key(
    dir: &mut Directory,
    at: usize,
    k: SignatureKeySpec,
) -> Option<(String, String)> {
    use crate::signature::keys::{Alg, VerifyKey};
    if k.keyid.is_empty() {
        return Some((".keyid".into(), "must not be empty".into()));
    }
    let expires = match &k.expires {
        None => None,
        Some(e) => match parse_instant(e) {
            Some(t) => Some(t),
            None => {
                return Some((
                    ".expires".into(),
                    format!("`{e}` is not an RFC 3339 instant, e.g. 2027-01-31T00:00:00Z"),
                ))
            }
        },
    };
    let field = if k.secret_env.is_some() {
        ".secret_env"
    } else {
        ".secret"
    };
    let secret = match palisade_core::secret::SecretRef::either(
        k.secret.as_ref(),
        k.secret_env.as_deref(),
    ) {
        Ok(s) => s,
        Err(e) => return Some((".secret".into(), e.into())),
    };
    let key = match (k.alg, &k.public_key, secret) {
        (Alg::HmacSha256, None, Some(src)) => {
            let v = match src.resolve() {
                Ok(v) => v,
                Err(e) => return Some((field.into(), e)),
            };
            let bytes = match v.strip_prefix(b"base64:") {
                Some(b) => {
                    use base64::Engine as _;
                    match base64::engine::general_purpose::STANDARD.decode(b.trim_ascii()) {
                        Ok(b) => zeroize::Zeroizing::new(b),
                        Err(_) => {
                            return Some((field.into(), format!("{src:?} starts with base64: but is not base64")))
                        }
                    }
                }
                None => v,
            };
            VerifyKey::secret(Alg::HmacSha256, &bytes).map_err(|e| (field, e))
        }
        (Alg::HmacSha256, _, _) => {
            return Some((".secret".into(), "an hmac-sha256 key needs `secret` (\"${env:NAME}\" or \"${file:PATH}\") and no public_key".into()))
        }
        (alg, Some(pem), None) => VerifyKey::public_pem(alg, pem).map_err(|e| (".public_key", e)),
        (alg, _, _) => {
            return Some((".public_key".into(), format!("a {alg} key needs `public_key` (PEM) and no secret")))
        }
    };
    let key = match key {
        Ok(k) => k,
        Err((f, e)) => return Some((f.into(), e)),
    };
    if dir.sig_keys.contains_key(&k.keyid) {
        return Some((
            ".keyid".into(),
            format!("the keyid `{}` is declared twice", k.keyid),
        ));
    }
    dir.sig_keys.insert(
        k.keyid,
        SigKeyEntry {
            consumer: at,
            key,
            expires,
        },
    );
    None
}

/// What a presented API key turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyCheck<'a> {
    /// A known, current key of this consumer.
    Valid(&'a Consumer, Option<&'a str>),
    /// A known key past its expiry.
    Expired,
    /// A known key an operator revoked (admin API).
    Revoked,
    /// No such key.
    Unknown,
}

/// The hash of a key, as config holds it.
pub fn hash_key(key: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Reads a `sha256:` and 64 hex digits hash, as `palisade keys new` prints it.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let h = s.strip_prefix("sha256:")?;
    if h.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(h.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A fresh random API key and the config line of its hash.
pub fn new_key() -> Result<(String, String), String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no randomness available".to_string())?;
    use base64::Engine as _;
    let key = format!(
        "pk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = format!("sha256:{}", palisade_core::hex::encode(&hash_key(&key)));
    Ok((key, hash))
}

/// Parses an RFC 3339 instant into Unix seconds.
pub fn parse_instant(s: &str) -> Option<i64> {
    // YYYY-MM-DDTHH:MM:SS(.frac)?(Z|±HH:MM)
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        std::str::from_utf8(b.get(r)?).ok()?.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) => {
            let oh: i64 = r.get(1..3)?.parse().ok()?;
            let om: i64 = r.get(4..6)?.parse().ok()?;
            let sign = if r.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    // days from civil (Howard Hinnant's algorithm)
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

impl Directory {
    /// Builds the directory; problems are `(field path, message)` relative to `consumers`.
    pub fn build(specs: &[ConsumerSpec]) -> Result<Directory, Vec<(String, String)>> {
        let mut b = DirectoryBuilder::default();
        for (i, c) in specs.iter().enumerate() {
            b.add(i, c.clone());
        }
        b.finish()
    }

    /// What the admin API shows of each consumer: name, groups, metadata, and the labels,
    /// expiries and identifiers of its credentials. Never a key, hash or secret.
    pub fn summary(&self) -> Vec<serde_json::Value> {
        let mut out: Vec<Map<String, Value>> = self
            .consumers
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("name".into(), c.name.clone().into());
                m.insert("groups".into(), c.groups.clone().into());
                m.insert("metadata".into(), Value::Object(c.metadata.clone()));
                for k in ["api_keys", "certificates", "signature_keys", "ws_users"] {
                    m.insert(k.into(), Value::Array(Vec::new()));
                }
                m
            })
            .collect();
        let mut push = |i: usize, field: &str, v: Value| {
            if let Some(Value::Array(a)) = out.get_mut(i).and_then(|m| m.get_mut(field)) {
                a.push(v);
            }
        };
        let mut keys: Vec<&KeyEntry> = self.keys.values().collect();
        keys.sort_by(|a, b| (a.consumer, &a.label).cmp(&(b.consumer, &b.label)));
        for k in keys {
            push(
                k.consumer,
                "api_keys",
                serde_json::json!({ "label": k.label, "expires": k.expires }),
            );
        }
        let mut certs: Vec<(&String, &usize)> = self.certs.iter().collect();
        certs.sort();
        for (id, i) in certs {
            push(*i, "certificates", id.clone().into());
        }
        let mut sigs: Vec<(&String, &SigKeyEntry)> = self.sig_keys.iter().collect();
        sigs.sort_by(|a, b| a.0.cmp(b.0));
        for (id, e) in sigs {
            push(
                e.consumer,
                "signature_keys",
                serde_json::json!({ "keyid": id, "expires": e.expires }),
            );
        }
        let mut users: Vec<(&String, usize)> =
            self.ws_users.iter().map(|(u, (i, _))| (u, *i)).collect();
        users.sort();
        for (u, i) in users {
            push(i, "ws_users", u.clone().into());
        }
        out.into_iter().map(Value::Object).collect()
    }

    /// A consumer by name.
    pub fn consumer(&self, name: &str) -> Option<&Consumer> {
        self.by_name.get(name).and_then(|&i| self.consumers.get(i))
    }

    /// The consumer a client-certificate identity belongs to.
    pub fn by_certificate(&self, identity: &str) -> Option<&Consumer> {
        self.certs
            .get(identity)
            .and_then(|&i| self.consumers.get(i))
    }

    /// Whether any consumer has WS-Security users.
    pub fn has_ws_users(&self) -> bool {
        !self.ws_users.is_empty()
    }

    /// The consumer and password of a WS-Security user.
    pub fn ws_user(&self, username: &str) -> Option<(&Consumer, &[u8])> {
        let (i, p) = self.ws_users.get(username)?;
        Some((self.consumers.get(*i)?, p.as_slice()))
    }

    /// Whether any consumer has signature keys.
    pub fn has_signature_keys(&self) -> bool {
        !self.sig_keys.is_empty()
    }

    /// The signature key with this `keyid`, at `now` (Unix seconds).
    pub fn signature_key(&self, keyid: &str, now: i64) -> SigKeyCheck<'_> {
        let Some(e) = self.sig_keys.get(keyid) else {
            return SigKeyCheck::Unknown;
        };
        if e.expires.is_some_and(|t| now >= t) {
            return SigKeyCheck::Expired;
        }
        match self.consumers.get(e.consumer) {
            Some(c) => SigKeyCheck::Valid(c, &e.key),
            None => SigKeyCheck::Unknown,
        }
    }

    /// Whether any consumer has API keys.
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks a presented key at `now` (Unix seconds). The key is hashed first, so lookups
    /// and comparisons are on hashes only; the final comparison is constant-time.
    pub fn check_key(&self, presented: &str, now: i64) -> KeyCheck<'_> {
        let h = hash_key(presented);
        let Some(e) = self.keys.get(&h) else {
            return KeyCheck::Unknown;
        };
        if aws_lc_rs::constant_time::verify_slices_are_equal(&e.hash, &h).is_err() {
            return KeyCheck::Unknown;
        }
        if e.expires.is_some_and(|t| now >= t) {
            return KeyCheck::Expired;
        }
        if crate::revoked::is_revoked(&h, now) {
            return KeyCheck::Revoked;
        }
        match self.consumers.get(e.consumer) {
            Some(c) => KeyCheck::Valid(c, e.label.as_deref()),
            None => KeyCheck::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants() {
        assert_eq!(parse_instant("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_instant("2026-11-28T12:00:00Z"), Some(1_795_867_200));
        assert_eq!(
            parse_instant("2026-11-28T13:00:00+01:00"),
            Some(1_795_867_200)
        );
        assert_eq!(
            parse_instant("2026-11-28T12:00:00.123Z"),
            Some(1_795_867_200)
        );
        for bad in [
            "",
            "2026-11-28",
            "2026-13-01T00:00:00Z",
            "2026-11-28T12:00:00",
            "x026-11-28T12:00:00Z",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_rotate_expire_and_are_only_hashes() {
        let (k1, h1) = new_key().unwrap_or_default();
        let (k2, h2) = new_key().unwrap_or_default();
        assert!(k1.starts_with("pk_") && k1.len() > 40 && k1 != k2);
        assert!(h1.starts_with("sha256:") && !h1.contains(&k1));
        let dir = Directory::build(&[ConsumerSpec {
            name: "acme".into(),
            groups: vec!["partners".into()],
            metadata: Map::new(),
            certificates: vec![],
            signature_keys: vec![],
            ws_users: vec![],
            api_keys: vec![
                ApiKeySpec {
                    hash: h1,
                    expires: Some("2026-01-01T00:00:00Z".into()),
                    label: Some("old".into()),
                },
                ApiKeySpec {
                    hash: h2,
                    expires: None,
                    label: Some("new".into()),
                },
            ],
        }])
        .unwrap_or_default();
        let before = parse_instant("2025-12-31T00:00:00Z").unwrap_or(0);
        let after = parse_instant("2026-06-01T00:00:00Z").unwrap_or(0);
        assert!(
            matches!(dir.check_key(&k1, before), KeyCheck::Valid(c, Some("old")) if c.name == "acme")
        );
        assert_eq!(dir.check_key(&k1, after), KeyCheck::Expired);
        assert!(matches!(
            dir.check_key(&k2, after),
            KeyCheck::Valid(_, Some("new"))
        ));
        assert_eq!(dir.check_key("pk_guess", after), KeyCheck::Unknown);
        assert_eq!(dir.check_key("", after), KeyCheck::Unknown);
    }

    #[test]
    fn config_mistakes_are_reported() {
        let errs = Directory::build(&[
            ConsumerSpec {
                name: "a".into(),
                groups: vec![],
                metadata: Map::new(),
                certificates: vec![],
                signature_keys: vec![],
                ws_users: vec![],
                api_keys: vec![
                    ApiKeySpec {
                        hash: "pk_plaintext_key".into(),
                        expires: None,
                        label: None,
                    },
                    ApiKeySpec {
                        hash: format!("sha256:{}", "0".repeat(64)),
                        expires: Some("tomorrow".into()),
                        label: None,
                    },
                ],
            },
            ConsumerSpec {
                name: "a".into(),
                groups: vec![],
                metadata: Map::new(),
                certificates: vec![],
                signature_keys: vec![],
                ws_users: vec![],
                api_keys: vec![],
            },
        ])
        .err()
        .unwrap_or_default();
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "[0].api_keys[0].hash",
                "[0].api_keys[1].expires",
                "[1].name"
            ]
        );
    }
}
