//! The request path: `handle()` normalizes, routes, authenticates, authorizes, prepares
//! headers and forwards; `respond` turns any failure into a response. Owns the order of the
//! stages, not their rules.

pub(crate) mod body;
pub mod client;
pub(crate) mod cors;
pub(crate) mod forward_auth;
pub(crate) mod framing;
pub mod headers;
pub(crate) mod host;
mod issued;
pub(crate) mod navigation;
pub(crate) mod respond;
mod state;
mod trailers;
mod tunnel;

pub use state::{AppState, Live};

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::header::{ORIGIN, USER_AGENT};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use tower::ServiceExt as _;

use self::body::Body;
use self::client::ConnInfo;
use self::headers::{Forwarding, X_REQUEST_ID};
use self::respond::ProxyError;
use crate::auth::AuthError;
use crate::auth::credentials::{self, check_csrf, check_origin};
use crate::auth::sessions::ClientMeta;
use crate::authz::{self, Decision};
use crate::config::{CorsPolicy, Origins, RouteConfig, RouteCors};
use crate::identity::{AuthMethod, Identity};
use crate::metrics::{AuthOutcome, RouteSlot};
use crate::path::under_prefix_ignoring_case;
use crate::routes::forwarded_path;

pub(crate) const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The entry point for every client request.
pub(crate) async fn handle(
    state: Arc<AppState>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let request_id = headers::request_id(req.headers());
    // Cheap: a standard method is copied, the target's bytes are shared.
    let logged = state
        .access_log
        .as_ref()
        .map(|log| (log, req.method().clone(), req.uri().clone()));
    // Browsers send `Origin`; other clients do not, and pay nothing here.
    let preflight = cors::is_preflight(req.method(), req.headers());
    let origin = req.headers().get(ORIGIN).cloned();
    // The configuration this request starts with is the one it ends with, whatever reload
    // happens meanwhile.
    let live = state.live.load_full();
    // gRPC runs over HTTP/2 only: HTTP/1.1 requests pay no header lookup here.
    let grpc = req.version() == Version::HTTP_2 && crate::proxy::is_grpc(req.headers());
    let (slot, result) =
        route_request(&state, &live, &conn, &request_id, preflight, grpc, req).await;
    // A refused gRPC call is answered the gRPC way; the metrics and the access log keep the
    // HTTP status it stands for.
    let (mut resp, status) = match result {
        Err(e) if grpc => respond::grpc_error(e, &state.metrics),
        result => {
            let resp = result.unwrap_or_else(|e| respond::proxy_error(e, &state.metrics));
            let status = resp.status();
            (resp, status)
        }
    };
    // A preflight under a policy was answered whole by `cors::preflight`.
    if !preflight && let Some(policy) = cors_policy(&live, slot) {
        cors::decorate(policy, origin.as_ref(), resp.headers_mut());
    }
    resp.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
    let elapsed = started.elapsed();
    let route = match slot {
        RouteSlot::Route(i) => live.routes.routes().get(i),
        _ => None,
    };
    state
        .metrics
        .record_request(slot, route.map(|r| &*r.counters), status.as_u16(), elapsed);
    // A route may keep its requests out of the log (health checks, say).
    if let Some((log, method, uri)) = logged
        && route.is_none_or(|r| r.rule.access_log)
    {
        let route = match slot {
            RouteSlot::Route(_) => route.map_or("", |r| r.rule.name.as_str()),
            RouteSlot::Account => "(account)",
            RouteSlot::Unmatched => "(unmatched)",
            RouteSlot::Rejected => "(rejected)",
        };
        log.record(&crate::logging::access::Entry {
            method: method.as_str(),
            path: uri.path(),
            status: status.as_u16(),
            route,
            micros: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            request_id: resp
                .headers()
                .get(&X_REQUEST_ID)
                .map_or(&b""[..], |v| v.as_bytes()),
        });
    }
    Ok(resp)
}

