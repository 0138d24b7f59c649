//! GCRA in this process: the limiter used without Redis, and whenever Redis does not
//! answer. The same rule as the Redis script (`shared.rs`): a key's state is its
//! theoretical arrival time (TAT); an event is let through when, after adding one interval,
//! the TAT is at most `burst` intervals ahead of now.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use super::{Outcome, Slot};

/// Most keys remembered at once; beyond it the least used are forgotten first.
const MAX_KEYS: u64 = 200_000;

/// A key's TAT (milliseconds on this process's clock) and how long it matters.
#[derive(Clone, Copy)]
struct Tat {
    at_ms: u64,
    ttl: Duration,
}

struct UntilCaughtUp;

impl Expiry<String, Tat> for UntilCaughtUp {
    fn expire_after_create(&self, _: &String, v: &Tat, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_update(
        &self,
        _: &String,
        v: &Tat,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// One decision of the rule: the new TAT if the event is let through, or how long until it
/// would be.
pub(super) fn gcra(tat_ms: u64, now_ms: u64, interval_ms: u64, burst: u64) -> Result<u64, u64> {
    let next = tat_ms.max(now_ms) + interval_ms;
    let ahead = next - now_ms;
    let allowed = interval_ms.saturating_mul(burst);
    if ahead <= allowed {
        Ok(next)
    } else {
        Err(ahead - allowed)
    }
}

/// The per-process state: TATs and the addresses known to accounts.
pub(super) struct Local {
    /// Serializes a multi-key decision (check every key, then take from all or none); held
    /// for microseconds, and only on the paths that are throttled (never a cached request).
    decide: Mutex<()>,
    tats: Cache<String, Tat>,
    known: Cache<String, ()>,
    epoch: Instant,
}

impl Local {
    pub(super) fn new(known_for: Duration) -> Local {
        Local {
            decide: Mutex::new(()),
            tats: Cache::builder()
                .max_capacity(MAX_KEYS)
                .expire_after(UntilCaughtUp)
                .build(),
            known: Cache::builder()
                .max_capacity(MAX_KEYS)
                .time_to_live(known_for)
                .build(),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }

    /// Takes one event from every slot, or from none (`Outcome::Refused` names the slot
    /// that would wait longest). The last slot is skipped when `known` is remembered.
    pub(super) fn take(&self, slots: &[Slot], known: Option<&str>) -> Outcome {
        let skip_last = known.is_some_and(|k| self.known.contains_key(k));
        let _one_at_a_time = self.decide.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.now_ms();
        let counted = if skip_last {
            &slots[..slots.len().saturating_sub(1)]
        } else {
            slots
        };
        let mut next = Vec::with_capacity(counted.len());
        let mut worst: Option<(usize, u64)> = None;
        for (i, slot) in counted.iter().enumerate() {
            let tat = self.tats.get(&slot.key).map_or(0, |t| t.at_ms);
            match gcra(tat, now, slot.interval_ms, slot.burst) {
                Ok(n) => next.push(n),
                Err(wait) => {
                    if worst.is_none_or(|(_, w)| wait > w) {
                        worst = Some((i, wait));
                    }
                }
            }
        }
        if let Some((index, wait_ms)) = worst {
            return Outcome::Refused { index, wait_ms };
        }
        for (slot, at_ms) in counted.iter().zip(next) {
            let ttl = Duration::from_millis(at_ms - now);
            self.tats.insert(slot.key.clone(), Tat { at_ms, ttl });
        }
        Outcome::Taken {
            skipped_last: skip_last,
        }
    }

    /// Gives one event back to each slot (a success that should not count), and remembers
    /// `known` when given.
    pub(super) fn refund(&self, slots: &[Slot], known: Option<&str>) {
        if let Some(k) = known {
            self.known.insert(k.to_owned(), ());
        }
        let _one_at_a_time = self.decide.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.now_ms();
        for slot in slots {
            if let Some(t) = self.tats.get(&slot.key) {
                let at_ms = t.at_ms.saturating_sub(slot.interval_ms);
                if at_ms <= now {
                    self.tats.invalidate(&slot.key);
                } else {
                    let ttl = Duration::from_millis(at_ms - now);
                    self.tats.insert(slot.key.clone(), Tat { at_ms, ttl });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(key: &str, burst: u64, interval_ms: u64) -> Slot {
        Slot {
            key: key.into(),
            burst,
            interval_ms,
        }
    }

    #[test]
    fn the_rule_lets_a_burst_through_then_one_per_interval() {
        let (burst, interval) = (3, 1000);
        let mut tat = 0;
        for _ in 0..burst {
            tat = gcra(tat, 10_000, interval, burst).expect("within the burst");
        }
        assert_eq!(gcra(tat, 10_000, interval, burst), Err(1000));
        assert_eq!(gcra(tat, 10_400, interval, burst), Err(600));
        assert!(gcra(tat, 11_000, interval, burst).is_ok());
    }

    #[test]
    fn a_refused_key_takes_nothing_from_the_others() {
        let local = Local::new(Duration::from_secs(60));
        let a = slot("a", 1, 60_000);
        let b = slot("b", 5, 60_000);
        assert!(matches!(
            local.take(&[a.clone(), b.clone()], None),
            Outcome::Taken { .. }
        ));
        for _ in 0..3 {
            match local.take(&[a.clone(), b.clone()], None) {
                Outcome::Refused { index, wait_ms } => {
                    assert_eq!(index, 0);
                    assert!(wait_ms > 59_000, "{wait_ms}");
                }
                Outcome::Taken { .. } => panic!("a is spent"),
            }
        }
        // b gave up only the first event: four more fit in its burst of five.
        for _ in 0..4 {
            assert!(matches!(
                local.take(std::slice::from_ref(&b), None),
                Outcome::Taken { .. }
            ));
        }
        assert!(matches!(
            local.take(std::slice::from_ref(&b), None),
            Outcome::Refused { .. }
        ));
    }

    #[test]
    fn a_refund_gives_the_event_back_and_a_known_address_skips_the_last_slot() {
        let local = Local::new(Duration::from_secs(60));
        let pair = slot("pair", 1, 60_000);
        let account = slot("account", 1, 60_000);
        let both = [pair.clone(), account.clone()];
        assert!(matches!(
            local.take(&both, Some("k")),
            Outcome::Taken { .. }
        ));
        local.refund(&both, Some("k"));
        assert!(matches!(
            local.take(&both, Some("k")),
            Outcome::Taken { skipped_last: true }
        ));
        // The account slot is still free: the known address did not spend it.
        assert!(matches!(
            local.take(std::slice::from_ref(&account), None),
            Outcome::Taken { .. }
        ));
        assert!(matches!(
            local.take(std::slice::from_ref(&pair), None),
            Outcome::Refused { .. }
        ));
    }
}
