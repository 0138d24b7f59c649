//! The registry in Prometheus's text exposition format, for the operator listener.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

impl Metrics {
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
        let row = |out: &mut String, route: &str, counters: &RouteCounters| -> std::fmt::Result {
            for (class, c) in counters.iter().enumerate() {
                writeln!(
                    out,
                    "portcullis_requests_total{{route=\"{route}\",status=\"{}xx\"}} {}",
                    class + 1,
                    c.load(Ordering::Relaxed)
                )?;
            }
            Ok(())
        };
        // A snapshot of the registry, so the lock is not held while formatting.
        let routes: Vec<(String, Arc<RouteCounters>)> = self
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (name, counters) in &routes {
            row(out, &escape_label(name), counters)?;
        }
        let unrouted = ["(account)", "(unmatched)", "(rejected)"];
        for (name, counters) in unrouted.iter().zip(&self.unrouted) {
            row(out, name, counters)?;
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
        labelled(
            out,
            "portcullis_throttled_total",
            "Requests refused with 429, by the limiter that refused them.",
            "limiter",
            Limiter::ALL,
            Limiter::label,
            &self.throttled,
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
            "portcullis_throttle_fallbacks_total",
            "counter",
            "Throttle decisions this process made alone because Redis did not answer.",
            &self.throttle_fallbacks,
        )?;
        scalar(
            out,
            "portcullis_password_hash_rejections_total",
            "counter",
            "Password hashing requests refused because the queue was full.",
            &self.hash_rejections,
        )?;
        writeln!(
            out,
            "# HELP portcullis_config_reloads_total Configuration reloads, applied or refused."
        )?;
        writeln!(out, "# TYPE portcullis_config_reloads_total counter")?;
        for (result, c) in ["applied", "refused"].iter().zip(&self.reloads) {
            let n = c.load(Ordering::Relaxed);
            writeln!(
                out,
                "portcullis_config_reloads_total{{result=\"{result}\"}} {n}"
            )?;
        }
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
