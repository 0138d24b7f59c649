//! Forwarding to upstreams. Each route keeps a pool of keep-alive HTTP/1.1 connections
//! (`TCP_NODELAY`, per-route connect timeout, TLS for `https://`). The task serving the client
//! connection writes the request and reads the response itself — no connection task per
//! upstream connection and no channels between tasks, so a proxied request costs the four
//! socket calls it needs and little else. Bodies stream both ways; a connection goes back to
//! its pool when its response body has been read to the end. WebSocket upgrades become a
//! byte tunnel. Never decides who may call what.

mod body;
pub(crate) mod codec;
mod conn;
mod exchange;
mod grpc;
mod h2;
pub mod hop_by_hop;
mod limited;
mod pool;
#[cfg(test)]
mod tests;
mod tls;
mod tunnel;

pub use body::UpstreamBody;
pub(crate) use conn::PlainOrTls;
pub(crate) use grpc::is_grpc;
pub use pool::Upstream;
pub use tunnel::{Tunnel, TunnelLimits};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};

use self::codec::ResponseHead;
use self::exchange::{BodyLimits, exchange};
use self::hop_by_hop::strip_hop_by_hop;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why forwarding a request failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection to the upstream (refused, unreachable, TLS failed, connect timeout).
    #[error("cannot connect to upstream: {0}")]
    Connect(#[source] BoxError),
    /// No response head within the route's `response_timeout`.
    #[error("upstream did not answer in time")]
    Timeout,
    /// Writing the request or reading the response failed on the connection.
    #[error("upstream connection failed: {0}")]
    Io(#[source] std::io::Error),
    /// The upstream closed the connection without answering.
    #[error("upstream closed the connection without answering")]
    Closed,
    /// The upstream's answer is not HTTP/1.1 as it must be.
    #[error(transparent)]
    Malformed(#[from] codec::Malformed),
    /// `101 Switching Protocols` to a request that asked for no upgrade.
    #[error("upstream switched protocols without being asked")]
    UnaskedSwitch,
    /// The forwarded target is not a valid request target.
    #[error("cannot build the upstream request target: {0}")]
    Target(#[source] http::uri::InvalidUri),
    /// The client's request body, not the upstream, failed: a 4xx, never counted as an
    /// upstream failure.
    #[error(transparent)]
    Client(#[from] BodyError),
}

/// What can go wrong with the request body the client sends.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Bad chunked framing, a truncated body, too many chunk extensions, ...
    #[error("malformed request body: {0}")]
    Malformed(#[source] BoxError),
    /// No body bytes arrived for `server.body_read_timeout`.
    #[error("the request body stopped arriving")]
    Timeout,
    /// More than the route's `max_body_bytes`.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
}

/// The forwarding engine: sends prepared requests to an `Upstream` (which a route carries)
/// within the server's limits on what the client sends.
pub struct Proxy {
    limits: ProxyLimits,
}

/// Time bounds on what the client sends through the proxy.
#[derive(Debug, Clone, Copy)]
pub struct ProxyLimits {
    /// The longest wait for the client's next request-body bytes.
    pub body_read_timeout: Duration,
    /// Bounds on WebSocket tunnels.
    pub tunnel: TunnelLimits,
}

impl ProxyLimits {
    /// The limits `[server]` sets.
    pub fn from_config(cfg: &crate::config::ServerConfig) -> ProxyLimits {
        ProxyLimits {
            body_read_timeout: cfg.body_read_timeout,
            tunnel: TunnelLimits {
                idle: cfg.tunnel_idle_timeout,
                max_lifetime: cfg.tunnel_max_lifetime,
            },
        }
    }
}

/// Header fields to send after a forwarded request's own: the identity and forwarding
/// headers, handed over as (name, value) pairs that never pass through a `HeaderMap`. Only
/// the proxy writes them on the wire.
pub trait ExtraFields: Sync {
    /// Calls `field` once per (name, value), in order.
    fn each_field(&self, field: impl FnMut(&[u8], &[u8]));

    /// The same fields as header entries, for the HTTP/2 path (which needs a header map).
    /// By default each is parsed from its bytes; an implementor that holds `HeaderName`s and
    /// `HeaderValue`s hands out clones, which share their bytes, and marks sensitive the
    /// values HTTP/2's header compression must not index (one request's own, credentials).
    fn each_header(&self, mut field: impl FnMut(http::HeaderName, http::HeaderValue)) {
        self.each_field(|name, value| {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name),
                http::HeaderValue::from_bytes(value),
            ) {
                field(n, v);
            }
        });
    }
}

/// No extra fields.
impl ExtraFields for () {
    fn each_field(&self, _: impl FnMut(&[u8], &[u8])) {}
}

pub use codec::write_extra_fields;

/// The origin-form target to send upstream: the upstream's base path, the (normalized,
/// possibly stripped) request path, and the original query.
pub fn upstream_target(
    base_path: &str,
    path: &str,
    query: Option<&str>,
) -> Result<Uri, UpstreamError> {
    let mut pq =
        String::with_capacity(base_path.len() + path.len() + 1 + query.map_or(0, str::len));
    pq.push_str(base_path);
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    let pq = PathAndQuery::from_maybe_shared(Bytes::from(pq)).map_err(UpstreamError::Target)?;
    Ok(Uri::from(pq))
}

impl Proxy {
    /// A proxy within these limits.
    pub fn new(limits: ProxyLimits) -> Proxy {
        Proxy { limits }
    }

    /// Sends a prepared request (origin-form URI, hop-by-hop headers removed, `Host` set)
    /// to `upstream`, with `extra`'s fields after its own. With `tunnel` (an allowed
    /// WebSocket handshake), a `101` reply turns both connections into one byte tunnel,
    /// which `tunnel.revoked` can close.
    pub async fn forward<B>(
        &self,
        upstream: &Arc<Upstream>,
        mut req: Request<B>,
        extra: &impl ExtraFields,
        tunnel: Option<Tunnel>,
    ) -> Result<Response<UpstreamBody>, UpstreamError>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        if let Some(pool) = &upstream.h2
            && upstream.is_h2()
        {
            // Boxed: only HTTP/2 routes pay for its larger future.
            let (resp, active) = Box::pin(h2::forward(
                upstream,
                pool,
                req,
                extra,
                self.limits.body_read_timeout,
            ))
            .await?;
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers, false);
            parts.version = Version::HTTP_11;
            return Ok(Response::from_parts(parts, UpstreamBody::h2(body, active)));
        }
        let upgrade = tunnel.is_some();
        let client_upgrade = tunnel.map(|t| (hyper::upgrade::on(&mut req), t));
        let (mut parts, mut body) = req.into_parts();
        let framing = codec::request_framing(
            &mut parts.headers,
            body.is_end_stream(),
            body.size_hint().exact(),
        );
        let limits = BodyLimits {
            max_bytes: upstream.max_body_bytes,
            idle: self.limits.body_read_timeout,
        };
        let exchange = async {
            let mut started = false;
            let (mut conn, reused) = match upstream.pop_idle() {
                Some(conn) => (conn, true),
                // Boxed: connecting is rare, and its future would otherwise enlarge every
                // request's.
                None => (Box::pin(upstream.connect()).await?, false),
            };
            // A pooled connection the upstream closed under the request is replaced once.
            let mut may_retry = reused;
            loop {
                let sent = exchange(
                    &mut conn,
                    &parts,
                    extra,
                    &mut body,
                    framing,
                    limits,
                    &mut started,
                )
                .await;
                match sent {
                    Ok(head) => return Ok((conn, head)),
                    Err(e) if may_retry && e.retryable(&parts.method, started) => {
                        conn = Box::pin(upstream.connect()).await?;
                        may_retry = false;
                    }
                    Err(e) => return Err(e.into_upstream()),
                }
            }
        };
        let (conn, head) = match tokio::time::timeout(upstream.response_timeout, exchange).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(result) => result?,
        };
        let ResponseHead {
            status,
            mut headers,
            framing,
            keep_alive,
        } = head;
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        strip_hop_by_hop(&mut headers, switching && upgrade);
        let body = if switching {
            let Some((client_side, tunnel)) = client_upgrade else {
                return Err(UpstreamError::UnaskedSwitch);
            };
            tunnel::splice(client_side, conn, tunnel, self.limits.tunnel);
            UpstreamBody::empty()
        } else {
            let pool = keep_alive.then(|| upstream.clone());
            UpstreamBody::new(conn, framing, pool)
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.version_mut() = Version::HTTP_11;
        *resp.headers_mut() = headers;
        Ok(resp)
    }
}
