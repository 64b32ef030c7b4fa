//! `protocol`: what a route accepts at the HTTP level, deny by default where it matters:
//! methods and versions, request content types and charsets, required and forbidden
//! headers (method-override and URL-rewrite headers are forbidden unless allowed), header
//! value syntax, the Host (missing, or a bare IP address), Range abuse (many or overlapping
//! ranges), and multipart uploads (part count, file names and extensions).
//!
//! Decision table (the first row that applies answers; the test below walks it):
//!
//! | check | refused when | status | code |
//! |---|---|---|---|
//! | method | not in `methods` (default: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS) | 405 + `Allow` | `protocol.method` |
//! | version | not in `versions` (default: HTTP/1.1, HTTP/2) | 505 | `protocol.version` |
//! | host | HTTP/1.1 without Host, or a Host that is an IP address unless `allow_ip_host` | 400 | `protocol.host` |
//! | header syntax | a value with bytes outside visible ASCII, space and tab (obs-text), unless `allow_non_ascii_headers` | 400 | `protocol.header` |
//! | forbidden header | present (default: the method-override and URL-rewrite headers) | 400 | `protocol.header_forbidden` |
//! | required header | absent | 400 | `protocol.header_missing` |
//! | content type | a request with a body whose media type is not in `content_types` | 415 | `protocol.content_type` |
//! | charset | a `charset` parameter not in `charsets` (default: utf-8, us-ascii) | 415 | `protocol.charset` |
//! | range | more than `max_ranges` ranges (default 4), overlapping ones, or a Range on a method other than GET | 416 | `protocol.range` |
//! | multipart | malformed, more than `multipart.max_parts` parts (default 64) | 400 | `protocol.multipart` |
//! | file name | a path, a NUL, a control character, a forbidden or not-allowed extension (all extensions of `a.php.jpg` count) | 400 | `protocol.file_name` |

use http::{HeaderName, HeaderValue, Method, StatusCode, Version};
use serde::Deserialize;

use super::SpecError;
use crate::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, Stage, Verdict,
};

/// Refusal codes of `protocol`.
pub mod codes {
    /// A method the route does not take.
    pub const METHOD: &str = "protocol.method";
    /// An HTTP version the route does not take.
    pub const VERSION: &str = "protocol.version";
    /// No Host, or a bare IP address as the Host.
    pub const HOST: &str = "protocol.host";
    /// A header value with bytes outside ASCII.
    pub const HEADER: &str = "protocol.header";
    /// A header the route forbids.
    pub const HEADER_FORBIDDEN: &str = "protocol.header_forbidden";
    /// A header the route requires is absent.
    pub const HEADER_MISSING: &str = "protocol.header_missing";
    /// A request body of a media type the route does not take.
    pub const CONTENT_TYPE: &str = "protocol.content_type";
    /// A charset the route does not take.
    pub const CHARSET: &str = "protocol.charset";
    /// Too many, overlapping or misplaced byte ranges.
    pub const RANGE: &str = "protocol.range";
    /// A multipart body that is malformed or has too many parts.
    pub const MULTIPART: &str = "protocol.multipart";
    /// An uploaded file name that is a path or has a forbidden extension.
    pub const FILE_NAME: &str = "protocol.file_name";
}

/// Headers that make servers and frameworks treat a request as another method or another
/// URL than the one the gateway checked (a BFLA or route bypass): forbidden by default.
pub const OVERRIDE_HEADERS: [&str; 7] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-method",
    "x-forwarded-path",
];

/// Extensions of files that servers run or browsers execute: refused in upload names by
/// default.
pub const EXECUTABLE_EXTENSIONS: [&str; 24] = [
    "php", "php3", "php4", "php5", "phtml", "phar", "jsp", "jspx", "asp", "aspx", "cer", "asa",
    "cgi", "pl", "py", "sh", "exe", "dll", "bat", "cmd", "com", "htaccess", "svg", "html",
];

/// Config of multipart uploads.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultipartSpec {
    /// Most parts in one body (default 64).
    #[serde(default)]
    pub max_parts: Option<usize>,
    /// File extensions accepted (lower case, without the dot); default: any not forbidden.
    #[serde(default)]
    pub allow_extensions: Option<Vec<String>>,
    /// File extensions refused; default [`EXECUTABLE_EXTENSIONS`].
    #[serde(default)]
    pub forbid_extensions: Option<Vec<String>>,
}

