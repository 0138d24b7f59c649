//! Browser navigations on routes with `sign_in_redirect`: a page load without a valid
//! credential goes (303) to `{mount}/sign-in` with the page as its return target, instead
//! of a 401 a person cannot act on. API clients — anything that is not a GET or HEAD
//! navigation, or that presents a credential in a header — keep getting 401 JSON.

use http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, LOCATION};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use super::body::Body;
use super::respond::ProxyError;
use crate::auth::AuthError;

static SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Whether a request is a browser loading a page: a GET or HEAD with `Sec-Fetch-Mode:
/// navigate`, or — from a browser that sends no `Sec-Fetch-Mode` — one that accepts
/// `text/html`. A credential in `Authorization` or `X-API-Key` means a program.
pub(crate) fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if !matches!(*method, Method::GET | Method::HEAD)
        || headers.contains_key(AUTHORIZATION)
        || headers.contains_key(&X_API_KEY)
    {
        return false;
    }
    match headers.get(&SEC_FETCH_MODE) {
        Some(mode) => mode.as_bytes().eq_ignore_ascii_case(b"navigate"),
        None => headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|range| {
                let media = range.split(';').next().unwrap_or_default().trim();
                media.eq_ignore_ascii_case("text/html")
            }),
    }
}

/// Whether a refusal means "sign in" (no credential, or one that is not valid) rather
/// than "not allowed" or "bad request".
pub(crate) fn wants_sign_in(e: &ProxyError) -> bool {
    matches!(
        e,
        ProxyError::Auth(AuthError::Missing | AuthError::InvalidToken(_))
    )
}

/// Where the sign-in page is, returning to `path` (and `query`) afterwards.
pub(crate) fn sign_in_location(mount: &str, path: &str, query: Option<&str>) -> String {
    let mut target = String::with_capacity(path.len() + 1 + query.map_or(0, str::len));
    target.push_str(path);
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    let encoded: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
    format!("{mount}/sign-in?return_to={encoded}")
}

/// A response sending the browser to `location` (with `status`: 303, or 401 for a proxy
/// that passes only 401 on), never cached.
pub(crate) fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut resp = Response::new(Body::full(bytes::Bytes::new()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(LOCATION, v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::header_map as headers;

    #[test]
    fn only_page_loads_are_navigations() {
        let nav = headers(&[("sec-fetch-mode", "navigate"), ("accept", "text/html")]);
        assert!(is_navigation(&Method::GET, &nav));
        assert!(is_navigation(&Method::HEAD, &nav));
        assert!(!is_navigation(&Method::POST, &nav));
        // fetch() from a page accepts anything but is not a navigation.
        let fetch = headers(&[("sec-fetch-mode", "cors"), ("accept", "text/html")]);
        assert!(!is_navigation(&Method::GET, &fetch));
        // An older browser: Accept decides.
        let old = headers(&[(
            "accept",
            "application/xhtml+xml, text/html;q=0.9, */*;q=0.8",
        )]);
        assert!(is_navigation(&Method::GET, &old));
        assert!(!is_navigation(&Method::GET, &headers(&[("accept", "*/*")])));
        assert!(!is_navigation(
            &Method::GET,
            &headers(&[("accept", "application/json")])
        ));
        // A program with a (stale) credential gets its 401.
        let api = headers(&[("accept", "text/html"), ("authorization", "Bearer x")]);
        assert!(!is_navigation(&Method::GET, &api));
    }

    #[test]
    fn the_return_target_is_encoded_whole() {
        assert_eq!(
            sign_in_location("/auth", "/app/x", Some("a=1&b=/c")),
            "/auth/sign-in?return_to=%2Fapp%2Fx%3Fa%3D1%26b%3D%2Fc"
        );
    }
}
