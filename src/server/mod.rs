//! The accept loop: a bound listener, a connection limit, and a graceful drain on shutdown.
//! Each connection is served by `conn` (HTTP/1.1 or HTTP/2, every phase bounded in time, so
//! no client can hold a slot by saying nothing). Knows nothing about routes or credentials.

mod conn;
mod drain;
mod io;
pub(crate) mod tls;

use std::future::Future;
use std::sync::Arc;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::ServerConfig;
use crate::http::AppState;
use crate::http::client::ConnInfo;
use crate::metrics::Metrics;

/// A connection's place under `max_connections`, counted in the open-connections gauge.
/// Released when the connection ends — or, for a connection that became a WebSocket
/// tunnel, when the tunnel ends.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}

fn protocols(cfg: &ServerConfig) -> conn::Protocols {
    let mut http1 = http1::Builder::new();
    // The head deadline is `conn`'s (from a head's first byte, not from the end of the
    // previous response, so keep-alive idleness has its own bound).
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_header_size(cfg.max_header_bytes)
        .keep_alive(true);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(cfg.http2_keepalive_interval)
        .keep_alive_timeout(cfg.http2_keepalive_timeout);
    conn::Protocols {
        http1,
        http2,
        header_read_timeout: cfg.header_read_timeout,
        idle_timeout: cfg.idle_timeout,
        send_timeout: cfg.send_timeout,
    }
}

/// Serves until `shutdown` resolves; then stops accepting and gives open connections up to
/// `shutdown_grace` to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<AppState>,
    cfg: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let protocols = Arc::new(protocols(cfg));
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let drain = Arc::new(drain::Drain::default());
    // Keeps a timer due within a second in the runtime's timer wheel. Tokio wakes its event
    // loop (an eventfd write, then an extra epoll round) whenever a new timer is due before
    // every pending one; the request-head deadline and each request's response timer are
    // set per request, so without an earlier timer most requests paid that system call.
    let anchor = tokio::spawn(async {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
        }
    });
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        state.metrics.connection_opened();
        let slot = Slot {
            _permit: permit,
            metrics: state.metrics.clone(),
        };
        let conn_info = Arc::new(ConnInfo::new(peer, &cfg.trusted_proxies).holding(slot));
        tokio::spawn(conn::serve(
            protocols.clone(),
            stream,
            tls.clone(),
            state.clone(),
            conn_info,
            drain.clone(),
        ));
    }
    drop(listener);
    drain.start();
    // Every slot back means every connection (and tunnel) has ended.
    let all = u32::try_from(cfg.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(cfg.shutdown_grace, limit.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period elapsed with connections still open");
    }
    anchor.abort();
}
