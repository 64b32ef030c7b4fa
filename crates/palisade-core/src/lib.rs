//! Palisade's policy model.
//!
//! This crate owns the vocabulary every policy speaks: the [`Phase`]s of an exchange, the
//! [`Stage`] that orders policies inside a phase, the explicit [`Verdict`] a hook returns, the
//! client-facing [`Rejection`] and our own [`PolicyError`], the authenticated [`Principal`] and
//! the per-request [`Exchange`]. It also holds the built-in network policies (`ip_filter`,
//! `headers`). It knows nothing of sockets or of the HTTP engine beyond the `http` types.

pub mod duration;
pub mod excerpt;
mod exchange;
pub mod fields;
pub mod form;
pub mod hex;
pub mod json;
pub mod leaks;
pub mod metrics;
pub mod policies;
mod policy;
mod rejection;
pub mod secret;
pub mod seen;
pub mod uri;
pub mod xml;
pub mod yaml;

pub use exchange::{
    BodyDirection, ClientCert, Completion, Exchange, Held, Pace, Principal, PrincipalTaken,
    EVIDENCE_EXCERPT, EVIDENCE_LOCATION,
};
pub use policy::{
    Answer, Mode, Outcome, Phase, PhaseSet, Policy, RequestHead, ResponseHead, Stage, Verdict,
};
pub use rejection::{PolicyError, Rejection};
