//! Raw TOML values -> typed `Config`: the whole file, `[server]`, `[store]`, `[cache]` and
//! `[log]`; the other sections have files of their own. Every error names the key it is
//! about.

use ipnet::IpNet;

use super::accounts::{accounts, cookies, cors_and_csrf, hashing, sign_in};
use super::identity_headers::identity_headers;
use super::raw::*;
use super::tokens::tokens;
use super::values::*;
use super::*;
use crate::secret::Secret;

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
    let (cors, csrf) = cors_and_csrf(raw.cors, raw.csrf)?;
    let sign_in = sign_in(raw.sign_in)?;
    browser_route_rules(&routes, cors.is_some(), &sign_in)?;
    let server = server(raw.server)?;
    let forward_auth = forward_auth(raw.forward_auth, &accounts.mount, &routes, &server)?;
    Ok(Config {
        server,
        store,
        tokens,
        accounts,
        hashing: hashing(raw.password_hashing)?,
        cookies: cookies(raw.cookies)?,
        csrf,
        cors,
        sign_in,
        forward_auth,
        throttle: super::throttle::throttle(raw.throttle)?,
        identity_headers: identity_headers(raw.identity_headers)?,
        cache: cache(raw.cache)?,
        log: log(raw.log)?,
        routes,
    })
}

fn server(raw: RawServer) -> Result<ServerConfig> {
    let tls = match (raw.tls_cert_file, raw.tls_key_file) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.into(),
            key: key.into(),
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "server.tls_key_file",
                "is needed with tls_cert_file",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "server.tls_cert_file",
                "is needed with tls_key_file",
            ));
        }
    };
    let admin_tls = raw.admin_tls.unwrap_or(false);
    if admin_tls && tls.is_none() {
        return Err(ConfigError::invalid(
            "server.admin_tls",
            "needs server.tls_cert_file and server.tls_key_file",
        ));
    }
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
        watch_config: raw.watch_config.unwrap_or(false),
        tls,
        admin_tls,
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

/// `[forward_auth]`: the path must be canonical, answer to nobody but the proxies in
/// `server.trusted_proxies`, and not hide a route.
fn forward_auth(
    raw: RawForwardAuth,
    mount: &str,
    routes: &[RouteConfig],
    server: &ServerConfig,
) -> Result<Option<ForwardAuthConfig>> {
    if !raw.enabled.unwrap_or(false) {
        return Ok(None);
    }
    let path = raw.path.unwrap_or_else(|| format!("{mount}/verify"));
    if !path.starts_with('/')
        || path.len() < 2
        || path.ends_with('/')
        || crate::path::normalize(&path).ok().as_deref() != Some(path.as_str())
    {
        return Err(ConfigError::invalid(
            "forward_auth.path",
            format!("{path:?} must be a normalized absolute path like \"/api/v1/auth/verify\""),
        ));
    }
    // Under the mount it shadows only the account API; elsewhere it must not cover a
    // route's paths.
    let in_mount = crate::path::under_prefix_ignoring_case(&path, mount);
    if path.eq_ignore_ascii_case(mount) {
        return Err(ConfigError::invalid(
            "forward_auth.path",
            "must not be accounts.mount itself, which it would hide",
        ));
    }
    if let Some(r) = routes
        .iter()
        .find(|r| !in_mount && crate::path::under_prefix_ignoring_case(&path, &r.prefix))
    {
        return Err(ConfigError::invalid(
            "forward_auth.path",
            format!(
                "{path:?} lies under route {:?}, which it would hide",
                r.name
            ),
        ));
    }
    if server.trusted_proxies.is_empty() {
        return Err(ConfigError::invalid(
            "forward_auth.enabled",
            "needs server.trusted_proxies: the verify endpoint answers only the proxies listed there",
        ));
    }
    Ok(Some(ForwardAuthConfig { path }))
}

#[cfg(test)]
mod tests;

/// Route keys that lean on other sections: `cors = "inherit"` needs `[cors]`, and
/// `sign_in_redirect` needs the sign-in page and a route that asks for a credential.
fn browser_route_rules(
    routes: &[RouteConfig],
    has_cors: bool,
    sign_in: &SignInConfig,
) -> Result<()> {
    for (i, r) in routes.iter().enumerate() {
        if !has_cors && matches!(r.cors, RouteCors::Inherit) {
            return Err(ConfigError::invalid(
                format!("routes[{i}].cors"),
                "\"inherit\" needs a [cors] section with allowed_origins",
            ));
        }
        if r.sign_in_redirect && !sign_in.enabled {
            return Err(ConfigError::invalid(
                format!("routes[{i}].sign_in_redirect"),
                "needs the sign-in page (sign_in.enabled = true)",
            ));
        }
        if r.sign_in_redirect && r.policy == Policy::Public {
            return Err(ConfigError::invalid(
                format!("routes[{i}].sign_in_redirect"),
                "has no effect on a route that does not require a credential",
            ));
        }
    }
    Ok(())
}
