//! Forward-auth: the verify endpoint (`forward_auth.path`, default `{mount}/verify`) for a
//! proxy that keeps its place in front of the upstream and asks Portcullis about each
//! request — nginx `auth_request`, Traefik `ForwardAuth`, Envoy `ext_authz` (HTTP). The
//! original request is rebuilt from the proxy's headers, then judged exactly like a proxied
//! one: the same normalization, route table, credentials, CSRF rule and policies. 200
//! carries the identity headers for the proxy to copy; a refusal carries none.
//!
//! Only peers in `server.trusted_proxies` are answered: the headers naming the original
//! request are the proxy's word, and nobody else's.

use http::header::{CACHE_CONTROL, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;

use super::body::Body;
use super::client::ConnInfo;
use super::respond::ProxyError;
use super::{AppState, Live, Refusal, Routed, admit, cors, host, navigation};
use crate::auth::AuthError;
use crate::auth::credentials;
use crate::config::RouteCors;
use crate::metrics::RouteSlot;

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");

/// The request the proxy holds.
#[derive(Debug, PartialEq)]
struct Original {
    method: Method,
    /// Path and query, as the client sent them.
    target: String,
    /// Its host, when the proxy named one (else the verify request's `Host` stands).
    host: Option<HeaderValue>,
    /// nginx's `auth_request` turns any answer but 2xx, 401 and 403 into a 500, so a
    /// browser sent to sign in gets 401 with `Location` there (for `error_page 401`), and
    /// a 303 from the others, which pass the answer on.
    nginx: bool,
}

fn bad(detail: &'static str) -> ProxyError {
    ProxyError::BadRequest(detail)
}

/// A header the proxy sets once; twice is a client's attempt to add its own.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, ProxyError> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(bad("A forward-auth header appears more than once"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| bad("A forward-auth header is not visible ASCII"))
}

/// Reads the original request from Traefik's `X-Forwarded-*`, nginx's `X-Original-*`, or
/// — Envoy's `ext_authz`, which sends the original method and appends the original path to
/// the verify path — from the verify request itself (`rest`: its path after the verify
/// path).
fn original(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    rest: &str,
) -> Result<Original, ProxyError> {
    let nginx_url = match (
        single(headers, &X_ORIGINAL_URL)?,
        single(headers, &X_ORIGINAL_URI)?,
    ) {
        (Some(_), Some(_)) => return Err(bad("Send one of X-Original-URL and X-Original-URI")),
        (url, uri) => url.or(uri),
    };
    let (target, url_host, nginx) = match (single(headers, &X_FORWARDED_URI)?, nginx_url) {
        (Some(_), Some(_)) => {
            return Err(bad("Send one of X-Forwarded-Uri and X-Original-URL"));
        }
        (Some(target), None) => (target, None, false),
        (None, Some(url)) if url.starts_with('/') => (url, None, true),
        (None, Some(url)) => {
            let absolute: Uri = url
                .parse()
                .map_err(|_| bad("X-Original-URL is not a URL"))?;
            let (Some("http" | "https"), Some(authority)) =
                (absolute.scheme_str(), absolute.authority())
            else {
                return Err(bad("X-Original-URL must be an http(s) URL or a path"));
            };
            // `scheme://authority` is how the URL parsed: the target follows it.
            let from = url.find("://").map_or(url.len(), |i| i + 3);
            let to = from + authority.as_str().len();
            let target = url.get(to..).filter(|t| t.starts_with('/')).unwrap_or("/");
            (target, url.get(from..to), true)
        }
        (None, None) if !rest.is_empty() => {
            let target = match uri.query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest.to_owned(),
            };
            let host = single(headers, &X_FORWARDED_HOST)?
                .map(host_value)
                .transpose()?;
            return Ok(Original {
                method: method.clone(),
                target,
                host,
                nginx: false,
            });
        }
        (None, None) => {
            return Err(bad(
                "Forward-auth needs the original request: X-Forwarded-Method and \
                 X-Forwarded-Uri (Traefik), X-Original-Method and X-Original-URL (nginx), or \
                 the original path after the verify path (Envoy)",
            ));
        }
    };
    if !target.starts_with('/') || target.contains('#') {
        return Err(bad("The original URI must be a path and query"));
    }
    let method = match (
        single(headers, &X_FORWARDED_METHOD)?,
        single(headers, &X_ORIGINAL_METHOD)?,
    ) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad("X-Forwarded-Method and X-Original-Method disagree"));
        }
        (Some(m), _) | (None, Some(m)) => Method::from_bytes(m.as_bytes())
            .map_err(|_| bad("The original method is not a method"))?,
        (None, None) => {
            return Err(bad(
                "Forward-auth needs the original method: X-Forwarded-Method or X-Original-Method",
            ));
        }
    };
    let host = match single(headers, &X_FORWARDED_HOST)?.or(url_host) {
        Some(h) => Some(host_value(h)?),
        None => None,
    };
    Ok(Original {
        method,
        target: target.to_owned(),
        host,
        nginx,
    })
}

fn host_value(host: &str) -> Result<HeaderValue, ProxyError> {
    if !host::is_valid(host.as_bytes()) {
        return Err(bad("The original host is not a valid host"));
    }
    HeaderValue::from_str(host).map_err(|_| bad("The original host is not a valid host"))
}

