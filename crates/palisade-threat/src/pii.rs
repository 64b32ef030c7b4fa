//! `pii`: sensitive data in responses — card numbers (Luhn-checked), IBANs (mod-97-checked),
//! e-mail addresses, phone numbers, US social security numbers, and secrets (private keys,
//! JWTs, API-key-like strings) — masked, encrypted (AES-256-GCM, reversible with
//! `palisade decrypt`) or refused, in JSON string leaves (every one, or only named fields).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use base64::Engine as _;
use http::StatusCode;
use palisade_core::policies::SpecError;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, ResponseHead, Stage, Verdict,
};
use serde::Deserialize;
use serde_json::Value;

/// Refusal code when a response carries sensitive data and the action is `refuse`.
pub const REFUSED: &str = "pii.refused";

/// What is looked for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Payment card numbers (13–19 digits passing Luhn).
    Card,
    /// International bank account numbers (mod 97).
    Iban,
    /// E-mail addresses.
    Email,
    /// Phone numbers (international form, 8–15 digits).
    Phone,
    /// US social security numbers (AAA-GG-SSSS).
    NationalId,
    /// Private keys, JWTs and API-key-like strings.
    Secret,
}

/// What happens to what is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Replaced by asterisks, keeping the last four characters of cards and IBANs.
    Mask,
    /// Replaced by `enc:v1:` and the AES-256-GCM ciphertext (base64url).
    Encrypt,
    /// The whole response is refused (502).
    Refuse,
}

/// Config of the `pii` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiSpec {
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub mode: Mode,
    /// Kinds looked for; default all.
    #[serde(default)]
    pub kinds: Option<Vec<Kind>>,
    /// `mask` (default), `encrypt` or `refuse`.
    #[serde(default)]
    pub action: Option<Action>,
    /// Only these fields (dotted JSON paths, `*` for any array item, e.g. `user.ssn`,
    /// `items.*.card`): their whole value is treated. Default: every string leaf is scanned.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Environment variable with the 32-byte key (64 hex digits) for `encrypt`.
    #[serde(default)]
    pub key_env: Option<String>,
    /// The key as `${env:NAME}` or `${file:PATH}` (instead of `key_env`).
    #[serde(default)]
    pub key: Option<palisade_core::secret::SecretRef>,
    /// An OpenAPI description whose properties marked `x-palisade-pii: true` are treated as
    /// named fields, wherever they appear (read by the config loader).
    #[serde(default)]
    pub spec: Option<String>,
}

/// The runtime `pii` policy.
pub struct Pii {
    kinds: Vec<Kind>,
    action: Action,
    fields: Vec<Vec<String>>,
    marked: Vec<String>,
    key: Option<LessSafeKey>,
}

