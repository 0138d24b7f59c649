//! Forwarding to upstreams: per route, a pool of keep-alive HTTP/1.1 connections (hyper's
//! connection-level client, `TCP_NODELAY`, per-route connect timeout, TLS for `https://`),
//! streaming bodies both ways, a per-route response timeout, and WebSocket upgrades spliced
//! into a byte tunnel. A connection goes back to its pool when the response body has been
//! streamed to the end. Never decides who may call what.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tower::ServiceExt as _;

use crate::config::RouteConfig;
use crate::http::headers::strip_hop_by_hop;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Idle connections older than this are closed rather than reused (below the common
/// 60–75 s keep-alive timeouts of upstream servers).
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
const MAX_IDLE_PER_ROUTE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to upstream: {0}")]
    Connect(#[source] BoxError),
    #[error("upstream did not answer in time")]
    Timeout,
    #[error("upstream request failed: {0}")]
    Other(#[source] BoxError),
}

struct Idle {
    conn: SendRequest<Incoming>,
    since: Instant,
}

/// One route's upstream: how to connect, and the idle connections.
pub struct Upstream {
    connector: HttpsConnector<HttpConnector>,
    target: Uri,
    idle: Mutex<Vec<Idle>>,
}

impl Upstream {
    fn new(route: &RouteConfig) -> Upstream {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(route.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let target = Uri::builder()
            .scheme(route.upstream.scheme.clone())
            .authority(route.upstream.authority.clone())
            .path_and_query("/")
            .build()
            .unwrap_or_default();
        Upstream {
            connector,
            target,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn pop_idle(&self) -> Option<SendRequest<Incoming>> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(entry) = idle.pop() {
            if !entry.conn.is_closed() && entry.since.elapsed() < IDLE_TIMEOUT {
                return Some(entry.conn);
            }
        }
        None
    }

    fn put_idle(&self, conn: SendRequest<Incoming>) {
        if conn.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_PER_ROUTE
        {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<SendRequest<Incoming>, UpstreamError> {
        let io = self
            .connector
            .clone()
            .oneshot(self.target.clone())
            .await
            .map_err(UpstreamError::Connect)?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Connect(Box::new(e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// A ready connection: a pooled one if any is alive, else a new one.
    async fn checkout(&self) -> Result<SendRequest<Incoming>, UpstreamError> {
        while let Some(mut conn) = self.pop_idle() {
            if conn.ready().await.is_ok() {
                return Ok(conn);
            }
        }
        // Boxed: connecting is rare, and its future would otherwise enlarge every request's.
        Box::pin(self.connect()).await
    }
}

pub struct Proxy {
    upstreams: Vec<Arc<Upstream>>,
}

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
    let pq = PathAndQuery::from_maybe_shared(Bytes::from(pq))
        .map_err(|e| UpstreamError::Other(Box::new(e)))?;
    Ok(Uri::from(pq))
}

impl Proxy {
    pub fn new(routes: &[RouteConfig]) -> Proxy {
        Proxy {
            upstreams: routes.iter().map(|r| Arc::new(Upstream::new(r))).collect(),
        }
    }

    /// Sends a prepared request (origin-form URI) to route `index`'s upstream. With
    /// `upgrade`, a `101` reply turns both connections into one byte tunnel.
    pub async fn forward(
        &self,
        index: usize,
        route: &RouteConfig,
        mut req: Request<Incoming>,
        upgrade: bool,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let Some(upstream) = self.upstreams.get(index) else {
            return Err(UpstreamError::Other("route has no upstream".into()));
        };
        *req.version_mut() = Version::HTTP_11;
        if (!route.preserve_host || !req.headers().contains_key(http::header::HOST))
            && let Ok(v) = HeaderValue::from_str(route.upstream.authority.as_str())
        {
            req.headers_mut().insert(http::header::HOST, v);
        }
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let exchange = async {
            let mut conn = upstream.checkout().await?;
            match conn.try_send_request(req).await {
                Ok(resp) => Ok((conn, resp)),
                Err(mut e) => match e.take_message() {
                    // Never written (the pooled connection closed under us): one retry on a
                    // fresh connection is safe for any method.
                    Some(req) => {
                        let mut fresh = upstream.connect().await?;
                        let resp = fresh
                            .send_request(req)
                            .await
                            .map_err(|e| UpstreamError::Other(Box::new(e)))?;
                        Ok((fresh, resp))
                    }
                    None => Err(UpstreamError::Other(Box::new(e.into_error()))),
                },
            }
        };
        let (conn, mut resp) = match tokio::time::timeout(route.response_timeout, exchange).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(result) => result?,
        };
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        strip_hop_by_hop(resp.headers_mut(), switching && upgrade);
        if switching {
            if let Some(client_side) = client_upgrade {
                splice(client_side, hyper::upgrade::on(&mut resp));
            }
            // An upgraded connection is never reused.
            return Ok(resp.map(|b| UpstreamBody::new(b, None, upstream.clone())));
        }
        Ok(resp.map(|b| UpstreamBody::new(b, Some(conn), upstream.clone())))
    }
}

fn splice(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        match tokio::try_join!(client, upstream) {
            Ok((client_io, upstream_io)) => {
                let mut a = TokioIo::new(client_io);
                let mut b = TokioIo::new(upstream_io);
                let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
            }
            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
        }
    });
}

pin_project_lite::pin_project! {
    /// An upstream response body. When it has been read to the end, its connection returns
    /// to the pool; dropped early, the connection is closed.
    pub struct UpstreamBody {
        #[pin]
        inner: Incoming,
        conn: Option<SendRequest<Incoming>>,
        upstream: Arc<Upstream>,
    }
}

impl UpstreamBody {
    fn new(inner: Incoming, conn: Option<SendRequest<Incoming>>, upstream: Arc<Upstream>) -> Self {
        let mut body = UpstreamBody {
            inner,
            conn,
            upstream,
        };
        if http_body::Body::is_end_stream(&body.inner) {
            body.release();
        }
        body
    }

    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.upstream.put_idle(conn);
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        // Done when the stream ends, or when the last frame arrives: a server writing a
        // Content-Length body stops polling once it has all the bytes.
        let done = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if done && let Some(conn) = this.conn.take() {
            this.upstream.put_idle(conn);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_origin_form_targets() {
        assert_eq!(
            upstream_target("", "/a/b", Some("x=1&y")).unwrap(),
            "/a/b?x=1&y"
        );
        assert_eq!(upstream_target("", "/", None).unwrap(), "/");
        assert_eq!(upstream_target("/v2", "/users", None).unwrap(), "/v2/users");
        assert_eq!(upstream_target("/v2", "/", None).unwrap(), "/v2/");
    }
}
