//! Raw TOML values -> typed `Config`. Every error names the key it is about.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use jsonwebtoken::Algorithm;

use super::raw::*;
use super::*;
use crate::secret::Secret;

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn validate(raw: RawConfig) -> Result<Config> {
    let store = store(raw.store)?;
    let tokens = tokens(raw.tokens, &store)?;
    let accounts = accounts(raw.accounts)?;
    let routes = raw
        .routes
        .into_iter()
        .enumerate()
        .map(|(i, r)| super::route_rules::route(i, r))
        .collect::<Result<Vec<_>>>()?;
    for (i, r) in routes.iter().enumerate() {
        if routes[..i].iter().any(|other| other.name == r.name) {
            return Err(ConfigError::invalid(
                format!("routes[{i}].name"),
                format!("{:?} is used by an earlier route", r.name),
            ));
        }
    }
    super::route_rules::reachable(&routes, &accounts.mount)?;
    Ok(Config {
        server: server(raw.server)?,
        store,
        tokens,
        accounts,
        hashing: hashing(raw.password_hashing)?,
        cookies: cookies(raw.cookies)?,
        csrf: csrf(raw.csrf)?,
        identity_headers: identity_headers(raw.identity_headers)?,
        cache: cache(raw.cache)?,
        log: log(raw.log)?,
        routes,
    })
}

pub(super) fn duration(key: &str, value: Option<String>, default: Duration) -> Result<Duration> {
    match value {
        None => Ok(default),
        Some(text) => humantime::parse_duration(&text).map_err(|e| {
            ConfigError::invalid(
                key,
                format!("{text:?} is not a duration like \"15m\" ({e})"),
            )
        }),
    }
}

pub(super) fn nonzero_duration(
    key: &str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration> {
    let d = duration(key, value, default)?;
    if d.is_zero() {
        return Err(ConfigError::invalid(key, "must be longer than 0s"));
    }
    Ok(d)
}

fn positive<T: PartialOrd + Default + std::fmt::Display>(key: &str, value: T) -> Result<T> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{value} must be greater than 0"),
        ))
    }
}

fn at_least(key: &str, value: usize, min: usize) -> Result<usize> {
    if value >= min {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{value} must be at least {min}"),
        ))
    }
}

fn socket_addr(key: &str, text: &str) -> Result<SocketAddr> {
    text.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("{text:?} is not an address like \"127.0.0.1:8080\""),
        )
    })
}

fn server(raw: RawServer) -> Result<ServerConfig> {
    let listen = socket_addr(
        "server.listen",
        raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
    )?;
    let admin_listen = raw
        .admin_listen
        .as_deref()
        .map(|a| socket_addr("server.admin_listen", a))
        .transpose()?;
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, text)| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::invalid(
                        format!("server.trusted_proxies[{i}]"),
                        format!("{text:?} is not an IP address or CIDR block"),
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(ServerConfig {
        listen,
        worker_threads: positive("server.worker_threads", raw.worker_threads.unwrap_or(cores))?,
        admin_listen,
        max_connections: {
            let n = positive(
                "server.max_connections",
                raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            )?;
            if n > MAX_CONNECTIONS_LIMIT {
                return Err(ConfigError::invalid(
                    "server.max_connections",
                    format!("{n} is more than {MAX_CONNECTIONS_LIMIT}"),
                ));
            }
            n
        },
        header_read_timeout: nonzero_duration(
            "server.header_read_timeout",
            raw.header_read_timeout,
            DEFAULT_HEADER_READ_TIMEOUT,
        )?,
        body_read_timeout: nonzero_duration(
            "server.body_read_timeout",
            raw.body_read_timeout,
            DEFAULT_BODY_READ_TIMEOUT,
        )?,
        send_timeout: nonzero_duration(
            "server.send_timeout",
            raw.send_timeout,
            DEFAULT_SEND_TIMEOUT,
        )?,
        max_header_bytes: at_least(
            "server.max_header_bytes",
            raw.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES),
            8192,
        )?,
        idle_timeout: nonzero_duration(
            "server.idle_timeout",
            raw.idle_timeout,
            DEFAULT_IDLE_TIMEOUT,
        )?,
        http2_keepalive_interval: nonzero_duration(
            "server.http2_keepalive_interval",
            raw.http2_keepalive_interval,
            DEFAULT_HTTP2_KEEPALIVE_INTERVAL,
        )?,
        http2_keepalive_timeout: nonzero_duration(
            "server.http2_keepalive_timeout",
            raw.http2_keepalive_timeout,
            DEFAULT_HTTP2_KEEPALIVE_TIMEOUT,
        )?,
        tunnel_idle_timeout: nonzero_duration(
            "server.tunnel_idle_timeout",
            raw.tunnel_idle_timeout,
            DEFAULT_TUNNEL_IDLE_TIMEOUT,
        )?,
        tunnel_max_lifetime: nonzero_duration(
            "server.tunnel_max_lifetime",
            raw.tunnel_max_lifetime,
            DEFAULT_TUNNEL_MAX_LIFETIME,
        )?,
        shutdown_grace: duration(
            "server.shutdown_grace",
            raw.shutdown_grace,
            DEFAULT_SHUTDOWN_GRACE,
        )?,
        trusted_proxies,
    })
}