type Routed = (RouteSlot, Result<Response<Body>, ProxyError>);

/// The CORS policy that answers for a request's slot: the account API's is `[cors]`; a
/// route's is its own, or `[cors]` when it inherits. `upstream` and unset: none.
fn cors_policy(live: &Live, slot: RouteSlot) -> Option<&CorsPolicy> {
    match slot {
        RouteSlot::Account => live.cors.as_deref(),
        RouteSlot::Route(i) => match &live.routes.routes().get(i)?.rule.cors {
            RouteCors::Own(policy) => Some(policy),
            RouteCors::Inherit => live.cors.as_deref(),
            RouteCors::Upstream | RouteCors::None => None,
        },
        RouteSlot::Unmatched | RouteSlot::Rejected => None,
    }
}

async fn route_request(
    state: &AppState,
    live: &Live,
    conn: &Arc<ConnInfo>,
    request_id: &http::HeaderValue,
    preflight: bool,
    grpc: bool,
    mut req: Request<Incoming>,
) -> Routed {
    // The authority is only there for HTTP/2 and absolute-form targets; the common request
    // clones nothing.
    let authority = req.uri().authority().cloned();
    if let Err(e) = host::settle(req.version(), authority.as_ref(), req.headers_mut()) {
        return (RouteSlot::Rejected, Err(e.into()));
    }
    let declared = match framing::declared_length(req.version(), req.headers()) {
        Ok(d) => d,
        Err(e) => return (RouteSlot::Rejected, Err(e)),
    };
    let normalized = match crate::path::normalize(req.uri().path()) {
        Ok(p) => p,
        Err(e) => return (RouteSlot::Rejected, Err(e.into())),
    };
    if req
        .uri()
        .query()
        .is_some_and(credentials::query_has_credential)
    {
        let refused = AuthError::Malformed("credentials are not accepted in the query string");
        return (RouteSlot::Rejected, Err(refused.into()));
    }
    if let Some(verify) = &live.forward_auth
        && under_prefix_ignoring_case(&normalized, verify)
    {
        let rest = normalized[verify.len()..].to_owned();
        return Box::pin(forward_auth::verify(state, live, conn, req, &rest)).await;
    }
    if normalized == JWKS_PATH && matches!(*req.method(), Method::GET | Method::HEAD) {
        return (RouteSlot::Account, Ok(issued::jwks(state)));
    }
    if under_prefix_ignoring_case(&normalized, &state.mount) {
        if preflight && let Some(policy) = &live.cors {
            return (
                RouteSlot::Account,
                Ok(cors::preflight(policy, req.headers())),
            );
        }
        let rest = normalized[state.mount.len()..].to_owned();
        // Boxed: the account API's future is large and rare; the proxy path stays small.
        return (
            RouteSlot::Account,
            Box::pin(account(state, live, conn, req, &rest, declared)).await,
        );
    }
    let host = host::for_matching(req.headers());
    // A preflight belongs to the route of the method it asks about, when that route does
    // CORS; otherwise it is an `OPTIONS` like any other.
    let for_cors = preflight
        .then(|| cors::requested_method(req.headers()))
        .flatten()
        .and_then(|m| live.routes.match_route(&m, host, &normalized))
        .filter(|(_, r)| !matches!(r.rule.cors, RouteCors::None));
    let Some((index, matched)) =
        for_cors.or_else(|| live.routes.match_route(req.method(), host, &normalized))
    else {
        return (RouteSlot::Unmatched, Err(ProxyError::NotFound));
    };
    let route = &matched.rule;
    let slot = RouteSlot::Route(index);
    if preflight {
        match &route.cors {
            RouteCors::Own(policy) => return (slot, Ok(cors::preflight(policy, req.headers()))),
            RouteCors::Inherit => {
                if let Some(policy) = &live.cors {
                    return (slot, Ok(cors::preflight(policy, req.headers())));
                }
            }
            RouteCors::Upstream | RouteCors::None => {}
        }
    }
    if let Err(e) = framing::check_declared(declared, route.max_body_bytes) {
        return (slot, Err(e));
    }
    // `cors = "upstream"`: a preflight carries no credential (browsers never send one), so
    // it is forwarded without authentication, and without any identity.
    let identity = if preflight && matches!(route.cors, RouteCors::Upstream) {
        None
    } else {
        match admit(
            state,
            live,
            conn,
            route,
            &req,
            &normalized,
            req.uri().query(),
        )
        .await
        {
            Ok(identity) => identity,
            Err(Refusal::Error(e)) => return (slot, Err(e)),
            // A browser loading a page is sent to sign in rather than shown a 401.
            Err(Refusal::SignIn(to)) => {
                return (slot, Ok(navigation::redirect(StatusCode::SEE_OTHER, &to)));
            }
        }
    };
    // An "auto" route's first request: one connection tells HTTP/2 from HTTP/1.1. Both
    // checks come before the target and the assertion are built for a call that cannot go.
    if matched.upstream.protocol_unknown()
        && let Err(e) = Box::pin(matched.upstream.learn_protocol()).await
    {
        return (slot, Err(e.into()));
    }
    if grpc && !matched.upstream.is_h2() {
        return (slot, Err(ProxyError::GrpcNeedsH2));
    }
    let uri = match crate::proxy::upstream_target(
        matched.upstream.base_path(),
        forwarded_path(route, &normalized),
        req.uri().query(),
    ) {
        Ok(uri) => uri,
        Err(e) => return (slot, Err(e.into())),
    };
    drop(normalized);
    let assertion = match route
        .identity_assertion
        .then(|| issued::assertion(state, route, req.method(), &uri, identity.as_ref()))
        .transpose()
    {
        Ok(a) => a,
        Err(e) => return (slot, Err(e)),
    };
    let (mut parts, body) = req.into_parts();
    let upgrade = route.websocket && headers::is_websocket_upgrade(&parts.method, &parts.headers);
    // Built before the credential headers are stripped: the tunnel re-checks its caller.
    let tunnel =
        upgrade.then(|| tunnel::tunnel_for(state, conn, route, &parts.headers, identity.is_some()));
    let injected = live.header_policy.prepare_request(
        &mut parts.headers,
        &Forwarding {
            conn,
            identity: identity.as_ref().map(|(i, m)| (&**i, *m)),
            request_id,
            forward_credentials: route.forward_credentials,
            upgrade,
            assertion: assertion.as_ref(),
        },
    );
    host::for_upstream(
        &mut parts.headers,
        route.preserve_host,
        matched.upstream.host(),
    );
    parts.uri = uri;
    let forwarded = if matched.upstream.is_h2() {
        // HTTP/2 carries request trailers on: filtered like the headers.
        let body =
            trailers::Filtered::new(body, live.header_policy.clone(), route.forward_credentials);
        let req = Request::from_parts(parts, body);
        state
            .proxy
            .forward(&matched.upstream, req, &injected, tunnel)
            .await
    } else {
        let req = Request::from_parts(parts, body);
        state
            .proxy
            .forward(&matched.upstream, req, &injected, tunnel)
            .await
    };
    match forwarded {
        Ok(mut resp) => {
            headers::drop_session_cookies(resp.headers_mut());
            (slot, Ok(resp.map(Body::from)))
        }
        Err(e) => (slot, Err(e.into())),
    }
}

