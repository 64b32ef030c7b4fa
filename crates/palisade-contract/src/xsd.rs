//! The XML Schema of a WSDL (`<types>`), enforced on SOAP bodies: the operation's element
//! must be what its declaration says, all the way down. Elements in their order and number
//! (`sequence`, `choice`, `all`, `minOccurs`, `maxOccurs`), no element or attribute the schema
//! does not declare, `nillable`, and simple types with their facets (`length`, `minLength`,
//! `maxLength`, `pattern`, `enumeration`, `minInclusive`/`maxInclusive`,
//! `minExclusive`/`maxExclusive`, `totalDigits`, `fractionDigits`) over the built-in types a
//! service uses (strings, booleans, the integer family with its ranges, decimals, floats,
//! dates and times, binary). Bounded: a tree of at most [`MAX_NODES`] elements and
//! [`MAX_DEPTH`] levels is read; past that the body is refused, never passed unchecked.
//!
//! What a schema uses that this reader does not know (`xs:import` of another file, `\i` in a
//! pattern, substitution groups, `xs:redefine`) stops the policy from building, with what it
//! was: it never validates against half a schema.

use std::collections::HashMap;

use quick_xml::events::Event;
use quick_xml::Reader;

use palisade_core::xml::{QName, Scope};

const XS: &str = "http://www.w3.org/2001/XMLSchema";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The most elements of a body (or of a WSDL's schemas) read.
pub const MAX_NODES: usize = 100_000;
/// The deepest nesting read.
pub const MAX_DEPTH: usize = 128;

/// An element of a document, with its namespaces resolved.
#[derive(Debug, Default, Clone)]
pub struct Node {
    /// Its name.
    pub name: QName,
    /// Attributes: resolved name, value (unescaped), and for a QName value its resolution.
    pub attrs: Vec<(QName, String, Option<QName>)>,
    /// Child elements.
    pub children: Vec<Node>,
    /// Its text (all text children joined).
    pub text: String,
}

impl Node {
    fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(q, _, _)| q.0.is_empty() && q.1 == local)
            .map(|(_, v, _)| v.as_str())
    }

    fn qattr(&self, local: &str) -> Option<&QName> {
        self.attrs
            .iter()
            .find(|(q, _, _)| q.0.is_empty() && q.1 == local)
            .and_then(|(_, _, r)| r.as_ref())
    }

    fn is(&self, local: &str) -> bool {
        self.name.0 == XS && self.name.1 == local
    }
}

/// Reads `text` into a tree, from the first element whose path of names ends with `within`
/// (`(namespace, local)`; an empty namespace or a `*` local name matches any), so a WSDL's
/// `<types>` or a Body's first child can be read alone; `within` empty: the root.
pub fn tree(text: &str, within: &[(&str, &str)]) -> Result<Option<Node>, String> {
    let mut r = Reader::from_str(text);
    r.config_mut().check_end_names = true;
    let mut scope = Scope::default();
    let mut path: Vec<QName> = Vec::new();
    let mut stack: Vec<Node> = Vec::new();
    let mut nodes = 0usize;
    loop {
        let ev = r
            .read_event()
            .map_err(|e| format!("not well-formed XML ({e})"))?;
        let (e, empty) = match ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                scope.pop();
                path.pop();
                if let Some(done) = stack.pop() {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => return Ok(Some(done)),
                    }
                }
                continue;
            }
            Event::Text(t) if !stack.is_empty() => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&t);
                }
                continue;
            }
            Event::CData(t) if !stack.is_empty() => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&t);
                }
                continue;
            }
            Event::GeneralRef(g) if !stack.is_empty() => {
                let v = palisade_core::xml::reference(&g)
                    .ok_or("an entity reference other than the five of XML")?;
                if let Some(n) = stack.last_mut() {
                    n.text.push(v);
                }
                continue;
            }
            Event::DocType(_) => return Err("a DOCTYPE (not read)".into()),
            Event::Eof => return Ok(None),
            _ => continue,
        };
        let name = scope.enter(&e)?;
        path.push(name.clone());
        let inside = !stack.is_empty();
        let starts = !inside
            && path.len() >= within.len()
            && path
                .iter()
                .rev()
                .zip(within.iter().rev())
                .all(|(q, (ns, l))| (ns.is_empty() || q.0 == *ns) && (*l == "*" || q.1 == *l));
        if inside || starts {
            nodes += 1;
            if nodes > MAX_NODES {
                return Err(format!("more than {MAX_NODES} elements"));
            }
            if stack.len() >= MAX_DEPTH {
                return Err(format!("nested deeper than {MAX_DEPTH} levels"));
            }
            let mut n = Node {
                name,
                ..Node::default()
            };
            for a in e.attributes() {
                let a = a.map_err(|e| format!("a malformed attribute ({e})"))?;
                let k = a.key.0.to_string();
                if k == "xmlns" || k.starts_with("xmlns:") {
                    continue;
                }
                let v = palisade_core::xml::unescape(&a.value)
                    .ok_or("an entity reference other than the five of XML in an attribute")?;
                let q = scope
                    .resolve(&k, false)
                    .ok_or("an undeclared namespace prefix")?;
                let resolved = scope.resolve(v.trim(), true);
                n.attrs.push((q, v, resolved));
            }
            if empty {
                scope.pop();
                path.pop();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(n),
                    None => return Ok(Some(n)),
                }
            } else {
                stack.push(n);
            }
        } else if empty {
            scope.pop();
            path.pop();
        } else if path.len() > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
    }
}

