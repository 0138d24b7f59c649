//! What Portcullis itself signs or publishes on the request path: the JWKS document, and
//! the identity assertion for upstreams that verify their sidecar.

use std::sync::Arc;

use http::{Method, Response, Uri};

use super::AppState;
use super::body::Body;
use super::respond::ProxyError;
use crate::config::RouteConfig;
use crate::identity::{AuthMethod, Identity};

/// `X-Portcullis-Assertion` for a request on its way to `uri` (the target the upstream
/// will see).
pub(super) fn assertion(
    state: &AppState,
    route: &RouteConfig,
    method: &Method,
    uri: &Uri,
    identity: Option<&(Arc<Identity>, AuthMethod)>,
) -> Result<http::HeaderValue, ProxyError> {
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let identity = identity.map(|(i, m)| (&**i, *m));
    state
        .jwt
        .assertion(&route.name, method.as_str(), target, identity)
        .ok()
        .and_then(|token| http::HeaderValue::from_str(&token).ok())
        .ok_or(ProxyError::Internal(
            "The identity assertion could not be signed",
        ))
}

/// The public keys, cacheable for five minutes.
pub(super) fn jwks(state: &AppState) -> Response<Body> {
    use http::HeaderValue;
    use http::header::{CACHE_CONTROL, CONTENT_TYPE};
    let mut resp = Response::new(Body::full(state.jwks.clone()));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}
