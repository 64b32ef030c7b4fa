//! Injection detection on one input value, after normalisation: URL decoding (repeated),
//! HTML entities, full-width Unicode, case, SQL comments and whitespace. Each class is a set
//! of structural signatures (a keyword alone never matches: `select` in prose is fine,
//! `union select` is not). Returns the class found first, never the matched text.

/// The attack classes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// SQL injection.
    Sqli,
    /// Cross-site scripting.
    Xss,
    /// OS command injection.
    Command,
    /// Path traversal and local file inclusion.
    PathTraversal,
    /// Server-side request forgery to internal addresses.
    Ssrf,
    /// NoSQL operator injection.
    Nosql,
    /// LDAP filter injection.
    Ldap,
    /// Server-side template injection.
    Template,
}

impl Class {
    /// Every class.
    pub const ALL: [Class; 8] = [
        Class::Sqli,
        Class::Xss,
        Class::Command,
        Class::PathTraversal,
        Class::Ssrf,
        Class::Nosql,
        Class::Ldap,
        Class::Template,
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Class::Sqli => "sqli",
            Class::Xss => "xss",
            Class::Command => "command",
            Class::PathTraversal => "path_traversal",
            Class::Ssrf => "ssrf",
            Class::Nosql => "nosql",
            Class::Ldap => "ldap",
            Class::Template => "template",
        }
    }
}

/// How eagerly values are judged attacks.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// Only structural signatures: leaves out the heuristics that look at a value alone
    /// (sensitive file names, a value starting with a command, a lone `..` segment), for
    /// fields that carry paths or shell-like text by design.
    Low,
    /// The default: the measured balance of BENCHMARKS.md.
    #[default]
    Medium,
    /// Also any HTML tag, any script sink (`alert(1)`, `top[…](…)`), any `..`, and shell
    /// metacharacters before any word: for APIs whose inputs are never markup or paths.
    High,
}

/// Whether `needle` occurs in `hay` (SIMD substring search: the detectors look for many
/// literals in every value, and this is where their time goes).
fn lit(hay: &str, needle: &str) -> bool {
    lit_find(hay, needle).is_some()
}

/// Where `needle` first occurs in `hay`.
///
/// A SIMD searcher costs more to build than to run over a short value, and the detectors
/// search the same few hundred literals in every value: the searchers are built once per
/// thread and kept, keyed by the needle's text. A needle whose first byte is not in `hay`
/// at all is answered by one `memchr`.
fn lit_find(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let first = *n.first()?;
    if n.len() > h.len() || memchr::memchr(first, h).is_none() {
        return None;
    }
    if n.len() == 1 {
        return memchr::memchr(first, h);
    }
    FINDERS.with(|cache| match cache.try_borrow_mut() {
        Ok(mut cache) => {
            if cache.len() > MAX_CACHED_FINDERS {
                cache.clear();
            }
            if let Some(f) = cache.get(needle) {
                return f.find(h);
            }
            let f = memchr::memmem::Finder::new(n).into_owned();
            let found = f.find(h);
            cache.insert(needle.to_string(), f);
            found
        }
        Err(_) => memchr::memmem::find(h, n),
    })
}

/// Bound on the per-thread searcher cache (the detectors use a few hundred literals; the
/// bound only matters if a caller ever searched for data-derived needles).
const MAX_CACHED_FINDERS: usize = 4096;

type FinderCache = std::collections::HashMap<
    String,
    memchr::memmem::Finder<'static>,
    std::hash::BuildHasherDefault<Fnv>,
>;

thread_local! {
    static FINDERS: std::cell::RefCell<FinderCache> = std::cell::RefCell::new(FinderCache::default());
}

/// FNV-1a: the keys are short literals chosen by us, so a fast hash without flooding
/// resistance is right here.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Literals searched for in one pass (Aho-Corasick), built on first use.
type Literals = std::sync::LazyLock<Option<aho_corasick::AhoCorasick>>;

/// Whether `s` contains any of `words`, whose automaton is `set`.
fn any_of(set: &Literals, words: &[&str], s: &str) -> bool {
    match set.as_ref() {
        Some(a) => a.is_match(s),
        None => words.iter().any(|w| lit(s, w)),
    }
}

fn url_decode_once(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if let Some(v) = palisade_core::uri::escape_at(b, i) {
                out.push(v);
                i += 3;
                continue;
            }
            // %uXXXX (IIS)
            if matches!(b.get(i + 1), Some(b'u' | b'U')) {
                if let Some(ch) = b
                    .get(i + 2..i + 6)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .and_then(char::from_u32)
                {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    i += 6;
                    continue;
                }
            }
        } else if c == b'+' {
            out.push(b' ');
            i += 1;
            continue;
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&overlong_to_ascii(&out)).into_owned()
}