/// A type.
#[derive(Debug, Clone)]
enum Type {
    Builtin(String),
    Named(QName),
    Simple(Box<Simple>),
    Complex(Box<Complex>),
}

#[derive(Debug, Clone)]
struct Simple {
    base: Type,
    facets: Facets,
    /// `xs:list` / `xs:union`: read as text, facets only.
    loose: bool,
}

#[derive(Debug, Clone, Default)]
struct Facets {
    enumeration: Vec<String>,
    pattern: Option<regex::Regex>,
    length: Option<usize>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    min_inclusive: Option<f64>,
    max_inclusive: Option<f64>,
    min_exclusive: Option<f64>,
    max_exclusive: Option<f64>,
    total_digits: Option<usize>,
    fraction_digits: Option<usize>,
}

#[derive(Debug, Clone)]
enum Content {
    Empty,
    Group(Group),
    /// `simpleContent`: text of this type (and attributes).
    Text(Type),
}

#[derive(Debug, Clone)]
struct Complex {
    content: Content,
    mixed: bool,
    attributes: Vec<Attribute>,
    any_attribute: bool,
}

#[derive(Debug, Clone)]
struct Attribute {
    name: String,
    ty: Type,
    required: bool,
}

#[derive(Debug, Clone)]
enum Group {
    Sequence(Vec<Particle>),
    Choice(Vec<Particle>),
    All(Vec<Particle>),
}

#[derive(Debug, Clone)]
struct Particle {
    min: u32,
    max: Option<u32>,
    term: Term,
}

#[derive(Debug, Clone)]
enum Term {
    Element(Box<Decl>),
    Ref(QName),
    Group(Group),
    Any,
}

#[derive(Debug, Clone)]
struct Decl {
    name: QName,
    ty: Type,
    nillable: bool,
}

/// The schemas of a WSDL.
#[derive(Debug, Default)]
pub struct Schema {
    elements: HashMap<QName, Decl>,
    types: HashMap<QName, Type>,
}

fn occurs(n: &Node) -> Result<(u32, Option<u32>), String> {
    let min = match n.attr("minOccurs") {
        None => 1,
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("minOccurs `{v}` is not a number"))?,
    };
    let max = match n.attr("maxOccurs").map(str::trim) {
        None => Some(1),
        Some("unbounded") => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| format!("maxOccurs `{v}` is not a number"))?,
        ),
    };
    Ok((min, max))
}

/// Whether a pattern subtracts a class from a class (`[a-z-[aeiou]]`): `-[` inside a class.
fn subtracts(p: &str) -> bool {
    let (mut depth, mut escaped, mut prev) = (0usize, false, ' ');
    for c in p.chars() {
        if escaped {
            escaped = false;
            prev = 'x';
            continue;
        }
        match c {
            '\\' => escaped = true,
            '[' if depth > 0 && prev == '-' => return true,
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev = c;
    }
    false
}

/// An XSD regular expression as a Rust one (implicitly anchored).
fn pattern(p: &str) -> Result<String, String> {
    if p.contains("\\i")
        || p.contains("\\c")
        || p.contains("\\I")
        || p.contains("\\C")
        || subtracts(p)
    {
        return Err(format!(
            "the pattern `{p}` uses XML Schema regex features (\\i, \\c, class subtraction) this reader does not know"
        ));
    }
    Ok(p.to_string())
}

struct Reading<'a> {
    tns: &'a str,
    qualified: bool,
}

