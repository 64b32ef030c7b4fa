//! Token issuers: where their keys come from (OpenID Connect discovery, a JWKS URL, a static
//! JWKS file, or a shared secret), how they are cached and refreshed, and what their tokens
//! must say (audience, algorithms, clock skew).
//!
//! Remote key sets are fetched on first use (never by `palisade validate`), refreshed on a
//! schedule while the issuer is in use, and refreshed early when a token names a `kid` the
//! set does not have, at most once per `min_refresh_interval`: a flood of random `kid`s cannot
//! hammer the provider. Issuers are shared by configuration, so a reload keeps their keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::fetch::Fetcher;
use crate::jose::{self, Alg, Jwk};

/// An issuer as written in config (top-level `issuers.NAME`).
#[derive(Debug, Clone, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerSpec {
    /// The `iss` its tokens carry; with neither `jwks_uri` nor `jwks_file` nor a secret, also
    /// where discovery starts (`{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    /// Audiences accepted: a token's `aud` must contain one of them.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Tokens that carry no `iss` claim are taken as this issuer's (weakens security: for
    /// apps that issue their own tokens without one, so that the gateway can verify them).
    /// At most one such issuer per `jwt` policy.
    #[serde(default)]
    pub dangerous_accept_missing_issuer: bool,
    /// An HMAC secret shorter than 32 bytes is accepted (weakens security: a short secret can
    /// be guessed offline; for apps whose secret cannot be changed at once).
    #[serde(default)]
    pub dangerous_short_secret: bool,
    /// Accept tokens without an `aud`-check (weakens security).
    #[serde(default)]
    pub dangerous_skip_audience: bool,
    /// The JWKS URL (skips discovery).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// A static JWKS file.
    #[serde(default)]
    pub jwks_file: Option<String>,
    /// Environment variable with an HMAC secret (HS256/384/512), for issuers without public
    /// keys.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The HMAC secret as `${env:NAME}` or `${file:PATH}` (instead of `secret_env`).
    #[serde(default)]
    pub secret: Option<palisade_core::secret::SecretRef>,
    /// Algorithms accepted. Default: every asymmetric one (HS256 with a secret).
    #[serde(default)]
    pub algorithms: Option<Vec<Alg>>,
    /// Tolerance for `exp`, `nbf` and `iat`. Default 60s.
    #[serde(default)]
    pub clock_skew: Option<palisade_core::duration::Dur>,
    /// Tokens must carry `exp`. Default true.
    #[serde(default)]
    pub require_exp: Option<bool>,
    /// How often remote keys are refreshed. Default 5m.
    #[serde(default)]
    pub refresh_interval: Option<palisade_core::duration::Dur>,
    /// Least time between two refreshes caused by unknown `kid`s. Default 30s.
    #[serde(default)]
    pub min_refresh_interval: Option<palisade_core::duration::Dur>,
    /// CA bundle (PEM) for fetching; default the Mozilla roots.
    #[serde(default)]
    pub ca: Option<String>,
    /// Fetch discovery and keys over plain http (weakens security: keys can be swapped in
    /// transit). For local test providers only.
    #[serde(default)]
    pub dangerous_allow_http: bool,
    /// Claim naming the subject. Default `sub` (then `client_id`).
    #[serde(default)]
    pub subject_claim: Option<String>,
    /// Claim with the groups. Default `groups`.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Claim whose value names a configured consumer (e.g. `client_id`).
    #[serde(default)]
    pub consumer_claim: Option<String>,
    /// RFC 7662 introspection endpoint for opaque tokens; default: the discovery document's.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// Client id Palisade authenticates with at the introspection endpoint.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Environment variable with that client's secret (sent with HTTP Basic).
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// That client's secret as `${env:NAME}` or `${file:PATH}` (instead of
    /// `client_secret_env`).
    #[serde(default)]
    pub client_secret: Option<palisade_core::secret::SecretRef>,
}

enum Source {
    Static,
    Remote {
        discover: bool,
        jwks_uri: Mutex<Option<String>>,
    },
}

