use http::{HeaderName, HeaderValue, StatusCode};

/// A refusal of the client's request: the client's fault, answered with a 4xx.
///
/// A rejection is not an error of ours. It carries a stable `code` (listed in docs/errors.md),
/// a short human `title`, and an optional `detail` that must never echo attacker input, tokens,
/// keys or schema excerpts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status of the refusal (4xx, or 503 for load shedding).
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `network.ip_denied`.
    pub code: &'static str,
    /// Short summary, the same for every occurrence of the code.
    pub title: &'static str,
    /// Occurrence-specific explanation; safe to show to the client.
    pub detail: Option<String>,
    /// Extra response headers (e.g. `WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether the connection must be closed after the response (framing errors).
    pub close_connection: bool,
}

impl Rejection {
    /// A rejection with a status, a code and a title.
    pub fn new(status: StatusCode, code: &'static str, title: &'static str) -> Self {
        Self {
            status,
            code,
            title,
            detail: None,
            headers: Vec::new(),
            close_connection: false,
        }
    }

    /// Adds an occurrence-specific detail (never attacker data).
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a response header.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Marks the connection to be closed after the refusal.
    #[must_use]
    pub fn closing(mut self) -> Self {
        self.close_connection = true;
        self
    }
}

/// A failure of ours while deciding (a 5xx). Fails closed unless the route says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A dependency the policy needs (a key server, a store) could not be reached.
    #[error("{policy}: dependency unavailable: {message}")]
    Unavailable {
        /// The policy kind.
        policy: &'static str,
        /// What failed, safe to log.
        message: String,
    },
    /// An internal invariant did not hold.
    #[error("{policy}: internal error: {message}")]
    Internal {
        /// The policy kind.
        policy: &'static str,
        /// What failed, safe to log.
        message: String,
    },
}
