//! `ip_filter`: allow or deny clients by CIDR, evaluated on the client address after trusted
//! proxies are honoured. A deny entry always wins; a non-empty allow list denies everything else.

use ipnet::IpNet;
use serde::Deserialize;

use crate::{
    Exchange, Mode, Outcome, Phase, PhaseSet, Policy, Rejection, RequestHead, Stage, Verdict,
};

/// Refusal code when the client address is not allowed.
pub const CODE_IP_DENIED: &str = "network.ip_denied";

/// Config of the `ip_filter` policy.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpFilterSpec {
    /// `enforce` (default) refuses; `monitor` only logs and counts.
    #[serde(default)]
    pub mode: Mode,
    /// CIDRs (or single addresses) allowed; when non-empty, every other address is refused.
    #[serde(default)]
    pub allow: Vec<String>,
    /// CIDRs (or single addresses) always refused, even when also allowed.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// The runtime `ip_filter` policy.
#[derive(Debug, Clone)]
pub struct IpFilter {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

/// Parses `10.0.0.0/8`, `::1/128` or a single address as a network.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

impl IpFilterSpec {
    /// Builds the policy, reporting every malformed entry.
    pub fn build(&self) -> Result<IpFilter, Vec<super::SpecError>> {
        let mut errors = Vec::new();
        let mut parse = |list: &[String], field: &str| -> Vec<IpNet> {
            let mut out = Vec::new();
            for (i, s) in list.iter().enumerate() {
                match parse_net(s) {
                    Some(n) => out.push(n.trunc()),
                    None => errors.push(super::SpecError::new(
                        format!("{field}[{i}]"),
                        format!("`{s}` is not an IP address or CIDR; write e.g. 10.0.0.0/8 or ::1"),
                    )),
                }
            }
            out
        };
        let allow = parse(&self.allow, "allow");
        let deny = parse(&self.deny, "deny");
        if self.allow.is_empty() && self.deny.is_empty() {
            errors.push(super::SpecError::new(
                "allow",
                "ip_filter needs at least one `allow` or `deny` entry",
            ));
        }
        if errors.is_empty() {
            Ok(IpFilter { allow, deny })
        } else {
            Err(errors)
        }
    }
}

impl IpFilter {
    /// The decision for one address.
    pub fn decide(&self, ip: std::net::IpAddr) -> Verdict {
        let denied =
            in_nets(ip, &self.deny) || (!self.allow.is_empty() && !in_nets(ip, &self.allow));
        if denied {
            Verdict::Reject(Rejection::new(
                http::StatusCode::FORBIDDEN,
                CODE_IP_DENIED,
                "Client address not allowed",
            ))
        } else {
            Verdict::Continue
        }
    }
}

/// Whether `ip` is in one of `nets`; IPv4-mapped IPv6 addresses match IPv4 networks.
pub fn in_nets(ip: std::net::IpAddr, nets: &[IpNet]) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| n.contains(&ip))
}

/// Maps IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) to IPv4 so that IPv4 rules apply.
fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

#[async_trait::async_trait]
impl Policy for IpFilter {
    fn kind(&self) -> &'static str {
        "ip_filter"
    }
    fn stage(&self) -> Stage {
        Stage::Network
    }
    fn phases(&self) -> PhaseSet {
        PhaseSet::EMPTY.with(Phase::RequestHead)
    }
    async fn on_request_head(&self, _req: &mut RequestHead, x: &mut Exchange) -> Outcome {
        Ok(self.decide(x.client_ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(allow: &[&str], deny: &[&str]) -> IpFilter {
        IpFilterSpec {
            mode: Mode::Enforce,
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        }
        .build()
        .unwrap()
    }

    #[test]
    fn decision_table() {
        // (allow, deny, client, allowed?)
        let cases: &[(&[&str], &[&str], &str, bool)] = &[
            (&["10.0.0.0/8"], &[], "10.1.2.3", true),
            (&["10.0.0.0/8"], &[], "11.1.2.3", false),
            (&["10.0.0.0/8"], &["10.9.0.0/16"], "10.9.1.1", false),
            (&[], &["192.168.1.1"], "192.168.1.1", false),
            (&[], &["192.168.1.1"], "192.168.1.2", true),
            (&["::1"], &[], "::1", true),
            (&["127.0.0.0/8"], &[], "::ffff:127.0.0.1", true),
            (&["127.0.0.0/8"], &[], "::1", false),
            (&["2001:db8::/32"], &[], "2001:db8::5", true),
        ];
        for (allow, deny, ip, ok) in cases {
            let v = filter(allow, deny).decide(ip.parse().unwrap());
            match v {
                Verdict::Continue => assert!(ok, "{ip} should be refused by {allow:?}/{deny:?}"),
                Verdict::Reject(r) => {
                    assert!(!ok, "{ip} should pass {allow:?}/{deny:?}");
                    assert_eq!(r.code, CODE_IP_DENIED);
                    assert_eq!(r.status, http::StatusCode::FORBIDDEN);
                }
                Verdict::Answer(_) => panic!("ip_filter never answers"),
            }
        }
    }

    #[test]
    fn reports_every_bad_entry() {
        let spec = IpFilterSpec {
            mode: Mode::Enforce,
            allow: vec!["10.0.0.0/8".into(), "nope".into()],
            deny: vec!["300.1.1.1".into()],
        };
        let errs = spec.build().unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["allow[1]", "deny[0]"]);
    }

    #[test]
    fn empty_filter_is_refused() {
        assert!(IpFilterSpec::default().build().is_err());
    }
}
