//! Authentication: turns the credential a request carries into a verified `Identity`.
//! Owns token issuance and verification, API-key format and hashing, password hashing, the
//! identity resolver and refresh-token sessions. Never talks to the upstream.

pub mod api_key;
pub mod credentials;
pub mod jwt;
pub(crate) mod password;
pub mod resolver;
pub mod sessions;
pub mod signing_keys;

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Not authenticated")]
    /// No credential where one is required (401).
    Missing,
    #[error("{0}")]
    /// A credential that is not valid, with a message safe to show (401).
    InvalidToken(&'static str),
    #[error("Multiple credentials in one request")]
    /// Two different credentials in one request (400).
    ConflictingCredentials,
    #[error("Malformed credential: {0}")]
    /// A credential that cannot be read, or one where none may be (400).
    Malformed(&'static str),
    #[error("User account is disabled")]
    /// The user is disabled (403).
    Disabled,
    #[error("Cross-site request refused")]
    /// A cookie-authenticated request from another origin (403).
    CsrfRejected,
    #[error("stored identity cannot be sent as a header")]
    /// A stored identity that cannot be injected as headers (500).
    BadStoredIdentity,
    #[error("identity store unavailable")]
    /// The store could not answer (503).
    Store(#[from] crate::store::StoreError),
    #[error("throttled by {}", .0.limiter.label())]
    /// Too many unknown API keys from the client's address (429).
    Throttled(crate::throttle::Refused),
}

impl From<crate::identity::NotAHeaderValue> for AuthError {
    fn from(_: crate::identity::NotAHeaderValue) -> AuthError {
        AuthError::BadStoredIdentity
    }
}
