//! TLS probes for https targets: does the server still speak TLS 1.0 or 1.1, or agree to a
//! weak cipher suite? A ClientHello is written by hand (a modern TLS library will not offer
//! what we are testing for) and only the ServerHello is read; no handshake is completed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Suites a legacy-version probe offers (what old servers pick).
const LEGACY: [u16; 6] = [0xc013, 0xc014, 0xc009, 0x002f, 0x0035, 0x000a];

/// Weak suites: NULL, EXPORT, RC4, 3DES, and RSA key exchange (no forward secrecy).
pub const WEAK: [(u16, &str); 10] = [
    (0x0001, "NULL-MD5"),
    (0x0002, "NULL-SHA"),
    (0x0003, "EXP-RC4-MD5"),
    (0x0004, "RC4-MD5"),
    (0x0005, "RC4-SHA"),
    (0x000a, "DES-CBC3-SHA"),
    (0x002f, "AES128-SHA (RSA key exchange)"),
    (0x0035, "AES256-SHA (RSA key exchange)"),
    (0x003c, "AES128-SHA256 (RSA key exchange)"),
    (0x009c, "AES128-GCM-SHA256 (RSA key exchange)"),
];

fn u16b(v: usize) -> [u8; 2] {
    u16::try_from(v).unwrap_or(u16::MAX).to_be_bytes()
}

fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut e = kind.to_be_bytes().to_vec();
    e.extend_from_slice(&u16b(data.len()));
    e.extend_from_slice(data);
    e
}

/// A ClientHello offering `version` and `suites`, for `host`.
fn client_hello(version: u16, suites: &[u16], host: &str) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    let mut random = [0u8; 32];
    let _ = aws_lc_rs::rand::fill(&mut random);
    body.extend_from_slice(&random);
    body.push(0); // no session id
    body.extend_from_slice(&u16b(suites.len() * 2));
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // null compression
    let mut exts = Vec::new();
    if host.parse::<std::net::IpAddr>().is_err() {
        let mut sni = Vec::new();
        sni.extend_from_slice(&u16b(host.len() + 3));
        sni.push(0);
        sni.extend_from_slice(&u16b(host.len()));
        sni.extend_from_slice(host.as_bytes());
        exts.extend(ext(0x0000, &sni));
    }
    exts.extend(ext(0x000a, &[0, 6, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18])); // groups
    exts.extend(ext(0x000b, &[1, 0])); // point formats
    if version >= 0x0303 {
        exts.extend(ext(
            0x000d,
            &[
                0, 10, 0x04, 0x01, 0x04, 0x03, 0x08, 0x04, 0x02, 0x01, 0x02, 0x03,
            ],
        ));
    }
    exts.extend(ext(0xff01, &[0])); // renegotiation info
    body.extend_from_slice(&u16b(exts.len()));
    body.extend_from_slice(&exts);
    let mut hs = vec![1u8];
    let len = u32::try_from(body.len()).unwrap_or(0).to_be_bytes();
    hs.extend_from_slice(len.get(1..4).unwrap_or(&[0, 0, 0]));
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&u16b(hs.len()));
    rec.extend_from_slice(&hs);
    rec
}

/// Offers `version` and `suites`; returns the (version, suite) the server chose, or `None`
/// when it refused (an alert or a closed connection).
pub async fn probe(
    host: &str,
    port: u16,
    version: u16,
    suites: &[u16],
) -> Result<Option<(u16, u16)>, String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(&client_hello(version, suites, host))
            .await
            .map_err(|e| e.to_string())?;
        let mut head = [0u8; 5];
        if s.read_exact(&mut head).await.is_err() {
            return Ok(None);
        }
        let [kind, _, _, hi, lo] = head;
        if kind != 0x16 {
            return Ok(None); // an alert: refused
        }
        let len = usize::from(u16::from_be_bytes([hi, lo])).min(16 * 1024);
        let mut rec = vec![0u8; len];
        if s.read_exact(&mut rec).await.is_err() {
            return Ok(None);
        }
        // ServerHello: type 2, length (3), version (2), random (32), session id (1 + n), suite (2)
        if rec.first() != Some(&2) {
            return Ok(None);
        }
        let word = |at: usize| {
            rec.get(at..at + 2)
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .map(u16::from_be_bytes)
        };
        let v = word(4);
        let sid = usize::from(*rec.get(38).unwrap_or(&0));
        let suite = word(39 + sid);
        Ok(v.zip(suite))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
}

/// The legacy protocol versions the server accepts (`TLS 1.0`, `TLS 1.1`).
pub async fn legacy_versions(host: &str, port: u16) -> Result<Vec<&'static str>, String> {
    let mut out = Vec::new();
    for (v, name) in [(0x0301u16, "TLS 1.0"), (0x0302, "TLS 1.1")] {
        if let Some((chosen, _)) = probe(host, port, v, &LEGACY).await? {
            if chosen <= 0x0302 {
                out.push(name);
            }
        }
    }
    Ok(out)
}

/// The weak suite the server agrees to over TLS 1.2, if any.
pub async fn weak_suite(host: &str, port: u16) -> Result<Option<&'static str>, String> {
    let suites: Vec<u16> = WEAK.iter().map(|(s, _)| *s).collect();
    Ok(probe(host, port, 0x0303, &suites)
        .await?
        .and_then(|(_, s)| WEAK.iter().find(|(w, _)| *w == s).map(|(_, n)| *n)))
}
