//! `[[routes]]` entries -> `RouteConfig`: prefix, methods, host, upstream URL and policy;
//! and the table as a whole: a route that can never match is an error.

use http::Method;

use super::raw::RawRoute;
use super::values::duration;
use super::*;
use crate::identity::Role;
type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn route(i: usize, raw: RawRoute) -> Result<RouteConfig> {
    let key = |field: &str| format!("routes[{i}].{field}");
    let name = raw
        .name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ConfigError::invalid(key("name"), "is required"))?;
    let prefix = raw
        .prefix
        .ok_or_else(|| ConfigError::invalid(key("prefix"), "is required"))?;
    let normalized = crate::path::normalize(&prefix).ok();
    if !prefix.starts_with('/')
        || normalized.as_deref() != Some(prefix.as_str())
        || (prefix.len() > 1 && prefix.ends_with('/'))
    {
        return Err(ConfigError::invalid(
            key("prefix"),
            format!(
                "{prefix:?} must be a normalized absolute path without a trailing slash, like \"/api\""
            ),
        ));
    }
    let methods = raw
        .methods
        .map(|list| {
            list.iter()
                .enumerate()
                .map(|(j, m)| {
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                        ConfigError::invalid(
                            format!("routes[{i}].methods[{j}]"),
                            format!("{m:?} is not an HTTP method"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let upstream_text = raw
        .upstream
        .ok_or_else(|| ConfigError::invalid(key("upstream"), "is required"))?;
    let upstream = upstream(&key("upstream"), &upstream_text)?;
    let policy = policy(i, raw.auth.as_deref(), raw.roles)?;
    let host = raw.host.map(|h| h.to_ascii_lowercase());
    if let Some(h) = &host
        && (h.is_empty() || h.parse::<http::uri::Authority>().is_err())
    {
        return Err(ConfigError::invalid(
            key("host"),
            format!("{h:?} is not a host name"),
        ));
    }
    let mut upstream = upstream;
    let tls_keys = TlsKeys {
        ca_file: raw.tls_ca_file,
        client_cert_file: raw.tls_client_cert_file,
        client_key_file: raw.tls_client_key_file,
        server_name: raw.tls_server_name,
    };
    upstream.tls = upstream_tls(&key, &upstream, tls_keys)?;
    upstream.protocol = upstream_protocol(&key, &upstream, raw.upstream_protocol.as_deref())?;
    let websocket = raw.websocket.unwrap_or(false);
    if websocket && upstream.protocol.is_h2() {
        return Err(ConfigError::invalid(
            key("websocket"),
            "WebSocket upgrades need upstream_protocol = \"http1\"",
        ));
    }
    Ok(RouteConfig {
        name,
        prefix,
        methods,
        host,
        upstream,
        policy,
        strip_prefix: raw.strip_prefix.unwrap_or(false),
        case_sensitive: raw.case_sensitive.unwrap_or(false),
        forward_credentials: raw.forward_credentials.unwrap_or(false),
        preserve_host: raw.preserve_host.unwrap_or(true),
        websocket,
        connect_timeout: duration(
            &key("connect_timeout"),
            raw.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        )?,
        response_timeout: duration(
            &key("response_timeout"),
            raw.response_timeout,
            DEFAULT_RESPONSE_TIMEOUT,
        )?,
        max_body_bytes: match raw.max_body_bytes {
            Some(0) => {
                return Err(ConfigError::invalid(
                    key("max_body_bytes"),
                    "must be greater than 0",
                ));
            }
            Some(n) => n,
            None => DEFAULT_MAX_BODY_BYTES,
        },
        cors: super::cors::route_cors(i, raw.cors)?,
        sign_in_redirect: raw.sign_in_redirect.unwrap_or(false),
        identity_assertion: raw.identity_assertion.unwrap_or(false),
        access_log: raw.access_log.unwrap_or(true),
    })
}

/// `upstream_protocol`: "http1" (the default), "h2c" for an `http://` upstream, "h2" or
/// "auto" (ALPN decides) for an `https://` one.
fn upstream_protocol(
    key: &dyn Fn(&str) -> String,
    upstream: &UpstreamConfig,
    text: Option<&str>,
) -> Result<UpstreamProtocol> {
    let https = upstream.scheme == http::uri::Scheme::HTTPS;
    let protocol = match text {
        None | Some("http1") => return Ok(UpstreamProtocol::Http1),
        Some("h2c") => UpstreamProtocol::H2c,
        Some("h2") => UpstreamProtocol::H2,
        Some("auto") => UpstreamProtocol::Auto,
        Some(other) => {
            return Err(ConfigError::invalid(
                key("upstream_protocol"),
                format!("{other:?} is not one of \"http1\", \"h2c\", \"h2\", \"auto\""),
            ));
        }
    };
    match (protocol, https) {
        (UpstreamProtocol::H2c, true) => Err(ConfigError::invalid(
            key("upstream_protocol"),
            "\"h2c\" is HTTP/2 without TLS: use \"h2\" for an https:// upstream",
        )),
        (UpstreamProtocol::H2, false) => Err(ConfigError::invalid(
            key("upstream_protocol"),
            "\"h2\" is HTTP/2 over TLS: use \"h2c\" for an http:// upstream",
        )),
        (UpstreamProtocol::Auto, false) => Err(ConfigError::invalid(
            key("upstream_protocol"),
            "\"auto\" lets TLS (ALPN) pick the protocol: an http:// upstream needs \"http1\" \
             or \"h2c\"",
        )),
        _ => Ok(protocol),
    }
}

fn upstream(key: &str, text: &str) -> Result<UpstreamConfig> {
    let bad = || ConfigError::invalid(key, format!("{text:?} is not an http(s) URL"));
    let uri: http::Uri = text.parse().map_err(|_| bad())?;
    let scheme = uri.scheme().cloned().ok_or_else(bad)?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(bad());
    }
    let authority = uri.authority().cloned().ok_or_else(bad)?;
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err(bad());
    }
    if uri.query().is_some() {
        return Err(ConfigError::invalid(key, "must not have a query string"));
    }
    let path = uri.path();
    let base_path = if path == "/" {
        String::new()
    } else {
        let trimmed = path.trim_end_matches('/');
        if crate::path::normalize(trimmed).ok().as_deref() != Some(trimmed) {
            return Err(ConfigError::invalid(
                key,
                format!("{text:?} has a path that is not normalized"),
            ));
        }
        trimmed.to_string()
    };
    Ok(UpstreamConfig {
        scheme,
        authority,
        base_path,
        tls: None,
        protocol: UpstreamProtocol::Http1,
    })
}

fn policy(i: usize, auth: Option<&str>, roles: Option<Vec<String>>) -> Result<Policy> {
    if let Some(roles) = roles {
        if auth.is_some_and(|a| a != "authenticated") {
            return Err(ConfigError::invalid(
                format!("routes[{i}].roles"),
                "can only be combined with auth = \"authenticated\" (or no auth key)",
            ));
        }
        if roles.is_empty() {
            return Err(ConfigError::invalid(
                format!("routes[{i}].roles"),
                "must list at least one role",
            ));
        }
        let parsed = roles
            .iter()
            .enumerate()
            .map(|(j, r)| {
                Role::parse(r).ok_or_else(|| {
                    ConfigError::invalid(
                        format!("routes[{i}].roles[{j}]"),
                        format!("{r:?} is not a role (user, admin, researcher)"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok(Policy::Roles(parsed));
    }
    match auth.unwrap_or("authenticated") {
        "public" => Ok(Policy::Public),
        "optional" => Ok(Policy::Optional),
        "authenticated" => Ok(Policy::Authenticated),
        other => Err(ConfigError::invalid(
            format!("routes[{i}].auth"),
            format!("{other:?} is not one of \"public\", \"optional\", \"authenticated\""),
        )),
    }
}

impl RouteConfig {
    /// Whether the route takes `method`. Unset `methods` means every method but the
    /// diagnostic `TRACE` and `TRACK`, which echo the request back (identity headers, the
    /// assertion, forwarded credentials: cross-site tracing) and are proxied only where a
    /// route lists them.
    pub fn takes_method(&self, method: &Method) -> bool {
        match &self.methods {
            Some(listed) => listed.contains(method),
            None => !is_trace(method),
        }
    }
}

/// `TRACE`, or Microsoft's `TRACK`.
fn is_trace(method: &Method) -> bool {
    *method == Method::TRACE || method.as_str() == "TRACK"
}

/// Whether every request `later` could take is taken first by `earlier`: its prefix covers
/// `later`'s (by `earlier`'s case rule, and `later` is no looser about case), its methods
/// include `later`'s, and its host is unrestricted or the same.
fn covers(earlier: &RouteConfig, later: &RouteConfig) -> bool {
    let prefix = if earlier.case_sensitive {
        later.case_sensitive && crate::path::under_prefix(&later.prefix, &earlier.prefix)
    } else {
        crate::path::under_prefix_ignoring_case(&later.prefix, &earlier.prefix)
    };
    let methods = match &later.methods {
        None => earlier.methods.is_none(),
        Some(l) => l.iter().all(|m| earlier.takes_method(m)),
    };
    let host = match (&earlier.host, &later.host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(e), Some(l)) => e == l,
    };
    prefix && methods && host
}

/// Refuses a table in which a route can never match: an earlier route covers it, or it lies
/// under the account API's mount (which is routed first).
pub(super) fn reachable(routes: &[RouteConfig], mount: &str) -> Result<()> {
    for (j, later) in routes.iter().enumerate() {
        if crate::path::under_prefix_ignoring_case(&later.prefix, mount) {
            return Err(ConfigError::invalid(
                format!("routes[{j}].prefix"),
                format!(
                    "route {:?} ({:?}) can never match: it is under the account API's mount {mount:?}, \
                     which is routed first",
                    later.name, later.prefix
                ),
            ));
        }
        if let Some((i, earlier)) = routes[..j]
            .iter()
            .enumerate()
            .find(|(_, e)| covers(e, later))
        {
            return Err(ConfigError::invalid(
                format!("routes[{j}]"),
                format!(
                    "route {:?} ({:?}) can never match: routes[{i}] {:?} ({:?}) comes first and \
                     takes every request it would (same or broader prefix, methods and host); \
                     put the more specific route first",
                    later.name, later.prefix, earlier.name, earlier.prefix
                ),
            ));
        }
    }
    Ok(())
}

/// A route's `tls_*` keys: only for `https://` upstreams; a client certificate needs its
/// key; the server name must be a DNS name or an IP address.
struct TlsKeys {
    ca_file: Option<String>,
    client_cert_file: Option<String>,
    client_key_file: Option<String>,
    server_name: Option<String>,
}

fn upstream_tls(
    key: &dyn Fn(&str) -> String,
    upstream: &UpstreamConfig,
    raw: TlsKeys,
) -> Result<Option<UpstreamTls>> {
    let tls = UpstreamTls {
        ca_file: raw.ca_file.map(PathBuf::from),
        client_cert: match (raw.client_cert_file, raw.client_key_file) {
            (Some(cert), Some(k)) => Some(TlsFiles {
                cert: cert.into(),
                key: k.into(),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    key("tls_client_key_file"),
                    "is needed with tls_client_cert_file",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    key("tls_client_cert_file"),
                    "is needed with tls_client_key_file",
                ));
            }
        },
        server_name: raw.server_name,
    };
    if tls == UpstreamTls::default() {
        return Ok(None);
    }
    if upstream.scheme != http::uri::Scheme::HTTPS {
        let which = if tls.ca_file.is_some() {
            "tls_ca_file"
        } else if tls.client_cert.is_some() {
            "tls_client_cert_file"
        } else {
            "tls_server_name"
        };
        return Err(ConfigError::invalid(
            key(which),
            "is only for https:// upstreams",
        ));
    }
    if let Some(name) = &tls.server_name
        && tokio_rustls::rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
    {
        return Err(ConfigError::invalid(
            key("tls_server_name"),
            format!("{name:?} is not a DNS name or IP address"),
        ));
    }
    Ok(Some(tls))
}
