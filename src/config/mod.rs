//! Configuration: the TOML file plus `PORTCULLIS_SECTION__KEY` environment overrides, turned
//! into typed, validated values. Owns defaults and error messages that name the key. Never
//! binds a port or opens a file other than the ones a key names.

mod accounts;
mod browser;
mod cors;
mod defaults;
mod env;
mod identity_headers;
mod raw;
mod route_rules;
mod throttle;
mod tls;
mod tokens;
mod validate;
mod values;

pub use accounts::{AccountsConfig, CookieConfig, HashingConfig, PasswordPolicy};
pub use browser::{CorsPolicy, CsrfConfig, Origins, RouteCors, SignInConfig};
#[cfg(test)]
pub(crate) use throttle::DEFAULTS as THROTTLE_DEFAULTS;
pub use throttle::{Rate, ThrottleConfig};
pub use tls::{TlsFiles, UpstreamTls};
pub use values::sqlite_path;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use ipnet::IpNet;
use jsonwebtoken::Algorithm;

use crate::identity::Role;
use crate::secret::Secret;

use defaults::*;

/// A configuration error. The message always starts with the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file's path.
        path: String,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{0}")]
    Syntax(String),
    /// A key has a value it cannot have.
    #[error("{key}: {message}")]
    Invalid {
        /// The key, as `section.key` or `routes[i].key`.
        key: String,
        /// What is wrong with its value.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`: listeners and connection bounds.
    pub server: ServerConfig,
    /// `[store]`: the database and the Redis tier.
    pub store: StoreConfig,
    /// `[tokens]`: access and refresh tokens.
    pub tokens: TokenConfig,
    /// `[accounts]`: the account API.
    pub accounts: AccountsConfig,
    /// `[password_hashing]`: argon2id parameters and the hashing queue.
    pub hashing: HashingConfig,
    /// `[cookies]`: attributes of the session cookies.
    pub cookies: CookieConfig,
    /// `[csrf]`: origins allowed to send cookie-authenticated unsafe requests (the CORS
    /// origins: one list).
    pub csrf: CsrfConfig,
    /// `[cors]`: cross-origin access to the account API, and to routes with
    /// `cors = "inherit"`. `None`: no origin is allowed.
    pub cors: Option<Arc<CorsPolicy>>,
    /// `[sign_in]`: the sign-in page under the mount.
    pub sign_in: SignInConfig,
    /// `[forward_auth]`: the verify endpoint for proxies that keep their place in front.
    /// `None`: off.
    pub forward_auth: Option<ForwardAuthConfig>,
    /// `[throttle]`: limits on failed logins and the other attempts worth guessing.
    pub throttle: ThrottleConfig,
    /// `[identity_headers]`: the names injected upstream.
    pub identity_headers: IdentityHeaderNames,
    /// `[cache]`: the in-process identity cache.
    pub cache: CacheConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[[routes]]`, in order.
    pub routes: Vec<RouteConfig>,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where client traffic is accepted.
    pub listen: SocketAddr,
    /// Runtime worker threads; 1 selects tokio's single-threaded scheduler.
    pub worker_threads: usize,
    /// The operator listener (`/healthz`, `/readyz`, `/metrics`), if any.
    pub admin_listen: Option<SocketAddr>,
    /// Concurrent client connections (tunnels included).
    pub max_connections: usize,
    /// The first bytes, and each HTTP/1.1 request head, must arrive within this of their first byte.
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
    /// How long an HTTP/2 PING may go unanswered.
    pub http2_keepalive_timeout: Duration,
    /// A WebSocket tunnel with no bytes either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// A WebSocket tunnel is closed after this long, whatever its traffic.
    pub tunnel_max_lifetime: Duration,
    /// How long open connections may finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Reload when the configuration file's contents change (besides SIGHUP).
    pub watch_config: bool,
    /// TLS on the client listener: a PEM certificate chain and key, reloaded when they
    /// change. `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// TLS on the operator listener too (the same certificate).
    pub admin_tls: bool,
}

/// The database engine a `database_url` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// `[store]`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// Which engine `database_url` names.
    pub backend: Backend,
    /// Pool size.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// PostgreSQL `statement_timeout` for every statement.
    pub statement_timeout: Duration,
    /// Apply pending migrations at start-up.
    pub migrate_on_start: bool,
    /// The shared tier, if configured.
    pub redis: Option<RedisConfig>,
}

/// The Redis part of `[store]`.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL (may carry a password).
    pub url: Secret,
    /// Prepended to every key and to the channel name.
    pub key_prefix: String,
    /// Per-call timeout; a slower Redis is treated as a miss.
    pub timeout: Duration,
    /// The invalidation channel every replica subscribes to.
    pub channel: String,
}

/// `[tokens]`.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// The one signature algorithm issued and accepted.
    pub algorithm: Algorithm,
    /// `iss` of issued tokens, required of presented ones.
    pub issuer: String,
    /// `aud` of issued tokens, required of presented ones. `None` (HS256 only, `audience =
    /// ""`): tokens are issued without `aud`, and a presented token carrying one is refused.
    pub audience: Option<String>,
    /// Lifetime of access tokens.
    pub access_ttl: Duration,
    /// Lifetime of a refresh token.
    pub refresh_ttl: Duration,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// How long after it was spent the latest refresh token may come back without ending its session.
    pub refresh_reuse_grace: Duration,
    /// A session ends this long after it started, however often it is refreshed.
    pub session_max_lifetime: Duration,
    /// Access tokens longer than this are refused before any parsing.
    pub max_token_bytes: usize,
    /// The private signing key (PEM); generated into `key_dir` when unset.
    pub signing_key_path: Option<PathBuf>,
    /// More public keys accepted for verification (key rotation).
    pub verification_key_paths: Vec<PathBuf>,
    /// The HS256 shared secret.
    pub hmac_secret: Option<Secret>,
    /// Where generated keys are kept when no `signing_key_path` is given.
    pub key_dir: PathBuf,
}

