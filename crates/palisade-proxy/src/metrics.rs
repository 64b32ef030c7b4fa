//! Prometheus metrics, kept in atomics so the request path takes no lock for the common case.
//! Counters survive reloads: per-route series are looked up by name when a config is built.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency histogram bucket bounds, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            if let Some(b) = self.buckets.get(i) {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(self.buckets.iter()) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Per-route series.
#[derive(Debug)]
pub struct RouteStats {
    name: String,
    by_status: Box<[AtomicU64]>,
    /// Total time from request head to response head.
    pub latency: Histogram,
    /// Time spent waiting for the upstream's response head.
    pub upstream_latency: Histogram,
}

impl RouteStats {
    fn new(name: &str) -> Self {
        RouteStats {
            name: name.to_string(),
            by_status: (0..600).map(|_| AtomicU64::new(0)).collect(),
            latency: Histogram::default(),
            upstream_latency: Histogram::default(),
        }
    }

    /// Counts a response status.
    pub fn count(&self, status: u16) {
        if let Some(c) = self.by_status.get(status as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A Prometheus label value, escaped as the text format requires (`\\`, `"`, newline).
pub fn label(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 4);
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// One policy kind's decisions: one per policy and request. Allows are counted without a
/// lock (the hot path); refusals, rare, by verdict and code under the kind's own lock.
#[derive(Debug, Default)]
pub struct DecisionStats {
    allow: AtomicU64,
    refused: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl DecisionStats {
    /// Counts an allow.
    pub fn allow(&self) {
        self.allow.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refusal (`deny`, `monitor_deny`, `error`) with its code.
    pub fn refusal(&self, verdict: &'static str, code: &'static str) {
        let mut m = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((verdict, code)).or_default() += 1;
    }
}

/// An upstream target's state, for the metrics.
#[derive(Debug, Clone)]
pub struct TargetView {
    /// The upstream's name.
    pub upstream: String,
    /// The target's base URL.
    pub target: String,
    /// Whether it takes traffic.
    pub healthy: bool,
    /// Requests in flight to it.
    pub in_flight: u64,
    /// Passive ejections so far.
    pub ejections: u64,
}

/// Gateway-wide counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, Arc<RouteStats>>>,
    decisions: Mutex<BTreeMap<&'static str, Arc<DecisionStats>>>,
    /// Connections accepted.
    pub connections_total: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections closed at once because of `max_connections`.
    pub connections_refused: AtomicU64,
    /// TLS handshakes that failed.
    pub tls_handshake_failures: AtomicU64,
    /// Connections closed because their client cancelled most of its requests.
    pub connections_aborted: AtomicU64,
    /// Requests shed because of `max_in_flight`.
    pub requests_shed: AtomicU64,
    /// Requests whose client went away before the answer.
    pub requests_cancelled: AtomicU64,
    /// Requests dropped at the drain deadline of a shutdown.
    pub requests_cut: AtomicU64,
    /// Upstream retries.
    pub upstream_retries: AtomicU64,
    /// Successful reloads.
    pub reloads_ok: AtomicU64,
    /// Refused reloads.
    pub reloads_failed: AtomicU64,
}

impl Metrics {
    /// The series of a route (created on first use, kept across reloads).
    pub fn route(&self, name: &str) -> Arc<RouteStats> {
        let mut m = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(name.to_string())
            .or_insert_with(|| Arc::new(RouteStats::new(name)))
            .clone()
    }

    /// The decision counters of a policy kind (created on first use, kept across reloads);
    /// the runtime looks them up once per config, so counting takes no global lock.
    pub fn decisions_of(&self, kind: &'static str) -> Arc<DecisionStats> {
        let mut m = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(kind).or_default().clone()
    }

    /// Renders the Prometheus text format, with the upstream targets' state.
    /// Requests answered, every route and status together, and those answered with 4xx/5xx.
    pub fn totals(&self) -> (u64, u64) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let (mut all, mut errors) = (0, 0);
        for r in routes.values() {
            for (status, c) in r.by_status.iter().enumerate() {
                let v = c.load(Ordering::Relaxed);
                all += v;
                if status >= 400 {
                    errors += v;
                }
            }
        }
        (all, errors)
    }

    pub fn render(&self, upstreams: &[TargetView]) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP palisade_requests_total Requests answered, by route and status.\n# TYPE palisade_requests_total counter\n");
        let routes: Vec<Arc<RouteStats>> = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for r in &routes {
            for (status, c) in r.by_status.iter().enumerate() {
                let v = c.load(Ordering::Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "palisade_requests_total{{route=\"{}\",status=\"{status}\"}} {v}",
                        label(&r.name)
                    );
                }
            }
        }
        out.push_str("# HELP palisade_request_duration_seconds Time from request head to response head.\n# TYPE palisade_request_duration_seconds histogram\n");
        for r in &routes {
            r.latency.render(
                &mut out,
                "palisade_request_duration_seconds",
                &format!("route=\"{}\"", label(&r.name)),
            );
        }
        out.push_str("# HELP palisade_upstream_duration_seconds Time waiting for the upstream's response head.\n# TYPE palisade_upstream_duration_seconds histogram\n");
        for r in &routes {
            r.upstream_latency.render(
                &mut out,
                "palisade_upstream_duration_seconds",
                &format!("route=\"{}\"", label(&r.name)),
            );
        }
        out.push_str("# HELP palisade_policy_decisions_total Policy decisions by kind, verdict and code.\n# TYPE palisade_policy_decisions_total counter\n");
        let kinds: Vec<(&'static str, Arc<DecisionStats>)> = self
            .decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (kind, st) in kinds {
            let mut rows: Vec<((&'static str, &'static str), u64)> = st
                .refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect();
            let allow = st.allow.load(Ordering::Relaxed);
            if allow > 0 {
                rows.push((("allow", ""), allow));
            }
            rows.sort();
            for ((verdict, code), v) in rows {
                let _ = writeln!(
                    out,
                    "palisade_policy_decisions_total{{kind=\"{}\",verdict=\"{verdict}\",code=\"{}\"}} {v}",
                    label(kind),
                    label(code)
                );
            }
        }
        type Gauge = fn(&TargetView) -> u64;
        let per_target: [(&str, &str, &str, Gauge); 3] = [
            (
                "palisade_upstream_healthy",
                "Whether an upstream target takes traffic (1) or not (0).",
                "gauge",
                |t| u64::from(t.healthy),
            ),
            (
                "palisade_upstream_in_flight",
                "Requests in flight to an upstream target.",
                "gauge",
                |t| t.in_flight,
            ),
            (
                "palisade_upstream_ejections_total",
                "Times an upstream target was ejected by passive checks.",
                "counter",
                |t| t.ejections,
            ),
        ];
        for (name, help, kind, value) in per_target {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for t in upstreams {
                let _ = writeln!(
                    out,
                    "{name}{{upstream=\"{}\",target=\"{}\"}} {}",
                    label(&t.upstream),
                    label(&t.target),
                    value(t)
                );
            }
        }
        let counters: [(&str, &str, &AtomicU64); 11] = [
            ("palisade_connections_aborted_total", "Connections closed because their client cancelled most of its requests (HTTP/2 rapid reset).", &self.connections_aborted),
            (
                "palisade_connections_total",
                "Client connections accepted.",
                &self.connections_total,
            ),
            (
                "palisade_connections_refused_total",
                "Connections closed at once: max_connections reached.",
                &self.connections_refused,
            ),
            (
                "palisade_tls_handshake_failures_total",
                "TLS handshakes that failed.",
                &self.tls_handshake_failures,
            ),
            (
                "palisade_requests_shed_total",
                "Requests refused with 503: max_in_flight reached.",
                &self.requests_shed,
            ),
            (
                "palisade_requests_cut_total",
                "Requests dropped at the drain deadline of a shutdown.",
                &self.requests_cut,
            ),
            (
                "palisade_requests_cancelled_total",
                "Requests whose client went away before the answer (logged with status 499).",
                &self.requests_cancelled,
            ),
            (
                "palisade_upstream_retries_total",
                "Requests retried on another attempt.",
                &self.upstream_retries,
            ),
            (
                "palisade_config_reloads_total",
                "Configuration reloads applied.",
                &self.reloads_ok,
            ),
            (
                "palisade_config_reload_failures_total",
                "Configuration reloads refused.",
                &self.reloads_failed,
            ),
            (
                "palisade_connections_open",
                "Client connections open now.",
                &self.connections_open,
            ),
        ];
        for (name, help, v) in counters {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}
