//! Hop-by-hop headers (RFC 9110 §7.6.1): the fields that describe one connection and never
//! pass a proxy — the standard ones, the usual non-standard ones, and every field a
//! `Connection` header names. The one list both directions use: `http::headers` for
//! requests, the exchange for responses. Pure functions over header maps.

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1 and the usual non-standard ones). `Upgrade` is kept
/// for an allowed WebSocket upgrade.
pub fn is_hop_by_hop(name: &HeaderName, upgrade: bool) -> bool {
    use http::header::{PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING};
    *name == CONNECTION
        || *name == TE
        || *name == TRAILER
        || *name == TRANSFER_ENCODING
        || *name == PROXY_AUTHORIZATION
        || *name == PROXY_AUTHENTICATE
        || (*name == UPGRADE && !upgrade)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
        || name.as_str() == "http2-settings"
}

/// The headers a `Connection` header names (except `upgrade` when upgrading).
pub fn connection_named(headers: &HeaderMap, upgrade: bool, into: &mut Vec<HeaderName>) {
    for value in headers.get_all(CONNECTION) {
        let Ok(text) = value.to_str() else { continue };
        for token in text.split(',').map(str::trim) {
            if token.is_empty() || (upgrade && token.eq_ignore_ascii_case("upgrade")) {
                continue;
            }
            // Looking a `&str` up folds case without allocating; only a header that is
            // present (rare: `keep-alive` and `close` name none) becomes a `HeaderName`.
            if headers.contains_key(token)
                && let Ok(name) = HeaderName::from_bytes(token.as_bytes())
            {
                into.push(name);
            }
        }
    }
}

/// Removes hop-by-hop headers and every header `Connection` names. With `upgrade`, keeps
/// `Upgrade` and sets `Connection: upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    connection_named(headers, upgrade, &mut doomed);
    doomed.extend(
        headers
            .keys()
            .filter(|n| is_hop_by_hop(n, upgrade))
            .cloned(),
    );
    for name in doomed {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::header_map as map;

    #[test]
    fn standard_and_connection_named_fields_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAAA"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, vec!["x-kept"]);
    }

    #[test]
    fn an_upgrade_keeps_upgrade() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
    }
}
