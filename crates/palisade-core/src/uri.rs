//! The one percent-decoder, and the canonical form of a request's path and host.
//!
//! Every policy, the router and the contract see one form of the path and one of the host,
//! and the upstream receives exactly that form: a path the gateway checked can never be read
//! differently by an upstream that decodes, merges or normalises more than we do.
//!
//! The canonical path ([`canonical_path`]):
//! - every `%` is followed by two hex digits (`%+f`, `%g0`, a lone `%` are refused);
//! - escapes of unreserved characters (RFC 3986 §2.3: letters, digits, `-._~`) are decoded,
//!   the other escapes are kept with upper-case hex (`%5Fdebug` is `_debug`, `%c3%a9` is
//!   `%C3%A9`); that is the normalisation RFC 3986 §6.2.2 says never changes meaning;
//! - an encoded `/` or `\` (`%2F`, `%5C`), a raw `\`, control characters (`%00`–`%1F`,
//!   `%7F`) and double encoding (`%25` before two hex digits) are refused: upstreams split,
//!   decode or reject them differently, so no single reading is safe to check;
//! - empty segments are merged (`//secure//x` is `/secure/x`), a trailing `/` is kept;
//! - dot segments (`.`, `..`, also encoded) are refused, not resolved;
//! - `;` path parameters (also `%3B`) are refused: Java servlet containers drop them
//!   (`/secure;x/y` is `/secure/y` to Tomcat, `/..;/` climbs), other stacks keep them;
//! - the decoded text must be UTF-8 (overlong forms such as `%c0%af` are refused).
//!
//! The canonical host ([`Authority::parse`]) is lower case, without a trailing dot, with
//! IPv6 literals in brackets and an optional numeric port.

use std::borrow::Cow;

/// The value of one hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether two hex digits stand at `b[i]`.
fn hex_pair_at(b: &[u8], i: usize) -> bool {
    b.get(i).copied().and_then(hex_digit).is_some()
        && b.get(i + 1).copied().and_then(hex_digit).is_some()
}

/// The byte a `%XX` escape at `b[i]` stands for: `b[i]` is `%` and exactly two hex digits
/// follow (no sign, no space).
pub fn escape_at(b: &[u8], i: usize) -> Option<u8> {
    if b.get(i) != Some(&b'%') {
        return None;
    }
    let hi = hex_digit(*b.get(i + 1)?)?;
    let lo = hex_digit(*b.get(i + 2)?)?;
    Some(hi << 4 | lo)
}