/// Overlong UTF-8 forms of ASCII (`%c0%ae` for `.`, `%c0%af` for `/`, `%e0%80%ae`), which
/// some servers decode, turned into the ASCII they stand for; the lossy UTF-8 conversion
/// would otherwise hide them as replacement characters.
fn overlong_to_ascii(b: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !b.iter().any(|&c| c == 0xc0 || c == 0xc1 || c == 0xe0) {
        return std::borrow::Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match (c, b.get(i + 1), b.get(i + 2)) {
            (0xc0 | 0xc1, Some(&d), _) if d & 0xc0 == 0x80 => {
                out.push(((c & 0x1f) << 6) | (d & 0x3f));
                i += 2;
            }
            // a lead byte before plain ASCII (`%c0%2e`): lenient decoders drop the lead
            (0xc0 | 0xc1, Some(&d), _) if d < 0x80 => {
                out.push(d);
                i += 2;
            }
            (0xe0, Some(&d), Some(&e)) if d & 0xe0 == 0x80 && e & 0xc0 == 0x80 => {
                out.push(((d & 0x3f) << 6) | (e & 0x3f));
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

fn html_decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(rest.get(..p).unwrap_or(""));
        let tail = rest.get(p..).unwrap_or("");
        // numeric entities may omit the `;` (`&#0000106&#97`)
        let end = tail.find(';').filter(|e| *e <= 10).or_else(|| {
            tail.strip_prefix("&#").map(|t| {
                let n = t.strip_prefix(['x', 'X']).map_or_else(
                    || t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()),
                    |h| 1 + h.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(h.len()),
                );
                n + 2
            })
        });
        let ent = end.and_then(|e| tail.get(1..e));
        let decoded = ent.and_then(|e| {
            if let Some(n) = e.strip_prefix("#x").or_else(|| e.strip_prefix("#X")) {
                u32::from_str_radix(n, 16).ok().and_then(char::from_u32)
            } else if let Some(n) = e.strip_prefix('#') {
                n.parse::<u32>().ok().and_then(char::from_u32)
            } else {
                match e {
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    "amp" => Some('&'),
                    "colon" => Some(':'),
                    "lpar" => Some('('),
                    "rpar" => Some(')'),
                    "tab" => Some('\t'),
                    "newline" => Some('\n'),
                    _ => None,
                }
            }
        });
        match (decoded, end) {
            (Some(c), Some(e)) => {
                out.push(c);
                let skip = if tail.as_bytes().get(e) == Some(&b';') {
                    e + 1
                } else {
                    e
                };
                rest = tail.get(skip..).unwrap_or("");
            }
            _ => {
                out.push('&');
                rest = tail.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

/// JavaScript and C string escapes (`\u0065`, `\x65`, `\145`) decoded, so a script
/// sink spelt with escapes is seen as written.
fn js_unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('\\') {
        out.push_str(rest.get(..p).unwrap_or(""));
        let tail = rest.get(p + 1..).unwrap_or("");
        let (hex, len) = match tail.as_bytes().first() {
            Some(b'u') => (
                tail.get(1..5).and_then(|h| u32::from_str_radix(h, 16).ok()),
                5,
            ),
            Some(b'x') => (
                tail.get(1..3).and_then(|h| u32::from_str_radix(h, 16).ok()),
                3,
            ),
            Some(b'0'..=b'3') => (
                tail.get(0..3)
                    .filter(|o| o.bytes().all(|c| (b'0'..=b'7').contains(&c)))
                    .and_then(|o| u32::from_str_radix(o, 8).ok()),
                3,
            ),
            _ => (None, 0),
        };
        match hex.and_then(char::from_u32) {
            Some(c) => {
                out.push(c);
                rest = tail.get(len..).unwrap_or("");
            }
            None => {
                out.push('\\');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The normalised form of a value: decoded, folded, comments and runs of spaces collapsed.
pub fn normalise(raw: &str) -> String {
    let mut s = raw.to_string();
    for _ in 0..3 {
        if !s.contains(['%', '+']) {
            break;
        }
        let d = url_decode_once(&s);
        if d == s {
            break;
        }
        s = d;
    }
    s = html_decode(&s);
    s = js_unescape(&s);
    let folded: String = if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.chars()
            .map(|c| match c as u32 {
                // full-width forms to ASCII
                0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
                // slashes that path APIs on some systems treat as separators
                0x2215 | 0x2044 | 0xEFC8 | 0xF025 => '/',
                0x2216 | 0xFE68 => '\\',
                _ => c,
            })
            .flat_map(char::to_lowercase)
            .collect()
    };
    // SQL comments become a space (`un/**/ion` is not a word, `union/**/select` is two)
    let mut out = String::with_capacity(folded.len());
    let mut rest = folded.as_str();
    while let Some(p) = lit_find(rest, "/*") {
        out.push_str(rest.get(..p).unwrap_or(""));
        out.push(' ');
        let body = rest.get(p + 2..).unwrap_or("");
        if let Some(code) = body.strip_prefix('!') {
            // MySQL's /*!50000 code */ runs the code: keep it, drop the version
            let code = code.trim_start_matches(|c: char| c.is_ascii_digit());
            let (inner, after) = match lit_find(code, "*/") {
                Some(e) => (code.get(..e).unwrap_or(""), code.get(e + 2..).unwrap_or("")),
                None => (code, ""),
            };
            out.push_str(inner);
            out.push(' ');
            rest = after;
            continue;
        }
        rest = match lit_find(body, "*/") {
            Some(e) => body.get(e + 2..).unwrap_or(""),
            None => "",
        };
    }
    out.push_str(rest);
    // a run of whitespace becomes one space, or one newline when it holds a line break
    // (a command separator to a shell)
    let mut collapsed = String::with_capacity(out.len());
    let mut run: Option<char> = None;
    for c in out.chars() {
        if c.is_whitespace() || c == '\u{0}' {
            let brk = c == '\n' || c == '\r';
            run = Some(if brk || run == Some('\n') { '\n' } else { ' ' });
        } else {
            if let Some(w) = run.take() {
                collapsed.push(w);
            }
            collapsed.push(c);
        }
    }
    if let Some(w) = run {
        collapsed.push(w);
    }
    collapsed
}

fn words(s: &str) -> Vec<&str> {
    s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '@' || c == '$'))
        .filter(|w| !w.is_empty())
        .collect()
}

fn has_seq(ws: &[&str], a: &str, b: &[&str]) -> bool {
    ws.windows(2)
        .any(|w| w.first() == Some(&a) && w.get(1).is_some_and(|x| b.contains(x)))
}

/// A single-quoted string literal closed and followed by an SQL operator and more of an
/// expression: `x' and 'y`, `a'='b`, `aa' or col like col --`, `1' div 1 = '1`. Double
/// quotes are left out (search syntax: `"wood" and "sign"`), and so is a quote that opens a
/// word (`select 'and'`), a year or a length (`1950' and 60's`, `-3' -4'`).
fn quote_break(s: &str) -> bool {
    const OPS: [&str; 28] = [
        "and", "or", "xor", "&&", "||", "!=", "<>", "<=", ">=", "=", "<", ">", "&", "|", "^",
        "like", "rlike", "regexp", "div", "mod", "is", "between", "sounds", "-", "+", "*", "/",
        "%",
    ];
    let b = s.as_bytes();
    for (i, q) in s.match_indices('\'') {
        let double = q == "\"";
        // a closing quote: at the start (the value breaks out of a literal) or after a
        // character of the literal
        if i > 0 && b.get(i - 1).is_some_and(u8::is_ascii_whitespace) {
            continue;
        }
        let rest = s.get(i + 1..).unwrap_or("").trim_start();
        if rest
            .strip_prefix("in")
            .is_some_and(|r| r.trim_start().starts_with('('))
        {
            return true; // `' in (0)`
        }
        let Some(op) = OPS
            .iter()
            .filter(|o| rest.starts_with(*o))
            .max_by_key(|o| o.len())
        else {
            continue;
        };
        let after = rest.get(op.len()..).unwrap_or("");
        let word_op = op.bytes().all(|c| c.is_ascii_alphabetic());
        if word_op && after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue; // `order`, `island`, `origin`
        }
        let operand = after.trim_start_matches([' ', '-', '+', '!', '~', '(']);
        let arithmetic = matches!(*op, "-" | "+" | "*" | "/" | "%");
        let logical = matches!(*op, "and" | "or" | "xor" | "&&" | "||");
        // another literal right after the operator (with double quotes, only after a
        // comparison: `"wood" and "sign"` is search syntax)
        if operand.strip_prefix(q).is_some_and(|o| {
            (!double || !(logical || arithmetic))
                && (!arithmetic || o.starts_with(|c: char| c.is_ascii_alphanumeric()))
        }) {
            return true;
        }
        if arithmetic {
            continue;
        }
        if logical {
            let cond: String = operand.chars().take(80).collect();
            let c = cond.trim_end_matches(['#', '-', ';', ' ', '/', '*']);
            if !c.is_empty() && c.len() <= 3 && c.chars().all(|x| x.is_ascii_digit()) {
                return true; // `' or 1`
            }
            if cond.contains(['=', '<', '>', '!'])
                || ["&&'", "||'", "^'", "|'", "&'", "+'", "-'", "*'", "/'"]
                    .iter()
                    .any(|k| lit(&cond, k))
                || [
                    " like", " rlike", " regexp", " is ", " between", " sounds", "--", "#",
                ]
                .iter()
                .any(|k| lit(&cond, k))
                || ["true", "false", "null", "current_", "@@", "binary", "not "]
                    .iter()
                    .any(|k| cond.starts_with(k))
            {
                return true;
            }
        } else if operand.starts_with(|c: char| c.is_ascii_digit() || c == '@')
            || [
                "true",
                "false",
                "null",
                "current_",
                "binary",
                "utc_",
                "database(",
                "version(",
                "user(",
            ]
            .iter()
            .any(|k| operand.starts_with(k))
        {
            return true;
        }
    }
    false
}

/// SQL functions an injected condition probes with (`and substring(version(),1,1)=5`).
const SQL_PROBES: [&str; 22] = [
    "substring(",
    "substr(",
    "ascii(",
    "char(",
    "ord(",
    "mid(",
    "length(",
    "version(",
    "user(",
    "database(",
    "if(",
    "md5(",
    "exists(",
    "(select",
    "concat(",
    "count(",
    "elt(",
    "extractvalue(",
    "updatexml(",
    "rand(",
    "hex(",
    "unhex(",
];

/// A value that is an SQL clause appended to a query: `or x=y#`, `having 1=0`,
/// `order by 3--`.
fn leading_clause(s: &str) -> bool {
    let t = s.trim();
    for k in ["order by ", "group by "] {
        if let Some(r) = t.strip_prefix(k) {
            let digits = r.len() - r.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let tail = r.get(digits..).unwrap_or("").trim();
            if digits > 0 && (tail.is_empty() || tail == "#" || tail == "--" || tail == "-- -") {
                return true;
            }
        }
    }
    for k in ["or ", "and ", "xor ", "having "] {
        if let Some(r) = t.strip_prefix(k) {
            let r_end = r.trim_end_matches(['#', '-', ';', ' ']);
            if matches!(r_end, "true" | "false" | "1" | "null") && r_end.len() < r.len() {
                return true; // `or true--`
            }
            // the first token is a comparison: `x=y`, `1 = 0`, `a<>b`
            let cmp: String = r.chars().take_while(|c| !c.is_whitespace()).collect();
            let spaced: Vec<&str> = r.split_whitespace().take(3).collect();
            let operand = |x: &str| {
                !x.is_empty()
                    && x.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '\'')
            };
            let glued = ["<>", "!=", "<=", ">=", "=", "<", ">"].iter().any(|op| {
                cmp.split_once(op).is_some_and(|(a, b)| {
                    operand(a) && {
                        let b = b.trim_end_matches(['#', '-', ';']);
                        operand(b)
                    }
                })
            });
            let apart = matches!(spaced.as_slice(), [a, op, b]
                if operand(a) && matches!(*op, "=" | "<" | ">" | "<>" | "!=" | "like") && operand(b.trim_end_matches(['#', '-', ';'])));
            if glued || apart {
                return true;
            }
        }
    }
    false
}

/// A value that breaks out of a literal (its first quote closes one) and ends by opening
/// another after an operator, for the query's own quote to close: `aa' * @a or '1`,
/// `1' - 1 or '1`, `x'/current_date != '1`.
fn breakout_reopen(s: &str) -> bool {
    let b = s.as_bytes();
    let (Some(first), Some(last)) = (s.find('\''), s.rfind('\'')) else {
        return false;
    };
    if first == last || (first > 0 && b.get(first - 1).is_some_and(u8::is_ascii_whitespace)) {
        return false;
    }
    let tail = s.get(last + 1..).unwrap_or("");
    if tail.is_empty()
        || tail.len() > 12
        || !tail
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '-' | '#'))
    {
        return false;
    }
    let before = s.get(..last).unwrap_or("").trim_end();
    let word = |w: &str| {
        before
            .strip_suffix(w)
            .is_some_and(|r| !r.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
    };
    [
        "or", "and", "xor", "like", "rlike", "regexp", "div", "in", "is",
    ]
    .iter()
    .any(|w| word(w))
        || ["=", "<", ">", "-", "+", "*", "/", "%", "|", "^", "&"]
            .iter()
            .any(|o| before.ends_with(o))
}

/// A number or a server variable closed by a comment: `1--`, `1 * 1/*`, `@@version--`.
fn commented_value(s: &str) -> bool {
    let t = s.trim();
    let body = ["--", "/*", "#"]
        .iter()
        .find_map(|c| t.strip_suffix(c))
        .or_else(|| t.strip_suffix(" -- -"));
    body.is_some_and(|b| {
        let b = b.trim();
        !b.is_empty()
            && b.len() <= 16
            && (b.starts_with(|c: char| c.is_ascii_digit()) || b.starts_with('@'))
            && b.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, ' ' | '*' | '+' | '-' | '/' | '@' | '_')
            })
    })
}

