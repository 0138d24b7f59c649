//! Header hygiene for forwarded requests and returned responses: hop-by-hop headers out
//! (including every header `Connection` names), every client copy of an identity or
//! forwarding header out (under any spelling that a backend might fold into the same name),
//! then the verified values in. Injection always comes last, so nothing a client sends can
//! remove or replace what Portcullis sets.

use http::header::{CONNECTION, UPGRADE};

use super::client::{ConnInfo, X_FORWARDED_FOR, joined};
use crate::proxy::hop_by_hop::{connection_named, is_hop_by_hop};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::IdentityHeaderNames;
use crate::identity::{AuthMethod, Identity};

mod cookies;
mod request_id;
pub use cookies::drop_session_cookies;
use cookies::{join_cookies, strip_credential_cookies};
pub use request_id::{X_REQUEST_ID, request_id};

static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The signed identity assertion (routes with `identity_assertion = true`).
pub static X_PORTCULLIS_ASSERTION: HeaderName = HeaderName::from_static("x-portcullis-assertion");

/// Headers a client must not smuggle in, on any route: the forwarding headers Portcullis
/// sets itself, and those other proxies, auth proxies and frameworks read as the client's
/// address, the original URL, the scheme, a verified user or the real method
/// (oauth2-proxy, nginx `auth_request`, Apache `REMOTE_USER`, IIS URL rewriting, Spring's
/// forwarded-header filter, Rails, CDNs' client-address headers, method-override
/// middleware, ...).
const UNTRUSTED: [&str; 34] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-real-ip",
    "forwarded",
    "x-remote-user",
    "remote-user",
    "x-authenticated-user",
    "x-request-id",
    "x-forwarded-preferred-username",
    "x-portcullis-assertion",
    // The client's address as CDNs and load balancers pass it; a backend that rate-limits
    // or allow-lists by one of these would believe the client.
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    // The scheme and host as other proxies pass them (Rails reads X-Forwarded-Ssl and
    // X-Forwarded-Scheme, Tornado X-Scheme).
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-scheme",
    "x-forwarded-server",
    "x-original-host",
    // A method other than the one a route's `methods` were checked against: frameworks'
    // method-override middleware would run a DELETE that Portcullis let through as a GET.
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Name prefixes removed likewise (oauth2-proxy's `X-Auth-Request-User`, `-Email`, ...).
const UNTRUSTED_PREFIXES: [&str; 1] = ["x-auth-request-"];

/// Credential headers, removed unless the route forwards credentials.
const CREDENTIAL_HEADERS: [&str; 2] = ["authorization", "x-api-key"];

/// Compares a (lower-case) header name with a canonical one, treating `_` and `.` as `-`.
fn same_folded(name: &[u8], canonical: &[u8]) -> bool {
    name.len() == canonical.len() && starts_folded(name, canonical)
}

/// Whether a header name starts with a canonical prefix, under the same folding.
fn starts_folded(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len()
        && name.iter().zip(prefix).all(|(a, b)| {
            let a = match a {
                b'_' | b'.' => b'-',
                other => other.to_ascii_lowercase(),
            };
            a == *b
        })
}

/// The header-name lists a route needs, prepared once at start-up.
pub struct HeaderPolicy {
    names: IdentityHeaderNames,
    /// Canonical spellings of every protected name (identity, forwarding, other proxies'
    /// identity headers, and the configured extras).
    protected: Vec<Vec<u8>>,
    /// Canonical prefixes of protected names.
    protected_prefixes: Vec<Vec<u8>>,
    /// Bit `n` (63 for 63 and more) is set when a protected name is `n` bytes long: most
    /// header names are ruled out by one test instead of a comparison per protected name.
    lengths: u64,
    /// The shortest protected prefix.
    shortest_prefix: usize,
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

fn canonical(name: &str) -> Vec<u8> {
    name.to_ascii_lowercase()
        .replace(['_', '.'], "-")
        .into_bytes()
}

impl HeaderPolicy {
    /// The name lists for these identity header names (and `also_remove`).
    pub fn new(names: IdentityHeaderNames) -> HeaderPolicy {
        let mut protected: Vec<Vec<u8>> = [
            &names.user_id,
            &names.email,
            &names.role,
            &names.auth_method,
            &names.key_id,
        ]
        .iter()
        .map(|n| canonical(n.as_str()))
        .collect();
        protected.extend(UNTRUSTED.iter().map(|n| n.as_bytes().to_vec()));
        let mut protected_prefixes: Vec<Vec<u8>> = UNTRUSTED_PREFIXES
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        for extra in &names.also_remove {
            match extra.strip_suffix('*') {
                Some(prefix) => protected_prefixes.push(canonical(prefix)),
                None => protected.push(canonical(extra)),
            }
        }
        HeaderPolicy {
            lengths: protected
                .iter()
                .fold(0, |bits, p| bits | length_bit(p.len())),
            shortest_prefix: protected_prefixes
                .iter()
                .map(Vec::len)
                .min()
                .unwrap_or(usize::MAX),
            names,
            protected,
            protected_prefixes,
        }
    }

    /// True if `name` is, under folding, one of the names Portcullis sets or refuses to
    /// pass on.
    pub fn is_protected(&self, name: &HeaderName) -> bool {
        let bytes = name.as_str().as_bytes();
        (self.lengths & length_bit(bytes.len()) != 0
            && self.protected.iter().any(|p| same_folded(bytes, p)))
            || (bytes.len() >= self.shortest_prefix
                && self
                    .protected_prefixes
                    .iter()
                    .any(|p| starts_folded(bytes, p)))
    }

    /// Whether a field the client sent must not reach the upstream: hop-by-hop, protected
    /// (any spelling), or a credential (unless the route forwards credentials). Request
    /// headers and request trailers go through the same test.
    pub(crate) fn must_not_pass(
        &self,
        name: &HeaderName,
        forward_credentials: bool,
        upgrade: bool,
    ) -> bool {
        let credential = !forward_credentials
            && CREDENTIAL_HEADERS
                .iter()
                .any(|c| same_folded(name.as_str().as_bytes(), c.as_bytes()));
        credential || is_hop_by_hop(name, upgrade) || self.is_protected(name)
    }

    /// The identity headers as a forward-auth answer carries them, for the proxy to copy.
    pub(crate) fn identity_fields(
        &self,
        identity: &Identity,
        method: AuthMethod,
        out: &mut HeaderMap,
    ) {
        let n = &self.names;
        out.insert(n.user_id.clone(), identity.header_user_id.clone());
        out.insert(n.email.clone(), identity.header_email.clone());
        out.insert(n.role.clone(), identity.header_role.clone());
        out.insert(
            n.auth_method.clone(),
            HeaderValue::from_static(method.as_str()),
        );
        if let Some(key_id) = &identity.header_key_id {
            out.insert(n.key_id.clone(), key_id.clone());
        }
    }

    /// Rewrites a request's headers for the upstream: removes what must not pass, and
    /// returns the verified identity and forwarding headers to write after the rest.
    pub fn prepare_request<'a>(
        &'a self,
        headers: &mut HeaderMap,
        ctx: &Forwarding<'a>,
    ) -> Injected<'a> {
        let conn = ctx.conn;
        // Values a trusted proxy set, read before everything client-supplied is dropped.
        let prior_for = conn
            .trusted
            .then(|| joined(headers, &X_FORWARDED_FOR))
            .flatten();
        let prior_proto = conn
            .trusted
            .then(|| headers.get(&X_FORWARDED_PROTO).cloned())
            .flatten();
        let prior_host = conn
            .trusted
            .then(|| headers.get(&X_FORWARDED_HOST).cloned())
            .flatten();
        let forwarded_host = super::host::forwarded(prior_host, headers);

        // One pass over the names: hop-by-hop, protected (any spelling), credentials.
        // `Vec::new` does not allocate; the common request has nothing to remove.
        let mut doomed: Vec<HeaderName> = Vec::new();
        connection_named(headers, ctx.upgrade, &mut doomed);
        for name in headers.keys() {
            if self.must_not_pass(name, ctx.forward_credentials, ctx.upgrade) {
                doomed.push(name.clone());
            }
        }
        for name in doomed {
            headers.remove(name);
        }
        if ctx.upgrade {
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        }
        if ctx.forward_credentials {
            unindexed_credentials(headers);
        } else {
            strip_credential_cookies(headers);
        }
        join_cookies(headers);

        Injected {
            names: &self.names,
            identity: ctx.identity,
            forwarded_for: prior_for.map(|prior| append_hop(&prior, &conn.peer_ip)),
            peer_ip: &conn.peer_ip,
            forwarded_proto: prior_proto,
            forwarded_host,
            request_id: ctx.request_id,
            assertion: ctx.assertion,
        }
    }
}

