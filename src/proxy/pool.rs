//! One route's upstream: how to reach it (connector, target, Host), and its stack of idle
//! keep-alive connections, checked for a close before reuse.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderValue, Uri};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tower::ServiceExt as _;

use super::UpstreamError;
use super::conn::{Conn, UpstreamIo, stream_of};
use super::h2::H2Pool;
use crate::config::{RouteConfig, UpstreamProtocol};

/// Idle connections older than this are closed rather than reused (below the common
/// 60–75 s keep-alive timeouts of upstream servers).
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
const MAX_IDLE_PER_ROUTE: usize = 1024;

/// What an `upstream_protocol = "auto"` upstream's ALPN picked, as far as known.
const PICKED_NOTHING_YET: u8 = 0;
const PICKED_HTTP1: u8 = 1;
const PICKED_H2: u8 = 2;

struct Idle {
    conn: Conn,
    since: Instant,
}

/// One route's upstream: how to connect, its Host, the forwarding limits its route sets,
/// and the idle connections.
pub struct Upstream {
    connector: HttpsConnector<HttpConnector>,
    target: Uri,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    host: HeaderValue,
    base_path: String,
    /// The route's `response_timeout` and `max_body_bytes`.
    pub(super) response_timeout: Duration,
    pub(super) max_body_bytes: u64,
    idle: Mutex<Vec<Idle>>,
    /// The shared HTTP/2 connections, for `upstream_protocol = "h2c"`, `"h2"` or `"auto"`.
    pub(super) h2: Option<H2Pool>,
    /// For `"auto"`: `PICKED_*`, what the last connection's ALPN said.
    picked: Option<AtomicU8>,
}

impl Upstream {
    /// The upstream a route forwards to, trusting the public web PKI roots for `https://`.
    pub fn new(route: &RouteConfig) -> Upstream {
        Upstream::build(route, None, None)
    }

    /// With a TLS client configuration of the caller's own (a private root, in tests).
    pub fn with_tls(route: &RouteConfig, tls: &tokio_rustls::rustls::ClientConfig) -> Upstream {
        Upstream::build(route, Some(tls), None)
    }

