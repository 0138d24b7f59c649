//! Sessions: starting one (an access token plus an opaque refresh token), rotating refresh
//! tokens with reuse detection (RFC 9700 §4.14), and ending sessions. Only the SHA-256 of a
//! refresh token is stored.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::jwt::{JwtKeys, SignError};
use crate::cache::Revocations;
use crate::secret::{hash, random_base62, random_hex};
use crate::store::{DynStore, NewRefreshToken, NewSession, Rotation, StoreError, User};

const REFRESH_PREFIX: &str = "pcr_";

/// Why a session could not be started, refreshed or ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Unknown, expired, or its session has ended.
    #[error("Invalid refresh token")]
    InvalidRefreshToken,
    /// Already spent.
    #[error("Refresh token already used")]
    RefreshTokenReused,
    /// The user is disabled.
    #[error("User account is disabled")]
    Disabled,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The access token could not be signed.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// The client's side of a session start or refresh.
#[derive(Debug)]
pub struct IssuedTokens {
    /// The access token (a JWT).
    pub access_token: String,
    /// The refresh token (`pcr_…`), shown once.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

/// Where a session was started from, kept with its refresh tokens.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// The client's address.
    pub ip_address: Option<String>,
    /// The same address, for the throttle (`None` only outside a request).
    pub address: Option<std::net::IpAddr>,
}

/// Starts, rotates and ends sessions (see the module).
pub struct Sessions {
    store: DynStore,
    jwt: Arc<JwtKeys>,
    revocations: Revocations,
    refresh_ttl: chrono::Duration,
    reuse_grace: chrono::Duration,
    /// No session outlives its start by more than this, however often it is refreshed.
    max_lifetime: chrono::Duration,
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn truncate(s: Option<String>, max: usize) -> Option<String> {
    s.map(|mut s| {
        if s.len() > max {
            let mut end = max;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
        s
    })
}

impl Sessions {
    pub(crate) fn new(
        store: DynStore,
        jwt: Arc<JwtKeys>,
        revocations: Revocations,
        refresh_ttl: Duration,
        reuse_grace: Duration,
        max_lifetime: Duration,
    ) -> Sessions {
        Sessions {
            store,
            jwt,
            revocations,
            refresh_ttl: chrono_duration(refresh_ttl),
            reuse_grace: chrono_duration(reuse_grace),
            max_lifetime: chrono_duration(max_lifetime),
        }
    }

    fn new_refresh(&self, meta: &ClientMeta, now: DateTime<Utc>) -> (String, NewRefreshToken) {
        let token = format!("{REFRESH_PREFIX}{}", random_base62(43));
        let record = NewRefreshToken {
            token_hash: hex::encode(hash(&token)),
            expires_at: now + self.refresh_ttl,
            user_agent: truncate(meta.user_agent.clone(), 255),
            ip_address: truncate(meta.ip_address.clone(), 45),
        };
        (token, record)
    }

    fn tokens_for(
        &self,
        user: &User,
        session_id: String,
        refresh_token: String,
        now: DateTime<Utc>,
    ) -> Result<IssuedTokens, SessionError> {
        let (access_token, _exp) = self.jwt.issue(
            &user.user_id,
            &user.email,
            user.role,
            &session_id,
            now.timestamp(),
        )?;
        Ok(IssuedTokens {
            access_token,
            refresh_token,
            expires_in: self.jwt.access_ttl_secs(),
        })
    }

    /// Starts a session for a user who just proved who they are.
    pub async fn start(
        &self,
        user: &User,
        meta: &ClientMeta,
    ) -> Result<IssuedTokens, SessionError> {
        let now = Utc::now();
        let session_id = format!("ses_{}", random_hex(16));
        let (refresh_token, record) = self.new_refresh(meta, now);
        let record = crate::store::capped(&record, now + self.max_lifetime);
        let session = NewSession {
            session_id: session_id.clone(),
            user_id: user.user_id.clone(),
            user_agent: record.user_agent.clone(),
            ip_address: record.ip_address.clone(),
            created_at: now,
        };
        self.store.create_session(&session, &record).await?;
        self.tokens_for(user, session_id, refresh_token, now)
    }

    /// Spends a refresh token for a new pair. A token presented again after its grace window
    /// ends its whole session (the family): someone has a copy.
    pub(crate) async fn refresh(
        &self,
        presented: &str,
        meta: &ClientMeta,
    ) -> Result<IssuedTokens, SessionError> {
        if !presented.starts_with(REFRESH_PREFIX) || presented.len() > 128 {
            return Err(SessionError::InvalidRefreshToken);
        }
        let now = Utc::now();
        let presented_hash = hex::encode(hash(presented));
        let (refresh_token, record) = self.new_refresh(meta, now);
        match self
            .store
            .rotate_refresh_token(&presented_hash, &record, now, self.max_lifetime)
            .await?
        {
            Rotation::Rotated { session_id, user } => {
                if user.disabled {
                    return Err(SessionError::Disabled);
                }
                self.tokens_for(&user, session_id, refresh_token, now)
            }
            Rotation::AlreadyRotated {
                session_id,
                rotated_at,
                latest,
                ..
            } => {
                // Only the token spent last can be a client racing itself, and only within
                // the grace window; an older generation means someone kept a copy.
                if !latest || now - rotated_at > self.reuse_grace {
                    tracing::warn!(session_id, "refresh token reuse detected; session revoked");
                    self.end(&session_id).await?;
                }
                Err(SessionError::RefreshTokenReused)
            }
            Rotation::UserDisabled => Err(SessionError::Disabled),
            Rotation::Invalid => Err(SessionError::InvalidRefreshToken),
        }
    }

    /// Ends one session; its access tokens stop working on the next request.
    pub(crate) async fn end(&self, session_id: &str) -> Result<(), SessionError> {
        self.store.revoke_session(session_id, Utc::now()).await?;
        self.revocations
            .sessions_ended(vec![session_id.to_string()])
            .await;
        Ok(())
    }

    /// Ends all of a user's sessions but `except`.
    pub(crate) async fn end_all(
        &self,
        user_id: &str,
        except: Option<&str>,
    ) -> Result<(), SessionError> {
        let ended = self
            .store
            .revoke_user_sessions(user_id, except, Utc::now())
            .await?;
        self.revocations.sessions_ended(ended).await;
        Ok(())
    }

    /// The session and owner of a refresh token, if it is one of ours.
    pub(crate) async fn session_of(
        &self,
        refresh_token: &str,
    ) -> Result<Option<(String, String)>, SessionError> {
        if !refresh_token.starts_with(REFRESH_PREFIX) {
            return Ok(None);
        }
        Ok(self
            .store
            .session_of_refresh_token(&hex::encode(hash(refresh_token)))
            .await?)
    }
}
