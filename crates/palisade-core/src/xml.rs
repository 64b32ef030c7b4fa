//! XML with namespaces, on quick-xml: the prefix declarations in scope while a document is
//! read, so element names and QNames in attribute values resolve to (namespace, local name).
//! Shared by the SOAP contract and WS-Security; the limits of a body are `xml_protection`'s.

use quick_xml::events::BytesStart;

/// A namespace-qualified name: (namespace URI, local name).
pub type QName = (String, String);

/// The namespaces in scope: a stack of prefix declarations, one frame per open element.
#[derive(Default)]
pub struct Scope {
    frames: Vec<Vec<(String, String)>>,
}

impl Scope {
    /// Opens an element: its namespace declarations come into scope.
    pub fn push(&mut self, e: &BytesStart<'_>) -> Result<(), String> {
        let mut frame = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|e| format!("a malformed attribute ({e})"))?;
            let k = a.key.0;
            if k == "xmlns" {
                frame.push((String::new(), a.value.to_string()));
            } else if let Some(p) = k.strip_prefix("xmlns:") {
                frame.push((p.to_string(), a.value.to_string()));
            }
        }
        self.frames.push(frame);
        Ok(())
    }

    /// Enters an element: its declarations in scope, and its resolved name.
    pub fn enter(&mut self, e: &BytesStart<'_>) -> Result<QName, String> {
        self.push(e)?;
        self.resolve(e.name().0, true)
            .ok_or_else(|| "an undeclared namespace prefix".to_string())
    }

    /// Closes the innermost element.
    pub fn pop(&mut self) {
        self.frames.pop();
    }

    /// The namespace a prefix (`""`: the default) is bound to.
    pub fn ns(&self, prefix: &str) -> Option<&str> {
        self.frames
            .iter()
            .rev()
            .flat_map(|f| f.iter().rev())
            .find(|(p, _)| p == prefix)
            .map(|(_, u)| u.as_str())
    }

    /// `prefix:local` (an element name, or a QName in an attribute value) resolved.
    pub fn resolve(&self, qname: &str, default_ns: bool) -> Option<QName> {
        match qname.split_once(':') {
            Some((p, l)) => Some((self.ns(p)?.to_string(), l.to_string())),
            None if default_ns => Some((self.ns("").unwrap_or("").to_string(), qname.to_string())),
            None => Some((String::new(), qname.to_string())),
        }
    }
}

/// The value of the attribute `name` of `e` (as written, not unescaped).
pub fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.0 == name)
        .map(|a| a.value.to_string())
}

/// A SOAP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SoapVersion {
    /// SOAP 1.1
    V11,
    /// SOAP 1.2
    V12,
}

/// What a request's fields say of SOAP: `application/soap+xml` is SOAP 1.2, its action the
/// media type's `action` parameter; `text/xml` is SOAP 1.1, its action the `SOAPAction`
/// field, if any (quotes removed; an empty action is none). `None`: neither media type.
pub fn soap_request(h: &http::HeaderMap) -> Option<(SoapVersion, Option<String>)> {
    let ct = h.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let unquote = |s: &str| s.trim().trim_matches('"').to_string();
    let (version, action) = match media.as_str() {
        "application/soap+xml" => (
            SoapVersion::V12,
            parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("action"))
                .map(|(_, v)| unquote(v)),
        ),
        "text/xml" => (
            SoapVersion::V11,
            h.get("soapaction")
                .and_then(|v| v.to_str().ok())
                .map(unquote),
        ),
        _ => return None,
    };
    Some((version, action.filter(|a| !a.is_empty())))
}

/// The character a reference names (`lt`, `#x41`, `#65`): one of the five predefined
/// entities or a character reference; `None` for anything else (a declared or external
/// entity is never resolved).
pub fn reference(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        _ => {
            let n = if let Some(h) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                u32::from_str_radix(h, 16).ok()?
            } else {
                name.strip_prefix('#')?.parse::<u32>().ok()?
            };
            char::from_u32(n)?
        }
    })
}

/// Decodes the five predefined entities and character references; `None` for any other
/// entity (an external or custom one is never resolved).
pub fn unescape(s: &str) -> Option<String> {
    if !s.contains('&') {
        return Some(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(rest.get(..i)?);
        let after = rest.get(i + 1..)?;
        let end = after.find(';')?;
        let name = after.get(..end)?;
        out.push(reference(name)?);
        rest = after.get(end + 1..)?;
    }
    out.push_str(rest);
    Some(out)
}
