//! The route table compiled from `[[routes]]`: first match wins on method, host and a path
//! prefix matched on whole segments. No match is a 404 (default deny). Never looks at
//! credentials.

use std::sync::Arc;

use http::Method;

use crate::config::{ConfigError, RouteConfig};
use crate::metrics::{Metrics, RouteCounters};
use crate::path::{under_prefix, under_prefix_ignoring_case};
use crate::proxy::Upstream;

/// A route: its rule (what it matches, who may use it, how it forwards) and the upstream it
/// forwards to.
pub(crate) struct Route {
    pub rule: RouteConfig,
    pub upstream: Arc<Upstream>,
    /// This route's request counters (kept by name across reloads).
    pub counters: Arc<RouteCounters>,
}

pub(crate) struct RouteTable {
    routes: Vec<Route>,
}

/// Whether a route's prefix covers `path`, by the route's own case rule.
pub(crate) fn route_covers(route: &RouteConfig, path: &str) -> bool {
    if route.case_sensitive {
        under_prefix(path, &route.prefix)
    } else {
        under_prefix_ignoring_case(path, &route.prefix)
    }
}

impl RouteTable {
    /// The table of `rules`, each with its upstream (public web PKI roots for `https://`)
    /// and its counters in `metrics`.
    /// Fails when a route's TLS files (CA bundle, client certificate) cannot be used.
    pub(crate) fn new(
        rules: Vec<RouteConfig>,
        metrics: &Metrics,
    ) -> Result<RouteTable, ConfigError> {
        let mut routes = Vec::with_capacity(rules.len());
        for (i, rule) in rules.into_iter().enumerate() {
            let upstream = Upstream::for_route(&rule)
                .map_err(|e| ConfigError::invalid(format!("routes[{i}].upstream"), e))?;
            routes.push(Route {
                upstream: Arc::new(upstream),
                counters: metrics.route_counters(&rule.name),
                rule,
            });
        }
        Ok(RouteTable { routes })
    }

    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route matching the request, with its index. `host` is the request's host
    /// without port or trailing dot (`http::host::for_matching`).
    pub(crate) fn match_route(
        &self,
        method: &Method,
        host: Option<&str>,
        path: &str,
    ) -> Option<(usize, &Route)> {
        self.routes.iter().enumerate().find(|(_, route)| {
            let r = &route.rule;
            route_covers(r, path)
                && r.takes_method(method)
                && r.host
                    .as_deref()
                    .is_none_or(|want| host.is_some_and(|h| h.eq_ignore_ascii_case(want)))
        })
    }
}

/// The path to forward: with the route prefix removed when `strip_prefix` is set.
pub(crate) fn forwarded_path<'a>(route: &RouteConfig, path: &'a str) -> &'a str {
    if !route.strip_prefix || route.prefix == "/" {
        return path;
    }
    match &path[route.prefix.len()..] {
        "" => "/",
        rest => rest,
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn table(extra: &str) -> RouteTable {
        let text = format!(
            "[[routes]]\nname = \"admin\"\nprefix = \"/api/admin\"\nmethods = [\"GET\"]\nupstream = \"http://127.0.0.1:1\"\n\
             [[routes]]\nname = \"api\"\nprefix = \"/api\"\nupstream = \"http://127.0.0.1:2\"\nstrip_prefix = true\n\
             [[routes]]\nname = \"hosted\"\nprefix = \"/\"\nhost = \"docs.example.com\"\nupstream = \"http://127.0.0.1:3\"\n{extra}"
        );
        let metrics = Metrics::new(Vec::new());
        RouteTable::new(
            Config::from_toml(&text, Vec::new()).unwrap().routes,
            &metrics,
        )
        .unwrap()
    }

    fn name(t: &RouteTable, method: Method, host: Option<&str>, path: &str) -> Option<String> {
        t.match_route(&method, host, path)
            .map(|(_, r)| r.rule.name.clone())
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let t = table("");
        assert_eq!(name(&t, Method::GET, None, "/api").as_deref(), Some("api"));
        assert_eq!(
            name(&t, Method::GET, None, "/api/x").as_deref(),
            Some("api")
        );
        assert_eq!(name(&t, Method::GET, None, "/apix"), None);
        assert_eq!(name(&t, Method::GET, None, "/ap"), None);
    }

    #[test]
    fn first_match_wins_with_methods_and_hosts() {
        let t = table("");
        assert_eq!(
            name(&t, Method::GET, None, "/api/admin/u").as_deref(),
            Some("admin")
        );
        assert_eq!(
            name(&t, Method::POST, None, "/api/admin/u").as_deref(),
            Some("api")
        );
        assert_eq!(
            name(&t, Method::GET, Some("DOCS.example.com"), "/x").as_deref(),
            Some("hosted")
        );
        assert_eq!(name(&t, Method::GET, Some("other.example.com"), "/x"), None);
        assert_eq!(name(&t, Method::GET, None, "/x"), None);
    }

    #[test]
    fn trace_is_taken_only_where_a_route_lists_it() {
        let t = table(
            "[[routes]]\nname = \"diagnostics\"\nprefix = \"/api\"\nmethods = [\"TRACE\"]\n\
             upstream = \"http://127.0.0.1:4\"\n",
        );
        // "api" (methods unset) takes every method but TRACE and TRACK; the later route
        // that lists TRACE is reachable and takes it.
        assert_eq!(
            name(&t, Method::DELETE, None, "/api/x").as_deref(),
            Some("api")
        );
        assert_eq!(
            name(&t, Method::TRACE, None, "/api/x").as_deref(),
            Some("diagnostics")
        );
        let track = Method::from_bytes(b"TRACK").unwrap();
        assert_eq!(name(&t, track, None, "/api/x"), None);
        assert_eq!(
            name(&t, Method::TRACE, Some("docs.example.com"), "/x"),
            None
        );
        assert_eq!(
            name(&t, Method::GET, Some("docs.example.com"), "/x").as_deref(),
            Some("hosted")
        );
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash() {
        let t = table("");
        let api = &t.routes()[1].rule;
        assert_eq!(forwarded_path(api, "/api"), "/");
        assert_eq!(forwarded_path(api, "/api/v1/x"), "/v1/x");
        let admin = &t.routes()[0].rule;
        assert_eq!(forwarded_path(admin, "/api/admin/x"), "/api/admin/x");
    }

    #[test]
    fn prefixes_ignore_case_unless_told_not_to() {
        let t = table("");
        assert_eq!(
            name(&t, Method::GET, None, "/API/ADMIN/u").as_deref(),
            Some("admin")
        );
        assert_eq!(
            name(&t, Method::GET, None, "/Api/Admin").as_deref(),
            Some("admin")
        );
        assert_eq!(
            name(&t, Method::GET, None, "/API/adminx").as_deref(),
            Some("api")
        );
        let api = &t.routes()[1].rule;
        assert_eq!(forwarded_path(api, "/API/v1/X"), "/v1/X");
        let strict = RouteTable::new(
            Config::from_toml(
                "[[routes]]\nname = \"s\"\nprefix = \"/api/admin\"\ncase_sensitive = true\nupstream = \"http://127.0.0.1:1\"\n",
                Vec::new(),
            )
            .unwrap()
            .routes,
            &Metrics::new(Vec::new()),
        )
        .unwrap();
        assert_eq!(
            name(&strict, Method::GET, None, "/api/admin/x").as_deref(),
            Some("s")
        );
        assert_eq!(name(&strict, Method::GET, None, "/api/ADMIN/x"), None);
    }
}
