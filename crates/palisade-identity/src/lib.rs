//! Palisade's identity policies: who is calling, proven, and what they may do.
//!
//! - [`jose`]: strict JWS verification and JSON Web Keys.
//! - [`consumers`]: consumers declared in config and their API keys (hashes only).
//! - [`issuer`]: token issuers, their key sets (discovery, JWKS URL or file, secret) and cache.
//! - [`api_key`], [`jwt`], [`introspection`], [`mtls`]: the authentication policies; [`authorize`]: the
//!   rules.
//! - [`refusals`]: the 401/403/503 refusals with their `WWW-Authenticate` challenges.

pub mod api_key;
pub mod authorize;
pub mod consumers;
pub mod fetch;
pub mod introspection;
pub mod issuer;
pub mod jose;
pub mod jwt;
pub mod mtls;
pub mod refusals;
pub mod revoked;
pub mod sealed;
pub mod signature;
mod util;
pub mod wssec;
pub mod wssec_saml;
pub mod wssec_x509;
