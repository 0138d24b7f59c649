//! Throttling: how fast failed logins, registrations, refreshes, password changes, API-key
//! creations and unknown API keys may come, per account, per client address (IPv6: per
//! /64) and per (account, address). Each limiter is GCRA (`config::Rate`): in Redis when it
//! is configured, so every replica counts against the same limits, and in this process
//! without it or while Redis does not answer — never unlimited, never everyone refused.
//!
//! Attempts are taken *before* the work they guard (a throttled login never hashes), and
//! given back when the attempt succeeds, so only failures count where failures are what
//! is limited. A successful login also marks its address as known to the account: failures
//! by others on that account (the account limiter) no longer hold that address back, so an
//! attacker spraying one account from many addresses slows the attack, not the owner.

mod local;
mod shared;
mod top;

use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use moka::sync::Cache;

pub use crate::metrics::Limiter;

use self::local::Local;
pub(crate) use self::top::TopKey;
use crate::cache::shared::RedisTier;
use crate::config::{Rate, ThrottleConfig};
use crate::metrics::Metrics;

/// Longest account name kept in a key: longer ones can belong to no account.
const MAX_SUBJECT_BYTES: usize = 320;

/// One key of a decision, with its limiter's rate.
#[derive(Debug, Clone)]
struct Slot {
    key: String,
    burst: u64,
    interval_ms: u64,
}

/// A decision: taken from every slot (the last skipped for a known address), or refused.
#[derive(Debug)]
enum Outcome {
    Taken { skipped_last: bool },
    Refused { index: usize, wait_ms: u64 },
}

/// A refusal: which limiter, its rate, and how long until it lets one more through.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The limiter that refused.
    pub limiter: Limiter,
    /// Its configured rate.
    pub rate: Rate,
    /// How long until it lets one more through.
    pub retry_after: Duration,
}

impl Refused {
    /// Whole seconds to wait, at least 1 (for `Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_millis().div_ceil(1000).max(1) as u64
    }

    /// Sets `Retry-After` and the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-
    /// headers): the limiter's policy as its burst over the time the burst takes to come
    /// back, and nothing left until the wait is over.
    pub fn set_headers(&self, h: &mut http::HeaderMap) {
        static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
        static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
        let name = self.limiter.label();
        let secs = self.retry_after_secs();
        let window = self.rate.window().as_secs().max(1);
        let policy = format!("\"{name}\";q={};w={window}", self.rate.burst);
        let state = format!("\"{name}\";r=0;t={secs}");
        h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        for (field, value) in [(&RATELIMIT_POLICY, policy), (&RATELIMIT, state)] {
            // Limiter names and numbers: always a valid field value.
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(field.clone(), v);
            }
        }
    }
}

/// What an attempt took; `Throttle::succeeded` gives it back.
#[derive(Debug)]
#[must_use = "give it back with Throttle::succeeded when the attempt succeeds"]
pub(crate) struct Taken {
    slots: Vec<Slot>,
    /// The known-address marker to set on success (logins).
    known: Option<String>,
    /// Taken in Redis (else in this process).
    shared: bool,
}

/// The limiters, shared by the account API and the request path.
pub(crate) struct Throttle {
    cfg: ThrottleConfig,
    local: Local,
    redis: Option<Arc<RedisTier>>,
    metrics: Arc<Metrics>,
    /// Addresses refused for unknown API keys, until when: checked in this process before
    /// any key is looked up, so a refused guesser costs no store or Redis call.
    key_blocks: Cache<IpAddr, Instant>,
    top: Mutex<top::Top>,
}

/// The address as limited: IPv4 whole, IPv6 by its /64 (one host usually holds a whole
/// /64, so a single address would be no limit at all).
pub(crate) fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

fn address(ip: IpAddr) -> String {
    match group(ip) {
        IpAddr::V6(net) => format!("{net}/64"),
        v4 => v4.to_string(),
    }
}

fn bounded(account: &str) -> &str {
    let mut end = account.len().min(MAX_SUBJECT_BYTES);
    while !account.is_char_boundary(end) {
        end -= 1;
    }
    &account[..end]
}

