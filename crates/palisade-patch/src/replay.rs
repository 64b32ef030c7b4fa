//! `--replay FILE`: traffic the user recorded (a HAR 1.2 file, as browsers, proxies and API
//! clients export it) replayed beside the scan's benign traffic, once to the target and once
//! through the patched gateway. Only the path and query of each URL are used (the capture
//! may be of another host); methods that change data are replayed only with `allow_unsafe`.

use palisade_scan::client::{Client, Exchange, Refused};
use serde_json::Value;

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Upper-case method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers, without those that frame the message or name the host.
    pub headers: Vec<(String, String)>,
    /// Content type and text of the body.
    pub body: Option<(String, String)>,
}

/// Headers a replay does not copy: the client sets them for the connection it makes.
const SKIP: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "content-type",
    "accept-encoding",
];

/// The entries of a HAR file.
pub fn har(text: &str) -> Result<Vec<Entry>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not a HAR file (JSON): {e}"))?;
    let entries = v
        .pointer("/log/entries")
        .and_then(Value::as_array)
        .ok_or("not a HAR file: no log.entries")?;
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let r = e.get("request").ok_or(format!("entry {i}: no request"))?;
        let method = r
            .get("method")
            .and_then(Value::as_str)
            .ok_or(format!("entry {i}: no method"))?
            .to_ascii_uppercase();
        let url = r
            .get("url")
            .and_then(Value::as_str)
            .ok_or(format!("entry {i}: no url"))?;
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let target = match rest.find('/') {
            Some(p) => rest.get(p..).unwrap_or("/").to_string(),
            None => "/".to_string(),
        };
        let target = target.split('#').next().unwrap_or("/").to_string();
        let headers = r
            .get("headers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|h| {
                let n = h.get("name")?.as_str()?.to_ascii_lowercase();
                let v = h.get("value")?.as_str()?.to_string();
                (!n.starts_with(':') && !SKIP.contains(&n.as_str())).then_some((n, v))
            })
            .collect();
        let body = r.get("postData").and_then(|p| {
            let text = p.get("text")?.as_str()?.to_string();
            let ct = p
                .get("mimeType")
                .and_then(Value::as_str)
                .unwrap_or("application/octet-stream")
                .to_string();
            Some((ct, text))
        });
        out.push(Entry {
            method,
            target,
            headers,
            body,
        });
    }
    Ok(out)
}

/// Whether `method path` (path without query) is an operation `op` (`GET /users/{id}`)
/// takes, as the gateway matches templates: `{x}` one non-empty segment, literals without
/// regard to ASCII case, one trailing `/` ignored.
pub fn op_matches(op: &str, method: &str, path: &str) -> bool {
    let Some((m, template)) = op.split_once(' ') else {
        return false;
    };
    if !m.eq_ignore_ascii_case(method) {
        return false;
    }
    let path = path.split('?').next().unwrap_or("");
    let path = if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            if t.starts_with('{') && t.ends_with('}') {
                !p.is_empty()
            } else {
                t.eq_ignore_ascii_case(p)
            }
        })
}

/// Sends the entries to `origin` (`http://host:port`) at `rate` per second; writes only with
/// `allow_unsafe`. Each answer with the entry's index.
pub async fn send(
    entries: &[Entry],
    origin: &str,
    rate: u32,
    allow_unsafe: bool,
) -> Result<Vec<(usize, Exchange)>, String> {
    let client = Client::new(origin, entries.len() as u64 + 1, rate, None)?;
    client.release_reserve();
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if !allow_unsafe && !matches!(e.method.as_str(), "GET" | "HEAD" | "OPTIONS") {
            continue;
        }
        let headers: Vec<(&str, String)> = e
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let body = e.body.as_ref().map(|(ct, t)| (ct.as_str(), t.clone()));
        match client
            .send(&e.method, &e.target, &headers, body, None)
            .await
        {
            Ok(x) => out.push((i, x)),
            Err(Refused::Network(m)) => {
                return Err(format!("replaying {} {}: {m}", e.method, e.target))
            }
            Err(_) => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_har_file_becomes_requests_without_framing_headers() {
        let har_text = r#"{"log": {"version": "1.2", "entries": [
          {"request": {"method": "get", "url": "https://prod.example/api/v2/drugs?term=amox#x",
            "headers": [{"name": "Authorization", "value": "Token t"}, {"name": "Host", "value": "prod.example"},
                        {"name": ":authority", "value": "prod.example"}]}},
          {"request": {"method": "POST", "url": "https://prod.example/api/v2/patients",
            "headers": [{"name": "Content-Type", "value": "application/x-www-form-urlencoded"}],
            "postData": {"mimeType": "application/x-www-form-urlencoded", "text": "name=Rex"}}}
        ]}}"#;
        let e = har(har_text).unwrap();
        assert_eq!(e[0].method, "GET");
        assert_eq!(e[0].target, "/api/v2/drugs?term=amox");
        assert_eq!(
            e[0].headers,
            vec![("authorization".to_string(), "Token t".to_string())]
        );
        assert_eq!(
            e[1].body,
            Some((
                "application/x-www-form-urlencoded".to_string(),
                "name=Rex".to_string()
            ))
        );
        assert!(har("{}").is_err());
        assert!(har("not json").is_err());
    }

    #[test]
    fn operations_match_as_the_gateway_matches_templates() {
        let rows = [
            ("GET /api/patients/{pk}", "GET", "/api/patients/11", true),
            ("GET /api/patients/{pk}", "get", "/API/Patients/11/", true),
            (
                "GET /api/patients/{pk}",
                "GET",
                "/api/patients/11?x=1",
                true,
            ),
            ("GET /api/patients/{pk}", "GET", "/api/patients/", false),
            ("GET /api/patients/{pk}", "PUT", "/api/patients/11", false),
            (
                "GET /api/patients/{pk}",
                "GET",
                "/api/patients/11/notes",
                false,
            ),
            ("GET /api/patients", "GET", "/api/patients", true),
        ];
        for (op, m, p, want) in rows {
            assert_eq!(op_matches(op, m, p), want, "{op} {m} {p}");
        }
    }
}
