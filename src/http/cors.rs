//! CORS for browser apps on other origins: preflights answered here, before authentication
//! (204 with exactly the allowed values, or 403 without CORS headers), and actual responses
//! given `Access-Control-Allow-Origin: <the origin>` when the origin is allowed — never `*`
//! with credentials — and `Vary: Origin` always, since their headers depend on it. Decides
//! nothing about who the caller is.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::body::Body;
use crate::config::CorsPolicy;

/// Whether a request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`.
pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The method a preflight asks about (`None`: not a method).
pub(crate) fn requested_method(headers: &HeaderMap) -> Option<Method> {
    headers
        .get(ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
}

fn allowed_origin<'a>(policy: &CorsPolicy, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
    let origin = headers.get(ORIGIN)?;
    policy
        .origins
        .allows(origin.to_str().ok()?)
        .then_some(origin)
}

/// Whether every header a preflight asks to send is allowed (names compare case-blind).
fn headers_allowed(policy: &CorsPolicy, headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .all(|h| {
            policy
                .headers
                .iter()
                .any(|a| a.as_str().eq_ignore_ascii_case(h))
        })
}

/// The answer to a preflight: 204 with the allowed values when the origin, the method and
/// every requested header are allowed; else 403 with no CORS header at all.
pub(crate) fn preflight(policy: &CorsPolicy, headers: &HeaderMap) -> Response<Body> {
    let method_ok = requested_method(headers).is_some_and(|m| policy.methods.contains(&m));
    let origin =
        allowed_origin(policy, headers).filter(|_| method_ok && headers_allowed(policy, headers));
    let mut resp = match origin {
        Some(origin) => {
            let mut resp = Response::new(Body::full(bytes::Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            let h = resp.headers_mut();
            h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            if policy.credentials {
                h.insert(
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
            h.insert(ACCESS_CONTROL_ALLOW_METHODS, policy.allow_methods.clone());
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, policy.allow_headers.clone());
            h.insert(ACCESS_CONTROL_MAX_AGE, policy.max_age.clone());
            resp
        }
        None => super::respond::cors_refused(),
    };
    resp.headers_mut().append(
        VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    resp
}

/// Gives an actual response (success or error) its CORS headers: the upstream's own are
/// replaced, `Vary: Origin` is always added, and an allowed origin is echoed.
pub(crate) fn decorate(policy: &CorsPolicy, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    for name in [
        ACCESS_CONTROL_ALLOW_ORIGIN,
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        ACCESS_CONTROL_EXPOSE_HEADERS,
        ACCESS_CONTROL_ALLOW_METHODS,
        ACCESS_CONTROL_ALLOW_HEADERS,
        ACCESS_CONTROL_MAX_AGE,
    ] {
        headers.remove(name);
    }
    headers.append(VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin.filter(|o| o.to_str().is_ok_and(|o| policy.origins.allows(o))) else {
        return;
    };
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if policy.credentials {
        headers.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Some(exposed) = &policy.expose_headers {
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, exposed.clone());
    }
}
