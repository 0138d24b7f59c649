//! `[cors]` and a route's `cors`: which origins a browser may call from, with which methods
//! and headers. The same origin list is the CSRF rule's (one list, not two that can
//! disagree). Origins are exact (`https://app.example.com`) or a subdomain pattern
//! (`https://*.example.com`, any depth, never the bare domain); `null` never matches.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::raw::{RawCors, RawRouteCors};
use super::values::{Result, duration};
use super::{ConfigError, CorsPolicy, Origins, RouteCors};

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OriginRule {
    /// `scheme://host[:port]`, lower case, default port omitted.
    Exact(String),
    /// `scheme://*.suffix[:port]`: any subdomain of `suffix`.
    Subdomains {
        scheme: String,
        /// `.example.com`, with its leading dot.
        suffix: String,
        port: Option<u16>,
    },
    /// `*`: any origin (only without credentials).
    Any,
}

/// An origin taken apart: scheme, host and port (default ports dropped), lower case.
fn parse_origin(text: &str) -> Option<(String, String, Option<u16>)> {
    let lower = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let (host, port) = if rest.starts_with('[') {
        let end = rest.find(']')?;
        match &rest[end + 1..] {
            "" => (rest[..=end].to_string(), None),
            after => (
                rest[..=end].to_string(),
                Some(after.strip_prefix(':')?.parse::<u16>().ok()?),
            ),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse::<u16>().ok()?)),
            None => (rest.to_string(), None),
        }
    };
    let default = if scheme == "https" { 443 } else { 80 };
    let port = port.filter(|p| *p != default);
    let host_ok = host.starts_with('[')
        || (!host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
            }));
    host_ok.then(|| (scheme.to_string(), host, port))
}

fn render(scheme: &str, host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    }
}

impl Origins {
    /// Whether a request's `Origin` is allowed. `null` and malformed origins never are.
    pub fn allows(&self, origin: &str) -> bool {
        let Some((scheme, host, port)) = parse_origin(origin) else {
            return false;
        };
        if host.contains('*') {
            return false;
        }
        let exact = render(&scheme, &host, port);
        self.0.iter().any(|rule| match rule {
            OriginRule::Exact(o) => *o == exact,
            OriginRule::Subdomains {
                scheme: s,
                suffix,
                port: p,
            } => {
                *s == scheme
                    && *p == port
                    && host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
            }
            OriginRule::Any => true,
        })
    }

    /// Whether any origin at all is allowed (`*`).
    pub fn any(&self) -> bool {
        self.0.contains(&OriginRule::Any)
    }

    /// The list as CSP source expressions (`https://app.example.com`,
    /// `https://*.example.com`).
    pub fn sources(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|rule| match rule {
            OriginRule::Exact(o) => o.clone(),
            OriginRule::Subdomains {
                scheme,
                suffix,
                port,
            } => render(scheme, &format!("*{suffix}"), *port),
            OriginRule::Any => "*".to_string(),
        })
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The CSRF rule's view: the same list without `*` (a wildcard cannot vouch for a
    /// cookie-authenticated request).
    pub(crate) fn for_csrf(&self) -> Origins {
        Origins(
            self.0
                .iter()
                .filter(|r| **r != OriginRule::Any)
                .cloned()
                .collect(),
        )
    }
}

fn origin_rule(key: &str, text: &str) -> Result<OriginRule> {
    if text.trim() == "*" {
        return Ok(OriginRule::Any);
    }
    let bad = || {
        ConfigError::invalid(
            key,
            format!(
                "{text:?} is not an origin like \"https://app.example.com\" or \"https://*.example.com\""
            ),
        )
    };
    let (scheme, host, port) = parse_origin(text).ok_or_else(bad)?;
    match host.strip_prefix("*.") {
        Some(domain) => {
            // At least a registrable-looking domain, and no other wildcard.
            if domain.contains('*') || domain.split('.').count() < 2 {
                return Err(bad());
            }
            Ok(OriginRule::Subdomains {
                scheme,
                suffix: format!(".{domain}"),
                port,
            })
        }
        None if host.contains('*') => Err(bad()),
        None => Ok(OriginRule::Exact(render(&scheme, &host, port))),
    }
}

/// The origin list a section names (`cors.allowed_origins`, `csrf.allowed_origins`, ...).
pub(super) fn origins(key: &str, list: &[String]) -> Result<Origins> {
    list.iter()
        .enumerate()
        .map(|(i, o)| origin_rule(&format!("{key}[{i}]"), o))
        .collect::<Result<Vec<_>>>()
        .map(Origins)
}

const DEFAULT_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
const DEFAULT_HEADERS: [&str; 4] = ["authorization", "content-type", "x-api-key", "x-request-id"];
const DEFAULT_EXPOSED: [&str; 1] = ["x-request-id"];
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);

fn header_value(key: &str, text: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(text)
        .map_err(|_| ConfigError::invalid(key, "is not a valid header value"))
}

