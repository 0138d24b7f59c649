//! Metrics: a lock-free registry of counters, gauges and a latency histogram, rendered in the
//! Prometheus text format on the operator listener. Each labelled counter is an enum whose
//! variants name their labels (`labels!`), so a label cannot drift from its counter.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// An enum whose variants are metric labels: `ALL` in declaration order (the order of the
/// counters), `COUNT`, and `label()`.
macro_rules! labels {
    ($(#[$meta:meta])* pub enum $name:ident { $($variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $(
                #[doc = concat!("Counted under `", $label, "`.")]
                $variant
            ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// How many values there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The value's metric label.
            pub fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }
        }
    };
}

const STATUS_CLASSES: usize = 5;
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

labels! {
    /// Outcome of authenticating a request, for `portcullis_auth_total`.
    pub enum AuthOutcome {
        Ok => "ok",
        Missing => "missing",
        Invalid => "invalid",
        Forbidden => "forbidden",
        Unavailable => "unavailable",
    }
}

labels! {
    /// A shared-tier (Redis) lookup, for `portcullis_redis_lookups_total`.
    pub enum RedisOutcome {
        Hit => "hit",
        Miss => "miss",
        Error => "error",
        Timeout => "timeout",
    }
}

labels! {
    /// An in-process identity-cache lookup, for `portcullis_identity_cache_total`.
    pub enum CacheLookup {
        Hit => "hit",
        Miss => "miss",
    }
}

labels! {
    /// Why an upstream request failed, for `portcullis_upstream_failures_total`.
    pub enum UpstreamFailure {
        Connect => "connect",
        Timeout => "timeout",
        Io => "io",
        Closed => "closed",
        Malformed => "malformed",
        UnaskedSwitch => "unasked_switch",
        Target => "target",
    }
}

/// Counters shared by every request. Updates are relaxed atomic adds; nothing locks.
pub struct Metrics {
    /// One slot per configured route, then `account`, `unmatched`, `rejected`.
    route_names: Vec<String>,
    requests: Vec<[AtomicU64; STATUS_CLASSES]>,
    auth: [AtomicU64; AuthOutcome::COUNT],
    cache: [AtomicU64; CacheLookup::COUNT],
    upstream_failures: [AtomicU64; UpstreamFailure::COUNT],
    hash_rejections: AtomicU64,
    connections_open: AtomicU64,
    redis: [AtomicU64; RedisOutcome::COUNT],
    redis_subscribed: AtomicU64,
    redis_resubscribes: AtomicU64,
    stale_served: AtomicU64,
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
}

/// Where a request ended up, for the per-route counters.
#[derive(Debug, Clone, Copy)]
pub enum RouteSlot {
    /// The configured route with this index.
    Route(usize),
    /// The account API (and the JWKS document).
    Account,
    /// No route matched (404).
    Unmatched,
    /// Refused before routing (bad path, host or framing).
    Rejected,
}

impl Metrics {
    /// An empty registry with a request counter per route.
    pub fn new(route_names: Vec<String>) -> Metrics {
        let slots = route_names.len() + 3;
        Metrics {
            route_names,
            requests: (0..slots).map(|_| Default::default()).collect(),
            auth: Default::default(),
            cache: Default::default(),
            upstream_failures: Default::default(),
            hash_rejections: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            redis: Default::default(),
            redis_subscribed: AtomicU64::new(0),
            redis_resubscribes: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
            duration_buckets: Default::default(),
            duration_count: AtomicU64::new(0),
            duration_sum_micros: AtomicU64::new(0),
        }
    }

    fn slot_index(&self, slot: RouteSlot) -> usize {
        let n = self.route_names.len();
        match slot {
            RouteSlot::Route(i) => i.min(n),
            RouteSlot::Account => n,
            RouteSlot::Unmatched => n + 1,
            RouteSlot::Rejected => n + 2,
        }
    }