/// The headers Portcullis sets on a forwarded request. They are written straight into the
/// upstream request head after the request's own headers, none of which can share their
/// names (`prepare_request` removed every spelling of them).
pub struct Injected<'a> {
    names: &'a IdentityHeaderNames,
    identity: Option<(&'a Identity, AuthMethod)>,
    /// A trusted proxy's `X-Forwarded-For` with the peer appended; `None`: the peer alone.
    forwarded_for: Option<HeaderValue>,
    peer_ip: &'a HeaderValue,
    /// A trusted proxy's `X-Forwarded-Proto`; `None`: `http`.
    forwarded_proto: Option<HeaderValue>,
    forwarded_host: Option<HeaderValue>,
    request_id: &'a HeaderValue,
    assertion: Option<&'a HeaderValue>,
}

/// A field's value: one Portcullis holds, or a fixed word.
enum Value<'a> {
    Held(&'a HeaderValue),
    /// Held, and kept out of HTTP/2's header compression table: this request's own (its id,
    /// new every time, would only push the recurring fields out of the table) or a
    /// credential (the identity assertion; RFC 7541 §7.1.3).
    Unindexed(&'a HeaderValue),
    Fixed(&'static str),
}

impl Injected<'_> {
    /// The fields, in order, as their names and values are held.
    fn visit(&self, mut field: impl FnMut(&HeaderName, Value<'_>)) {
        if let Some((identity, method)) = self.identity {
            field(&self.names.user_id, Value::Held(&identity.header_user_id));
            field(&self.names.email, Value::Held(&identity.header_email));
            field(&self.names.role, Value::Held(&identity.header_role));
            field(&self.names.auth_method, Value::Fixed(method.as_str()));
            if let Some(key_id) = &identity.header_key_id {
                field(&self.names.key_id, Value::Held(key_id));
            }
        }
        let forwarded_for = self.forwarded_for.as_ref().unwrap_or(self.peer_ip);
        field(&X_FORWARDED_FOR, Value::Held(forwarded_for));
        let proto = self
            .forwarded_proto
            .as_ref()
            .map_or(Value::Fixed("http"), Value::Held);
        field(&X_FORWARDED_PROTO, proto);
        if let Some(host) = &self.forwarded_host {
            field(&X_FORWARDED_HOST, Value::Held(host));
        }
        field(&X_REQUEST_ID, Value::Unindexed(self.request_id));
        if let Some(assertion) = self.assertion {
            field(&X_PORTCULLIS_ASSERTION, Value::Unindexed(assertion));
        }
    }
}

impl crate::proxy::ExtraFields for Injected<'_> {
    fn each_field(&self, mut field: impl FnMut(&[u8], &[u8])) {
        self.visit(|name, value| {
            let value = match value {
                Value::Held(v) | Value::Unindexed(v) => v.as_bytes(),
                Value::Fixed(s) => s.as_bytes(),
            };
            field(name.as_str().as_bytes(), value);
        });
    }

    fn each_header(&self, mut field: impl FnMut(HeaderName, HeaderValue)) {
        self.visit(|name, value| {
            let value = match value {
                Value::Held(v) => v.clone(),
                Value::Unindexed(v) => {
                    let mut v = v.clone();
                    v.set_sensitive(true);
                    v
                }
                Value::Fixed(s) => HeaderValue::from_static(s),
            };
            field(name.clone(), value);
        });
    }
}

/// What `prepare_request` needs to know about this request.
pub struct Forwarding<'a> {
    /// The client connection.
    pub conn: &'a ConnInfo,
    /// The verified identity to inject, and how it was proven.
    pub identity: Option<(&'a Identity, AuthMethod)>,
    /// The request's id.
    pub request_id: &'a HeaderValue,
    /// The route forwards the client's credentials.
    pub forward_credentials: bool,
    /// A WebSocket upgrade the route allows: keep `Upgrade` and `Connection: upgrade`.
    pub upgrade: bool,
    /// The signed identity assertion, on routes that send one.
    pub assertion: Option<&'a HeaderValue>,
}

fn append_hop(prior: &HeaderValue, hop: &HeaderValue) -> HeaderValue {
    let mut all = Vec::with_capacity(prior.len() + 2 + hop.len());
    all.extend_from_slice(prior.as_bytes());
    all.extend_from_slice(b", ");
    all.extend_from_slice(hop.as_bytes());
    HeaderValue::from_bytes(&all).unwrap_or_else(|_| hop.clone())
}

/// Whether the request is a WebSocket handshake (RFC 6455 §4.1): a GET whose `Upgrade`
/// names `websocket` and whose `Connection` names `upgrade`. It is the only upgrade
/// Portcullis tunnels; any other (`h2c`, say) has its `Upgrade` removed and is proxied as a
/// plain request.
pub fn is_websocket_upgrade(method: &http::Method, headers: &HeaderMap) -> bool {
    let tokens = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    *method == http::Method::GET
        && tokens(UPGRADE).any(|t| t.eq_ignore_ascii_case("websocket"))
        && tokens(CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// Marks the credential headers a route forwards sensitive, so HTTP/2 sends them as
/// never-indexed literals, out of the compression table the connection's other requests
/// share (h2 does so for `Authorization` and `Cookie` on its own; not for `X-API-Key`).
fn unindexed_credentials(headers: &mut HeaderMap) {
    for (name, value) in headers.iter_mut() {
        if CREDENTIAL_HEADERS
            .iter()
            .any(|c| same_folded(name.as_str().as_bytes(), c.as_bytes()))
        {
            value.set_sensitive(true);
        }
    }
}

#[cfg(test)]
mod tests;
