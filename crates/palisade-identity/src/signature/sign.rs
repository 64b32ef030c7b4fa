//! What the gateway signs toward an upstream (`upstreams.<name>.sign_requests`): an RFC 9421
//! signature over the request as forwarded (method, path and query after any prefix is
//! stripped, the identity headers the gateway wrote, a `Content-Digest` of the body it
//! computed itself), so an upstream can verify that a request passed the gateway and was
//! not changed after it. The route's name is the signature's `tag`: a request signed for one
//! route is not valid for another.

use http::{HeaderMap, HeaderValue};
use serde::Deserialize;

use super::base::{self, Id, Message};
use super::digest;
use super::keys::{Alg, SignKey};

/// Config of an upstream's request signing.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSigningSpec {
    /// The `keyid` the upstream knows the gateway's key by.
    pub keyid: String,
    /// `ed25519` (default), `ecdsa-p256-sha256`, `ecdsa-p384-sha384`, `rsa-pss-sha512`,
    /// `rsa-v1_5-sha256` or `hmac-sha256`.
    #[serde(default)]
    pub alg: Option<Alg>,
    /// The private key (PKCS#8 PEM) or, for `hmac-sha256`, the shared secret:
    /// `${file:PATH}` or `${env:NAME}`.
    pub key: palisade_core::secret::SecretRef,
    /// What to cover when the request has it. Default: `@method`, `@path`, `@query`,
    /// `content-digest`, `content-type`, and the identity headers `x-palisade-consumer`,
    /// `x-palisade-subject`, `x-palisade-auth-method`.
    #[serde(default)]
    pub components: Option<Vec<String>>,
    /// The signature's label. Default `palisade`.
    #[serde(default)]
    pub label: Option<String>,
}

/// Signs forwarded requests.
pub struct UpstreamSigner {
    keyid: String,
    key: SignKey,
    components: Vec<Id>,
    label: String,
}

impl std::fmt::Debug for UpstreamSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSigner")
            .field("keyid", &self.keyid)
            .field("alg", &self.key.alg())
            .finish()
    }
}

const DEFAULT: &[&str] = &[
    "@method",
    "@path",
    "@query",
    "content-digest",
    "content-type",
    "x-palisade-consumer",
    "x-palisade-subject",
    "x-palisade-auth-method",
];

impl UpstreamSigningSpec {
    /// Builds the signer; problems as (field, message).
    pub fn build(&self) -> Result<UpstreamSigner, (String, String)> {
        let alg = self.alg.unwrap_or(Alg::Ed25519);
        let secret = self.key.resolve().map_err(|e| ("key".to_string(), e))?;
        let key = if alg == Alg::HmacSha256 {
            SignKey::secret(&secret)
        } else {
            std::str::from_utf8(&secret)
                .map_err(|_| "the key is not PEM text".to_string())
                .and_then(|pem| SignKey::private_pem(alg, pem))
        }
        .map_err(|e| ("key".to_string(), e))?;
        let texts: Vec<String> = self
            .components
            .clone()
            .unwrap_or_else(|| DEFAULT.iter().map(|s| s.to_string()).collect());
        let mut components = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let id = match Id::derived(t) {
                Some(Id::Method | Id::Path | Id::Query) => Id::derived(t),
                Some(_) => None,
                None if !t.starts_with('@')
                    && http::HeaderName::from_bytes(t.as_bytes()).is_ok()
                    && !t.bytes().any(|b| b.is_ascii_uppercase()) =>
                {
                    Some(Id::Field {
                        name: t.clone(),
                        sf: false,
                        key: None,
                        bs: false,
                    })
                }
                None => None,
            };
            match id {
                Some(id) => components.push(id),
                None => {
                    return Err((
                        format!("components[{i}]"),
                        format!("`{t}` cannot be signed toward an upstream: use @method, @path, @query or a lower-case header name (the target's authority is not known when signing)"),
                    ))
                }
            }
        }
        if !components.contains(&Id::Method) {
            return Err(("components".into(), "must include @method".into()));
        }
        if self.keyid.is_empty() {
            return Err(("keyid".into(), "must not be empty".into()));
        }
        Ok(UpstreamSigner {
            keyid: self.keyid.clone(),
            key,
            components,
            label: self.label.clone().unwrap_or_else(|| "palisade".into()),
        })
    }
}

impl UpstreamSigner {
    /// Adds `Content-Digest` (for a body), `Signature-Input` and `Signature` to a forwarded
    /// request for `target` (its path and query as forwarded); `tag` names the route.
    pub fn sign(
        &self,
        method: &str,
        target: &http::uri::PathAndQuery,
        headers: &mut HeaderMap,
        body: Option<&[u8]>,
        tag: &str,
    ) -> Result<(), String> {
        // the client's signature fields, where a route keeps them, stay beside ours
        self.seal(headers, body, Some(tag), true, |sig, headers| {
            sig.base(&Message {
                method,
                scheme: "http",
                authority: "",
                path: target.path(),
                query: target.query(),
                headers,
            })
        })
    }

