//! The in-process identity cache (moka) and revocation: evicting every cached entry a change
//! of who-may-do-what affects. Holds no policy; the resolver decides what to cache.
//!
//! Two maps. `credentials` maps the SHA-256 of a verified credential to the principal it
//! names (a session id or an API-key id) and its expiry: a token seen before is never
//! verified again. `principals` maps a principal to its current state (an identity, or
//! disabled, or revoked). Revocation evicts principals; credential entries stay, so the next
//! request reloads the principal from the store and sees the change.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use moka::sync::Cache;

use crate::auth::Identity;
use crate::config::CacheConfig;
use crate::store::{DynStore, StoreError};

/// What a verified credential points at.
#[derive(Debug)]
pub struct CredentialEntry {
    /// Session id (access tokens) or API-key id.
    pub principal: String,
    /// The user the credential claims (a token's `sub`); checked against the principal.
    pub subject: Option<String>,
    /// Unix seconds after which the credential is refused (leeway included).
    pub expires_at: i64,
}

/// The current state of a session or API key.
#[derive(Debug, Clone)]
pub enum Principal {
    Active(Arc<Identity>),
    Disabled,
    Revoked,
}

pub struct IdentityCache {
    credentials: Cache<[u8; 32], Arc<CredentialEntry>>,
    principals: Cache<String, Principal>,
    /// Bumped by every eviction; a loader that saw it change discards what it loaded, so a
    /// store read that raced a revocation cannot leave a stale entry behind.
    epoch: AtomicU64,
}

impl IdentityCache {
    pub fn new(cfg: &CacheConfig) -> IdentityCache {
        IdentityCache {
            credentials: Cache::builder()
                .max_capacity(cfg.max_entries)
                .time_to_live(cfg.ttl.max(std::time::Duration::from_secs(1)) * 4)
                .build(),
            principals: Cache::builder()
                .max_capacity(cfg.max_entries)
                .time_to_live(cfg.ttl)
                .build(),
            epoch: AtomicU64::new(0),
        }
    }

    pub fn credential(&self, hash: &[u8; 32]) -> Option<Arc<CredentialEntry>> {
        self.credentials.get(hash)
    }

    pub fn put_credential(&self, hash: [u8; 32], entry: Arc<CredentialEntry>) {
        self.credentials.insert(hash, entry);
    }

    pub fn principal(&self, id: &str) -> Option<Principal> {
        self.principals.get(id)
    }

    /// Read before loading a principal from the store; pass to `put_principal`.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn put_principal(&self, id: String, principal: Principal, loaded_at_epoch: u64) {
        self.principals.insert(id.clone(), principal);
        if self.epoch.load(Ordering::SeqCst) != loaded_at_epoch {
            self.principals.invalidate(&id);
        }
    }

    pub fn evict(&self, principal_ids: &[String]) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for id in principal_ids {
            self.principals.invalidate(id);
        }
    }

    pub fn evict_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.principals.invalidate_all();
    }
}

/// Applies revocations: every write that changes who may do what calls one of these after
/// the store has committed, and the next request sees the change.
#[derive(Clone)]
pub struct Revocations {
    cache: Arc<IdentityCache>,
    store: DynStore,
}

impl Revocations {
    pub fn new(cache: Arc<IdentityCache>, store: DynStore) -> Revocations {
        Revocations { cache, store }
    }

    /// Sessions or API keys that ended or changed.
    pub fn principals_changed(&self, ids: &[String]) {
        self.cache.evict(ids);
    }

    /// A user's role, status or email changed: every session and key of theirs is affected.
    pub async fn user_changed(&self, user_id: &str) -> Result<(), StoreError> {
        let mut ids = self.store.live_session_ids(user_id).await?;
        ids.extend(self.store.api_key_ids(user_id).await?);
        self.cache.evict(&ids);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> IdentityCache {
        IdentityCache::new(&CacheConfig {
            max_entries: 100,
            ttl: std::time::Duration::from_secs(60),
        })
    }

    #[test]
    fn eviction_removes_principal_but_keeps_credential() {
        let c = cache();
        let hash = [7u8; 32];
        c.put_credential(
            hash,
            Arc::new(CredentialEntry {
                principal: "ses_1".into(),
                subject: None,
                expires_at: i64::MAX,
            }),
        );
        c.put_principal("ses_1".into(), Principal::Revoked, c.epoch());
        assert!(c.principal("ses_1").is_some());
        c.evict(&["ses_1".to_string()]);
        assert!(c.principal("ses_1").is_none());
        assert!(c.credential(&hash).is_some());
    }

    #[test]
    fn a_load_that_raced_an_eviction_is_discarded() {
        let c = cache();
        let seen = c.epoch();
        // A revocation lands between the store read and the cache fill.
        c.evict(&["ses_1".to_string()]);
        c.put_principal("ses_1".into(), Principal::Disabled, seen);
        assert!(c.principal("ses_1").is_none());
        // Without a race the entry stays.
        c.put_principal("ses_1".into(), Principal::Disabled, c.epoch());
        assert!(c.principal("ses_1").is_some());
    }
}
