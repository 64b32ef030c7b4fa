//! Injection detection on one input value, after normalisation: URL decoding (repeated),
//! HTML entities, full-width Unicode, case, SQL comments and whitespace. Each class is a set
//! of structural signatures (a keyword alone never matches: `select` in prose is fine,
//! `union select` is not). Returns the class found first, never the matched text.

/// The attack classes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
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

fn url_decode_once(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
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
    String::from_utf8_lossy(&out).into_owned()
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

/// The normalised form of a value: decoded, folded, comments and runs of spaces collapsed.
pub fn normalise(raw: &str) -> String {
    let mut s = raw.to_string();
    for _ in 0..3 {
        let d = url_decode_once(&s);
        if d == s {
            break;
        }
        s = d;
    }
    s = html_decode(&s);
    let folded: String = s
        .chars()
        .map(|c| match c as u32 {
            // full-width forms to ASCII
            0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect();
    // SQL comments become a space (`un/**/ion` is not a word, `union/**/select` is two)
    let mut out = String::with_capacity(folded.len());
    let mut rest = folded.as_str();
    while let Some(p) = rest.find("/*") {
        out.push_str(rest.get(..p).unwrap_or(""));
        out.push(' ');
        let body = rest.get(p + 2..).unwrap_or("");
        if let Some(code) = body.strip_prefix('!') {
            // MySQL's /*!50000 code */ runs the code: keep it, drop the version
            let code = code.trim_start_matches(|c: char| c.is_ascii_digit());
            let (inner, after) = match code.find("*/") {
                Some(e) => (code.get(..e).unwrap_or(""), code.get(e + 2..).unwrap_or("")),
                None => (code, ""),
            };
            out.push_str(inner);
            out.push(' ');
            rest = after;
            continue;
        }
        rest = match body.find("*/") {
            Some(e) => body.get(e + 2..).unwrap_or(""),
            None => "",
        };
    }
    out.push_str(rest);
    let mut collapsed = String::with_capacity(out.len());
    let mut space = false;
    for c in out.chars() {
        if c.is_whitespace() || c == '\u{0}' {
            if !space {
                collapsed.push(' ');
            }
            space = true;
        } else {
            collapsed.push(c);
            space = false;
        }
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

fn sqli(s: &str) -> bool {
    let ws = words(s);
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
        s.contains(p)
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
        .any(|p| s.contains(p))
        {
            return true;
        }
        if s.contains('\'') || has("select") {
            return true;
        }
    }
    if has("select")
        && (has("from")
            || s.contains("select(")
            || s.contains("select @@")
            || s.contains("select case")
            || has("null"))
        && (s.contains('\'')
            || s.contains('(')
            || s.contains(';')
            || s.contains("--")
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
        ";waitfor",
        ";select @@",
        ";select sleep",
        ";select pg_sleep",
        ";select * from",
        ";select version",
    ] {
        if flat.contains(kw) {
            return true;
        }
    }
    if flat.contains(";update ") && flat.contains(" set ") {
        return true;
    }
    // a quote closed, then a condition (with a comparison close behind) or a comment
    let quoted = s.contains('\'') || s.contains('"') || s.contains('`');
    if quoted {
        for q in ["'", "\"", "')", "\")", "`"] {
            for op in [
                " or ", " and ", " xor ", " || ", " && ", "||", "&&", " div ", " having ",
                " like ", " rlike ", " regexp ",
            ] {
                let pat = format!("{q}{op}");
                let mut rest = s;
                while let Some(p) = rest.find(&pat) {
                    let after = rest.get(p + pat.len()..).unwrap_or("");
                    let window: String = after.chars().take(24).collect();
                    if window.contains(['=', '<', '>'])
                        || window.contains(" like ")
                        || window.contains("sleep(")
                        || window.contains("select")
                        || window.contains(" is ")
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
                if let Some(p) = s.find(&pat) {
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
        if s.contains("' order by")
            || s.contains("' group by")
            || s.contains("' procedure analyse")
            || s.contains("' union")
            || s.contains("'union")
        {
            return true;
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
    if has_seq(&ws, "order", &["by"]) && s.contains("--") {
        return true;
    }
    // a number, then SQL: `241 and ascii(...)=53`, `14968 order by 5`
    let t = s.trim_start().trim_start_matches('-');
    if t.starts_with(|c: char| c.is_ascii_digit()) {
        let after = t
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
            .trim_start();
        let sqlish = after.starts_with("and ")
            || after.starts_with("or ")
            || after.starts_with("&&")
            || after.starts_with("||")
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

fn xss(s: &str) -> bool {
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
    if s.contains("<script")
        || s.contains("vbscript:")
        || s.contains("data:text/html")
        || s.contains("livescript:")
    {
        return true;
    }
    if let Some(p) = s.find("javascript:") {
        let after: String = s.get(p + 11..).unwrap_or("").chars().take(40).collect();
        if !after.starts_with(' ') || after.contains('(') {
            return true;
        }
    }
    let has_handler = {
        let b = s.as_bytes();
        let mut found = false;
        let mut i = 0;
        while let Some(p) = s.get(i..).and_then(|t| t.find("on")) {
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
                    Some(b' ' | b'/' | b'"' | b'\'' | b'\t' | b'\n' | b';' | b'<')
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
    let tag = TAGS.iter().any(|t| s.contains(t))
        || (s.contains('<') && s.contains('>') && s.contains('='));
    if has_handler && (tag || s.contains('"') || s.contains('\'')) {
        return true;
    }
    if tag
        && (s.contains("alert(")
            || s.contains("prompt(")
            || s.contains("confirm(")
            || s.contains("eval(")
            || s.contains("document.")
            || s.contains("srcdoc")
            || s.contains("expression(")
            || s.contains("fromcharcode"))
    {
        return true;
    }
    if (s.contains("\"") || s.contains('\''))
        && (s.contains("alert(") || s.contains("prompt(") || s.contains("confirm("))
        && (s.contains(';') || s.contains('>') || s.contains("//"))
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
    .any(|p| s.contains(p))
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
        .any(|p| s.contains(p))
    {
        return true;
    }
    if (s.contains("<iframe") || s.contains("<embed") || s.contains("<frame")) && s.contains("src")
        || s.contains("<object") && s.contains("data")
    {
        return true;
    }
    s.contains("expression(") && s.contains("style")
}

const COMMANDS: [&str; 36] = [
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
    "type",
    "dir",
    "head",
    "more",
];

fn command(s: &str) -> bool {
    if s.contains("/etc/passwd")
        || s.contains("/bin/sh")
        || s.contains("/bin/bash")
        || s.contains("${ifs}")
        || s.contains("$ifs")
        || s.contains("cmd.exe")
        || s.contains("cmd /c")
        || s.contains("powershell")
    {
        return true;
    }
    for sep in [";", "&&", "||", "|", "`", "$(", "\n", "&"] {
        let mut rest = s;
        while let Some(p) = rest.find(sep) {
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
                    '$', '<', '>', '|', ';', '`', ')', '\'', '"', '&', '{', '+', ',',
                ])
                || tail.strip_prefix(' ').is_some_and(|t| {
                    t.starts_with(['-', '/', '$', '.', '~', '\\', '"', '\'', '|', ';', '`'])
                        || t.starts_with("http")
                        || t.starts_with(|c: char| c.is_ascii_digit())
                });
            if COMMANDS.contains(&base) && args {
                return true;
            }
            rest = after;
        }
    }
    false
}

fn path_traversal(s: &str) -> bool {
    s.contains("../")
        || s.contains("..\\")
        || s.ends_with("/..")
        || s.contains("..;/")
        || s.contains("/etc/passwd")
        || s.contains("/etc/shadow")
        || s.contains("c:\\windows")
        || s.contains("c:/windows")
        || s.contains("win.ini")
        || s.contains("boot.ini")
        || s.contains("/proc/self")
        || s.starts_with("file:")
        || s.contains("php://")
        || s.contains("expect://")
        || s.contains("zip://")
        || s.contains("phar://")
        || s.contains("data://")
        || s.contains("web-inf/")
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
        if s.contains(scheme) {
            return true;
        }
    }
    let Some(p) = s.find("://") else {
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
    {
        return true;
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
    [
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
    }) || (s.contains("$where") || s.contains("db.") && s.contains("find("))
        || s.contains("';return")
        || s.contains("'; return")
        || s.contains("sleep(") && s.contains("this.")
        || (s.contains("db.")
            && (s.contains(".insert(")
                || s.contains(".find(")
                || s.contains(".remove(")
                || s.contains(".drop(")))
        || (s.contains("do{") && s.contains("while("))
}

fn ldap(s: &str) -> bool {
    s.contains("*)(")
        || s.contains(")(|")
        || s.contains(")(&")
        || s.contains("(|(")
        || s.contains("(&(")
        || s.contains("*))")
        || s.contains(")(!(")
        || s.contains("objectclass=*")
        || s.contains("(uid=*")
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
        if let Some(p) = s.find(o) {
            let inner = s
                .get(p + o.len()..)
                .and_then(|t| t.find(c).and_then(|e| t.get(..e)))
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
            if inner.len() < 500 && (arithmetic || dangerous.iter().any(|d| inner.contains(d))) {
                return true;
            }
        }
    }
    s.contains("__class__")
        || s.contains("__globals__")
        || s.contains("__builtins__")
        || s.contains("getruntime")
        || s.contains("freemarker.template")
}

/// The first class `raw` belongs to, among `classes`.
pub fn detect(raw: &str, classes: &[Class]) -> Option<Class> {
    if raw.len() < 3 {
        return None;
    }
    let s = normalise(raw);
    classes.iter().copied().find(|c| match c {
        Class::Sqli => sqli(&s),
        Class::Xss => xss(&s),
        Class::Command => command(&s),
        Class::PathTraversal => path_traversal(&s),
        Class::Ssrf => ssrf(&s),
        Class::Nosql => nosql(&s),
        Class::Ldap => ldap(&s),
        Class::Template => template(&s),
    })
}

#[cfg(test)]
mod tests {
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
        let cases: [(&str, Option<Class>); 22] = [
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
}