    /// The upstream as its route configures it: with the route's own CA bundle, client
    /// certificate and server name when it sets them (reading those files now).
    pub fn for_route(route: &RouteConfig) -> Result<Upstream, String> {
        let Some(tls) = &route.upstream.tls else {
            return Ok(Upstream::new(route));
        };
        let config = super::tls::client_config(tls)?;
        let name = match &tls.server_name {
            Some(n) => Some(ServerName::try_from(n.clone()).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(Upstream::build(route, Some(&config), name))
    }

    fn build(
        route: &RouteConfig,
        tls: Option<&tokio_rustls::rustls::ClientConfig>,
        server_name: Option<ServerName<'static>>,
    ) -> Upstream {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(route.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match tls {
            Some(config) => builder.with_tls_config(config.clone()),
            None => builder.with_webpki_roots(),
        };
        let builder = builder.https_or_http();
        let builder = match server_name {
            Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
            None => builder,
        };
        let protocol = route.upstream.protocol;
        // ALPN offers what the route speaks: `h2` alone, `h2` then `http/1.1` ("auto"), or
        // nothing (HTTP/1.1).
        let connector = match protocol {
            UpstreamProtocol::H2 => builder.enable_http2().wrap_connector(http),
            UpstreamProtocol::Auto => builder.enable_all_versions().wrap_connector(http),
            UpstreamProtocol::Http1 | UpstreamProtocol::H2c => {
                builder.enable_http1().wrap_connector(http)
            }
        };
        let target = Uri::builder()
            .scheme(route.upstream.scheme.clone())
            .authority(route.upstream.authority.clone())
            .path_and_query("/")
            .build()
            .unwrap_or_default();
        let authority = route.upstream.authority.as_str();
        Upstream {
            connector,
            target,
            scheme: route.upstream.scheme.clone(),
            authority: route.upstream.authority.clone(),
            // An `http::uri::Authority` is always a valid header value.
            host: HeaderValue::from_str(authority)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            base_path: route.upstream.base_path.clone(),
            response_timeout: route.response_timeout,
            max_body_bytes: route.max_body_bytes,
            idle: Mutex::new(Vec::new()),
            h2: protocol.is_h2().then(H2Pool::default),
            picked: (protocol == UpstreamProtocol::Auto).then(|| AtomicU8::new(PICKED_NOTHING_YET)),
        }
    }

    /// `http` or `https`.
    pub(super) fn scheme(&self) -> &http::uri::Scheme {
        &self.scheme
    }

    /// The upstream URL's host and port.
    pub(super) fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }

    /// Whether requests go over HTTP/2 (on an "auto" route: unless the upstream picked
    /// HTTP/1.1).
    pub fn is_h2(&self) -> bool {
        self.h2.is_some()
            && self
                .picked
                .as_ref()
                .is_none_or(|p| p.load(Ordering::Relaxed) != PICKED_HTTP1)
    }

    /// An "auto" route that has not connected yet: `learn_protocol` before forwarding.
    pub fn protocol_unknown(&self) -> bool {
        self.picked
            .as_ref()
            .is_some_and(|p| p.load(Ordering::Relaxed) == PICKED_NOTHING_YET)
    }

    /// For an "auto" route: connects once to learn what the upstream's ALPN picks. The
    /// connection is kept, among the HTTP/2 connections or the idle HTTP/1.1 ones. Failed
    /// attempts back off as HTTP/2 connects do: meanwhile requests fail at once (502)
    /// instead of each trying, and waiting out, a connect of its own.
    pub async fn learn_protocol(&self) -> Result<(), UpstreamError> {
        if let Some(left) = self.h2.as_ref().and_then(H2Pool::backoff_left) {
            return Err(super::h2::backing_off(left));
        }
        let learn = async {
            let io = self.connect_io().await?;
            self.keep_connection(io).await
        };
        let learnt = match tokio::time::timeout(self.response_timeout, learn).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(result) => result,
        };
        // A success was counted where the connection was kept.
        if let (Err(_), Some(pool)) = (&learnt, &self.h2) {
            pool.record_connect(false);
        }
        learnt
    }

    /// Notes what an "auto" route's new connection agreed by ALPN and keeps it where that
    /// protocol's requests will find it; either way the connect succeeded, which ends a
    /// backoff (`H2Pool::adopt` counts it for HTTP/2).
    pub(super) async fn keep_connection(&self, io: UpstreamIo) -> Result<(), UpstreamError> {
        if super::h2::agreed_h2(&io) {
            let send = super::h2::handshake_on(io).await?;
            if let Some(pool) = &self.h2 {
                pool.adopt(send);
            }
            self.note_picked(PICKED_H2);
        } else {
            self.put_idle(Conn::new(stream_of(io)));
            if let Some(pool) = &self.h2 {
                pool.record_connect(true);
            }
            self.note_picked(PICKED_HTTP1);
        }
        Ok(())
    }

    /// Whether this is an "auto" route.
    pub(super) fn is_auto(&self) -> bool {
        self.picked.is_some()
    }

    fn note_picked(&self, what: u8) {
        if let Some(p) = &self.picked
            && p.swap(what, Ordering::Relaxed) != what
        {
            let protocol = if what == PICKED_H2 {
                "HTTP/2"
            } else {
                "HTTP/1.1"
            };
            tracing::info!(upstream = %self.authority, protocol, "the upstream picked a protocol (ALPN)");
        }
    }

    /// The upstream's own `Host` (its URL's authority).
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// The path prefix of the upstream's URL ("" for none).
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// The route's `max_body_bytes`.
    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_bytes
    }

    pub(super) fn pop_idle(&self) -> Option<Conn> {
        loop {
            let entry = self.idle.lock().ok()?.pop()?;
            let mut conn = entry.conn;
            if entry.since.elapsed() < IDLE_TIMEOUT && conn.still_open() {
                return Some(conn);
            }
        }
    }

    pub(super) fn put_idle(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_PER_ROUTE
        {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// A connected socket (TLS done, for `https://`).
    pub(super) async fn connect_io(&self) -> Result<UpstreamIo, UpstreamError> {
        self.connector
            .clone()
            .oneshot(self.target.clone())
            .await
            .map_err(UpstreamError::Connect)
    }

    /// A new HTTP/1.1 connection. On an "auto" route whose upstream has switched to HTTP/2,
    /// the connection joins the HTTP/2 ones and this request fails (the next go there).
    pub(super) async fn connect(&self) -> Result<Conn, UpstreamError> {
        let io = self.connect_io().await?;
        if self.is_auto() && super::h2::agreed_h2(&io) {
            self.keep_connection(io).await?;
            return Err(UpstreamError::Connect(
                "the upstream now picks HTTP/2 (ALPN); the next requests use it".into(),
            ));
        }
        Ok(Conn::new(stream_of(io)))
    }
}