type Authenticated = Option<(Arc<Identity>, AuthMethod)>;

/// Why a route did not admit a request.
enum Refusal {
    Error(ProxyError),
    /// For want of a credential, on a page load to a route with `sign_in_redirect`: the
    /// sign-in page's location, returning to the page.
    SignIn(String),
}

/// Whether `route` admits the request (`path` is its normalized path), and as whom.
async fn admit(
    state: &AppState,
    live: &Live,
    conn: &ConnInfo,
    route: &RouteConfig,
    req: &Request<Incoming>,
    path: &str,
    query: Option<&str>,
) -> Result<Authenticated, Refusal> {
    let refuse = |e: ProxyError| {
        if route.sign_in_redirect
            && navigation::wants_sign_in(&e)
            && navigation::is_navigation(req.method(), req.headers())
        {
            Refusal::SignIn(navigation::sign_in_location(&state.mount, path, query))
        } else {
            Refusal::Error(e)
        }
    };
    let csrf = match &route.cors {
        RouteCors::Own(policy) => &policy.csrf_origins,
        _ => &live.csrf_origins,
    };
    let identity = if authz::wants_identity(&route.policy) {
        authenticate(state, conn, req, csrf)
            .map_err(refuse)?
            .await
            .map_err(refuse)?
    } else {
        None
    };
    match authz::decide(&route.policy, identity.as_ref().map(|(i, _)| &**i)) {
        Decision::Allow => Ok(identity),
        Decision::Unauthenticated => Err(refuse(AuthError::Missing.into())),
        Decision::Forbidden => Err(Refusal::Error(ProxyError::Forbidden)),
    }
}

