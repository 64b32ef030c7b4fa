//! The one bounded JSON reader of the request path. Every policy that reads a JSON body
//! (`contract`, `threat`, `pii`) gets its tree from [`parse`], which refuses a document
//! nested deeper than [`MAX_DEPTH`] before any parser recursion: a walker over a tree from
//! here never meets a node it would have to skip, so no input passes uninspected because it
//! is deep. [`walk`] is the read-only walk they share.

use serde_json::Value;

/// The deepest nesting of arrays and objects a body may have.
pub const MAX_DEPTH: usize = 64;

/// Why a JSON body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Not valid JSON.
    Syntax,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonError::Syntax => f.write_str("is not valid JSON"),
            JsonError::TooDeep => write!(f, "is nested deeper than {MAX_DEPTH} levels"),
        }
    }
}

/// The index of the quote that closes the string opening at `raw[start]` (escapes skipped),
/// or the text's length when it is not closed.
pub fn string_end(raw: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while let Some(&c) = raw.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    raw.len()
}

/// The nesting depth of JSON text (`1` for `[]`, `0` for a scalar), by a scan of its bytes
/// that skips strings; on malformed text it is what the brackets say.
pub fn text_depth(raw: &[u8]) -> usize {
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    while let Some(&b) = raw.get(i) {
        match b {
            b'"' => i = string_end(raw, i),
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

/// Parses a JSON body, refusing one nested deeper than [`MAX_DEPTH`].
pub fn parse(raw: &[u8]) -> Result<Value, JsonError> {
    if text_depth(raw) > MAX_DEPTH {
        return Err(JsonError::TooDeep);
    }
    serde_json::from_slice(raw).map_err(|_| JsonError::Syntax)
}

/// What a [`walk`] visitor sees.
#[derive(Debug)]
pub enum Node<'a> {
    /// An object key, before its value; the path is the object's.
    Key(&'a str),
    /// A string leaf.
    Str(&'a str),
}

/// What the visitor wants next.
#[derive(Debug)]
pub enum Step<B> {
    /// Go on (into the key's value).
    Go,
    /// Skip the key's value.
    Skip,
    /// Stop with this result.
    Stop(B),
}

/// Walks `v` depth-first in document order, calling `visit` with the dotted path of each node
/// (`a.0.b`) for every key and string leaf; returns the first `Stop`. A tree deeper than
/// [`MAX_DEPTH`] is refused, never walked in part (trees from [`parse`] never are).
pub fn walk<'a, B>(
    v: &'a Value,
    visit: &mut impl FnMut(&str, Node<'a>) -> Step<B>,
) -> Result<Option<B>, JsonError> {
    fn go<'a, B>(
        v: &'a Value,
        path: &mut String,
        depth: usize,
        visit: &mut impl FnMut(&str, Node<'a>) -> Step<B>,
    ) -> Result<Option<B>, JsonError> {
        let child = |path: &mut String, k: &str| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(k);
            len
        };
        match v {
            Value::String(s) => Ok(match visit(path, Node::Str(s)) {
                Step::Stop(b) => Some(b),
                Step::Go | Step::Skip => None,
            }),
            Value::Array(a) => {
                if depth >= MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                for (i, x) in a.iter().enumerate() {
                    let len = child(path, &i.to_string());
                    let r = go(x, path, depth + 1, visit);
                    path.truncate(len);
                    if let Some(b) = r? {
                        return Ok(Some(b));
                    }
                }
                Ok(None)
            }
            Value::Object(m) => {
                if depth >= MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                for (k, x) in m {
                    match visit(path, Node::Key(k)) {
                        Step::Stop(b) => return Ok(Some(b)),
                        Step::Skip => continue,
                        Step::Go => {}
                    }
                    let len = child(path, k);
                    let r = go(x, path, depth + 1, visit);
                    path.truncate(len);
                    if let Some(b) = r? {
                        return Ok(Some(b));
                    }
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }
    go(v, &mut String::new(), 0, visit)
}

/// Whether `v` is nested deeper than [`MAX_DEPTH`] (iterative: no recursion on deep input).
pub fn too_deep(v: &Value) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(v, 0)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(m) => Box::new(m.values()),
            _ => continue,
        };
        if d + 1 > MAX_DEPTH {
            return true;
        }
        stack.extend(children.map(|c| (c, d + 1)));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize, leaf: &str) -> String {
        format!("{}\"{leaf}\"{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_is_bounded_before_parsing() {
        assert_eq!(text_depth(br#"{"a": "[[[[", "b": [1, {"c": []}]}"#), 4);
        assert!(parse(nested(MAX_DEPTH, "x").as_bytes()).is_ok());
        assert_eq!(
            parse(nested(MAX_DEPTH + 1, "x").as_bytes()),
            Err(JsonError::TooDeep)
        );
        // deeper than serde_json's own recursion limit: still TooDeep, not a syntax error
        assert_eq!(parse(nested(500, "x").as_bytes()), Err(JsonError::TooDeep));
        assert_eq!(parse(b"{\"a\": }"), Err(JsonError::Syntax));
    }

    #[test]
    fn the_walk_sees_every_key_and_string_with_its_path() {
        let v: Value =
            serde_json::from_str(r#"{"a": ["x", {"b": "y"}], "skip": {"c": "z"}}"#).unwrap();
        let mut seen = Vec::new();
        let r: Result<Option<()>, _> = walk(&v, &mut |p, n| {
            seen.push(format!("{p}:{n:?}"));
            match n {
                Node::Key("skip") => Step::Skip,
                _ => Step::Go,
            }
        });
        assert_eq!(r, Ok(None));
        assert_eq!(
            seen,
            [
                r#":Key("a")"#,
                r#"a.0:Str("x")"#,
                r#"a.1:Key("b")"#,
                r#"a.1.b:Str("y")"#,
                r#":Key("skip")"#
            ]
        );
        let deep: Value = serde_json::from_str(&nested(MAX_DEPTH, "evil")).unwrap();
        let found = walk(&deep, &mut |_, n| match n {
            Node::Str("evil") => Step::Stop(()),
            _ => Step::Go,
        });
        assert_eq!(found, Ok(Some(())), "the deepest allowed leaf is reached");
        assert!(!too_deep(&deep));
        let mut deeper = deep;
        for _ in 0..2 {
            deeper = Value::Array(vec![deeper]);
        }
        assert!(too_deep(&deeper));
        assert_eq!(
            walk(&deeper, &mut |_, _| Step::<()>::Go),
            Err(JsonError::TooDeep)
        );
    }
}
