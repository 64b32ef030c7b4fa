//! The request's one host and one path, decided before routing. The request is rewritten in
//! place to that form, so the router, every policy, the contract and the upstream read the
//! same host and path (rules in `palisade_core::uri`).

use http::header::{self, HeaderValue};
use http::{Request, Uri, Version};
use palisade_core::uri::{self, Authority};
use palisade_core::Rejection;

use crate::render::codes;

/// What routing needs of a canonical request.
#[derive(Debug)]
pub struct Canonical {
    /// The host (lower case, no trailing dot), when the request names one (HTTP/1.0 may not).
    pub authority: Option<Authority>,
    /// The fully decoded path routes match, when it differs from the forwarded path.
    pub decoded: Option<String>,
    /// The path and query as the client sent them, when the path was rewritten (what a
    /// client's signature covers).
    pub as_sent: Option<std::sync::Arc<str>>,
}

/// Puts `req`'s target and Host in canonical form, in place, or refuses it.
pub fn canonicalise<B>(req: &mut Request<B>) -> Result<Canonical, Rejection> {
    let authority = request_authority(req)?;
    let raw = req.uri().path();
    let c = uri::canonical_path(raw).map_err(|e| codes::bad_path(e.detail()))?;
    let changed_path = c.forward != raw;
    let decoded = (c.decoded != c.forward).then(|| c.decoded.into_owned());
    let forward = c.forward.into_owned();
    let as_sent = changed_path
        .then(|| std::sync::Arc::from(req.uri().path_and_query().map_or(raw, |pq| pq.as_str())));
    // origin-form from here on: the host travels in the Host field only
    if changed_path || req.uri().authority().is_some() {
        let text = match req.uri().query() {
            Some(q) => format!("{forward}?{q}"),
            None => forward,
        };
        *req.uri_mut() = Uri::try_from(text)
            .map_err(|_| codes::bad_path("the request target is not a valid URI"))?;
    }
    if let Some(a) = &authority {
        // the common case: the Host field is already canonical, so nothing is rebuilt
        let same = req
            .headers()
            .get(header::HOST)
            .is_some_and(|v| a.written_as(v.as_bytes()));
        if !same {
            let text = a.to_header_text();
            let v = HeaderValue::from_str(&text)
                .map_err(|_| codes::bad_host("the host is not a valid header value"))?;
            req.headers_mut().insert(header::HOST, v);
        }
    }
    Ok(Canonical {
        authority,
        decoded,
        as_sent,
    })
}

