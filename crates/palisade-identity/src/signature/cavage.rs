//! The draft-cavage HTTP signature scheme (draft-cavage-http-signatures-12), which API
//! gateways and payment APIs used before RFC 9421: a `Signature` field (or
//! `Authorization: Signature …`) of `keyId`, `algorithm`, `headers` and `signature`.
//!
//! Legacy, off unless `legacy_cavage: true`: its parameters are not signed, so the rules
//! that make it safe are ours: the key decides the algorithm (`algorithm` may only confirm
//! it), `(request-target)` must be covered, a `date` or `(created)` must be covered and
//! fresh, and the route's required fields must be covered as for RFC 9421.

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, StatusCode};
use palisade_core::{Principal, Rejection, RequestHead};

use super::base::{Id, Message};
use super::keys::Alg;
use super::{refuse, Failure, SignaturePolicy, INVALID, MALFORMED};

/// Whether the request carries a draft-cavage signature.
pub fn present(h: &HeaderMap) -> bool {
    h.contains_key("signature") || in_authorization(h).is_some_and(|p| !p.is_empty())
}

/// The parameters of an `Authorization: Signature …` field, when the request has one.
fn in_authorization(h: &HeaderMap) -> Option<&str> {
    let v = h.get(AUTHORIZATION)?.to_str().ok()?;
    v.get(..10)
        .is_some_and(|s| s.eq_ignore_ascii_case("signature "))
        .then(|| v.get(10..))
        .flatten()
}

/// Removes it before forwarding.
pub fn strip(h: &mut HeaderMap) {
    if in_authorization(h).is_some() {
        h.remove(AUTHORIZATION);
    }
}

#[derive(Debug, Default)]
struct Params {
    key_id: Option<String>,
    algorithm: Option<String>,
    headers: Option<String>,
    signature: Option<String>,
    created: Option<i64>,
    expires: Option<i64>,
}

fn malformed(why: &str) -> Rejection {
    refuse(
        StatusCode::BAD_REQUEST,
        MALFORMED,
        "Malformed signature",
        why.into(),
    )
}

/// `name="value", name=123` pairs.
fn parse(text: &str) -> Result<Params, Rejection> {
    let mut p = Params::default();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| malformed("the Signature field is not name=value pairs"))?;
        let name = name.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q
                .find('"')
                .ok_or_else(|| malformed("a quoted value in the Signature field is not closed"))?;
            (q.get(..end).unwrap_or(""), q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (
                after.get(..end).unwrap_or("").trim(),
                after.get(end..).unwrap_or(""),
            )
        };
        let slot_is_taken = match name.as_str() {
            "keyid" => p.key_id.replace(value.to_string()).is_some(),
            "algorithm" => p.algorithm.replace(value.to_string()).is_some(),
            "headers" => p.headers.replace(value.to_string()).is_some(),
            "signature" => p.signature.replace(value.to_string()).is_some(),
            "created" => p
                .created
                .replace(
                    value
                        .parse()
                        .map_err(|_| malformed("`created` must be an integer"))?,
                )
                .is_some(),
            "expires" => p
                .expires
                .replace(
                    value
                        .parse()
                        .map_err(|_| malformed("`expires` must be an integer"))?,
                )
                .is_some(),
            _ => false,
        };
        if slot_is_taken {
            return Err(malformed("a Signature parameter is given twice"));
        }
        rest = tail.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(malformed(
                "Signature parameters must be separated by commas",
            ));
        }
    }
    Ok(p)
}

fn field(h: &HeaderMap, name: &str) -> Option<String> {
    super::base::joined(h, name).ok().flatten()
}