/// An issuer at runtime.
pub struct Issuer {
    /// The `iss` value.
    pub issuer: String,
    /// Tokens without `iss` are this issuer's.
    pub accept_missing_issuer: bool,
    /// Accepted audiences (empty: not checked, only with `dangerous_skip_audience`).
    pub audiences: Vec<String>,
    /// Accepted algorithms.
    pub algorithms: Vec<Alg>,
    /// Clock skew.
    pub skew: Duration,
    /// `exp` required.
    pub require_exp: bool,
    /// Subject claim.
    pub subject_claim: String,
    /// Groups claim.
    pub groups_claim: String,
    /// Consumer claim.
    pub consumer_claim: Option<String>,
    /// Introspection: the endpoint (configured or discovered) and the client credentials.
    pub(crate) introspection: Option<Introspection>,
    source: Source,
    keys: RwLock<Arc<Vec<Jwk>>>,
    loaded: RwLock<Option<Instant>>,
    fetch_lock: tokio::sync::Mutex<()>,
    refresh: Duration,
    min_refresh: Duration,
    fetcher: Option<Fetcher>,
    scheduler: OnceLock<()>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

fn registry() -> &'static Mutex<HashMap<Vec<u8>, Weak<Issuer>>> {
    static R: OnceLock<Mutex<HashMap<Vec<u8>, Weak<Issuer>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Files an issuer reads, resolved by the config loader.
#[derive(Debug, Default)]
pub struct IssuerFiles {
    /// The JWKS file's contents.
    pub jwks: Option<Vec<u8>>,
    /// The CA bundle's certificates.
    pub ca: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
}

impl IssuerSpec {
    /// Builds (or finds, for the same settings and files) the issuer. Problems are `(field,
    /// message)`.
    pub fn build(&self, files: IssuerFiles) -> Result<Arc<Issuer>, Vec<(String, String)>> {
        let mut errors: Vec<(String, String)> = Vec::new();
        let mut err = |f: &str, m: String| errors.push((f.to_string(), m));
        if self.issuer.is_empty() {
            err("issuer", "must not be empty".into());
        }
        if self.audiences.is_empty() && !self.dangerous_skip_audience {
            err(
                "audiences",
                "list the audiences this API accepts (a token for another API must not work here); dangerous_skip_audience: true turns the check off".into(),
            );
        }
        use palisade_core::secret::SecretRef;
        let secret_src = SecretRef::either(self.secret.as_ref(), self.secret_env.as_deref())
            .unwrap_or_else(|e| {
                err("secret", e.into());
                None
            });
        // problems are placed on the field the config used
        let sf = if self.secret_env.is_some() {
            "secret_env"
        } else {
            "secret"
        };
        let cf = if self.client_secret_env.is_some() {
            "client_secret_env"
        } else {
            "client_secret"
        };
        let secret = match &secret_src {
            None => None,
            Some(src) => match src.resolve() {
                Ok(v) if v.len() >= 32 || self.dangerous_short_secret => Some(v.to_vec()),
                Ok(_) => {
                    err(
                        sf,
                        format!("the secret from {src:?} must be at least 32 bytes (dangerous_short_secret: true accepts a shorter one)"),
                    );
                    None
                }
                Err(e) => {
                    err(sf, e);
                    None
                }
            },
        };
        let client_secret = SecretRef::either(
            self.client_secret.as_ref(),
            self.client_secret_env.as_deref(),
        )
        .unwrap_or_else(|e| {
            err("client_secret", e.into());
            None
        });
        let introspection = match (&self.client_id, &client_secret) {
            (None, None) => None,
            (Some(id), Some(src)) => match src.resolve_text() {
                Ok(secret) => Some(Introspection {
                    endpoint: Mutex::new(self.introspection_endpoint.clone()),
                    client_id: id.clone(),
                    secret: secret.to_string(),
                }),
                Err(e) => {
                    err(cf, e);
                    None
                }
            },
            _ => {
                err(
                    "client_id",
                    "introspection needs both client_id and client_secret".into(),
                );
                None
            }
        };
        if self.introspection_endpoint.is_some() && introspection.is_none() {
            err(
                "introspection_endpoint",
                "needs client_id and client_secret to authenticate".into(),
            );
        }
        let sources = usize::from(self.jwks_uri.is_some())
            + usize::from(self.jwks_file.is_some())
            + usize::from(secret_src.is_some());
        if sources > 1 {
            err(
                "jwks_uri",
                "use one key source: jwks_uri, jwks_file or secret_env (an issuer with public keys never accepts HMAC tokens)".into(),
            );
        }
        let algorithms = match (&self.algorithms, secret.is_some()) {
            (Some(a), _) if a.is_empty() => {
                err("algorithms", "must not be empty".into());
                Vec::new()
            }
            (Some(a), true) => {
                if a.iter().any(|x| !x.is_symmetric()) {
                    err(
                        "algorithms",
                        "an issuer with a secret accepts only HS256, HS384 or HS512".into(),
                    );
                }
                a.clone()
            }
            (Some(a), false) => {
                if a.iter().any(|x| x.is_symmetric()) {
                    err(
                        "algorithms",
                        "HS* needs `secret_env`, and is never accepted from an issuer with public keys (key confusion)".into(),
                    );
                }
                a.clone()
            }
            (None, true) => vec![Alg::HS256],
            (None, false) => Alg::ASYMMETRIC.to_vec(),
        };
        let static_keys = match (&files.jwks, &secret) {
            (Some(text), _) => match jose::parse_jwks(text) {
                Ok(k) if k.iter().any(Jwk::is_symmetric) => {
                    err(
                        "jwks_file",
                        "holds a secret (oct) key; secrets go in secret_env".into(),
                    );
                    Vec::new()
                }
                Ok(k) if k.is_empty() => {
                    err("jwks_file", "holds no usable signature key".into());
                    Vec::new()
                }
                Ok(k) => k,
                Err(e) => {
                    err("jwks_file", e);
                    Vec::new()
                }
            },
            (None, Some(s)) => vec![Jwk::secret(None, s.clone())],
            (None, None) => Vec::new(),
        };
        let remote = self.jwks_file.is_none() && secret_src.is_none();
        let discover = remote && self.jwks_uri.is_none();
        if discover && !(self.issuer.starts_with("https://") || self.issuer.starts_with("http://"))
        {
            err(
                "issuer",
                "discovery needs an http(s) URL as issuer; or give jwks_uri, jwks_file or secret_env".into(),
            );
        }
        let fetcher = if remote || introspection.is_some() {
            let roots = match &files.ca {
                Some(certs) => {
                    let mut r = rustls::RootCertStore::empty();
                    for c in certs {
                        if r.add(c.clone()).is_err() {
                            err("ca", "holds an unusable certificate".into());
                        }
                    }
                    r
                }
                None => crate::fetch::public_roots(),
            };
            match Fetcher::new(roots, self.dangerous_allow_http, Duration::from_secs(5)) {
                Ok(f) => Some(f),
                Err(e) => {
                    err("ca", e);
                    None
                }
            }
        } else {
            None
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        // the same settings and the same key material: compared by content (a digest of
        // every byte of the key file, the secret and the CA bundle), never by lengths or
        // key ids, so a rotated key with the old `kid` and size is a new issuer
        let identity = {
            let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            let mut part = |b: &[u8]| {
                ctx.update(&(b.len() as u64).to_be_bytes());
                ctx.update(b);
            };
            part(format!("{self:?}").as_bytes());
            part(files.jwks.as_deref().unwrap_or_default());
            part(secret.as_deref().unwrap_or_default());
            for c in files.ca.iter().flatten() {
                part(c.as_ref());
            }
            if let Some(i) = &introspection {
                part(i.secret.as_bytes());
            }
            ctx.finish().as_ref().to_vec()
        };
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(i) = reg.get(&identity).and_then(Weak::upgrade) {
            return Ok(i);
        }
        let dur = |d: &Option<palisade_core::duration::Dur>, def: u64| {
            d.map_or(Duration::from_secs(def), |d| d.0)
        };
        let issuer = Arc::new(Issuer {
            issuer: self.issuer.clone(),
            accept_missing_issuer: self.dangerous_accept_missing_issuer,
            audiences: self.audiences.clone(),
            algorithms,
            skew: dur(&self.clock_skew, 60),
            require_exp: self.require_exp.unwrap_or(true),
            subject_claim: self.subject_claim.clone().unwrap_or_else(|| "sub".into()),
            groups_claim: self.groups_claim.clone().unwrap_or_else(|| "groups".into()),
            consumer_claim: self.consumer_claim.clone(),
            introspection,
            source: if remote {
                Source::Remote {
                    discover,
                    jwks_uri: Mutex::new(self.jwks_uri.clone()),
                }
            } else {
                Source::Static
            },
            loaded: RwLock::new(if remote { None } else { Some(Instant::now()) }),
            keys: RwLock::new(Arc::new(static_keys)),
            fetch_lock: tokio::sync::Mutex::new(()),
            refresh: dur(&self.refresh_interval, 300).max(Duration::from_secs(1)),
            min_refresh: dur(&self.min_refresh_interval, 30),
            fetcher,
            scheduler: OnceLock::new(),
        });
        reg.insert(identity, Arc::downgrade(&issuer));
        Ok(issuer)
    }
}

/// How this issuer's opaque tokens are introspected.
pub(crate) struct Introspection {
    pub(crate) endpoint: Mutex<Option<String>>,
    pub(crate) client_id: String,
    pub(crate) secret: String,
}

/// Why keys could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeysUnavailable(pub String);

impl Issuer {
    fn current(&self) -> Arc<Vec<Jwk>> {
        self.keys.read().map(|k| k.clone()).unwrap_or_default()
    }