/// `[forward_auth]`, when enabled.
#[derive(Debug, Clone)]
pub struct ForwardAuthConfig {
    /// The verify endpoint (default `{mount}/verify`); Envoy's `ext_authz` appends the
    /// original path to it.
    pub path: String,
}

/// `[identity_headers]`: the names of the headers Portcullis injects.
#[derive(Debug, Clone)]
pub struct IdentityHeaderNames {
    /// Carries the user's id.
    pub user_id: HeaderName,
    /// Carries the user's email.
    pub email: HeaderName,
    /// Carries the user's role.
    pub role: HeaderName,
    /// Carries how the request authenticated (`jwt`, `api_key`, `cookie`).
    pub auth_method: HeaderName,
    /// Carries the API key's id, for API-key requests.
    pub key_id: HeaderName,
    /// More client headers to remove on every route: lower-case names, or prefixes ending
    /// in `*`.
    pub also_remove: Vec<String>,
}

/// `[cache]`.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Entries per map; 0 turns the in-process tier off.
    pub max_entries: u64,
    /// How long a loaded identity is served without asking Redis or the store.
    pub ttl: Duration,
    /// How much longer than `ttl` a cached identity may be served while the store is down.
    pub stale_bound: Duration,
    /// How long a well-formed API key the store does not know is refused without asking it.
    pub unknown_key_ttl: Duration,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A level or tracing filter.
    pub level: String,
    /// Text or JSON lines.
    pub format: LogFormat,
    /// One line per request.
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

/// A route's upstream URL, taken apart.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    /// Host and port of the upstream.
    pub authority: http::uri::Authority,
    /// Path prefix prepended to every forwarded path; empty when the upstream URL has none.
    pub base_path: String,
    /// TLS settings of an `https://` upstream beyond the defaults.
    pub tls: Option<UpstreamTls>,
    /// The HTTP version spoken to the upstream.
    pub protocol: UpstreamProtocol,
}

/// `upstream_protocol`: how a route talks to its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1, one request per connection at a time (pooled keep-alive connections).
    #[default]
    Http1,
    /// HTTP/2 without TLS (prior knowledge), for an `http://` upstream.
    H2c,
    /// HTTP/2 over TLS, agreed by ALPN, for an `https://` upstream.
    H2,
    /// HTTP/2 or HTTP/1.1 over TLS, whichever the upstream picks by ALPN, for an `https://`
    /// upstream.
    Auto,
}

impl UpstreamProtocol {
    /// HTTP/2 either way, or possibly (`Auto`).
    pub fn is_h2(self) -> bool {
        !matches!(self, UpstreamProtocol::Http1)
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Unique name, used in metrics and logs.
    pub name: String,
    /// Path prefix, matched on whole segments.
    pub prefix: String,
    /// Methods the route accepts; `None`: all but `TRACE` and `TRACK` (`takes_method`).
    pub methods: Option<Vec<Method>>,
    /// Only requests for this host (lower case, no port); `None`: any.
    pub host: Option<String>,
    /// Where matching requests go.
    pub upstream: UpstreamConfig,
    /// Who may use the route.
    pub policy: Policy,
    /// Remove the prefix before forwarding.
    pub strip_prefix: bool,
    /// Match the prefix's letters exactly (default: ASCII case-insensitively).
    pub case_sensitive: bool,
    /// Forward `Authorization`, `X-API-Key` and the session cookies.
    pub forward_credentials: bool,
    /// Keep the client's `Host` (else send the upstream's).
    pub preserve_host: bool,
    /// Tunnel WebSocket handshakes.
    pub websocket: bool,
    /// Time to establish the upstream connection.
    pub connect_timeout: Duration,
    /// Time for the upstream to start answering.
    pub response_timeout: Duration,
    /// The largest request body forwarded; a larger declared length is 413 before any body
    /// byte is read, a larger streamed body is cut off with 413.
    pub max_body_bytes: u64,
    /// Cross-origin access to the route.
    pub cors: RouteCors,
    /// A browser navigation (a GET or HEAD with `Sec-Fetch-Mode: navigate`, or `Accept:
    /// text/html` from a browser that sends no `Sec-Fetch-Mode`) without a valid credential
    /// is sent (303) to the sign-in page instead of getting 401.
    pub sign_in_redirect: bool,
    /// Send `X-Portcullis-Assertion`: a short-lived JWT, signed with the token key,
    /// stating the identity, method and target, for an upstream that verifies its sidecar.
    pub identity_assertion: bool,
    /// This route's requests get access-log lines (when `log.access_log` is on).
    pub access_log: bool,
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
        let from_env = env::apply_overrides(&mut value, env)?;
        let raw: raw::RawConfig = serde_path_to_error::deserialize(toml::Value::Table(value))
            .map_err(|e| {
                let message = e.inner().to_string();
                let first_line = message.lines().next().unwrap_or_default().to_string();
                let error = ConfigError::invalid(e.path().to_string(), first_line);
                env::name_the_variable(error, &from_env)
            })?;
        validate::validate(raw).map_err(|e| env::name_the_variable(e, &from_env))
    }
}
