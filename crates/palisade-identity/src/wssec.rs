//! `ws_security`: OASIS WS-Security 1.1 UsernameToken (PasswordDigest or, over TLS,
//! PasswordText) and Timestamp on SOAP requests. The user is a configured consumer's; a
//! digest proves the password without sending it (`Base64(SHA-1(nonce + created +
//! password))`), `Created` must be fresh and its nonce is remembered for the window, so a
//! captured header cannot be sent again. The `Security` header is read once from the
//! envelope (quick-xml, namespaces resolved); two of them, or two tokens, are refused as
//! ambiguous. Refusals of SOAP requests are SOAP Faults (the renderer's).

use std::sync::Arc;

use base64::Engine as _;
use http::StatusCode;
use palisade_core::duration::Dur;
use palisade_core::policies::SpecError;
use palisade_core::xml::Scope;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Principal, Rejection, RequestHead, Stage,
    Verdict,
};
use quick_xml::events::Event;
use quick_xml::Reader;
use serde::Deserialize;

use crate::consumers::{parse_instant, Directory};
use crate::signature::replay::{Fault, Replays};
use crate::signature::{OnReplayStoreError, ReplayStore};
use crate::util::now_secs;

/// No Security header (or no Timestamp where one is required).
pub const MISSING: &str = "wssec.missing";
/// A Security header that cannot be read.
pub const MALFORMED: &str = "wssec.malformed";
/// An unknown user or a wrong password.
pub const INVALID: &str = "wssec.invalid";
/// A token or timestamp outside its window.
pub const EXPIRED: &str = "wssec.expired";
/// A nonce already used.
pub const REPLAYED: &str = "wssec.replayed";
/// A clear-text password over plain HTTP.
pub const INSECURE: &str = "wssec.insecure";
/// An X.509 signature that does not verify, or does not cover what the service reads.
pub const BAD_SIGNATURE: &str = "wssec.bad_signature";
/// A signer's certificate that does not chain to a configured CA.
pub const UNTRUSTED: &str = "wssec.untrusted";
/// A SAML assertion that is not signed by the provider, not for this service, or not valid now.
pub const SAML_INVALID: &str = "wssec.saml_invalid";
/// Encrypted content that cannot be decrypted with the gateway's key.
pub const DECRYPT_FAILED: &str = "wssec.decrypt_failed";
const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
/// The most encrypted parts one envelope may have.
const MAX_ENCRYPTED: usize = 16;

pub(crate) const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
pub(crate) const WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
pub(crate) const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
pub(crate) const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub(crate) const ENVS: [&str; 2] = [
    "http://schemas.xmlsoap.org/soap/envelope/",
    "http://www.w3.org/2003/05/soap-envelope",
];

/// Config of the `ws_security` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WsSecuritySpec {
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub mode: Mode,
    /// A `wsu:Timestamp` is required. Default true.
    #[serde(default)]
    pub require_timestamp: Option<bool>,
    /// How old a token's (and a timestamp's) `Created` may be. Default 5m.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub max_age: Option<Dur>,
    /// Tolerance for clocks that disagree. Default 30s.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub clock_skew: Option<Dur>,
    /// Accept PasswordText over plain HTTP (the password travels readable): weakens security.
    #[serde(default)]
    pub dangerous_allow_password_text_over_http: bool,
    /// X.509 signatures (BinarySecurityToken + XML Signature over the Body and Timestamp),
    /// checked against this CA file (PEM, relative to the config).
    #[serde(default)]
    pub x509: Option<X509Spec>,
    /// SAML 2.0 assertions of one identity provider (SAML Token Profile).
    #[serde(default)]
    pub saml: Option<SamlSpec>,
    /// XML Encryption: encrypted parts of the envelope are decrypted with the gateway's key
    /// before they are checked and forwarded.
    #[serde(default)]
    pub decrypt: Option<DecryptSpec>,
    /// Forward the `wsse:Security` header to the service. Default false: it is removed once
    /// checked (the service gets the verified identity in the identity headers instead, and
    /// no password digest, nonce or token).
    #[serde(default)]
    pub keep_security_header: bool,
    /// Where used nonces are kept: `local` (default, this instance) or `redis` (every
    /// instance of the cluster refuses a nonce one has seen).
    #[serde(default)]
    pub store: ReplayStore,
    /// With `store: redis`, while Redis cannot answer: `fail_closed` (default, 503) or
    /// `local_fallback`.
    #[serde(default)]
    pub on_store_error: OnReplayStoreError,
}

