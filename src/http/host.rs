//! The request's host, in one place: one `Host` value, syntactically valid, agreeing with
//! the request target's authority, before anything routes on it or checks an origin against
//! it; the host routes match on; the `Host` the upstream receives; and `X-Forwarded-Host`.
//! Never decides what a host may reach (that is `routes`).

use http::header::HOST;
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Version};

/// Why a request's host is refused (a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostError {
    #[error("the request has no Host header")]
    Missing,
    #[error("the request has more than one Host header")]
    Repeated,
    #[error("the Host header is not a valid host")]
    Invalid,
    #[error("the request target's authority is not a valid host")]
    InvalidAuthority,
    #[error(":authority and Host disagree")]
    Disagree,
}

/// Makes `headers` carry exactly the request's one valid host: for HTTP/1.1 the `Host`
/// header, replaced by the target's authority when the target is in absolute form (RFC 9112
/// §3.2.2); for HTTP/2 `:authority`, which a `host` field must agree with (RFC 9113
/// §8.3.1). HTTP/1.0 requests may have no host.
pub(crate) fn settle(
    version: Version,
    authority: Option<&Authority>,
    headers: &mut HeaderMap,
) -> Result<(), HostError> {
    let mut values = headers.get_all(HOST).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(HostError::Repeated);
    }
    if let Some(v) = first
        && !is_valid(v.as_bytes())
    {
        return Err(HostError::Invalid);
    }
    let Some(authority) = authority else {
        return match (first, version) {
            (Some(_), _) => Ok(()),
            (None, Version::HTTP_10 | Version::HTTP_09) => Ok(()),
            (None, _) => Err(HostError::Missing),
        };
    };
    let text = authority.as_str();
    if !is_valid(text.as_bytes()) {
        return Err(HostError::InvalidAuthority);
    }
    if version == Version::HTTP_2
        && let Some(v) = first
        && !v.as_bytes().eq_ignore_ascii_case(text.as_bytes())
    {
        return Err(HostError::Disagree);
    }
    if first.is_none_or(|v| v.as_bytes() != text.as_bytes()) {
        // The authority wins (absolute form), or supplies the Host an HTTP/1.1 upstream
        // needs (HTTP/2). Rare, so the allocation does not matter.
        let value = HeaderValue::from_str(text).map_err(|_| HostError::InvalidAuthority)?;
        headers.insert(HOST, value);
    }
    Ok(())
}

/// `host [":" port]` where host is a reg-name of letters, digits, `-`, `.` and `_`, or an
/// IPv6 literal in brackets, and port is a decimal number up to 65535.
pub(crate) fn is_valid(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..end];
        let ok = std::str::from_utf8(literal)
            .ok()
            .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
            .is_some();
        if !ok {
            return false;
        }
        match &value[end + 1..] {
            [] => (&value[..=end], None),
            [b':', port @ ..] => (&value[..=end], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        }
    };
    let host_ok = host.first() == Some(&b'[')
        || (!host.is_empty()
            && host.len() <= 255
            && host
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            && !host.starts_with(b".")
            && !host.windows(2).any(|w| w == b".."));
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.iter().all(u8::is_ascii_digit)
            && p.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65_535
    });
    host_ok && port_ok
}

/// The host to match routes against: the settled `Host` without its port or a trailing
/// dot (`api.example.com.:443` matches `api.example.com`).
pub(crate) fn for_matching(headers: &HeaderMap) -> Option<&str> {
    let host = headers.get(HOST)?.to_str().ok()?;
    let without_port = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    Some(without_port.strip_suffix('.').unwrap_or(without_port))
}

/// Sets the `Host` the upstream receives: the client's (already settled) when the route
/// preserves it and there is one, else the upstream's own.
pub(crate) fn for_upstream(headers: &mut HeaderMap, preserve: bool, upstream_host: &HeaderValue) {
    if !preserve || !headers.contains_key(HOST) {
        headers.insert(HOST, upstream_host.clone());
    }
}

/// The `X-Forwarded-Host` to send: a trusted proxy's, else the client's settled `Host`.
pub(crate) fn forwarded(
    trusted_prior: Option<HeaderValue>,
    headers: &HeaderMap,
) -> Option<HeaderValue> {
    trusted_prior.or_else(|| headers.get(HOST).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(
        version: Version,
        target: &str,
        hosts: &[&str],
    ) -> Result<Option<String>, HostError> {
        let uri: http::Uri = target.parse().unwrap();
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(HOST, HeaderValue::from_str(h).unwrap());
        }
        settle(version, uri.authority(), &mut headers)?;
        Ok(headers.get(HOST).map(|v| v.to_str().unwrap().to_string()))
    }

    #[test]
    fn valid_hosts() {
        for ok in [
            "a",
            "api.example.com",
            "api.example.com.",
            "api.example.com:8080",
            "my_service:0",
            "127.0.0.1:65535",
            "[::1]",
            "[::1]:443",
            "[2001:db8::1]:8080",
        ] {
            assert!(is_valid(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "a, b",
            "x@y",
            "x/../admin",
            "a:99999",
            "a:123456",
            "a:",
            "a:-1",
            "a b",
            ":80",
            ".",
            "a..b",
            "[::1",
            "[nope]",
            "[::1]x",
            "a:80:80",
            "a%2eb",
            "a\\b",
        ] {
            assert!(!is_valid(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn http1_needs_exactly_one_valid_host() {
        let v = Version::HTTP_11;
        assert_eq!(
            settled(v, "/x", &["a.example"]).unwrap().as_deref(),
            Some("a.example")
        );
        assert_eq!(settled(v, "/x", &[]), Err(HostError::Missing));
        assert_eq!(settled(v, "/x", &["a", "b"]), Err(HostError::Repeated));
        assert_eq!(settled(v, "/x", &["a", "a"]), Err(HostError::Repeated));
        assert_eq!(settled(v, "/x", &["a, b"]), Err(HostError::Invalid));
        assert_eq!(settled(Version::HTTP_10, "/x", &[]).unwrap(), None);
    }

    #[test]
    fn an_absolute_target_replaces_host() {
        let v = Version::HTTP_11;
        assert_eq!(
            settled(v, "http://real.example:8080/x", &["other.example"])
                .unwrap()
                .as_deref(),
            Some("real.example:8080")
        );
        assert_eq!(
            settled(v, "http://real.example/x", &[]).unwrap().as_deref(),
            Some("real.example")
        );
        assert_eq!(
            settled(v, "http://user@real.example/x", &["real.example"]),
            Err(HostError::InvalidAuthority)
        );
    }

    #[test]
    fn h2_authority_and_host_must_agree() {
        let v = Version::HTTP_2;
        assert_eq!(
            settled(v, "https://a.example/x", &[]).unwrap().as_deref(),
            Some("a.example")
        );
        assert_eq!(
            settled(v, "https://a.example/x", &["A.example"])
                .unwrap()
                .as_deref(),
            Some("a.example")
        );
        assert_eq!(
            settled(v, "https://a.example/x", &["b.example"]),
            Err(HostError::Disagree)
        );
    }

    #[test]
    fn matching_drops_port_and_trailing_dot() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("Api.Example.com.:443"));
        assert_eq!(for_matching(&h), Some("Api.Example.com"));
        h.insert(HOST, HeaderValue::from_static("[::1]:80"));
        assert_eq!(for_matching(&h), Some("[::1]"));
    }
}