/// Config of the `protocol` policy.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProtocolSpec {
    /// `enforce` (default) refuses; `monitor` only logs and counts.
    #[serde(default)]
    pub mode: Mode,
    /// Methods taken (default GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS: TRACE and
    /// CONNECT only when listed).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Versions taken: `HTTP/1.0`, `HTTP/1.1`, `HTTP/2` (default 1.1 and 2).
    #[serde(default)]
    pub versions: Option<Vec<String>>,
    /// Media types of request bodies taken (`application/json`, `multipart/form-data`;
    /// `application/*+json` matches every JSON suffix type); default any.
    #[serde(default)]
    pub content_types: Option<Vec<String>>,
    /// Charsets taken where a `charset` parameter is given (default utf-8, us-ascii).
    #[serde(default)]
    pub charsets: Option<Vec<String>>,
    /// Headers every request must carry.
    #[serde(default)]
    pub require_headers: Vec<String>,
    /// Headers refused (default [`OVERRIDE_HEADERS`]; `[]` allows them).
    #[serde(default)]
    pub forbid_headers: Option<Vec<String>>,
    /// Take a Host that is a bare IP address (default false: such requests come from
    /// scanners, not from clients that know the API's name).
    #[serde(default)]
    pub allow_ip_host: bool,
    /// Take header values with bytes outside ASCII (obs-text, which RFC 9110 keeps only for
    /// old senders and parsers read differently); default false.
    #[serde(default)]
    pub allow_non_ascii_headers: bool,
    /// Most byte ranges in a Range header (default 4).
    #[serde(default)]
    pub max_ranges: Option<usize>,
    /// Multipart uploads.
    #[serde(default)]
    pub multipart: MultipartSpec,
}

/// The runtime `protocol` policy.
#[derive(Debug, Clone)]
pub struct Protocol {
    methods: Vec<Method>,
    allow: HeaderValue,
    versions: Vec<Version>,
    content_types: Option<Vec<String>>,
    charsets: Vec<String>,
    require: Vec<HeaderName>,
    forbid: Vec<HeaderName>,
    allow_ip_host: bool,
    allow_non_ascii: bool,
    max_ranges: usize,
    max_parts: usize,
    allow_ext: Option<Vec<String>>,
    forbid_ext: Vec<String>,
}

fn header_names(list: &[String], field: &str, errs: &mut Vec<SpecError>) -> Vec<HeaderName> {
    let mut out = Vec::new();
    for (i, h) in list.iter().enumerate() {
        match HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()) {
            Ok(n) => out.push(n),
            Err(_) => errs.push(SpecError::new(
                format!("{field}[{i}]"),
                format!("`{h}` is not a header name"),
            )),
        }
    }
    out
}

fn lower_list(v: &[String]) -> Vec<String> {
    v.iter()
        .map(|s| s.trim().trim_start_matches('.').to_ascii_lowercase())
        .collect()
}

