//! WS-Security X.509 signatures (OASIS X.509 Token Profile 1.1): a `wsse:BinarySecurityToken`
//! carrying the signer's certificate and an XML Signature over the envelope's Body and the
//! `wsu:Timestamp`. The certificate must chain to a configured CA (as mTLS clients do, with
//! webpki: validity, key usage for client authentication); the signature is verified by
//! bergshamra (pure-Rust XML-DSig with exclusive C14N) with only that certificate's key; and
//! what was signed must be what the service will read: the one Body of the Envelope and the
//! one Timestamp of the one Security header, by node, not by an `Id` an attacker can move
//! (signature wrapping). The certificate's identity (SPIFFE ID, DNS name or CN) is a
//! consumer's `certificates` entry: that consumer is the principal.
//!
//! The envelope reaches this reader only after the Security header was read with quick-xml,
//! which refuses a DOCTYPE: no entity is ever expanded.

use std::sync::Arc;

use base64::Engine as _;
use bergshamra::xml::{Document, NodeId};
use bergshamra::VerifyResult;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::consumers::Directory;

use crate::wssec::{DSIG, ENVS, WSSE, WSU};
const X509V3: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3";

/// Why a signed envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The certificate does not chain to a configured CA, has expired, or is not for clients.
    Untrusted(String),
    /// The signature does not verify, or does not cover what the service reads.
    BadSignature(String),
    /// The message is not shaped as the profile says (two tokens, a key reference elsewhere).
    Malformed(String),
    /// The certificate is trusted but no consumer has its identity.
    Unknown(String),
}

/// The CAs signers' certificates must chain to.
pub struct Trust {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust").finish_non_exhaustive()
    }
}

impl Trust {
    /// From the PEM text of one or more CA certificates.
    pub fn from_pem(pem: &str) -> Result<Trust, String> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let c = c.map_err(|e| format!("not a PEM certificate ({e})"))?;
            roots
                .add(c)
                .map_err(|e| format!("not a CA certificate ({e})"))?;
        }
        if roots.is_empty() {
            return Err("no certificate in the CA file".into());
        }
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| format!("cannot use the CA ({e})"))?;
        Ok(Trust { verifier })
    }
}

/// The one child element `ns:local` of `parent`; none or several is an error.
pub(crate) fn one(
    doc: &Document<'_>,
    parent: NodeId,
    ns: &str,
    local: &str,
) -> Result<NodeId, String> {
    match doc.child_elements_by_name_ns(parent, ns, local).as_slice() {
        [one] => Ok(*one),
        [] => Err(format!("no {local}")),
        _ => Err(format!("more than one {local}")),
    }
}

/// The one Envelope's Body and the one Security header of its one Header.
pub(crate) struct Envelope {
    /// The Body element.
    pub body: NodeId,
    /// The `wsse:Security` element.
    pub security: NodeId,
}

/// Finds the parts of a SOAP envelope every WS-Security check starts from.
pub(crate) fn envelope(doc: &Document<'_>) -> Result<Envelope, String> {
    let env = doc.document_element().ok_or("no envelope")?;
    let env_ns = ENVS
        .iter()
        .find(|ns| {
            doc.element(env)
                .is_some_and(|e| e.matches_name_ns(ns, "Envelope"))
        })
        .ok_or("not a SOAP envelope")?;
    let header = one(doc, env, env_ns, "Header")?;
    Ok(Envelope {
        body: one(doc, env, env_ns, "Body")?,
        security: one(doc, header, WSSE, "Security")?,
    })
}

/// What a verified signature proves.
#[derive(Debug)]
pub struct Signed {
    /// The signer's certificate (DER).
    pub certificate: Vec<u8>,
    /// The consumer it belongs to.
    pub consumer: String,
}