impl Schema {
    /// Reads every `xs:schema` under the WSDL's `types`.
    pub fn of_wsdl(wsdl: &str) -> Result<Schema, String> {
        let mut s = Schema::default();
        // WSDL 1.1, or else WSDL 2.0
        let types = match tree(wsdl, &[("http://schemas.xmlsoap.org/wsdl/", "types")])? {
            Some(t) => Some(t),
            None => tree(wsdl, &[("http://www.w3.org/ns/wsdl", "types")])?,
        };
        let Some(types) = types else {
            return Ok(s);
        };
        for schema in types.children.iter().filter(|n| n.is("schema")) {
            let tns = schema.attr("targetNamespace").unwrap_or("").to_string();
            let rd = Reading {
                tns: &tns,
                qualified: schema.attr("elementFormDefault") == Some("qualified"),
            };
            for item in &schema.children {
                let name = item.attr("name").map(|n| (tns.clone(), n.to_string()));
                match (item.name.1.as_str(), name) {
                    ("element", Some(q)) if item.name.0 == XS => {
                        let d = s.decl(item, q.clone(), &rd)?;
                        s.elements.insert(q, d);
                    }
                    ("complexType", Some(q)) if item.name.0 == XS => {
                        let c = s.complex(item, &rd)?;
                        s.types.insert(q, Type::Complex(Box::new(c)));
                    }
                    ("simpleType", Some(q)) if item.name.0 == XS => {
                        let t = s.simple(item)?;
                        s.types.insert(q, t);
                    }
                    ("import" | "include" | "redefine", _)
                        if item.name.0 == XS
                            && (item.attr("schemaLocation").is_some()
                                || item.name.1 == "redefine") =>
                    {
                        return Err(format!(
                            "the WSDL's schema {}s another file ({}): put the schemas inline in <types>",
                            item.name.1,
                            item.attr("schemaLocation").unwrap_or("?")
                        ));
                    }
                    // an import of a namespace another inline schema defines
                    ("import", _) => {}
                    ("annotation" | "attribute" | "attributeGroup" | "group" | "notation", _) => {}
                    (other, _) if item.name.0 == XS => {
                        return Err(format!("the schema's `{other}` is not read by this policy"))
                    }
                    _ => {}
                }
            }
        }
        Ok(s)
    }

    /// Whether the schema declares the element `q`.
    pub fn declares(&self, q: &QName) -> bool {
        self.elements.contains_key(q)
    }

    fn type_of(&self, n: &Node, rd: &Reading<'_>) -> Result<Type, String> {
        if let Some(t) = n.qattr("type") {
            return Ok(if t.0 == XS {
                Type::Builtin(t.1.clone())
            } else {
                Type::Named(t.clone())
            });
        }
        if let Some(c) = n.children.iter().find(|c| c.is("complexType")) {
            return Ok(Type::Complex(Box::new(self.complex(c, rd)?)));
        }
        if let Some(c) = n.children.iter().find(|c| c.is("simpleType")) {
            return self.simple(c);
        }
        Ok(Type::Builtin("anyType".into()))
    }

    fn decl(&self, n: &Node, name: QName, rd: &Reading<'_>) -> Result<Decl, String> {
        if n.attr("substitutionGroup").is_some() || n.attr("abstract") == Some("true") {
            return Err(format!(
                "the element `{}` uses substitution groups, which this policy does not read",
                name.1
            ));
        }
        Ok(Decl {
            ty: self.type_of(n, rd)?,
            nillable: n.attr("nillable") == Some("true"),
            name,
        })
    }

