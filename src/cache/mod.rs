//! The in-process identity cache (moka) and revocation: evicting every cached entry a change
//! of who-may-do-what affects. Holds no policy; the resolver decides what to cache.
//!
//! Two maps. `credentials` maps the SHA-256 of a verified credential to the principal it
//! names (a session id or an API-key id) and its expiry: a token seen before is never
//! verified again. `principals` maps a principal to its current state (an identity, or
//! disabled, or revoked). Revocation evicts principals; credential entries stay, so the next
//! request reloads the principal and sees the change. With Redis configured (`shared`),
//! revocations also delete the shared snapshots and are published to every replica.

pub(crate) mod shared;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::config::CacheConfig;
use crate::identity::CredentialKind;
use crate::identity::Identity;
use crate::store::{DynStore, StoreError};

/// At most this many unknown API keys are remembered at once.
const MAX_MISSES: u64 = 100_000;

/// What a verified credential points at.
#[derive(Debug)]
pub struct CredentialEntry {
    /// What the credential was verified as. A hit for a credential presented as another
    /// kind is not a hit: an API key is never accepted where only access tokens are, and
    /// the other way round.
    pub kind: CredentialKind,
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
    /// Live: the identity to inject.
    Active(Arc<Identity>),
    /// The user is disabled.
    Disabled,
    /// Ended, expired, or unknown.
    Revoked,
}

/// A principal and when it was loaded, for the stale-while-the-store-is-down rule.
#[derive(Debug, Clone)]
pub struct CachedPrincipal {
    /// The state.
    pub principal: Principal,
    /// When it was loaded from Redis or the store.
    pub loaded_at: Instant,
}

/// The two in-process maps (credentials and principals), the unknown-key misses, and the eviction epoch.
pub struct IdentityCache {
    credentials: Cache<[u8; 32], Arc<CredentialEntry>>,
    /// Hashes of well-formed API keys the store does not know, for `cache.unknown_key_ttl`.
    misses: Cache<[u8; 32], ()>,
    principals: Cache<String, CachedPrincipal>,
    /// Entries younger than this are served without asking anyone.
    fresh_for: Duration,
    /// `cache.max_entries = 0`: every request goes to Redis or the store (for measuring them).
    enabled: bool,
    /// `cache.unknown_key_ttl = 0`: unknown keys are not remembered.
    misses_ttl_zero: bool,
    /// Bumped by every eviction; a loader that saw it change discards what it loaded, so a
    /// store read that raced a revocation cannot leave a stale entry behind.
    epoch: AtomicU64,
    /// Announces every eviction (the new epoch) to whoever holds a long-lived right that a
    /// revocation must end: WebSocket tunnels re-check their caller on each.
    evictions: tokio::sync::watch::Sender<u64>,
}

impl IdentityCache {
    /// An empty cache sized and timed by `[cache]`.
    pub fn new(cfg: &CacheConfig) -> IdentityCache {
        IdentityCache {
            credentials: Cache::builder()
                .max_capacity(cfg.max_entries)
                .time_to_live(cfg.ttl.max(Duration::from_secs(1)) * 4)
                .build(),
            misses: Cache::builder()
                .max_capacity(cfg.max_entries.min(MAX_MISSES))
                .time_to_live(cfg.unknown_key_ttl.max(Duration::from_millis(1)))
                .build(),
            // Kept `stale_bound` past freshness: served only while the store is unreachable.
            principals: Cache::builder()
                .max_capacity(cfg.max_entries)
                .time_to_live(cfg.ttl + cfg.stale_bound)
                .build(),
            fresh_for: cfg.ttl,
            enabled: cfg.max_entries > 0,
            misses_ttl_zero: cfg.unknown_key_ttl.is_zero(),
            epoch: AtomicU64::new(0),
            evictions: tokio::sync::watch::Sender::new(0),
        }
    }

