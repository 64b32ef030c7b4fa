//! Counters that policies own: a process-wide registry, so a policy rebuilt by a reload keeps
//! counting where its predecessor stopped, and the admin `/metrics` page renders them beside
//! the gateway's own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

type Series = BTreeMap<(&'static str, String), (&'static str, Arc<AtomicU64>)>;

fn registry() -> &'static Mutex<Series> {
    static R: OnceLock<Mutex<Series>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(BTreeMap::new()))
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The counter `name{labels}`, created at zero on first use. `name` must be a valid Prometheus
/// metric name ending in `_total`; label values are escaped here.
pub fn counter(name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Arc<AtomicU64> {
    let labels = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect::<Vec<_>>()
        .join(",");
    let mut r = registry().lock().unwrap_or_else(|p| p.into_inner());
    r.entry((name, labels))
        .or_insert_with(|| (help, Arc::new(AtomicU64::new(0))))
        .1
        .clone()
}

/// Appends every registered counter in the Prometheus text format.
pub fn render(out: &mut String) {
    let r = registry().lock().unwrap_or_else(|p| p.into_inner());
    let mut last = "";
    for ((name, labels), (help, v)) in r.iter() {
        if *name != last {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            last = name;
        }
        let v = v.load(Ordering::Relaxed);
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_shared_by_name_and_labels_and_rendered() {
        let a = counter(
            "palisade_test_things_total",
            "Things.",
            &[("policy", "a\"b")],
        );
        let b = counter(
            "palisade_test_things_total",
            "Things.",
            &[("policy", "a\"b")],
        );
        a.fetch_add(2, Ordering::Relaxed);
        b.fetch_add(1, Ordering::Relaxed);
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("# TYPE palisade_test_things_total counter"));
        assert!(
            out.contains("palisade_test_things_total{policy=\"a\\\"b\"} 3"),
            "{out}"
        );
    }
}
