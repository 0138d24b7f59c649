//! The shared tier: identity snapshots in Redis (`session:{sid}`, `apikey_hash:{sha256}`)
//! with a TTL of one access-token lifetime, and the invalidation channel every replica
//! listens on. Every call has a short timeout; a slow or absent Redis is a cache miss, never
//! a refusal. Holds no policy.
//!
//! Fills are guarded against racing revocations: a revocation bumps `<key>:gen` before it
//! deletes `<key>`, and a fill only writes if `<key>:gen` still has the value the loader saw
//! before it read the store (one Lua script, atomic in Redis).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use super::IdentityCache;
use crate::config::RedisConfig;
use crate::identity::Role;
use crate::metrics::{Metrics, RedisOutcome};

/// How long a revocation may take to reach Redis before it is retried in the background.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a revocation waits for every subscribed replica to confirm it evicted.
const ACK_WAIT: Duration = Duration::from_millis(250);

/// An invalidation as published: which principals, and where to confirm.
#[derive(Debug, Serialize, Deserialize)]
struct Invalidation {
    id: String,
    principals: Vec<String>,
}
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// What the shared tier remembers about a session or API key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// Session id or API-key id.
    pub principal: String,
    pub user_id: String,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    pub revoked: bool,
    /// Unix seconds: the session's or key's expiry.
    pub expires_at: Option<i64>,
    /// Unix seconds of the key's last recorded use.
    #[serde(default)]
    pub last_used: Option<i64>,
}

/// The generation of a key as seen before the store was read.
#[derive(Debug, Clone)]
pub struct Guard(String);

pub enum Lookup {
    Hit(Snapshot),
    Miss(Guard),
    /// Redis did not answer in time (or is not connected): go to the store, fill nothing.
    Unavailable,
}

pub struct RedisTier {
    client: redis::Client,
    conn: RwLock<Option<ConnectionManager>>,
    prefix: String,
    channel: String,
    timeout: Duration,
    ttl_secs: u64,
    guarded_set: redis::Script,
    metrics: Arc<Metrics>,
}

