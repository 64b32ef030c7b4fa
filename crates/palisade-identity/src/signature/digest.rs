//! RFC 9530 `Content-Digest` and `Repr-Digest`: checked against the body as received.
//!
//! Only `sha-256` and `sha-512` count (the registry's "standard" algorithms); the insecure
//! ones (`md5`, `sha`, `unixsum`, `unixcksum`, `adler`, `crc32c`) and unknown names are
//! ignored, and a field with none we can check is refused, never passed unchecked.

use aws_lc_rs::digest;
use base64::Engine as _;
use http::HeaderMap;
use sfv::{BareItem, Dictionary, Item, ListEntry, Parser};

/// What `Want-Content-Digest` offers in a refusal.
pub const WANT: &str = "sha-256=10, sha-512=5";

/// The outcome of checking the digests of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// No digest field.
    Absent,
    /// Every checkable digest matches.
    Valid,
    /// A digest field cannot be checked (why).
    Unusable(String),
    /// A digest does not match the body (which field and algorithm).
    Mismatch(String),
}

fn field(headers: &HeaderMap, name: &str) -> Result<Option<Dictionary>, String> {
    match super::base::joined(headers, name).map_err(|e| e.0)? {
        None => Ok(None),
        Some(t) => Parser::new(&t)
            .parse::<Dictionary>()
            .map(Some)
            .map_err(|_| format!("{name} is not a structured-field dictionary")),
    }
}

fn check_one(name: &str, d: &Dictionary, body: &[u8]) -> Check {
    let mut checked = 0;
    for (alg, entry) in d {
        let algo = match alg.as_str() {
            "sha-256" => &digest::SHA256,
            "sha-512" => &digest::SHA512,
            _ => continue,
        };
        let ListEntry::Item(Item {
            bare_item: BareItem::ByteSequence(want),
            ..
        }) = entry
        else {
            return Check::Unusable(format!(
                "{name} `{}` must be a byte sequence (:base64:)",
                alg.as_str()
            ));
        };
        if digest::digest(algo, body).as_ref() != want.as_slice() {
            return Check::Mismatch(format!("{name} {}", alg.as_str()));
        }
        checked += 1;
    }
    if checked == 0 {
        return Check::Unusable(format!(
            "{name} has no sha-256 or sha-512 digest (other algorithms are not accepted)"
        ));
    }
    Check::Valid
}

/// The RFC 3230 `Digest` field of draft-cavage clients: `SHA-256=<base64>` pairs.
fn legacy(headers: &HeaderMap, body: &[u8]) -> Check {
    let mut checked = 0;
    for v in headers.get_all("digest") {
        let Ok(v) = v.to_str() else {
            return Check::Unusable("Digest is not ASCII".into());
        };
        for part in v.split(',') {
            let Some((alg, b64)) = part.trim().split_once('=') else {
                return Check::Unusable("Digest is not algorithm=value pairs".into());
            };
            let algo = match alg.to_ascii_lowercase().as_str() {
                "sha-256" => &digest::SHA256,
                "sha-512" => &digest::SHA512,
                _ => continue,
            };
            let Ok(want) = base64::engine::general_purpose::STANDARD.decode(b64.trim().as_bytes())
            else {
                return Check::Unusable("a Digest value is not base64".into());
            };
            if digest::digest(algo, body).as_ref() != want.as_slice() {
                return Check::Mismatch(format!("Digest {alg}"));
            }
            checked += 1;
        }
    }
    if checked == 0 {
        return Check::Unusable("Digest has no SHA-256 or SHA-512 value".into());
    }
    Check::Valid
}

/// The digest fields a request may carry, in the order they are checked.
pub const FIELDS: [&str; 3] = ["content-digest", "repr-digest", "digest"];

/// Checks `Content-Digest` (always against the bytes received), `Repr-Digest` (equal to
/// them when no `Content-Encoding` applies; with one, the representation would have to be
/// decoded, so it is refused as uncheckable) and the legacy `Digest`.
pub fn check(headers: &HeaderMap, body: &[u8]) -> Check {
    let mut seen = false;
    if headers.contains_key("digest") {
        seen = true;
        match legacy(headers, body) {
            Check::Valid => {}
            other => return other,
        }
    }
    for name in ["content-digest", "repr-digest"] {
        let d = match field(headers, name) {
            Ok(None) => continue,
            Ok(Some(d)) => d,
            Err(e) => return Check::Unusable(e),
        };
        seen = true;
        if name == "repr-digest"
            && headers
                .get_all(http::header::CONTENT_ENCODING)
                .iter()
                .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
        {
            return Check::Unusable(
                "Repr-Digest of an encoded body cannot be checked: send Content-Digest".into(),
            );
        }
        match check_one(name, &d, body) {
            Check::Valid => {}
            other => return other,
        }
    }
    if seen {
        Check::Valid
    } else {
        Check::Absent
    }
}

/// The `Content-Digest` value for `body` (sha-256), as the gateway sends it.
pub fn content_digest(body: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, body);
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(d.as_ref())
    )
}