    fn simple(&self, n: &Node) -> Result<Type, String> {
        let Some(inner) = n
            .children
            .iter()
            .find(|c| c.is("restriction") || c.is("list") || c.is("union"))
        else {
            return Ok(Type::Builtin("string".into()));
        };
        if !inner.is("restriction") {
            return Ok(Type::Simple(Box::new(Simple {
                base: Type::Builtin("string".into()),
                facets: Facets::default(),
                loose: true,
            })));
        }
        let base = match inner.qattr("base") {
            Some(b) if b.0 == XS => Type::Builtin(b.1.clone()),
            Some(b) => Type::Named(b.clone()),
            None => match inner.children.iter().find(|c| c.is("simpleType")) {
                Some(s) => self.simple(s)?,
                None => Type::Builtin("string".into()),
            },
        };
        let mut f = Facets::default();
        let mut patterns = Vec::new();
        for c in &inner.children {
            let v = c.attr("value").unwrap_or("").to_string();
            let num = || {
                v.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("the facet {} `{v}` is not a number", c.name.1))
            };
            let count = || {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("the facet {} `{v}` is not a count", c.name.1))
            };
            match c.name.1.as_str() {
                "enumeration" => f.enumeration.push(v.clone()),
                "pattern" => patterns.push(pattern(&v)?),
                "length" => f.length = Some(count()?),
                "minLength" => f.min_length = Some(count()?),
                "maxLength" => f.max_length = Some(count()?),
                "minInclusive" => f.min_inclusive = Some(num()?),
                "maxInclusive" => f.max_inclusive = Some(num()?),
                "minExclusive" => f.min_exclusive = Some(num()?),
                "maxExclusive" => f.max_exclusive = Some(num()?),
                "totalDigits" => f.total_digits = Some(count()?),
                "fractionDigits" => f.fraction_digits = Some(count()?),
                _ => {}
            }
        }
        if !patterns.is_empty() {
            let joined = patterns
                .iter()
                .map(|p| format!("(?:{p})"))
                .collect::<Vec<_>>()
                .join("|");
            f.pattern = Some(regex::Regex::new(&format!("^(?:{joined})$")).map_err(|e| {
                format!("a pattern facet is not a regular expression this policy reads ({e})")
            })?);
        }
        Ok(Type::Simple(Box::new(Simple {
            base,
            facets: f,
            loose: false,
        })))
    }

    fn complex(&self, n: &Node, rd: &Reading<'_>) -> Result<Complex, String> {
        let mut c = Complex {
            content: Content::Empty,
            mixed: n.attr("mixed") == Some("true"),
            attributes: Vec::new(),
            any_attribute: false,
        };
        for part in &n.children {
            match part.name.1.as_str() {
                "sequence" | "choice" | "all" if part.name.0 == XS => {
                    c.content = Content::Group(self.group(part, rd)?)
                }
                "attribute" if part.name.0 == XS => c.attributes.push(self.attribute(part)?),
                "anyAttribute" if part.name.0 == XS => c.any_attribute = true,
                "simpleContent" if part.name.0 == XS => {
                    let ext = part
                        .children
                        .iter()
                        .find(|e| e.is("extension") || e.is("restriction"))
                        .ok_or("a simpleContent without extension")?;
                    let base = match ext.qattr("base") {
                        Some(b) if b.0 == XS => Type::Builtin(b.1.clone()),
                        Some(b) => Type::Named(b.clone()),
                        None => Type::Builtin("string".into()),
                    };
                    for a in ext.children.iter().filter(|a| a.is("attribute")) {
                        c.attributes.push(self.attribute(a)?);
                    }
                    c.content = Content::Text(base);
                }
                "complexContent" if part.name.0 == XS => {
                    return Err(
                        "a complexContent (type derivation) that this policy does not read".into(),
                    )
                }
                _ => {}
            }
        }
        Ok(c)
    }

    fn attribute(&self, a: &Node) -> Result<Attribute, String> {
        let name = a
            .attr("name")
            .or_else(|| a.attr("ref"))
            .ok_or("an attribute without a name")?;
        let ty = match a.qattr("type") {
            Some(t) if t.0 == XS => Type::Builtin(t.1.clone()),
            Some(t) => Type::Named(t.clone()),
            None => match a.children.iter().find(|c| c.is("simpleType")) {
                Some(s) => self.simple(s)?,
                None => Type::Builtin("string".into()),
            },
        };
        Ok(Attribute {
            name: name.rsplit(':').next().unwrap_or(name).to_string(),
            ty,
            required: a.attr("use") == Some("required"),
        })
    }

    fn group(&self, g: &Node, rd: &Reading<'_>) -> Result<Group, String> {
        let mut ps = Vec::new();
        for p in &g.children {
            if p.name.0 != XS || p.name.1 == "annotation" {
                continue;
            }
            let (min, max) = occurs(p)?;
            let term = match p.name.1.as_str() {
                "element" => match (p.qattr("ref"), p.attr("name")) {
                    (Some(r), _) => Term::Ref(r.clone()),
                    (None, Some(n)) => {
                        let qualified = match p.attr("form") {
                            Some(f) => f == "qualified",
                            None => rd.qualified,
                        };
                        let ns = if qualified {
                            rd.tns.to_string()
                        } else {
                            String::new()
                        };
                        Term::Element(Box::new(self.decl(p, (ns, n.to_string()), rd)?))
                    }
                    _ => return Err("an element without name or ref".into()),
                },
                "sequence" | "choice" | "all" => Term::Group(self.group(p, rd)?),
                "any" => Term::Any,
                "group" => {
                    return Err("a named model group, which this policy does not read".into())
                }
                other => return Err(format!("`{other}` in a content model")),
            };
            ps.push(Particle { min, max, term });
        }
        Ok(match g.name.1.as_str() {
            "choice" => Group::Choice(ps),
            "all" => Group::All(ps),
            _ => Group::Sequence(ps),
        })
    }
}

/// Validation of one body against the schema.
struct Check<'a> {
    s: &'a Schema,
    depth: usize,
}

type Checked = Result<(), String>;

fn digits_ok(t: &str, f: &Facets) -> Checked {
    let body = t.trim_start_matches(['+', '-']);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let frac = frac.trim_end_matches('0');
    let total = int.trim_start_matches('0').len() + frac.len();
    if f.total_digits.is_some_and(|n| total > n) {
        return Err("has too many digits".into());
    }
    if f.fraction_digits.is_some_and(|n| frac.len() > n) {
        return Err("has too many fraction digits".into());
    }
    Ok(())
}

fn is_date(t: &str) -> bool {
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
            && !r.is_empty()
    };
    let tz_ok = |rest: &str| {
        rest.is_empty()
            || rest == "Z"
            || (rest.len() == 6
                && matches!(rest.as_bytes().first(), Some(b'+' | b'-'))
                && rest.as_bytes().get(3) == Some(&b':'))
    };
    let (m, d) = (
        t.get(5..7).and_then(|m| m.parse::<u32>().ok()),
        t.get(8..10).and_then(|d| d.parse::<u32>().ok()),
    );
    b.len() >= 10
        && num(0..4)
        && b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && m.is_some_and(|m| (1..=12).contains(&m))
        && d.is_some_and(|d| (1..=31).contains(&d))
        && tz_ok(t.get(10..).unwrap_or(""))
}

