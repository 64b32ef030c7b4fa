//! Standard headers read by their grammar (RFC 9110 and friends) instead of skipped: a value
//! that fits its header's grammar is made of tokens, which carry no injection, and only its
//! quoted strings are inspected; a value that does not fit is inspected whole, as free text.
//! So `Accept: text/html,*/*;q=0.8` costs nothing and `Accept: <script>…` is read.

/// The headers read by grammar here.
pub const STRUCTURED: [&str; 22] = [
    "accept",
    "accept-encoding",
    "accept-language",
    "accept-charset",
    "authorization",
    "cache-control",
    "connection",
    "content-length",
    "content-type",
    "content-encoding",
    "host",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "pragma",
    "te",
    "traceparent",
    "tracestate",
    "upgrade",
    "x-request-id",
    "forwarded",
    "range",
];

/// What of a structured header's value must be inspected: `None`, the whole value (it does
/// not fit the grammar); `Some(parts)`, only these quoted strings (maybe none).
pub fn to_inspect<'a>(name: &str, value: &'a str) -> Option<Vec<&'a str>> {
    let v = value.trim();
    match name {
        // the gateway has already checked these (canonical host, framing)
        "host" | "content-length" => Some(Vec::new()),
        "authorization" => authorization(v),
        "if-match" | "if-none-match" => entity_tags(v),
        "if-modified-since" => v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | ',' | ':'))
            .then(Vec::new),
        "traceparent" => v
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '-')
            .then(Vec::new),
        "range" => v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '=' | '-' | ',' | ' '))
            .then(Vec::new),
        "x-request-id" => v.chars().all(tchar).then(Vec::new),
        _ => params_list(v),
    }
}

/// RFC 9110 `tchar`.
fn tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(tchar)
}

/// A quoted string's content, if `s` is one (`"…"`, with `\"` escapes).
fn quoted(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut escaped = false;
    for c in inner.chars() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return None,
            _ => {}
        }
    }
    Some(inner)
}

/// `a, b/c;q=0.8, d; p="x"`: elements separated by `,`, each items separated by `;`, each a
/// token, a `token/token` (media type, protocol), or `token=token|quoted-string`.
fn params_list(v: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    for element in v.split(',') {
        for item in element.split(';') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            if let Some((k, val)) = item.split_once('=') {
                let (k, val) = (k.trim(), val.trim());
                if !token(k) {
                    return None;
                }
                if let Some(q) = quoted(val) {
                    out.push(q);
                } else if !token(val) {
                    return None;
                }
            } else if let Some((a, b)) = item.split_once('/') {
                if !(token(a) && token(b)) {
                    return None;
                }
            } else if !token(item) {
                return None;
            }
        }
    }
    Some(out)
}

/// `Scheme token68` or `Scheme k=v, k="v"`.
fn authorization(v: &str) -> Option<Vec<&str>> {
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    if !token(scheme) {
        return None;
    }
    let rest = rest.trim();
    let token68 = rest.trim_end_matches('=');
    if token68
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~+/".contains(c))
    {
        return Some(Vec::new());
    }
    params_list(rest)
}

/// `*`, or `"tag"` / `W/"tag"` separated by commas: the tags are inspected.
fn entity_tags(v: &str) -> Option<Vec<&str>> {
    if v == "*" {
        return Some(Vec::new());
    }
    v.split(',')
        .map(|t| {
            let t = t.trim();
            quoted(t.strip_prefix("W/").unwrap_or(t))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::to_inspect;

    #[test]
    fn values_that_fit_the_grammar_and_values_that_do_not() {
        let fits: &[(&str, &str, &[&str])] = &[
            (
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                &[],
            ),
            ("accept-language", "en-US,en;q=0.9,fr;q=0.8", &[]),
            (
                "content-type",
                "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxk",
                &[],
            ),
            ("content-type", "text/plain; charset=\"utf-8\"", &["utf-8"]),
            (
                "authorization",
                "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln-_",
                &[],
            ),
            ("authorization", "Basic dXNlcjpwYXNz", &[]),
            (
                "authorization",
                "Digest username=\"bob\", realm=\"x\", nonce=\"n\"",
                &["bob", "x", "n"],
            ),
            (
                "if-none-match",
                "W/\"67ab43\", \"54ed21\"",
                &["67ab43", "54ed21"],
            ),
            ("if-modified-since", "Wed, 21 Oct 2015 07:28:00 GMT", &[]),
            ("cache-control", "no-cache, max-age=0", &[]),
            (
                "forwarded",
                "for=192.0.2.60;proto=http;by=203.0.113.43",
                &[],
            ),
            (
                "forwarded",
                "for=\"[2001:db8:cafe::17]:4711\"",
                &["[2001:db8:cafe::17]:4711"],
            ),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                &[],
            ),
        ];
        for (name, value, parts) in fits {
            assert_eq!(
                to_inspect(name, value).as_deref(),
                Some(*parts),
                "{name}: {value}"
            );
        }
        for (name, value) in [
            ("accept", "text/html<script>alert(1)</script>"),
            ("accept", "1' or '1'='1"),
            ("accept-language", "en-US,en;q=0.9' and sleep(5)--"),
            ("content-type", "application/json; charset=$(id)"),
            ("authorization", "Bearer ' or 1=1--"),
            ("if-none-match", "W/abc"),
            (
                "if-modified-since",
                "Wed, 21 Oct 2015 07:28:00 GMT<svg onload=alert(1)>",
            ),
            ("traceparent", "00-x' or 1=1"),
            ("x-request-id", "abc;cat /etc/passwd"),
        ] {
            assert_eq!(to_inspect(name, value), None, "{name}: {value}");
        }
    }
}