/// Checks a draft-cavage signature; on success the principal and the key id.
pub(super) async fn check(
    pol: &SignaturePolicy,
    req: &RequestHead,
    m: &Message<'_>,
    now: i64,
    signed: &mut Vec<&'static str>,
) -> Result<(Principal, String), Rejection> {
    let carried = !req.headers.contains_key("signature");
    let text = match field(&req.headers, "signature") {
        Some(s) => s,
        None => in_authorization(&req.headers)
            .map(str::to_string)
            .ok_or_else(|| malformed("the Authorization signature is not text"))?,
    };
    let p = parse(&text)?;
    let (consumer, key) = pol
        .key_for(p.key_id.as_deref(), now)
        .map_err(|f: Failure| f.rejection)?;
    let invalid = |why: &str| {
        refuse(
            StatusCode::UNAUTHORIZED,
            INVALID,
            "Invalid signature",
            why.into(),
        )
    };
    // the key decides; `algorithm` may only name it (hs2019 names none)
    let fits = match p
        .algorithm
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("hs2019") => matches!(
            key.alg(),
            Alg::Ed25519 | Alg::RsaPssSha512 | Alg::HmacSha256
        ),
        Some("hmac-sha256") => key.alg() == Alg::HmacSha256,
        Some("rsa-sha256") => key.alg() == Alg::RsaV15Sha256,
        Some("ed25519") => key.alg() == Alg::Ed25519,
        Some(_) => false,
    };
    if !fits {
        return Err(invalid("the `algorithm` does not match the key"));
    }
    let names: Vec<String> = p
        .headers
        .as_deref()
        .unwrap_or("(created)")
        .split_ascii_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let has = |n: &str| names.iter().any(|x| x == n);
    let coverage = super::uncovered_refusal;
    if !has("(request-target)") {
        return Err(coverage("the signature must cover (request-target)".into()));
    }
    // (request-target) holds method, path and query; the Host field is the authority
    let missing = pol.uncovered(req, |id| match id {
        Id::Method | Id::Path | Id::Query | Id::RequestTarget => true,
        Id::Authority => has("host"),
        // the field that carries the signature cannot be signed by it
        Id::Field { name, .. } if name == "authorization" && carried => true,
        Id::Field { name, .. } => has(name) || (name == "content-digest" && has("digest")),
        _ => false,
    });
    if !missing.is_empty() {
        return Err(coverage(format!(
            "the signature must cover {}",
            missing.join(", ")
        )));
    }
    let created = if has("(created)") {
        p.created
    } else if has("date") {
        field(&req.headers, "date")
            .and_then(|d| httpdate::parse_http_date(&d).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok())
    } else {
        return Err(coverage(
            "the signature must cover (created) or date".into(),
        ));
    };
    let until = pol.window(created, p.expires, now)?;
    let mut lines = Vec::with_capacity(names.len());
    for n in &names {
        let v = match n.as_str() {
            "(request-target)" => {
                let q = m.query.map(|q| format!("?{q}")).unwrap_or_default();
                format!("{} {}{q}", m.method.to_ascii_lowercase(), m.path)
            }
            "(created)" => p
                .created
                .map(|c| c.to_string())
                .ok_or_else(|| invalid("(created) is covered but not given"))?,
            "(expires)" => p
                .expires
                .map(|c| c.to_string())
                .ok_or_else(|| invalid("(expires) is covered but not given"))?,
            "host" => m.authority.to_string(),
            h => field(&req.headers, h)
                .ok_or_else(|| invalid("a signed header is not in the request"))?,
        };
        lines.push(format!("{n}: {v}"));
    }
    let base = lines.join("\n");
    let sig = base64::engine::general_purpose::STANDARD
        .decode(p.signature.as_deref().unwrap_or("").as_bytes())
        .map_err(|_| malformed("the signature is not base64"))?;
    if !key.verify(base.as_bytes(), &sig) {
        return Err(invalid("the signature does not match the request"));
    }
    let keyid = p.key_id.unwrap_or_default();
    signed.extend(super::digest::FIELDS.iter().filter(|f| has(f)));
    if super::unsafe_method(&req.method) {
        pol.remember(&keyid, &sig, until, now).await?;
    }
    Ok((consumer.principal("signature"), keyid))
}
