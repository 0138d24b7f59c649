//! Finding the credential in a request: `Authorization: Bearer`, `X-API-Key`, or the
//! `access_token` cookie, plus the CSRF rule for cookie-authenticated unsafe requests.
//! Borrows from the request; allocates nothing.

use http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use http::{HeaderMap, HeaderName, Method};

use super::{AuthError, api_key};

use crate::config::Origins;
use crate::identity::{AuthMethod, CredentialKind};
/// The cookie that carries an access token.
pub const ACCESS_COOKIE: &str = "access_token";
/// The cookie that carries a refresh token (scoped to the account API).
pub const REFRESH_COOKIE: &str = "refresh_token";
/// The header that carries an API key.
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

#[derive(Debug, Clone, Copy)]
/// A credential found in a request, borrowed from it.
pub struct Credential<'a> {
    /// The secret as presented.
    pub secret: &'a str,
    /// What it is verified as (decided by its channel).
    pub kind: CredentialKind,
    /// How it was presented.
    pub method: AuthMethod,
}

/// A credential kept beyond its request (by a WebSocket tunnel, to re-check its caller).
#[derive(Clone)]
pub struct OwnedCredential {
    secret: crate::secret::Secret,
    kind: CredentialKind,
    method: AuthMethod,
}

impl OwnedCredential {
    /// The credential, borrowed again.
    pub fn borrow(&self) -> Credential<'_> {
        Credential {
            secret: self.secret.expose(),
            kind: self.kind,
            method: self.method,
        }
    }
}

impl From<Credential<'_>> for OwnedCredential {
    fn from(c: Credential<'_>) -> OwnedCredential {
        OwnedCredential {
            secret: crate::secret::Secret::new(c.secret.to_owned()),
            kind: c.kind,
            method: c.method,
        }
    }
}

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::ConflictingCredentials);
    }
    first
        .to_str()
        .map(|s| Some(s.trim()))
        .map_err(|_| AuthError::Malformed("credential header is not ASCII"))
}

/// Iterates `name=value` pairs across every `Cookie` header.
pub fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.trim(), value.trim().trim_matches('"')))
        })
}

/// The one value of cookie `name`; several different values are a conflict.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthError> {
    let mut found: Option<&str> = None;
    for (n, v) in cookies(headers) {
        if n == name && !v.is_empty() {
            match found {
                Some(prev) if prev != v => return Err(AuthError::ConflictingCredentials),
                _ => found = Some(v),
            }
        }
    }
    Ok(found)
}

fn kind_of(secret: &str) -> CredentialKind {
    if api_key::looks_like_key(secret) {
        CredentialKind::ApiKey
    } else {
        CredentialKind::AccessToken
    }
}

/// The request's credential, if any. Two different credentials are refused: a request must
/// be unambiguous about who it is.
pub fn extract(headers: &HeaderMap) -> Result<Option<Credential<'_>>, AuthError> {
    let bearer = match single(headers, &AUTHORIZATION)? {
        None => None,
        Some(value) => match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                let token = token.trim();
                if token.is_empty() {
                    return Err(AuthError::Malformed("empty bearer token"));
                }
                Some(token)
            }
            // Another scheme (Basic, say) is not ours to judge; it is never forwarded unless
            // the route forwards credentials.
            _ => None,
        },
    };
    let header_key = single(headers, &X_API_KEY)?.filter(|k| !k.is_empty());
    let cookie_token = cookie(headers, ACCESS_COOKIE)?;

    let mut chosen: Option<Credential<'_>> = None;
    let candidates = [
        bearer.map(|t| (t, kind_of(t), AuthMethod::Jwt)),
        header_key.map(|k| (k, CredentialKind::ApiKey, AuthMethod::ApiKey)),
        cookie_token.map(|t| (t, CredentialKind::AccessToken, AuthMethod::Cookie)),
    ];
    for (secret, kind, method) in candidates.into_iter().flatten() {
        let method = if kind == CredentialKind::ApiKey {
            AuthMethod::ApiKey
        } else {
            method
        };
        match chosen {
            None => {
                chosen = Some(Credential {
                    secret,
                    kind,
                    method,
                })
            }
            // The same token twice (bearer and cookie from one browser client) is one
            // credential; the first source named wins.
            Some(c) if c.secret == secret => {}
            Some(_) => return Err(AuthError::ConflictingCredentials),
        }
    }
    Ok(chosen)
}

/// The query parameter RFC 6750 §2.3 defines for bearer tokens.
const QUERY_CREDENTIAL: &[u8] = b"access_token";

/// Whether a query string carries a credential (`access_token=`, under any percent-encoding
/// or letter case of the name). Such requests are refused: a token in a URL ends up in logs
/// and `Referer` headers, and forwarding it beside a verified header credential would let the
/// upstream act on the wrong one.
pub fn query_has_credential(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n).as_bytes();
        let mut decoded = [0u8; QUERY_CREDENTIAL.len()];
        let mut len = 0;
        let mut i = 0;
        while i < name.len() {
            if len == decoded.len() {
                return false;
            }
            let b = match name[i] {
                b'%' => {
                    let hex = name
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok());
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(v) => {
                            i += 2;
                            v
                        }
                        None => return false,
                    }
                }
                b'+' => b' ',
                other => other,
            };
            decoded[len] = b.to_ascii_lowercase();
            len += 1;
            i += 1;
        }
        decoded[..len] == *QUERY_CREDENTIAL
    })
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The CSRF rule for cookie-authenticated requests: unsafe methods must come from the
/// request's own origin or a configured one, shown by `Sec-Fetch-Site` or `Origin`.
pub fn check_csrf(
    method: &Method,
    headers: &HeaderMap,
    allowed_origins: &Origins,
) -> Result<(), AuthError> {
    if is_safe(method) {
        return Ok(());
    }
    check_origin(headers, allowed_origins)
}

