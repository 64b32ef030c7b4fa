//! Form bodies, read the way the upstream's framework will read them, so that the `contract`
//! and `threat` policies inspect the same fields the application sees:
//! `application/x-www-form-urlencoded` ([`urlencoded`]) and `multipart/form-data`
//! ([`multipart`], RFC 7578). Both are bounded: at most [`MAX_FIELDS`] fields, and a malformed
//! body is an error, never a partial result, so an attacker cannot hide a field behind a
//! syntax error the gateway skips and the application tolerates.

/// At most this many fields in one form.
pub const MAX_FIELDS: usize = 1000;

/// Why a form body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// More than [`MAX_FIELDS`] fields.
    #[error("has more than {MAX_FIELDS} fields")]
    TooManyFields,
    /// A `%` escape that is not two hex digits, or text that is not UTF-8 after decoding.
    #[error("has a field that is not valid percent-encoded UTF-8")]
    BadEncoding,
    /// The content type names no boundary, or an invalid one.
    #[error("multipart without a valid boundary")]
    NoBoundary,
    /// The body does not follow the multipart syntax (missing delimiter, unterminated part,
    /// part without headers or without a name).
    #[error("is not well-formed multipart/form-data")]
    Malformed,
}

/// Decodes `%XX` escapes strictly and `+` (a space in forms). `None` if an escape is broken
/// or the result is not UTF-8.
pub use crate::uri::decode_form as percent_decode;

/// The decoded `(name, value)` pairs of an urlencoded body, in order (a name may repeat).
pub fn urlencoded(body: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    let text = std::str::from_utf8(body).map_err(|_| FormError::BadEncoding)?;
    let mut out = Vec::new();
    for kv in text.split('&').filter(|kv| !kv.is_empty()) {
        if out.len() == MAX_FIELDS {
            return Err(FormError::TooManyFields);
        }
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        out.push((
            percent_decode(k).ok_or(FormError::BadEncoding)?,
            percent_decode(v).ok_or(FormError::BadEncoding)?,
        ));
    }
    Ok(out)
}

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The field name (`Content-Disposition: form-data; name="…"`).
    pub name: String,
    /// The file name, for a file upload.
    pub filename: Option<String>,
    /// The part's own content type, lower-cased, without parameters.
    pub content_type: Option<String>,
    /// Every header of the part but `Content-Disposition` (read above): lower-cased name
    /// and value as sent, for the policies that inspect them.
    pub headers: Vec<(String, String)>,
    /// The part's content.
    pub data: &'a [u8],
}

impl Part<'_> {
    /// Whether the content is text a person or program wrote (no content type, `text/*`,
    /// JSON, XML or urlencoded), as opposed to a binary upload.
    pub fn is_text(&self) -> bool {
        match self.content_type.as_deref() {
            None => true,
            Some(t) => {
                t.starts_with("text/")
                    || t.contains("json")
                    || t.contains("xml")
                    || t == "application/x-www-form-urlencoded"
            }
        }
    }
}

/// The boundary named by a `multipart/form-data; boundary=…` content type (RFC 2046: 1 to 70
/// characters, quoted or not).
pub fn boundary(content_type: &str) -> Option<String> {
    let b = content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("boundary").then(|| {
            let v = v.trim();
            v.strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v)
                .to_string()
        })
    })?;
    (!b.is_empty() && b.len() <= 70 && b.bytes().all(|c| c.is_ascii_graphic() || c == b' '))
        .then_some(b)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// A parameter of a `Content-Disposition` header (`name="a"`, `filename=b`); quoted strings
/// may hold `;` and `\"`.
fn disposition_param(header: &str, want: &str) -> Option<String> {
    let mut rest = header.split_once(';')?.1;
    loop {
        rest = rest.trim_start();
        let (k, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let rest = q.get(end?..).unwrap_or("");
            (v, rest.split_once(';').map_or("", |(_, r)| r))
        } else {
            let (v, r) = after.split_once(';').unwrap_or((after, ""));
            (v.trim().to_string(), r)
        };
        if k.trim().eq_ignore_ascii_case(want) {
            return Some(value);
        }
        if next.is_empty() {
            return None;
        }
        rest = next;
    }
}