/// A condition, a grouping or a union spelt the way injected SQL is and prose is not.
fn sql_shapes(s: &str, ws: &[&str]) -> bool {
    if leading_clause(s) || breakout_reopen(s) || commented_value(s) {
        return true;
    }
    // `admin' --`, `admin' #`, `admin'/*`: a literal closed and the rest of the query
    // commented out
    if let Some(q) = s.rfind('\'') {
        let before = s.get(..q).and_then(|b| b.chars().next_back());
        let after = s.get(q + 1..).unwrap_or("").trim();
        if before.is_some_and(|c| c.is_ascii_alphanumeric())
            && ["--", "#", "/*", "-- -", ";--", ";#"].contains(&after)
        {
            return true;
        }
    }
    if lit(s, "case when") && lit(s, " then ") && lit(s, " end") && s.contains(['(', '=']) {
        return true;
    }
    // `union select` glued to a number (`3.2union select 2`, `1e0union select`)
    for u in [
        "union select",
        "union all select",
        "union distinct select",
        "union(select",
    ] {
        for (i, _) in s.match_indices(u) {
            let prev = i.checked_sub(1).and_then(|j| s.as_bytes().get(j));
            let next = s.as_bytes().get(i + u.len());
            if !prev.is_some_and(u8::is_ascii_lowercase)
                && !next.is_some_and(u8::is_ascii_lowercase)
            {
                return true;
            }
        }
    }
    // a number, then a bare `union` or a grouping closed by a comment: `-1 union`,
    // `1/1/**/union`, `3 group by 16/*`, `limit 0,1--`
    if let Some(p) = s.rfind("union") {
        let before = s.get(..p).unwrap_or("");
        let after = s.get(p + 5..).unwrap_or("");
        if before.chars().any(|c| c.is_ascii_digit())
            && before
                .chars()
                .all(|c| c.is_ascii_digit() || " -/#*x.\n".contains(c))
            && after.chars().all(|c| " #/*-".contains(c))
        {
            return true;
        }
    }
    for k in ["group by ", "limit "] {
        if let Some(p) = lit_find(s, k) {
            let r = s.get(p + k.len()..).unwrap_or("");
            let n = r.trim_start_matches(|c: char| c.is_ascii_digit() || c == ',' || c == ' ');
            if n.len() < r.len()
                && ["--", "/*", "#"]
                    .iter()
                    .any(|c| n.trim() == *c || n.trim().starts_with(c))
            {
                return true;
            }
        }
    }
    for op in [" and", " or", " xor", "&&", "||", ")and", ")or"] {
        let mut rest = s;
        while let Some(p) = lit_find(rest, op) {
            let after = rest
                .get(p + op.len()..)
                .unwrap_or("")
                .trim_start_matches([' ', '(']);
            if rest
                .get(p + op.len()..)
                .is_some_and(|a| a.starts_with([' ', '(']))
                && SQL_PROBES.iter().any(|f| after.starts_with(f))
            {
                return true;
            }
            rest = rest.get(p + op.len()..).unwrap_or("");
        }
    }
    if [
        "(version()",
        "(database()",
        "(user()",
        ",version()",
        ",database()",
        ",user()",
    ]
    .iter()
    .any(|p| lit(s, p))
    {
        return true;
    }
    // `… order by 16`, `… group by … having`
    if let Some(p) = lit_find(s, "order by ") {
        let n = s.get(p + 9..).unwrap_or("").trim_end();
        let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
        let tail = n.get(digits.len()..).unwrap_or("").trim();
        if !digits.is_empty()
            && (tail.is_empty() || tail.starts_with("--") || tail.starts_with('#'))
            && s.get(..p).is_some_and(|b| {
                b.trim_end()
                    .ends_with(|c: char| c.is_ascii_digit() || c == '\'' || c == ')')
            })
        {
            return true;
        }
    }
    if lit(s, " group by ") && lit(s, " having ") {
        return true;
    }
    // `union` glued to comments, or followed by a column list
    if [
        "#union", "union#", "*/union", "union/*", "union--", "--union",
    ]
    .iter()
    .any(|p| lit(s, p))
    {
        return true;
    }
    ws.windows(3).any(|w| {
        matches!(w, [u, a, b] if *u == "union"
            && a.chars().all(|c| c.is_ascii_digit())
            && b.chars().all(|c| c.is_ascii_digit()))
    }) && lit(s, "union ")
        && s.contains(',')
}

/// After a `;`: `if (`, `if exists`, `if not exists`, `if @@`, `if 1=1`; `begin` followed by a
/// statement or `transaction`; `delete X where`; `declare @`/`declare cursor`. The words
/// alone are prose.
fn stacked_statement(flat: &str) -> bool {
    let mut rest = flat;
    while let Some(p) = lit_find(rest, ";") {
        let after = rest.get(p + 1..).unwrap_or("").trim_start();
        let lower: String = after
            .chars()
            .take(48)
            .collect::<String>()
            .to_ascii_lowercase();
        let word = |w: &str| {
            lower
                .strip_prefix(w)
                .filter(|r| r.starts_with([' ', '(', '@']))
        };
        if let Some(r) = word("if") {
            let r = r.trim_start();
            if r.starts_with('(')
                || r.starts_with("@@")
                || r.starts_with("exists")
                || r.starts_with("not exists")
                || r.starts_with("user_name(")
                || r.starts_with("db_name(")
                || r.bytes().next().is_some_and(|b| b.is_ascii_digit()) && r.contains('=')
            {
                return true;
            }
        }
        if let Some(r) = word("begin") {
            let r = r.trim_start();
            if [
                "declare ",
                "exec",
                "waitfor ",
                "select ",
                "insert ",
                "update ",
                "delete ",
                "drop ",
                "shutdown",
                "dbms_",
                "transaction",
                "tran;",
                "tran ",
                "sys.",
            ]
            .iter()
            .any(|k| r.starts_with(k))
            {
                return true;
            }
        }
        if let Some(r) = word("delete") {
            // `delete from t`, `delete users where …` (FROM is optional in T-SQL), `delete
            // low_priority quick ignore from t` (MySQL's modifiers)
            let ws: Vec<&str> = r.split_whitespace().take(5).collect();
            let modifiers = ws
                .iter()
                .take_while(|w| matches!(**w, "low_priority" | "quick" | "ignore"))
                .count();
            let rest = ws.get(modifiers..).unwrap_or_default();
            if rest.first() == Some(&"from") || rest.get(1) == Some(&"where") {
                return true;
            }
        }
        if let Some(r) = word("declare") {
            let r = r.trim_start();
            if r.starts_with('@') || r.split_whitespace().nth(1) == Some("cursor") {
                return true;
            }
        }
        rest = rest.get(p + 1..).unwrap_or("");
    }
    false
}