/// X.509 signatures of `ws_security`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct X509Spec {
    /// The CA(s) signers' certificates must chain to (a PEM file, relative to the config).
    pub ca: String,
    /// Every request must be signed (a UsernameToken alone is refused). Default true.
    #[serde(default)]
    pub require: Option<bool>,
}

/// The gateway's decryption key for `ws_security`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecryptSpec {
    /// The RSA private key (PKCS#8 PEM) clients encrypt for: `${file:…}`, `${env:…}` or
    /// `${cmd:…}`.
    pub key: palisade_core::secret::SecretRef,
    /// Every request's Body must be encrypted. Default false.
    #[serde(default)]
    pub require: bool,
}

/// SAML assertions accepted by `ws_security`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SamlSpec {
    /// The `Issuer` assertions must name.
    pub issuer: String,
    /// The `Audience` they must be restricted to.
    pub audience: String,
    /// The identity provider's signing certificate (a PEM file, relative to the config).
    pub certificate: String,
}

/// The runtime policy.
#[derive(Debug)]
pub struct WsSecurity {
    dir: Arc<Directory>,
    timestamp: bool,
    max_age: i64,
    skew: i64,
    text_over_http: bool,
    nonces: Replays,
    keep: bool,
    /// The CAs of X.509 signers, and whether a signature is required.
    x509: Option<(crate::wssec_x509::Trust, bool)>,
    /// The identity provider of SAML assertions.
    saml: Option<crate::wssec_saml::Issuer>,
    /// The decryption key, and whether the Body must be encrypted.
    decrypt: Option<(Arc<bergshamra::EncContext>, bool)>,
}