impl std::fmt::Debug for Pii {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pii")
            .field("kinds", &self.kinds)
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

fn parse_key(hex: &str) -> Option<LessSafeKey> {
    let k = palisade_core::hex::decode32(hex)?;
    UnboundKey::new(&AES_256_GCM, &k).ok().map(LessSafeKey::new)
}

/// Names of the properties an OpenAPI description marks with `x-palisade-pii: true`.
pub fn marked_properties(doc: &Value) -> Vec<String> {
    fn walk(doc: &Value, v: &Value, out: &mut Vec<String>, depth: usize) {
        if depth > 64 {
            return;
        }
        match v {
            Value::Object(m) => {
                if let Some(props) = m.get("properties").and_then(Value::as_object) {
                    for (name, schema) in props {
                        let target = match schema.get("$ref").and_then(Value::as_str) {
                            Some(r) if r.starts_with("#/") => {
                                doc.pointer(r.trim_start_matches('#')).unwrap_or(schema)
                            }
                            _ => schema,
                        };
                        if target.get("x-palisade-pii") == Some(&Value::Bool(true))
                            && !out.contains(name)
                        {
                            out.push(name.clone());
                        }
                    }
                }
                for x in m.values() {
                    walk(doc, x, out, depth + 1);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(doc, x, out, depth + 1)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, doc, &mut out, 0);
    out
}

impl PiiSpec {
    /// Builds the policy; `spec` is the parsed description named by `spec`, if any.
    pub fn build_with(&self, spec: Option<&Value>) -> Result<Pii, Vec<SpecError>> {
        let mut p = self.build()?;
        if let Some(doc) = spec {
            p.marked = marked_properties(doc);
            if p.marked.is_empty() {
                return Err(vec![SpecError::new(
                    "spec",
                    "the description marks no property with `x-palisade-pii: true`",
                )]);
            }
        }
        Ok(p)
    }

    /// Builds the policy.
    pub fn build(&self) -> Result<Pii, Vec<SpecError>> {
        let action = self.action.unwrap_or(Action::Mask);
        let field = if self.key_env.is_some() {
            "key_env"
        } else {
            "key"
        };
        let src =
            palisade_core::secret::SecretRef::either(self.key.as_ref(), self.key_env.as_deref())
                .map_err(|e| vec![SpecError::new("key", e)])?;
        let key = match (action, src) {
            (Action::Encrypt, None) => {
                return Err(vec![SpecError::new(
                    "key",
                    "`encrypt` needs key: \"${env:NAME}\" or \"${file:PATH}\" holding 64 hex digits (a 256-bit key)",
                )])
            }
            (_, Some(src)) => match src.resolve_text().ok().and_then(|v| parse_key(&v)) {
                Some(k) => Some(k),
                None => {
                    return Err(vec![SpecError::new(
                        field,
                        format!("{src:?} must hold 64 hex digits (a 256-bit key)"),
                    )])
                }
            },
            (_, None) => None,
        };
        Ok(Pii {
            kinds: self.kinds.clone().unwrap_or_else(|| {
                vec![
                    Kind::Card,
                    Kind::Iban,
                    Kind::Email,
                    Kind::Phone,
                    Kind::NationalId,
                    Kind::Secret,
                ]
            }),
            action,
            fields: self
                .fields
                .iter()
                .map(|f| f.split('.').map(str::to_string).collect())
                .collect(),
            marked: Vec::new(),
            key,
        })
    }
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

fn iban_ok(s: &str) -> bool {
    let s: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if !(15..=34).contains(&s.len())
        || !s
            .get(..2)
            .is_some_and(|c| c.chars().all(|x| x.is_ascii_uppercase()))
        || !s
            .get(2..4)
            .is_some_and(|c| c.chars().all(|x| x.is_ascii_digit()))
    {
        return false;
    }
    let rearranged = format!("{}{}", s.get(4..).unwrap_or(""), s.get(..4).unwrap_or(""));
    let mut rem = 0u32;
    for c in rearranged.chars() {
        let v = match c {
            '0'..='9' => u32::from(c) - u32::from('0'),
            'A'..='Z' => u32::from(c) - u32::from('A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// Spans (byte ranges) of sensitive data in `s`, with their kind.
pub fn find(s: &str, kinds: &[Kind]) -> Vec<(usize, usize, Kind)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    // digit runs (spaces and dashes inside): cards, phones, SSNs
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let plus = b.get(i) == Some(&b'+');
        if plus {
            i += 1;
        }
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            i = start + 1;
            continue;
        }
        let mut digits = Vec::new();
        let mut end = i;
        while let Some(&c) = b.get(end) {
            if c.is_ascii_digit() {
                digits.push(c - b'0');
                end += 1;
            } else if (c == b' ' || c == b'-') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
                end += 1;
            } else {
                break;
            }
        }
        let text = s.get(start..end).unwrap_or("");
        let n = digits.len();
        if kinds.contains(&Kind::NationalId)
            && n == 9
            && text.len() == 11
            && text.as_bytes().get(3) == Some(&b'-')
            && text.as_bytes().get(6) == Some(&b'-')
        {
            out.push((start, end, Kind::NationalId));
        } else if kinds.contains(&Kind::Card) && (13..=19).contains(&n) && !plus && luhn(&digits) {
            out.push((start, end, Kind::Card));
        } else if kinds.contains(&Kind::Phone) && plus && (8..=15).contains(&n) {
            out.push((start, end, Kind::Phone));
        }
        i = end.max(start + 1);
    }
    for w in s.split(|c: char| {
        c.is_whitespace() || c == ',' || c == ';' || c == '<' || c == '>' || c == '"'
    }) {
        let Some(at) = s.find(w) else { continue };
        if w.is_empty() {
            continue;
        }
        if kinds.contains(&Kind::Email) {
            if let Some((local, domain)) = w.split_once('@') {
                if !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && domain
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                {
                    out.push((at, at + w.len(), Kind::Email));
                    continue;
                }
            }
        }
        if kinds.contains(&Kind::Iban) && iban_ok(w) {
            out.push((at, at + w.len(), Kind::Iban));
            continue;
        }
        if kinds.contains(&Kind::Secret) {
            let jwt = w.starts_with("eyJ") && w.matches('.').count() == 2 && w.len() > 30;
            let keylike = [
                "sk_live_",
                "sk_test_",
                "rk_live_",
                "AKIA",
                "ASIA",
                "ghp_",
                "gho_",
                "github_pat_",
                "xoxb-",
                "xoxp-",
                "glpat-",
                "AIza",
            ]
            .iter()
            .any(|p| w.starts_with(p) && w.len() >= 16);
            if jwt || keylike {
                out.push((at, at + w.len(), Kind::Secret));
            }
        }
    }
    if kinds.contains(&Kind::Secret) {
        if let Some(p) = s.find("-----BEGIN ") {
            if s.get(p..).is_some_and(|t| t.contains("PRIVATE KEY-----")) {
                let end = s
                    .get(p..)
                    .and_then(|t| t.find("-----END "))
                    .map_or(s.len(), |e| {
                        let tail = s.get(p + e + 9..).unwrap_or("");
                        p + e + 9 + tail.find("-----").map_or(tail.len(), |x| x + 5)
                    });
                out.push((p, end, Kind::Secret));
            }
        }
    }
    out.sort_by_key(|o| o.0);
    out
}

impl Pii {
    fn protect(&self, text: &str, kind: Kind) -> String {
        match self.action {
            Action::Encrypt => self.encrypt(text),
            _ => {
                let n = text.chars().count();
                let keep = if matches!(kind, Kind::Card | Kind::Iban) {
                    4
                } else {
                    0
                };
                let tail: String = text.chars().skip(n.saturating_sub(keep)).collect();
                format!("{}{tail}", "*".repeat(n.saturating_sub(keep).max(4)))
            }
        }
    }

    fn encrypt(&self, text: &str) -> String {
        let Some(key) = &self.key else {
            return "****".into();
        };
        let mut nonce = [0u8; 12];
        if aws_lc_rs::rand::fill(&mut nonce).is_err() {
            return "****".into();
        }
        let mut buf = text.as_bytes().to_vec();
        if key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .is_err()
        {
            return "****".into();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!(
            "enc:v1:{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        )
    }

    /// Treats one string: whole (a named field) or the spans found in it. Returns how many
    /// pieces were found.
    fn treat(&self, s: &mut String, whole: bool) -> usize {
        if whole {
            if !s.is_empty() {
                let kind = find(s, &self.kinds).first().map_or(Kind::Secret, |f| f.2);
                *s = self.protect(s, kind);
                return 1;
            }
            return 0;
        }
        let spans = find(s, &self.kinds);
        if spans.is_empty() {
            return 0;
        }
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for (a, b, kind) in &spans {
            if *a < last {
                continue;
            }
            out.push_str(s.get(last..*a).unwrap_or(""));
            out.push_str(&self.protect(s.get(*a..*b).unwrap_or(""), *kind));
            last = *b;
        }
        out.push_str(s.get(last..).unwrap_or(""));
        *s = out;
        spans.len()
    }

    /// Whether `path` is one of the named fields (`*` matches any key or array index), or
    /// ends in a property the description marks as personal data.
    fn named(&self, path: &[String]) -> bool {
        self.fields
            .iter()
            .any(|f| f.len() == path.len() && f.iter().zip(path).all(|(a, b)| a == "*" || a == b))
            || path.last().is_some_and(|k| self.marked.contains(k))
    }

    /// Treats the leaves of `v`: every string leaf when no field is named, else the leaves
    /// at or under a named field (`inside`), whatever their content.
    /// Trees come from `palisade_core::json::parse`, never deeper than its bound, so the
    /// depth guard never leaves a part of a response untreated.
    fn walk(&self, v: &mut Value, path: &mut Vec<String>, depth: usize, inside: bool) -> usize {
        if depth > palisade_core::json::MAX_DEPTH {
            return 0;
        }
        let everywhere = self.fields.is_empty() && self.marked.is_empty();
        let inside = inside || (!everywhere && self.named(path));
        match v {
            Value::String(s) if everywhere => self.treat(s, false),
            Value::String(s) if inside => self.treat(s, true),
            Value::Number(n) if inside => {
                let mut s = n.to_string();
                self.treat(&mut s, true);
                *v = Value::String(s);
                1
            }
            Value::Array(a) => a
                .iter_mut()
                .enumerate()
                .map(|(i, x)| {
                    path.push(i.to_string());
                    let n = self.walk(x, path, depth + 1, inside);
                    path.pop();
                    n
                })
                .sum(),
            Value::Object(m) => m
                .iter_mut()
                .map(|(k, x)| {
                    path.push(k.clone());
                    let n = self.walk(x, path, depth + 1, inside);
                    path.pop();
                    n
                })
                .sum(),
            _ => 0,
        }
    }
}

/// Decrypts an `enc:v1:` value made by the `encrypt` action with the same key (64 hex digits).
pub fn decrypt(value: &str, key_hex: &str) -> Result<String, String> {
    let key = parse_key(key_hex).ok_or("the key must be 64 hex digits")?;
    let b64 = value
        .trim()
        .strip_prefix("enc:v1:")
        .ok_or("not an enc:v1: value")?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| "not base64url")?;
    let (nonce, sealed) = raw.split_at_checked(12).ok_or("too short")?;
    let nonce: [u8; 12] = nonce.try_into().map_err(|_| "too short")?;
    let mut buf = sealed.to_vec();
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
        .map_err(|_| "wrong key, or the value was altered")?;
    String::from_utf8(plain.to_vec()).map_err(|_| "not text".into())
}

#[async_trait::async_trait]
impl Policy for Pii {
    fn kind(&self) -> &'static str {
        "pii"
    }
    fn stage(&self) -> Stage {
        Stage::Transform
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY.with(Phase::ResponseBody)
    }
    async fn on_response_body(
        &self,
        res: &mut ResponseHead,
        body: &mut bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        let ct = res
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !(ct.starts_with("application/json") || ct.contains("+json")) || body.is_empty() {
            return Ok(Verdict::Continue);
        }
        // JSON that cannot be read whole (malformed, or nested deeper than the bound) is
        // withheld: what it carries cannot be masked, so it must not pass as it is
        let mut v = match palisade_core::json::parse(body) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Verdict::Reject(
                    Rejection::new(StatusCode::BAD_GATEWAY, REFUSED, "Response withheld")
                        .with_detail(format!(
                            "the response is declared JSON but {e}, so it cannot be inspected"
                        )),
                ))
            }
        };
        let found = self.walk(&mut v, &mut Vec::new(), 0, false);
        if found == 0 {
            return Ok(Verdict::Continue);
        }
        if self.action == Action::Refuse {
            return Ok(Verdict::Reject(
                Rejection::new(StatusCode::BAD_GATEWAY, REFUSED, "Response withheld")
                    .with_detail("the response carries sensitive data this route may not return"),
            ));
        }
        *body = bytes::Bytes::from(v.to_string());
        x.annotations.insert("pii", found.to_string());
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_should_and_nothing_else() {
        let all = [
            Kind::Card,
            Kind::Iban,
            Kind::Email,
            Kind::Phone,
            Kind::NationalId,
            Kind::Secret,
        ];
        let kinds = |s: &str| find(s, &all).into_iter().map(|f| f.2).collect::<Vec<_>>();
        assert_eq!(kinds("card 4111 1111 1111 1111 ok"), [Kind::Card]);
        assert_eq!(kinds("card 4111 1111 1111 1112"), [], "Luhn fails");
        assert_eq!(kinds("order 1234567890123"), [], "Luhn fails");
        assert_eq!(kinds("iban DE89370400440532013000"), [Kind::Iban]);
        assert_eq!(kinds("iban DE89370400440532013001"), [], "mod 97 fails");
        assert_eq!(kinds("mail ada@example.com now"), [Kind::Email]);
        assert_eq!(kinds("call +44 20 7946 0958"), [Kind::Phone]);
        assert_eq!(kinds("ssn 078-05-1120"), [Kind::NationalId]);
        assert_eq!(
            kinds("key sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
            [Kind::Secret]
        );
        assert_eq!(
            kinds("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"),
            [Kind::Secret]
        );
        assert_eq!(kinds("version 2.0.1, 12 items, id 42, 2026-11-28"), []);
    }

    #[test]
    fn encryption_round_trips() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let p = Pii {
            kinds: vec![Kind::Card],
            action: Action::Encrypt,
            fields: vec![],
            marked: vec![],
            key: parse_key(hex),
        };
        let enc = p.encrypt("4111 1111 1111 1111");
        assert!(enc.starts_with("enc:v1:") && !enc.contains("4111"));
        assert_eq!(decrypt(&enc, hex).as_deref(), Ok("4111 1111 1111 1111"));
        assert!(decrypt(&enc, &hex.replace('0', "1")).is_err());
        assert_ne!(p.encrypt("x"), p.encrypt("x"), "fresh nonce each time");
    }
}