/// A CORS policy from its section (`section` names it in errors: `cors` or `routes[i].cors`).
/// `None` when it allows no origin.
pub(super) fn policy(section: &str, raw: RawCors) -> Result<Option<Arc<CorsPolicy>>> {
    let origins = origins(&format!("{section}.allowed_origins"), &raw.allowed_origins)?;
    if origins.is_empty() {
        return Ok(None);
    }
    let credentials = raw.credentials.unwrap_or(true);
    if credentials && origins.any() {
        return Err(ConfigError::invalid(
            format!("{section}.allowed_origins"),
            "\"*\" cannot be combined with credentials = true: name the origins",
        ));
    }
    let methods = match raw.allowed_methods {
        None => DEFAULT_METHODS.iter().map(|m| m.to_string()).collect(),
        Some(list) => list,
    };
    let methods = methods
        .iter()
        .enumerate()
        .map(|(i, m)| {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                ConfigError::invalid(
                    format!("{section}.allowed_methods[{i}]"),
                    format!("{m:?} is not an HTTP method"),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let names = |key: &str, list: Vec<String>| -> Result<Vec<HeaderName>> {
        list.iter()
            .enumerate()
            .map(|(i, h)| {
                HeaderName::try_from(h.to_ascii_lowercase()).map_err(|_| {
                    ConfigError::invalid(
                        format!("{section}.{key}[{i}]"),
                        format!("{h:?} is not a header name"),
                    )
                })
            })
            .collect()
    };
    let headers = names(
        "allowed_headers",
        raw.allowed_headers
            .unwrap_or_else(|| DEFAULT_HEADERS.iter().map(|h| h.to_string()).collect()),
    )?;
    let exposed = names(
        "exposed_headers",
        raw.exposed_headers
            .unwrap_or_else(|| DEFAULT_EXPOSED.iter().map(|h| h.to_string()).collect()),
    )?;
    let max_age = duration(&format!("{section}.max_age"), raw.max_age, DEFAULT_MAX_AGE)?;
    let join = |items: Vec<&str>| items.join(", ");
    Ok(Some(Arc::new(CorsPolicy {
        allow_methods: header_value(section, &join(methods.iter().map(Method::as_str).collect()))?,
        allow_headers: header_value(
            section,
            &join(headers.iter().map(HeaderName::as_str).collect()),
        )?,
        expose_headers: (!exposed.is_empty())
            .then(|| {
                header_value(
                    section,
                    &join(exposed.iter().map(HeaderName::as_str).collect()),
                )
            })
            .transpose()?,
        max_age: HeaderValue::from(max_age.as_secs()),
        csrf_origins: origins.for_csrf(),
        origins,
        methods,
        headers,
        credentials,
    })))
}

/// A route's `cors`: absent (no CORS), `"inherit"` (the global `[cors]`), `"upstream"`
/// (preflights go to the upstream, unauthenticated), or a table of its own.
pub(super) fn route_cors(i: usize, raw: Option<RawRouteCors>) -> Result<RouteCors> {
    let key = format!("routes[{i}].cors");
    match raw {
        None => Ok(RouteCors::None),
        Some(RawRouteCors::Mode(mode)) => match mode.as_str() {
            "inherit" => Ok(RouteCors::Inherit),
            "upstream" => Ok(RouteCors::Upstream),
            "off" => Ok(RouteCors::None),
            other => Err(ConfigError::invalid(
                key,
                format!("{other:?} is not \"inherit\", \"upstream\", \"off\" or a table"),
            )),
        },
        Some(RawRouteCors::Own(table)) => Ok(match policy(&key, table)? {
            Some(p) => RouteCors::Own(p),
            None => RouteCors::None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Origins {
        origins(
            "cors.allowed_origins",
            &items.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn exact_origins_match_exactly_with_default_ports_dropped() {
        let o = list(&["https://App.Example.com/", "http://localhost:3000"]);
        assert!(o.allows("https://app.example.com"));
        assert!(o.allows("https://app.example.com:443"));
        assert!(o.allows("http://localhost:3000"));
        for no in [
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://app.example.com.evil.com",
            "https://evilapp.example.com",
            "http://localhost:3001",
            "null",
            "",
            "https://app.example.com/path",
        ] {
            assert!(!o.allows(no), "{no}");
        }
    }

    #[test]
    fn patterns_match_subdomains_only() {
        let o = list(&["https://*.example.com"]);
        assert!(o.allows("https://a.example.com"));
        assert!(o.allows("https://a.b.example.com"));
        for no in [
            "https://example.com",
            "https://evil-example.com",
            "https://example.com.evil.net",
            "http://a.example.com",
            "https://a.example.com:8443",
            "https://*.example.com",
        ] {
            assert!(!o.allows(no), "{no}");
        }
        for bad in [
            "https://*.com",
            "https://a.*.com",
            "ftp://x.io",
            "https://x.io/p",
            "*.example.com",
        ] {
            assert!(
                origins("k", &[bad.to_string()]).is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn a_wildcard_needs_credentials_off_and_never_serves_csrf() {
        let raw = |credentials| RawCors {
            allowed_origins: vec!["*".into()],
            credentials: Some(credentials),
            ..RawCors::default()
        };
        assert!(policy("cors", raw(true)).is_err());
        let p = policy("cors", raw(false)).unwrap().unwrap();
        assert!(p.origins.allows("https://anything.example"));
        assert!(!p.origins.for_csrf().allows("https://anything.example"));
    }
}