impl WsSecuritySpec {
    /// Builds the policy.
    pub fn build(
        &self,
        dir: &Arc<Directory>,
        shared: Option<Arc<dyn palisade_core::seen::SeenStore>>,
        ca_pem: Option<&str>,
        idp_pem: Option<&str>,
    ) -> Result<WsSecurity, Vec<SpecError>> {
        let decrypt = match &self.decrypt {
            None => None,
            Some(d) => {
                let pem = d
                    .key
                    .resolve_text()
                    .map_err(|e| vec![SpecError::new("decrypt.key", e)])?;
                let key =
                    bergshamra::keys::loader::load_pem_auto(pem.as_bytes(), None).map_err(|e| {
                        vec![SpecError::new(
                            "decrypt.key",
                            format!("not a private key this policy can decrypt with ({e}); use PKCS#8 PEM (BEGIN PRIVATE KEY): openssl pkcs8 -topk8 -nocrypt -in old.key -out new.key"),
                        )]
                    })?;
                let mut keys = bergshamra::keys::KeysManager::new();
                keys.add_key(key);
                let mut ctx = bergshamra::EncContext::new(keys);
                // never fetch ciphertext from elsewhere
                ctx.disable_cipher_reference = true;
                Some((Arc::new(ctx), d.require))
            }
        };
        let saml = match (&self.saml, idp_pem) {
            (Some(sp), Some(pem)) => {
                bergshamra::keys::loader::load_x509_cert_pem(pem.as_bytes()).map_err(|e| {
                    vec![SpecError::new(
                        "saml.certificate",
                        format!("not a certificate the signatures can be checked with ({e})"),
                    )]
                })?;
                Some(crate::wssec_saml::Issuer {
                    issuer: sp.issuer.clone(),
                    audience: sp.audience.clone(),
                    certificate_pem: pem.to_string(),
                })
            }
            (Some(_), None) => {
                return Err(vec![SpecError::new(
                    "saml.certificate",
                    "the certificate file cannot be read",
                )])
            }
            _ => None,
        };
        let x509 = match (&self.x509, ca_pem) {
            (Some(x), Some(pem)) => Some((
                crate::wssec_x509::Trust::from_pem(pem)
                    .map_err(|e| vec![SpecError::new("x509.ca", e)])?,
                x.require.unwrap_or(true),
            )),
            (Some(_), None) => {
                return Err(vec![SpecError::new(
                    "x509.ca",
                    "the CA file cannot be read",
                )])
            }
            _ => None,
        };
        let shared = match (self.store, shared) {
            (ReplayStore::Local, _) => None,
            (ReplayStore::Redis, Some(s)) => Some(s),
            (ReplayStore::Redis, None) => {
                return Err(vec![SpecError::new(
                    "store",
                    "store: redis needs the top-level `redis` section",
                )])
            }
        };
        if !dir.has_ws_users() && x509.is_none() && saml.is_none() {
            return Err(vec![SpecError::new(
                "type",
                "no consumer has a WS-Security user: add `ws_users` to a consumer (or `x509` to the policy, with consumers' `certificates`)",
            )]);
        }
        let secs = crate::signature::secs;
        Ok(WsSecurity {
            dir: dir.clone(),
            timestamp: self.require_timestamp.unwrap_or(true),
            max_age: secs(self.max_age, 300),
            skew: secs(self.clock_skew, 30),
            text_over_http: self.dangerous_allow_password_text_over_http,
            keep: self.keep_security_header,
            x509,
            saml,
            decrypt,
            nonces: Replays::new(
                1_000_000,
                shared,
                self.on_store_error == OnReplayStoreError::LocalFallback,
                "ws_security",
            ),
        })
    }
}

/// What a Security header holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// `wsse:Username`.
    pub username: Option<String>,
    /// `wsse:Password` and whether its Type is PasswordDigest.
    pub password: Option<(String, bool)>,
    /// `wsse:Nonce` (base64).
    pub nonce: Option<String>,
    /// The token's `wsu:Created`.
    pub created: Option<String>,
    /// The Timestamp's `wsu:Created` and `wsu:Expires`.
    pub ts_created: Option<String>,
    /// See above.
    pub ts_expires: Option<String>,
    /// Where the Security element is in the document (byte offsets, end exclusive).
    pub span: Option<(usize, usize)>,
    /// It holds an XML Signature.
    pub signed: bool,
    /// It holds a SAML 2.0 assertion.
    pub saml: bool,
}