fn store(raw: RawStore) -> Result<StoreConfig> {
    let database_url = raw
        .database_url
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());
    let backend = if sqlite_path(&database_url).is_some() {
        Backend::Sqlite
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Backend::Postgres
    } else {
        return Err(ConfigError::invalid(
            "store.database_url",
            "must be sqlite://PATH or postgres://USER@HOST/DB",
        ));
    };
    let redis = match raw.redis_url.filter(|u| !u.is_empty()) {
        None => None,
        Some(url) => {
            if !(url.starts_with("redis://") || url.starts_with("rediss://"))
                || redis::Client::open(url.as_str()).is_err()
            {
                return Err(ConfigError::invalid(
                    "store.redis_url",
                    "must be a redis:// or rediss:// URL",
                ));
            }
            let key_prefix = raw.redis_key_prefix.unwrap_or_default();
            Some(RedisConfig {
                url: Secret::new(url),
                channel: raw
                    .redis_channel
                    .unwrap_or_else(|| format!("{key_prefix}{DEFAULT_REDIS_CHANNEL}")),
                key_prefix,
                timeout: duration(
                    "store.redis_timeout",
                    raw.redis_timeout,
                    DEFAULT_REDIS_TIMEOUT,
                )?,
            })
        }
    };
    Ok(StoreConfig {
        database_url,
        backend,
        max_connections: positive(
            "store.max_connections",
            raw.max_connections.unwrap_or(DEFAULT_DB_MAX_CONNECTIONS),
        )?,
        acquire_timeout: duration(
            "store.acquire_timeout",
            raw.acquire_timeout,
            DEFAULT_DB_ACQUIRE_TIMEOUT,
        )?,
        statement_timeout: duration(
            "store.statement_timeout",
            raw.statement_timeout,
            DEFAULT_STATEMENT_TIMEOUT,
        )?,
        migrate_on_start: raw.migrate_on_start.unwrap_or(true),
        redis,
    })
}

/// The file path of a `sqlite://path` or `sqlite:path` URL, without query parameters.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

