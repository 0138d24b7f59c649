//! Password hashing: argon2id for new hashes, bcrypt accepted for hashes imported from the
//! origin gateway. All hashing runs on the blocking pool behind a semaphore and a bounded
//! queue, so a login storm is refused with 503 instead of starving the proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::HashingConfig;
use crate::telemetry::{Metrics, Secret};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("too many password operations in progress")]
    Busy,
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// The result of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    /// The stored hash is bcrypt or weaker argon2 parameters: store a fresh hash.
    pub needs_rehash: bool,
}

pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    in_flight: AtomicUsize,
    limit: usize,
    /// Verified against when the email is unknown, so both paths cost the same.
    dummy_hash: String,
    metrics: Arc<Metrics>,
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_now(params: &Params, password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Internal(e.to_string()))
}

fn verify_now(params: &Params, password: &str, stored: &str) -> Verified {
    if stored.starts_with("$argon2") {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return Verified {
                ok: false,
                needs_rehash: false,
            };
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        let current = Params::try_from(&parsed).ok();
        let needs_rehash = parsed.algorithm.as_str() != "argon2id"
            || current.is_none_or(|p| {
                p.m_cost() < params.m_cost()
                    || p.t_cost() < params.t_cost()
                    || p.p_cost() != params.p_cost()
            });
        Verified {
            ok,
            needs_rehash: ok && needs_rehash,
        }
    } else if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$")
    {
        let ok = bcrypt::verify(password, stored).unwrap_or(false);
        Verified {
            ok,
            needs_rehash: ok,
        }
    } else {
        Verified {
            ok: false,
            needs_rehash: false,
        }
    }
}

impl PasswordHasher {
    pub fn new(cfg: &HashingConfig, metrics: Arc<Metrics>) -> Result<PasswordHasher, HashError> {
        let params = Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
            .map_err(|e| HashError::Internal(e.to_string()))?;
        let dummy_hash = hash_now(&params, &crate::auth::api_key::random_hex(16))?;
        Ok(PasswordHasher {
            params,
            permits: Arc::new(Semaphore::new(cfg.max_concurrent)),
            in_flight: AtomicUsize::new(0),
            limit: cfg.max_concurrent + cfg.max_queued,
            dummy_hash,
            metrics,
        })
    }

    /// Runs `work` on the blocking pool once a permit is free, or refuses at once when the
    /// queue is full.
    async fn run<T, F>(&self, work: F) -> Result<T, HashError>
    where
        F: FnOnce(&Params) -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.metrics.record_hash_rejection();
            return Err(HashError::Busy);
        }
        let _slot = InFlight(&self.in_flight);
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError::Internal(e.to_string()))?;
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || work(&params))
            .await
            .map_err(|e| HashError::Internal(e.to_string()))
    }

    pub async fn hash(&self, password: &Secret) -> Result<String, HashError> {
        let password = password.clone();
        self.run(move |params| hash_now(params, password.expose()))
            .await?
    }

    /// Checks `password` against `stored`, or against a dummy hash when there is no user, so
    /// that an unknown email costs the same as a wrong password.
    pub async fn verify(
        &self,
        password: &Secret,
        stored: Option<&str>,
    ) -> Result<Verified, HashError> {
        let known = stored.is_some();
        let stored = stored.unwrap_or(&self.dummy_hash).to_string();
        let password = password.clone();
        let verified = self
            .run(move |params| verify_now(params, password.expose(), &stored))
            .await?;
        Ok(if known {
            verified
        } else {
            Verified {
                ok: false,
                needs_rehash: false,
            }
        })
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(max_concurrent: usize, max_queued: usize) -> PasswordHasher {
        let cfg = HashingConfig {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
            max_concurrent,
            max_queued,
        };
        PasswordHasher::new(&cfg, Arc::new(Metrics::new(vec![]))).unwrap()
    }

    fn secret(s: &str) -> Secret {
        Secret::new(s.to_string())
    }

    #[tokio::test]
    async fn argon2id_round_trip() {
        let h = hasher(2, 4);
        let stored = h.hash(&secret("correct horse")).await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=256,t=1,p=1$"));
        let good = h
            .verify(&secret("correct horse"), Some(&stored))
            .await
            .unwrap();
        assert_eq!(
            good,
            Verified {
                ok: true,
                needs_rehash: false
            }
        );
        let bad = h
            .verify(&secret("wrong horse"), Some(&stored))
            .await
            .unwrap();
        assert!(!bad.ok);
    }

    #[tokio::test]
    async fn bcrypt_verifies_and_asks_for_rehash() {
        let h = hasher(2, 4);
        let legacy = bcrypt::hash("old-password", 4).unwrap();
        let v = h
            .verify(&secret("old-password"), Some(&legacy))
            .await
            .unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: true
            }
        );
        let v = h.verify(&secret("other"), Some(&legacy)).await.unwrap();
        assert_eq!(
            v,
            Verified {
                ok: false,
                needs_rehash: false
            }
        );
    }

    #[tokio::test]
    async fn weaker_argon2_parameters_ask_for_rehash() {
        let weak = hasher(1, 1).hash(&secret("pw-123456")).await.unwrap();
        let cfg = HashingConfig {
            memory_kib: 512,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 1,
            max_queued: 1,
        };
        let strong = PasswordHasher::new(&cfg, Arc::new(Metrics::new(vec![]))).unwrap();
        let v = strong
            .verify(&secret("pw-123456"), Some(&weak))
            .await
            .unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: true
            }
        );
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        let h = hasher(1, 1);
        let v = h.verify(&secret("anything"), None).await.unwrap();
        assert!(!v.ok);
    }

    #[tokio::test]
    async fn full_queue_is_refused() {
        let h = Arc::new(hasher(1, 0));
        // Hold the only permit so the next call has to queue, and the queue holds nothing.
        let permit = h.permits.clone().acquire_owned().await.unwrap();
        let waiting = {
            let h = h.clone();
            tokio::spawn(async move { h.hash(&secret("first-one")).await })
        };
        while h.in_flight.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            h.hash(&secret("second")).await,
            Err(HashError::Busy)
        ));
        drop(permit);
        assert!(waiting.await.unwrap().is_ok());
    }
}