fn sqli(s: &str) -> bool {
    if quote_break(s) {
        return true;
    }
    let ws = words(s);
    if sql_shapes(s, &ws) {
        return true;
    }
    let has = |w: &str| ws.contains(&w);
    if has_seq(&ws, "union", &["select", "all", "distinct"]) {
        return true;
    }
    if [
        "sleep(",
        "benchmark(",
        "pg_sleep(",
        "waitfor delay",
        "xp_cmdshell",
        "information_schema",
        "@@version",
        "load_file(",
        "into outfile",
        "into dumpfile",
        "sysobjects",
        "utl_http",
        "dbms_pipe",
        "extractvalue(",
        "updatexml(",
        "json_extract(",
        "json_depth(",
        "randomblob(",
        "sqlite_master",
        "pg_catalog",
        "@@datadir",
        "char(",
        "chr(",
        "concat(",
        "group_concat(",
        "substring(",
        "ascii(",
        "convert(",
        "cast(",
        "exec(",
        "execute(",
    ]
    .iter()
    .any(|p| {
        lit(s, p)
            && (s.contains('\'')
                || s.contains('"')
                || s.contains(')')
                || s.contains('=')
                || s.contains(';')
                || has("select"))
    }) {
        // a function name alone is prose; with quotes, parentheses or SQL around it is not
        if [
            "sleep(",
            "benchmark(",
            "pg_sleep(",
            "waitfor delay",
            "xp_cmdshell",
            "information_schema",
            "@@version",
            "load_file(",
            "into outfile",
            "into dumpfile",
            "sysobjects",
            "utl_http",
            "dbms_pipe",
            "extractvalue(",
            "updatexml(",
            "sqlite_master",
            "pg_catalog",
            "@@datadir",
            "randomblob(",
        ]
        .iter()
        .any(|p| lit(s, p))
        {
            return true;
        }
        if s.contains('\'') || has("select") {
            return true;
        }
    }
    if has("select")
        && (has("from")
            || lit(s, "select(")
            || lit(s, "select @@")
            || lit(s, "select case")
            || has("null"))
        && (s.contains('\'')
            || s.contains('(')
            || s.contains(';')
            || lit(s, "--")
            || s.contains('=')
            || has("union"))
    {
        return true;
    }
    // a statement after a terminator
    let flat = s.replace("; ", ";");
    for kw in [
        ";drop table",
        ";drop database",
        ";delete from",
        ";insert into",
        ";shutdown",
        ";declare @",
        ";create table",
        ";create user",
        ";alter table",
        ";truncate table",
        ";exec(",
        ";exec xp_",
        ";exec sp_",
        ";exec master",
        ";execute immediate",
        ";waitfor delay",
        ";waitfor time",
        ";select @@",
        ";select sleep",
        ";select pg_sleep",
        ";select * from",
        ";select version",
        ";load data",
        ";load xml",
        ";do (",
        ";shutdown",
    ] {
        if lit(&flat, kw) {
            return true;
        }
    }
    // statements whose first word is also English (`; if needed`, `; delete the old one`,
    // `; begin when ready`): only with what makes them SQL right behind
    if stacked_statement(&flat) {
        return true;
    }
    if lit(&flat, ";update ") && lit(&flat, " set ") {
        return true;
    }
    // a quote closed, then a condition (with a comparison close behind) or a comment
    let quoted = s.contains('\'') || s.contains('"') || s.contains('`');
    if quoted {
        for q in ["'", "\"", "')", "\")", "`"] {
            // (no quote of this kind, no breakout through it: skip building its patterns)
            if !q.bytes().next().is_some_and(|b| s.as_bytes().contains(&b)) {
                continue;
            }
            for op in [
                " or ", " and ", " xor ", " || ", " && ", "||", "&&", " div ", " having ",
                " like ", " rlike ", " regexp ",
            ] {
                let pat = format!("{q}{op}");
                let mut rest = s;
                while let Some(p) = lit_find(rest, &pat) {
                    let after = rest.get(p + pat.len()..).unwrap_or("");
                    let window: String = after.chars().take(24).collect();
                    if window.contains(['=', '<', '>'])
                        || lit(&window, " like ")
                        || lit(&window, "sleep(")
                        || lit(&window, "select")
                        || lit(&window, " is ")
                        || window.starts_with("true")
                        || window.starts_with("1 ")
                        || window.starts_with("not ")
                    {
                        return true;
                    }
                    rest = after;
                }
            }
            for c in ["--", "#", "/*"] {
                let pat = format!("{q}{c}");
                if let Some(p) = lit_find(s, &pat) {
                    let before_ok = s
                        .get(..p)
                        .and_then(|b| b.chars().last())
                        .is_some_and(|ch| ch.is_ascii_alphanumeric());
                    let tail = s.get(p + pat.len()..).unwrap_or("").trim();
                    if before_ok
                        && (tail.is_empty()
                            || tail.starts_with("select")
                            || tail.starts_with("union")
                            || tail.starts_with("and ")
                            || tail.starts_with("or "))
                    {
                        return true;
                    }
                }
            }
        }
        if lit(s, "' order by") || lit(s, "' group by") || lit(s, "' procedure analyse") {
            return true;
        }
        // `' union` and then what a union needs (not `O' Union selected a few friends`)
        for q in ["' union", "'union"] {
            if let Some(p) = lit_find(s, q) {
                let after = s.get(p + q.len()..).unwrap_or("").trim_start();
                let keyword = |k: &str| {
                    after.strip_prefix(k).is_some_and(|r| {
                        !r.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                    })
                };
                if after.is_empty()
                    || after.starts_with(['(', '#', '-', '/', '%'])
                    || keyword("select")
                    || keyword("all")
                    || keyword("distinct")
                {
                    return true;
                }
            }
        }
    }
    // tautologies without quotes: or 1=1, and 2>1, || 1 = 1
    let toks: Vec<&str> = s.split(' ').collect();
    for w in toks.windows(2) {
        if let [op, expr] = w {
            if matches!(*op, "or" | "and" | "||" | "&&" | "xor")
                && expr.contains(['=', '<', '>'])
                && expr
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit() || c == '(' || c == '\'' || c == '"')
            {
                return true;
            }
        }
    }
    for w in toks.windows(4) {
        if let [op, a, cmp, _] = w {
            if matches!(*op, "or" | "and" | "||" | "&&")
                && a.chars().all(|c| c.is_ascii_digit())
                && matches!(*cmp, "=" | "<" | ">" | "like" | "between" | "is")
            {
                return true;
            }
        }
    }
    if (s.starts_with("1 ")
        || s.starts_with("-1 ")
        || s.starts_with("0 ")
        || s.starts_with("1)")
        || s.starts_with("-1)"))
        && (has("or") || has("and") || has("union") || has("order") || has("having"))
        && s.contains(['=', '(', '>', '<'])
    {
        return true;
    }
    if has_seq(&ws, "order", &["by"]) && lit(s, "--") {
        return true;
    }
    // a number, then SQL: `241 and ascii(...)=53`, `14968 order by 5`
    let t = s.trim_start().trim_start_matches('-');
    if t.starts_with(|c: char| c.is_ascii_digit()) {
        let after = t
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
            .trim_start();
        // after `||` or `&&`, a comparison with something on its right (`1||1=1`, not
        // `5685587||ORDER=||SECTION_ID=||PAGE=2`)
        let compared = |rest: &str| {
            let seg = rest
                .split("||")
                .next()
                .unwrap_or("")
                .split("&&")
                .next()
                .unwrap_or("");
            seg.rfind(['=', '<', '>'])
                .is_some_and(|i| seg.get(i + 1..).is_some_and(|r| !r.trim().is_empty()))
        };
        let sqlish = after.starts_with("and ")
            || after.starts_with("or ")
            || after.starts_with("and(")
            || after.starts_with("or(")
            || after.strip_prefix("&&").is_some_and(compared)
            || after.strip_prefix("||").is_some_and(compared)
            || after.starts_with("having ")
            || after.starts_with("union")
            || after.starts_with("procedure ");
        if sqlish && s.contains(['=', '<', '>', '(']) {
            return true;
        }
        if after.starts_with("order by ")
            && after
                .get(9..)
                .is_some_and(|x| x.starts_with(|c: char| c.is_ascii_digit()))
        {
            return true;
        }
    }
    // an expression in parentheses closed by a comment
    let trimmed = s.trim_end();
    if trimmed.ends_with("--")
        && s.contains('(')
        && s.contains(')')
        && (has("or") || has("and") || has("select") || has("binary") || s.contains('\''))
    {
        return true;
    }
    false
}

/// A value that is nothing but an encoded angle bracket (`&#x03c;`, `%3C`, `\u003c`): an
/// encoding probe, which no client sends as data.
fn bracket_probe(raw: &str, normalised: &str) -> bool {
    matches!(normalised.trim(), "<" | ">" | "</" | "<>") && raw.trim() != normalised.trim()
}

/// UTF-7 markup (`+ADw-script+AD4-`), which some decoders still honour.
fn utf7_markup(s: &str) -> bool {
    lit(s, "+adw-") && (lit(s, "+ad4-") || lit(s, "script"))
}

