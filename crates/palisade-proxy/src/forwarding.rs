//! What the gateway changes in the headers it forwards: hop-by-hop fields removed (both
//! ways), the client address worked out from trusted proxies, `Forwarded` / `X-Forwarded-*`
//! and the request id set, and identity fields that only the gateway may write.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use palisade_core::policies::ip_filter::in_nets;

use crate::handler::ConnInfo;

static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The position of `name` in [`HOP_BY_HOP`], by one match on the name's text.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "te" => 3,
        "trailer" => 4,
        "transfer-encoding" => 5,
        "upgrade" => 6,
        "proxy-authorization" => 7,
        _ => return None,
    })
}

/// Removes hop-by-hop headers, including those the Connection header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // one pass over the names notes which hop-by-hop fields are present (most messages
    // carry none, responses from keep-alive upstreams only Connection): only those are
    // removed, instead of a lookup for each of the eight names
    let mut present = 0u8;
    for k in h.keys() {
        if let Some(i) = hop_by_hop_index(k) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    // fields the Connection header names, other than the hop-by-hop ones handled below
    let mut named: Vec<HeaderName> = Vec::new();
    for token in h
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| crate::h1wire::tokens(v.as_bytes()))
    {
        // the hop-by-hop names (keep-alive above all) are removed below without a lookup
        if HOP_BY_HOP
            .iter()
            .any(|n| token.eq_ignore_ascii_case(n.as_str().as_bytes()))
        {
            continue;
        }
        if let Ok(n) = HeaderName::from_bytes(token) {
            if h.contains_key(&n) {
                named.push(n);
            }
        }
    }
    for n in &named {
        h.remove(n);
    }
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            h.remove(n);
        }
    }
}

/// The client address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most untrusted address of X-Forwarded-For.
pub fn client_ip(peer: IpAddr, h: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if trusted.is_empty() || !in_nets(peer, trusted) {
        return peer;
    }
    let chain: Vec<IpAddr> = h
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    let mut client = peer;
    for ip in chain.iter().rev() {
        client = *ip;
        if !in_nets(*ip, trusted) {
            break;
        }
    }
    client
}

pub(crate) fn strip_identity(h: &mut HeaderMap, names: &palisade_config::IdentityHeaders) {
    // one pass over what the client sent (usually a handful of fields, none of them ours)
    // instead of a lookup per identity header
    let forged: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with("x-palisade-") || names.names().any(|n| n == *k))
        .cloned()
        .collect();
    for k in forged {
        h.remove(&k);
    }
}

pub(crate) fn set_identity(
    h: &mut HeaderMap,
    names: &palisade_config::IdentityHeaders,
    p: &palisade_core::Principal,
) {
    let mut put = |n: &HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(n.clone(), v);
        }
    };
    put(&names.subject, &p.subject);
    if let Some(c) = &p.consumer {
        put(&names.consumer, c);
    }
    if !p.groups.is_empty() {
        put(&names.groups, &p.groups.join(","));
    }
    if !p.scopes.is_empty() {
        put(&names.scopes, &p.scopes.join(" "));
    }
    put(&names.method, p.method);
    for (claim, n) in &names.claims {
        if let Some(v) = p.claim_text(claim) {
            put(n, &v);
        }
    }
}

pub(crate) fn prepare_upstream_request(
    head: &mut http::request::Parts,
    conn: &ConnInfo,
    trusted: &[IpNet],
    rid: &HeaderValue,
) {
    let original_host: Option<HeaderValue> = match head.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => head.headers.get(header::HOST).cloned(),
    };
    // `TE: trailers` says the client takes trailers (gRPC needs it, HTTP/2 allows only it);
    // the gateway passes trailers on, so the next hop is told the same
    let trailers = head.headers.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|t| {
                t.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
        })
    });
    strip_hop_by_hop(&mut head.headers);
    if trailers {
        head.headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    let h = &mut head.headers;
    let trusted_peer = !trusted.is_empty() && in_nets(conn.peer.ip(), trusted);
    let append = |h: &mut HeaderMap, n: &HeaderName, own: &str| -> Option<HeaderValue> {
        let prev = h.get(n).and_then(|v| v.to_str().ok())?;
        HeaderValue::from_str(&format!("{prev}, {own}")).ok()
    };
    let xff = if trusted_peer {
        conn.peer_value
            .to_str()
            .ok()
            .and_then(|own| append(h, &X_FORWARDED_FOR, own))
    } else {
        None
    };
    h.insert(
        X_FORWARDED_FOR.clone(),
        xff.unwrap_or_else(|| conn.peer_value.clone()),
    );
    // a Host that could not be quoted safely is left out of the element
    let quotable = original_host.as_ref().filter(|h| {
        h.as_bytes()
            .iter()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b';' | b','))
    });
    if let Some(own) = conn.forwarded_element(quotable) {
        let fwd = if trusted_peer {
            own.to_str().ok().and_then(|own| append(h, &FORWARDED, own))
        } else {
            None
        };
        h.insert(FORWARDED.clone(), fwd.unwrap_or(own));
    }
    if !(trusted_peer && h.contains_key(&X_FORWARDED_PROTO)) {
        h.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
        );
    }
    if !(trusted_peer && h.contains_key(&X_FORWARDED_HOST)) {
        match original_host {
            Some(host) => {
                h.insert(X_FORWARDED_HOST.clone(), host);
            }
            None => {
                h.remove(&X_FORWARDED_HOST);
            }
        }
    }
    h.insert(X_REQUEST_ID.clone(), rid.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_honours_only_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 1.2.3.4, 10.0.0.7"),
        );
        // untrusted peer: header ignored
        assert_eq!(
            client_ip("9.9.9.9".parse().unwrap(), &h, &trusted),
            "9.9.9.9".parse::<IpAddr>().unwrap()
        );
        // trusted peer: right-most untrusted entry (a client cannot spoof past its own proxy)
        assert_eq!(
            client_ip("10.1.1.1".parse().unwrap(), &h, &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn hop_by_hop_index_matches_the_list() {
        for (i, n) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(n), Some(i), "{n}");
        }
        assert_eq!(hop_by_hop_index(&header::HOST), None);
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));

        // names in any case, in several Connection fields; every listed hop-by-hop field
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("keep-alive"));
        h.append("connection", HeaderValue::from_static(" X-Other ,,Upgrade"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert(
            "proxy-authorization",
            HeaderValue::from_static("Basic eA=="),
        );
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("trailer", HeaderValue::from_static("x-sum"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["content-type"]
        );

        // nothing to strip leaves the map as it was
        let mut h = HeaderMap::new();
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }
}