fn tokens(raw: RawTokens, store: &StoreConfig) -> Result<TokenConfig> {
    let algorithm = match raw.algorithm.as_deref().unwrap_or("EdDSA") {
        "EdDSA" => Algorithm::EdDSA,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "HS256" => Algorithm::HS256,
        other => {
            return Err(ConfigError::invalid(
                "tokens.algorithm",
                format!("{other:?} is not one of \"EdDSA\", \"RS256\", \"ES256\", \"HS256\""),
            ));
        }
    };
    let nonempty = |key: &str, value: Option<String>, default: &str| -> Result<String> {
        let v = value.unwrap_or_else(|| default.to_string());
        if v.trim().is_empty() {
            return Err(ConfigError::invalid(key, "must not be empty"));
        }
        Ok(v)
    };
    let hmac_secret = raw.hmac_secret.map(Secret::new);
    if algorithm == Algorithm::HS256 {
        match &hmac_secret {
            Some(s) if s.expose().len() >= 32 => {}
            _ => {
                return Err(ConfigError::invalid(
                    "tokens.hmac_secret",
                    "HS256 needs a secret of at least 32 bytes (set it with PORTCULLIS_TOKENS__HMAC_SECRET_FILE)",
                ));
            }
        }
    } else if hmac_secret.is_some() {
        return Err(ConfigError::invalid(
            "tokens.hmac_secret",
            "is only used with algorithm = \"HS256\"",
        ));
    }
    if algorithm == Algorithm::HS256
        && (raw.signing_key_path.is_some() || !raw.verification_key_paths.is_empty())
    {
        return Err(ConfigError::invalid(
            "tokens.signing_key_path",
            "HS256 uses tokens.hmac_secret, not key files",
        ));
    }
    if store.backend == Backend::Postgres
        && algorithm != Algorithm::HS256
        && raw.signing_key_path.is_none()
        && raw.key_dir.is_none()
    {
        return Err(ConfigError::invalid(
            "tokens.signing_key_path",
            "is required with a PostgreSQL store, so that every replica signs with the same key \
             (create one with `portcullis keys generate`)",
        ));
    }
    let key_dir = match raw.key_dir {
        Some(dir) => PathBuf::from(dir),
        None => sqlite_path(&store.database_url)
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let access_ttl = duration("tokens.access_ttl", raw.access_ttl, DEFAULT_ACCESS_TTL)?;
    let refresh_ttl = duration("tokens.refresh_ttl", raw.refresh_ttl, DEFAULT_REFRESH_TTL)?;
    if access_ttl.is_zero() || refresh_ttl < access_ttl {
        return Err(ConfigError::invalid(
            "tokens.refresh_ttl",
            "access_ttl must be positive and refresh_ttl at least as long as access_ttl",
        ));
    }
    Ok(TokenConfig {
        algorithm,
        issuer: nonempty("tokens.issuer", raw.issuer, DEFAULT_ISSUER)?,
        audience: nonempty("tokens.audience", raw.audience, DEFAULT_AUDIENCE)?,
        access_ttl,
        refresh_ttl,
        leeway: duration("tokens.leeway", raw.leeway, DEFAULT_LEEWAY)?,
        refresh_reuse_grace: duration(
            "tokens.refresh_reuse_grace",
            raw.refresh_reuse_grace,
            DEFAULT_REFRESH_REUSE_GRACE,
        )?,
        session_max_lifetime: {
            let d = duration(
                "tokens.session_max_lifetime",
                raw.session_max_lifetime,
                DEFAULT_SESSION_MAX_LIFETIME,
            )?;
            if d < access_ttl {
                return Err(ConfigError::invalid(
                    "tokens.session_max_lifetime",
                    "must be at least tokens.access_ttl",
                ));
            }
            d
        },
        max_token_bytes: at_least(
            "tokens.max_token_bytes",
            raw.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES),
            512,
        )?,
        signing_key_path: raw.signing_key_path.map(PathBuf::from),
        verification_key_paths: raw
            .verification_key_paths
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        hmac_secret,
        key_dir,
    })
}