    fn loaded_at(&self) -> Option<Instant> {
        self.loaded.read().ok().and_then(|l| *l)
    }

    /// The keys, fetching them first if they never were.
    pub async fn keys(self: &Arc<Self>) -> Result<Arc<Vec<Jwk>>, KeysUnavailable> {
        self.schedule();
        if self.loaded_at().is_none() {
            self.refresh_now(None).await?;
        }
        Ok(self.current())
    }

    /// Called for a token whose `kid` is not in the set: refreshes when the last fetch is
    /// older than `min_refresh_interval`; returns whether the set changed.
    pub async fn refresh_for_unknown_kid(self: &Arc<Self>) -> bool {
        if matches!(self.source, Source::Static) {
            return false;
        }
        let before = self.loaded_at();
        if before.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return false;
        }
        self.refresh_now(before).await.is_ok() && self.loaded_at() != before
    }

    /// Fetches the key set (single flight: callers that arrive while a fetch runs share it;
    /// `seen` is the load time the caller saw, so it does not fetch again what another did).
    async fn refresh_now(&self, seen: Option<Instant>) -> Result<(), KeysUnavailable> {
        let Source::Remote { discover, jwks_uri } = &self.source else {
            return Ok(());
        };
        let Some(fetcher) = &self.fetcher else {
            return Err(KeysUnavailable("no fetcher".into()));
        };
        let _guard = self.fetch_lock.lock().await;
        if self.loaded_at() != seen {
            return Ok(()); // someone else fetched meanwhile
        }
        let known = jwks_uri.lock().map(|u| u.clone()).unwrap_or(None);
        let uri = match known {
            Some(u) if !*discover || self.loaded_at().is_some() => u,
            _ => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let doc = fetcher.get(&url).await.map_err(KeysUnavailable)?;
                let v: serde_json::Value = serde_json::from_slice(&doc)
                    .map_err(|_| KeysUnavailable(format!("{url}: not JSON")))?;
                if v.get("issuer").and_then(|i| i.as_str()) != Some(self.issuer.as_str()) {
                    return Err(KeysUnavailable(format!(
                        "{url}: the document names another issuer"
                    )));
                }
                let u = v
                    .get("jwks_uri")
                    .and_then(|u| u.as_str())
                    .ok_or_else(|| KeysUnavailable(format!("{url}: no jwks_uri")))?
                    .to_string();
                if let Ok(mut slot) = jwks_uri.lock() {
                    *slot = Some(u.clone());
                }
                self.note_introspection_endpoint(&v);
                u
            }
        };
        let text = fetcher.get(&uri).await.map_err(KeysUnavailable)?;
        let keys = jose::parse_jwks(&text).map_err(|e| KeysUnavailable(format!("{uri}: {e}")))?;
        let keys: Vec<Jwk> = keys.into_iter().filter(|k| !k.is_symmetric()).collect();
        tracing::info!(issuer = %self.issuer, keys = keys.len(), "issuer keys fetched");
        if let Ok(mut k) = self.keys.write() {
            *k = Arc::new(keys);
        }
        if let Ok(mut l) = self.loaded.write() {
            *l = Some(Instant::now());
        }
        Ok(())
    }