/// Reads the Security header of an envelope: `Ok(None)` without one.
pub fn read(doc: &str) -> Result<Option<Header>, String> {
    let mut r = Reader::from_str(doc);
    r.config_mut().check_end_names = true;
    let mut scope = Scope::default();
    let mut path: Vec<(String, String)> = Vec::new();
    let mut h = Header::default();
    let (mut securities, mut tokens, mut stamps) = (0, 0, 0);
    let mut text = String::new();
    let offset = |r: &Reader<&[u8]>| usize::try_from(r.buffer_position()).unwrap_or(usize::MAX);
    let mut security_start = 0;
    loop {
        let before = offset(&r);
        let ev = r
            .read_event()
            .map_err(|e| format!("the envelope is not well-formed XML ({e})"))?;
        match ev {
            Event::Start(e) | Event::Empty(e) if path.len() > 64 => {
                let _ = e;
                return Err("the envelope nests too deep".into());
            }
            Event::Start(e) => {
                let q = scope.enter(&e)?;
                let at = |ns: &str, l: &str| q.0 == ns && q.1 == l;
                let in_security = path
                    .get(2)
                    .is_some_and(|p| p.0 == WSSE && p.1 == "Security");
                match path.len() {
                    2 if path.get(1).is_some_and(|p| p.1 == "Header") && at(WSSE, "Security") => {
                        securities += 1;
                        security_start = before;
                    }
                    3 if in_security && at(WSSE, "UsernameToken") => tokens += 1,
                    3 if in_security && at(WSU, "Timestamp") => stamps += 1,
                    3 if in_security && at(DSIG, "Signature") => h.signed = true,
                    3 if in_security && at(SAML, "Assertion") => h.saml = true,
                    4 if in_security && at(WSSE, "Password") => {
                        let t = palisade_core::xml::attr(&e, "Type").unwrap_or_default();
                        h.password = Some((String::new(), t.ends_with("#PasswordDigest")));
                    }
                    _ => {}
                }
                path.push(q);
                text.clear();
            }
            Event::Empty(e) => {
                let q = scope.enter(&e)?;
                scope.pop();
                if path.is_empty() {
                    return Err("not a SOAP envelope".into());
                }
                if path.len() == 2 && q.0 == WSSE && q.1 == "Security" {
                    securities += 1;
                    h.span = Some((before, offset(&r)));
                }
            }
            Event::Text(t) => text.push_str(&t),
            Event::GeneralRef(g) => match &*g {
                "lt" => text.push('<'),
                "gt" => text.push('>'),
                "amp" => text.push('&'),
                "quot" => text.push('"'),
                "apos" => text.push('\''),
                _ => return Err("an entity in the Security header".into()),
            },
            Event::End(_) => {
                let q = path.pop().unwrap_or_default();
                scope.pop();
                if path.len() == 2 && q.0 == WSSE && q.1 == "Security" {
                    h.span = Some((security_start, offset(&r)));
                }
                let in_security = path
                    .get(2)
                    .is_some_and(|p| p.0 == WSSE && p.1 == "Security");
                let parent = path.last().map(|p| p.1.as_str()).unwrap_or("");
                if in_security && path.len() == 4 {
                    let v = Some(text.trim().to_string());
                    match (parent, q.0.as_str(), q.1.as_str()) {
                        ("UsernameToken", WSSE, "Username") => h.username = v,
                        ("UsernameToken", WSSE, "Password") => {
                            let digest = h.password.as_ref().is_some_and(|p| p.1);
                            h.password = v.map(|p| (p, digest));
                        }
                        ("UsernameToken", WSSE, "Nonce") => h.nonce = v,
                        ("UsernameToken", WSU, "Created") => h.created = v,
                        ("Timestamp", WSU, "Created") => h.ts_created = v,
                        ("Timestamp", WSU, "Expires") => h.ts_expires = v,
                        _ => {}
                    }
                }
                text.clear();
            }
            Event::DocType(_) => return Err("a DOCTYPE in a SOAP envelope".into()),
            Event::Eof => break,
            _ => {}
        }
        if path
            .first()
            .is_some_and(|p| !ENVS.contains(&p.0.as_str()) || p.1 != "Envelope")
        {
            return Err("not a SOAP envelope".into());
        }
    }
    if securities > 1 || tokens > 1 || stamps > 1 {
        return Err("more than one Security header, UsernameToken or Timestamp".into());
    }
    Ok((securities == 1).then_some(h))
}

fn refuse(status: StatusCode, code: &'static str, why: &str) -> Verdict {
    Verdict::Reject(
        Rejection::new(status, code, "WS-Security refused").with_detail(why.to_string()),
    )
}

