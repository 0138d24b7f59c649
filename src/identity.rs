//! Who a request is, in the words every layer shares: a user's `Role`, how a credential was
//! presented (`AuthMethod`) and what kind it is (`CredentialKind`), and the verified
//! `Identity` injected upstream. Depends on nothing else in the crate.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use http::HeaderValue;

/// A user's role. The set is the origin gateway's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// An ordinary user.
    User,
    /// May use the admin API and admin-only routes.
    Admin,
    /// The origin gateway's third role.
    Researcher,
}

impl Role {
    /// The role named `text` (`user`, `admin`, `researcher`).
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            "researcher" => Some(Role::Researcher),
            _ => None,
        }
    }

    /// The role's name, as stored and injected.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Researcher => "researcher",
        }
    }
}

impl serde::Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Role::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a role (user, admin, researcher)"))
        })
    }
}

/// How the request proved who it is; sent upstream as `X-Auth-Method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// An access token in `Authorization: Bearer`.
    Jwt,
    /// An API key, in `X-API-Key` or as a bearer token.
    ApiKey,
    /// An access token in the `access_token` cookie.
    Cookie,
}

impl AuthMethod {
    /// The `X-Auth-Method` value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Cookie => "cookie",
        }
    }
}

/// A verified identity, shared by every request that presents the same credential. The
/// header values are checked once, when the identity is loaded, so injecting them is a copy
/// into the upstream request head.
#[derive(Debug)]
pub struct Identity {
    /// The user's id.
    pub user_id: String,
    /// The user's (normalized) email.
    pub email: String,
    /// The user's role.
    pub role: Role,
    /// The session an access token belongs to (JWT and cookie credentials).
    pub session_id: Option<String>,
    /// The API key used (API-key credentials).
    pub key_id: Option<String>,
    /// `user_id`, checked once as a header value.
    pub header_user_id: HeaderValue,
    /// `email`, checked once as a header value.
    pub header_email: HeaderValue,
    /// `role`, as a header value.
    pub header_role: HeaderValue,
    /// `key_id`, checked once as a header value.
    pub header_key_id: Option<HeaderValue>,
    /// Unix seconds of the last `last_used` write for an API key (throttles the writes).
    pub last_used_written: AtomicI64,
}

impl Identity {
    /// Builds an identity; fails only if a stored value cannot be a header value (a control
    /// character in an email, say), which validation on write prevents.
    pub fn new(
        user_id: String,
        email: String,
        role: Role,
        session_id: Option<String>,
        key_id: Option<String>,
    ) -> Result<Arc<Identity>, NotAHeaderValue> {
        let value = |s: &str| HeaderValue::from_bytes(s.as_bytes()).map_err(|_| NotAHeaderValue);
        Ok(Arc::new(Identity {
            header_user_id: value(&user_id)?,
            header_email: value(&email)?,
            header_role: HeaderValue::from_static(role.as_str()),
            header_key_id: key_id.as_deref().map(value).transpose()?,
            user_id,
            email,
            role,
            session_id,
            key_id,
            last_used_written: AtomicI64::new(0),
        }))
    }
}

/// A stored identity value (an email with a control character, say) that cannot be sent
/// as a header; validation on write prevents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stored identity cannot be sent as a header")]
pub struct NotAHeaderValue;

/// What kind of secret a credential is, which decides how it is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A JWT access token.
    AccessToken,
    /// An API key.
    ApiKey,
}