    /// Sets the body's digest, signs the components present with `base_of`'s signature base,
    /// and writes `Signature-Input` and `Signature` (after those there, with `merge`).
    fn seal(
        &self,
        headers: &mut HeaderMap,
        body: Option<&[u8]>,
        tag: Option<&str>,
        merge: bool,
        base_of: impl FnOnce(&base::Signature, &HeaderMap) -> Result<String, base::BaseError>,
    ) -> Result<(), String> {
        match body.filter(|b| !b.is_empty()) {
            Some(b) => {
                let v = HeaderValue::from_str(&digest::content_digest(b))
                    .map_err(|_| "bad digest".to_string())?;
                headers.insert("content-digest", v);
            }
            None => {
                headers.remove("content-digest");
            }
        }
        let covered: Vec<Id> = self
            .components
            .iter()
            .filter(|id| match id {
                Id::Field { name, .. } => headers.contains_key(name.as_str()),
                _ => true,
            })
            .cloned()
            .collect();
        let (sig, input) = base::for_signing(
            &covered,
            crate::util::now_secs(),
            &self.keyid,
            Some(self.key.alg().name()),
            None,
            tag,
        )?;
        let b = base_of(&sig, headers).map_err(|e| format!("{e:?}"))?;
        let value = self.key.sign(b.as_bytes())?;
        use base64::Engine as _;
        let sig_text = format!(
            "{}=:{}:",
            self.label,
            base64::engine::general_purpose::STANDARD.encode(value)
        );
        let input_text = format!("{}={input}", self.label);
        for (name, ours) in [("signature-input", input_text), ("signature", sig_text)] {
            let merged = match headers.get(name).and_then(|v| v.to_str().ok()) {
                Some(theirs) if merge && !theirs.is_empty() => format!("{theirs}, {ours}"),
                _ => ours,
            };
            let v =
                HeaderValue::from_str(&merged).map_err(|_| "bad signature field".to_string())?;
            headers.insert(name, v);
        }
        Ok(())
    }
}

/// Config of the `response_signature` policy: the gateway signs its answers (RFC 9421), so a
/// client can verify that an answer came through the gateway unchanged and belongs to its
/// request (`x-request-id` is covered).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseSignatureSpec {
    /// The `keyid` clients know the gateway's key by.
    pub keyid: String,
    /// `ed25519` (default) or another algorithm of RFC 9421.
    #[serde(default)]
    pub alg: Option<Alg>,
    /// The private key (PKCS#8 PEM) or the HMAC secret: `${file:PATH}` or `${env:NAME}`.
    pub key: palisade_core::secret::SecretRef,
    /// Header fields to cover when the answer has them, beside `@status`, `content-digest`
    /// and `x-request-id`. Default: `content-type`, `cache-control`, `location`.
    #[serde(default)]
    pub components: Option<Vec<String>>,
    /// The signature's label. Default `palisade`.
    #[serde(default)]
    pub label: Option<String>,
}

/// The runtime `response_signature` policy.
#[derive(Debug)]
pub struct ResponseSignature {
    signer: UpstreamSigner,
}

impl ResponseSignatureSpec {
    /// Builds the policy.
    pub fn build(&self) -> Result<ResponseSignature, Vec<palisade_core::policies::SpecError>> {
        let fields = self.components.clone().unwrap_or_else(|| {
            ["content-type", "cache-control", "location"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        for (i, f) in fields.iter().enumerate() {
            if f.starts_with('@')
                || http::HeaderName::from_bytes(f.as_bytes()).is_err()
                || f.bytes().any(|b| b.is_ascii_uppercase())
            {
                return Err(vec![palisade_core::policies::SpecError::new(
                    format!("components[{i}]"),
                    format!("`{f}` is not a lower-case header name (@status, content-digest and x-request-id are always covered)"),
                )]);
            }
        }
        let mut components = vec!["@method".to_string()];
        components.extend(fields);
        let spec = UpstreamSigningSpec {
            keyid: self.keyid.clone(),
            alg: self.alg,
            key: self.key.clone(),
            components: Some(components),
            label: self.label.clone(),
        };
        let mut signer = spec
            .build()
            .map_err(|(f, m)| vec![palisade_core::policies::SpecError::new(f, m)])?;
        // a response covers its status, digest and request id, then the fields given
        signer.components.retain(|c| *c != Id::Method);
        let field = |n: &str| Id::Field {
            name: n.into(),
            sf: false,
            key: None,
            bs: false,
        };
        let mut all = vec![Id::Status, field("content-digest"), field("x-request-id")];
        all.append(&mut signer.components);
        signer.components = all;
        Ok(ResponseSignature { signer })
    }
}

#[async_trait::async_trait]
impl palisade_core::Policy for ResponseSignature {
    fn kind(&self) -> &'static str {
        "response_signature"
    }
    // the earliest stage on requests is the last on responses: the answer is signed after
    // every policy that rewrites it (masking, field removal)
    fn stage(&self) -> palisade_core::Stage {
        palisade_core::Stage::Network
    }
    fn phases(&self) -> palisade_core::PhaseSet {
        palisade_core::PhaseSet::EMPTY.with(palisade_core::Phase::ResponseBody)
    }

    async fn on_response_body(
        &self,
        res: &mut palisade_core::ResponseHead,
        body: &mut bytes::Bytes,
        x: &mut palisade_core::Exchange,
    ) -> palisade_core::Outcome {
        let rid = HeaderValue::from_str(&x.request_id)
            .map_err(|_| internal("the request id is not a header value"))?;
        res.headers.insert("x-request-id", rid);
        let status = res.status.as_u16();
        self.signer
            .seal(&mut res.headers, Some(body), None, false, |sig, headers| {
                sig.response_base(
                    &Message {
                        method: "",
                        scheme: "",
                        authority: "",
                        path: "",
                        query: None,
                        headers,
                    },
                    status,
                )
            })
            .map_err(internal)?;
        Ok(palisade_core::Verdict::Continue)
    }
}

fn internal(message: impl std::fmt::Display) -> palisade_core::PolicyError {
    palisade_core::PolicyError::Internal {
        policy: "response_signature",
        message: message.to_string(),
    }
}