    /// A receiver that changes after every eviction.
    pub fn evictions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.evictions.subscribe()
    }

    /// Whether a cached principal may be served without asking anyone.
    pub fn is_fresh(&self, cached: &CachedPrincipal) -> bool {
        cached.loaded_at.elapsed() < self.fresh_for
    }

    /// The verified credential with this SHA-256, if cached.
    pub fn credential(&self, hash: &[u8; 32]) -> Option<Arc<CredentialEntry>> {
        self.enabled.then(|| self.credentials.get(hash)).flatten()
    }

    /// Remembers a verified credential.
    pub fn put_credential(&self, hash: [u8; 32], entry: Arc<CredentialEntry>) {
        if self.enabled {
            self.credentials.insert(hash, entry);
        }
    }

    /// Whether this API-key hash was looked up recently and not found.
    pub fn is_known_miss(&self, hash: &[u8; 32]) -> bool {
        self.enabled && self.misses.contains_key(hash)
    }

    /// Remembers an API-key hash the store does not know.
    pub fn put_miss(&self, hash: [u8; 32]) {
        if self.enabled && !self.misses_ttl_zero {
            self.misses.insert(hash, ());
        }
    }

    /// The cached state of a session or key, if any.
    pub fn principal(&self, id: &str) -> Option<CachedPrincipal> {
        self.enabled.then(|| self.principals.get(id)).flatten()
    }

    /// Read before loading a principal from the store; pass to `put_principal`.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches a principal loaded when the epoch was `loaded_at_epoch`, unless an eviction came since.
    pub fn put_principal(&self, id: String, principal: Principal, loaded_at_epoch: u64) {
        if !self.enabled {
            return;
        }
        let cached = CachedPrincipal {
            principal,
            loaded_at: Instant::now(),
        };
        self.principals.insert(id.clone(), cached);
        if self.epoch.load(Ordering::SeqCst) != loaded_at_epoch {
            self.principals.invalidate(&id);
        }
    }

    /// Forgets these principals, and announces the eviction.
    pub fn evict(&self, principal_ids: &[String]) {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        for id in principal_ids {
            self.principals.invalidate(id);
        }
        self.evictions.send_replace(epoch);
    }

    /// Forgets every principal (after a lost invalidation subscription), and announces it.
    pub fn evict_all(&self) {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.principals.invalidate_all();
        self.evictions.send_replace(epoch);
    }
}

/// Applies revocations: every write that changes who may do what calls one of these after
/// the store has committed, and the next request (on any replica, with Redis) sees it.
#[derive(Clone)]
pub struct Revocations {
    cache: Arc<IdentityCache>,
    store: DynStore,
    redis: Option<Arc<shared::RedisTier>>,
}

impl Revocations {
    /// Revocations applied to `cache`, with the store to look up what a change affects, and
    /// Redis to tell the other replicas.
    pub fn new(
        cache: Arc<IdentityCache>,
        store: DynStore,
        redis: Option<Arc<shared::RedisTier>>,
    ) -> Revocations {
        Revocations {
            cache,
            store,
            redis,
        }
    }

    async fn apply(&self, session_ids: Vec<String>, keys: Vec<(String, String)>) {
        let mut principals = session_ids.clone();
        principals.extend(keys.iter().map(|(id, _)| id.clone()));
        self.cache.evict(&principals);
        if let Some(redis) = &self.redis {
            let mut value_keys: Vec<String> =
                session_ids.iter().map(|s| redis.session_key(s)).collect();
            value_keys.extend(keys.iter().map(|(_, hash)| redis.api_key_key(hash)));
            redis.invalidate(value_keys, principals).await;
        }
    }

    /// Sessions that ended (logout, password change, refresh-token reuse).
    pub async fn sessions_ended(&self, session_ids: Vec<String>) {
        if !session_ids.is_empty() {
            self.apply(session_ids, Vec::new()).await;
        }
    }

    /// An API key was revoked.
    pub async fn key_revoked(&self, key_id: &str) -> Result<(), StoreError> {
        let hash = self
            .store
            .api_key_by_id(key_id)
            .await?
            .map(|k| k.key.key_hash)
            .unwrap_or_default();
        self.apply(Vec::new(), vec![(key_id.to_string(), hash)])
            .await;
        Ok(())
    }

    /// Several API keys were revoked at once: `(key_id, key_hash)` pairs.
    pub async fn keys_revoked(&self, keys: Vec<(String, String)>) {
        if !keys.is_empty() {
            self.apply(Vec::new(), keys).await;
        }
    }

    /// A user's role, status or email changed: every session and key of theirs is affected.
    pub async fn user_changed(&self, user_id: &str) -> Result<(), StoreError> {
        let sessions = self.store.unexpired_session_ids(user_id).await?;
        let keys = self.store.api_keys_of_user(user_id).await?;
        self.apply(sessions, keys).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> IdentityCache {
        IdentityCache::new(&CacheConfig {
            max_entries: 100,
            ttl: Duration::from_secs(60),
            stale_bound: Duration::from_secs(60),
            unknown_key_ttl: Duration::from_secs(60),
        })
    }

    #[test]
    fn eviction_removes_principal_but_keeps_credential() {
        let c = cache();
        let hash = [7u8; 32];
        c.put_credential(
            hash,
            Arc::new(CredentialEntry {
                kind: CredentialKind::AccessToken,
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