/// Extracts and resolves the credential. The synchronous part (extraction, CSRF) runs
/// before the future is created, so the future borrows nothing from the request.
fn authenticate<'a>(
    state: &'a AppState,
    conn: &ConnInfo,
    req: &'a Request<Incoming>,
    csrf_origins: &Origins,
) -> Result<impl Future<Output = Result<Authenticated, ProxyError>> + 'a, ProxyError> {
    let cred = credentials::extract(req.headers())?;
    // API keys are limited per client address (unknown keys are guessable by the million).
    let client = cred
        .as_ref()
        .filter(|c| c.method == AuthMethod::ApiKey)
        .map(|_| client::client_addr(conn, req.headers(), &state.trusted_proxies));
    if let Some(c) = &cred
        && c.method == AuthMethod::Cookie
        && let Err(e) = if headers::is_websocket_upgrade(req.method(), req.headers()) {
            check_origin(req.headers(), csrf_origins)
        } else {
            check_csrf(req.method(), req.headers(), csrf_origins)
        }
    {
        return Err(e.into());
    }
    Ok(async move {
        let Some(cred) = cred else {
            return Ok(None);
        };
        // Failures are counted where they become responses (`respond::proxy_error`).
        let limit = client.map(|ip| (&*state.throttle, ip));
        let identity = state.resolver.resolve_from(&cred, limit).await?;
        state.metrics.record_auth(AuthOutcome::Ok);
        Ok(Some((identity, cred.method)))
    })
}

/// Hands a request under the mount to the account API, with the mount removed from the path.
async fn account(
    state: &AppState,
    live: &Live,
    conn: &ConnInfo,
    req: Request<Incoming>,
    rest: &str,
    declared: Option<u64>,
) -> Result<Response<Body>, ProxyError> {
    let limit = state.account_body_limit;
    framing::check_declared(declared, limit)?;
    let (mut parts, body) = req.into_parts();
    // Account bodies are small JSON documents: read whole, bounded in size and in time,
    // before any handler (and any password hash) runs.
    let body = framing::read_bounded(body, limit, state.body_read_timeout).await?;
    let path = if rest.is_empty() { "/" } else { rest };
    let pq = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    parts.uri = Uri::try_from(pq).map_err(|_| ProxyError::BadRequest("Invalid request target"))?;
    let address = client::client_addr(conn, &parts.headers, &state.trusted_proxies);
    let meta = ClientMeta {
        user_agent: parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ip_address: Some(address.to_string()),
        address: Some(address),
    };
    parts.extensions.insert(meta);
    let req = Request::from_parts(parts, axum::body::Body::from(body));
    let resp = match live.account.clone().oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    Ok(resp.map(Body::from))
}
