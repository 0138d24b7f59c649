//! Turns a credential into an `Identity` through the tiers: the in-process cache, then Redis
//! (when configured), then the store, each filling the ones above it. A credential seen
//! before costs one hash and two in-process lookups: no signature check, no I/O. Never
//! decides what a route allows; that is `authz`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use tokio::sync::mpsc;

use super::credentials::Credential;

use super::jwt::JwtKeys;
use super::{AuthError, api_key};
use crate::cache::shared::{Lookup, RedisTier, Snapshot};
use crate::cache::{CredentialEntry, IdentityCache, Principal};
use crate::identity::CredentialKind;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::store::{DynStore, KeyPrincipal, SessionPrincipal, StoreError};
use crate::throttle::Throttle;

/// `last_used` is written at most this often per key.
pub(crate) const LAST_USED_INTERVAL_SECS: i64 = 60;

/// Resolves credentials to identities through the tiers (see the module).
pub struct Resolver {
    jwt: Arc<JwtKeys>,
    store: DynStore,
    cache: Arc<IdentityCache>,
    redis: Option<Arc<RedisTier>>,
    metrics: Arc<Metrics>,
    key_usage: mpsc::Sender<(String, i64)>,
}

fn revoked() -> AuthError {
    AuthError::InvalidToken("Credential has been revoked")
}

fn principal_result(p: Principal) -> Result<Arc<Identity>, AuthError> {
    match p {
        Principal::Active(identity) => Ok(identity),
        Principal::Disabled => Err(AuthError::Disabled),
        Principal::Revoked => Err(revoked()),
    }
}

fn session_snapshot(sp: SessionPrincipal) -> Snapshot {
    Snapshot {
        principal: sp.session_id,
        user_id: sp.user.user_id,
        email: sp.user.email,
        role: sp.user.role,
        disabled: sp.user.disabled,
        revoked: sp.revoked,
        expires_at: Some(sp.expires_at.timestamp()),
        last_used: None,
    }
}

fn key_snapshot(kp: KeyPrincipal) -> Snapshot {
    Snapshot {
        principal: kp.key.key_id,
        user_id: kp.user.user_id,
        email: kp.user.email,
        role: kp.user.role,
        disabled: kp.user.disabled,
        revoked: kp.key.revoked,
        expires_at: kp.key.expires_at.map(|t| t.timestamp()),
        last_used: kp.key.last_used.map(|t| t.timestamp()),
    }
}

/// The one place a snapshot (from Redis or the store) becomes a principal.
fn principal_from(
    snap: &Snapshot,
    kind: CredentialKind,
    subject: Option<&str>,
) -> Result<Principal, AuthError> {
    let now = Utc::now().timestamp();
    if subject.is_some_and(|s| s != snap.user_id) {
        return Ok(Principal::Revoked);
    }
    // A disabled user hears so (403) even though disabling also ended the session; once
    // enabled again, the ended session is refused as revoked (401).
    if snap.disabled {
        return Ok(Principal::Disabled);
    }
    if snap.revoked || snap.expires_at.is_some_and(|t| t <= now) {
        return Ok(Principal::Revoked);
    }
    let (session_id, key_id) = match kind {
        CredentialKind::AccessToken => (Some(snap.principal.clone()), None),
        CredentialKind::ApiKey => (None, Some(snap.principal.clone())),
    };
    let identity = Identity::new(
        snap.user_id.clone(),
        snap.email.clone(),
        snap.role,
        session_id,
        key_id,
    )?;
    identity
        .last_used_written
        .store(snap.last_used.unwrap_or(0), Ordering::Relaxed);
    Ok(Principal::Active(identity))
}

fn is_unavailable(e: &AuthError) -> bool {
    matches!(
        e,
        AuthError::Store(StoreError::Database(_) | StoreError::Timeout)
    )
}

impl Resolver {
    /// Also returns the receiving end of the key-usage channel, for `run_key_usage_writer`.
    pub(crate) fn new(
        jwt: Arc<JwtKeys>,
        store: DynStore,
        cache: Arc<IdentityCache>,
        redis: Option<Arc<RedisTier>>,
        metrics: Arc<Metrics>,
    ) -> (Resolver, mpsc::Receiver<(String, i64)>) {
        let (tx, rx) = mpsc::channel(4096);
        let resolver = Resolver {
            jwt,
            store,
            cache,
            redis,
            metrics,
            key_usage: tx,
        };
        (resolver, rx)
    }