impl WsSecurity {
    fn time(&self, v: &Option<String>, what: &str) -> Result<Option<i64>, Verdict> {
        match v {
            None => Ok(None),
            Some(t) => parse_instant(t).map(Some).ok_or_else(|| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    MALFORMED,
                    &format!("{what} is not an xsd:dateTime"),
                )
            }),
        }
    }

    /// The Timestamp: present when required, created neither in the future nor too long
    /// ago, not expired.
    fn fresh(&self, h: &Header, now: i64) -> Result<(), Verdict> {
        let expired = |why: &str| refuse(StatusCode::UNAUTHORIZED, EXPIRED, why);
        let (tc, te) = (
            self.time(&h.ts_created, "Timestamp/Created")?,
            self.time(&h.ts_expires, "Timestamp/Expires")?,
        );
        match (tc, self.timestamp) {
            (None, true) => {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    MISSING,
                    "a wsu:Timestamp is required",
                ))
            }
            (Some(c), _) if c > now + self.skew => {
                return Err(expired("the Timestamp is created in the future"))
            }
            (Some(c), _) if now - c > self.max_age => {
                return Err(expired("the Timestamp is too old"))
            }
            _ => {}
        }
        if te.is_some_and(|e| now > e + self.skew) {
            return Err(expired("the Timestamp has expired"));
        }
        Ok(())
    }

    /// The principal of a valid header, and the nonce to take for it (user, nonce, until).
    fn decide(
        &self,
        h: &Header,
        tls: bool,
        now: i64,
    ) -> Result<(Principal, Option<Nonce>), Verdict> {
        let expired = |why: &str| refuse(StatusCode::UNAUTHORIZED, EXPIRED, why);
        // the timestamp first: a stale message is refused before its password is looked at
        self.fresh(h, now)?;
        let (Some(user), Some((password, digest))) = (&h.username, &h.password) else {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                MISSING,
                "a UsernameToken with Username and Password is required",
            ));
        };
        let invalid = || {
            refuse(
                StatusCode::UNAUTHORIZED,
                INVALID,
                "the username or password is not right",
            )
        };
        let Some((consumer, secret)) = self.dir.ws_user(user) else {
            return Err(invalid());
        };
        let created = self.time(&h.created, "UsernameToken/Created")?;
        if let Some(c) = created {
            if c > now + self.skew {
                return Err(expired("the UsernameToken is created in the future"));
            }
            if now - c > self.max_age {
                return Err(expired("the UsernameToken is too old"));
            }
        }
        let mut taken: Option<Nonce> = None;
        let ok = if *digest {
            let (Some(nonce), Some(created_text), Some(c)) = (&h.nonce, &h.created, created) else {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    MALFORMED,
                    "PasswordDigest needs a Nonce and a Created",
                ));
            };
            let nonce_bytes = base64::engine::general_purpose::STANDARD
                .decode(nonce.as_bytes())
                .map_err(|_| {
                    refuse(
                        StatusCode::BAD_REQUEST,
                        MALFORMED,
                        "the Nonce is not base64",
                    )
                })?;
            let mut ctx =
                aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
            ctx.update(&nonce_bytes);
            ctx.update(created_text.as_bytes());
            ctx.update(secret);
            let want = base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref());
            let ok = aws_lc_rs::constant_time::verify_slices_are_equal(
                want.as_bytes(),
                password.as_bytes(),
            )
            .is_ok();
            if ok {
                taken = Some((user.to_string(), nonce_bytes, c + self.max_age + self.skew));
            }
            ok
        } else {
            if !tls && !self.text_over_http {
                return Err(refuse(StatusCode::FORBIDDEN, INSECURE, "a PasswordText password is accepted only over TLS: use PasswordDigest or HTTPS"));
            }
            aws_lc_rs::constant_time::verify_slices_are_equal(password.as_bytes(), secret).is_ok()
        };
        if !ok {
            return Err(invalid());
        }
        Ok((consumer.principal("ws_security"), taken))
    }
}

/// A digest's nonce to take: its user, the nonce, and until when it counts.
type Nonce = (String, Vec<u8>, i64);

/// The Security header of an envelope, or the refusal of one without it or not readable.
fn security_header(text: &str) -> Result<Header, Verdict> {
    match read(text) {
        Ok(Some(h)) => Ok(h),
        Ok(None) => Err(refuse(
            StatusCode::UNAUTHORIZED,
            MISSING,
            "a wsse:Security header is required",
        )),
        Err(e) => Err(refuse(StatusCode::BAD_REQUEST, MALFORMED, &e)),
    }
}

