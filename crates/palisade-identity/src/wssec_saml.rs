//! SAML 2.0 assertions in the WS-Security header (SAML Token Profile 1.1): the assertion an
//! identity provider signed (an enveloped XML Signature over the whole Assertion, verified by
//! bergshamra with the provider's configured certificate only), from the configured issuer,
//! for this audience, inside its validity window (with the clock skew), its Subject's NameID
//! the principal and its attributes the claims (`groups` the groups). The Assertion must be
//! the one of the one Security header, and the node the signature covers must be that
//! Assertion itself, so a signed assertion cannot lend its signature to another.

use bergshamra::xml::{Document, NodeId};
use bergshamra::VerifyResult;

use crate::wssec::{DSIG, SAML};
use crate::wssec_x509::{envelope, one};

/// Who issues accepted assertions.
pub struct Issuer {
    /// The `Issuer` the assertions must name.
    pub issuer: String,
    /// The `Audience` they must be restricted to (this service).
    pub audience: String,
    /// The provider's signing certificate (PEM).
    pub certificate_pem: String,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

fn text(doc: &Document<'_>, n: NodeId) -> String {
    doc.text_content_deep(n).trim().to_string()
}

/// Checks the assertion of an envelope at `now` (Unix seconds) with `skew`; its principal.
pub fn verify(
    text_xml: &str,
    issuer: &Issuer,
    now: i64,
    skew: i64,
) -> Result<palisade_core::Principal, String> {
    let doc = bergshamra::xml::uppsala::parse(text_xml)
        .map_err(|e| format!("the envelope cannot be read ({e})"))?;
    let security = envelope(&doc)?.security;
    let assertion = one(&doc, security, SAML, "Assertion")?;
    let signature = one(&doc, assertion, DSIG, "Signature")
        .map_err(|_| "the assertion is not signed (one enveloped Signature)".to_string())?;

    let key = bergshamra::keys::loader::load_x509_cert_pem(issuer.certificate_pem.as_bytes())
        .map_err(|e| format!("the provider's certificate cannot be used ({e})"))?;
    let mut keys = bergshamra::keys::KeysManager::new();
    keys.add_key(key);
    let ctx = bergshamra::DsigContext::new(keys)
        .with_trusted_keys_only(true)
        .with_insecure(true)
        .with_require_reference_digests(true);
    let results =
        bergshamra::dsig::verify::verify_all_document_with_source(&ctx, &doc, Some(text_xml))
            .map_err(|e| format!("the assertion's signature does not verify ({e})"))?;
    // the assertion's own signature, covering the assertion itself
    let ours = results.iter().find_map(|r| match r {
        VerifyResult::Valid {
            signature_node,
            references,
            ..
        } if *signature_node == signature => Some(references),
        _ => None,
    });
    let Some(references) = ours else {
        let why = results
            .iter()
            .find_map(|r| match r {
                VerifyResult::Invalid { reason } => Some(reason.clone()),
                VerifyResult::Valid { .. } => None,
            })
            .unwrap_or_else(|| "it is not the assertion's".into());
        return Err(format!("the assertion's signature does not verify ({why})"));
    };
    if !references
        .iter()
        .any(|r| r.resolved_node == Some(assertion))
    {
        return Err("the signature does not cover the assertion".into());
    }

    let named = text(&doc, one(&doc, assertion, SAML, "Issuer")?);
    if named != issuer.issuer {
        return Err("the assertion is from another issuer".into());
    }
    let conditions = one(&doc, assertion, SAML, "Conditions")?;
    let instant = |name: &str| -> Result<i64, String> {
        let v = doc
            .get_attribute(conditions, name)
            .ok_or_else(|| format!("the assertion's Conditions have no {name}"))?;
        crate::consumers::parse_instant(v).ok_or_else(|| format!("{name} is not an xs:dateTime"))
    };
    if now + skew < instant("NotBefore")? {
        return Err("the assertion is not valid yet".into());
    }
    if now - skew >= instant("NotOnOrAfter")? {
        return Err("the assertion has expired".into());
    }
    let restriction = one(&doc, conditions, SAML, "AudienceRestriction")?;
    let for_us = doc
        .child_elements_by_name_ns(restriction, SAML, "Audience")
        .into_iter()
        .any(|a| text(&doc, a) == issuer.audience);
    if !for_us {
        return Err("the assertion is for another audience".into());
    }
    let subject = one(&doc, assertion, SAML, "Subject")?;
    let name_id = text(&doc, one(&doc, subject, SAML, "NameID")?);
    if name_id.is_empty() {
        return Err("the assertion's NameID is empty".into());
    }
    let mut claims = serde_json::Map::new();
    let mut groups = Vec::new();
    for statement in doc.child_elements_by_name_ns(assertion, SAML, "AttributeStatement") {
        for a in doc.child_elements_by_name_ns(statement, SAML, "Attribute") {
            let Some(name) = doc.get_attribute(a, "Name").map(str::to_string) else {
                continue;
            };
            let values: Vec<String> = doc
                .child_elements_by_name_ns(a, SAML, "AttributeValue")
                .into_iter()
                .map(|v| text(&doc, v))
                .collect();
            if name == "groups" {
                groups.extend(values.iter().cloned());
            }
            claims.insert(name, values.into());
        }
    }
    Ok(palisade_core::Principal {
        subject: name_id,
        issuer: Some(named),
        method: "ws_security_saml",
        groups,
        claims,
        ..palisade_core::Principal::default()
    })
}
