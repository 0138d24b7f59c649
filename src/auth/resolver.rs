//! Turns a credential into an `Identity` through the tiers: the in-process cache, then the
//! store. A credential seen before costs one hash and two cache lookups: no signature check,
//! no I/O. Never decides what a route allows; that is `authz`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use tokio::sync::mpsc;

use super::credentials::{Credential, CredentialKind};
use super::jwt::JwtKeys;
use super::{AuthError, Identity, api_key};
use crate::cache::{CredentialEntry, IdentityCache, Principal};
use crate::store::{DynStore, KeyPrincipal, SessionPrincipal};
use crate::telemetry::Metrics;

/// `last_used` is written at most this often per key.
pub const LAST_USED_INTERVAL_SECS: i64 = 60;

pub struct Resolver {
    jwt: Arc<JwtKeys>,
    store: DynStore,
    cache: Arc<IdentityCache>,
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

fn session_principal(sp: SessionPrincipal, subject: Option<&str>) -> Result<Principal, AuthError> {
    if sp.revoked || sp.expires_at <= Utc::now() || subject.is_some_and(|s| s != sp.user.user_id) {
        return Ok(Principal::Revoked);
    }
    if sp.user.disabled {
        return Ok(Principal::Disabled);
    }
    let u = sp.user;
    Identity::new(u.user_id, u.email, u.role, Some(sp.session_id), None).map(Principal::Active)
}

fn key_principal(kp: KeyPrincipal) -> Result<Principal, AuthError> {
    if kp.key.revoked || kp.key.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Ok(Principal::Revoked);
    }
    if kp.user.disabled {
        return Ok(Principal::Disabled);
    }
    let u = kp.user;
    let identity = Identity::new(u.user_id, u.email, u.role, None, Some(kp.key.key_id))?;
    let last = kp.key.last_used.map_or(0, |t| t.timestamp());
    identity.last_used_written.store(last, Ordering::Relaxed);
    Ok(Principal::Active(identity))
}

impl Resolver {
    /// Also returns the receiving end of the key-usage channel, for `run_key_usage_writer`.
    pub fn new(
        jwt: Arc<JwtKeys>,
        store: DynStore,
        cache: Arc<IdentityCache>,
        metrics: Arc<Metrics>,
    ) -> (Resolver, mpsc::Receiver<(String, i64)>) {
        let (tx, rx) = mpsc::channel(4096);
        let resolver = Resolver {
            jwt,
            store,
            cache,
            metrics,
            key_usage: tx,
        };
        (resolver, rx)
    }

    pub fn cache(&self) -> &Arc<IdentityCache> {
        &self.cache
    }

    pub async fn resolve(&self, cred: &Credential<'_>) -> Result<Arc<Identity>, AuthError> {
        let hash = api_key::hash(cred.secret);
        let now = Utc::now().timestamp();
        let (entry, hit) = match self.cache.credential(&hash) {
            Some(entry) => (entry, true),
            None => (self.verify_credential(cred, hash).await?, false),
        };
        self.metrics.record_cache(hit);
        if entry.expires_at <= now {
            return Err(match cred.kind {
                CredentialKind::AccessToken => AuthError::InvalidToken("Token has expired"),
                CredentialKind::ApiKey => AuthError::InvalidToken("API key has expired"),
            });
        }
        let principal = match self.cache.principal(&entry.principal) {
            Some(p) => p,
            None => self.load_principal(cred.kind, &entry).await?,
        };
        let identity = principal_result(principal)?;
        if cred.kind == CredentialKind::ApiKey {
            self.note_key_use(&identity, now);
        }
        Ok(identity)
    }

    /// Cache miss: check the credential itself (signature, or API-key lookup).
    async fn verify_credential(
        &self,
        cred: &Credential<'_>,
        hash: [u8; 32],
    ) -> Result<Arc<CredentialEntry>, AuthError> {
        let entry = match cred.kind {
            CredentialKind::AccessToken => {
                let claims = self
                    .jwt
                    .verify(cred.secret)
                    .map_err(AuthError::InvalidToken)?;
                CredentialEntry {
                    principal: claims.sid,
                    subject: Some(claims.sub),
                    expires_at: claims.exp.saturating_add(self.jwt.leeway_secs()),
                }
            }
            CredentialKind::ApiKey => {
                if !api_key::is_well_formed(cred.secret) {
                    return Err(AuthError::InvalidToken("Invalid API key"));
                }
                let hash_hex = hex::encode(hash);
                let epoch = self.cache.epoch();
                let found = self.store.api_key_by_hash(&hash_hex).await?;
                let Some(kp) =
                    found.filter(|kp| api_key::hashes_equal(&kp.key.key_hash, &hash_hex))
                else {
                    return Err(AuthError::InvalidToken("Invalid API key"));
                };
                let entry = CredentialEntry {
                    principal: kp.key.key_id.clone(),
                    subject: Some(kp.user.user_id.clone()),
                    expires_at: kp.key.expires_at.map_or(i64::MAX, |t| t.timestamp()),
                };
                let principal = key_principal(kp)?;
                self.cache
                    .put_principal(entry.principal.clone(), principal, epoch);
                entry
            }
        };
        let entry = Arc::new(entry);
        self.cache.put_credential(hash, entry.clone());
        Ok(entry)
    }

    async fn load_principal(
        &self,
        kind: CredentialKind,
        entry: &CredentialEntry,
    ) -> Result<Principal, AuthError> {
        let epoch = self.cache.epoch();
        let principal = match kind {
            CredentialKind::AccessToken => {
                match self.store.session_principal(&entry.principal).await? {
                    Some(sp) => session_principal(sp, entry.subject.as_deref())?,
                    None => Principal::Revoked,
                }
            }
            CredentialKind::ApiKey => match self.store.api_key_by_id(&entry.principal).await? {
                Some(kp) => key_principal(kp)?,
                None => Principal::Revoked,
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
pub async fn run_key_usage_writer(store: DynStore, mut rx: mpsc::Receiver<(String, i64)>) {
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
