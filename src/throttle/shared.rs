//! GCRA in Redis, so every replica counts against the same limits: one Lua script decides
//! a multi-key take atomically (check every key, then take from all or none) on Redis's
//! own clock, so neither a race between replicas nor their clock skew lets an extra event
//! through. Another gives events back and remembers a known address.

use std::sync::LazyLock;
use std::time::Duration;

use super::{Outcome, Slot};
use crate::cache::shared::RedisTier;

/// KEYS: the slots' keys, then (optionally) the known-address marker.
/// ARGV: the slot count, then per slot its interval (ms) and burst.
/// Returns `{0, skipped}` when taken, `{index, wait_ms}` (1-based) when refused.
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local t = redis.call('TIME')
          local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          local n = tonumber(ARGV[1])
          local counted = n
          local skipped = 0
          if #KEYS > n and redis.call('EXISTS', KEYS[n + 1]) == 1 then
            counted = n - 1
            skipped = 1
          end
          local next = {}
          local worst, wait = 0, 0
          for i = 1, counted do
            local interval = tonumber(ARGV[2 * i])
            local burst = tonumber(ARGV[2 * i + 1])
            local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
            if tat < now then tat = now end
            local n2 = tat + interval
            local over = n2 - now - interval * burst
            if over > wait then worst, wait = i, over end
            next[i] = n2
          end
          if worst > 0 then return {worst, wait} end
          for i = 1, counted do
            redis.call('SET', KEYS[i], string.format('%d', next[i]), 'PX', next[i] - now)
          end
          return {0, skipped}",
    )
});

/// KEYS: the slots' keys, then (optionally) the known-address marker to set.
/// ARGV: the marker's lifetime in seconds (0: none), then per slot its interval (ms).
static REFUND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"local t = redis.call('TIME')
          local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          local known_ttl = tonumber(ARGV[1])
          local n = #KEYS
          if known_ttl > 0 then
            redis.call('SET', KEYS[n], '1', 'EX', known_ttl)
            n = n - 1
          end
          for i = 1, n do
            local tat = tonumber(redis.call('GET', KEYS[i]) or '')
            if tat then
              local back = tat - tonumber(ARGV[i + 1])
              if back <= now then
                redis.call('DEL', KEYS[i])
              else
                redis.call('SET', KEYS[i], string.format('%d', back), 'PX', back - now)
              end
            end
          end
          return 1",
    )
});

/// The shortest wait for a script: the identity lookups' timeout is tuned for the request
/// path (milliseconds); a throttled path is about to hash a password or write a row.
const AT_LEAST: Duration = Duration::from_millis(50);

fn timeout(tier: &RedisTier) -> Duration {
    tier.timeout().max(AT_LEAST)
}

/// Takes from every slot or none, in Redis. `None`: Redis did not answer in time.
pub(super) async fn take(tier: &RedisTier, slots: &[Slot], known: Option<&str>) -> Option<Outcome> {
    let mut conn = tier.connection()?;
    let mut call = TAKE.prepare_invoke();
    for slot in slots {
        call.key(tier.prefixed(&slot.key));
    }
    if let Some(k) = known {
        call.key(tier.prefixed(k));
    }
    call.arg(slots.len());
    for slot in slots {
        call.arg(slot.interval_ms).arg(slot.burst);
    }
    let reply: (u64, u64) = tokio::time::timeout(timeout(tier), call.invoke_async(&mut conn))
        .await
        .ok()?
        .inspect_err(|e| tracing::warn!(error = %e, "throttle: Redis refused the script"))
        .ok()?;
    Some(match reply {
        (0, skipped) => Outcome::Taken {
            skipped_last: skipped == 1,
        },
        (index, wait_ms) => Outcome::Refused {
            index: usize::try_from(index - 1).unwrap_or(0),
            wait_ms,
        },
    })
}

/// Gives one event back to each slot and sets `known` (for `known_secs`) when given.
/// `false`: Redis did not answer in time.
pub(super) async fn refund(tier: &RedisTier, slots: &[Slot], known: Option<(&str, u64)>) -> bool {
    let Some(mut conn) = tier.connection() else {
        return false;
    };
    let mut call = REFUND.prepare_invoke();
    for slot in slots {
        call.key(tier.prefixed(&slot.key));
    }
    call.arg(known.map_or(0, |(_, secs)| secs.max(1)));
    if let Some((k, _)) = known {
        call.key(tier.prefixed(k));
    }
    for slot in slots {
        call.arg(slot.interval_ms);
    }
    matches!(
        tokio::time::timeout(timeout(tier), call.invoke_async::<i64>(&mut conn)).await,
        Ok(Ok(_))
    )
}
