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
    lines: HashMap<String, usize>,
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
    /// The line of the node at `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
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

enum Frame {
    Seq(Vec<Value>, usize),
    Map(Map<String, Value>, Option<String>, usize),
}

/// Parses one YAML document. Anchors and aliases are expanded; merge keys are not supported.
pub fn parse(src: &str) -> Result<Document, SyntaxError> {
    let mut parser = Parser::new_from_str(src);
    let mut doc = Document::default();
    let mut stack: Vec<(Frame, String)> = Vec::new();
    let mut anchors: HashMap<usize, Value> = HashMap::new();
    let mut root: Option<Value> = None;
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| SyntaxError {
            line: e.marker().line(),
            message: e.info().to_string(),
        })?;
        let line = mark.line();
        // The path of the node this event starts, and whether we are at a mapping key.
        let (child_path, at_key) = match stack.last() {
            None => (String::new(), false),
            Some((Frame::Seq(items, _), p)) => (format!("{p}[{}]", items.len()), false),
            Some((Frame::Map(_, None, _), _)) => (String::new(), true),
            Some((Frame::Map(_, Some(k), _), p)) => (
                if p.is_empty() {
                    k.clone()
                } else {
                    format!("{p}.{k}")
                },
                false,
            ),
        };
        let finished: Option<(Value, usize)> = match ev {
            Event::StreamStart | Event::DocumentStart | Event::Nothing => None,
            Event::DocumentEnd | Event::StreamEnd => break,
            Event::Scalar(v, style, anchor, _) => {
                if at_key {
                    if let Some((Frame::Map(_, k, _), p)) = stack.last_mut() {
                        let path = if p.is_empty() {
                            v.clone()
                        } else {
                            format!("{p}.{v}")
                        };
                        doc.lines.entry(path).or_insert(line);
                        *k = Some(v);
                    }
                    None
                } else {
                    let val = scalar(v, style);
                    if anchor > 0 {
                        anchors.insert(anchor, val.clone());
                    }
                    doc.lines.entry(child_path).or_insert(line);
                    Some((val, 0))
                }
            }
            Event::Alias(id) => {
                if at_key {
                    return Err(SyntaxError {
                        line,
                        message: "aliases cannot be used as mapping keys".into(),
                    });
                }
                let v = anchors.get(&id).cloned().ok_or(SyntaxError {
                    line,
                    message: "unknown alias".into(),
                })?;
                Some((v, 0))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) if at_key => {
                let _ = anchor;
                return Err(SyntaxError {
                    line,
                    message: "complex mapping keys are not supported".into(),
                });
            }
            Event::SequenceStart(anchor, _) => {
                doc.lines.entry(child_path.clone()).or_insert(line);
                stack.push((Frame::Seq(Vec::new(), anchor), child_path));
                None
            }
            Event::MappingStart(anchor, _) => {
                doc.lines.entry(child_path.clone()).or_insert(line);
                stack.push((Frame::Map(Map::new(), None, anchor), child_path));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some((Frame::Seq(items, anchor), _)) => Some((Value::Array(items), anchor)),
                _ => {
                    return Err(SyntaxError {
                        line,
                        message: "unbalanced sequence".into(),
                    })
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some((Frame::Map(m, _, anchor), _)) => Some((Value::Object(m), anchor)),
                _ => {
                    return Err(SyntaxError {
                        line,
                        message: "unbalanced mapping".into(),
                    })
                }
            },
        };
        if let Some((val, anchor)) = finished {
            if anchor > 0 {
                anchors.insert(anchor, val.clone());
            }
            match stack.last_mut() {
                None => root = Some(val),
                Some((Frame::Seq(items, _), _)) => items.push(val),
                Some((Frame::Map(m, k, _), _)) => {
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
    Ok(doc)
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
