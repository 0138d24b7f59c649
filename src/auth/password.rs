//! Password hashing: argon2id for new hashes, bcrypt accepted for hashes imported from the
//! origin gateway. Hashing runs on a dedicated pool of `max_concurrent` threads behind a
//! bounded queue, so a login storm is refused with 503 instead of starving the proxy. With
//! `low_priority` (the default) the pool's threads are scheduled `SCHED_IDLE`: they use only
//! CPU time that proxying leaves free.
//!
//! Argon2's working memory (`memory_kib`, 19 MiB by default) is reused from hash to hash
//! while logins keep coming and freed once it has sat unused for `SPARE_IDLE`, so a login
//! burst does not leave the process tens of megabytes larger for good (the allocator returns
//! freed pages to the system, see `lib.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::config::HashingConfig;
use crate::metrics::Metrics;
use crate::secret::Secret;
#[derive(Debug, thiserror::Error)]
pub(crate) enum HashError {
    #[error("too many password operations in progress")]
    Busy,
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// The result of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verified {
    pub ok: bool,
    /// The stored hash is bcrypt or weaker argon2 parameters: store a fresh hash.
    pub needs_rehash: bool,
}

type Job = Box<dyn FnOnce(&Spare) + Send>;

/// How long argon2 working memory is kept unused before it is freed.
pub(crate) const SPARE_IDLE: Duration = Duration::from_secs(10);

/// Argon2 working memory between hashes: buffers a finished hash gave back, with when it
/// did. A hash takes one (or allocates), so back-to-back hashes do not fault in fresh pages;
/// `drop_idle` frees those unused for longer than the idle bound.
#[derive(Default)]
pub(crate) struct Spare {
    buffers: Mutex<Vec<(Instant, Vec<Block>)>>,
}

impl Spare {
    /// A buffer of at least `need` blocks: a spare one when there is one.
    fn take(&self, need: usize) -> Vec<Block> {
        let spare = self.buffers.lock().ok().and_then(|mut b| b.pop());
        let mut blocks = spare.map(|(_, blocks)| blocks).unwrap_or_default();
        if blocks.len() < need {
            blocks.resize(need, Block::default());
        }
        blocks
    }

    fn give(&self, blocks: Vec<Block>) {
        if let Ok(mut buffers) = self.buffers.lock() {
            buffers.push((Instant::now(), blocks));
        }
    }

    /// Frees the buffers unused for longer than `idle` (outside the lock).
    pub(crate) fn drop_idle(&self, idle: Duration) {
        let stale: Vec<_> = match self.buffers.lock() {
            Ok(mut buffers) => {
                let (keep, stale) = std::mem::take(&mut *buffers)
                    .into_iter()
                    .partition(|(at, _)| at.elapsed() < idle);
                *buffers = keep;
                stale
            }
            Err(_) => return,
        };
        drop(stale);
    }

    /// Bytes of working memory kept.
    #[cfg(test)]
    pub(crate) fn kept_bytes(&self) -> usize {
        self.buffers.lock().map_or(0, |b| {
            b.iter()
                .map(|(_, blocks)| blocks.len() * std::mem::size_of::<Block>())
                .sum()
        })
    }
}

/// The hashing threads. Jobs wait in the channel; `PasswordHasher` bounds how many.
struct Pool {
    jobs: Mutex<mpsc::Sender<Job>>,
}

fn lower_priority() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(e) = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle) {
        tracing::warn!(error = ?e, "could not lower the password-hashing threads' priority");
    }
}

impl Pool {
    fn new(threads: usize, low_priority: bool) -> Result<Pool, HashError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let spare = Arc::new(Spare::default());
        for i in 0..threads {
            let rx = rx.clone();
            let spare = spare.clone();
            std::thread::Builder::new()
                .name(format!("portcullis-hash-{i}"))
                .spawn(move || {
                    if low_priority {
                        lower_priority();
                    }
                    // The thread waiting for work wakes at least every half idle bound to
                    // free the spare memory nobody has used for the whole bound.
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv_timeout(SPARE_IDLE / 2),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&spare),
                            Err(mpsc::RecvTimeoutError::Timeout) => spare.drop_idle(SPARE_IDLE),
                            Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                })
                .map_err(|e| HashError::Internal(e.to_string()))?;
        }
        Ok(Pool {
            jobs: Mutex::new(tx),
        })
    }
}

pub(crate) struct PasswordHasher {
    params: Params,
    pool: Pool,
    in_flight: AtomicUsize,
    limit: usize,
    /// Verified against when the email is unknown, so both paths cost the same.
    dummy_hash: String,
    metrics: Arc<Metrics>,
}

/// Argon2 of `password` with `salt` into `out`, in spare working memory (or a one-off
/// allocation for parameters far above the configured ones).
#[allow(clippy::too_many_arguments)]
fn argon2_into(
    spare: &Spare,
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    keep_up_to: usize,
) -> Result<(), argon2::Error> {
    let argon = Argon2::new(algorithm, version, params.clone());
    let need = params.block_count();
    if need > keep_up_to {
        let mut once = vec![Block::default(); need];
        return argon.hash_password_into_with_memory(password, salt, out, &mut once[..]);
    }
    let mut blocks = spare.take(need);
    let hashed = argon.hash_password_into_with_memory(password, salt, out, &mut blocks[..need]);
    spare.give(blocks);
    hashed
}