fn accounts(raw: RawAccounts) -> Result<AccountsConfig> {
    let mount = raw.mount.unwrap_or_else(|| DEFAULT_MOUNT.to_string());
    if !mount.starts_with('/')
        || mount.len() < 2
        || mount.ends_with('/')
        || crate::http::path::normalize(&mount).ok().as_deref() != Some(mount.as_str())
    {
        return Err(ConfigError::invalid(
            "accounts.mount",
            format!("{mount:?} must be a normalized absolute path like \"/api/v1/auth\""),
        ));
    }
    let min_length = raw.password_min_length.unwrap_or(DEFAULT_PASSWORD_MIN);
    let max_length = raw.password_max_length.unwrap_or(DEFAULT_PASSWORD_MAX);
    if min_length < 8 {
        return Err(ConfigError::invalid(
            "accounts.password_min_length",
            "must be at least 8 (NIST SP 800-63B)",
        ));
    }
    if max_length < min_length || max_length > 1024 {
        return Err(ConfigError::invalid(
            "accounts.password_max_length",
            "must be between password_min_length and 1024",
        ));
    }
    Ok(AccountsConfig {
        mount,
        allow_registration: raw.allow_registration.unwrap_or(true),
        password: PasswordPolicy {
            min_length,
            max_length,
            require_mixed: raw.password_require_mixed.unwrap_or(false),
        },
        max_body_bytes: positive(
            "accounts.max_body_bytes",
            raw.max_body_bytes.unwrap_or(DEFAULT_ACCOUNT_BODY_LIMIT),
        )?,
        admin_page_size_max: positive(
            "accounts.admin_page_size_max",
            raw.admin_page_size_max
                .unwrap_or(DEFAULT_ADMIN_PAGE_SIZE_MAX),
        )?,
    })
}

fn hashing(raw: RawPasswordHashing) -> Result<HashingConfig> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib = raw.memory_kib.unwrap_or(DEFAULT_ARGON2_MEMORY_KIB);
    if memory_kib < 8 {
        return Err(ConfigError::invalid(
            "password_hashing.memory_kib",
            "must be at least 8",
        ));
    }
    Ok(HashingConfig {
        memory_kib,
        iterations: positive(
            "password_hashing.iterations",
            raw.iterations.unwrap_or(DEFAULT_ARGON2_ITERATIONS),
        )?,
        parallelism: positive(
            "password_hashing.parallelism",
            raw.parallelism.unwrap_or(DEFAULT_ARGON2_PARALLELISM),
        )?,
        max_concurrent: positive(
            "password_hashing.max_concurrent",
            raw.max_concurrent.unwrap_or(cores),
        )?,
        max_queued: raw.max_queued.unwrap_or(DEFAULT_HASH_QUEUE),
        low_priority: raw.low_priority.unwrap_or(true),
    })
}

fn cookies(raw: RawCookies) -> Result<CookieConfig> {
    let domain = raw.domain.filter(|d| !d.is_empty());
    if let Some(d) = &domain
        && !d.trim_start_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    {
        return Err(ConfigError::invalid(
            "cookies.domain",
            format!("{d:?} is not a domain name"),
        ));
    }
    Ok(CookieConfig {
        secure: raw.secure.unwrap_or(true),
        domain,
    })
}

fn csrf(raw: RawCsrf) -> Result<CsrfConfig> {
    let allowed_origins = raw
        .allowed_origins
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let lower = o.trim_end_matches('/').to_ascii_lowercase();
            let ok = (lower.starts_with("http://") || lower.starts_with("https://"))
                && lower.parse::<http::Uri>().is_ok_and(|u| {
                    u.authority().is_some() && u.path_and_query().is_none_or(|p| p == "/")
                });
            if ok {
                Ok(lower)
            } else {
                Err(ConfigError::invalid(
                    format!("csrf.allowed_origins[{i}]"),
                    format!("{o:?} is not an origin like \"https://app.example.com\""),
                ))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CsrfConfig { allowed_origins })
}

