//! `fleet`: several instances run as one. They share their state through the `redis`
//! section (limits, quotas and nonces with `store: redis`, revocations) and one config,
//! rolled out through Redis by the proxy (`palisade-proxy/src/fleet.rs`): every record
//! there is sealed under `runtime.state_key`, so Redis alone can neither read a config nor
//! push one.

use std::sync::Arc;

use palisade_traffic::redis::RedisClient;
use palisade_traffic::state::crypt::StateKeys;
use palisade_traffic::store::Env;
use serde::Deserialize;

use super::{Ctx, Listener};

/// The `fleet` section.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// The fleet's name: the instances with the same name and Redis share one config.
    /// Default `default`.
    #[serde(default)]
    pub name: Option<String>,
    /// This instance's name in the status view. Default: the host name and the port of the
    /// first listener (`gw-3:8443`), the same after a restart.
    #[serde(default)]
    pub instance: Option<String>,
}

/// A built `fleet` section.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The fleet's name.
    pub name: String,
    /// This instance.
    pub instance: String,
    /// The shared store.
    pub redis: Arc<RedisClient>,
    /// The prefix of the fleet's keys.
    pub prefix: String,
    /// The keys its records are sealed and opened with.
    pub keys: Arc<StateKeys>,
}

/// The version of a config text: the first 16 hex digits of its SHA-256.
pub fn version_of(text: &str) -> String {
    let d = palisade_core::policies::deny::sha256(text.as_bytes());
    palisade_core::hex::encode(d.get(..8).unwrap_or_default())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "palisade".into())
}

pub(super) fn build(
    cx: &mut Ctx<'_>,
    spec: Option<&FleetSpec>,
    redis: Option<&(Arc<RedisClient>, String)>,
    env: &Env,
    listeners: &[Listener],
) -> Option<Fleet> {
    let spec = spec?;
    let Some((redis, prefix)) = redis else {
        cx.err(
            "fleet",
            "a fleet shares its config and state through Redis: add a `redis` section",
        );
        return None;
    };
    if env.state_keys.current.is_none() {
        cx.err(
            "fleet",
            "a fleet seals its records in Redis under runtime.state_key: give every instance the same key (`openssl rand -hex 32`)",
        );
        return None;
    }
    let name = spec.name.clone().unwrap_or_else(|| "default".into());
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    };
    if !valid(&name) {
        cx.err(
            "fleet.name",
            "1 to 64 letters, digits, `-`, `_`, `.` or `:`",
        );
    }
    let instance = spec.instance.clone().unwrap_or_else(|| {
        let port = listeners.first().map_or(0, |l| l.addr.port());
        format!("{}:{port}", host_name())
    });
    if !valid(&instance) {
        cx.err(
            "fleet.instance",
            "1 to 64 letters, digits, `-`, `_`, `.` or `:`",
        );
    }
    Some(Fleet {
        prefix: format!("{prefix}fleet:{name}:"),
        name,
        instance,
        redis: redis.clone(),
        keys: env.state_keys.clone(),
    })
}
