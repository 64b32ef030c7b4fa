//! Secrets in config, kept out of it: a secret field is written `${env:NAME}` (an
//! environment variable), `${file:PATH}` (a file, relative to the config file; one
//! trailing newline is dropped) or `${cmd:PROGRAM ARGS…}` (what a program prints, as a KMS
//! client or a secrets manager's CLI does; run without a shell, at most 10 s), and a literal
//! only as
//! `{inline: "…", dangerous_inline_secret: true}`. The value is read when the config is
//! built, held in memory that is zeroed when dropped, and never printed (`Debug` shows the
//! source, not the value).
//!
//! Every `*_env` field of earlier configs (`secret_env: NAME`) still works and means
//! `${env:NAME}`.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `${env:NAME}`
    Env(String),
    /// `${file:PATH}` (made absolute against the config file's folder when the config is read)
    File(PathBuf),
    /// `${cmd:PROGRAM ARGS…}`: the standard output of a program (split on spaces, no shell).
    Command(Vec<String>),
    /// A literal in the config (only with `dangerous_inline_secret: true`).
    Inline(Zeroizing<String>),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "${{env:{n}}}"),
            SecretRef::File(p) => write!(f, "${{file:{}}}", p.display()),
            SecretRef::Command(c) => write!(f, "${{cmd:{}}}", c.first().map_or("", String::as_str)),
            SecretRef::Inline(_) => f.write_str("<inline secret>"),
        }
    }
}

/// What to write instead of a literal.
pub const HOW: &str =
    "write a secret as \"${env:NAME}\", \"${file:/path/to/secret}\" or \"${cmd:program args}\" (a literal in the config needs {inline: \"…\", dangerous_inline_secret: true})";

impl SecretRef {
    /// Reads `${env:NAME}` or `${file:PATH}`; `None` for any other text.
    pub fn parse(text: &str) -> Option<SecretRef> {
        let inner = text.strip_prefix("${")?.strip_suffix('}')?;
        if let Some(name) = inner.strip_prefix("env:") {
            let ok =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            return ok.then(|| SecretRef::Env(name.to_string()));
        }
        if let Some(cmd) = inner.strip_prefix("cmd:") {
            let words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
            return (!words.is_empty()).then_some(SecretRef::Command(words));
        }
        let path = inner.strip_prefix("file:")?;
        (!path.is_empty()).then(|| SecretRef::File(PathBuf::from(path)))
    }

    /// The secret's bytes.
    pub fn resolve(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        match self {
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Zeroizing::new(v.into_bytes())),
                Ok(_) => Err(format!("the environment variable `{name}` is empty")),
                Err(_) => Err(format!("the environment variable `{name}` is not set")),
            },
            SecretRef::File(p) => {
                let mut b = Zeroizing::new(
                    std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
                );
                if b.last() == Some(&b'\n') {
                    b.pop();
                    if b.last() == Some(&b'\r') {
                        b.pop();
                    }
                }
                if b.is_empty() {
                    return Err(format!("{} is empty", p.display()));
                }
                Ok(b)
            }
            SecretRef::Command(words) => run(words),
            SecretRef::Inline(s) => Ok(Zeroizing::new(s.as_bytes().to_vec())),
        }
    }

    /// The secret as text (hex keys, passwords).
    pub fn resolve_text(&self) -> Result<Zeroizing<String>, String> {
        let b = self.resolve()?;
        std::str::from_utf8(&b)
            .map(|s| Zeroizing::new(s.trim().to_string()))
            .map_err(|_| format!("the secret from {self:?} is not UTF-8 text"))
    }

    /// The secret of `secret`, or of the legacy `*_env` variable `env`; an error names which
    /// field when both or neither is given (`required`).
    pub fn either(
        secret: Option<&SecretRef>,
        env: Option<&str>,
    ) -> Result<Option<SecretRef>, &'static str> {
        match (secret, env) {
            (Some(_), Some(_)) => {
                Err("give the secret once: `secret` or the older `*_env` field, not both")
            }
            (Some(s), None) => Ok(Some(s.clone())),
            (None, Some(e)) => Ok(Some(SecretRef::Env(e.to_string()))),
            (None, None) => Ok(None),
        }
    }
}

