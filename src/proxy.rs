//! Forwarding to upstreams: one pooled hyper-util client per route (HTTP/1.1, keep-alive,
//! `TCP_NODELAY`, per-route connect timeout), streaming bodies both ways, a per-route
//! response timeout, and WebSocket upgrades spliced into a byte tunnel. Never decides who
//! may call what.

use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::config::{RouteConfig, UpstreamConfig};
use crate::http::headers::strip_hop_by_hop;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to upstream: {0}")]
    Connect(#[source] hyper_util::client::legacy::Error),
    #[error("upstream did not answer in time")]
    Timeout,
    #[error("upstream request failed: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

type UpstreamClient = Client<HttpsConnector<HttpConnector>, Incoming>;

pub struct Proxy {
    clients: Vec<UpstreamClient>,
}

fn client_for(route: &RouteConfig) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(route.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https)
}

/// The absolute URI to send upstream: scheme and authority of the upstream, its base path,
/// the (normalized, possibly stripped) request path, and the original query.
pub fn upstream_uri(
    upstream: &UpstreamConfig,
    path: &str,
    query: Option<&str>,
) -> Result<Uri, UpstreamError> {
    let mut pq = String::with_capacity(
        upstream.base_path.len() + path.len() + 1 + query.map_or(0, str::len),
    );
    pq.push_str(&upstream.base_path);
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    let pq = PathAndQuery::from_maybe_shared(Bytes::from(pq))
        .map_err(|e| UpstreamError::Other(Box::new(e)))?;
    Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|e| UpstreamError::Other(Box::new(e)))
}

impl Proxy {
    pub fn new(routes: &[RouteConfig]) -> Proxy {
        Proxy {
            clients: routes.iter().map(client_for).collect(),
        }
    }

    /// Sends a prepared request to route `index`'s upstream. With `upgrade`, a `101` reply
    /// turns both connections into one byte tunnel.
    pub async fn forward(
        &self,
        index: usize,
        route: &RouteConfig,
        mut req: Request<Incoming>,
        upgrade: bool,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let Some(client) = self.clients.get(index) else {
            return Err(UpstreamError::Other("route has no client".into()));
        };
        *req.version_mut() = Version::HTTP_11;
        if !route.preserve_host || !req.headers().contains_key(http::header::HOST) {
            let host = if route.preserve_host {
                req.uri().authority().map(|a| a.as_str().to_owned())
            } else {
                None
            }
            .unwrap_or_else(|| route.upstream.authority.as_str().to_owned());
            if let Ok(v) = HeaderValue::from_str(&host) {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let sent = tokio::time::timeout(route.response_timeout, client.request(req)).await;
        let mut resp = match sent {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err(e)) if e.is_connect() => return Err(UpstreamError::Connect(e)),
            Ok(Err(e)) => return Err(UpstreamError::Other(Box::new(e))),
            Ok(Ok(resp)) => resp,
        };
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        strip_hop_by_hop(resp.headers_mut(), switching && upgrade);
        if let (true, Some(client_side)) = (switching, client_upgrade) {
            let upstream_side = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                match tokio::try_join!(client_side, upstream_side) {
                    Ok((client_io, upstream_io)) => {
                        let mut a = TokioIo::new(client_io);
                        let mut b = TokioIo::new(upstream_io);
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str) -> UpstreamConfig {
        let text = format!("[[routes]]\nname = \"r\"\nprefix = \"/\"\nupstream = \"{url}\"\n");
        crate::config::Config::from_toml(&text, Vec::new())
            .unwrap()
            .routes
            .remove(0)
            .upstream
    }

    #[test]
    fn builds_upstream_uris() {
        let plain = upstream("http://127.0.0.1:9000");
        assert_eq!(
            upstream_uri(&plain, "/a/b", Some("x=1&y")).unwrap(),
            "http://127.0.0.1:9000/a/b?x=1&y"
        );
        assert_eq!(
            upstream_uri(&plain, "/", None).unwrap(),
            "http://127.0.0.1:9000/"
        );
        let based = upstream("https://api.internal/v2/");
        assert_eq!(
            upstream_uri(&based, "/users", None).unwrap(),
            "https://api.internal/v2/users"
        );
        assert_eq!(
            upstream_uri(&based, "/", None).unwrap(),
            "https://api.internal/v2/"
        );
    }
}
