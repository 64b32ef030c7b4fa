//! YAML to a JSON value tree, remembering the line of every node so that errors found after
//! parsing (unknown fields, bad values, semantic checks) can point at the line to fix.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::Parser;
use yaml_rust2::scanner::TScalarStyle;
use yaml_rust2::Event;

/// A parsed document and the 1-based line of each node, keyed by path (`routes[0].match`).
#[derive(Debug, Default)]
pub struct Document {
    /// The value tree.
    pub value: Value,
    /// (hash of the path, line, column), sorted by hash: 16 bytes a node instead of a path
    /// string and a map entry (a config with 100,000 consumers has some 600,000 nodes). A
    /// collision of two 64-bit path hashes could only misplace the line of an error message.
    lines: Vec<(u64, u32, u32)>,
}

fn path_hash(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // fixed keys: the same path gives the same hash in every run
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// A YAML syntax error with its line.
#[derive(Debug)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl Document {
    /// Whether the document has a node at exactly `path` (also after its tree was taken).
    pub fn contains(&self, path: &str) -> bool {
        self.line_exact(path).is_some()
    }

    fn line_exact(&self, path: &str) -> Option<usize> {
        self.position_of(path).map(|(l, _)| l)
    }

    /// The 1-based line and column where the node at exactly `path` starts (for a mapping
    /// member, where its key starts).
    pub fn position_of(&self, path: &str) -> Option<(usize, usize)> {
        let h = path_hash(path);
        let i = self.lines.partition_point(|(k, _, _)| *k < h);
        match self.lines.get(i) {
            Some((k, l, c)) if *k == h => Some((
                usize::try_from(*l).ok()?,
                usize::try_from(*c).ok()?.saturating_add(1),
            )),
            _ => None,
        }
    }

    /// The line of the node at `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.line_exact(p) {
                return Some(l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

fn scalar(v: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(v);
    }
    match v.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = v.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Ok(u) = v.parse::<u64>() {
        return Value::Number(u.into());
    }
    let looks_numeric = v
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'-' || b == b'+' || b == b'.')
        && v.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    if looks_numeric {
        if let Some(n) = v.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(v)
}

/// A collection being read: its items so far, the anchor it defines (0: none) and the number
/// of nodes inside it, aliases counted as what they expand to.
enum Frame {
    Seq(Vec<Value>, usize, usize),
    Map(Map<String, Value>, Option<String>, usize, usize),
}

/// The most nodes that aliases may add to a document in all: an alias is expanded into a
/// copy of what it names, so a few hundred bytes of nested aliases ("billion laughs") would
/// otherwise become gigabytes. Real configs and API descriptions alias a few small blocks.
pub const MAX_ALIAS_NODES: usize = 100_000;
/// The deepest nesting of collections read.
pub const MAX_DEPTH: usize = 128;

/// Parses one YAML document. Anchors and aliases are expanded, within [`MAX_ALIAS_NODES`]
/// and [`MAX_DEPTH`] (past them the document is refused, never read in part); merge keys
/// are not supported.
pub fn parse(src: &str) -> Result<Document, SyntaxError> {
    parse_streaming(src, "", &mut |_, _| {})
}

/// [`parse`], handing each item of the top-level list `stream` (say `consumers`) to `sink`
/// with its index as soon as it is read, instead of keeping it in the tree (where it is
/// `null`): a list of 100,000 items is never held as one tree. Lines are noted as usual.
pub fn parse_streaming(
    src: &str,
    stream: &str,
    sink: &mut dyn FnMut(usize, Value),
) -> Result<Document, SyntaxError> {
    let mut parser = Parser::new_from_str(src);
    let mut doc = Document::default();
    let mut stack: Vec<(Frame, String)> = Vec::new();
    let mut anchors: HashMap<usize, (Value, usize)> = HashMap::new();
    let mut alias_nodes = 0usize;
    let mut root: Option<Value> = None;
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| SyntaxError {
            line: e.marker().line(),
            message: e.info().to_string(),
        })?;
        let line = mark.line();
        let col = mark.col();
        // The path of the node this event starts, and whether we are at a mapping key.
        let (child_path, at_key) = match stack.last() {
            None => (String::new(), false),
            Some((Frame::Seq(items, _, _), p)) => (format!("{p}[{}]", items.len()), false),
            Some((Frame::Map(_, None, _, _), _)) => (String::new(), true),
            Some((Frame::Map(_, Some(k), _, _), p)) => (
                if p.is_empty() {
                    k.clone()
                } else {
                    format!("{p}.{k}")
                },
                false,
            ),
        };
        // a finished node: its value, the anchor it defines and its size in nodes
        let finished: Option<(Value, usize, usize)> = match ev {
            Event::StreamStart | Event::DocumentStart | Event::Nothing => None,
            Event::DocumentEnd | Event::StreamEnd => break,
            Event::Scalar(v, style, anchor, _) => {
                if at_key {
                    if let Some((Frame::Map(_, k, _, _), p)) = stack.last_mut() {
                        let path = if p.is_empty() {
                            v.clone()
                        } else {
                            format!("{p}.{v}")
                        };
                        note(&mut doc, &path, line, col);
                        *k = Some(v);
                    }
                    None
                } else {
                    note(&mut doc, &child_path, line, col);
                    Some((scalar(v, style), anchor, 1))
                }
            }
            Event::Alias(id) => {
                if at_key {
                    return Err(SyntaxError {
                        line,
                        message: "aliases cannot be used as mapping keys".into(),
                    });
                }
                let (v, size) = anchors.get(&id).cloned().ok_or(SyntaxError {
                    line,
                    message: "unknown alias".into(),
                })?;
                alias_nodes = alias_nodes.saturating_add(size);
                if alias_nodes > MAX_ALIAS_NODES {
                    return Err(SyntaxError {
                        line,
                        message: format!(
                            "aliases expand to more than {MAX_ALIAS_NODES} nodes; write the repeated blocks out or alias fewer, smaller ones"
                        ),
                    });
                }
                Some((v, 0, size))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) if at_key => {
                let _ = anchor;
                return Err(SyntaxError {
                    line,
                    message: "complex mapping keys are not supported".into(),
                });
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if stack.len() >= MAX_DEPTH => {
                return Err(SyntaxError {
                    line,
                    message: format!("nested deeper than {MAX_DEPTH} levels"),
                });
            }
            Event::SequenceStart(anchor, _) => {
                note(&mut doc, &child_path, line, col);
                stack.push((Frame::Seq(Vec::new(), anchor, 0), child_path));
                None
            }
            Event::MappingStart(anchor, _) => {
                note(&mut doc, &child_path, line, col);
                stack.push((Frame::Map(Map::new(), None, anchor, 0), child_path));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some((Frame::Seq(items, anchor, n), _)) => {
                    Some((Value::Array(items), anchor, n.saturating_add(1)))
                }
                _ => {
                    return Err(SyntaxError {
                        line,
                        message: "unbalanced sequence".into(),
                    })
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some((Frame::Map(m, _, anchor, n), _)) => {
                    Some((Value::Object(m), anchor, n.saturating_add(1)))
                }
                _ => {
                    return Err(SyntaxError {
                        line,
                        message: "unbalanced mapping".into(),
                    })
                }
            },
        };
        if let Some((val, anchor, size)) = finished {
            if anchor > 0 {
                anchors.insert(anchor, (val.clone(), size));
            }
            let streamed = stack.len() == 2 && !stream.is_empty();
            match stack.last_mut() {
                None => root = Some(val),
                Some((Frame::Seq(items, _, n), p)) if streamed && p.as_str() == stream => {
                    *n = n.saturating_add(size);
                    sink(items.len(), val);
                    items.push(Value::Null);
                }
                Some((Frame::Seq(items, _, n), _)) => {
                    *n = n.saturating_add(size);
                    items.push(val);
                }
                Some((Frame::Map(m, k, _, n), _)) => {
                    *n = n.saturating_add(size);
                    if let Some(k) = k.take() {
                        if m.contains_key(&k) {
                            return Err(SyntaxError {
                                line,
                                message: format!("duplicate key `{k}`"),
                            });
                        }
                        m.insert(k, val);
                    }
                }
            }
        }
    }
    doc.value = root.unwrap_or(Value::Null);
    // the first line noted for a path wins (a mapping key's line, before its value's)
    doc.lines.sort_by_key(|(h, _, _)| *h);
    doc.lines.dedup_by_key(|(h, _, _)| *h);
    doc.lines.shrink_to_fit();
    Ok(doc)
}

fn note(doc: &mut Document, path: &str, line: usize, col: usize) {
    doc.lines.push((
        path_hash(path),
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_lines() {
        let d = parse("a: 1\nb:\n  - x: \"2\"\n    y: true\n  - 3.5\nc: ~\n").unwrap();
        assert_eq!(
            d.value,
            serde_json::json!({"a": 1, "b": [{"x": "2", "y": true}, 3.5], "c": null})
        );
        assert_eq!(d.line_of("a"), Some(1));
        assert_eq!(d.line_of("b[0].y"), Some(4));
        assert_eq!(d.line_of("b[1]"), Some(5));
        assert_eq!(d.line_of("b[0].nope"), Some(3));
        assert_eq!(d.position_of("b[0].y"), Some((4, 5)));
        assert_eq!(d.position_of("b[1]"), Some((5, 5)));
        assert_eq!(d.position_of("b[0].nope"), None);
    }

    #[test]
    fn alias_expansion_and_depth_are_bounded() {
        // "billion laughs": nine levels of ten aliases each would be 10^9 nodes
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(src.len() < 1000);
        let started = std::time::Instant::now();
        let e = parse(&src).unwrap_err();
        assert!(e.message.contains("aliases expand"), "{}", e.message);
        assert!(e.line >= 5, "the line where the budget ran out: {}", e.line);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // a few small aliases are fine
        let ok = "base: &b {timeout: 1s, retries: 2}\na: *b\nb: *b\nc: [*b, *b]\n";
        assert_eq!(parse(ok).unwrap().value["c"][1]["retries"], 2);
        // nesting deeper than the bound is refused, also in flow style
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nested deeper"), "{}", e.message);
        let fine = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&fine).is_ok());
    }

    #[test]
    fn a_top_level_list_can_be_streamed() {
        let src = "a: [1, 2]\nitems:\n  - {k: 1}\n  - k: 2\n    deep: [x]\nb: {items: [3]}\n";
        let mut got = Vec::new();
        let d = parse_streaming(src, "items", &mut |i, v| got.push((i, v))).unwrap();
        assert_eq!(
            got,
            [
                (0, serde_json::json!({"k": 1})),
                (1, serde_json::json!({"k": 2, "deep": ["x"]}))
            ]
        );
        // the tree keeps a placeholder per item, other lists as they are, and every line
        assert_eq!(d.value["items"], serde_json::json!([null, null]));
        assert_eq!(d.value["b"]["items"], serde_json::json!([3]));
        assert_eq!(d.value["a"], serde_json::json!([1, 2]));
        assert_eq!(d.line_of("items[1].deep"), Some(5));
        assert!(d.contains("items[1]"));
    }

    #[test]
    fn anchors_and_duplicates() {
        let d = parse("a: &x {k: v}\nb: *x\n").unwrap();
        assert_eq!(d.value["b"]["k"], "v");
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("duplicate"));
    }

    #[test]
    fn syntax_error_has_line() {
        let e = parse("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
    }
}