/// At high sensitivity: any HTML tag or comment, and script sinks without markup.
fn xss_eager(s: &str) -> bool {
    let b = s.as_bytes();
    let tag = b.windows(2).any(|w| {
        w.first() == Some(&b'<')
            && w.get(1)
                .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, b'/' | b'!' | b'?'))
    });
    tag || [
        "alert(",
        "alert`",
        "prompt(",
        "prompt`",
        "confirm(",
        "confirm`",
        "(alert)",
        "find(alert",
        "top[",
        "window[",
        "self[",
        "parent[",
        "frames[",
        "document.cookie",
        "document.domain",
        "document.write",
        "location.hash",
        "location=",
        "innerhtml",
        "eval(",
        "settimeout(",
        "setinterval(",
        "import(",
    ]
    .iter()
    .any(|p| lit(s, p))
}

fn xss(s: &str, sens: Sensitivity) -> bool {
    if utf7_markup(s) || lit(s, "< script") || lit(s, "</ script") {
        return true;
    }
    // breaking out of a script string or statement: `x";alert(1)//`, `1;prompt(1)`
    if [
        ";alert(",
        ";prompt(",
        ";confirm(",
        "-alert(",
        "-prompt(",
        "-confirm(",
    ]
    .iter()
    .any(|p| lit(s, p))
    {
        return true;
    }
    if sens == Sensitivity::High && xss_eager(s) {
        return true;
    }
    const TAGS: [&str; 28] = [
        "<script",
        "<img",
        "<svg",
        "<iframe",
        "<body",
        "<object",
        "<embed",
        "<style",
        "<link",
        "<meta",
        "<input",
        "<video",
        "<audio",
        "<details",
        "<marquee",
        "<form",
        "<math",
        "<isindex",
        "<frameset",
        "<base",
        "<textarea",
        "<select",
        "<button",
        "<keygen",
        "<a ",
        "<div",
        "<x ",
        "<xss",
    ];
    if lit(s, "<script") || lit(s, "vbscript:") || lit(s, "data:text/html") || lit(s, "livescript:")
    {
        return true;
    }
    if let Some(p) = lit_find(s, "javascript:") {
        let after: String = s.get(p + 11..).unwrap_or("").chars().take(40).collect();
        if !after.starts_with(' ') || after.contains('(') {
            return true;
        }
    }
    let has_handler = {
        let b = s.as_bytes();
        let mut found = false;
        let mut i = 0;
        while let Some(p) = s.get(i..).and_then(|t| lit_find(t, "on")) {
            let at = i + p;
            let prev = at.checked_sub(1).and_then(|x| b.get(x)).copied();
            let name_end = s
                .get(at + 2..)
                .map(|t| {
                    t.find(|c: char| !c.is_ascii_alphabetic())
                        .unwrap_or(t.len())
                })
                .unwrap_or(0);
            let after = s.get(at + 2 + name_end..).unwrap_or("").trim_start();
            if name_end >= 3
                && matches!(
                    prev,
                    None | Some(b' ' | b'/' | b'"' | b'\'' | b'\t' | b'\n' | b';' | b'<')
                )
                && after.starts_with('=')
            {
                found = true;
                break;
            }
            i = at + 2;
        }
        found
    };
    let tag =
        TAGS.iter().any(|t| lit(s, t)) || (s.contains('<') && s.contains('>') && s.contains('='));
    if has_handler
        && (tag
            || s.contains(['"', '\'', '>'])
            || ["alert(", "prompt(", "confirm(", "eval(", "javascript:"]
                .iter()
                .any(|p| lit(s, p)))
    {
        return true;
    }
    // markup that runs or loads something without a script or a handler: XML entities and
    // stylesheets, SVG animation, namespaces, CSS in a style attribute
    if s.contains('<')
        && [
            "<!entity",
            "<!doctype",
            "<?xml-stylesheet",
            "<?import",
            "<import ",
            "<xsl:",
            "<svg",
            "<set ",
            "<listener",
            "<feimage",
            "<math",
            "<html",
            "<head",
            "<body",
            "<meta",
            "<layer",
            "<xml",
            "<?xml:",
            "<? echo",
            "<?echo",
            "<!--[if",
            "<![endif]",
            "<embed",
            "<object",
            "<iframe",
            "<frameset",
            "<applet",
            "<base ",
            "<link ",
            "http-equiv",
            "</script",
            " xmlns",
            "classid=",
            "xlink:href",
        ]
        .iter()
        .any(|p| lit(s, p))
        && s.contains('<')
    {
        return true;
    }
    if let Some(p) = lit_find(s, " style=") {
        let before = s.get(..p).unwrap_or("");
        if before.rfind('<') > before.rfind('>')
            || before.rfind('<').is_some() && before.rfind('>').is_none()
        {
            return true;
        }
    }
    if tag
        && (lit(s, "alert(")
            || lit(s, "prompt(")
            || lit(s, "confirm(")
            || lit(s, "eval(")
            || lit(s, "document.")
            || lit(s, "srcdoc")
            || lit(s, "expression(")
            || lit(s, "fromcharcode"))
    {
        return true;
    }
    if (lit(s, "\"") || s.contains('\''))
        && (lit(s, "alert(") || lit(s, "prompt(") || lit(s, "confirm("))
        && (s.contains(';') || s.contains('>') || lit(s, "//"))
    {
        return true;
    }
    if [
        "alert.call(",
        "prompt.call(",
        "confirm.call(",
        "(alert)(",
        "alert.apply(",
        "eval(atob(",
        ".constructor(",
        "fromcharcode(",
        "settimeout(\"",
        "settimeout('",
    ]
    .iter()
    .any(|p| lit(s, p))
    {
        return true;
    }
    if tag
        && [
            "behavior:",
            "behavior :",
            "-moz-binding",
            "@import",
            "datasrc",
            "allowscriptaccess",
            "text/x-scriptlet",
            "xss.css",
            ".htc",
        ]
        .iter()
        .any(|p| lit(s, p))
    {
        return true;
    }
    if (lit(s, "<iframe") || lit(s, "<embed") || lit(s, "<frame")) && lit(s, "src")
        || lit(s, "<object") && lit(s, "data")
    {
        return true;
    }
    lit(s, "expression(") && lit(s, "style")
}

const COMMANDS: &[&str] = &[
    "cat",
    "ls",
    "id",
    "whoami",
    "uname",
    "wget",
    "curl",
    "nc",
    "ncat",
    "netcat",
    "bash",
    "sh",
    "zsh",
    "ping",
    "sleep",
    "echo",
    "rm",
    "chmod",
    "python",
    "python3",
    "perl",
    "ruby",
    "php",
    "powershell",
    "cmd",
    "nslookup",
    "dig",
    "telnet",
    "ifconfig",
    "ipconfig",
    "net",
    "systeminfo",
    "sysinfo",
    "type",
    "dir",
    "head",
    "more",
    "pwd",
    "netstat",
    "netsh",
    "route",
    "reg",
    "hostname",
    "tasklist",
    "ps",
    "env",
    "printenv",
    "busybox",
    "nmap",
    "certutil",
    "bitsadmin",
    "wmic",
    "phpinfo",
];

/// Commands a value may start with and still be an attack, when an option or a path
/// follows (`ls -la /`, `cat /etc/hosts`); ordinary words such as `type`, `more`, `id` or
/// `echo` are left out, since values often start with them.
const LEADING_COMMANDS: &[&str] = &[
    "cat",
    "ls",
    "uname",
    "wget",
    "curl",
    "nc",
    "ncat",
    "netcat",
    "bash",
    "sh",
    "zsh",
    "ping",
    "rm",
    "chmod",
    "python",
    "python3",
    "perl",
    "ruby",
    "php",
    "powershell",
    "cmd",
    "nslookup",
    "telnet",
    "ifconfig",
    "ipconfig",
    "netstat",
    "netsh",
    "reg",
    "tasklist",
    "busybox",
    "nmap",
    "certutil",
    "bitsadmin",
    "wmic",
];

/// Commands that are an attack as the whole value.
const WHOLE_COMMANDS: &[&str] = &[
    "whoami",
    "ifconfig",
    "ipconfig",
    "netstat",
    "systeminfo",
    "sysinfo",
    "phpinfo()",
    "phpinfo();",
    "uname -a",
    "ipconfig /all",
];

/// Code and shell constructs that are an attack wherever they appear: server-side
/// includes, PHP code, interpreter one-liners, Shellshock, Windows administration.
const CODE: &[&str] = &[
    "<?php",
    "<?=",
    "<!--#exec",
    "<!--#include",
    "${@",
    "{${",
    "$_get[",
    "$_post[",
    "$_request[",
    "$_cookie[",
    "$_server[",
    "() { :;}",
    "() { :; }",
    "phpinfo()",
    "phpversion()",
    "%systemroot%",
    "\\repair\\sam",
    "net user ",
    "net localgroup ",
    "net view",
    "reg add ",
    "netsh firewall",
    "perl -e",
    "python -c",
    "python3 -c",
    "ruby -e",
    "php -r",
    "bash -c",
    "bash -i",
    "sh -c",
    "nc -e",
    "/dev/tcp/",
];

