//! Deploying patches safely: they are written in `monitor` mode; `promote` turns them to
//! `enforce` once the gateway's metrics show that none of them would have refused anything
//! over an observation period, and `rollback` restores the config as it was before the
//! patches. Each step rewrites the file the gateway serves, which it reloads by itself (the
//! file is watched; SIGHUP also reloads), never by a restart. The file as it was before a
//! step is kept beside it (`FILE.before-patch`).

use std::path::{Path, PathBuf};

use crate::MARKER;

/// Where the file as it was before the last step is kept.
pub fn backup_path(config: &Path) -> PathBuf {
    let mut name = config.file_name().unwrap_or_default().to_os_string();
    name.push(".before-patch");
    config.with_file_name(name)
}

/// Writes `text` to `path` through a temporary file and a rename, so a watching gateway
/// never reads half a file; keeps the old content as the backup when `backup` is set.
pub fn write(path: &Path, text: &str, backup: bool) -> Result<(), String> {
    if backup {
        if let Ok(old) = std::fs::read_to_string(path) {
            std::fs::write(backup_path(path), old)
                .map_err(|e| format!("cannot keep {}: {e}", backup_path(path).display()))?;
        }
    }
    let tmp = path.with_extension("palisade-tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The patches section's refusal codes and the modes of its entries.
pub fn section(text: &str) -> Option<&str> {
    text.find(MARKER).and_then(|i| text.get(i..))
}

/// `text` with every patch in `enforce` mode.
pub fn promoted(text: &str) -> Result<String, String> {
    let Some(i) = text.find(MARKER) else {
        return Err("the file has no patches written by `palisade patch`".into());
    };
    let (own, patches) = text.split_at(i);
    let n = patches.matches("\n    mode: \"monitor\"\n").count();
    if n == 0 {
        return Err("no patch is in monitor mode: nothing to promote".into());
    }
    Ok(format!(
        "{own}{}",
        patches.replace("\n    mode: \"monitor\"\n", "\n    mode: \"enforce\"\n")
    ))
}

/// The would-refuse counts of the patches' policies in the gateway's metrics text
/// (`palisade_policy_decisions_total{…verdict="monitor_deny",code=…}`), by code.
pub fn would_refuse(metrics: &str, codes: &[String]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for line in metrics.lines() {
        if !line.starts_with("palisade_policy_decisions_total{")
            || !line.contains("verdict=\"monitor_deny\"")
        {
            continue;
        }
        let Some(code) = line
            .split("code=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        if !codes.iter().any(|c| c == code) {
            continue;
        }
        let n: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match out.iter_mut().find(|(c, _)| c == code) {
            Some((_, m)) => *m += n,
            None => out.push((code.to_string(), n)),
        }
    }
    out
}

/// The refusal codes the patches of `text` can send, from its policies' types.
pub fn codes(text: &str) -> Vec<String> {
    let Some(sec) = section(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in sec.lines() {
        let Some(ty) = line.trim().strip_prefix("- type: ") else {
            continue;
        };
        let ty = ty.trim_matches('"');
        let codes: &[&str] = match ty {
            "deny" => &["route.denied"],
            "require_credentials" => &["credentials.missing"],
            "request_fields" => &["fields.refused", "fields.too_long", "fields.unreadable"],
            "responses" => &[
                "responses.uniform",
                "responses.error_hidden",
                "responses.fields_removed",
            ],
            "ownership" => &["ownership.not_owner", "ownership.unknown_object"],
            "rate_limit" => &["ratelimit.exceeded"],
            "threat" => &["threat.detected"],
            "sealed_session" => &["session.invalid"],
            "jwt" => &["auth.invalid_token", "auth.missing_credential"],
            _ => &[],
        };
        for c in codes {
            if !out.iter().any(|x: &String| x == c) {
                out.push((*c).to_string());
            }
        }
    }
    out
}

/// The config without the patches: the backup kept by the last step when there is one,
/// else the file with its patches section cut off.
pub fn rolled_back(path: &Path) -> Result<String, String> {
    let b = backup_path(path);
    if let Ok(t) = std::fs::read_to_string(&b) {
        return Ok(t);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match text.find(MARKER) {
        Some(i) => Ok(format!("{}\n", text.get(..i).unwrap_or("").trim_end())),
        None => Err(
            "the file has no patches written by `palisade patch` and no backup beside it".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promote_turns_only_the_patches_to_enforce() {
        let text = format!(
            "routes:\n  - name: a\n    policies:\n      - type: threat\n        mode: monitor\n\n{MARKER}\npatches:\n  - answers: \"x\"\n    route: \"a\"\n    mode: \"monitor\"\n    policies:\n      - type: \"deny\"\n"
        );
        let p = promoted(&text).unwrap();
        assert!(
            p.contains("        mode: monitor\n"),
            "the user's own monitor stays"
        );
        assert!(p.contains("    mode: \"enforce\"\n"));
        assert!(promoted(&p).is_err(), "nothing left to promote");
        assert_eq!(codes(&text), vec!["route.denied"]);
    }

    #[test]
    fn would_refuse_reads_the_metrics_of_the_patches_codes() {
        let m = "palisade_policy_decisions_total{kind=\"deny\",verdict=\"monitor_deny\",code=\"route.denied\"} 3\npalisade_policy_decisions_total{kind=\"threat\",verdict=\"deny\",code=\"threat.detected\"} 9\npalisade_policy_decisions_total{kind=\"jwt\",verdict=\"monitor_deny\",code=\"auth.invalid_token\"} 4\n";
        assert_eq!(
            would_refuse(m, &["route.denied".into(), "threat.detected".into()]),
            vec![("route.denied".to_string(), 3)]
        );
    }
}