/// The origin half of the CSRF rule, for any request a browser could be tricked into
/// sending with the user's cookie: unsafe methods, and WebSocket handshakes (a GET, but one
/// that opens a two-way channel — cross-site WebSocket hijacking).
pub fn check_origin(headers: &HeaderMap, allowed_origins: &Origins) -> Result<(), AuthError> {
    if let Some(site) = headers.get(&SEC_FETCH_SITE).and_then(|v| v.to_str().ok())
        && (site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none"))
    {
        return Ok(());
    }
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Err(AuthError::CsrfRejected);
    };
    let origin = origin.trim_end_matches('/');
    if allowed_origins.allows(origin) {
        return Ok(());
    }
    let origin_authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    match (origin_authority, host) {
        (Some(a), Some(h)) if a.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(AuthError::CsrfRejected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::header_map as headers;

    #[test]
    fn finds_each_source() {
        let key = api_key::generate().key;
        let h = headers(&[("authorization", "Bearer abc.def.ghi")]);
        let c = extract(&h).unwrap().unwrap();
        assert_eq!(
            (c.secret, c.kind, c.method),
            ("abc.def.ghi", CredentialKind::AccessToken, AuthMethod::Jwt)
        );
        let auth = format!("bearer {key}");
        let h = headers(&[("authorization", &auth)]);
        let c = extract(&h).unwrap().unwrap();
        assert_eq!(
            (c.kind, c.method),
            (CredentialKind::ApiKey, AuthMethod::ApiKey)
        );
        let h = headers(&[("x-api-key", &key)]);
        assert_eq!(extract(&h).unwrap().unwrap().method, AuthMethod::ApiKey);
        let h = headers(&[("cookie", "theme=dark; access_token=t.o.k; other=1")]);
        let c = extract(&h).unwrap().unwrap();
        assert_eq!((c.secret, c.method), ("t.o.k", AuthMethod::Cookie));
        assert!(
            extract(&headers(&[("authorization", "Basic dXM6cHc=")]))
                .unwrap()
                .is_none()
        );
        assert!(extract(&HeaderMap::new()).unwrap().is_none());
    }

    #[test]
    fn different_credentials_conflict() {
        let key = api_key::generate().key;
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![("authorization", "Bearer a.b.c"), ("x-api-key", &key)],
            vec![
                ("authorization", "Bearer a.b.c"),
                ("cookie", "access_token=x.y.z"),
            ],
            vec![
                ("authorization", "Bearer a.b.c"),
                ("authorization", "Bearer a.b.c"),
            ],
            vec![("cookie", "access_token=a"), ("cookie", "access_token=b")],
            vec![("x-api-key", "a"), ("x-api-key", "b")],
        ];
        for case in cases {
            assert!(
                matches!(
                    extract(&headers(&case)),
                    Err(AuthError::ConflictingCredentials)
                ),
                "{case:?}"
            );
        }
        // The same token as bearer and cookie is one credential.
        let same = headers(&[
            ("authorization", "Bearer a.b.c"),
            ("cookie", "access_token=a.b.c"),
        ]);
        assert_eq!(extract(&same).unwrap().unwrap().method, AuthMethod::Jwt);
    }

    #[test]
    fn query_credentials_are_found_under_any_spelling() {
        for q in [
            "access_token=x",
            "a=1&access_token=x",
            "ACCESS_TOKEN=x",
            "access%5Ftoken=x",
            "%61ccess_token=x&b",
            "access_token",
            "access_token=",
        ] {
            assert!(query_has_credential(q), "{q}");
        }
        for q in [
            "",
            "token=x",
            "access_tokens=x",
            "my_access_token=x",
            "x=access_token",
            "access%5",
            "access_toke%6",
        ] {
            assert!(!query_has_credential(q), "{q}");
        }
    }

    #[test]
    fn csrf_rules() {
        let allowed = crate::config::Config::from_toml(
            "[cors]\nallowed_origins = [\"https://app.example.com\"]\n",
            Vec::new(),
        )
        .unwrap()
        .csrf
        .allowed_origins;
        let ok =
            |pairs: &[(&str, &str)]| check_csrf(&Method::POST, &headers(pairs), &allowed).is_ok();
        assert!(check_csrf(&Method::GET, &HeaderMap::new(), &allowed).is_ok());
        assert!(!ok(&[]));
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(!ok(&[("sec-fetch-site", "cross-site")]));
        assert!(ok(&[("origin", "https://app.example.com")]));
        assert!(ok(&[
            ("origin", "http://api.local:8080"),
            ("host", "api.local:8080")
        ]));
        assert!(!ok(&[
            ("origin", "https://evil.example"),
            ("host", "api.local")
        ]));
        assert!(!ok(&[("origin", "null"), ("host", "api.local")]));
        assert!(!ok(&[
            ("sec-fetch-site", "same-site"),
            ("origin", "https://evil.example")
        ]));
    }
}