impl RedisTier {
    pub fn new(
        cfg: &RedisConfig,
        ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<RedisTier>, redis::RedisError> {
        Ok(Arc::new(RedisTier {
            client: redis::Client::open(cfg.url.expose())?,
            conn: RwLock::new(None),
            prefix: cfg.key_prefix.clone(),
            channel: cfg.channel.clone(),
            timeout: cfg.timeout,
            ttl_secs: ttl.as_secs().max(1),
            guarded_set: redis::Script::new(
                r"local g = redis.call('GET', KEYS[2])
                  if g == false then g = '' end
                  if g == ARGV[2] then
                    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
                    return 1
                  end
                  return 0",
            ),
            metrics,
        }))
    }

    pub fn session_key(&self, session_id: &str) -> String {
        format!("{}session:{session_id}", self.prefix)
    }

    pub fn api_key_key(&self, hash_hex: &str) -> String {
        format!("{}apikey_hash:{hash_hex}", self.prefix)
    }

    fn handle(&self) -> Option<ConnectionManager> {
        self.conn.read().ok().and_then(|c| c.clone())
    }

    /// The connection while Redis is connected, for the other users of the shared tier
    /// (`throttle`); `None` until it is.
    pub fn connection(&self) -> Option<ConnectionManager> {
        self.handle()
    }

    /// `key` under the configured prefix.
    pub fn prefixed(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// How long one call may take before it counts as unanswered.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Connects in the background (Portcullis starts without Redis) and keeps the
    /// invalidation subscription alive, flushing `cache` whenever it had to resubscribe.
    pub fn start(self: &Arc<Self>, cache: Arc<IdentityCache>) {
        let tier = self.clone();
        tokio::spawn(async move { tier.connect().await });
        let tier = self.clone();
        tokio::spawn(async move { tier.subscribe(cache).await });
    }

    async fn connect(&self) {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_number_of_retries(2)
            .set_max_delay(1000);
        loop {
            match self
                .client
                .get_connection_manager_with_config(config.clone())
                .await
            {
                Ok(manager) => {
                    if let Ok(mut slot) = self.conn.write() {
                        *slot = Some(manager);
                    }
                    tracing::info!("connected to Redis");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Redis unreachable; identities resolve from the store until it is back");
                    tokio::time::sleep(RECONNECT_DELAY * 2).await;
                }
            }
        }
    }

    async fn subscribe(&self, cache: Arc<IdentityCache>) {
        let mut first = true;
        loop {
            let pubsub =
                tokio::time::timeout(Duration::from_secs(2), self.client.get_async_pubsub()).await;
            if let Ok(Ok(mut pubsub)) = pubsub
                && pubsub.subscribe(&self.channel).await.is_ok()
            {
                self.metrics.set_redis_subscribed(true);
                if !first {
                    // Messages sent while we were away are lost: nothing cached can be trusted.
                    cache.evict_all();
                    self.metrics.record_redis_resubscribe();
                    tracing::warn!(
                        "resubscribed to Redis invalidations; flushed the in-process cache"
                    );
                }
                first = false;
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    match msg
                        .get_payload::<String>()
                        .map(|p| serde_json::from_str::<Invalidation>(&p))
                    {
                        Ok(Ok(inv)) => {
                            cache.evict(&inv.principals);
                            self.acknowledge(&inv.id).await;
                        }
                        _ => tracing::warn!("ignored a malformed invalidation message"),
                    }
                }
                self.metrics.set_redis_subscribed(false);
                tracing::warn!("lost the Redis invalidation subscription; reconnecting");
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    }

    /// Whether Redis answers a `PING` within `within` (for `/readyz`).
    pub async fn ping(&self, within: Duration) -> bool {
        let Some(mut conn) = self.handle() else {
            return false;
        };
        let ping = redis::cmd("PING");
        let call = ping.query_async::<String>(&mut conn);
        matches!(tokio::time::timeout(within, call).await, Ok(Ok(_)))
    }

    /// Reads a snapshot and its generation in one round trip.
    pub async fn lookup(&self, key: &str) -> Lookup {
        let Some(mut conn) = self.handle() else {
            self.metrics.record_redis(RedisOutcome::Error);
            return Lookup::Unavailable;
        };
        let gen_key = format!("{key}:gen");
        let keys = [key, gen_key.as_str()];
        let call = conn.mget::<_, (Option<String>, Option<String>)>(&keys);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok((Some(value), generation))) => match serde_json::from_str(&value) {
                Ok(snapshot) => {
                    self.metrics.record_redis(RedisOutcome::Hit);
                    Lookup::Hit(snapshot)
                }
                Err(_) => Lookup::Miss(Guard(generation.unwrap_or_default())),
            },
            Ok(Ok((None, generation))) => {
                self.metrics.record_redis(RedisOutcome::Miss);
                Lookup::Miss(Guard(generation.unwrap_or_default()))
            }
            Ok(Err(e)) => {
                self.metrics.record_redis(RedisOutcome::Error);
                tracing::debug!(error = %e, "Redis read failed");
                Lookup::Unavailable
            }
            Err(_) => {
                self.metrics.record_redis(RedisOutcome::Timeout);
                Lookup::Unavailable
            }
        }
    }

    /// Stores a snapshot unless the key was invalidated since `guard` was read.
    pub async fn fill(&self, key: &str, snapshot: &Snapshot, guard: Guard) {
        let (Some(mut conn), Ok(value)) = (self.handle(), serde_json::to_string(snapshot)) else {
            return;
        };
        let mut invocation = self.guarded_set.key(key);
        invocation
            .key(format!("{key}:gen"))
            .arg(value)
            .arg(guard.0)
            .arg(self.ttl_secs);
        let call = invocation.invoke_async::<i64>(&mut conn);
        if let Ok(Err(e)) = tokio::time::timeout(self.timeout, call).await {
            tracing::debug!(error = %e, "Redis fill failed");
        }
    }

    /// Deletes the given snapshot keys (bumping their generations first) and tells every
    /// replica to evict `principals`. Retries in the background if Redis is unreachable.
    pub async fn invalidate(self: &Arc<Self>, keys: Vec<String>, principals: Vec<String>) {
        if self.try_invalidate(&keys, &principals).await {
            return;
        }
        tracing::error!("could not publish a revocation to Redis; retrying in the background");
        let tier = self.clone();
        tokio::spawn(async move {
            for attempt in 0..5u32 {
                tokio::time::sleep(RECONNECT_DELAY * 2u32.pow(attempt)).await;
                if tier.try_invalidate(&keys, &principals).await {
                    return;
                }
            }
            tracing::error!("gave up publishing a revocation; other replicas rely on cache.ttl");
        });
    }

    fn ack_key(&self, id: &str) -> String {
        format!("{}ack:{id}", self.prefix)
    }

    /// Tells the publisher this replica has evicted.
    async fn acknowledge(&self, id: &str) {
        let Some(mut conn) = self.handle() else {
            return;
        };
        let key = self.ack_key(id);
        let mut pipe = redis::pipe();
        pipe.incr(&key, 1).ignore().expire(&key, 60).ignore();
        let _ = tokio::time::timeout(WRITE_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
    }

    /// Waits until `expected` replicas confirmed invalidation `id`, for at most `ACK_WAIT`.
    /// A replica that does not answer in time is logged; its cache is bounded by `cache.ttl`
    /// and flushed when it resubscribes.
    async fn await_acks(&self, conn: &mut ConnectionManager, id: &str, expected: i64) {
        let key = self.ack_key(id);
        let deadline = tokio::time::Instant::now() + ACK_WAIT;
        loop {
            let seen = tokio::time::timeout(
                self.timeout.max(Duration::from_millis(50)),
                conn.get::<_, Option<i64>>(&key),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .unwrap_or(0);
            if seen >= expected {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    confirmed = seen,
                    expected,
                    "not every replica confirmed a revocation in time"
                );
                return;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }

    async fn try_invalidate(&self, keys: &[String], principals: &[String]) -> bool {
        let Some(mut conn) = self.handle() else {
            return false;
        };
        let id = crate::secret::random_hex(12);
        let message = Invalidation {
            id: id.clone(),
            principals: principals.to_vec(),
        };
        let Ok(payload) = serde_json::to_string(&message) else {
            return false;
        };
        let gen_ttl = i64::try_from(self.ttl_secs * 2 + 60).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in keys {
            let gen_key = format!("{key}:gen");
            pipe.incr(&gen_key, 1).ignore();
            pipe.expire(&gen_key, gen_ttl).ignore();
            pipe.del(key).ignore();
        }
        pipe.publish(&self.channel, payload);
        match tokio::time::timeout(WRITE_TIMEOUT, pipe.query_async::<(i64,)>(&mut conn)).await {
            Ok(Ok((receivers,))) => {
                // Every subscribed replica (this one included) got the message; wait until
                // they have applied it, so the caller's next request anywhere is refused.
                self.await_acks(&mut conn, &id, receivers).await;
                true
            }
            _ => false,
        }
    }
}
