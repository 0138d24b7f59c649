//! Persistent state: users, sessions with their refresh tokens, and API keys. The `Store`
//! trait is the only way the rest of the crate reaches the database; it holds no cache and
//! makes no policy decisions beyond the atomic ones a database must make (unique emails,
//! single-use refresh tokens).

mod bounded;
pub(crate) mod postgres;
mod sql;
pub(crate) mod sqlite;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::identity::Role;
/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The (normalized) email belongs to another user.
    #[error("email already registered")]
    EmailTaken,
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A schema migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value the code cannot read (an unknown role, a malformed timestamp).
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
    /// The database's files cannot be reached (its directory cannot be made, say).
    #[error("database files: {0}")]
    Io(#[from] std::io::Error),
    /// No answer within the client-side bound.
    #[error("the database did not answer in time")]
    Timeout,
}

/// A user as stored.
#[derive(Debug, Clone)]
pub struct User {
    /// Stable public id (`user_…`).
    pub user_id: String,
    /// Normalized email, unique.
    pub email: String,
    /// argon2id or (imported) bcrypt PHC string.
    pub password_hash: String,
    /// Display name.
    pub full_name: String,
    /// Optional organization.
    pub organization: Option<String>,
    /// Role.
    pub role: Role,
    /// A disabled user cannot sign in; their tokens and keys are refused.
    pub disabled: bool,
    /// Kept from the origin's schema.
    pub email_verified: bool,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
    /// When the user was last changed.
    pub updated_at: DateTime<Utc>,
    /// The last successful login.
    pub last_login: Option<DateTime<Utc>>,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Stable public id (`user_…`).
    pub user_id: String,
    /// Already normalized.
    pub email: String,
    /// argon2id PHC string (or an imported bcrypt one).
    pub password_hash: String,
    /// Display name.
    pub full_name: String,
    /// Optional organization.
    pub organization: Option<String>,
    /// Role.
    pub role: Role,
    /// Created disabled.
    pub disabled: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A partial update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// A new (normalized) email.
    pub email: Option<String>,
    /// A new display name.
    pub full_name: Option<String>,
    /// A new organization; `Some(None)` clears it.
    pub organization: Option<Option<String>>,
    /// A new role.
    pub role: Option<Role>,
    /// Disable or enable.
    pub disabled: Option<bool>,
}

/// A session to start.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// `ses_…`.
    pub session_id: String,
    /// Its user.
    pub user_id: String,
    /// The client's `User-Agent`, truncated.
    pub user_agent: Option<String>,
    /// The client's address.
    pub ip_address: Option<String>,
    /// When it started: its absolute lifetime counts from here.
    pub created_at: DateTime<Utc>,
}

/// A refresh token to store: only its SHA-256 (hex) is kept.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// The client's `User-Agent`, truncated.
    pub user_agent: Option<String>,
    /// The client's address.
    pub ip_address: Option<String>,
}

/// What presenting a refresh token did.
#[derive(Debug)]
pub enum Rotation {
    /// The token was live and is now spent; `next` was stored in its place.
    Rotated {
        /// The session it belongs to.
        session_id: String,
        /// Its user, as now stored.
        user: User,
    },
    /// The token was already spent: a replay or a lost race.
    AlreadyRotated {
        /// The session it belongs to.
        session_id: String,
        /// Its user.
        user_id: String,
        /// When it was spent.
        rotated_at: DateTime<Utc>,
        /// It is the most recently spent token of its session (its successor is unspent),
        /// the only one a client racing itself could still hold.
        latest: bool,
    },
    /// The token's user is disabled; nothing was spent.
    UserDisabled,
    /// Unknown, expired, or its session has ended.
    Invalid,
}

/// An API key as stored: never the key itself.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    /// Public id (`key_…`).
    pub key_id: String,
    /// SHA-256 of the key, hex.
    pub key_hash: String,
    /// The key as shown in listings: prefix and last characters only.
    pub key_hint: String,
    /// Its owner.
    pub user_id: String,
    /// The owner's name for it.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its last recorded use (written at most once a minute).
    pub last_used: Option<DateTime<Utc>>,
    /// Revoked keys are never accepted again.
    pub revoked: bool,
}

/// A session together with its (current) user.
#[derive(Debug, Clone)]
pub struct SessionPrincipal {
    /// `ses_…`.
    pub session_id: String,
    /// When the session ends (its newest refresh token's expiry).
    pub expires_at: DateTime<Utc>,
    /// Ended by logout, password change, disable or refresh-token reuse.
    pub revoked: bool,
    /// Its user.
    pub user: User,
}

/// An API key together with its (current) user.
#[derive(Debug, Clone)]
pub struct KeyPrincipal {
    /// The key.
    pub key: ApiKeyRecord,
    /// Its owner.
    pub user: User,
}

/// `token`, expiring no later than `deadline` (a session's absolute end).
pub(crate) fn capped(token: &NewRefreshToken, deadline: DateTime<Utc>) -> NewRefreshToken {
    NewRefreshToken {
        expires_at: token.expires_at.min(deadline),
        ..token.clone()
    }
}

/// The store, shared.
pub type DynStore = Arc<dyn Store>;

/// Persistent state: the only way the rest of the crate reaches the database. One
/// implementation serves SQLite and PostgreSQL (`sql::sql_store!`).
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the database answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    // Users.
    /// Fails with `EmailTaken` when the (lower-cased) email exists, atomically.
    async fn create_user(&self, new: &NewUser) -> Result<User, StoreError>;
    /// The user with this (normalized) email.
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;
    /// The user with this id.
    async fn user_by_id(&self, user_id: &str) -> Result<Option<User>, StoreError>;
    /// A page of users ordered by creation, and the total count.
    async fn list_users(&self, offset: i64, limit: i64) -> Result<(Vec<User>, i64), StoreError>;
    /// `None` if no such user. Fails with `EmailTaken` on an email collision.
    async fn update_user(
        &self,
        user_id: &str,
        patch: &UserPatch,
    ) -> Result<Option<User>, StoreError>;
    /// Replaces a user's password hash.
    async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<(), StoreError>;
    /// Records a successful login.
    async fn record_login(&self, user_id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    // Sessions and refresh tokens.
    /// Starts a session with its first refresh token.
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
    /// A session and its user, ended or not.
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
    /// Stores a new API key.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    /// Stores a new API key unless its user already holds `max_live` live (unrevoked,
    /// unexpired) keys: false then, and nothing stored. Concurrent calls for one user are
    /// serialized, so the cap holds under any concurrency.
    async fn create_api_key_within(
        &self,
        key: &ApiKeyRecord,
        max_live: u32,
    ) -> Result<bool, StoreError>;
    /// A user's live keys, oldest first.
    async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes the user's key; false when the user has no such live key.
    async fn revoke_api_key(&self, user_id: &str, key_id: &str) -> Result<bool, StoreError>;
    /// Revokes every live key of a user; returns `(key_id, key_hash)` of those it revoked.
    async fn revoke_user_api_keys(
        &self,
        user_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// The key with this hash and its user.
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<KeyPrincipal>, StoreError>;
    /// The key with this id and its user.
    async fn api_key_by_id(&self, key_id: &str) -> Result<Option<KeyPrincipal>, StoreError>;
    /// `(key_id, key_hash)` of every key of a user, revoked or not.
    async fn api_keys_of_user(&self, user_id: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Records `(key_id, when)` uses.
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