/// Decodes `%XX` escapes strictly (and `+` as a space when `plus_is_space`). `None` when an
/// escape is broken.
pub fn decode_bytes(s: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        match c {
            b'%' => {
                out.push(escape_at(s, i)?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Decodes `%XX` escapes strictly; `None` when an escape is broken or the result is not
/// UTF-8. `+` stays `+` (paths, path parameters, header values).
pub fn decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    String::from_utf8(decode_bytes(s.as_bytes(), false)?).ok()
}

/// Decodes a form or query component: `%XX` escapes strictly and `+` as a space; `None`
/// when an escape is broken or the result is not UTF-8.
pub fn decode_form(s: &str) -> Option<String> {
    if !s.contains(['%', '+']) {
        return Some(s.to_string());
    }
    String::from_utf8(decode_bytes(s.as_bytes(), true)?).ok()
}

/// Why a request path has no canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not an absolute path (`*`, a relative path, an empty target).
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` or `%5C`: a separator hidden in a segment.
    EncodedSeparator,
    /// A raw `\`.
    Backslash,
    /// A control character, encoded.
    Control,
    /// `%25` followed by two hex digits: an escape meant to survive one decoding.
    DoubleEncoding,
    /// A `.` or `..` segment, raw or encoded.
    DotSegment,
    /// A `;` path parameter.
    Parameter,
    /// The decoded path is not UTF-8.
    NotUtf8,
}

impl PathError {
    /// What a client is told.
    pub fn detail(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the request target must be an absolute path",
            PathError::BadEscape => "every `%` in the path must be followed by two hex digits",
            PathError::EncodedSeparator => {
                "an encoded `/` or `\\` (%2F, %5C) is not allowed in the path"
            }
            PathError::Backslash => "a backslash is not allowed in the path",
            PathError::Control => "an encoded control character is not allowed in the path",
            PathError::DoubleEncoding => {
                "a double-encoded escape (%25 followed by hex digits) is not allowed in the path"
            }
            PathError::DotSegment => {
                "dot segments (`.`, `..`, also encoded) are not allowed in the path"
            }
            PathError::Parameter => "`;` path parameters are not allowed in the path",
            PathError::NotUtf8 => "the decoded path must be UTF-8",
        }
    }
}

/// A request path in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath<'a> {
    /// What is forwarded and what policies read: unreserved escapes decoded, others kept
    /// with upper-case hex, empty segments merged.
    pub forward: Cow<'a, str>,
    /// Every escape decoded: what routes and templates match against.
    pub decoded: Cow<'a, str>,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `raw` is canonical as it stands (the common case, no allocation).
fn already_canonical(raw: &[u8]) -> bool {
    let mut prev = 0u8;
    for (i, &c) in raw.iter().enumerate() {
        match c {
            b'%' | b'\\' | b';' => return false,
            // an empty segment inside the path (a trailing `/` is fine)
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                let next = raw.get(i + 1).copied();
                let after = raw.get(i + 2).copied();
                if matches!(next, None | Some(b'/'))
                    || (next == Some(b'.') && matches!(after, None | Some(b'/')))
                {
                    return false;
                }
            }
            _ => {}
        }
        prev = c;
    }
    true
}

/// The canonical form of a request path (without its query), or why it has none.
pub fn canonical_path(raw: &str) -> Result<CanonicalPath<'_>, PathError> {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if already_canonical(b) {
        return Ok(CanonicalPath {
            forward: Cow::Borrowed(raw),
            decoded: Cow::Borrowed(raw),
        });
    }
    let mut forward = String::with_capacity(raw.len());
    let mut decoded: Vec<u8> = Vec::with_capacity(raw.len());
    let segments: Vec<&str> = raw.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (n, seg) in segments.iter().enumerate() {
        if seg.is_empty() && n != last {
            continue;
        }
        forward.push('/');
        decoded.push(b'/');
        let start = decoded.len();
        let s = seg.as_bytes();
        let mut i = 0;
        while let Some(&c) = s.get(i) {
            match c {
                b'%' => {
                    let v = escape_at(s, i).ok_or(PathError::BadEscape)?;
                    match v {
                        b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                        // decoded first, then cut at `;` by some stacks
                        b';' => return Err(PathError::Parameter),
                        0..=0x1f | 0x7f => return Err(PathError::Control),
                        b'%' if hex_pair_at(s, i + 3) => return Err(PathError::DoubleEncoding),
                        _ => {}
                    }
                    if unreserved(v) {
                        forward.push(char::from(v));
                    } else {
                        forward.push('%');
                        forward.push(hex_upper(v >> 4));
                        forward.push(hex_upper(v & 0xf));
                    }
                    decoded.push(v);
                    i += 3;
                }
                b'\\' => return Err(PathError::Backslash),
                b';' => return Err(PathError::Parameter),
                _ => {
                    forward.push(char::from(c));
                    decoded.push(c);
                    i += 1;
                }
            }
        }
        if matches!(decoded.get(start..), Some(b".") | Some(b"..")) {
            return Err(PathError::DotSegment);
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    Ok(CanonicalPath {
        forward: Cow::Owned(forward),
        decoded: Cow::Owned(decoded),
    })
}

/// The upper-case hex digit of a nibble.
fn hex_upper(n: u8) -> char {
    char::from(if n < 10 { b'0' + n } else { b'A' + n - 10 })
}

/// Why a host has no canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// Empty, or characters a host name cannot have.
    Invalid,
    /// A port that is not a number from 0 to 65535.
    BadPort,
}

/// A host and optional port in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// Lower case, no trailing dot; an IPv6 literal keeps its brackets.
    pub host: String,
    /// The port, when one was given.
    pub port: Option<u16>,
}

impl Authority {
    /// Parses `host[:port]` (a Host field, an `:authority`, an absolute-form authority
    /// without user info).
    pub fn parse(raw: &str) -> Result<Authority, HostError> {
        let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or(HostError::Invalid)?;
            inside
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| HostError::Invalid)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(HostError::Invalid)?),
            };
            (format!("[{}]", inside.to_ascii_lowercase()), port)
        } else {
            let (h, p) = match raw.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (raw, None),
            };
            let h = h.strip_suffix('.').unwrap_or(h);
            let ok = !h.is_empty()
                && h.len() <= 253
                && h.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
                });
            if !ok {
                return Err(HostError::Invalid);
            }
            (h.to_ascii_lowercase(), p)
        };
        let port = match port {
            // `host:` has an empty port, which RFC 3986 allows and means none
            None | Some("") => None,
            Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
                Some(p.parse::<u16>().map_err(|_| HostError::BadPort)?)
            }
            Some(_) => return Err(HostError::BadPort),
        };
        Ok(Authority { host, port })
    }

    /// Whether `raw` already spells this authority canonically (`host[:port]`, the port
    /// without leading zeros), checked without building the text.
    pub fn written_as(&self, raw: &[u8]) -> bool {
        let Some(rest) = raw.strip_prefix(self.host.as_bytes()) else {
            return false;
        };
        match self.port {
            None => rest.is_empty(),
            Some(p) => rest.strip_prefix(b":").is_some_and(|d| {
                (d.first() != Some(&b'0') || d.len() == 1)
                    && std::str::from_utf8(d)
                        .ok()
                        .and_then(|d| d.parse::<u16>().ok())
                        == Some(p)
            }),
        }
    }

    /// `host[:port]`, as forwarded in the Host field.
    pub fn to_header_text(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(p: &str) -> Result<(String, String), PathError> {
        canonical_path(p).map(|c| (c.forward.into_owned(), c.decoded.into_owned()))
    }

    #[test]
    fn the_decoder_is_strict() {
        assert_eq!(decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(decode("a+b").as_deref(), Some("a+b"));
        assert_eq!(decode_form("a+b%2B").as_deref(), Some("a b+"));
        for bad in ["%+f", "%-1", "% f", "%g0", "%", "%4", "a%2", "%c3"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
        assert_eq!(escape_at(b"%+f", 0), None);
        assert_eq!(escape_at(b"x%2e", 1), Some(b'.'));
    }

    #[test]
    fn canonical_paths() {
        let same = |p: &str| (p.to_string(), p.to_string());
        for p in [
            "/",
            "/a/b",
            "/a/",
            "/a/..b",
            "/a/b.json",
            "/.well-known/x",
            "/a~b",
        ] {
            assert_eq!(fwd(p), Ok(same(p)), "{p}");
        }
        let cases = [
            ("/%73ecure/x", "/secure/x", "/secure/x"),
            ("/%73%65%63%75%72%65/x", "/secure/x", "/secure/x"),
            ("/%5Fdebug", "/_debug", "/_debug"),
            ("/_%64ebug", "/_debug", "/_debug"),
            ("//secure/x", "/secure/x", "/secure/x"),
            ("/a//b//", "/a/b/", "/a/b/"),
            ("//", "/", "/"),
            ("/a%20b", "/a%20b", "/a b"),
            ("/caf%c3%a9", "/caf%C3%A9", "/café"),
        ];
        for (raw, f, d) in cases {
            assert_eq!(fwd(raw), Ok((f.to_string(), d.to_string())), "{raw}");
        }
        let refused = [
            ("x", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("/secure%2fx", PathError::EncodedSeparator),
            ("/%2fsecure/x", PathError::EncodedSeparator),
            ("/a%5cb", PathError::EncodedSeparator),
            ("/a\\b", PathError::Backslash),
            ("/a/../b", PathError::DotSegment),
            ("/a/%2e%2e/b", PathError::DotSegment),
            ("/a/%2E./b", PathError::DotSegment),
            ("/./x", PathError::DotSegment),
            ("/a/..", PathError::DotSegment),
            ("/a/.%2e/b", PathError::DotSegment),
            ("/a/%2e", PathError::DotSegment),
            ("/public/..;/secure", PathError::Parameter),
            ("/secure;jsessionid=1/x", PathError::Parameter),
            ("/secure%3bx/x", PathError::Parameter),
            ("/a%+fb", PathError::BadEscape),
            ("/a%", PathError::BadEscape),
            ("/a%00", PathError::Control),
            ("/a%0d%0a", PathError::Control),
            ("/a%252e%252e/", PathError::DoubleEncoding),
            ("/a%252F", PathError::DoubleEncoding),
            ("/a%c0%af", PathError::NotUtf8),
            ("/a%ff", PathError::NotUtf8),
        ];
        for (raw, e) in refused {
            assert_eq!(fwd(raw), Err(e), "{raw}");
        }
        // a literal percent sign is fine when nothing decodable follows it
        assert_eq!(fwd("/100%25"), Ok(("/100%25".into(), "/100%".into())));
    }

    #[test]
    fn canonical_hosts() {
        let a = |s: &str| Authority::parse(s).map(|a| a.to_header_text());
        assert_eq!(a("Internal.Test."), Ok("internal.test".into()));
        assert_eq!(a("internal.test.:8080"), Ok("internal.test:8080".into()));
        assert_eq!(a("internal.test:"), Ok("internal.test".into()));
        assert_eq!(a("[::1]:80"), Ok("[::1]:80".into()));
        assert_eq!(a("[FE80::1]"), Ok("[fe80::1]".into()));
        assert_eq!(a("127.0.0.1:9"), Ok("127.0.0.1:9".into()));
        for bad in [
            "", ".", "a..b", ".a", "a b", "a/b", "a@b", "[::1", "[zz]", "a%2eb",
        ] {
            assert_eq!(a(bad), Err(HostError::Invalid), "{bad}");
        }
        for bad in ["a:x", "a:65536", "a:123456", "a:+1"] {
            assert_eq!(a(bad), Err(HostError::BadPort), "{bad}");
        }
        // already canonical, or not: exactly when the text would be rebuilt differently
        for raw in [
            "a.test",
            "a.test:80",
            "a.test:0",
            "[::1]:8080",
            "A.test",
            "a.test.",
            "a.test:080",
            "a.test:",
        ] {
            let parsed = Authority::parse(raw).unwrap();
            assert_eq!(
                parsed.written_as(raw.as_bytes()),
                parsed.to_header_text() == raw,
                "{raw}"
            );
        }
    }
}
