//! Configuration: the TOML file plus `PORTCULLIS_SECTION__KEY` environment overrides, turned
//! into typed, validated values. Owns defaults and error messages that name the key. Never
//! binds a port or opens a file other than the ones a key names.

mod accounts;
mod env;
mod identity_headers;
mod raw;
mod route_rules;
mod tokens;
mod validate;
mod values;

pub use values::sqlite_path;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Method};
use ipnet::IpNet;
use jsonwebtoken::Algorithm;

use crate::identity::Role;
use crate::secret::Secret;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_TUNNEL_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// `server.max_connections` may not exceed this.
pub const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 100 * 1024 * 1024;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_DATABASE_URL: &str = "sqlite://portcullis-data/portcullis.db";
pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = 8;
pub const DEFAULT_DB_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(5);
pub const DEFAULT_REDIS_CHANNEL: &str = "portcullis:invalidate";
pub const DEFAULT_CACHE_STALE_BOUND: Duration = Duration::from_secs(120);
pub const DEFAULT_ISSUER: &str = "portcullis";
pub const DEFAULT_AUDIENCE: &str = "portcullis";
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
pub const DEFAULT_REFRESH_REUSE_GRACE: Duration = Duration::from_secs(5);
pub const DEFAULT_SESSION_MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
pub const DEFAULT_MOUNT: &str = "/api/v1/auth";
pub const DEFAULT_PASSWORD_MIN: usize = 8;
pub const DEFAULT_PASSWORD_MAX: usize = 128;
pub const DEFAULT_ACCOUNT_BODY_LIMIT: usize = 16 * 1024;
pub const DEFAULT_ADMIN_PAGE_SIZE_MAX: u32 = 200;
pub const DEFAULT_ARGON2_MEMORY_KIB: u32 = 19_456;
pub const DEFAULT_ARGON2_ITERATIONS: u32 = 2;
pub const DEFAULT_ARGON2_PARALLELISM: u32 = 1;
pub const DEFAULT_HASH_QUEUE: usize = 64;
pub const DEFAULT_CACHE_MAX_ENTRIES: u64 = 100_000;
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
pub const DEFAULT_UNKNOWN_KEY_TTL: Duration = Duration::from_secs(30);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// A configuration error. The message always starts with the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub tokens: TokenConfig,
    pub accounts: AccountsConfig,
    pub hashing: HashingConfig,
    pub cookies: CookieConfig,
    pub csrf: CsrfConfig,
    pub identity_headers: IdentityHeaderNames,
    pub cache: CacheConfig,
    pub log: LogConfig,
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Runtime worker threads; 1 selects tokio's single-threaded scheduler.
    pub worker_threads: usize,
    pub admin_listen: Option<SocketAddr>,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// The longest pause between request-body bytes (408 after it).
    pub body_read_timeout: Duration,
    /// The longest a write to the client may wait for it to take bytes.
    pub send_timeout: Duration,
    /// The largest request head (request line and header fields), in bytes; 431 beyond it.
    pub max_header_bytes: usize,
    /// A connection with no request in progress for this long is closed (HTTP/1.1
    /// keep-alive and HTTP/2 alike).
    pub idle_timeout: Duration,
    /// HTTP/2: PING a connection this often, and close it if the PING is not answered
    /// within `http2_keepalive_timeout`.
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
    /// A WebSocket tunnel with no bytes either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// A WebSocket tunnel is closed after this long, whatever its traffic.
    pub tunnel_max_lifetime: Duration,
    pub shutdown_grace: Duration,
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub database_url: String,
    pub backend: Backend,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// PostgreSQL `statement_timeout` for every statement.
    pub statement_timeout: Duration,
    pub migrate_on_start: bool,
    pub redis: Option<RedisConfig>,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Secret,
    /// Prepended to every key and to the channel name.
    pub key_prefix: String,
    /// Per-call timeout; a slower Redis is treated as a miss.
    pub timeout: Duration,
    pub channel: String,
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub algorithm: Algorithm,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub leeway: Duration,
    pub refresh_reuse_grace: Duration,
    /// A session ends this long after it started, however often it is refreshed.
    pub session_max_lifetime: Duration,
    /// Access tokens longer than this are refused before any parsing.
    pub max_token_bytes: usize,
    pub signing_key_path: Option<PathBuf>,
    pub verification_key_paths: Vec<PathBuf>,
    pub hmac_secret: Option<Secret>,
    /// Where generated keys are kept when no `signing_key_path` is given.
    pub key_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
    pub require_mixed: bool,
}

