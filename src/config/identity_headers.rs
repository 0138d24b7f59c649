//! `[identity_headers]`: the names Portcullis injects, which must not collide with framing,
//! hop-by-hop, credential or forwarding headers, nor with each other.

use http::HeaderName;

use super::raw::*;
use super::values::*;
use super::*;

pub(super) fn identity_headers(raw: RawIdentityHeaders) -> Result<IdentityHeaderNames> {
    let name = |key: &str, value: Option<String>, default: &'static str| -> Result<HeaderName> {
        match value {
            None => Ok(HeaderName::from_static(default)),
            Some(v) => HeaderName::try_from(v.as_str()).map_err(|_| {
                ConfigError::invalid(key, format!("{v:?} is not a valid header name"))
            }),
        }
    };
    let names = IdentityHeaderNames {
        user_id: name("identity_headers.user_id", raw.user_id, "x-user-id")?,
        email: name("identity_headers.email", raw.email, "x-user-email")?,
        role: name("identity_headers.role", raw.role, "x-user-role")?,
        auth_method: name(
            "identity_headers.auth_method",
            raw.auth_method,
            "x-auth-method",
        )?,
        key_id: name("identity_headers.key_id", raw.key_id, "x-auth-key-id")?,
        also_remove: raw
            .also_remove
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let bare = n.strip_suffix('*').unwrap_or(n);
                if bare.is_empty() || HeaderName::try_from(bare).is_err() {
                    return Err(ConfigError::invalid(
                        format!("identity_headers.also_remove[{i}]"),
                        format!("{n:?} is not a header name (or a prefix ending in '*')"),
                    ));
                }
                Ok(n.to_ascii_lowercase())
            })
            .collect::<Result<Vec<_>>>()?,
    };
    let all = [
        ("identity_headers.user_id", &names.user_id),
        ("identity_headers.email", &names.email),
        ("identity_headers.role", &names.role),
        ("identity_headers.auth_method", &names.auth_method),
        ("identity_headers.key_id", &names.key_id),
    ];
    for (i, (key, n)) in all.iter().enumerate() {
        let folded = fold_header_name(n.as_str());
        if let Some(reserved) = RESERVED_HEADER_NAMES.iter().find(|r| **r == folded) {
            return Err(ConfigError::invalid(
                *key,
                format!(
                    "{:?} cannot be an identity header: it is {reserved:?}, which frames, \
                     routes or authenticates the request",
                    n.as_str()
                ),
            ));
        }
        if let Some((other, _)) = all[..i]
            .iter()
            .find(|(_, o)| fold_header_name(o.as_str()) == folded)
        {
            return Err(ConfigError::invalid(
                *key,
                format!("{:?} is also used by {other}", n.as_str()),
            ));
        }
    }
    Ok(names)
}

/// Header names an identity header must not take (compared after folding `_` and `.` to
/// `-`, as some servers do): framing, hop-by-hop, routing and credential headers, and the
/// forwarding headers Portcullis sets itself.
const RESERVED_HEADER_NAMES: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "content-type",
    "content-encoding",
    "proxy-authorization",
    "proxy-authenticate",
    "authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "http2-settings",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

fn fold_header_name(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}
