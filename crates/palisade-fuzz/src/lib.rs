//! Fuzz properties. Each `pub fn` takes arbitrary bytes, builds an input from them, runs one
//! piece of Palisade's request-path code and checks what must hold for every input, beyond
//! "does not panic". The same functions are the cargo-fuzz targets in `fuzz/` (coverage-guided,
//! run for as long as one likes) and are driven by a seeded generator in this crate's tests,
//! so every CI run exercises them.
//!
//! A property that fails panics with the input that broke it: that is what a fuzzer needs.
#![allow(clippy::panic, clippy::indexing_slicing)]

use palisade_config::{PathMatch, Segment};
use palisade_contract::validate::{check_limits, Limits};
use serde_json::Value;

/// Reads bytes one at a time; past the end it yields zeros, so any input is a whole program.
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    /// Over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }
    /// The next byte, or 0.
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    /// Whether input remains.
    pub fn more(&self) -> bool {
        self.pos < self.data.len()
    }
    /// A short string from a small alphabet that includes the characters that matter to paths.
    fn word(&mut self) -> String {
        const ALPHABET: &[u8] = b"ab{}/%.-_~:;1\xc3\xa9";
        let n = usize::from(self.byte() % 5);
        let raw: Vec<u8> = (0..n)
            .map(|_| ALPHABET[usize::from(self.byte()) % ALPHABET.len()])
            .collect();
        String::from_utf8_lossy(&raw).into_owned()
    }
}

/// The route path matcher. A template built from the input (non-empty segments, as config
/// validation demands) matches the path made by filling its parameters with non-empty,
/// slash-free values, with or without a trailing `/` and in any ASCII case, and gives back
/// exactly those values; it never matches a path with a different number of segments; exact
/// and prefix matchers agree with their definitions.
pub fn path_match(data: &[u8]) {
    let mut b = Bytes::new(data);
    let n = usize::from(b.byte() % 6);
    let mut segs = Vec::new();
    let mut path = String::new();
    let mut expected = Vec::new();
    for i in 0..n {
        if b.byte() % 2 == 0 {
            let mut lit = b.word().replace('/', "");
            if lit.is_empty() {
                lit.push('a');
            }
            path.push('/');
            path.push_str(&lit);
            segs.push(Segment::Literal(lit));
        } else {
            let mut value = b.word().replace('/', "");
            if value.is_empty() {
                value.push('x');
            }
            path.push('/');
            path.push_str(&value);
            segs.push(Segment::Param(format!("p{i}")));
            expected.push((format!("p{i}"), value));
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    let t = PathMatch::Template(segs.clone());
    if !segs.is_empty() {
        assert!(t.matches(&path), "{segs:?} must match {path:?}");
        assert_eq!(t.params(&path), expected, "{segs:?} on {path:?}");
        let slash = format!("{path}/");
        assert!(t.matches(&slash), "{segs:?} must match {slash:?}");
        assert_eq!(t.params(&slash), expected, "{segs:?} on {slash:?}");
        assert!(t.matches(&path.to_ascii_uppercase()), "{segs:?}: case");
        assert!(
            !t.matches(&format!("{path}/extra")),
            "{segs:?}: one segment too many"
        );
    }
    // an arbitrary path against the template and the other matchers
    let other = String::from_utf8_lossy(&data[data.len().min(b.pos)..]).into_owned();
    let other = if other.starts_with('/') {
        other
    } else {
        format!("/{other}")
    };
    let trimmed = |p: &str| -> String {
        let p = if p.len() > 1 {
            p.strip_suffix('/').unwrap_or(p)
        } else {
            p
        };
        p.to_ascii_lowercase()
    };
    if t.matches(&other) {
        let o = trimmed(&other);
        assert_eq!(
            o.split('/').count() - 1,
            segs.len(),
            "{segs:?} on {other:?}"
        );
        for (s, part) in segs.iter().zip(o.split('/').skip(1)) {
            match s {
                Segment::Literal(l) => assert_eq!(l.to_ascii_lowercase(), part),
                Segment::Param(_) => assert!(!part.is_empty()),
            }
        }
    }
    assert!(PathMatch::Exact(path.clone()).matches(&path));
    assert_eq!(
        PathMatch::Exact(path.clone()).matches(&other),
        trimmed(&path) == trimmed(&other)
    );
    let prefix = PathMatch::Prefix(path.clone());
    assert!(prefix.matches(&path));
    if prefix.matches(&other) && path != "/" {
        assert!(
            other
                .to_ascii_lowercase()
                .starts_with(&path.to_ascii_lowercase()),
            "{path:?} is no prefix of {other:?}"
        );
        let rest = other.get(path.len()..).unwrap_or("");
        assert!(
            rest.is_empty() || rest.starts_with('/'),
            "{path:?} is no segment prefix of {other:?}"
        );
    }
}

/// The canonical request path: any input either is refused or has a canonical form that is
/// a fixed point (canonicalising it again changes nothing), whose strict decoding is the
/// decoded form, and that contains none of what the form refuses (an encoded separator,
/// `;`, a backslash, an empty or dot segment inside the path).
pub fn canonical_path(data: &[u8]) {
    use palisade_core::uri;
    const ALPHABET: &[u8] = b"/%.;\\2fFeE5cC0a~_+3bB9";
    let raw: String = std::iter::once('/')
        .chain(
            data.iter()
                .map(|&b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()])),
        )
        .collect();
    let Ok(c) = uri::canonical_path(&raw) else {
        return;
    };
    let Ok(again) = uri::canonical_path(&c.forward) else {
        panic!("{raw:?}: its canonical form {:?} is refused", c.forward);
    };
    assert_eq!(again.forward, c.forward, "{raw:?}: not a fixed point");
    assert_eq!(again.decoded, c.decoded, "{raw:?}");
    assert_eq!(
        uri::decode(&c.forward).as_deref(),
        Some(c.decoded.as_ref()),
        "{raw:?}"
    );
    let f = c.forward.as_ref();
    assert!(!f.contains(';') && !f.contains('\\'), "{raw:?} -> {f:?}");
    let lower = f.to_ascii_lowercase();
    assert!(
        !lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%3b"),
        "{f:?}"
    );
    let inner = f.strip_suffix('/').unwrap_or(f);
    assert!(
        inner == "/"
            || inner.is_empty()
            || inner
                .split('/')
                .skip(1)
                .all(|s| !s.is_empty() && s != "." && s != ".."),
        "{raw:?} -> {f:?}"
    );
}

