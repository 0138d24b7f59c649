//! The default of every configuration key that has one, by name.

use std::time::Duration;

pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub(crate) const DEFAULT_TUNNEL_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// `server.max_connections` may not exceed this.
pub(crate) const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;
pub(crate) const DEFAULT_MAX_BODY_BYTES: u64 = 100 * 1024 * 1024;
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_DATABASE_URL: &str = "sqlite://portcullis-data/portcullis.db";
pub(crate) const DEFAULT_DB_MAX_CONNECTIONS: u32 = 8;
pub(crate) const DEFAULT_DB_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
pub(crate) const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(5);
pub(crate) const DEFAULT_REDIS_CHANNEL: &str = "portcullis:invalidate";
pub(crate) const DEFAULT_CACHE_STALE_BOUND: Duration = Duration::from_secs(120);
pub(crate) const DEFAULT_ISSUER: &str = "portcullis";
pub(crate) const DEFAULT_AUDIENCE: &str = "portcullis";
pub(crate) const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
pub(crate) const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
pub(crate) const DEFAULT_LEEWAY: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
pub(crate) const DEFAULT_REFRESH_REUSE_GRACE: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_SESSION_MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
pub(crate) const DEFAULT_MOUNT: &str = "/api/v1/auth";
pub(crate) const DEFAULT_PASSWORD_MIN: usize = 8;
pub(crate) const DEFAULT_PASSWORD_MAX: usize = 128;
pub(crate) const DEFAULT_ACCOUNT_BODY_LIMIT: usize = 16 * 1024;
pub(crate) const DEFAULT_ADMIN_PAGE_SIZE_MAX: u32 = 200;
pub(crate) const DEFAULT_MAX_API_KEYS_PER_USER: u32 = 100;
pub(crate) const DEFAULT_ARGON2_MEMORY_KIB: u32 = 19_456;
pub(crate) const DEFAULT_ARGON2_ITERATIONS: u32 = 2;
pub(crate) const DEFAULT_ARGON2_PARALLELISM: u32 = 1;
pub(crate) const DEFAULT_HASH_QUEUE: usize = 64;
pub(crate) const DEFAULT_CACHE_MAX_ENTRIES: u64 = 100_000;
pub(crate) const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
pub(crate) const DEFAULT_UNKNOWN_KEY_TTL: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
