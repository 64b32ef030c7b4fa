//! Where a JSON pointer is in the text of a description: the 1-based line and column of the
//! node (for a mapping member, of its key), for YAML and JSON alike, so that reports can
//! point an editor or a code-scanning UI at the place to fix.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde_json::Value;

use crate::spec::{esc, unesc};

/// Positions of the nodes of one file.
pub enum Locator {
    /// A YAML file: its parsed document (lines and columns by path).
    Yaml(palisade_core::yaml::Document),
    /// A JSON file: (line, column) by hash of the JSON pointer.
    Json(HashMap<u64, (u32, u32)>),
    /// Nothing known (a text that could not be scanned).
    None,
}

fn hash(s: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

impl Locator {
    /// Reads `text` (YAML, or JSON when it starts with `{`): the positions of its nodes and
    /// its value tree; none when it is not well-formed.
    pub fn read(text: &str) -> Option<(Locator, Value)> {
        if text.trim_start().starts_with('{') {
            let v = serde_json::from_str(text).ok()?;
            Some((Locator::Json(json_positions(text)), v))
        } else {
            let mut d = palisade_core::yaml::parse(text).ok()?;
            let v = std::mem::take(&mut d.value);
            Some((Locator::Yaml(d), v))
        }
    }

    /// The positions of `text`'s nodes ([`Locator::None`] when it is not well-formed); for
    /// JSON without building its value tree.
    pub fn new(text: &str) -> Locator {
        if text.trim_start().starts_with('{') {
            return Locator::Json(json_positions(text));
        }
        Locator::read(text).map(|(l, _)| l).unwrap_or(Locator::None)
    }

    /// The line and column of the node at `pointer` (`/paths/~1users/get`), using `doc` (the
    /// document as read) to tell list indices from keys; the nearest ancestor that has a
    /// position when the node itself has none.
    pub fn position(&self, doc: &Value, pointer: &str) -> Option<(usize, usize)> {
        let tokens: Vec<String> = pointer.split('/').skip(1).map(unesc).collect();
        for n in (0..=tokens.len()).rev() {
            let part = tokens.get(..n).unwrap_or_default();
            if let Some(p) = self.exact(doc, part) {
                return Some(p);
            }
        }
        None
    }

    fn exact(&self, doc: &Value, tokens: &[String]) -> Option<(usize, usize)> {
        match self {
            Locator::Yaml(d) => {
                let mut path = String::new();
                let mut cur = Some(doc);
                for t in tokens {
                    match cur {
                        Some(Value::Array(a)) => {
                            path.push_str(&format!("[{t}]"));
                            cur = t.parse::<usize>().ok().and_then(|i| a.get(i));
                        }
                        other => {
                            if !path.is_empty() {
                                path.push('.');
                            }
                            path.push_str(t);
                            cur = other.and_then(|v| v.get(t.as_str()));
                        }
                    }
                }
                d.position_of(&path)
            }
            Locator::Json(m) => {
                let mut p = String::new();
                for t in tokens {
                    p.push('/');
                    p.push_str(&esc(t));
                }
                m.get(&hash(&p)).map(|&(l, c)| (l as usize, c as usize))
            }
            Locator::None => None,
        }
    }
}

/// One open container of the JSON scan: its pointer, and the key or index of the member
/// being read.
enum Open {
    Object(String, Option<String>),
    Array(String, usize),
}

/// The position of every node of a JSON text, by hash of its pointer. A text that is not
/// well-formed JSON gives the positions read before the fault (serde has already refused it).
fn json_positions(text: &str) -> HashMap<u64, (u32, u32)> {
    let b = text.as_bytes();
    // about one node for every 24 bytes of a pretty-printed description
    let mut out = HashMap::with_capacity(text.len() / 24);
    let mut stack: Vec<Open> = Vec::new();
    let (mut line, mut col) = (1u32, 1u32);
    let mut i = 0usize;
    // where the next value's position is noted: a member's key, or the value itself
    let mut pending_key_pos: Option<(u32, u32)> = None;
    while let Some(&c) = b.get(i) {
        match c {
            b'\n' => {
                line += 1;
                col = 1;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b',' | b':' => {}
            b'"' => {
                // a string: find its end (skipping escapes)
                let start = i;
                let (sl, sc) = (line, col);
                i += 1;
                col += 1;
                while let Some(&d) = b.get(i) {
                    if d == b'\\' {
                        i += 2;
                        col += 2;
                        continue;
                    }
                    if d == b'"' {
                        break;
                    }
                    if d == b'\n' {
                        line += 1;
                        col = 1;
                    } else if d & 0xC0 != 0x80 {
                        col += 1;
                    }
                    i += 1;
                }
                let raw = text
                    .get(start..=i.min(b.len().saturating_sub(1)))
                    .unwrap_or("");
                let expecting_key = matches!(stack.last(), Some(Open::Object(_, None)));
                if expecting_key {
                    let key: String = serde_json::from_str(raw).unwrap_or_default();
                    if let Some(Open::Object(_, k)) = stack.last_mut() {
                        *k = Some(key);
                    }
                    pending_key_pos = Some((sl, sc));
                } else {
                    note_value(&mut out, &mut stack, &mut pending_key_pos, (sl, sc));
                    advance(&mut stack);
                }
                i += 1;
                col += 1;
                continue;
            }
            b'{' | b'[' => {
                let ptr = note_value(&mut out, &mut stack, &mut pending_key_pos, (line, col));
                stack.push(if c == b'{' {
                    Open::Object(ptr, None)
                } else {
                    Open::Array(ptr, 0)
                });
            }
            b'}' | b']' => {
                stack.pop();
                advance(&mut stack);
            }
            _ => {
                // a number, true, false or null
                note_value(&mut out, &mut stack, &mut pending_key_pos, (line, col));
                advance(&mut stack);
                while let Some(&d) = b.get(i + 1) {
                    if matches!(d, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                        break;
                    }
                    i += 1;
                    col += 1;
                }
            }
        }
        i += 1;
        col += 1;
    }
    out
}

/// Notes a value that starts at `pos` (or at its member's key) and returns its pointer.
fn note_value(
    out: &mut HashMap<u64, (u32, u32)>,
    stack: &mut [Open],
    pending_key_pos: &mut Option<(u32, u32)>,
    pos: (u32, u32),
) -> String {
    let ptr = match stack.last() {
        None => String::new(),
        Some(Open::Object(p, k)) => format!("{p}/{}", esc(k.as_deref().unwrap_or(""))),
        Some(Open::Array(p, n)) => format!("{p}/{n}"),
    };
    let at = pending_key_pos.take().unwrap_or(pos);
    out.entry(hash(&ptr)).or_insert(at);
    ptr
}

/// Moves the innermost container past the member just read.
fn advance(stack: &mut [Open]) {
    match stack.last_mut() {
        Some(Open::Object(_, k)) => *k = None,
        Some(Open::Array(_, n)) => *n += 1,
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_positions() {
        let json = "{\n  \"paths\": {\n    \"/a\": {\"get\": {\"x\": [1, {\"y\": true}]}}\n  },\n  \"n\": 2\n}\n";
        let doc: Value = serde_json::from_str(json).unwrap();
        let l = Locator::new(json);
        assert_eq!(l.position(&doc, "/paths"), Some((2, 3)));
        assert_eq!(l.position(&doc, "/paths/~1a/get"), Some((3, 12)));
        assert_eq!(l.position(&doc, "/paths/~1a/get/x/1/y"), Some((3, 30)));
        assert_eq!(l.position(&doc, "/n"), Some((5, 3)));
        assert_eq!(l.position(&doc, "/paths/~1a/nope"), Some((3, 5)));
        let yaml = "paths:\n  /a:\n    get:\n      x:\n        - 1\n        - y: true\nn: 2\n";
        let doc = palisade_core::yaml::parse(yaml).unwrap().value;
        let l = Locator::new(yaml);
        assert_eq!(l.position(&doc, "/paths/~1a/get"), Some((3, 5)));
        assert_eq!(l.position(&doc, "/paths/~1a/get/x/1/y"), Some((6, 11)));
        assert_eq!(l.position(&doc, "/n"), Some((7, 1)));
    }
}