/// Decrypts every `xenc:EncryptedData` of an envelope (at most [`MAX_ENCRYPTED`]); `None`
/// when it has none.
fn decrypt_all(ctx: &bergshamra::EncContext, text: &str) -> Result<Option<String>, String> {
    let marker = |t: &str| t.contains("EncryptedData") && t.contains(XENC);
    if !marker(text) {
        return Ok(None);
    }
    let mut doc = text.to_string();
    for _ in 0..MAX_ENCRYPTED {
        if !marker(&doc) {
            return Ok(Some(doc));
        }
        doc = match bergshamra::enc::decrypt::decrypt(ctx, &doc) {
            Ok(d) => d,
            // nothing left that is EncryptedData (the marker was text)
            Err(bergshamra::Error::MissingElement(_)) => return Ok(Some(doc)),
            Err(e) => {
                return Err(format!(
                    "the encrypted content cannot be decrypted with the gateway's key ({e})"
                ))
            }
        };
    }
    Err(format!("more than {MAX_ENCRYPTED} encrypted parts"))
}

impl WsSecurity {
    /// An X.509-signed message: fresh, signed by a trusted certificate over its own Body and
    /// Timestamp, by a consumer.
    fn signed(
        &self,
        text: &str,
        h: &Header,
        trust: &crate::wssec_x509::Trust,
        now: i64,
        x: &mut Exchange,
    ) -> Verdict {
        use crate::wssec_x509::Refused;
        if let Err(v) = self.fresh(h, now) {
            return v;
        }
        let signed = match crate::wssec_x509::verify(text, trust, &self.dir, self.timestamp) {
            Ok(s) => s,
            Err(Refused::Untrusted(why)) => {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    UNTRUSTED,
                    &format!("the signer's certificate is not trusted ({why})"),
                )
            }
            Err(Refused::BadSignature(why)) => {
                return refuse(StatusCode::UNAUTHORIZED, BAD_SIGNATURE, &why)
            }
            Err(Refused::Malformed(why)) => {
                return refuse(StatusCode::BAD_REQUEST, MALFORMED, &why)
            }
            Err(Refused::Unknown(why)) => return refuse(StatusCode::UNAUTHORIZED, INVALID, &why),
        };
        let Some(consumer) = self.dir.consumer(&signed.consumer) else {
            return refuse(StatusCode::UNAUTHORIZED, INVALID, "no such consumer");
        };
        self.admit(consumer.principal("ws_security_x509"), text, h, x)
    }

    /// The caller the Security header proved is the request's principal, and, unless the
    /// route keeps it, the header leaves the body forwarded.
    fn admit(&self, p: Principal, text: &str, h: &Header, x: &mut Exchange) -> Verdict {
        if x.set_principal(p).is_err() {
            return Verdict::Reject(crate::refusals::forbidden(
                "the request carries two identities",
            ));
        }
        if let (false, Some((start, end))) = (self.keep, h.span) {
            if let (Some(a), Some(b)) = (text.get(..start), text.get(end..)) {
                x.replace_request_body = Some(bytes::Bytes::from(format!("{a}{b}")));
            }
        }
        Verdict::Continue
    }
}