    fn note_introspection_endpoint(&self, discovery: &serde_json::Value) {
        if let (Some(i), Some(e)) = (
            &self.introspection,
            discovery
                .get("introspection_endpoint")
                .and_then(|e| e.as_str()),
        ) {
            if let Ok(mut slot) = i.endpoint.lock() {
                if slot.is_none() {
                    *slot = Some(e.to_string());
                }
            }
        }
    }

    /// The introspection endpoint: configured, or from the discovery document (fetched now
    /// if it never was).
    pub(crate) async fn introspection_endpoint(&self) -> Result<String, KeysUnavailable> {
        let i = self
            .introspection
            .as_ref()
            .ok_or_else(|| KeysUnavailable("the issuer has no introspection client".into()))?;
        if let Some(e) = i.endpoint.lock().ok().and_then(|e| e.clone()) {
            return Ok(e);
        }
        let fetcher = self
            .fetcher
            .as_ref()
            .ok_or_else(|| KeysUnavailable("no fetcher".into()))?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let doc = fetcher.get(&url).await.map_err(KeysUnavailable)?;
        let v: serde_json::Value = serde_json::from_slice(&doc)
            .map_err(|_| KeysUnavailable(format!("{url}: not JSON")))?;
        if v.get("issuer").and_then(|i| i.as_str()) != Some(self.issuer.as_str()) {
            return Err(KeysUnavailable(format!(
                "{url}: the document names another issuer"
            )));
        }
        self.note_introspection_endpoint(&v);
        i.endpoint
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .ok_or_else(|| KeysUnavailable(format!("{url}: no introspection_endpoint")))
    }