/// Functions that run code or commands, as called with a literal or a variable.
const CALLS: &[&str] = &[
    "system(",
    "exec(",
    "shell_exec(",
    "passthru(",
    "popen(",
    "proc_open(",
    "pcntl_exec(",
    "eval(",
    "assert(",
];

fn command(s: &str, sens: Sensitivity) -> bool {
    if lit(s, "/etc/passwd")
        || lit(s, "/bin/sh")
        || lit(s, "/bin/bash")
        || lit(s, "${ifs}")
        || lit(s, "$ifs")
        || lit(s, "cmd.exe")
        || lit(s, "cmd /c")
        || lit(s, "powershell")
        || any_of(&CODE_SET, CODE, s)
    {
        return true;
    }
    for call in CALLS {
        let mut rest = s;
        while let Some(p) = lit_find(rest, call) {
            let before = rest.get(..p).and_then(|b| b.chars().next_back());
            let after = rest.get(p + call.len()..).unwrap_or("").trim_start();
            // a whole identifier (`system(`, not `ecosystem(`) given a literal or a variable
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && after.starts_with(['\'', '"', '$', '`'])
            {
                return true;
            }
            rest = rest.get(p + call.len()..).unwrap_or("");
        }
    }
    let t = s.trim();
    if sens != Sensitivity::Low && WHOLE_COMMANDS.contains(&t)
        || t.strip_prefix("sleep ")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    {
        return true;
    }
    // a value that starts with a command given an option or a path
    let first: String = t
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '.' || *c == '_')
        .collect();
    let base = first.rsplit('/').next().unwrap_or("");
    if sens != Sensitivity::Low
        && (LEADING_COMMANDS.contains(&base) || (first.contains('/') && COMMANDS.contains(&base)))
    {
        let tail = t.get(first.len()..).unwrap_or("");
        if tail.is_empty() && first.starts_with('/') && lit(&first, "bin/")
            || tail.strip_prefix(' ').is_some_and(|a| {
                a.starts_with(['-', '/', '\\', '~', '$'])
                    || a.starts_with("http://")
                    || a.starts_with("https://")
                    || a.get(..3)
                        .is_some_and(|d| d.ends_with(":\\") || d.ends_with(":/"))
            })
        {
            return true;
        }
    }
    for sep in [";", "&&", "||", "|", "`", "$(", "\n", "&", "\\n", "\\r"] {
        let mut rest = s;
        while let Some(p) = lit_find(rest, sep) {
            let after = rest.get(p + sep.len()..).unwrap_or("");
            let first: String = after
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '/' || *c == '_')
                .collect();
            let base = first.rsplit('/').next().unwrap_or("");
            let tail = after.trim_start().get(first.len()..).unwrap_or("");
            let args = tail.is_empty()
                || tail.starts_with([
                    '$', '<', '>', '|', ';', '`', ')', '\'', '"', '&', '{', '+', ',', '\n', '\\',
                ])
                || tail.strip_prefix(' ').is_some_and(|t| {
                    t.starts_with(['-', '/', '$', '.', '~', '\\', '"', '\'', '|', ';', '`', '%'])
                        || t.starts_with("http")
                        || t.starts_with(|c: char| c.is_ascii_digit())
                        || t.get(..3).is_some_and(|d| d.ends_with(":\\"))
                });
            if COMMANDS.contains(&base) && (args || sens == Sensitivity::High) {
                return true;
            }
            rest = after;
        }
    }
    false
}

/// Names of operating-system and server files an attacker reads through a file parameter
/// (after the OWASP CRS list of OS files, trimmed to what ordinary values never contain).
const SENSITIVE_FILES: &[&str] = &[
    "etc/passwd",
    "etc/shadow",
    "etc/master.passwd",
    "etc/group",
    "etc/hosts",
    "etc/issue",
    "etc/motd",
    "etc/fstab",
    "etc/crontab",
    "etc/sudoers",
    "etc/httpd/",
    "etc/apache",
    "etc/nginx/",
    "etc/mysql/",
    "etc/ssh/",
    "etc/resolv.conf",
    "/proc/",
    "/var/adm",
    "/var/run/",
    "/var/lp/",
    "/usr/spool/",
    "/var/apache/",
    "/logs/error",
    "/logs/access",
    "\\logs\\",
    "/.rhosts",
    "/.cshrc",
    "/.logout",
    "/.login",
    "/.profile",
    "thttpd_log",
    "/.bashrc",
    "/.bash_log",
    "master.passwd",
    "/.passwd",
    "/.shosts",
    "/.xauthority",
    "/root/",
    "/var/cron/",
    "/usr/lib/cron/",
    "/var/lock/",
    "/var/saf/",
    "/usr/local/apache",
    "/usr/local/pureftpd",
    "appserv",
    "program files\\",
    "program files/",
    "l2v0yy9",
    "l21hc3rlci5wyxnzd2q",
    "/.bash_profile",
    "/boot/",
    "grub.conf",
    "/.forward",
    "/.netrc",
    "/.sh_history",
    "/usr/lib/security/",
    "pureftpd",
    "pure-config",
    "mlocate",
    "/var/db/",
    "/session/sess_",
    "php/sessions",
    "php4/sessions",
    "php5/sessions",
    "php\\sessions",
    "php4\\sessions",
    "php5\\sessions",
    "mysql.err",
    "nginx.conf",
    "minint",
    "system volume information",
    "filezilla server",
    "apache group",
    "xampp",
    "ntuser.",
    "sysprep",
    "unattend.",
    "unattended.",
    "tomcat-users",
    "documents and settings",
    "cpanel/",
    "/tmp/sess_",
    "mysql.log",
    "mysql-bin.log",
    "hostname.err",
    "pure-ftpd",
    "proftpd",
    "mercury.ini",
    "/log/access",
    "/log/error",
    "\\log\\access",
    "\\log\\error",
    "/var/log",
    "/var/mail/",
    "/var/spool/",
    "access_log",
    "error_log",
    "/logs/access.log",
    "/logs/error.log",
    ".htaccess",
    ".htpasswd",
    "web.config",
    "win.ini",
    "boot.ini",
    "system.ini",
    "system32",
    "c:\\windows",
    "c:/windows",
    "c:\\winnt",
    "c:/winnt",
    "c:\\inetpub",
    "c:/inetpub",
    "\\windows\\",
    "/windows/",
    "/winnt/",
    "id_rsa",
    "id_dsa",
    "authorized_keys",
    ".bash_history",
    ".ssh/",
    "wp-config.php",
    "php.ini",
    "httpd.conf",
    "apache2.conf",
    "my.cnf",
    "my.ini",
    "autoexec.bat",
    "config.sys",
    "desktop.ini",
    "web-inf/",
    "/etc/",
];

/// Words one of which every name `sensitive_compact` looks for contains.
const COMPACT_WORDS: [&str; 9] = [
    "passwd", "shadow", "ini", "system", "issue", "hosts", "group", "environ", "root",
];
static COMPACT_GATE: Literals = Literals::new(|| {
    aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(COMPACT_WORDS)
        .ok()
});

/// Sensitive files named with any separator between their parts (`etc%c0%afpasswd`,
/// `etc0x5cpasswd`, `windows\\win.ini`): traversal fuzzers encode the separator in ways no
/// decoder undoes, so the parts are looked for with everything but letters and digits
/// removed. Parts that prose may join (`etc. hosts`) count only beside a dot pair or an
/// escape.
fn sensitive_compact(s: &str) -> bool {
    if !any_of(&COMPACT_GATE, &COMPACT_WORDS, s) {
        return false;
    }
    // escapes left after decoding (`%c1%af`, `%u2216`, `0x2f`) are dropped with their digits
    let b = s.as_bytes();
    let mut compact = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let n = if b.get(i + 1) == Some(&b'u') { 5 } else { 2 };
            i += 1;
            let mut k = 0;
            while k < n && b.get(i).is_some_and(u8::is_ascii_alphanumeric) {
                i += 1;
                k += 1;
            }
            continue;
        }
        if c == b'0' && b.get(i + 1) == Some(&b'x') {
            i += 4;
            continue;
        }
        if c.is_ascii_alphanumeric() {
            compact.push(char::from(c));
        }
        i += 1;
    }
    const ALWAYS: [&str; 9] = [
        "etcpasswd",
        "etcshadow",
        "etcmasterpasswd",
        "windowswinini",
        "winntwinini",
        "windowssystem32",
        "winntsystem32",
        "bootini",
        "systemroot",
    ];
    const NEAR_ESCAPES: [&str; 4] = ["etcissue", "etchosts", "etcgroup", "procselfenviron"];
    ALWAYS.iter().any(|f| lit(&compact, f))
        || ((lit(s, "..") || s.contains(['%', '\\', '?']) || lit(s, "0x"))
            && NEAR_ESCAPES.iter().any(|f| lit(&compact, f)))
}

