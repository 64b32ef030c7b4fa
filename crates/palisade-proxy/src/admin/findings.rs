//! `GET /api/v1/findings`: what `palisade scan` and `palisade audit` found (their JSON
//! reports named in `admin.reports`, read at each call, so a new report shows at once) beside
//! the config's patches, each finding with the patches that answer it: the patch loop's
//! analyse, patch, verify, deploy, in one view.

use std::io::Read;

use palisade_config::admin::PatchInfo;
use serde_json::{json, Value};

/// The value at a JSON pointer, or null.
fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    v.pointer(pointer).unwrap_or(&NULL)
}

/// The largest report read.
const MAX_REPORT_BYTES: u64 = 16 << 20;

/// Whether a patch's operation (as the gateway sees it, `GET /api/users/{id}`) is a finding's
/// (as the description names it, `GET /users/{id}`): the same method, and the description's
/// path at the end of the gateway's (a route or server prefix before it).
fn same_operation(patch: &str, finding: &str) -> bool {
    let (Some((pm, pp)), Some((fm, fp))) = (patch.split_once(' '), finding.split_once(' ')) else {
        return false;
    };
    pm.eq_ignore_ascii_case(fm) && (pp == fp || pp.ends_with(fp) && fp.starts_with('/'))
}

/// One finding, from either tool.
fn finding(
    id: &str,
    severity: &str,
    title: &str,
    operation: Option<&str>,
    location: Option<&str>,
    patches: &[PatchInfo],
) -> Value {
    // a patch answers a finding when it names the finding's check and, if it patches one
    // operation, that operation
    let answered: Vec<usize> = patches
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            p.answers.contains(id)
                && match (&p.operation, operation) {
                    (None, _) => true,
                    (Some(po), Some(fo)) => same_operation(po, fo),
                    (Some(_), None) => false,
                }
        })
        .map(|(i, _)| i)
        .collect();
    json!({"id": id, "severity": severity, "title": title, "operation": operation,
           "location": location, "patches": answered})
}

fn scan(v: &Value, patches: &[PatchInfo]) -> Vec<Value> {
    at(v, "/findings")
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            finding(
                at(f, "/check").as_str().unwrap_or("?"),
                at(f, "/severity").as_str().unwrap_or("?"),
                at(f, "/title").as_str().unwrap_or(""),
                at(f, "/operation").as_str(),
                at(f, "/location").as_str(),
                patches,
            )
        })
        .collect()
}

fn audit(v: &Value, patches: &[PatchInfo]) -> Vec<Value> {
    let severity = |rule: &str| {
        at(v, "/rules")
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| at(r, "/id") == rule)
            .and_then(|r| at(r, "/severity").as_str())
            .unwrap_or("?")
            .to_string()
    };
    at(v, "/report/findings")
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| {
            let rule = at(f, "/rule").as_str().unwrap_or("?");
            let sev = severity(rule);
            let title = at(f, "/message").as_str().unwrap_or("");
            let place = at(f, "/pointer").as_str();
            // a finding of several operations is shown once per operation it affects
            let uses: Vec<Option<&str>> = match at(f, "/uses").as_array() {
                Some(u) if !u.is_empty() => u.iter().map(Value::as_str).collect(),
                _ => vec![None],
            };
            uses.into_iter()
                .map(|op| finding(rule, &sev, title, op, place, patches))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn read(path: &std::path::Path) -> Result<Value, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut text = Vec::new();
    f.take(MAX_REPORT_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if text.len() as u64 > MAX_REPORT_BYTES {
        return Err(format!("larger than {MAX_REPORT_BYTES} bytes"));
    }
    serde_json::from_slice(&text).map_err(|e| format!("not a JSON report ({e})"))
}

/// The reports and patches of the config serving.
pub fn view(api: &palisade_config::admin::AdminApi) -> Value {
    let reports: Vec<Value> = api
        .reports
        .iter()
        .map(|path| {
            let file = path.display().to_string();
            match read(path) {
                Ok(v) if v.get("target").is_some() && v.get("findings").is_some() => json!({
                    "file": file, "tool": "scan", "target": at(&v, "/target"),
                    "requests": at(&v, "/requests"), "findings": scan(&v, &api.patches),
                }),
                Ok(v) if v.get("report").is_some() => json!({
                    "file": file, "tool": "audit", "source": at(&v, "/report/source"),
                    "score": at(&v, "/report/score"), "findings": audit(&v, &api.patches),
                }),
                Ok(_) => json!({"file": file, "error": "neither a scan nor an audit report (--format json)"}),
                Err(e) => json!({"file": file, "error": e}),
            }
        })
        .collect();
    json!({ "reports": reports, "patches": api.patches })
}

#[cfg(test)]
mod tests {
    use super::same_operation;

    #[test]
    fn a_patch_names_the_operation_of_a_finding_under_its_route_prefix() {
        assert!(same_operation("GET /api/users/{id}", "GET /users/{id}"));
        assert!(same_operation("get /users", "GET /users"));
        assert!(!same_operation("POST /api/users", "GET /users"));
        assert!(!same_operation("GET /api/users/{id}/x", "GET /users/{id}"));
    }
}