    /// POSTs `token` to the introspection endpoint; returns the parsed answer.
    pub(crate) async fn introspect(
        &self,
        token: &str,
    ) -> Result<serde_json::Value, KeysUnavailable> {
        let endpoint = self.introspection_endpoint().await?;
        let (Some(i), Some(fetcher)) = (&self.introspection, &self.fetcher) else {
            return Err(KeysUnavailable(
                "the issuer has no introspection client".into(),
            ));
        };
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        let text = fetcher
            .post_form(&endpoint, (&i.client_id, &i.secret), &body)
            .await
            .map_err(KeysUnavailable)?;
        serde_json::from_slice(&text).map_err(|_| KeysUnavailable(format!("{endpoint}: not JSON")))
    }

    /// Starts the scheduled refresh (once, inside the runtime) for remote key sets.
    fn schedule(self: &Arc<Self>) {
        if !matches!(self.source, Source::Remote { .. }) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.scheduler.get_or_init(|| {
            let weak = Arc::downgrade(self);
            let every = self.refresh;
            handle.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(me) = weak.upgrade() else { return };
                    let seen = me.loaded_at();
                    if let Err(e) = me.refresh_now(seen).await {
                        tracing::warn!(issuer = %me.issuer, error = %e, "scheduled key refresh failed; keeping the current keys");
                    }
                }
            });
        });
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub(crate) fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