static SENSITIVE_SET: Literals = Literals::new(|| dfa(SENSITIVE_FILES));
static CODE_SET: Literals = Literals::new(|| dfa(CODE));

/// A DFA over `words`: these sets are small and scanned over every value, so the faster
/// automaton is worth its memory.
fn dfa(words: &[&str]) -> Option<aho_corasick::AhoCorasick> {
    aho_corasick::AhoCorasick::builder()
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(words)
        .ok()
}

fn path_traversal(s: &str, sens: Sensitivity) -> bool {
    // a `..` segment: between separators, or at an end, with `;` and `%` as seen on servers
    let b = s.as_bytes();
    let dotdot = s.match_indices("..").any(|(i, _)| {
        let before = i.checked_sub(1).and_then(|j| b.get(j));
        let after = b.get(i + 2);
        matches!(before, None | Some(b'/' | b'\\'))
            && matches!(
                after,
                None | Some(b'/' | b'\\' | b';' | b'%' | b' ' | b'?' | b'#')
            )
            && !(before.is_none() && after.is_none() && s.len() > 2)
    });
    let heuristics = match sens {
        Sensitivity::Low => false,
        Sensitivity::Medium => {
            dotdot || any_of(&SENSITIVE_SET, SENSITIVE_FILES, s) || sensitive_compact(s)
        }
        Sensitivity::High => {
            lit(s, "..") || any_of(&SENSITIVE_SET, SENSITIVE_FILES, s) || sensitive_compact(s)
        }
    };
    // `../` or `..\` with somewhere to go (a link's `href="../"` goes nowhere)
    let climbs = ["../", "..\\"].iter().any(|d| {
        s.match_indices(d).any(|(i, _)| {
            !s.get(i + 3..)
                .and_then(|r| r.chars().next())
                .is_some_and(|c| matches!(c, '"' | '\'' | '>' | '<'))
        })
    });
    if heuristics
        || climbs
        || lit(s, "/\\/")
        || lit(s, "\\/\\")
        || lit(s, "..2f")
        || lit(s, "..5c")
        || lit(s, "l2v0yy9wyxnzd2q")
        // `../../`, `etc/passwd` and `etc/shadow` in base64
        || lit(s, "li4vli4v")
        || lit(s, "li4uxc4u")
        || lit(s, "zxrjl3bhc3n3z")
        || lit(s, "zxrjl3noywrvd")
        || lit(s, "..0x2f")
        || lit(s, "..0x5c")
        || lit(s, "0x2e0x2e")
        || lit(s, "..;/")
        || lit(s, "/etc/passwd")
        || lit(s, "/etc/shadow")
    {
        return true;
    }
    s.starts_with("file:")
        || lit(s, "php://")
        || lit(s, "expect://")
        || lit(s, "zip://")
        || lit(s, "phar://")
        || lit(s, "data://")
        || lit(s, "glob://")
        || lit(s, "compress.zlib://")
}

fn ssrf(s: &str) -> bool {
    for scheme in [
        "gopher://",
        "dict://",
        "ldap://",
        "tftp://",
        "jar:",
        "netdoc://",
    ] {
        if lit(s, scheme) {
            return true;
        }
    }
    let Some(p) = lit_find(s, "://") else {
        return false;
    };
    let after = s.get(p + 3..).unwrap_or("");
    let auth = after.split(['/', '?', '#']).next().unwrap_or("");
    let host = auth.rsplit('@').next().unwrap_or(auth);
    let host = if host.starts_with('[') {
        host.split(']')
            .next()
            .unwrap_or(host)
            .trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or(host)
    };
    if matches!(
        host,
        "localhost"
            | "0"
            | "0.0.0.0"
            | "::1"
            | "::"
            | "metadata.google.internal"
            | "metadata"
            | "instance-data"
    ) || host.ends_with(".localhost")
        || host.ends_with(".internal")
        // public names that resolve to loopback
        || ["localtest.me", "lvh.me", "vcap.me", "lacolhost.com", "127.0.0.1.nip.io"]
            .iter()
            .any(|n| host == *n || host.ends_with(&format!(".{n}")))
    {
        return true;
    }
    // wildcard DNS services that answer with the address spelt in the name:
    // `10.0.0.5.nip.io`, `app-192-168-1-1.sslip.io`
    for svc in [".nip.io", ".sslip.io", ".xip.io", ".traefik.me"] {
        if let Some(name) = host.strip_suffix(svc) {
            let last = name.rsplit(['.', '-']).collect::<Vec<_>>();
            let octets: Vec<&str> = last.iter().take(4).rev().copied().collect();
            let dotted = octets.join(".");
            if let Ok(ip) = dotted.parse::<std::net::Ipv4Addr>() {
                if ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
                {
                    return true;
                }
            }
        }
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return match ip {
            std::net::IpAddr::V4(v4) => {
                v4.is_loopback()
                    || v4.is_private()
                    || v4.is_link_local()
                    || v4.is_unspecified()
                    || v4.octets().first() == Some(&0)
            }
            std::net::IpAddr::V6(v6) => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (v6
                        .segments()
                        .first()
                        .is_some_and(|s| (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80))
            }
        };
    }
    // decimal, hex or octal forms of addresses (http://2130706433/, http://0x7f000001/)
    host.starts_with("0x") || (host.len() >= 8 && host.chars().all(|c| c.is_ascii_digit()))
}

/// MongoDB query operators.
pub const MONGO_OPERATORS: [&str; 14] = [
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$where",
    "$regex",
    "$nin",
    "$exists",
    "$or",
    "$and",
    "$expr",
    "$elemMatch",
    "$in",
];

fn nosql(s: &str) -> bool {
    s.contains('$')
        && [
            "$ne",
            "$gt",
            "$gte",
            "$lt",
            "$lte",
            "$where",
            "$regex",
            "$nin",
            "$exists",
            "$or",
            "$and",
            "$expr",
            "$elemmatch",
            "$in",
        ]
        .iter()
        .any(|op| {
            s.contains(&format!("{op}\""))
                || s.contains(&format!("{op}'"))
                || s.contains(&format!("[{op}]"))
                || s.contains(&format!("{op}:"))
                || s.contains(&format!("\"{op}\""))
        })
        || (lit(s, "$where") || lit(s, "db.") && lit(s, "find("))
        || lit(s, "';return")
        || lit(s, "'; return")
        || lit(s, "sleep(") && lit(s, "this.")
        || (lit(s, "db.")
            && (lit(s, ".insert(") || lit(s, ".find(") || lit(s, ".remove(") || lit(s, ".drop(")))
        || (lit(s, "do{") && lit(s, "while("))
}

fn ldap(s: &str) -> bool {
    lit(s, "*)(")
        || lit(s, ")(|")
        || lit(s, ")(&")
        || lit(s, "(|(")
        || lit(s, "(&(")
        || lit(s, "*))")
        || lit(s, ")(!(")
        || lit(s, "objectclass=*")
        || lit(s, "(uid=*")
}

fn template(s: &str) -> bool {
    let exprs = [
        ("{{", "}}"),
        ("${", "}"),
        ("<%", "%>"),
        ("#{", "}"),
        ("{%", "%}"),
        ("*{", "}"),
        ("[[", "]]"),
        ("@(", ")"),
    ];
    for (o, c) in exprs {
        if let Some(p) = lit_find(s, o) {
            let inner = s
                .get(p + o.len()..)
                .and_then(|t| lit_find(t, c).and_then(|e| t.get(..e)))
                .unwrap_or("");
            let arithmetic = inner.as_bytes().windows(3).any(|w| matches!(w, [a, op, b] if a.is_ascii_digit() && matches!(op, b'*' | b'+' | b'-' | b'/') && b.is_ascii_digit()));
            let dangerous = [
                "__",
                "config",
                "self.",
                "request.",
                "cycler",
                "lipsum",
                "joiner",
                "os.",
                "popen",
                "system(",
                "exec(",
                "eval(",
                "getclass",
                "runtime",
                "class.",
                "t(java",
                "new(",
                "import",
                "forname",
                "processbuilder",
                "include(",
                "settings.",
            ];
            if inner.len() < 500 && (arithmetic || dangerous.iter().any(|d| lit(inner, d))) {
                return true;
            }
        }
    }
    lit(s, "__class__")
        || lit(s, "__globals__")
        || lit(s, "__builtins__")
        || lit(s, "getruntime")
        || lit(s, "freemarker.template")
}

