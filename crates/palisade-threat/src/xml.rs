//! What an XML body carries to the application: the text of its elements and the values of
//! its attributes, entities decoded, so that the detector reads those and not the markup
//! itself (an element named `body` or a namespace declaration is no XSS). Bounded: past
//! [`MAX_ITEMS`] values, or on anything this reader does not take apart (a DOCTYPE, an entity
//! declaration, a processing instruction other than the XML declaration, malformed markup),
//! it gives up and the caller scans the whole body as text, as before: never less inspected.

/// The most values read from one body.
pub const MAX_ITEMS: usize = 100_000;

use palisade_core::xml::unescape;

/// The texts and attribute values of `doc`, in document order; `None` when it is not
/// markup this reader takes apart (see the module docs).
pub fn values(doc: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = doc.trim_start_matches('\u{feff}');
    let push = |raw: &str, out: &mut Vec<String>| -> Option<()> {
        let t = raw.trim();
        if !t.is_empty() {
            if out.len() >= MAX_ITEMS {
                return None;
            }
            out.push(unescape(t)?);
        }
        Some(())
    };
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push(rest, &mut out)?;
            break;
        };
        push(rest.get(..lt)?, &mut out)?;
        rest = rest.get(lt..)?;
        if let Some(r) = rest.strip_prefix("<![CDATA[") {
            let end = r.find("]]>")?;
            push(r.get(..end)?, &mut out)?;
            rest = r.get(end + 3..)?;
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = r.get(r.find("-->")? + 3..)?;
        } else if rest.starts_with("<!") {
            return None; // a DOCTYPE or a declaration: not taken apart here
        } else if let Some(r) = rest.strip_prefix("<?") {
            let end = r.find("?>")?;
            let pi = r.get(..end)?;
            // only the XML declaration itself
            if !(pi.starts_with("xml ") || pi == "xml") || !out.is_empty() {
                return None;
            }
            rest = r.get(end + 2..)?;
        } else {
            let end = rest.find('>')?;
            let tag = rest.get(1..end)?;
            rest = rest.get(end + 1..)?;
            let tag = tag.strip_prefix('/').unwrap_or(tag);
            let tag = tag.strip_suffix('/').unwrap_or(tag);
            // the name, then name="value" pairs
            // no space between `<` and the name in XML
            let mut t = tag;
            let name_end = t.find(|c: char| c.is_whitespace()).unwrap_or(t.len());
            let name = t.get(..name_end)?;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, ':' | '-' | '_' | '.'))
            {
                return None;
            }
            t = t.get(name_end..)?.trim_start();
            while !t.is_empty() {
                let eq = t.find('=')?;
                let attr = t.get(..eq)?.trim();
                if attr.is_empty()
                    || !attr
                        .chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, ':' | '-' | '_' | '.'))
                {
                    return None;
                }
                let v = t.get(eq + 1..)?.trim_start();
                let q = v.chars().next().filter(|q| *q == '"' || *q == '\'')?;
                let v = v.get(1..)?;
                let close = v.find(q)?;
                push(v.get(..close)?, &mut out)?;
                t = v.get(close + 1..)?.trim_start();
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::values;

    #[test]
    fn texts_and_attributes_not_markup() {
        assert_eq!(
            values("<a xmlns=\"urn:x\">hi</a>").unwrap(),
            ["urn:x", "hi"]
        );
        assert_eq!(
            values(
                "<?xml version=\"1.0\"?><body><xml>x &lt;b&gt; &#65;</xml><![CDATA[<c>]]></body>"
            )
            .unwrap(),
            ["x <b> A", "<c>"]
        );
        // what it does not take apart is left to the whole-body scan
        for doc in [
            "<!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>",
            "<a>&custom;</a>",
            "<a><?php system('id'); ?></a>",
            "<a b=c>",
            "<a",
            "< script>",
        ] {
            assert_eq!(values(doc), None, "{doc}");
        }
    }
}