/// Turns bytes into JSON text: a document built by the grammar (objects, arrays, strings
/// with escapes and multi-byte characters, numbers, literals), sometimes with one byte
/// damaged, so both the limits' scanner and the parser get exercised.
pub fn json_text(data: &[u8]) -> String {
    fn string(b: &mut Bytes<'_>, out: &mut String, tag: &str) {
        out.push('"');
        out.push_str(tag);
        for _ in 0..b.byte() % 8 {
            match b.byte() % 6 {
                0 => out.push_str("\\\""),
                1 => out.push_str("\\\\"),
                2 => out.push_str("\\u00e9"),
                3 => out.push('é'),
                _ => out.push('k'),
            }
        }
        out.push('"');
    }
    fn value(b: &mut Bytes<'_>, depth: usize, out: &mut String) {
        let kind = if depth > 10 || !b.more() {
            6
        } else {
            b.byte() % 8
        };
        match kind {
            0 | 1 => {
                out.push('{');
                for i in 0..b.byte() % 5 {
                    if i > 0 {
                        out.push(',');
                    }
                    // keys unique within their object: the parsed value, the oracle, keeps
                    // one of duplicates, the scanner sees all
                    string(b, out, &i.to_string());
                    out.push(':');
                    value(b, depth + 1, out);
                }
                out.push('}');
            }
            2 | 3 => {
                out.push('[');
                for i in 0..b.byte() % 6 {
                    if i > 0 {
                        out.push(',');
                    }
                    value(b, depth + 1, out);
                }
                out.push(']');
            }
            4 | 5 => string(b, out, ""),
            6 => out.push_str(&(i32::from(b.byte()) - 100).to_string()),
            _ => out.push_str(["true", "false", "null"][usize::from(b.byte() % 3)]),
        }
    }
    let mut b = Bytes::new(data);
    let damage = b.byte();
    let mut out = String::new();
    value(&mut b, 0, &mut out);
    if damage % 4 == 0 && !out.is_empty() {
        let at = usize::from(b.byte()) % out.len();
        if out.is_char_boundary(at) {
            out.insert(at, char::from(b"{}[]\\\",: "[usize::from(damage / 4) % 8]));
        }
    }
    out
}

fn measure(v: &Value, depth: usize, m: &mut (usize, usize, usize, usize)) {
    match v {
        Value::Object(o) => {
            m.0 = m.0.max(depth + 1);
            m.1 = m.1.max(o.len());
            for (k, x) in o {
                m.3 = m.3.max(k.len());
                measure(x, depth + 1, m);
            }
        }
        Value::Array(a) => {
            m.0 = m.0.max(depth + 1);
            m.2 = m.2.max(a.len());
            for x in a {
                measure(x, depth + 1, m);
            }
        }
        Value::String(s) => m.3 = m.3.max(s.len()),
        _ => {}
    }
}