/// Runs a secret's program: its standard output (one trailing newline dropped), within 10 s.
fn run(words: &[String]) -> Result<Zeroizing<Vec<u8>>, String> {
    use std::io::Read as _;
    let (prog, args) = words.split_first().ok_or("an empty ${cmd:}")?;
    let mut child = std::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run `{prog}` for a secret: {e}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{prog}` did not print the secret within 10 s"));
            }
        }
    };
    let mut out = Zeroizing::new(Vec::new());
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut out)
            .map_err(|e| format!("cannot read what `{prog}` printed: {e}"))?;
    }
    if !status.success() {
        return Err(format!(
            "`{prog}` failed ({status}) instead of printing the secret"
        ));
    }
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    if out.is_empty() {
        return Err(format!("`{prog}` printed nothing"));
    }
    Ok(out)
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Inline {
                inline: String,
                #[serde(default)]
                dangerous_inline_secret: bool,
            },
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => SecretRef::parse(&t).ok_or_else(|| {
                serde::de::Error::custom(format!("a secret is not written in the config: {HOW}"))
            }),
            Raw::Inline {
                inline,
                dangerous_inline_secret: true,
            } if !inline.is_empty() => Ok(SecretRef::Inline(Zeroizing::new(inline))),
            Raw::Inline { .. } => Err(serde::de::Error::custom(format!(
                "an inline secret needs dangerous_inline_secret: true and a value; better: {HOW}"
            ))),
        }
    }
}

impl schemars::JsonSchema for SecretRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretRef".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A secret: \"${env:NAME}\" or \"${file:PATH}\" (relative to the config file), or {inline, dangerous_inline_secret: true}.",
            "oneOf": [
                {"type": "string", "pattern": "^\\$\\{(env:[A-Za-z0-9_]+|file:.+|cmd:.+)\\}$"},
                {"type": "object", "required": ["inline", "dangerous_inline_secret"], "additionalProperties": false,
                 "properties": {"inline": {"type": "string", "minLength": 1}, "dangerous_inline_secret": {"const": true}}}
            ]
        })
    }
}

/// Whether a secret file can be read by users other than its owner (`validate` warns).
#[cfg(unix)]
pub fn readable_by_others(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

/// Whether a secret file can be read by users other than its owner (`validate` warns).
#[cfg(not(unix))]
pub fn readable_by_others(_: &std::path::Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn de(v: serde_json::Value) -> Result<SecretRef, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn references_parse_literals_are_refused_and_debug_hides_values() {
        assert_eq!(
            de(serde_json::json!("${env:API_SECRET}")),
            Ok(SecretRef::Env("API_SECRET".into()))
        );
        assert_eq!(
            de(serde_json::json!("${file:/run/secrets/key}")),
            Ok(SecretRef::File("/run/secrets/key".into()))
        );
        for bad in [
            "hunter2",
            "${env:}",
            "${env:A-B}",
            "${file:}",
            "${vault:x}",
            "$env:X",
        ] {
            let e = de(serde_json::json!(bad)).unwrap_err();
            assert!(e.contains("${env:NAME}"), "{bad}: {e}");
        }
        assert!(de(serde_json::json!({"inline": "s3cret"})).is_err());
        let inline =
            de(serde_json::json!({"inline": "s3cret", "dangerous_inline_secret": true})).unwrap();
        assert_eq!(&inline.resolve().unwrap()[..], b"s3cret");
        assert_eq!(format!("{inline:?}"), "<inline secret>");
    }

    #[test]
    fn a_program_prints_the_secret_and_its_failures_are_named() {
        let ok = SecretRef::parse("${cmd:printf s3cr3t-from-kms\\n}").unwrap();
        assert_eq!(&ok.resolve().unwrap()[..], b"s3cr3t-from-kms");
        assert!(!format!("{ok:?}").contains("s3cr3t"));
        let e = SecretRef::parse("${cmd:false}")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.contains("failed"), "{e}");
        let e = SecretRef::parse("${cmd:/nonexistent/kms-helper}")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
    }

    #[test]
    fn files_lose_one_trailing_newline_and_missing_sources_are_named() {
        let dir = std::env::temp_dir().join(format!("palisade-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s");
        std::fs::write(&f, "abc\n").unwrap();
        assert_eq!(&SecretRef::File(f.clone()).resolve().unwrap()[..], b"abc");
        std::fs::write(&f, "\n").unwrap();
        assert!(SecretRef::File(f.clone())
            .resolve()
            .unwrap_err()
            .contains("empty"));
        let e = SecretRef::Env("PALISADE_SURELY_UNSET_VAR".into())
            .resolve()
            .unwrap_err();
        assert!(e.contains("PALISADE_SURELY_UNSET_VAR"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