    /// Changes after every revocation applied here (see `IdentityCache::evictions`).
    pub(crate) fn evictions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.cache.evictions()
    }

    /// The identity `cred` proves, or why it proves none.
    pub async fn resolve(&self, cred: &Credential<'_>) -> Result<Arc<Identity>, AuthError> {
        self.resolve_from(cred, None).await
    }

    /// `resolve` for a request from a client address: API keys this process has not
    /// verified are limited per address (`throttle.api_key_failure`) — an address over the
    /// limit is refused before any lookup, and each unknown key counts against it. Keys
    /// already verified here resolve as always.
    pub(crate) async fn resolve_from(
        &self,
        cred: &Credential<'_>,
        client: Option<(&Throttle, IpAddr)>,
    ) -> Result<Arc<Identity>, AuthError> {
        let hash = crate::secret::hash(cred.secret);
        let now = Utc::now().timestamp();
        // A hit counts only for the kind it was verified as: an API key presented in the
        // access-token cookie (or a token in `X-API-Key`) is verified as what it claims to
        // be, and fails.
        let (entry, hit) = match self.cache.credential(&hash) {
            Some(entry) if entry.kind == cred.kind => (entry, true),
            _ => match client.filter(|_| cred.kind == CredentialKind::ApiKey) {
                None => (self.verify_credential(cred, &hash).await?, false),
                Some((throttle, ip)) => {
                    if let Some(refused) = throttle.api_key_blocked(ip) {
                        return Err(AuthError::Throttled(refused));
                    }
                    match self.verify_credential(cred, &hash).await {
                        Ok(entry) => (entry, false),
                        Err(e @ (AuthError::InvalidToken(_) | AuthError::Malformed(_))) => {
                            return Err(match throttle.api_key_failed(ip).await {
                                Some(refused) => AuthError::Throttled(refused),
                                None => e,
                            });
                        }
                        Err(e) => return Err(e),
                    }
                }
            },
        };
        self.metrics.record_cache(hit);
        if entry.expires_at <= now {
            return Err(match cred.kind {
                CredentialKind::AccessToken => AuthError::InvalidToken("Token has expired"),
                CredentialKind::ApiKey => AuthError::InvalidToken("API key has expired"),
            });
        }
        let principal = match self.cache.principal(&entry.principal) {
            Some(cached) if self.cache.is_fresh(&cached) => cached.principal,
            Some(stale) => match self.load_principal(cred.kind, &entry, &hash).await {
                Ok(p) => p,
                // The store is down: serve what we had, for at most `cache.stale_bound`.
                Err(e) if is_unavailable(&e) => {
                    self.metrics.record_stale_served();
                    stale.principal
                }
                Err(e) => return Err(e),
            },
            None => self.load_principal(cred.kind, &entry, &hash).await?,
        };
        let identity = principal_result(principal)?;
        // The principal may have been loaded through another credential: the subject this
        // credential names must still be its user.
        if entry
            .subject
            .as_deref()
            .is_some_and(|s| s != identity.user_id)
        {
            return Err(revoked());
        }
        if cred.kind == CredentialKind::ApiKey {
            self.note_key_use(&identity, now);
        }
        Ok(identity)
    }

    /// Cache miss: check the credential itself (signature, or API-key lookup).
    async fn verify_credential(
        &self,
        cred: &Credential<'_>,
        hash: &[u8; 32],
    ) -> Result<Arc<CredentialEntry>, AuthError> {
        let entry = match cred.kind {
            CredentialKind::AccessToken => {
                let claims = self
                    .jwt
                    .verify(cred.secret)
                    .map_err(AuthError::InvalidToken)?;
                CredentialEntry {
                    kind: CredentialKind::AccessToken,
                    principal: claims.sid,
                    subject: Some(claims.sub),
                    expires_at: claims.exp.saturating_add(self.jwt.leeway_secs()),
                }
            }
            CredentialKind::ApiKey => {
                if !api_key::is_well_formed(cred.secret) || self.cache.is_known_miss(hash) {
                    return Err(AuthError::InvalidToken("Invalid API key"));
                }
                let epoch = self.cache.epoch();
                let snap = match self.key_snapshot_by_hash(&hex::encode(hash)).await {
                    Err(e @ AuthError::InvalidToken(_)) => {
                        // Remembered for a short while, so repeating an unknown key costs
                        // no store query.
                        self.cache.put_miss(*hash);
                        return Err(e);
                    }
                    other => other?,
                };
                let entry = CredentialEntry {
                    kind: CredentialKind::ApiKey,
                    principal: snap.principal.clone(),
                    subject: Some(snap.user_id.clone()),
                    expires_at: snap.expires_at.unwrap_or(i64::MAX),
                };
                let principal = principal_from(&snap, CredentialKind::ApiKey, None)?;
                self.cache
                    .put_principal(entry.principal.clone(), principal, epoch);
                entry
            }
        };
        let entry = Arc::new(entry);
        self.cache.put_credential(*hash, entry.clone());
        Ok(entry)
    }

    /// An API key's snapshot by the key's hash: Redis, else the store (filling Redis).
    async fn key_snapshot_by_hash(&self, hash_hex: &str) -> Result<Snapshot, AuthError> {
        let guard = match &self.redis {
            Some(redis) => match redis.lookup(&redis.api_key_key(hash_hex)).await {
                Lookup::Hit(snap) => return Ok(snap),
                Lookup::Miss(guard) => Some(guard),
                Lookup::Unavailable => None,
            },
            None => None,
        };
        let found = self.store.api_key_by_hash(hash_hex).await?;
        let Some(kp) = found.filter(|kp| crate::secret::hashes_equal(&kp.key.key_hash, hash_hex))
        else {
            return Err(AuthError::InvalidToken("Invalid API key"));
        };
        let snap = key_snapshot(kp);
        if let (Some(redis), Some(guard)) = (&self.redis, guard) {
            redis.fill(&redis.api_key_key(hash_hex), &snap, guard).await;
        }
        Ok(snap)
    }

    /// A session's snapshot: Redis, else the store (filling Redis).
    async fn session_snapshot(&self, session_id: &str) -> Result<Option<Snapshot>, AuthError> {
        let guard = match &self.redis {
            Some(redis) => match redis.lookup(&redis.session_key(session_id)).await {
                Lookup::Hit(snap) => return Ok(Some(snap)),
                Lookup::Miss(guard) => Some(guard),
                Lookup::Unavailable => None,
            },
            None => None,
        };
        let Some(sp) = self.store.session_principal(session_id).await? else {
            return Ok(None);
        };
        let snap = session_snapshot(sp);
        if let (Some(redis), Some(guard)) = (&self.redis, guard) {
            redis
                .fill(&redis.session_key(session_id), &snap, guard)
                .await;
        }
        Ok(Some(snap))
    }

    async fn load_principal(
        &self,
        kind: CredentialKind,
        entry: &CredentialEntry,
        hash: &[u8; 32],
    ) -> Result<Principal, AuthError> {
        let epoch = self.cache.epoch();
        let principal = match kind {
            CredentialKind::AccessToken => match self.session_snapshot(&entry.principal).await? {
                Some(snap) => principal_from(&snap, kind, entry.subject.as_deref())?,
                None => Principal::Revoked,
            },
            CredentialKind::ApiKey => match self.key_snapshot_by_hash(&hex::encode(hash)).await {
                Ok(snap) => principal_from(&snap, kind, entry.subject.as_deref())?,
                Err(AuthError::InvalidToken(_)) => Principal::Revoked,
                Err(e) => return Err(e),
            },
        };
        self.cache
            .put_principal(entry.principal.clone(), principal.clone(), epoch);
        Ok(principal)
    }

    /// Queues a `last_used` write if this key's last one is over a minute old. Never waits:
    /// if the writer is behind, the update is dropped (it is advisory).
    fn note_key_use(&self, identity: &Identity, now: i64) {
        let last = identity.last_used_written.load(Ordering::Relaxed);
        if now - last < LAST_USED_INTERVAL_SECS {
            return;
        }
        if identity
            .last_used_written
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
            && let Some(key_id) = &identity.key_id
        {
            let _ = self.key_usage.try_send((key_id.clone(), now));
        }
    }
}

/// Drains the key-usage channel into the store in batches, off the request path.
pub(crate) async fn run_key_usage_writer(store: DynStore, mut rx: mpsc::Receiver<(String, i64)>) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let used: Vec<_> = batch
            .drain(..)
            .filter_map(|(id, at)| chrono::DateTime::from_timestamp(at, 0).map(|t| (id, t)))
            .collect();
        if let Err(e) = store.touch_api_keys(&used).await {
            tracing::warn!(error = %e, "could not record API key last_used");
        }
    }
}