impl Throttle {
    pub(crate) fn new(
        cfg: &ThrottleConfig,
        redis: Option<Arc<RedisTier>>,
        metrics: Arc<Metrics>,
    ) -> Throttle {
        Throttle {
            cfg: cfg.clone(),
            local: Local::new(cfg.known_address_for),
            redis,
            metrics,
            key_blocks: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cfg.api_key_failure.every)
                .build(),
            top: Mutex::new(top::Top::default()),
        }
    }

    fn rate(&self, limiter: Limiter) -> Rate {
        let c = &self.cfg;
        match limiter {
            Limiter::LoginAccount => c.login_account,
            Limiter::LoginAddress => c.login_address,
            Limiter::LoginPair => c.login_pair,
            Limiter::Register => c.register,
            Limiter::Refresh => c.refresh,
            Limiter::ChangePassword => c.change_password,
            Limiter::ApiKeyCreate => c.api_key_create,
            Limiter::ApiKeyFailure => c.api_key_failure,
        }
    }

    /// Takes one event for each `(limiter, subject)`, or none. With `known`, the last
    /// pair is skipped when that marker is set.
    async fn take(
        &self,
        wanted: &[(Limiter, String)],
        known: Option<String>,
    ) -> Result<Taken, Refused> {
        if !self.cfg.enabled {
            return Ok(Taken {
                slots: Vec::new(),
                known: None,
                shared: false,
            });
        }
        let slots: Vec<Slot> = wanted
            .iter()
            .map(|(limiter, subject)| {
                let rate = self.rate(*limiter);
                Slot {
                    key: format!("throttle:{}:{subject}", limiter.label()),
                    burst: u64::from(rate.burst),
                    interval_ms: u64::try_from(rate.every.as_millis()).unwrap_or(u64::MAX),
                }
            })
            .collect();
        let from_redis = match &self.redis {
            Some(tier) => shared::take(tier, &slots, known.as_deref()).await,
            None => None,
        };
        let shared = from_redis.is_some();
        if self.redis.is_some() && !shared {
            self.metrics.record_throttle_fallback();
        }
        let outcome = from_redis.unwrap_or_else(|| self.local.take(&slots, known.as_deref()));
        match outcome {
            Outcome::Taken { skipped_last } => {
                let mut slots = slots;
                if skipped_last {
                    slots.pop();
                }
                Ok(Taken {
                    slots,
                    known,
                    shared,
                })
            }
            Outcome::Refused { index, wait_ms } => {
                let (limiter, subject) = &wanted[index.min(wanted.len() - 1)];
                Err(self.refuse(*limiter, subject, Duration::from_millis(wait_ms)))
            }
        }
    }

    fn refuse(&self, limiter: Limiter, subject: &str, retry_after: Duration) -> Refused {
        self.metrics.record_throttled(limiter);
        self.top
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(limiter, subject);
        tracing::debug!(limiter = limiter.label(), "throttled");
        Refused {
            limiter,
            rate: self.rate(limiter),
            retry_after,
        }
    }

    /// A login attempt for `email` from `ip`: limited per (account, address), per address,
    /// and per account (unless this address signed into it recently).
    pub(crate) async fn login(&self, email: &str, ip: IpAddr) -> Result<Taken, Refused> {
        let addr = address(ip);
        let account = bounded(email);
        let pair = format!("{account}|{addr}");
        let known = format!("throttle:known:{pair}");
        self.take(
            &[
                (Limiter::LoginPair, pair),
                (Limiter::LoginAddress, addr),
                (Limiter::LoginAccount, account.to_owned()),
            ],
            Some(known),
        )
        .await
    }

    /// An attempt limited per address.
    pub(crate) async fn attempt(&self, limiter: Limiter, ip: IpAddr) -> Result<Taken, Refused> {
        self.take(&[(limiter, address(ip))], None).await
    }

    /// An attempt limited per address and per account (`user_id`).
    pub(crate) async fn attempt_as(
        &self,
        limiter: Limiter,
        ip: IpAddr,
        user_id: &str,
    ) -> Result<Taken, Refused> {
        let account = format!("user:{}", bounded(user_id));
        self.take(&[(limiter, address(ip)), (limiter, account)], None)
            .await
    }

    /// The attempt succeeded: it does not count. A login's address becomes known to the
    /// account for `throttle.known_address_for`.
    pub(crate) async fn succeeded(&self, taken: Taken) {
        let known_secs = self.cfg.known_address_for.as_secs();
        if taken.shared
            && let Some(tier) = &self.redis
        {
            let known = taken.known.as_deref().map(|k| (k, known_secs));
            if shared::refund(tier, &taken.slots, known).await {
                return;
            }
            self.metrics.record_throttle_fallback();
        }
        self.local.refund(&taken.slots, taken.known.as_deref());
    }

    /// Whether `ip` is refused for unknown API keys right now: answered in this process,
    /// without a store or Redis call.
    pub(crate) fn api_key_blocked(&self, ip: IpAddr) -> Option<Refused> {
        if !self.cfg.enabled {
            return None;
        }
        let until = self.key_blocks.get(&group(ip))?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(self.refuse(Limiter::ApiKeyFailure, &address(ip), left))
    }

    /// An unknown or malformed API key from `ip`: counted; `Some` once the
    /// address is over its limit (and until then every key it presents is refused here).
    pub(crate) async fn api_key_failed(&self, ip: IpAddr) -> Option<Refused> {
        match self.attempt(Limiter::ApiKeyFailure, ip).await {
            Ok(_counted) => None,
            Err(refused) => {
                self.key_blocks
                    .insert(group(ip), Instant::now() + refused.retry_after);
                Some(refused)
            }
        }
    }

    /// The keys refused most often by this process in the last hour, most first.
    pub(crate) fn top(&self, n: usize) -> (Vec<TopKey>, u64) {
        self.top.lock().unwrap_or_else(|p| p.into_inner()).top(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_grouped_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address(a), "2001:db8:1:2::/64");
        assert_eq!(address(a), address(b));
        assert_ne!(address(a), address(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address(mapped), "192.0.2.7");
        assert_eq!(address("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }

    #[test]
    fn long_account_names_are_cut_on_a_character_boundary() {
        let long = "é".repeat(400);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_SUBJECT_BYTES && cut.len() >= MAX_SUBJECT_BYTES - 1);
        assert_eq!(bounded("a@b.example"), "a@b.example");
    }

    #[tokio::test]
    async fn a_failed_login_counts_and_a_successful_one_does_not() {
        let mut cfg = crate::config::THROTTLE_DEFAULTS;
        cfg.login_pair = Rate {
            burst: 2,
            every: Duration::from_secs(600),
        };
        let t = Throttle::new(&cfg, None, Arc::new(Metrics::new(Vec::new())));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            let taken = t
                .login("a@x.example", ip)
                .await
                .expect("successes are free");
            t.succeeded(taken).await;
        }
        let _failed = t.login("a@x.example", ip).await.expect("first failure");
        let _failed = t.login("a@x.example", ip).await.expect("second failure");
        let refused = t
            .login("a@x.example", ip)
            .await
            .expect_err("third is refused");
        assert_eq!(refused.limiter, Limiter::LoginPair);
        assert!(refused.retry_after_secs() > 500);
        // Another account from the same address is not held back by this pair.
        assert!(t.login("b@x.example", ip).await.is_ok());
    }
}
