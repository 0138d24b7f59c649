//! The client connection: its peer address, whether that peer is a trusted proxy, and the
//! client address to record for a session (the peer, or the right-most untrusted hop a
//! trusted proxy reported).

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

/// Where a trusted proxy reports the client and the hops before it.
pub(super) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Facts about the client connection, computed once per connection.
pub struct ConnInfo {
    /// The connection's peer.
    pub peer: SocketAddr,
    /// The peer address as a header value, IPv4-mapped addresses unmapped.
    pub peer_ip: HeaderValue,
    /// The peer is a trusted proxy: its `X-Forwarded-*` values are believed.
    pub trusted: bool,
    /// The server's hold on the connection (its slot under `max_connections`), released
    /// when the last holder of this `ConnInfo` — the connection, or a tunnel it became —
    /// lets go.
    _slot: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnInfo")
            .field("peer", &self.peer)
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

impl ConnInfo {
    /// The facts about a connection from `peer`.
    pub fn new(peer: SocketAddr, trusted_proxies: &[IpNet]) -> ConnInfo {
        let ip = canonical_ip(peer.ip());
        ConnInfo {
            peer,
            peer_ip: HeaderValue::from_str(&ip.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            trusted: trusted_proxies.iter().any(|net| net.contains(&ip)),
            _slot: None,
        }
    }

    /// Keeps `slot` alive as long as this `ConnInfo`.
    pub fn holding(mut self, slot: impl Send + Sync + 'static) -> ConnInfo {
        self._slot = Some(Box::new(slot));
        self
    }
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client address: the peer, or for a trusted proxy the right-most `X-Forwarded-For`
/// entry that is not itself a trusted proxy. A header from any other peer is ignored.
pub fn client_addr(conn: &ConnInfo, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if conn.trusted
        && let Some(xff) = joined(headers, &X_FORWARDED_FOR)
        && let Ok(text) = xff.to_str()
    {
        for hop in text.rsplit(',').map(str::trim) {
            match hop.parse::<IpAddr>() {
                Ok(ip) if trusted.iter().any(|n| n.contains(&canonical_ip(ip))) => continue,
                Ok(ip) => return canonical_ip(ip),
                Err(_) => break,
            }
        }
    }
    canonical_ip(conn.peer.ip())
}

/// `client_addr` as text, for records (sessions).
pub fn client_ip(conn: &ConnInfo, headers: &HeaderMap, trusted: &[IpNet]) -> String {
    client_addr(conn, headers, trusted).to_string()
}

pub(super) fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?.clone();
    let mut rest = values.peekable();
    if rest.peek().is_none() {
        return Some(first);
    }
    let mut all = first.as_bytes().to_vec();
    for v in rest {
        all.extend_from_slice(b", ");
        all.extend_from_slice(v.as_bytes());
    }
    HeaderValue::from_bytes(&all).ok()
}