/// Verifies the X.509 signature of an envelope at `now`; `timestamp`: the Timestamp must be
/// signed too.
pub fn verify(
    text: &str,
    trust: &Trust,
    dir: &Directory,
    timestamp: bool,
) -> Result<Signed, Refused> {
    let doc = bergshamra::xml::uppsala::parse(text)
        .map_err(|e| Refused::Malformed(format!("the envelope cannot be read ({e})")))?;
    let child =
        |parent, ns: &str, local: &str| one(&doc, parent, ns, local).map_err(Refused::Malformed);
    let Envelope { body, security } = envelope(&doc).map_err(Refused::Malformed)?;
    let token = child(security, WSSE, "BinarySecurityToken")?;
    let signature = child(security, DSIG, "Signature")?;
    if doc.get_attribute(token, "ValueType") != Some(X509V3) {
        return Err(Refused::Malformed(
            "the BinarySecurityToken is not an X.509 v3 certificate".into(),
        ));
    }
    // the signature's key is this token, by its Id
    let token_id = doc
        .get_attribute_ns(token, WSU, "Id")
        .ok_or_else(|| Refused::Malformed("the BinarySecurityToken has no wsu:Id".into()))?;
    let key_info = child(signature, DSIG, "KeyInfo")?;
    let str_ref = child(key_info, WSSE, "SecurityTokenReference")?;
    let reference = child(str_ref, WSSE, "Reference")?;
    if doc.get_attribute(reference, "URI") != Some(&format!("#{token_id}")) {
        return Err(Refused::Malformed(
            "the signature's key is not the message's BinarySecurityToken".into(),
        ));
    }
    let b64: String = doc
        .text_content_deep(token)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| Refused::Malformed("the BinarySecurityToken is not base64".into()))?;
    trust
        .verifier
        .verify_client_cert(&CertificateDer::from(der.clone()), &[], UnixTime::now())
        .map_err(|e| Refused::Untrusted(format!("{e}")))?;

    let key = bergshamra::keys::loader::load_x509_cert_der(&der)
        .map_err(|e| Refused::Malformed(format!("the certificate's key cannot be used ({e})")))?;
    let mut keys = bergshamra::keys::KeysManager::new();
    keys.add_key(key);
    // the chain was checked above; only this key, never one the message offers inline. The
    // library's strict mode wants signed nodes beside or above the Signature, which the Body
    // of a WS-Security message never is: where they are is checked below, node by node
    let ctx = bergshamra::DsigContext::new(keys)
        .with_strict_verification(false)
        .with_trusted_keys_only(true)
        .with_insecure(true)
        .with_require_reference_digests(true);
    let result = bergshamra::dsig::verify::verify_document_with_source(&ctx, &doc, Some(text))
        .map_err(|e| Refused::BadSignature(format!("{e}")))?;
    let VerifyResult::Valid {
        signature_node,
        references,
        ..
    } = result
    else {
        let why = match result {
            VerifyResult::Invalid { reason } => reason,
            VerifyResult::Valid { .. } => String::new(),
        };
        return Err(Refused::BadSignature(why));
    };
    // the signature verified must be the Security header's, and what it covers must be the
    // nodes the service reads (signature wrapping moves a signed copy elsewhere)
    if signature_node != signature {
        return Err(Refused::BadSignature(
            "the signature verified is not the Security header's".into(),
        ));
    }
    let covered = |n: NodeId| references.iter().any(|r| r.resolved_node == Some(n));
    if !covered(body) {
        return Err(Refused::BadSignature(
            "the signature does not cover the envelope's Body".into(),
        ));
    }
    if timestamp {
        let ts = child(security, WSU, "Timestamp")?;
        if !covered(ts) {
            return Err(Refused::BadSignature(
                "the signature does not cover the Timestamp".into(),
            ));
        }
    }
    let cert = crate::mtls::parse_client_cert(&der)
        .ok_or_else(|| Refused::Malformed("the certificate cannot be read".into()))?;
    let identity = cert
        .identity()
        .ok_or_else(|| Refused::Unknown("the certificate names no identity".into()))?
        .to_string();
    let consumer = dir
        .by_certificate(&identity)
        .ok_or_else(|| Refused::Unknown("no consumer has the signer's certificate".into()))?;
    Ok(Signed {
        certificate: der,
        consumer: consumer.name.clone(),
    })
}