/// A PHC string for argon2id with `params`, `salt` and `hash`.
fn phc(params: &Params, salt: &SaltString, hash: &[u8]) -> Result<String, HashError> {
    let internal = |e: argon2::password_hash::Error| HashError::Internal(e.to_string());
    Ok(PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(internal)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(hash).map_err(internal)?),
    }
    .to_string())
}

fn hash_now(spare: &Spare, params: &Params, password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| HashError::Internal(e.to_string()))?;
    let mut out = [0u8; 32];
    argon2_into(
        spare,
        Algorithm::Argon2id,
        Version::V0x13,
        params,
        password.as_bytes(),
        raw_salt,
        &mut out,
        params.block_count(),
    )
    .map_err(|e| HashError::Internal(e.to_string()))?;
    phc(params, &salt, &out)
}

/// Checks an argon2 PHC string; `configured` decides whether it needs upgrading.
fn verify_argon2(spare: &Spare, configured: &Params, password: &str, stored: &str) -> Verified {
    let no = Verified {
        ok: false,
        needs_rehash: false,
    };
    let Ok(parsed) = PasswordHash::new(stored) else {
        return no;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return no;
    };
    let version = parsed
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or_default();
    let mut salt_bytes = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut salt_bytes) else {
        return no;
    };
    let mut out = vec![0u8; expected.len()];
    let keep = configured.block_count().saturating_mul(4);
    if argon2_into(
        spare,
        algorithm,
        version,
        &params,
        password.as_bytes(),
        raw_salt,
        &mut out,
        keep,
    )
    .is_err()
    {
        return no;
    }
    // `Output` compares in constant time.
    let ok = Output::new(&out).is_ok_and(|o| o == expected);
    let weaker = algorithm != Algorithm::Argon2id
        || params.m_cost() < configured.m_cost()
        || params.t_cost() < configured.t_cost()
        || params.p_cost() != configured.p_cost();
    Verified {
        ok,
        needs_rehash: ok && weaker,
    }
}

fn verify_now(spare: &Spare, params: &Params, password: &str, stored: &str) -> Verified {
    if stored.starts_with("$argon2") {
        verify_argon2(spare, params, password, stored)
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

/// A well-formed argon2id hash with the configured parameters that no password matches
/// (its output is random). Verifying against it costs exactly what a real check costs.
fn dummy_hash(params: &Params) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    let mut random = [0u8; 32];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| HashError::Internal("no randomness".into()))?;
    phc(params, &salt, &random)
}

impl PasswordHasher {
    pub(crate) fn new(
        cfg: &HashingConfig,
        metrics: Arc<Metrics>,
    ) -> Result<PasswordHasher, HashError> {
        let params = Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
            .map_err(|e| HashError::Internal(e.to_string()))?;
        let dummy_hash = dummy_hash(&params)?;
        Ok(PasswordHasher {
            params,
            pool: Pool::new(cfg.max_concurrent, cfg.low_priority)?,
            in_flight: AtomicUsize::new(0),
            limit: cfg.max_concurrent + cfg.max_queued,
            dummy_hash,
            metrics,
        })
    }

    /// Runs `work` on the hashing pool, or refuses at once when the queue is full.
    async fn run<T, F>(&self, work: F) -> Result<T, HashError>
    where
        F: FnOnce(&Spare, &Params) -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.metrics.record_hash_rejection();
            return Err(HashError::Busy);
        }
        let _slot = InFlight(&self.in_flight);
        let params = self.params.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |spare| {
            let _ = tx.send(work(spare, &params));
        });
        self.pool
            .jobs
            .lock()
            .map_err(|_| HashError::Internal("hashing pool poisoned".into()))?
            .send(job)
            .map_err(|_| HashError::Internal("hashing pool stopped".into()))?;
        rx.await
            .map_err(|_| HashError::Internal("hashing job dropped".into()))
    }

    pub(crate) async fn hash(&self, password: &Secret) -> Result<String, HashError> {
        let password = password.clone();
        self.run(move |spare, params| hash_now(spare, params, password.expose()))
            .await?
    }

    /// Checks `password` against `stored`, or against a dummy hash when there is no user, so
    /// that an unknown email costs the same as a wrong password.
    pub(crate) async fn verify(
        &self,
        password: &Secret,
        stored: Option<&str>,
    ) -> Result<Verified, HashError> {
        let known = stored.is_some();
        let stored = stored.unwrap_or(&self.dummy_hash).to_string();
        let password = password.clone();
        let verified = self
            .run(move |spare, params| verify_now(spare, params, password.expose(), &stored))
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

/// `portcullis hash-rate`: argon2id hashes per second at `cfg`'s parameters, on `threads`
/// threads at normal priority, over `duration`.
pub(crate) fn measure_rate(
    cfg: &HashingConfig,
    threads: usize,
    duration: Duration,
) -> Result<f64, HashError> {
    let params = Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
        .map_err(|e| HashError::Internal(e.to_string()))?;
    let started = Instant::now();
    let spare = Arc::new(Spare::default());
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let params = params.clone();
            let spare = spare.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while started.elapsed() < duration {
                    if hash_now(&spare, &params, "benchmark password").is_ok() {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
