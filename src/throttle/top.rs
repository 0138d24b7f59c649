//! The keys this process refused most often lately, for the operator listener: bounded in
//! size, forgotten an hour after their last refusal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Limiter;

/// Keys tracked at once; refusals of further keys are only counted.
const MAX_TRACKED: usize = 10_000;
/// A key not refused for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// How often a full table may be swept for forgotten keys.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// One throttled key as the operator listener shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TopKey {
    pub limiter: &'static str,
    /// An address (IPv6 as its /64), an account's email or `user:` id, or both (`email|address`).
    pub key: String,
    pub refused: u64,
    pub last_refused_at: DateTime<Utc>,
}

struct Entry {
    refused: u64,
    last: Instant,
    last_at: DateTime<Utc>,
}

#[derive(Default)]
pub(super) struct Top {
    keys: HashMap<(Limiter, Box<str>), Entry>,
    /// Refusals of keys that did not fit.
    untracked: u64,
    last_sweep: Option<Instant>,
}

impl Top {
    pub(super) fn record(&mut self, limiter: Limiter, subject: &str) {
        let now = Instant::now();
        if let Some(e) = self.keys.get_mut(&(limiter, Box::from(subject))) {
            e.refused += 1;
            e.last = now;
            e.last_at = Utc::now();
            return;
        }
        if self.keys.len() >= MAX_TRACKED {
            self.sweep(now);
        }
        if self.keys.len() >= MAX_TRACKED {
            self.untracked += 1;
            return;
        }
        self.keys.insert(
            (limiter, Box::from(subject)),
            Entry {
                refused: 1,
                last: now,
                last_at: Utc::now(),
            },
        );
    }

    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|at| now.duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.keys
            .retain(|_, e| now.duration_since(e.last) < FORGET_AFTER);
    }

    /// The `n` keys refused most, most first, and the refusals not tracked by key.
    pub(super) fn top(&mut self, n: usize) -> (Vec<TopKey>, u64) {
        let now = Instant::now();
        self.keys
            .retain(|_, e| now.duration_since(e.last) < FORGET_AFTER);
        let mut all: Vec<TopKey> = self
            .keys
            .iter()
            .map(|((limiter, key), e)| TopKey {
                limiter: limiter.label(),
                key: key.to_string(),
                refused: e.refused,
                last_refused_at: e.last_at,
            })
            .collect();
        all.sort_by(|a, b| {
            b.refused
                .cmp(&a.refused)
                .then(b.last_refused_at.cmp(&a.last_refused_at))
        });
        all.truncate(n);
        (all, self.untracked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_refused_keys_come_first_and_the_table_stays_bounded() {
        let mut top = Top::default();
        for _ in 0..3 {
            top.record(Limiter::LoginPair, "a|192.0.2.1");
        }
        top.record(Limiter::Register, "192.0.2.9");
        for i in 0..MAX_TRACKED + 5 {
            top.record(Limiter::ApiKeyFailure, &format!("k{i}"));
        }
        let (keys, untracked) = top.top(2);
        assert_eq!(keys[0].key, "a|192.0.2.1");
        assert_eq!(keys[0].refused, 3);
        assert_eq!(keys[0].limiter, "login_pair");
        assert_eq!(keys.len(), 2);
        assert_eq!(untracked, 7, "two tracked keys plus 10,005 new ones");
    }
}
