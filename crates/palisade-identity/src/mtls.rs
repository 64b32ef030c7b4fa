//! `mtls`: the client certificate of the connection (verified by the listener against its
//! CAs and CRLs) as the identity of a device or service. Identities are SPIFFE IDs
//! (`spiffe://trust-domain/path`), other SAN URIs, DNS names or common names; they map to
//! configured consumers. With a user token on the same route, the token names the user and
//! the certificate stays the device identity.

use std::sync::Arc;

use http::StatusCode;
use palisade_core::policies::SpecError;
use palisade_core::{
    ClientCert, Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Principal, Rejection,
    RequestHead, Stage, Verdict,
};
use serde::Deserialize;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::consumers::Directory;
use crate::refusals;

/// Refusal code when a route needs a client certificate and the connection has none.
pub const CERT_REQUIRED: &str = "auth.client_certificate_required";

/// Reads the identity facts of a (verified) client certificate.
pub fn parse_client_cert(der: &[u8]) -> Option<ClientCert> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let mut dns = Vec::new();
    let mut uris = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push((*d).to_string()),
                GeneralName::URI(u) => uris.push((*u).to_string()),
                _ => {}
            }
        }
    }
    // a SPIFFE SVID carries exactly one URI SAN, its SPIFFE ID
    let spiffe = match uris.as_slice() {
        [only] if only.starts_with("spiffe://") => Some(only.clone()),
        _ => None,
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(digest.as_ref());
    Some(ClientCert {
        common_name,
        dns,
        uris,
        spiffe,
        sha256,
    })
}

/// The validity of a certificate: (not before, not after), in seconds since the epoch.
pub fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Config of the `mtls` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MtlsSpec {
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub mode: Mode,
    /// Identities allowed: exact, or a prefix ending in `*` (e.g.
    /// `spiffe://example.org/ns/prod/*`). Default: any certificate the listener accepted.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Only certificates of configured consumers (`consumers[].certificates`). Default false.
    #[serde(default)]
    pub require_consumer: bool,
}

/// The runtime `mtls` policy.
#[derive(Debug)]
pub struct Mtls {
    allow: Vec<String>,
    require_consumer: bool,
    dir: Arc<Directory>,
}

impl MtlsSpec {
    /// Builds the policy.
    pub fn build(&self, dir: &Arc<Directory>) -> Result<Mtls, Vec<SpecError>> {
        let mut errors = Vec::new();
        for (i, a) in self.allow.iter().enumerate() {
            if a.is_empty() || a.trim_end_matches('*').contains('*') {
                errors.push(SpecError::new(
                    format!("allow[{i}]"),
                    "an identity, or a prefix ending in a single `*`",
                ));
            }
        }
        if errors.is_empty() {
            Ok(Mtls {
                allow: self.allow.clone(),
                require_consumer: self.require_consumer,
                dir: dir.clone(),
            })
        } else {
            Err(errors)
        }
    }
}

/// Whether `id` is one of `patterns` (exact, or a prefix ending in `*`); an empty list allows
/// every identity.
pub fn allowed(patterns: &[String], id: &str) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => id.starts_with(prefix),
            None => p == id,
        })
}

#[async_trait::async_trait]
impl Policy for Mtls {
    fn kind(&self) -> &'static str {
        "mtls"
    }
    fn stage(&self) -> Stage {
        Stage::Authn
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY.with(Phase::RequestHead)
    }
    async fn on_request_head(&self, _req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        let Some(cert) = x.client_cert.clone() else {
            return Ok(Verdict::Reject(
                Rejection::new(
                    StatusCode::FORBIDDEN,
                    CERT_REQUIRED,
                    "Client certificate required",
                )
                .with_detail("this route needs a client certificate (mutual TLS)"),
            ));
        };
        let Some(id) = cert.identity() else {
            return Ok(Verdict::Reject(refusals::forbidden(
                "the client certificate names no identity",
            )));
        };
        if !allowed(&self.allow, id) {
            return Ok(Verdict::Reject(refusals::forbidden(
                "this client certificate is not allowed here",
            )));
        }
        let consumer = self.dir.by_certificate(id);
        if self.require_consumer && consumer.is_none() {
            return Ok(Verdict::Reject(refusals::forbidden(
                "this client certificate belongs to no consumer",
            )));
        }
        // forwarded as the client-certificate identity header
        x.annotations.insert("mtls", id.to_string());
        // the certificate is the principal until a token on the same route names a user
        if x.principal().is_none() {
            let p = Principal {
                subject: id.to_string(),
                consumer: consumer.map(|c| c.name.clone()),
                method: "mtls",
                groups: consumer.map(|c| c.groups.clone()).unwrap_or_default(),
                claims: consumer.map(|c| c.metadata.clone()).unwrap_or_default(),
                ..Principal::default()
            };
            let _ = x.set_principal(p);
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = vec![
            "spiffe://example.org/ns/prod/*".to_string(),
            "device-7".to_string(),
        ];
        assert!(allowed(&p, "spiffe://example.org/ns/prod/sa/orders"));
        assert!(!allowed(&p, "spiffe://example.org/ns/dev/sa/orders"));
        assert!(!allowed(&p, "spiffe://evil.org/ns/prod/sa/orders"));
        assert!(allowed(&p, "device-7"));
        assert!(!allowed(&p, "device-70"));
        assert!(allowed(&[], "anything"));
    }
}
