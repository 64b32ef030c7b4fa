//! Built-in policies that need no state: `ip_filter`, `headers`, `deny`, `require_credentials`,
//! `request_fields`, `responses`, `protocol` and `websocket`.
//!
//! Each policy has a `*Spec` (its config, serde) and a runtime type built from it; building
//! reports every problem with the field it concerns, relative to the policy's own entry.

pub mod credentials;
pub mod deny;
pub mod headers;
pub mod ip_filter;
pub mod protocol;
pub mod request_fields;
pub mod responses;
pub mod websocket;

/// A problem found while building a policy from its spec: the field (relative to the policy
/// entry, e.g. `allow[2]`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Field path relative to the policy entry.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl SpecError {
    /// A spec error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