fn identity_headers(raw: RawIdentityHeaders) -> Result<IdentityHeaderNames> {
    let name = |key: &str, value: Option<String>, default: &'static str| -> Result<HeaderName> {
        match value {
            None => Ok(HeaderName::from_static(default)),
            Some(v) => HeaderName::try_from(v.as_str()).map_err(|_| {
                ConfigError::invalid(key, format!("{v:?} is not a valid header name"))
            }),
        }
    };
    let names = IdentityHeaderNames {
        user_id: name("identity_headers.user_id", raw.user_id, "x-user-id")?,
        email: name("identity_headers.email", raw.email, "x-user-email")?,
        role: name("identity_headers.role", raw.role, "x-user-role")?,
        auth_method: name(
            "identity_headers.auth_method",
            raw.auth_method,
            "x-auth-method",
        )?,
        key_id: name("identity_headers.key_id", raw.key_id, "x-auth-key-id")?,
        also_remove: raw
            .also_remove
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let bare = n.strip_suffix('*').unwrap_or(n);
                if bare.is_empty() || HeaderName::try_from(bare).is_err() {
                    return Err(ConfigError::invalid(
                        format!("identity_headers.also_remove[{i}]"),
                        format!("{n:?} is not a header name (or a prefix ending in '*')"),
                    ));
                }
                Ok(n.to_ascii_lowercase())
            })
            .collect::<Result<Vec<_>>>()?,
    };
    let all = [
        ("identity_headers.user_id", &names.user_id),
        ("identity_headers.email", &names.email),
        ("identity_headers.role", &names.role),
        ("identity_headers.auth_method", &names.auth_method),
        ("identity_headers.key_id", &names.key_id),
    ];
    for (i, (key, n)) in all.iter().enumerate() {
        let folded = fold_header_name(n.as_str());
        if let Some(reserved) = RESERVED_HEADER_NAMES.iter().find(|r| **r == folded) {
            return Err(ConfigError::invalid(
                *key,
                format!(
                    "{:?} cannot be an identity header: it is {reserved:?}, which frames, \
                     routes or authenticates the request",
                    n.as_str()
                ),
            ));
        }
        if let Some((other, _)) = all[..i]
            .iter()
            .find(|(_, o)| fold_header_name(o.as_str()) == folded)
        {
            return Err(ConfigError::invalid(
                *key,
                format!("{:?} is also used by {other}", n.as_str()),
            ));
        }
    }
    Ok(names)
}

/// Header names an identity header must not take (compared after folding `_` and `.` to
/// `-`, as some servers do): framing, hop-by-hop, routing and credential headers, and the
/// forwarding headers Portcullis sets itself.
const RESERVED_HEADER_NAMES: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "content-type",
    "content-encoding",
    "proxy-authorization",
    "proxy-authenticate",
    "authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "http2-settings",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

fn fold_header_name(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

fn cache(raw: RawCache) -> Result<CacheConfig> {
    Ok(CacheConfig {
        max_entries: raw.max_entries.unwrap_or(DEFAULT_CACHE_MAX_ENTRIES),
        ttl: duration("cache.ttl", raw.ttl, DEFAULT_CACHE_TTL)?,
        stale_bound: duration(
            "cache.stale_bound",
            raw.stale_bound,
            DEFAULT_CACHE_STALE_BOUND,
        )?,
        unknown_key_ttl: duration(
            "cache.unknown_key_ttl",
            raw.unknown_key_ttl,
            DEFAULT_UNKNOWN_KEY_TTL,
        )?,
    })
}

fn log(raw: RawLog) -> Result<LogConfig> {
    let format = match raw.format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::invalid(
                "log.format",
                format!("{other:?} is not \"text\" or \"json\""),
            ));
        }
    };
    let level = raw.level.unwrap_or_else(|| "info".to_string());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(ConfigError::invalid(
            "log.level",
            format!("{level:?} is not a level or filter like \"info\""),
        ));
    }
    Ok(LogConfig {
        level,
        format,
        access_log: raw.access_log.unwrap_or(true),
    })
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
