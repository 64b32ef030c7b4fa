//! End-to-end suites over real sockets, named by what they attack or prove.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod admin;
mod bandwidth;
mod canonical;
mod cli;
mod client_framing;
mod cluster;
mod console;
mod contract;
mod differential;
mod fleet;
mod grpc;
mod hardening;
mod idempotency;
mod identity;
mod init;
mod lifecycle;
mod mesh;
mod mtls;
mod oidc;
mod patch;
mod pii;
mod policies;
mod protocol;
mod proxying;
mod quotas;
mod readme;
mod reload;
mod scan;
mod security_log;
mod signatures;
mod smuggling;
mod soap;
mod state_encryption;
mod support;
mod threat;
mod tls;
mod upstream_failures;
mod upstream_framing;
mod webdriver;
mod websocket;
