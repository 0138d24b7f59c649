//! Metrics: a lock-free registry of counters, gauges and a latency histogram, rendered in the
//! Prometheus text format on the operator listener. Each labelled counter is an enum whose
//! variants name their labels (`labels!`), so a label cannot drift from its counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An enum whose variants are metric labels: `ALL` in declaration order (the order of the
/// counters), `COUNT`, and `label()`.
macro_rules! labels {
    ($(#[$meta:meta])* pub enum $name:ident { $($variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

labels! {
    /// A throttle limiter (`throttle`), for `portcullis_throttled_total`.
    pub enum Limiter {
        LoginAccount => "login_account",
        LoginAddress => "login_address",
        LoginPair => "login_pair",
        Register => "register",
        Refresh => "refresh",
        ChangePassword => "change_password",
        ApiKeyCreate => "api_key_create",
        ApiKeyFailure => "api_key_failure",
    }
}

/// A route's request counters, by status class. Each route of the live configuration holds
/// its own; they are kept by name, so a reload neither resets nor loses them.
pub type RouteCounters = [AtomicU64; STATUS_CLASSES];

/// Counters shared by every request. Updates are relaxed atomic adds; nothing on the
/// request path locks (the route registry's lock is taken at start, reload and render).
pub struct Metrics {
    /// Every route name ever configured, with its counters, in order of appearance.
    routes: Mutex<Vec<(String, Arc<RouteCounters>)>>,
    /// `account`, `unmatched`, `rejected`.
    unrouted: [RouteCounters; 3],
    /// Configuration reloads: applied, refused.
    reloads: [AtomicU64; 2],
    auth: [AtomicU64; AuthOutcome::COUNT],
    cache: [AtomicU64; CacheLookup::COUNT],
    upstream_failures: [AtomicU64; UpstreamFailure::COUNT],
    hash_rejections: AtomicU64,
    throttled: [AtomicU64; Limiter::COUNT],
    throttle_fallbacks: AtomicU64,
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
    /// An empty registry, with request counters for these routes.
    pub fn new(route_names: Vec<String>) -> Metrics {
        let routes = route_names
            .into_iter()
            .map(|name| (name, Arc::default()))
            .collect();
        Metrics {
            routes: Mutex::new(routes),
            unrouted: Default::default(),
            reloads: Default::default(),
            auth: Default::default(),
            cache: Default::default(),
            upstream_failures: Default::default(),
            hash_rejections: AtomicU64::new(0),
            throttled: Default::default(),
            throttle_fallbacks: AtomicU64::new(0),
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

    /// The counters of the route named `name`: the same ones for as long as the process
    /// lives, whatever reloads come and go.
    pub fn route_counters(&self, name: &str) -> Arc<RouteCounters> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = routes.iter().find(|(n, _)| n == name) {
            return c.clone();
        }
        let counters: Arc<RouteCounters> = Arc::default();
        routes.push((name.to_owned(), counters.clone()));
        counters
    }

    /// Counts a finished request and its latency; `route` holds the counters of the route
    /// a `RouteSlot::Route` request went to.
    pub fn record_request(
        &self,
        slot: RouteSlot,
        route: Option<&RouteCounters>,
        status: u16,
        elapsed: Duration,
    ) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let counters = match slot {
            RouteSlot::Route(_) => route,
            RouteSlot::Account => Some(&self.unrouted[0]),
            RouteSlot::Unmatched => Some(&self.unrouted[1]),
            RouteSlot::Rejected => Some(&self.unrouted[2]),
        };
        if let Some(counters) = counters {
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

    /// Counts a request refused by `limiter` (429).
    pub fn record_throttled(&self, limiter: Limiter) {
        self.throttled[limiter as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A throttle decision made by this process alone because Redis did not answer.
    pub fn record_throttle_fallback(&self) {
        self.throttle_fallbacks.fetch_add(1, Ordering::Relaxed);
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

    /// Counts a configuration reload: applied, or refused (the last good one stays).
    pub fn record_reload(&self, applied: bool) {
        self.reloads[usize::from(!applied)].fetch_add(1, Ordering::Relaxed);
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
}

mod render;

#[cfg(test)]
mod tests;