#[async_trait::async_trait]
impl Policy for WsSecurity {
    fn kind(&self) -> &'static str {
        "ws_security"
    }
    fn stage(&self) -> Stage {
        Stage::Authn
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY.with(Phase::RequestBody)
    }

    async fn on_request_body(
        &self,
        _req: &RequestHead,
        body: &bytes::Bytes,
        x: &mut Exchange,
    ) -> Outcome {
        let Ok(text) = std::str::from_utf8(body) else {
            return Ok(refuse(
                StatusCode::BAD_REQUEST,
                MALFORMED,
                "the envelope is not UTF-8",
            ));
        };
        let mut h = match security_header(text) {
            Ok(h) => h,
            Err(v) => return Ok(v),
        };
        // encrypted parts first (sign-then-encrypt: what was signed is the plaintext); the
        // envelope was read above, so no DOCTYPE reaches the decryptor
        let decrypted;
        let mut text = text;
        if let Some((ctx, required)) = &self.decrypt {
            match decrypt_all(ctx, text) {
                Ok(Some(plain)) => {
                    h = match security_header(&plain) {
                        Ok(h) => h,
                        Err(v) => return Ok(v),
                    };
                    decrypted = plain;
                    text = &decrypted;
                    // the service and the policies after this one get the plaintext
                    x.replace_request_body = Some(bytes::Bytes::from(decrypted.clone()));
                }
                Ok(None) if *required => {
                    return Ok(refuse(
                        StatusCode::BAD_REQUEST,
                        MISSING,
                        "the Body must be encrypted for the gateway",
                    ))
                }
                Ok(None) => {}
                Err(why) => return Ok(refuse(StatusCode::BAD_REQUEST, DECRYPT_FAILED, &why)),
            }
        }
        let now = now_secs();
        if let (Some(idp), true) = (&self.saml, h.saml) {
            if let Err(v) = self.fresh(&h, now) {
                return Ok(v);
            }
            return Ok(match crate::wssec_saml::verify(text, idp, now, self.skew) {
                Ok(p) => self.admit(p, text, &h, x),
                Err(why) => refuse(StatusCode::UNAUTHORIZED, SAML_INVALID, &why),
            });
        }
        if let Some((trust, required)) = &self.x509 {
            if h.signed {
                return Ok(self.signed(text, &h, trust, now, x));
            }
            if *required {
                return Ok(refuse(
                    StatusCode::UNAUTHORIZED,
                    MISSING,
                    "an X.509 signature of the Body and Timestamp is required",
                ));
            }
        }
        match self.decide(&h, x.tls, now) {
            Ok((p, nonce)) => {
                if let Some((user, n, until)) = nonce {
                    match self.nonces.first_time(&user, &n, until, now).await {
                        Ok(()) => {}
                        Err(Fault::Replayed) => {
                            return Ok(refuse(
                                StatusCode::UNAUTHORIZED,
                                REPLAYED,
                                "this Nonce was already used",
                            ))
                        }
                        Err(Fault::Unavailable(why)) => {
                            return Ok(refuse(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "wssec.unavailable",
                                why,
                            ))
                        }
                    }
                }
                Ok(self.admit(p, text, &h, x))
            }
            Err(v) => Ok(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(security: &str, body: &str) -> String {
        format!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}"><s:Header>{security}</s:Header><s:Body>{body}</s:Body></s:Envelope>"#
        )
    }

    #[test]
    fn the_security_header_is_read_where_it_belongs_and_ambiguity_is_refused() {
        let tok = r#"<wsse:Security><wsse:UsernameToken><wsse:Username>u</wsse:Username><wsse:Password Type="x#PasswordDigest">d</wsse:Password><wsse:Nonce>bg==</wsse:Nonce><wsu:Created>2026-12-03T10:00:00Z</wsu:Created></wsse:UsernameToken><wsu:Timestamp><wsu:Created>2026-12-03T10:00:00Z</wsu:Created></wsu:Timestamp></wsse:Security>"#;
        let h = read(&env(tok, "<op/>"))
            .unwrap_or_default()
            .unwrap_or_default();
        assert_eq!(h.username.as_deref(), Some("u"));
        assert_eq!(h.password, Some(("d".into(), true)));
        assert_eq!(h.ts_created.as_deref(), Some("2026-12-03T10:00:00Z"));
        // two headers, or a token smuggled in the body beside the real one
        assert!(read(&env(&format!("{tok}{tok}"), "<op/>")).is_err());
        // a token in the Body is not a Security header
        assert_eq!(read(&env("", tok)).ok(), Some(None));
        assert!(read("<notsoap/>").is_err());
        assert!(read(&env(r#"<wsse:Security><wsse:UsernameToken><wsse:Username>&x;</wsse:Username></wsse:UsernameToken></wsse:Security>"#, "")).is_err());
    }
}
