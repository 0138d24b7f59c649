//! Persistent state: users, sessions with their refresh tokens, and API keys. The `Store`
//! trait is the only way the rest of the crate reaches the database; it holds no cache and
//! makes no policy decisions beyond the atomic ones a database must make (unique emails,
//! single-use refresh tokens).

mod bounded;
pub mod postgres;
mod sql;
pub mod sqlite;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::identity::Role;
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("email already registered")]
    EmailTaken,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
    /// The database's files cannot be reached (its directory cannot be made, say).
    #[error("database files: {0}")]
    Io(#[from] std::io::Error),
    #[error("the database did not answer in time")]
    Timeout,
}

#[derive(Debug, Clone)]
pub struct User {
    pub user_id: String,
    pub email: String,
    pub password_hash: String,
    pub full_name: String,
    pub organization: Option<String>,
    pub role: Role,
    pub disabled: bool,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub user_id: String,
    /// Already lower-cased.
    pub email: String,
    pub password_hash: String,
    pub full_name: String,
    pub organization: Option<String>,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A partial update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub organization: Option<Option<String>>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub session_id: String,
    pub user_id: String,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A refresh token to store: only its SHA-256 (hex) is kept.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
}

/// What presenting a refresh token did.
#[derive(Debug)]
pub enum Rotation {
    /// The token was live and is now spent; `next` was stored in its place.
    Rotated { session_id: String, user: User },
    /// The token was already spent (at `rotated_at`): a replay or a lost race. `latest`:
    /// it is the most recently spent token of its session (its successor is unspent), the
    /// only one a client racing itself could still hold.
    AlreadyRotated {
        session_id: String,
        user_id: String,
        rotated_at: DateTime<Utc>,
        latest: bool,
    },
    /// The token's user is disabled; nothing was spent.
    UserDisabled,
    /// Unknown, expired, or its session has ended.
    Invalid,
}

#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub key_hash: String,
    /// The key as shown in listings: prefix and last characters only.
    pub key_hint: String,
    pub user_id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
    pub revoked: bool,
}

/// A session or API key together with its (current) user.
#[derive(Debug, Clone)]
pub struct SessionPrincipal {
    pub session_id: String,
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
    pub user: User,
}

#[derive(Debug, Clone)]
pub struct KeyPrincipal {
    pub key: ApiKeyRecord,
    pub user: User,
}

/// `token`, expiring no later than `deadline` (a session's absolute end).
pub(crate) fn capped(token: &NewRefreshToken, deadline: DateTime<Utc>) -> NewRefreshToken {
    NewRefreshToken {
        expires_at: token.expires_at.min(deadline),
        ..token.clone()
    }
}

pub type DynStore = Arc<dyn Store>;

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn ping(&self) -> Result<(), StoreError>;

    // Users.
    /// Fails with `EmailTaken` when the (lower-cased) email exists, atomically.
    async fn create_user(&self, new: &NewUser) -> Result<User, StoreError>;
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;
    async fn user_by_id(&self, user_id: &str) -> Result<Option<User>, StoreError>;
    /// A page of users ordered by creation, and the total count.
    async fn list_users(&self, offset: i64, limit: i64) -> Result<(Vec<User>, i64), StoreError>;
    /// `None` if no such user. Fails with `EmailTaken` on an email collision.
    async fn update_user(
        &self,
        user_id: &str,
        patch: &UserPatch,
    ) -> Result<Option<User>, StoreError>;
    async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<(), StoreError>;
    async fn record_login(&self, user_id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    // Sessions and refresh tokens.
    async fn create_session(
        &self,
        session: &NewSession,
        first: &NewRefreshToken,
    ) -> Result<(), StoreError>;
    /// Spends the token with `presented_hash` and stores `next` in the same session, as one
    /// atomic step: of two concurrent calls with one token, exactly one gets `Rotated`. A
    /// disabled user's token is not spent. `next` expires no later than the session's
    /// creation plus `session_max_lifetime`.
    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        next: &NewRefreshToken,
        now: DateTime<Utc>,
        session_max_lifetime: chrono::Duration,
    ) -> Result<Rotation, StoreError>;
    async fn session_principal(
        &self,
        session_id: &str,
    ) -> Result<Option<SessionPrincipal>, StoreError>;
    /// The session a refresh token belongs to, with its user id, spent or not.
    async fn session_of_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<(String, String)>, StoreError>;
    /// Ends a session and its refresh tokens; true if it was live.
    async fn revoke_session(
        &self,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Ends all of a user's live sessions except `except`; returns the ids it ended.
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError>;
    /// Ids of a user's sessions that have not expired, ended or not: every session whose
    /// cached state a change to the user can affect.
    async fn unexpired_session_ids(&self, user_id: &str) -> Result<Vec<String>, StoreError>;

    // API keys.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes the user's key; false when the user has no such live key.
    async fn revoke_api_key(&self, user_id: &str, key_id: &str) -> Result<bool, StoreError>;
    /// Revokes every live key of a user; returns `(key_id, key_hash)` of those it revoked.
    async fn revoke_user_api_keys(
        &self,
        user_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<KeyPrincipal>, StoreError>;
    async fn api_key_by_id(&self, key_id: &str) -> Result<Option<KeyPrincipal>, StoreError>;
    /// `(key_id, key_hash)` of every key of a user, revoked or not.
    async fn api_keys_of_user(&self, user_id: &str) -> Result<Vec<(String, String)>, StoreError>;
    async fn touch_api_keys(&self, used: &[(String, DateTime<Utc>)]) -> Result<(), StoreError>;
}

/// Opens the configured store (SQLite or PostgreSQL, by the URL's scheme), migrating it when
/// `migrate` is set. Every call on the returned store is bounded by a client-side timeout.
pub async fn open(cfg: &crate::config::StoreConfig, migrate: bool) -> Result<DynStore, StoreError> {
    use crate::config::Backend;
    let limit = cfg.acquire_timeout + cfg.statement_timeout + std::time::Duration::from_secs(1);
    match cfg.backend {
        Backend::Sqlite => {
            let store = sqlite::SqliteStore::open(
                &cfg.database_url,
                cfg.max_connections,
                cfg.acquire_timeout,
            )
            .await?;
            if migrate {
                store.migrate().await?;
            }
            Ok(Arc::new(bounded::Bounded::new(store, limit)))
        }
        Backend::Postgres => {
            let store = postgres::PostgresStore::open(
                &cfg.database_url,
                cfg.max_connections,
                cfg.acquire_timeout,
                cfg.statement_timeout,
            )
            .await?;
            if migrate {
                store.migrate().await?;
            }
            Ok(Arc::new(bounded::Bounded::new(store, limit)))
        }
    }
}
