//! Palisade's configuration.
//!
//! Load = read → parse (YAML, remembering lines) → deserialize each section (unknown fields
//! refused) → validate and build into an immutable [`Config`]. Every problem found is
//! collected with its file, line and field path, so a user fixes them all in one go.

/// Durations in config files (re-exported from palisade-core, where policy specs use them too).
pub use palisade_core::duration;
mod error;
pub mod model;
mod runtime;
pub mod schema;
pub mod tls;
/// YAML with lines (in palisade-core, shared with the audit).
pub use palisade_core::yaml;

pub use error::{ConfigError, ConfigErrors};
pub use runtime::*;
