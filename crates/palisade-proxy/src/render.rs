//! The one renderer for refusals and failures: RFC 9457 `application/problem+json` with a
//! stable `code` (docs/errors.md) and the request id, or, for a SOAP request, a SOAP Fault
//! of its version carrying the same, or for a gRPC request a gRPC status. Never a stack, a
//! token or upstream text.

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use palisade_core::Rejection;
use serde::Serialize;

use crate::body::{full, ProxyBody};

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    request_id: &'a str,
}

/// Renders a rejection as problem+json.
pub fn rejection(r: &Rejection, request_id: &str) -> Response<ProxyBody> {
    let problem = Problem {
        kind: format!("https://palisade.dev/problems/{}", r.code),
        title: r.title,
        status: r.status.as_u16(),
        code: r.code,
        detail: r.detail.as_deref(),
        request_id,
    };
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut res = Response::new(full(body));
    *res.status_mut() = r.status;
    let h = res.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    for (k, v) in &r.headers {
        h.append(k.clone(), v.clone());
    }
    if r.close_connection {
        h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// Whether a request is gRPC (or gRPC-Web): its refusals are gRPC statuses, since a gRPC
/// client reads no HTTP status or problem body. The content type to answer with.
pub fn grpc_of(h: &http::HeaderMap) -> Option<HeaderValue> {
    let ct = h.get(CONTENT_TYPE)?;
    let s = ct.to_str().ok()?.to_ascii_lowercase();
    let media = s.split([';', '+']).next().unwrap_or("").trim();
    match media {
        "application/grpc" => Some(HeaderValue::from_static("application/grpc")),
        "application/grpc-web" => Some(HeaderValue::from_static("application/grpc-web")),
        "application/grpc-web-text" => Some(HeaderValue::from_static("application/grpc-web-text")),
        _ => None,
    }
}

/// The gRPC status of a refusal (the meaning of its HTTP status, as close as gRPC has one).
pub fn grpc_status(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 | 415 | 422 | 431 | 414 => 3,  // INVALID_ARGUMENT
        401 => 16,                         // UNAUTHENTICATED
        403 => 7,                          // PERMISSION_DENIED
        404 | 405 | 501 | 505 => 12,       // UNIMPLEMENTED
        408 | 504 => 4,                    // DEADLINE_EXCEEDED
        409 => 10,                         // ABORTED
        413 | 429 => 8,                    // RESOURCE_EXHAUSTED
        499 => 1,                          // CANCELLED
        502 | 503 => 14,                   // UNAVAILABLE
        s if (400..500).contains(&s) => 9, // FAILED_PRECONDITION
        _ => 13,                           // INTERNAL
    }
}

/// Renders a rejection as a gRPC "trailers-only" answer: HTTP 200, `grpc-status`, and a
/// percent-encoded `grpc-message` with the title, detail, Palisade's code and the request id;
/// the refusal's own headers (`WWW-Authenticate`, `Retry-After`) are kept.
pub fn grpc_refusal(
    r: &Rejection,
    request_id: &str,
    content_type: HeaderValue,
) -> Response<ProxyBody> {
    let mut msg = r.title.to_string();
    if let Some(d) = &r.detail {
        msg.push_str(": ");
        msg.push_str(d);
    }
    msg.push_str(&format!(" ({}, request {request_id})", r.code));
    // grpc-message is percent-encoded UTF-8 (gRPC over HTTP/2, "Responses")
    let mut encoded = String::with_capacity(msg.len());
    for b in msg.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let mut res = Response::new(crate::body::empty());
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, content_type);
    h.insert(
        "grpc-status",
        HeaderValue::from(u16::from(grpc_status(r.status))),
    );
    if let Ok(v) = HeaderValue::from_str(&encoded) {
        h.insert("grpc-message", v);
    }
    if let Ok(v) = HeaderValue::from_str(r.code) {
        h.insert("x-palisade-code", v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    for (k, v) in &r.headers {
        h.append(k.clone(), v.clone());
    }
    res
}

pub use palisade_core::xml::SoapVersion as Soap;

/// The SOAP version a refusal is answered in: `application/soap+xml` is SOAP 1.2; `text/xml`
/// is SOAP 1.1 only with a `SOAPAction` field (plain XML APIs keep problem+json).
pub fn soap_of(h: &http::HeaderMap) -> Option<Soap> {
    palisade_core::xml::soap_request(h)
        .map(|(v, _)| v)
        .filter(|v| *v == Soap::V12 || h.contains_key("soapaction"))
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // characters XML 1.0 cannot carry
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Renders a rejection as a SOAP Fault of `version`: the fault code says whose fault it is
/// (`Client`/`Sender` for 4xx, `Server`/`Receiver` otherwise), the reason is the title and
/// detail, and the detail element carries Palisade's stable code, the status and the request
/// id. The HTTP status and headers (`WWW-Authenticate`, `Retry-After` …) are the refusal's.
pub fn soap_fault(r: &Rejection, request_id: &str, version: Soap) -> Response<ProxyBody> {
    let client = r.status.is_client_error();
    let reason = match &r.detail {
        Some(d) => format!("{}: {d}", r.title),
        None => r.title.to_string(),
    };
    let detail = format!(
        r#"<p:error xmlns:p="https://palisade.dev/soap-fault"><p:code>{}</p:code><p:status>{}</p:status><p:request-id>{}</p:request-id>{}</p:error>"#,
        xml_escape(r.code),
        r.status.as_u16(),
        xml_escape(request_id),
        r.detail
            .as_deref()
            .map(|d| format!("<p:detail>{}</p:detail>", xml_escape(d)))
            .unwrap_or_default()
    );
    let (body, media) = match version {
        Soap::V11 => (
            format!(
                r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:{}</faultcode><faultstring>{}</faultstring><detail>{detail}</detail></soap:Fault></soap:Body></soap:Envelope>"#,
                if client { "Client" } else { "Server" },
                xml_escape(&reason)
            ),
            "text/xml; charset=utf-8",
        ),
        Soap::V12 => (
            format!(
                r#"<?xml version="1.0" encoding="utf-8"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><env:Fault><env:Code><env:Value>env:{}</env:Value></env:Code><env:Reason><env:Text xml:lang="en">{}</env:Text></env:Reason><env:Detail>{detail}</env:Detail></env:Fault></env:Body></env:Envelope>"#,
                if client { "Sender" } else { "Receiver" },
                xml_escape(&reason)
            ),
            "application/soap+xml; charset=utf-8",
        ),
    };
    let mut res = rejection(r, request_id);
    *res.body_mut() = full(body.into_bytes());
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(media));
    res
}

/// Rejections the gateway itself produces, outside policies.
pub mod codes {
    use super::*;

    /// No route matches.
    pub fn not_found() -> Rejection {
        Rejection::new(
            StatusCode::NOT_FOUND,
            "route.not_found",
            "No route matches the request",
        )
    }
    /// A route matches the path but not the method.
    pub fn method_not_allowed(allow: &str) -> Rejection {
        let r = Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "route.method_not_allowed",
            "Method not allowed on this path",
        );
        match HeaderValue::from_str(allow) {
            Ok(v) => r.with_header(http::header::ALLOW, v),
            Err(_) => r,
        }
    }
    /// The request target is too long.
    pub fn uri_too_long(max: usize) -> Rejection {
        Rejection::new(
            StatusCode::URI_TOO_LONG,
            "request.uri_too_long",
            "Request target too long",
        )
        .with_detail(format!("the request target may have at most {max} bytes"))
        .closing()
    }
    /// Too many or too large headers.
    pub fn headers_too_large(detail: String) -> Rejection {
        Rejection::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request.headers_too_large",
            "Request headers too large",
        )
        .with_detail(detail)
        .closing()
    }
    /// The body is over the cap.
    pub fn body_too_large(max: u64) -> Rejection {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request.body_too_large",
            "Request body too large",
        )
        .with_detail(format!("the body may have at most {max} bytes"))
        .closing()
    }
    /// Message framing that two parsers could read differently (request smuggling).
    pub fn ambiguous_framing(detail: &'static str) -> Rejection {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "request.ambiguous_framing",
            "Ambiguous message framing",
        )
        .with_detail(detail)
        .closing()
    }
    /// A malformed request the parser accepted but we cannot forward safely.
    pub fn malformed(detail: &'static str) -> Rejection {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "request.malformed",
            "Malformed request",
        )
        .with_detail(detail)
    }
    /// A request path with no canonical form (see `palisade_core::uri`).
    pub fn bad_path(detail: &'static str) -> Rejection {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "request.bad_path",
            "Request path not accepted",
        )
        .with_detail(detail)
    }
    /// A missing, repeated, malformed or contradictory Host (RFC 9112 §3.2, RFC 9113
    /// §8.3.1).
    pub fn bad_host(detail: &'static str) -> Rejection {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "request.bad_host",
            "Request host not accepted",
        )
        .with_detail(detail)
    }
    /// The client stopped sending its body.
    pub fn body_timeout() -> Rejection {
        Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            "request.body_timeout",
            "Request body timed out",
        )
        .with_detail("the request body stopped arriving before it was complete")
        .closing()
    }
    /// The request body could not be read (bad chunked framing, or the client went away).
    pub fn bad_body() -> Rejection {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "request.bad_body",
            "Request body could not be read",
        )
        .with_detail(
            "the body's framing is malformed or the connection ended before it was complete",
        )
        .closing()
    }
    /// Too many requests in flight.
    pub fn shed() -> Rejection {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overload.shed",
            "Gateway overloaded, try again shortly",
        )
        .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("1"))
    }
    /// The upstream could not be reached.
    pub fn upstream_unreachable() -> Rejection {
        Rejection::new(
            StatusCode::BAD_GATEWAY,
            "upstream.unreachable",
            "Upstream unreachable",
        )
    }
    /// No upstream target is healthy.
    pub fn no_healthy_target() -> Rejection {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream.no_healthy_target",
            "No healthy upstream target",
        )
        .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("5"))
    }
    /// The upstream answered with something that is not valid HTTP, or reset the connection.
    pub fn upstream_bad_response() -> Rejection {
        Rejection::new(
            StatusCode::BAD_GATEWAY,
            "upstream.bad_response",
            "Invalid response from upstream",
        )
    }
    /// The upstream did not answer in time.
    pub fn upstream_timeout() -> Rejection {
        Rejection::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream.timeout",
            "Upstream timed out",
        )
    }
    /// A policy failed on our side.
    pub fn policy_error() -> Rejection {
        Rejection::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "policy.error",
            "The gateway could not evaluate a policy",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test]
    async fn soap_faults_escape_what_they_carry_and_keep_status_and_headers() {
        let mut h = http::HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        );
        assert_eq!(soap_of(&h), None, "text/xml without SOAPAction is not SOAP");
        h.insert("soapaction", HeaderValue::from_static("\"\""));
        assert_eq!(soap_of(&h), Some(Soap::V11));
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Application/SOAP+XML; action=x"),
        );
        assert_eq!(soap_of(&h), Some(Soap::V12));
        let r = Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            "ratelimit.exceeded",
            "Too many",
        )
        .with_detail("a <b> & \"c\"\u{1}")
        .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("3"));
        let res = soap_fault(&r, "rid-1", Soap::V12);
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["retry-after"], "3");
        assert_eq!(
            res.headers()[CONTENT_TYPE],
            "application/soap+xml; charset=utf-8"
        );
        let body = res
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("a &lt;b&gt; &amp; &quot;c&quot; "), "{text}");
        assert!(text.contains("<env:Value>env:Sender</env:Value>"), "{text}");
        assert!(
            text.contains("<p:code>ratelimit.exceeded</p:code>"),
            "{text}"
        );
    }
}