/// The host the request names: its Host field, its absolute-form target or its HTTP/2
/// `:authority`, which must agree. HTTP/1.1 requires exactly one Host field (RFC 9112
/// §3.2); HTTP/2 an `:authority` or a Host field.
fn request_authority<B>(req: &Request<B>) -> Result<Option<Authority>, Rejection> {
    let mut fields = req.headers().get_all(header::HOST).iter();
    let first = fields.next();
    if fields.next().is_some() {
        return Err(codes::bad_host("a request carries exactly one Host field"));
    }
    let parse = |s: &str| {
        Authority::parse(s).map_err(|e| {
            codes::bad_host(match e {
                uri::HostError::Invalid => "the host is not a valid host name or address",
                uri::HostError::BadPort => "the host's port is not a number from 0 to 65535",
            })
        })
    };
    let from_field = match first {
        Some(v) => {
            Some(parse(v.to_str().map_err(|_| {
                codes::bad_host("the Host field is not visible ASCII")
            })?)?)
        }
        None => None,
    };
    let from_target = match req.uri().authority() {
        Some(a) if a.as_str().contains('@') => {
            return Err(codes::bad_host(
                "user information is not allowed in the target",
            ))
        }
        Some(a) => Some(parse(a.as_str())?),
        None => None,
    };
    match (from_target, from_field) {
        (Some(t), Some(f)) => {
            let ports_differ = matches!((t.port, f.port), (Some(a), Some(b)) if a != b);
            if t.host != f.host || ports_differ {
                return Err(codes::bad_host(
                    "the Host field and the request target (or :authority) name different hosts",
                ));
            }
            Ok(Some(t))
        }
        (_, None) if req.version() == Version::HTTP_11 => Err(codes::bad_host(
            "an HTTP/1.1 request carries exactly one Host field",
        )),
        (Some(t), None) => Ok(Some(t)),
        (None, Some(f)) => Ok(Some(f)),
        (None, None) if req.version() == Version::HTTP_10 => Ok(None),
        (None, None) => Err(codes::bad_host(
            "the request names no host (:authority or Host)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, target: &str, hosts: &[&str]) -> Request<()> {
        let mut r = Request::new(());
        *r.version_mut() = version;
        *r.uri_mut() = target.parse().unwrap();
        for h in hosts {
            r.headers_mut()
                .append(header::HOST, HeaderValue::from_str(h).unwrap());
        }
        r
    }

    fn code(r: &mut Request<()>) -> Result<Canonical, &'static str> {
        canonicalise(r).map_err(|e| e.code)
    }

    #[test]
    fn one_host_per_request() {
        let h11 = Version::HTTP_11;
        let mut r = req(h11, "/x", &["Internal.Test."]);
        assert_eq!(
            code(&mut r).unwrap().authority.unwrap().host,
            "internal.test"
        );
        assert_eq!(r.headers()[header::HOST], "internal.test");
        let mut r = req(h11, "/x", &["a.test", "b.test"]);
        assert_eq!(code(&mut r).unwrap_err(), "request.bad_host");
        let mut r = req(h11, "/x", &[]);
        assert_eq!(code(&mut r).unwrap_err(), "request.bad_host");
        let mut r = req(Version::HTTP_10, "/x", &[]);
        assert!(code(&mut r).unwrap().authority.is_none());
        // absolute-form: the target's host wins only when the field agrees
        let mut r = req(h11, "http://internal.test./x?q=1", &["INTERNAL.test"]);
        assert_eq!(
            code(&mut r).unwrap().authority.unwrap().host,
            "internal.test"
        );
        assert_eq!(r.uri(), "/x?q=1");
        // the target's port, the field without one: the field is rewritten, nothing breaks
        let mut r = req(h11, "http://a.test:8080/x", &["a"]);
        assert_eq!(code(&mut r).unwrap_err(), "request.bad_host");
        let mut r = req(h11, "http://a.test:8080/x", &["a.test"]);
        code(&mut r).unwrap();
        assert_eq!(r.headers()[header::HOST], "a.test:8080");
        let mut r = req(h11, "/x", &["a.test:8080"]);
        code(&mut r).unwrap();
        assert_eq!(r.headers()[header::HOST], "a.test:8080");
        let mut r = req(h11, "http://internal.test/x", &["public.test"]);
        assert_eq!(code(&mut r).unwrap_err(), "request.bad_host");
        let mut r = req(h11, "http://u@internal.test/x", &["internal.test"]);
        assert_eq!(code(&mut r).unwrap_err(), "request.bad_host");
        // HTTP/2: :authority (the URI's authority) and a host field must agree
        let h2 = Version::HTTP_2;
        let mut r = req(h2, "https://internal.test.:443/x", &[]);
        let c = code(&mut r).unwrap();
        assert_eq!(c.authority.unwrap().to_header_text(), "internal.test:443");
        assert_eq!(r.headers()[header::HOST], "internal.test:443");
        let mut r = req(h2, "https://internal.test/x", &["other.test"]);
        assert_eq!(code(&mut r).unwrap_err(), "request.bad_host");
        let mut r = req(h2, "/x", &[]);
        assert_eq!(code(&mut r).unwrap_err(), "request.bad_host");
    }

    #[test]
    fn the_path_is_rewritten_to_its_canonical_form() {
        let mut r = req(Version::HTTP_11, "/%73ecure//x?a=%2e", &["h"]);
        let c = code(&mut r).unwrap();
        assert_eq!(r.uri(), "/secure/x?a=%2e");
        assert!(c.decoded.is_none());
        let mut r = req(Version::HTTP_11, "/a%20b", &["h"]);
        assert_eq!(code(&mut r).unwrap().decoded.as_deref(), Some("/a b"));
        assert_eq!(r.uri(), "/a%20b");
        let mut r = req(Version::HTTP_11, "/secure%2fx", &["h"]);
        assert_eq!(code(&mut r).unwrap_err(), "request.bad_path");
    }
}
