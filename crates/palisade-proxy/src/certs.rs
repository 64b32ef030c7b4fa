//! The expiry watch of the certificates the gateway presents (listeners, client certificates
//! to upstreams, a mesh SVID). Short-lived certificates are renewed by rewriting their files
//! (the config watch picks them up); one that is not renewed in time fails closed, since
//! every peer refuses it, and this makes that loud: a gauge of the seconds left for each,
//! a warning when less than a tenth of its lifetime is left and an error every minute once
//! it has expired.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_config::CertLife;

use crate::Shared;

/// How often the watch looks.
const EVERY: Duration = Duration::from_secs(5);
/// How often an expired certificate is logged again.
const REPEAT: Duration = Duration::from_secs(60);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The gauge `palisade_certificate_expiry_seconds`: seconds until each presented
/// certificate expires (negative once it has).
pub fn render(out: &mut String, certs: &[CertLife]) {
    out.push_str("# HELP palisade_certificate_expiry_seconds Seconds until a certificate the gateway presents expires (negative: expired, peers refuse it).\n# TYPE palisade_certificate_expiry_seconds gauge\n");
    let now = now();
    for c in certs {
        let _ = writeln!(
            out,
            "palisade_certificate_expiry_seconds{{used_by=\"{}\"}} {}",
            crate::metrics::label(&c.used_by),
            c.not_after - now
        );
    }
}

/// What the watch has said already.
#[derive(Default)]
struct Said {
    /// (file, not after) of the certificates warned about as expiring.
    expiring: HashSet<(std::path::PathBuf, i64)>,
    /// When each expired one was last logged.
    expired: Vec<((std::path::PathBuf, i64), Instant)>,
}

impl Said {
    fn look(&mut self, certs: &[CertLife], now: i64) {
        for c in certs {
            let id = (c.file.clone(), c.not_after);
            let left = c.not_after - now;
            if left < 0 {
                let due = match self.expired.iter_mut().find(|(k, _)| *k == id) {
                    Some((_, at)) if at.elapsed() < REPEAT => false,
                    Some((_, at)) => {
                        *at = Instant::now();
                        true
                    }
                    None => {
                        self.expired.push((id, Instant::now()));
                        true
                    }
                };
                if due {
                    tracing::error!(
                        used_by = %c.used_by,
                        file = %c.file.display(),
                        expired_seconds_ago = -left,
                        "certificate expired and was not renewed: peers refuse it; renew the file (it is picked up without a restart)"
                    );
                }
            } else if left * 10 < (c.not_after - c.not_before).max(1) && self.expiring.insert(id) {
                tracing::warn!(
                    used_by = %c.used_by,
                    file = %c.file.display(),
                    seconds_left = left,
                    "certificate is in the last tenth of its lifetime and has not been renewed"
                );
            }
        }
        // renewed certificates are forgotten
        self.expired
            .retain(|(k, _)| certs.iter().any(|c| (&c.file, c.not_after) == (&k.0, k.1)));
    }
}

/// Runs the watch over whatever config is current.
pub(crate) async fn watch(shared: Arc<Shared>) {
    let mut said = Said::default();
    let mut closing = shared.admin_closing.subscribe();
    loop {
        said.look(&shared.runtime.load().config.certificates, now());
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = closing.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(not_before: i64, not_after: i64) -> CertLife {
        CertLife {
            used_by: "listener x".into(),
            file: "svid.pem".into(),
            not_before,
            not_after,
        }
    }

    #[test]
    fn gauge_and_memory() {
        let mut out = String::new();
        render(&mut out, &[life(0, now() - 10)]);
        let v: i64 = out
            .lines()
            .find(|l| l.starts_with("palisade_certificate_expiry_seconds{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!((-12..=-10).contains(&v), "{out}");
        let mut said = Said::default();
        // 1000 s lifetime, 50 left: warned once
        said.look(&[life(0, 1000)], 950);
        said.look(&[life(0, 1000)], 960);
        assert_eq!(said.expiring.len(), 1);
        // expired: remembered until renewed
        said.look(&[life(0, 1000)], 1001);
        assert_eq!(said.expired.len(), 1);
        said.look(&[life(900, 5000)], 1002);
        assert!(said.expired.is_empty());
    }
}