#[derive(Debug, Clone)]
pub struct AccountsConfig {
    pub mount: String,
    pub allow_registration: bool,
    pub password: PasswordPolicy,
    pub max_body_bytes: usize,
    pub admin_page_size_max: u32,
}

#[derive(Debug, Clone)]
pub struct HashingConfig {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub max_concurrent: usize,
    pub max_queued: usize,
    /// Run the hashing threads `SCHED_IDLE`.
    pub low_priority: bool,
}

#[derive(Debug, Clone)]
pub struct CookieConfig {
    pub secure: bool,
    pub domain: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CsrfConfig {
    /// Lower-cased `scheme://host[:port]` origins allowed to send cookie-authenticated unsafe
    /// requests, besides the request's own origin.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct IdentityHeaderNames {
    pub user_id: HeaderName,
    pub email: HeaderName,
    pub role: HeaderName,
    pub auth_method: HeaderName,
    pub key_id: HeaderName,
    /// More client headers to remove on every route: lower-case names, or prefixes ending
    /// in `*`.
    pub also_remove: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub max_entries: u64,
    pub ttl: Duration,
    /// How much longer than `ttl` a cached identity may be served while the store is down.
    pub stale_bound: Duration,
    /// How long a well-formed API key the store does not know is refused without asking it.
    pub unknown_key_ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    pub access_log: bool,
}

/// Who may use a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Anyone; credentials are ignored and never injected.
    Public,
    /// Anyone; a valid credential's identity is injected, an invalid one is refused.
    Optional,
    /// Any valid credential.
    Authenticated,
    /// A valid credential whose role is in the list.
    Roles(Vec<Role>),
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Path prefix prepended to every forwarded path; empty when the upstream URL has none.
    pub base_path: String,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub prefix: String,
    pub methods: Option<Vec<Method>>,
    pub host: Option<String>,
    pub upstream: UpstreamConfig,
    pub policy: Policy,
    pub strip_prefix: bool,
    /// Match the prefix's letters exactly (default: ASCII case-insensitively).
    pub case_sensitive: bool,
    pub forward_credentials: bool,
    pub preserve_host: bool,
    pub websocket: bool,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// The largest request body forwarded; a larger declared length is 413 before any body
    /// byte is read, a larger streamed body is cut off with 413.
    pub max_body_bytes: u64,
}

impl Config {
    /// What serving needs beyond a valid file: at least one route. (Commands that only
    /// touch the database, such as `migrate` or `user create`, do not need routes.)
    pub fn check_serving(&self) -> Result<(), ConfigError> {
        if self.routes.is_empty() {
            return Err(ConfigError::invalid(
                "routes",
                "at least one [[routes]] entry is required: without one, every request \
                 outside the account API is refused",
            ));
        }
        Ok(())
    }

    /// Reads `path` and applies overrides from `env` (pass `std::env::vars()` in production,
    /// a literal list in tests).
    pub fn load_file<I>(path: &std::path::Path, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml(&text, env)
    }

    /// Parses TOML text, applies environment overrides, and validates.
    pub fn from_toml<I>(text: &str, env: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut value: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax(e.to_string()))?;
        env::apply_overrides(&mut value, env)?;
        let raw: raw::RawConfig = serde_path_to_error::deserialize(toml::Value::Table(value))
            .map_err(|e| {
                let message = e.inner().to_string();
                let first_line = message.lines().next().unwrap_or_default().to_string();
                ConfigError::invalid(e.path().to_string(), first_line)
            })?;
        validate::validate(raw)
    }
}