/// The first class `raw` belongs to, among `classes`.
pub fn detect(raw: &str, classes: &[Class]) -> Option<Class> {
    detect_with(raw, classes, Sensitivity::Medium)
}

/// The first class `raw` belongs to, among `classes`, at the given sensitivity.
pub fn detect_with(raw: &str, classes: &[Class], sens: Sensitivity) -> Option<Class> {
    if raw.len() < 3 {
        return None;
    }
    let normalised = normalise(raw);
    let s = &normalised;
    // line breaks separate shell commands; to the other grammars they are spaces
    let flat = if s.contains('\n') {
        std::borrow::Cow::Owned(s.replace('\n', " "))
    } else {
        std::borrow::Cow::Borrowed(s.as_str())
    };
    let s = flat.as_ref();
    classes.iter().copied().find(|c| match c {
        Class::Sqli => sqli(s),
        Class::Xss => {
            xss(s, sens)
                || bracket_probe(raw, s)
                // `+` is a space in a query string, and the shift character of UTF-7
                || ((raw.contains("+AD") || raw.contains("+ad"))
                    && utf7_markup(&raw.to_ascii_lowercase()))
        }
        Class::Command => command(&normalised, sens),
        Class::PathTraversal => {
            path_traversal(s, sens)
                || (sens != Sensitivity::Low
                    && any_of(&COMPACT_GATE, &COMPACT_WORDS, raw)
                    && sensitive_compact(&raw.to_ascii_lowercase()))
        }
        Class::Ssrf => ssrf(s),
        Class::Nosql => nosql(s),
        Class::Ldap => ldap(s),
        // `+` is a space in a query string but arithmetic in a template: both readings
        Class::Template => {
            template(s) || (raw.contains('+') && template(&raw.to_ascii_lowercase()))
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn stacked_statements_need_sql_behind_the_word() {
        for prose in [
            "Done; if needed I can resend.",
            "Fine; delete the old one please",
            "ok; begin when ready",
            "Noted; declare it in the form",
            "sure; waitfor me",
        ] {
            assert_eq!(
                detect_with(prose, &[Class::Sqli], Sensitivity::High),
                None,
                "{prose}"
            );
        }
        for attack in [
            "1; if (1=1) waitfor delay '0:0:5'--",
            "1;IF(1=1) SELECT 1",
            "1; if exists (select * from users) waitfor delay '0:0:5'",
            "1; begin declare @x varchar(99); exec(@x); end",
            "1; BEGIN TRANSACTION",
            "1; delete users where 1=1",
            "1; declare @s varchar(8000) set @s=0x73",
            "1;waitfor delay '0:0:5'",
            "x'; waitfor time '23:59'--",
        ] {
            assert_eq!(
                detect_with(attack, &[Class::Sqli], Sensitivity::Low),
                Some(Class::Sqli),
                "{attack}"
            );
        }
    }

    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalise("UN%2F**%2FION%20SeLeCt"), "un ion select");
        assert_eq!(normalise("%253Cscript%253E"), "<script>");
        assert_eq!(
            normalise("&lt;svg/onload=alert(1)&gt;"),
            "<svg/onload=alert(1)>"
        );
        assert_eq!(normalise("ＳＥＬＥＣＴ"), "select");
    }

    #[test]
    fn decision_table() {
        let all = Class::ALL;
        let cases: [(&str, Option<Class>); 25] = [
            ("1' OR '1'='1", Some(Class::Sqli)),
            ("1 UNION/**/SELECT password FROM users", Some(Class::Sqli)),
            ("admin'--", Some(Class::Sqli)),
            ("1;DROP TABLE users", Some(Class::Sqli)),
            ("<script>alert(1)</script>", Some(Class::Xss)),
            ("\" onmouseover=\"alert(1)", Some(Class::Xss)),
            ("; cat /etc/passwd", Some(Class::Command)),
            ("$(whoami)", Some(Class::Command)),
            ("../../../../etc/hosts", Some(Class::PathTraversal)),
            (
                "http://169.254.169.254/latest/meta-data/",
                Some(Class::Ssrf),
            ),
            ("http://[::1]:8080/admin", Some(Class::Ssrf)),
            ("http://169.254.169.254.nip.io/latest/", Some(Class::Ssrf)),
            ("https://app-10-0-0-5.sslip.io/admin", Some(Class::Ssrf)),
            ("http://api.localtest.me/", Some(Class::Ssrf)),
            ("{\"$ne\": null}", Some(Class::Nosql)),
            ("*)(uid=*))(|(uid=*", Some(Class::Ldap)),
            ("{{7*7}}", Some(Class::Template)),
            // benign
            ("union was a great select", None),
            ("D'or 1st parfume", None),
            ("john+or@var.es", None),
            ("Please select an option from the list", None),
            ("https://api.example.com/v1/users", None),
            ("O'Brien and O'Neil", None),
            ("I'd like 2 apples & 3 pears", None),
            ("Rock & roll; cat lovers unite", None),
        ];
        for (input, want) in cases {
            assert_eq!(detect(input, &all), want, "{input}");
        }
    }

    #[test]
    fn encodings_code_and_sensitivity() {
        let all = Class::ALL;
        let medium: [(&str, Option<Class>); 14] = [
            // overlong UTF-8 and odd separators
            (
                "%c0%ae%c0%ae%c0%afetc%c0%afhosts",
                Some(Class::PathTraversal),
            ),
            ("..%c0%af..%c0%afboot.ini", Some(Class::PathTraversal)),
            ("..%01%%32%%66etc%%32%%66passwd", Some(Class::PathTraversal)),
            ("..0x2f..0x2fetc0x2fissue", Some(Class::PathTraversal)),
            ("/var/log/apache2/access.log", Some(Class::PathTraversal)),
            // code and commands without a separator, and line breaks as one
            ("<?php system($_GET['c']); ?>", Some(Class::Command)),
            ("system('sleep 5');", Some(Class::Command)),
            ("ls -la /var/www", Some(Class::Command)),
            ("%0aid%0a", Some(Class::Command)),
            ("() { :;}; /bin/cat /etc/passwd", Some(Class::Command)),
            // JavaScript escapes
            (r"<img src=x onerror=al\u0065rt(1)>", Some(Class::Xss)),
            // benign look-alikes
            ("The ecosystem('s) health", None),
            ("Darwin Initiative etc. hosts list", None),
            ("type: dir", None),
        ];
        for (input, want) in medium {
            assert_eq!(detect(input, &all), want, "{input}");
        }
        let sql_and_markup: [(&str, Option<Class>); 16] = [
            ("aa' * @a or '1", Some(Class::Sqli)),
            ("admin' --", Some(Class::Sqli)),
            (" OR x=y#", Some(Class::Sqli)),
            (" ORDER BY 3--", Some(Class::Sqli)),
            ("3.2UNION SELECT 2", Some(Class::Sqli)),
            ("-1 union", Some(Class::Sqli)),
            ("1 and substring(version(),1,1)=5", Some(Class::Sqli)),
            (
                "+ADw-script+AD4-alert(1)+ADw-/script+AD4-",
                Some(Class::Xss),
            ),
            ("&#x03c;", Some(Class::Xss)),
            (
                "<meta http-equiv=\"refresh\" content=\"0;url=//evil\">",
                Some(Class::Xss),
            ),
            ("./\\/./\\/./etc", Some(Class::PathTraversal)),
            // benign: prose, search syntax, links, parameters
            ("O' UNION selected a few friends", None),
            ("\"wood\" and \"sign\" and \"polka dots\"", None),
            ("junk <a href=\"../\">foo.com</a>", None),
            ("5685587||ORDER=||SECTION_ID=||PAGE=2", None),
            ("Family reunion selection 2026", None),
        ];
        for (input, want) in sql_and_markup {
            assert_eq!(detect(input, &all), want, "{input}");
        }
        // low leaves the value-alone heuristics out; high adds markup and bare sinks
        let low = Sensitivity::Low;
        let high = Sensitivity::High;
        assert_eq!(detect_with("/var/log/app.log", &all, low), None);
        assert_eq!(detect_with("ls -la /var/www", &all, low), None);
        assert_eq!(
            detect_with("../../etc/hosts", &all, low),
            Some(Class::PathTraversal)
        );
        assert_eq!(detect_with("<b>bold</b>", &all, Sensitivity::Medium), None);
        assert_eq!(detect_with("<b>bold</b>", &all, high), Some(Class::Xss));
        assert_eq!(detect_with("alert`1`", &all, high), Some(Class::Xss));
        assert_eq!(detect_with("a|whoami", &all, high), Some(Class::Command));
    }
}