    /// Counts a finished request and its latency.
    pub fn record_request(&self, slot: RouteSlot, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        if let Some(counters) = self.requests.get(self.slot_index(slot)) {
            counters[class].fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.duration_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.duration_sum_micros
            .fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts an authentication outcome on a proxied route.
    pub fn record_auth(&self, outcome: AuthOutcome) {
        self.auth[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an identity-cache lookup.
    pub fn record_cache(&self, hit: bool) {
        let lookup = if hit {
            CacheLookup::Hit
        } else {
            CacheLookup::Miss
        };
        self.cache[lookup as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an upstream failure.
    pub fn record_upstream_failure(&self, kind: UpstreamFailure) {
        self.upstream_failures[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a hash request refused because the queue was full.
    pub fn record_hash_rejection(&self) {
        self.hash_rejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a Redis lookup.
    pub fn record_redis(&self, outcome: RedisOutcome) {
        self.redis[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Sets whether the invalidation subscription is up.
    pub fn set_redis_subscribed(&self, up: bool) {
        self.redis_subscribed
            .store(u64::from(up), Ordering::Relaxed);
    }

    /// Counts a re-established invalidation subscription.
    pub fn record_redis_resubscribe(&self) {
        self.redis_resubscribes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an identity served stale because the store was down.
    pub fn record_stale_served(&self) {
        self.stale_served.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the invalidation subscription is up.
    pub fn redis_subscribed(&self) -> bool {
        self.redis_subscribed.load(Ordering::Relaxed) == 1
    }

    /// Re-established subscriptions so far.
    pub fn redis_resubscribes(&self) -> u64 {
        self.redis_resubscribes.load(Ordering::Relaxed)
    }

    /// Stale identities served so far.
    pub fn stale_served(&self) -> u64 {
        self.stale_served.load(Ordering::Relaxed)
    }

    /// Redis hits so far.
    pub fn redis_hits(&self) -> u64 {
        self.redis[RedisOutcome::Hit as usize].load(Ordering::Relaxed)
    }

    /// Counts an accepted connection in the open-connections gauge.
    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a closed connection out of the gauge.
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Client connections open now (tunnels included).
    pub fn connections_open(&self) -> u64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// Identity-cache hits so far.
    pub fn cache_hits(&self) -> u64 {
        self.cache[CacheLookup::Hit as usize].load(Ordering::Relaxed)
    }

    /// Identity-cache misses so far.
    pub fn cache_misses(&self) -> u64 {
        self.cache[CacheLookup::Miss as usize].load(Ordering::Relaxed)
    }

    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let _ = self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP portcullis_requests_total Requests by route and status class."
        )?;
        writeln!(out, "# TYPE portcullis_requests_total counter")?;
        let n = self.route_names.len();
        for (i, counters) in self.requests.iter().enumerate() {
            let route = match i {
                _ if i < n => escape_label(&self.route_names[i]),
                _ if i == n => "(account)".to_string(),
                _ if i == n + 1 => "(unmatched)".to_string(),
                _ => "(rejected)".to_string(),
            };
            for (class, c) in counters.iter().enumerate() {
                writeln!(
                    out,
                    "portcullis_requests_total{{route=\"{route}\",status=\"{}xx\"}} {}",
                    class + 1,
                    c.load(Ordering::Relaxed)
                )?;
            }
        }
        labelled(
            out,
            "portcullis_auth_total",
            "Authentication outcomes on proxied routes.",
            "result",
            AuthOutcome::ALL,
            AuthOutcome::label,
            &self.auth,
        )?;
        labelled(
            out,
            "portcullis_identity_cache_total",
            "In-process identity cache lookups.",
            "result",
            CacheLookup::ALL,
            CacheLookup::label,
            &self.cache,
        )?;
        labelled(
            out,
            "portcullis_upstream_failures_total",
            "Upstream requests that failed.",
            "kind",
            UpstreamFailure::ALL,
            UpstreamFailure::label,
            &self.upstream_failures,
        )?;
        labelled(
            out,
            "portcullis_redis_lookups_total",
            "Shared-tier (Redis) lookups.",
            "result",
            RedisOutcome::ALL,
            RedisOutcome::label,
            &self.redis,
        )?;
        let scalar = |out: &mut String,
                      name: &str,
                      kind: &str,
                      help: &str,
                      v: &AtomicU64|
         -> std::fmt::Result {
            writeln!(out, "# HELP {name} {help}")?;
            writeln!(out, "# TYPE {name} {kind}")?;
            writeln!(out, "{name} {}", v.load(Ordering::Relaxed))
        };
        scalar(
            out,
            "portcullis_redis_subscribed",
            "gauge",
            "Whether the Redis invalidation subscription is up.",
            &self.redis_subscribed,
        )?;
        scalar(
            out,
            "portcullis_redis_resubscribes_total",
            "counter",
            "Invalidation subscriptions re-established (each flushes the in-process cache).",
            &self.redis_resubscribes,
        )?;
        scalar(
            out,
            "portcullis_stale_identities_served_total",
            "counter",
            "Cached identities served past cache.ttl because the store was unreachable.",
            &self.stale_served,
        )?;
        scalar(
            out,
            "portcullis_password_hash_rejections_total",
            "counter",
            "Password hashing requests refused because the queue was full.",
            &self.hash_rejections,
        )?;
        scalar(
            out,
            "portcullis_connections_open",
            "gauge",
            "Client connections currently open.",
            &self.connections_open,
        )?;
        writeln!(
            out,
            "# HELP portcullis_request_duration_seconds Time from request to response headers."
        )?;
        writeln!(out, "# TYPE portcullis_request_duration_seconds histogram")?;
        let mut cumulative = 0;
        for (bound, c) in BUCKETS.iter().zip(&self.duration_buckets) {
            cumulative += c.load(Ordering::Relaxed);
            writeln!(
                out,
                "portcullis_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            )?;
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        writeln!(
            out,
            "portcullis_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        )?;
        let sum = self.duration_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        writeln!(out, "portcullis_request_duration_seconds_sum {sum}")?;
        writeln!(out, "portcullis_request_duration_seconds_count {count}")
    }
}

/// One counter per value of a `labels!` enum, in its declaration order.
fn labelled<L: Copy>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &[L],
    label_of: fn(L) -> &'static str,
    counters: &[AtomicU64],
) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} counter")?;
    for (value, c) in values.iter().zip(counters) {
        writeln!(
            out,
            "{name}{{{label}=\"{}\"}} {}",
            label_of(*value),
            c.load(Ordering::Relaxed)
        )?;
    }
    Ok(())
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
