//! Palisade's identity policies.
//!
//! - [`jose`]: strict JWS verification and JSON Web Keys.

pub mod jose;