impl ProtocolSpec {
    /// Builds the policy, reporting every field at fault.
    pub fn build(&self) -> Result<Protocol, Vec<SpecError>> {
        let mut errs = Vec::new();
        let default_methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
        let names: Vec<String> = match &self.methods {
            Some(m) => m.iter().map(|s| s.to_ascii_uppercase()).collect(),
            None => default_methods.iter().map(|s| s.to_string()).collect(),
        };
        let mut methods = Vec::new();
        for (i, m) in names.iter().enumerate() {
            match Method::from_bytes(m.as_bytes()) {
                Ok(x) => methods.push(x),
                Err(_) => errs.push(SpecError::new(
                    format!("methods[{i}]"),
                    format!("`{m}` is not a method"),
                )),
            }
        }
        if names.is_empty() {
            errs.push(SpecError::new("methods", "name at least one method"));
        }
        let allow =
            HeaderValue::from_str(&names.join(", ")).unwrap_or(HeaderValue::from_static("GET"));
        let mut versions = Vec::new();
        for (i, v) in self
            .versions
            .clone()
            .unwrap_or_else(|| vec!["HTTP/1.1".into(), "HTTP/2".into()])
            .iter()
            .enumerate()
        {
            match v.to_ascii_uppercase().as_str() {
                "HTTP/1.0" => versions.push(Version::HTTP_10),
                "HTTP/1.1" => versions.push(Version::HTTP_11),
                "HTTP/2" | "HTTP/2.0" => versions.push(Version::HTTP_2),
                _ => errs.push(SpecError::new(
                    format!("versions[{i}]"),
                    format!("`{v}`: use HTTP/1.0, HTTP/1.1 or HTTP/2"),
                )),
            }
        }
        let require = header_names(&self.require_headers, "require_headers", &mut errs);
        let forbid = match &self.forbid_headers {
            Some(f) => header_names(f, "forbid_headers", &mut errs),
            None => OVERRIDE_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
        };
        if let Some(ct) = &self.content_types {
            for (i, c) in ct.iter().enumerate() {
                if c.split_once('/')
                    .is_none_or(|(a, b)| a.is_empty() || b.is_empty())
                {
                    errs.push(SpecError::new(
                        format!("content_types[{i}]"),
                        format!("`{c}` is not a media type (type/subtype)"),
                    ));
                }
            }
        }
        if self.max_ranges == Some(0) || self.multipart.max_parts == Some(0) {
            errs.push(SpecError::new(
                if self.max_ranges == Some(0) {
                    "max_ranges"
                } else {
                    "multipart.max_parts"
                },
                "must be at least 1",
            ));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Protocol {
            methods,
            allow,
            versions,
            content_types: self.content_types.as_deref().map(lower_list),
            charsets: lower_list(
                &self
                    .charsets
                    .clone()
                    .unwrap_or_else(|| vec!["utf-8".into(), "us-ascii".into()]),
            ),
            require,
            forbid,
            allow_ip_host: self.allow_ip_host,
            allow_non_ascii: self.allow_non_ascii_headers,
            max_ranges: self.max_ranges.unwrap_or(4),
            max_parts: self.multipart.max_parts.unwrap_or(64),
            allow_ext: self.multipart.allow_extensions.as_deref().map(lower_list),
            forbid_ext: match &self.multipart.forbid_extensions {
                Some(f) => lower_list(f),
                None => EXECUTABLE_EXTENSIONS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            },
        })
    }
}

fn refuse(status: StatusCode, code: &'static str, title: &'static str, detail: String) -> Outcome {
    Ok(Verdict::Reject(
        Rejection::new(status, code, title).with_detail(detail),
    ))
}

/// The host part of a Host value or an authority: `[::1]:80` → `::1`, `a.b:8080` → `a.b`.
fn host_of(v: &str) -> &str {
    if let Some(r) = v.strip_prefix('[') {
        return r.split(']').next().unwrap_or(r);
    }
    v.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(v, |(h, _)| h)
}

/// Byte ranges of a `Range: bytes=…` value as (start, end) with `None` for open ends; `None`
/// when it is not a byte-range set.
fn ranges(v: &str) -> Option<Vec<(Option<u64>, Option<u64>)>> {
    let set = v.trim().strip_prefix("bytes=")?;
    set.split(',')
        .map(|r| {
            let (a, b) = r.trim().split_once('-')?;
            let a = if a.is_empty() {
                None
            } else {
                Some(a.trim().parse().ok()?)
            };
            let b = if b.is_empty() {
                None
            } else {
                Some(b.trim().parse().ok()?)
            };
            if a.is_none() && b.is_none() {
                return None;
            }
            Some((a, b))
        })
        .collect()
}

impl Protocol {
    fn media_ok(&self, media: &str) -> bool {
        let Some(list) = &self.content_types else {
            return true;
        };
        list.iter().any(|t| {
            t == media
                || t.strip_prefix("application/*+").is_some_and(|suffix| {
                    media.starts_with("application/") && media.ends_with(&format!("+{suffix}"))
                })
                || t.strip_suffix("/*")
                    .is_some_and(|top| media.split('/').next() == Some(top))
        })
    }