fn is_time(t: &str) -> bool {
    let (clock, rest) = t.split_at(t.len().min(8));
    let parts: Vec<&str> = clock.split(':').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
        && parts
            .first()
            .and_then(|h| h.parse::<u32>().ok())
            .is_some_and(|h| h <= 24)
        && parts
            .get(1)
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|m| m <= 59)
        && parts
            .get(2)
            .and_then(|s| s.parse::<u32>().ok())
            .is_some_and(|s| s <= 60);
    let rest = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return false;
            }
            &r[n..]
        }
        None => rest,
    };
    ok && (rest.is_empty()
        || rest == "Z"
        || (rest.len() == 6 && matches!(rest.as_bytes().first(), Some(b'+' | b'-'))))
}

/// Whether `t` is a value of the built-in type `name`; `None`: a type this reader does not
/// know (refused).
fn builtin(name: &str, t: &str) -> Option<bool> {
    let int_in = |lo: i128, hi: i128| {
        let s = t.strip_prefix('+').unwrap_or(t);
        let digits = s.strip_prefix('-').unwrap_or(s);
        !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<i128>().is_ok_and(|v| (lo..=hi).contains(&v))
    };
    let big = i128::MAX;
    Some(match name {
        "string" | "normalizedString" | "token" | "anySimpleType" | "anyType" | "anyURI"
        | "QName" | "NCName" | "Name" | "NMTOKEN" | "ID" | "IDREF" | "language" | "duration"
        | "gYear" | "gYearMonth" | "gMonth" | "gMonthDay" | "gDay" => true,
        "boolean" => matches!(t, "true" | "false" | "1" | "0"),
        "integer" => int_in(-big, big),
        "long" => int_in(i64::MIN.into(), i64::MAX.into()),
        "int" => int_in(i32::MIN.into(), i32::MAX.into()),
        "short" => int_in(i16::MIN.into(), i16::MAX.into()),
        "byte" => int_in(i8::MIN.into(), i8::MAX.into()),
        "unsignedLong" => int_in(0, u64::MAX.into()),
        "unsignedInt" => int_in(0, u32::MAX.into()),
        "unsignedShort" => int_in(0, u16::MAX.into()),
        "unsignedByte" => int_in(0, u8::MAX.into()),
        "nonNegativeInteger" => int_in(0, big),
        "positiveInteger" => int_in(1, big),
        "nonPositiveInteger" => int_in(-big, 0),
        "negativeInteger" => int_in(-big, -1),
        "decimal" => {
            let s = t.strip_prefix(['+', '-']).unwrap_or(t);
            let (i, f) = s.split_once('.').unwrap_or((s, ""));
            !(i.is_empty() && f.is_empty())
                && i.bytes().all(|b| b.is_ascii_digit())
                && f.bytes().all(|b| b.is_ascii_digit())
        }
        "float" | "double" => {
            matches!(t, "INF" | "-INF" | "NaN")
                || (t.parse::<f64>().is_ok() && !t.contains(['i', 'I', 'n', 'N']))
        }
        "date" => is_date(t),
        "time" => is_time(t),
        "dateTime" => t
            .split_once('T')
            .is_some_and(|(d, c)| d.len() == 10 && is_date(d) && is_time(c)),
        "base64Binary" => t.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'+' | b'/' | b'=' | b' ' | b'\n' | b'\r' | b'\t')
        }),
        "hexBinary" => t.len() % 2 == 0 && t.bytes().all(|b| b.is_ascii_hexdigit()),
        _ => return None,
    })
}

fn is_string_like(name: &str) -> bool {
    matches!(
        name,
        "string" | "normalizedString" | "token" | "anySimpleType" | "anyType"
    )
}

