//! Authentication: turns the credential a request carries into a verified `Identity`.
//! Owns token issuance and verification, API-key format and hashing, password hashing, the
//! identity resolver and refresh-token sessions. Never talks to the upstream.

pub mod api_key;
pub mod credentials;
pub mod jwt;
pub mod password;
pub mod resolver;
pub mod sessions;
pub mod signing_keys;

/// Why a request is not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Not authenticated")]
    Missing,
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("Multiple credentials in one request")]
    ConflictingCredentials,
    #[error("Malformed credential: {0}")]
    Malformed(&'static str),
    #[error("User account is disabled")]
    Disabled,
    #[error("Cross-site request refused")]
    CsrfRejected,
    #[error("stored identity cannot be sent as a header")]
    BadStoredIdentity,
    #[error("identity store unavailable")]
    Store(#[from] crate::store::StoreError),
}

impl From<crate::identity::NotAHeaderValue> for AuthError {
    fn from(_: crate::identity::NotAHeaderValue) -> AuthError {
        AuthError::BadStoredIdentity
    }
}