    /// The verdict on a request head (the decision table of the module docs).
    fn head_verdict(&self, req: &RequestHead) -> Outcome {
        if !self.methods.contains(&req.method) {
            let r = Rejection::new(
                StatusCode::METHOD_NOT_ALLOWED,
                codes::METHOD,
                "Method not allowed",
            )
            .with_detail(format!("{} is not taken here", req.method))
            .with_header(http::header::ALLOW, self.allow.clone());
            return Ok(Verdict::Reject(r));
        }
        if !self.versions.contains(&req.version) {
            return refuse(
                StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                codes::VERSION,
                "HTTP version not supported",
                format!("{:?} is not taken here", req.version),
            );
        }
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri.authority().map(|a| a.as_str().to_string()));
        match host {
            None if req.version == Version::HTTP_11 => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    codes::HOST,
                    "Host required",
                    "an HTTP/1.1 request names its Host".into(),
                );
            }
            Some(h) if !self.allow_ip_host && host_of(&h).parse::<std::net::IpAddr>().is_ok() => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    codes::HOST,
                    "Host is an address",
                    "address the API by its name".into(),
                );
            }
            _ => {}
        }
        // (control characters never get this far: the HTTP parsers refuse them)
        if !self.allow_non_ascii {
            if let Some((name, _)) = req
                .headers
                .iter()
                .find(|(_, v)| v.as_bytes().iter().any(|b| *b >= 0x80))
            {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    codes::HEADER,
                    "Malformed header",
                    format!("`{name}` has bytes outside ASCII"),
                );
            }
        }
        if let Some(h) = self.forbid.iter().find(|h| req.headers.contains_key(*h)) {
            return refuse(
                StatusCode::BAD_REQUEST,
                codes::HEADER_FORBIDDEN,
                "Header not allowed",
                format!("`{h}` is not taken here"),
            );
        }
        if let Some(h) = self.require.iter().find(|h| !req.headers.contains_key(*h)) {
            return refuse(
                StatusCode::BAD_REQUEST,
                codes::HEADER_MISSING,
                "Header required",
                format!("`{h}` is required"),
            );
        }
        let has_body = req.headers.contains_key(http::header::TRANSFER_ENCODING)
            || req
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() != "0");
        if let Some(ct) = req.headers.get(http::header::CONTENT_TYPE) {
            let ct = String::from_utf8_lossy(ct.as_bytes()).to_ascii_lowercase();
            let mut params = ct.split(';');
            let media = params.next().unwrap_or("").trim().to_string();
            if has_body && !self.media_ok(&media) {
                return refuse(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    codes::CONTENT_TYPE,
                    "Content type not taken",
                    format!("`{media}` is not taken here"),
                );
            }
            for p in params {
                if let Some((k, v)) = p.split_once('=') {
                    let v = v.trim().trim_matches('"');
                    if k.trim() == "charset" && !self.charsets.iter().any(|c| c == v) {
                        return refuse(
                            StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            codes::CHARSET,
                            "Charset not taken",
                            format!("charset `{v}` is not taken here"),
                        );
                    }
                }
            }
        } else if has_body && self.content_types.is_some() {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                codes::CONTENT_TYPE,
                "Content type not taken",
                "a body needs a Content-Type".into(),
            );
        }
        if let Some(r) = req.headers.get(http::header::RANGE) {
            let text = String::from_utf8_lossy(r.as_bytes());
            if req.method != Method::GET {
                return refuse(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    codes::RANGE,
                    "Range not taken",
                    "ranges are taken on GET only".into(),
                );
            }
            let Some(mut rs) = ranges(&text) else {
                return refuse(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    codes::RANGE,
                    "Malformed range",
                    "a Range is `bytes=` and ranges".into(),
                );
            };
            if rs.len() > self.max_ranges {
                return refuse(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    codes::RANGE,
                    "Too many ranges",
                    format!("at most {} ranges", self.max_ranges),
                );
            }
            // overlapping ranges make a server send the same bytes many times (amplification)
            let suffixes = rs.iter().filter(|(a, _)| a.is_none()).count();
            rs.retain(|(a, _)| a.is_some());
            rs.sort_by_key(|(a, _)| *a);
            let overlap = rs.windows(2).any(|w| match (w.first(), w.get(1)) {
                (Some((_, end)), Some((Some(next), _))) => end.is_none_or(|e| e >= *next),
                _ => false,
            });
            if overlap || suffixes > 1 {
                return refuse(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    codes::RANGE,
                    "Overlapping ranges",
                    "ranges may not overlap".into(),
                );
            }
        }
        Ok(Verdict::Continue)
    }

    /// Why a file name is refused, if it is.
    fn file_name_problem(&self, name: &str) -> Option<String> {
        if name.contains(['/', '\\']) || name.contains("..") {
            return Some("a file name is not a path".into());
        }
        if name.chars().any(char::is_control) {
            return Some("a file name has no control characters".into());
        }
        // every extension counts: `shell.php.jpg` is run as PHP by some servers
        let lower = name.to_ascii_lowercase();
        let exts: Vec<&str> = lower.split('.').skip(1).map(str::trim).collect();
        if let Some(bad) = exts
            .iter()
            .find(|e| self.forbid_ext.iter().any(|f| f == *e))
        {
            return Some(format!("files of type `.{bad}` are not taken"));
        }
        if let Some(allow) = &self.allow_ext {
            match exts.last() {
                Some(e) if allow.iter().any(|a| a == e) => {}
                _ => {
                    return Some(format!(
                        "only {} files are taken",
                        allow
                            .iter()
                            .map(|a| format!(".{a}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
        }
        None
    }
}

#[async_trait::async_trait]
impl Policy for Protocol {
    fn kind(&self) -> &'static str {
        "protocol"
    }
    fn stage(&self) -> Stage {
        Stage::Network
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY
            .with(Phase::RequestHead)
            .with(Phase::RequestBody)
    }

    async fn on_request_head(&self, req: &mut RequestHead, _x: &mut Exchange) -> Outcome {
        self.head_verdict(req)
    }

    async fn on_request_body(
        &self,
        req: &RequestHead,
        body: &bytes::Bytes,
        _x: &mut Exchange,
    ) -> Outcome {
        let ct = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/")
        {
            return Ok(Verdict::Continue);
        }
        let parts = crate::form::boundary(ct).and_then(|b| crate::form::multipart(body, &b).ok());
        let Some(parts) = parts else {
            return refuse(
                StatusCode::BAD_REQUEST,
                codes::MULTIPART,
                "Malformed multipart body",
                "the parts and their boundary do not match".into(),
            );
        };
        if parts.len() > self.max_parts {
            return refuse(
                StatusCode::BAD_REQUEST,
                codes::MULTIPART,
                "Too many parts",
                format!("at most {} parts", self.max_parts),
            );
        }
        for p in &parts {
            if let Some(problem) = p
                .filename
                .as_deref()
                .and_then(|f| self.file_name_problem(f))
            {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    codes::FILE_NAME,
                    "File name not taken",
                    problem,
                );
            }
        }
        Ok(Verdict::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (method, version, headers, the code refused with).
    type Row = (
        &'static str,
        Version,
        Vec<(&'static str, &'static str)>,
        Option<&'static str>,
    );

    fn head(method: &str, version: Version, headers: &[(&str, &str)]) -> RequestHead {
        let mut b = http::Request::builder()
            .method(method)
            .uri("/x")
            .version(version);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn code(p: &Protocol, req: RequestHead) -> Option<&'static str> {
        match p.head_verdict(&req).unwrap() {
            Verdict::Continue | Verdict::Answer(_) => None,
            Verdict::Reject(r) => Some(r.code),
        }
    }

    #[test]
    fn decision_table() {
        let p = ProtocolSpec {
            content_types: Some(vec![
                "application/json".into(),
                "application/*+json".into(),
                "multipart/form-data".into(),
            ]),
            require_headers: vec!["x-client".into()],
            ..Default::default()
        }
        .build()
        .unwrap();
        let h = |extra: &[(&'static str, &'static str)]| {
            let mut v: Vec<(&str, &str)> = vec![("host", "api.example.com"), ("x-client", "a")];
            v.extend_from_slice(extra);
            v
        };
        let rows: Vec<Row> = vec![
            ("GET", Version::HTTP_11, h(&[]), None),
            ("TRACE", Version::HTTP_11, h(&[]), Some(codes::METHOD)),
            ("GET", Version::HTTP_10, h(&[]), Some(codes::VERSION)),
            (
                "GET",
                Version::HTTP_11,
                vec![("x-client", "a")],
                Some(codes::HOST),
            ),
            (
                "GET",
                Version::HTTP_11,
                vec![("host", "10.0.0.5:8080"), ("x-client", "a")],
                Some(codes::HOST),
            ),
            (
                "GET",
                Version::HTTP_11,
                vec![("host", "[::1]"), ("x-client", "a")],
                Some(codes::HOST),
            ),
            (
                "GET",
                Version::HTTP_11,
                h(&[("x-http-method-override", "DELETE")]),
                Some(codes::HEADER_FORBIDDEN),
            ),
            (
                "GET",
                Version::HTTP_11,
                vec![("host", "api.example.com")],
                Some(codes::HEADER_MISSING),
            ),
            (
                "POST",
                Version::HTTP_11,
                h(&[
                    ("content-type", "application/json; charset=utf-8"),
                    ("content-length", "2"),
                ]),
                None,
            ),
            (
                "POST",
                Version::HTTP_11,
                h(&[
                    ("content-type", "application/merge-patch+json"),
                    ("content-length", "2"),
                ]),
                None,
            ),
            (
                "POST",
                Version::HTTP_11,
                h(&[("content-type", "text/xml"), ("content-length", "2")]),
                Some(codes::CONTENT_TYPE),
            ),
            (
                "POST",
                Version::HTTP_11,
                h(&[("content-length", "2")]),
                Some(codes::CONTENT_TYPE),
            ),
            (
                "POST",
                Version::HTTP_11,
                h(&[
                    ("content-type", "application/json; charset=utf-7"),
                    ("content-length", "2"),
                ]),
                Some(codes::CHARSET),
            ),
            (
                "GET",
                Version::HTTP_11,
                h(&[("content-type", "text/xml")]),
                None,
            ),
            (
                "GET",
                Version::HTTP_11,
                h(&[("range", "bytes=0-99,200-299")]),
                None,
            ),
            (
                "GET",
                Version::HTTP_11,
                h(&[("range", "bytes=0-1,2-3,4-5,6-7,8-9")]),
                Some(codes::RANGE),
            ),
            (
                "GET",
                Version::HTTP_11,
                h(&[("range", "bytes=0-99,50-150")]),
                Some(codes::RANGE),
            ),
            (
                "GET",
                Version::HTTP_11,
                h(&[("range", "bytes=-5,-10")]),
                Some(codes::RANGE),
            ),
            (
                "GET",
                Version::HTTP_11,
                h(&[("range", "lines=1-2")]),
                Some(codes::RANGE),
            ),
            (
                "POST",
                Version::HTTP_11,
                h(&[("range", "bytes=0-1")]),
                Some(codes::RANGE),
            ),
        ];
        for (m, v, headers, want) in rows {
            assert_eq!(
                code(&p, head(m, v, &headers)),
                want,
                "{m} {v:?} {headers:?}"
            );
        }
        let mut req = head("GET", Version::HTTP_11, &h(&[]));
        req.headers.insert(
            "x-bad",
            HeaderValue::from_bytes("caf\u{e9}".as_bytes()).unwrap(),
        );
        assert_eq!(code(&p, req.clone()), Some(codes::HEADER));
        let lax = ProtocolSpec {
            allow_non_ascii_headers: true,
            require_headers: vec!["x-client".into()],
            ..Default::default()
        }
        .build()
        .unwrap();
        assert_eq!(code(&lax, req), None);
        // an IP Host where the operator says so; override headers where allowed
        let open = ProtocolSpec {
            allow_ip_host: true,
            forbid_headers: Some(vec![]),
            ..Default::default()
        }
        .build()
        .unwrap();
        assert_eq!(
            code(
                &open,
                head(
                    "GET",
                    Version::HTTP_11,
                    &[("host", "127.0.0.1"), ("x-http-method-override", "PUT")]
                )
            ),
            None
        );
    }

    #[test]
    fn file_names_and_spec_errors() {
        let p = ProtocolSpec::default().build().unwrap();
        for bad in [
            "../../etc/passwd",
            "a\\b.png",
            "shell.php",
            "shell.PHP.jpg",
            "x.phtml",
            "a\u{0}.png",
        ] {
            assert!(p.file_name_problem(bad).is_some(), "{bad}");
        }
        for good in ["photo.jpg", "report 2024.pdf", "archive.tar.gz", "README"] {
            assert_eq!(p.file_name_problem(good), None, "{good}");
        }
        let images = ProtocolSpec {
            multipart: MultipartSpec {
                allow_extensions: Some(vec!["png".into(), ".JPG".into()]),
                ..Default::default()
            },
            ..Default::default()
        }
        .build()
        .unwrap();
        assert_eq!(images.file_name_problem("a.jpg"), None);
        assert!(images.file_name_problem("a.pdf").is_some());
        let e = ProtocolSpec {
            methods: Some(vec!["GE T".into()]),
            versions: Some(vec!["HTTP/3".into()]),
            forbid_headers: Some(vec!["bad header".into()]),
            content_types: Some(vec!["json".into()]),
            ..Default::default()
        }
        .build()
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "methods[0]",
                "versions[0]",
                "forbid_headers[0]",
                "content_types[0]"
            ]
        );
    }
}