impl<'a> Check<'a> {
    fn named(&self, q: &QName) -> Result<&'a Type, String> {
        self.s
            .types
            .get(q)
            .ok_or_else(|| format!("the type `{}` is not in the schema", q.1))
    }

    /// Checks a text value against a simple type (`what` names it in errors).
    fn value(&self, ty: &Type, t: &str, what: &str, hops: usize) -> Checked {
        if hops > 32 {
            return Err(format!("{what}: its type derives from itself"));
        }
        match ty {
            Type::Builtin(b) => {
                let v = if is_string_like(b) { t } else { t.trim() };
                match builtin(b, v) {
                    Some(true) => Ok(()),
                    Some(false) => Err(format!("{what}: not an xs:{b}")),
                    None => Err(format!(
                        "{what}: xs:{b} is a type this policy does not check"
                    )),
                }
            }
            Type::Named(q) => self.value(self.named(q)?, t, what, hops + 1),
            Type::Complex(_) => Err(format!("{what}: a value where the schema wants elements")),
            Type::Simple(s) => {
                if !s.loose {
                    self.value(&s.base, t, what, hops + 1)?;
                }
                let f = &s.facets;
                let chars = t.chars().count();
                if f.length.is_some_and(|n| chars != n) {
                    return Err(format!(
                        "{what}: not {} characters long",
                        f.length.unwrap_or(0)
                    ));
                }
                if f.min_length.is_some_and(|n| chars < n) {
                    return Err(format!(
                        "{what}: shorter than {}",
                        f.min_length.unwrap_or(0)
                    ));
                }
                if f.max_length.is_some_and(|n| chars > n) {
                    return Err(format!("{what}: longer than {}", f.max_length.unwrap_or(0)));
                }
                if !f.enumeration.is_empty() && !f.enumeration.iter().any(|e| e == t.trim()) {
                    return Err(format!("{what}: not one of the values the schema lists"));
                }
                if let Some(p) = &f.pattern {
                    if !p.is_match(t) {
                        return Err(format!("{what}: does not match the schema's pattern"));
                    }
                }
                let bounded = f.min_inclusive.is_some()
                    || f.max_inclusive.is_some()
                    || f.min_exclusive.is_some()
                    || f.max_exclusive.is_some();
                if bounded {
                    let n: f64 = t
                        .trim()
                        .parse()
                        .map_err(|_| format!("{what}: not a number"))?;
                    let out = f.min_inclusive.is_some_and(|m| n < m)
                        || f.max_inclusive.is_some_and(|m| n > m)
                        || f.min_exclusive.is_some_and(|m| n <= m)
                        || f.max_exclusive.is_some_and(|m| n >= m);
                    if out {
                        return Err(format!("{what}: out of the schema's range"));
                    }
                }
                if f.total_digits.is_some() || f.fraction_digits.is_some() {
                    digits_ok(t.trim(), f).map_err(|e| format!("{what}: {e}"))?;
                }
                Ok(())
            }
        }
    }

    /// Checks an element against its declaration.
    fn element(&mut self, n: &Node, d: &Decl, path: &str) -> Checked {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("{path}: nested too deep"));
        }
        let nil = n
            .attrs
            .iter()
            .any(|(q, v, _)| q.0 == XSI && q.1 == "nil" && matches!(v.trim(), "true" | "1"));
        if nil {
            if !d.nillable {
                return Err(format!("{path}: is not nillable"));
            }
            if !n.children.is_empty() || !n.text.trim().is_empty() {
                return Err(format!("{path}: nil, yet has content"));
            }
            self.depth -= 1;
            return Ok(());
        }
        let mut ty = &d.ty;
        let mut hops = 0;
        while let Type::Named(q) = ty {
            ty = self.named(q)?;
            hops += 1;
            if hops > 32 {
                return Err(format!("{path}: its type derives from itself"));
            }
        }
        let r = match ty {
            Type::Complex(c) => self.complex(n, c, path),
            Type::Builtin(b) if b == "anyType" => Ok(()),
            other => {
                if let Some(child) = n.children.first() {
                    return Err(format!(
                        "{path}: has an element `{}` where the schema wants a value",
                        child.name.1
                    ));
                }
                self.no_attributes(n, path)?;
                self.value(other, &n.text, path, 0)
            }
        };
        self.depth -= 1;
        r
    }

    fn no_attributes(&self, n: &Node, path: &str) -> Checked {
        match n.attrs.iter().find(|(q, _, _)| q.0 != XSI) {
            Some((q, _, _)) => Err(format!(
                "{path}: the attribute `{}` is not in the schema",
                q.1
            )),
            None => Ok(()),
        }
    }

    fn complex(&mut self, n: &Node, c: &Complex, path: &str) -> Checked {
        for (q, v, _) in &n.attrs {
            if q.0 == XSI {
                continue;
            }
            match c.attributes.iter().find(|a| a.name == q.1) {
                Some(a) => self.value(&a.ty, v, &format!("{path}/@{}", q.1), 0)?,
                None if c.any_attribute => {}
                None => {
                    return Err(format!(
                        "{path}: the attribute `{}` is not in the schema",
                        q.1
                    ))
                }
            }
        }
        for a in c.attributes.iter().filter(|a| a.required) {
            if !n.attrs.iter().any(|(q, _, _)| q.1 == a.name) {
                return Err(format!("{path}: needs the attribute `{}`", a.name));
            }
        }
        match &c.content {
            Content::Text(t) => {
                if let Some(child) = n.children.first() {
                    return Err(format!(
                        "{path}: has an element `{}` where the schema wants a value",
                        child.name.1
                    ));
                }
                self.value(t, &n.text, path, 0)
            }
            Content::Empty => {
                if let Some(child) = n.children.first() {
                    return Err(format!(
                        "{path}: the element `{}` is not in the schema",
                        child.name.1
                    ));
                }
                if !c.mixed && !n.text.trim().is_empty() {
                    return Err(format!("{path}: has text where the schema wants none"));
                }
                Ok(())
            }
            Content::Group(g) => {
                if !c.mixed && !n.text.trim().is_empty() {
                    return Err(format!("{path}: has text where the schema wants elements"));
                }
                let used = self.group(g, &n.children, 0, path)?;
                match n.children.get(used) {
                    Some(extra) => Err(format!(
                        "{path}: the element `{}` is not in the schema there (unknown, out of order, or too many)",
                        extra.name.1
                    )),
                    None => Ok(()),
                }
            }
        }
    }

    /// Whether `n` can start `term`.
    fn starts(&self, term: &Term, n: &Node) -> bool {
        match term {
            Term::Element(d) => d.name == n.name,
            Term::Ref(q) => *q == n.name,
            Term::Any => true,
            Term::Group(Group::Sequence(ps)) => {
                // the first particle that must appear, or any optional one before it
                for p in ps {
                    if self.starts(&p.term, n) {
                        return true;
                    }
                    if p.min > 0 {
                        return false;
                    }
                }
                false
            }
            Term::Group(Group::Choice(ps) | Group::All(ps)) => {
                ps.iter().any(|p| self.starts(&p.term, n))
            }
        }
    }

    /// Consumes one occurrence of `term` from `kids[at..]`; how many children it took.
    fn term(&mut self, term: &Term, kids: &[Node], at: usize, path: &str) -> Result<usize, String> {
        let Some(n) = kids.get(at) else {
            return Ok(0);
        };
        match term {
            Term::Element(d) => {
                self.element(n, d, &format!("{path}/{}", n.name.1))?;
                Ok(1)
            }
            Term::Ref(q) => {
                let d = self
                    .s
                    .elements
                    .get(q)
                    .ok_or_else(|| format!("the element `{}` is not in the schema", q.1))?;
                self.element(n, d, &format!("{path}/{}", n.name.1))?;
                Ok(1)
            }
            Term::Any => Ok(1),
            Term::Group(g) => self.group(g, kids, at, path),
        }
    }

    /// Consumes the occurrences of a particle from `kids[at..]` (as many as it allows and the
    /// children start), at least its `minOccurs`; how many children they took.
    fn repeat(
        &mut self,
        p: &Particle,
        kids: &[Node],
        at: usize,
        path: &str,
    ) -> Result<usize, String> {
        let (mut pos, mut count) = (at, 0u32);
        while p.max.is_none_or(|m| count < m)
            && kids.get(pos).is_some_and(|n| self.starts(&p.term, n))
        {
            let used = self.term(&p.term, kids, pos, path)?;
            if used == 0 {
                break;
            }
            pos += used;
            count += 1;
        }
        if count < p.min {
            return Err(format!("{path}: {} missing", describe(&p.term)));
        }
        Ok(pos - at)
    }

    /// Matches a model group against `kids[at..]`; how many children it took.
    fn group(&mut self, g: &Group, kids: &[Node], at: usize, path: &str) -> Result<usize, String> {
        let mut pos = at;
        match g {
            Group::Sequence(ps) => {
                for p in ps {
                    pos += self.repeat(p, kids, pos, path)?;
                }
            }
            Group::Choice(ps) => {
                let chosen = kids
                    .get(pos)
                    .and_then(|n| ps.iter().find(|p| self.starts(&p.term, n)));
                match chosen {
                    Some(p) => pos += self.repeat(p, kids, pos, path)?,
                    None if ps.iter().any(|p| p.min == 0) || ps.is_empty() => {}
                    None => {
                        return Err(format!(
                            "{path}: one of {} missing",
                            ps.iter()
                                .map(|p| describe(&p.term))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    }
                }
            }
            Group::All(ps) => {
                let mut seen = vec![false; ps.len()];
                while let Some(n) = kids.get(pos) {
                    let Some(i) = ps.iter().enumerate().position(|(i, p)| {
                        !seen.get(i).copied().unwrap_or(true) && self.starts(&p.term, n)
                    }) else {
                        break;
                    };
                    if let Some(p) = ps.get(i) {
                        pos += self.term(&p.term, kids, pos, path)?.max(1);
                    }
                    if let Some(s) = seen.get_mut(i) {
                        *s = true;
                    }
                }
                for (p, s) in ps.iter().zip(&seen) {
                    if !s && p.min > 0 {
                        return Err(format!("{path}: {} missing", describe(&p.term)));
                    }
                }
            }
        }
        Ok(pos - at)
    }
}

fn describe(t: &Term) -> String {
    match t {
        Term::Element(d) => format!("the element `{}`", d.name.1),
        Term::Ref(q) => format!("the element `{}`", q.1),
        Term::Any => "an element".into(),
        Term::Group(_) => "a group of elements".into(),
    }
}

impl Schema {
    /// Checks the Body's first element `n` against its global declaration. `Err` says where
    /// and what, never the value.
    pub fn check(&self, n: &Node) -> Result<(), String> {
        let d = self
            .elements
            .get(&n.name)
            .ok_or_else(|| format!("`{}` is not declared in the schema", n.name.1))?;
        Check { s: self, depth: 0 }.element(n, d, &n.name.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WSDL: &str = r#"<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:t" targetNamespace="urn:t">
<types><xs:schema targetNamespace="urn:t" elementFormDefault="qualified">
  <xs:simpleType name="Code"><xs:restriction base="xs:string"><xs:pattern value="[A-Z]{2}[0-9]{2}"/></xs:restriction></xs:simpleType>
  <xs:element name="Order"><xs:complexType>
    <xs:sequence>
      <xs:element name="code" type="t:Code"/>
      <xs:element name="qty"><xs:simpleType><xs:restriction base="xs:int"><xs:minInclusive value="1"/><xs:maxInclusive value="10"/></xs:restriction></xs:simpleType></xs:element>
      <xs:choice><xs:element name="email" type="xs:string"/><xs:element name="phone" type="xs:string"/></xs:choice>
      <xs:element name="note" type="xs:string" minOccurs="0" maxOccurs="2" nillable="true"/>
      <xs:element name="when" type="xs:dateTime" minOccurs="0"/>
    </xs:sequence>
    <xs:attribute name="channel" type="xs:string" use="required"/>
  </xs:complexType></xs:element>
</xs:schema></types></definitions>"#;

    fn check(body: &str) -> Result<(), String> {
        let s = Schema::of_wsdl(WSDL).expect("schema");
        let n = tree(body, &[]).expect("xml").expect("an element");
        s.check(&n)
    }

    #[test]
    fn elements_in_order_and_number_with_their_facets() {
        let ok = r#"<o:Order xmlns:o="urn:t" channel="web"><o:code>AB12</o:code><o:qty>3</o:qty><o:phone>1</o:phone><o:note xsi:nil="true" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/><o:when>2026-12-04T01:00:00Z</o:when></o:Order>"#;
        assert_eq!(check(ok), Ok(()));
        let cases = [
            (ok.replace("AB12", "ab12"), "pattern"),
            (ok.replace(">3<", ">11<"), "range"),
            (ok.replace(">3<", ">three<"), "xs:int"),
            (ok.replace("<o:phone>1</o:phone>", ""), "missing"),
            (
                ok.replace(
                    "<o:phone>1</o:phone>",
                    "<o:phone>1</o:phone><o:email>x</o:email>",
                ),
                "not in the schema there",
            ),
            (
                ok.replace("<o:when>", "<o:evil>x</o:evil><o:when>"),
                "not in the schema there",
            ),
            (ok.replace(" channel=\"web\"", ""), "needs the attribute"),
            (
                ok.replace("channel=\"web\"", "channel=\"web\" admin=\"1\""),
                "attribute `admin`",
            ),
            (
                ok.replace("2026-12-04T01:00:00Z", "yesterday"),
                "xs:dateTime",
            ),
            (
                ok.replace("<o:qty>3</o:qty>", "<o:qty><o:x/></o:qty>"),
                "wants a value",
            ),
            (
                ok.replace("<o:code>", "<o:code>AB12</o:code><o:code>"),
                "`qty` missing",
            ),
        ];
        for (body, why) in cases {
            let r = check(&body);
            assert!(
                r.as_ref().is_err_and(|e| e.contains(why)),
                "{why}: {r:?} for {body}"
            );
            // never the value itself
            assert!(!r.unwrap_err().contains("three"));
        }
        // two notes are allowed, three are not
        let two = ok.replace("<o:when>", "<o:note>a</o:note><o:when>");
        assert_eq!(check(&two), Ok(()));
        let three = ok.replace("<o:when>", "<o:note>a</o:note><o:note>b</o:note><o:when>");
        assert!(check(&three).is_err());
        // an unqualified child is not the qualified element
        let bare = ok.replace("<o:code>AB12</o:code>", "<code>AB12</code>");
        assert!(check(&bare).is_err());
    }

    #[test]
    fn what_the_reader_does_not_know_stops_the_build() {
        let import = WSDL.replace(
            "<xs:simpleType name=\"Code\">",
            "<xs:import namespace=\"urn:x\" schemaLocation=\"x.xsd\"/><xs:simpleType name=\"Code\">",
        );
        assert!(Schema::of_wsdl(&import).is_err_and(|e| e.contains("x.xsd")));
        let letters = WSDL.replace("[A-Z]{2}[0-9]{2}", "\\i\\c*");
        assert!(Schema::of_wsdl(&letters).is_err());
        let minus = WSDL.replace("[A-Z]{2}[0-9]{2}", "[a-z-[aeiou]]+");
        assert!(Schema::of_wsdl(&minus).is_err());
        // a dash between two classes is no subtraction
        assert!(!subtracts("[A-Z]{3}-[0-9]{4}") && subtracts("[a-z-[aeiou]]"));
    }

    #[test]
    fn built_in_types_and_their_ranges() {
        assert_eq!(builtin("int", "2147483648"), Some(false));
        assert_eq!(builtin("int", "-2147483648"), Some(true));
        assert_eq!(builtin("unsignedByte", "256"), Some(false));
        assert_eq!(builtin("positiveInteger", "0"), Some(false));
        assert_eq!(builtin("decimal", "-1.50"), Some(true));
        assert_eq!(builtin("decimal", "1e3"), Some(false));
        assert_eq!(builtin("boolean", "yes"), Some(false));
        assert_eq!(builtin("date", "2026-02-30"), Some(true));
        assert_eq!(builtin("date", "2026-13-01"), Some(false));
        assert_eq!(builtin("time", "10:00:00.5+02:00"), Some(true));
        assert_eq!(builtin("double", "inf"), Some(false));
        assert_eq!(builtin("hexBinary", "0fz0"), Some(false));
        assert_eq!(builtin("ENTITY", "x"), None);
    }
}