/// The parts of a `multipart/form-data` body delimited by `boundary`.
pub fn multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, FormError> {
    let open = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    // a preamble before the first delimiter is allowed and ignored
    let first = if body.starts_with(open.as_bytes()) {
        0
    } else {
        find(body, delim.as_bytes(), 0).ok_or(FormError::Malformed)? + 2
    };
    let mut pos = first + open.len();
    let mut parts = Vec::new();
    loop {
        let rest = body.get(pos..).ok_or(FormError::Malformed)?;
        if rest.starts_with(b"--") {
            return Ok(parts); // the close delimiter; an epilogue is ignored
        }
        // transport padding, then CRLF
        let line_end = find(body, b"\r\n", pos).ok_or(FormError::Malformed)?;
        if body
            .get(pos..line_end)
            .is_some_and(|pad| pad.iter().any(|c| !matches!(c, b' ' | b'\t')))
        {
            return Err(FormError::Malformed);
        }
        let head_start = line_end + 2;
        let head_end = find(body, b"\r\n\r\n", head_start).ok_or(FormError::Malformed)?;
        let head = std::str::from_utf8(body.get(head_start..head_end).unwrap_or_default())
            .map_err(|_| FormError::Malformed)?;
        let data_start = head_end + 4;
        let data_end = find(body, delim.as_bytes(), data_start).ok_or(FormError::Malformed)?;
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        let mut headers = Vec::new();
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':').ok_or(FormError::Malformed)?;
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                if !v.trim_start().to_ascii_lowercase().starts_with("form-data") {
                    return Err(FormError::Malformed);
                }
                name = disposition_param(v, "name");
                filename = disposition_param(v, "filename");
            } else {
                if k.trim().eq_ignore_ascii_case("content-type") {
                    content_type = v.split(';').next().map(|t| t.trim().to_ascii_lowercase());
                }
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        if parts.len() == MAX_FIELDS {
            return Err(FormError::TooManyFields);
        }
        parts.push(Part {
            name: name.ok_or(FormError::Malformed)?,
            filename,
            content_type,
            headers,
            data: body.get(data_start..data_end).unwrap_or_default(),
        });
        pos = data_end + delim.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_fields_are_decoded_in_order() {
        let f = urlencoded(b"a=1&b=x+y%21&a=2&flag").unwrap();
        assert_eq!(
            f,
            [
                ("a".into(), "1".into()),
                ("b".into(), "x y!".into()),
                ("a".into(), "2".into()),
                ("flag".into(), String::new())
            ]
        );
        assert_eq!(urlencoded(b"a=%zz"), Err(FormError::BadEncoding));
        assert_eq!(urlencoded(b"a=%ff"), Err(FormError::BadEncoding));
        let many = vec!["a=1"; MAX_FIELDS + 1].join("&");
        assert_eq!(urlencoded(many.as_bytes()), Err(FormError::TooManyFields));
    }

    #[test]
    fn boundaries_are_read_quoted_or_not() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary("multipart/form-data; charset=utf-8; Boundary=\"a b:c\"").as_deref(),
            Some("a b:c")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/form-data; boundary="), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            None
        );
    }

    #[test]
    fn multipart_parts_carry_name_file_name_type_and_bytes() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\nworld\r\n--XyZ  \r\ncontent-disposition: form-data; name=\"doc\"; filename=\"a;b \\\"c\\\".txt\"\r\nContent-Type: Text/Plain; charset=utf-8\r\n\r\n\x00\x01bin\r\n--XyZ--\r\nepilogue";
        let p = multipart(body, "XyZ").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "title");
        assert_eq!(p[0].data, b"hello\r\nworld");
        assert!(p[0].is_text());
        assert_eq!(p[1].name, "doc");
        assert_eq!(p[1].filename.as_deref(), Some("a;b \"c\".txt"));
        assert_eq!(p[1].content_type.as_deref(), Some("text/plain"));
        assert_eq!(p[1].data, b"\x00\x01bin");
    }

    #[test]
    fn malformed_multipart_is_an_error_not_a_partial_result() {
        for bad in [
            &b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end"[..],
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\nunterminated",
            b"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\n1\r\n--b--",
            b"--b\r\nContent-Disposition: form-data\r\n\r\n1\r\n--b--",
            b"--b\r\nno header line\r\n\r\n1\r\n--b--",
            b"--bjunk\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--",
            b"nothing here",
        ] {
            assert!(multipart(bad, "b").is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(multipart(b"--b--", "b").unwrap(), []);
    }
}
