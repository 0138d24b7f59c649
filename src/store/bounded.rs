//! A `Store` wrapper that bounds every call with a client-side timeout, so a database that
//! stops answering (a frozen server, a dropped connection) fails a request with 503 instead
//! of hanging it. Server-side limits (`statement_timeout`, the pool's acquire timeout) still
//! apply underneath.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;

pub(super) struct Bounded<S> {
    inner: S,
    limit: Duration,
}

impl<S> Bounded<S> {
    pub(super) fn new(inner: S, limit: Duration) -> Bounded<S> {
        Bounded { inner, limit }
    }

    async fn run<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.limit, call)
            .await
            .unwrap_or(Err(StoreError::Timeout))
    }
}

#[async_trait::async_trait]
impl<S: Store> Store for Bounded<S> {
    async fn ping(&self) -> Result<(), StoreError> {
        self.run(self.inner.ping()).await
    }
    async fn create_user(&self, new: &NewUser) -> Result<User, StoreError> {
        self.run(self.inner.create_user(new)).await
    }
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        self.run(self.inner.user_by_email(email)).await
    }
    async fn user_by_id(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        self.run(self.inner.user_by_id(user_id)).await
    }
    async fn list_users(&self, offset: i64, limit: i64) -> Result<(Vec<User>, i64), StoreError> {
        self.run(self.inner.list_users(offset, limit)).await
    }
    async fn update_user(
        &self,
        user_id: &str,
        patch: &UserPatch,
    ) -> Result<Option<User>, StoreError> {
        self.run(self.inner.update_user(user_id, patch)).await
    }
    async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<(), StoreError> {
        self.run(self.inner.set_password_hash(user_id, hash)).await
    }
    async fn record_login(&self, user_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.run(self.inner.record_login(user_id, at)).await
    }
    async fn create_session(
        &self,
        session: &NewSession,
        first: &NewRefreshToken,
    ) -> Result<(), StoreError> {
        self.run(self.inner.create_session(session, first)).await
    }
    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        next: &NewRefreshToken,
        now: DateTime<Utc>,
        session_max_lifetime: chrono::Duration,
    ) -> Result<Rotation, StoreError> {
        self.run(
            self.inner
                .rotate_refresh_token(presented_hash, next, now, session_max_lifetime),
        )
        .await
    }
    async fn session_principal(
        &self,
        session_id: &str,
    ) -> Result<Option<SessionPrincipal>, StoreError> {
        self.run(self.inner.session_principal(session_id)).await
    }
    async fn session_of_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        self.run(self.inner.session_of_refresh_token(token_hash))
            .await
    }
    async fn revoke_session(
        &self,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.run(self.inner.revoke_session(session_id, now)).await
    }
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        self.run(self.inner.revoke_user_sessions(user_id, except, now))
            .await
    }
    async fn unexpired_session_ids(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        self.run(self.inner.unexpired_session_ids(user_id)).await
    }
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.run(self.inner.create_api_key(key)).await
    }
    async fn create_api_key_within(
        &self,
        key: &ApiKeyRecord,
        max_live: u32,
    ) -> Result<bool, StoreError> {
        self.run(self.inner.create_api_key_within(key, max_live))
            .await
    }
    async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.run(self.inner.list_api_keys(user_id)).await
    }
    async fn revoke_api_key(&self, user_id: &str, key_id: &str) -> Result<bool, StoreError> {
        self.run(self.inner.revoke_api_key(user_id, key_id)).await
    }
    async fn revoke_user_api_keys(
        &self,
        user_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.run(self.inner.revoke_user_api_keys(user_id)).await
    }
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<KeyPrincipal>, StoreError> {
        self.run(self.inner.api_key_by_hash(key_hash)).await
    }
    async fn api_key_by_id(&self, key_id: &str) -> Result<Option<KeyPrincipal>, StoreError> {
        self.run(self.inner.api_key_by_id(key_id)).await
    }
    async fn api_keys_of_user(&self, user_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.run(self.inner.api_keys_of_user(user_id)).await
    }
    async fn touch_api_keys(&self, used: &[(String, DateTime<Utc>)]) -> Result<(), StoreError> {
        self.run(self.inner.touch_api_keys(used)).await
    }
}
