//! Cookies on their way through: the session cookies kept from upstreams in both
//! directions (a request's removed unless the route forwards credentials; a response's
//! `Set-Cookie` for them never reaches the client), and HTTP/2's split `Cookie` fields
//! joined for HTTP/1.1 upstreams.

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

use crate::auth::credentials::{ACCESS_COOKIE, REFRESH_COOKIE};

/// Removes an upstream response's `Set-Cookie` fields for Portcullis's own session cookies
/// (`access_token`, `refresh_token`): only the account API issues them. An upstream that
/// set one could sign the browser into another account (session fixation) or end its
/// session. Its other cookies pass untouched.
pub fn drop_session_cookies(headers: &mut HeaderMap) {
    fn sets_session_cookie(v: &HeaderValue) -> bool {
        let bytes = v.as_bytes();
        let Some(eq) = bytes.iter().position(|b| *b == b'=') else {
            return false;
        };
        let name = bytes[..eq].trim_ascii();
        name == ACCESS_COOKIE.as_bytes() || name == REFRESH_COOKIE.as_bytes()
    }
    if !headers.get_all(SET_COOKIE).iter().any(sets_session_cookie) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| !sets_session_cookie(v))
        .cloned()
        .collect();
    headers.remove(SET_COOKIE);
    for v in kept {
        headers.append(SET_COOKIE, v);
    }
}

/// Drops the `access_token` and `refresh_token` cookies, keeping the rest.
pub(super) fn strip_credential_cookies(headers: &mut HeaderMap) {
    let is_credential = |n: &str| n == ACCESS_COOKIE || n == REFRESH_COOKIE;
    let (mut credentials, mut others) = (0, 0);
    for (n, _) in crate::auth::credentials::cookies(headers) {
        if is_credential(n) {
            credentials += 1;
        } else {
            others += 1;
        }
    }
    if credentials == 0 {
        return;
    }
    if others == 0 {
        // Only credentials (the usual API client): nothing to rebuild.
        headers.remove(COOKIE);
        return;
    }
    let kept: Vec<String> = crate::auth::credentials::cookies(headers)
        .filter(|(n, _)| !is_credential(n))
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(COOKIE, v);
    }
}

/// Joins several `Cookie` fields into one, separated by `; ` (RFC 9113 §8.2.3: HTTP/2
/// clients may split cookies across fields; an HTTP/1.1 request carries one).
pub(super) fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let mut all: Vec<u8> = Vec::new();
    for v in headers.get_all(COOKIE) {
        if !all.is_empty() {
            all.extend_from_slice(b"; ");
        }
        all.extend_from_slice(v.as_bytes());
    }
    headers.remove(COOKIE);
    if let Ok(v) = HeaderValue::from_bytes(&all) {
        headers.insert(COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_cannot_set_the_session_cookies() {
        let mut h = HeaderMap::new();
        for v in [
            "access_token=planted; Path=/; HttpOnly",
            "theme=dark; Path=/",
            " refresh_token =planted; Path=/api/v1/auth",
            "access_tokenx=1",
            "Access_Token=other-cookie",
            "no-equals-sign",
        ] {
            h.append(SET_COOKIE, HeaderValue::from_static(v));
        }
        drop_session_cookies(&mut h);
        let left: Vec<&str> = h
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        // Cookie names are case-sensitive: `Access_Token` is not the session cookie.
        assert_eq!(
            left,
            [
                "theme=dark; Path=/",
                "access_tokenx=1",
                "Access_Token=other-cookie",
                "no-equals-sign"
            ]
        );
        // Without a session cookie among them, the fields are left as they were.
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_static("a=1"));
        h.append(SET_COOKIE, HeaderValue::from_static("b=2"));
        drop_session_cookies(&mut h);
        assert_eq!(h.get_all(SET_COOKIE).iter().count(), 2);
    }
}