/// Answers one verify request. `rest` is the verify request's path after the verify path.
pub(super) async fn verify(
    state: &AppState,
    live: &Live,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    rest: &str,
) -> Routed {
    if !conn.trusted {
        return (RouteSlot::Rejected, Err(ProxyError::UntrustedPeer));
    }
    let original = match original(req.method(), req.uri(), req.headers(), rest) {
        Ok(o) => o,
        Err(e) => return (RouteSlot::Rejected, Err(e)),
    };
    // From here on the request is the original one: its method and host decide the route
    // and the CSRF rule, its headers carry the credential.
    *req.method_mut() = original.method;
    if let Some(h) = original.host {
        req.headers_mut().insert(HOST, h);
    }
    let (path, query) = match original.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (original.target.as_str(), None),
    };
    let normalized = match crate::path::normalize(path) {
        Ok(p) => p,
        Err(e) => return (RouteSlot::Rejected, Err(e.into())),
    };
    if query.is_some_and(credentials::query_has_credential) {
        let refused = AuthError::Malformed("credentials are not accepted in the query string");
        return (RouteSlot::Rejected, Err(refused.into()));
    }
    let host = host::for_matching(req.headers());
    let Some((index, matched)) = live.routes.match_route(req.method(), host, &normalized) else {
        return (RouteSlot::Unmatched, Err(ProxyError::NoRoute));
    };
    let route = &matched.rule;
    let slot = RouteSlot::Route(index);
    // A preflight never carries a credential; where the upstream answers CORS it may pass.
    if cors::is_preflight(req.method(), req.headers()) && matches!(route.cors, RouteCors::Upstream)
    {
        return (slot, Ok(allowed(live, None)));
    }
    match admit(state, live, conn, route, &req, &normalized, query).await {
        Ok(identity) => (
            slot,
            Ok(allowed(live, identity.as_ref().map(|(i, m)| (&**i, *m)))),
        ),
        Err(Refusal::Error(e)) => (slot, Err(e)),
        Err(Refusal::SignIn(to)) if original.nginx => (
            slot,
            Ok(navigation::redirect(StatusCode::UNAUTHORIZED, &to)),
        ),
        Err(Refusal::SignIn(to)) => (slot, Ok(navigation::redirect(StatusCode::SEE_OTHER, &to))),
    }
}

/// 200, with the identity headers when there is an identity.
fn allowed(
    live: &Live,
    identity: Option<(&crate::identity::Identity, crate::identity::AuthMethod)>,
) -> Response<Body> {
    let mut resp = Response::new(Body::full(bytes::Bytes::new()));
    let h = resp.headers_mut();
    if let Some((identity, method)) = identity {
        live.header_policy.identity_fields(identity, method, h);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::header_map;

    fn read(method: &str, target: &str, pairs: &[(&str, &str)]) -> Result<Original, String> {
        let uri: Uri = target.parse().unwrap();
        let rest = uri
            .path()
            .strip_prefix("/verify")
            .unwrap_or_default()
            .to_owned();
        original(
            &Method::from_bytes(method.as_bytes()).unwrap(),
            &uri,
            &header_map(pairs),
            &rest,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn each_proxy_names_the_original_its_own_way() {
        let traefik = read(
            "GET",
            "/verify",
            &[
                ("x-forwarded-method", "DELETE"),
                ("x-forwarded-uri", "/api/x?y=1"),
                ("x-forwarded-host", "app.example.com"),
            ],
        )
        .unwrap();
        assert_eq!(traefik.method, Method::DELETE);
        assert_eq!(traefik.target, "/api/x?y=1");
        assert_eq!(traefik.host.unwrap(), "app.example.com");
        assert!(!traefik.nginx);
        let nginx = read(
            "GET",
            "/verify",
            &[
                ("x-original-method", "POST"),
                ("x-original-url", "https://app.example.com:8443/api/x?y=1"),
            ],
        )
        .unwrap();
        assert_eq!(nginx.target, "/api/x?y=1");
        assert_eq!(nginx.host.unwrap(), "app.example.com:8443");
        assert!(nginx.nginx);
        let envoy = read("PUT", "/verify/api/x?y=1", &[]).unwrap();
        assert_eq!(
            (envoy.method, envoy.target.as_str()),
            (Method::PUT, "/api/x?y=1")
        );
    }

    #[test]
    fn an_unclear_original_is_refused() {
        for (target, pairs) in [
            ("/verify", &[][..]),
            ("/verify", &[("x-forwarded-uri", "/api")][..]),
            (
                "/verify",
                &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "api")][..],
            ),
            (
                "/verify",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-uri", "/b"),
                ][..],
            ),
            (
                "/verify",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/a"),
                    ("x-original-url", "/b"),
                ][..],
            ),
            (
                "/verify",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-original-method", "POST"),
                    ("x-forwarded-uri", "/a"),
                ][..],
            ),
            (
                "/verify",
                &[
                    ("x-original-method", "GET"),
                    ("x-original-url", "ftp://h/a"),
                ][..],
            ),
            (
                "/verify",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-host", "a b"),
                ][..],
            ),
            (
                "/verify",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/a#frag"),
                ][..],
            ),
        ] {
            assert!(read("GET", target, pairs).is_err(), "{pairs:?}");
        }
    }
}
