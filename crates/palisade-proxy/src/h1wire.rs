//! The HTTP/1.1 wire pieces that the upstream client (`h1client`), the server's fast path
//! (`h1server`) and the handler's framing checks share, so that both directions write and
//! read fields, lengths and connection tokens the same way.

/// Appends one header field line.
pub fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    // one capacity check; the separators as single bytes, not as copies of two
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.push(b':');
    out.push(b' ');
    out.extend_from_slice(value);
    out.push(b'\r');
    out.push(b'\n');
}

/// Appends a `content-length` field line.
pub fn put_length(out: &mut Vec<u8>, n: u64) {
    put_field(
        out,
        b"content-length",
        itoa::Buffer::new().format(n).as_bytes(),
    );
}

/// A `content-length` value: 1 to 19 ASCII digits (no sign, no space, no list), which always
/// fits in a `u64`.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

/// The elements of a comma-separated field value (`connection`), trimmed, empty ones skipped.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether a comma-separated field value (`connection`) lists `token`, case-insensitively.
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

/// Methods whose request may be sent again after a failure that could have reached the
/// upstream (RFC 9110 9.2.2), as the gateway uses them: retries and fresh-connection resends.
pub fn idempotent(m: &http::Method) -> bool {
    matches!(
        *m,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::PUT
            | http::Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_written_in_decimal() {
        for n in [0, 7, 10, 2048, 1_000_000_007, u64::MAX] {
            let mut out = Vec::new();
            put_length(&mut out, n);
            assert_eq!(out, format!("content-length: {n}\r\n").into_bytes());
        }
    }

    #[test]
    fn lengths_and_tokens() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(
            parse_decimal(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b" 1",
            b"1,1",
            b"0x1",
            b"12345678901234567890",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
        assert!(has_token(b"keep-alive, Close", b"close"));
        assert!(!has_token(b"closed", b"close"));
        assert_eq!(
            tokens(b" a ,, B,").collect::<Vec<_>>(),
            [&b"a"[..], &b"B"[..]]
        );
        let mut out = Vec::new();
        put_field(&mut out, b"x-a", b"1");
        put_length(&mut out, 42);
        assert_eq!(out, b"x-a: 1\r\ncontent-length: 42\r\n");
    }
}