/// The JSON limits scanner, against the parser as an oracle: for every document the parser
/// accepts, the scanner accepts it exactly when the parsed value is within the depth, keys
/// and items limits, and never accepts a decoded string longer than the limit. On any input,
/// it answers without panicking.
pub fn json_limits(data: &[u8]) {
    let (l, text) = match data.split_first() {
        Some((&k, rest)) => (
            Limits {
                max_depth: usize::from(k % 8) + 1,
                max_keys: usize::from(k / 8 % 4) + 1,
                max_items: usize::from(k / 32 % 4) + 1,
                max_string: usize::from(k % 13),
            },
            json_text(rest),
        ),
        None => return,
    };
    let verdict = check_limits(text.as_bytes(), &l);
    // raw bytes too: the scanner must not trip on anything
    let _ = check_limits(data, &l);
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return;
    };
    let mut m = (0, 0, 0, 0);
    measure(&v, 0, &mut m);
    let within = m.0 <= l.max_depth && m.2 <= l.max_items;
    // duplicate keys collapse in the parsed value, so keys only bound one way
    match verdict {
        Ok(()) => {
            assert!(
                within && m.1 <= l.max_keys,
                "{text} accepted, measures {m:?}, limits {l:?}"
            );
            assert!(
                m.3 <= l.max_string,
                "{text}: a string of {} accepted under {l:?}",
                m.3
            );
        }
        // refused although parsed within limits: only a key count (a duplicate key the
        // damage made) or a string whose escapes made it longer as written may explain it
        Err(e) if within && m.1 <= l.max_keys && m.3 <= l.max_string => {
            assert!(
                e.contains("keys") || e.contains("string"),
                "{text} refused ({e}) though within {l:?}: {m:?}"
            );
        }
        Err(_) => {}
    }
}

/// The form readers: any bytes give fields or an error, never a panic; a multipart body
/// built from fields reads back as those fields; an urlencoded body as its decoded pairs.
pub fn forms(data: &[u8]) {
    use palisade_core::form;
    let _ = form::urlencoded(data);
    let _ = form::multipart(data, "b");
    let _ = form::boundary(&String::from_utf8_lossy(data));
    let mut b = Bytes::new(data);
    let n = usize::from(b.byte() % 4);
    let mut body = Vec::new();
    let mut fields = Vec::new();
    for i in 0..n {
        let name = format!("f{i}{}", b.word().replace(['"', '\\', '\r', '\n'], ""));
        let len = usize::from(b.byte() % 16);
        let value: Vec<u8> = (0..len).map(|_| b.byte()).collect();
        // a value may not hold the delimiter
        if value.windows(4).any(|w| w == b"\r\n--") || value.starts_with(b"--") {
            return;
        }
        body.extend_from_slice(
            format!("--XB\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(&value);
        body.extend_from_slice(b"\r\n");
        fields.push((name, value));
    }
    body.extend_from_slice(b"--XB--\r\n");
    let parts = form::multipart(&body, "XB")
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&body)));
    let got: Vec<(String, Vec<u8>)> = parts
        .iter()
        .map(|p| (p.name.clone(), p.data.to_vec()))
        .collect();
    assert_eq!(got, fields, "{}", String::from_utf8_lossy(&body));
}

/// The JWS parser refuses or accepts any text without panicking, and whatever it accepts
/// names an algorithm from the closed list and is never `none`.
pub fn jws(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(p) = palisade_identity::jose::parse(&text, 16 * 1024) {
        assert_ne!(p.alg.name().to_ascii_lowercase(), "none");
    }
}

/// The injection detector and its normaliser answer on any text without panicking.
pub fn detect(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = palisade_threat::detect::detect(&text, &palisade_threat::Class::ALL);
}

/// The WebSocket frame reader: on any bytes it answers without panicking; a frame it accepts
/// has a head no longer than the bytes it was given, fits RFC 6455 (a known opcode, control
/// frames whole and at most 125 bytes, the top length bit clear), and a frame written back
/// with the same fields (in the shortest length form) reads the same. Masking twice with one
/// key gives the payload back.
pub fn websocket_frames(data: &[u8]) {
    use palisade_core::policies::websocket::{apply_mask, parse_head, Head};
    match parse_head(data) {
        Head::Incomplete => assert!(data.len() < 14, "{data:?} is long enough for any head"),
        Head::Invalid(_) => {}
        Head::Frame(h) => {
            assert!(h.head_len <= data.len());
            assert!(matches!(h.opcode, 0 | 1 | 2 | 8 | 9 | 10));
            if h.opcode >= 8 {
                assert!(h.fin && h.len <= 125);
            }
            assert!(h.len >> 63 == 0);
            let mut again = vec![u8::from(h.fin) << 7 | h.opcode];
            let m = u8::from(h.mask.is_some()) << 7;
            match h.len {
                n @ 0..=125 => again.push(m | n as u8),
                n @ 126..=0xffff => {
                    again.push(m | 126);
                    again.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    again.push(m | 127);
                    again.extend_from_slice(&n.to_be_bytes());
                }
            }
            if let Some(k) = h.mask {
                again.extend_from_slice(&k);
            }
            assert_eq!(parse_head(&again), Head::Frame(h), "{data:?}");
            if let Some(k) = h.mask {
                let payload = &data[h.head_len..];
                let mut twice = payload.to_vec();
                apply_mask(&mut twice, k, 3);
                apply_mask(&mut twice, k, 3);
                assert_eq!(twice, payload);
            }
        }
    }
}
