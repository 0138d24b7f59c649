//! The accept loop: a bound listener, a connection limit, hyper-util's auto builder
//! (HTTP/1.1 and h2, upgrades allowed), a header-read timeout, and a graceful drain on
//! shutdown. Knows nothing about routes or credentials.

use std::future::Future;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::AppState;
use crate::config::ServerConfig;
use crate::http::headers::ConnInfo;

/// Serves until `shutdown` resolves; then stops accepting and gives open connections up to
/// `shutdown_grace` to finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    cfg: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let graceful = GracefulShutdown::new();
    // Keeps a timer due within a second in the runtime's timer wheel. Tokio wakes its event
    // loop (an eventfd write, then an extra epoll round) whenever a new timer is due before
    // every pending one; hyper's header-read timer and each request's response timer are
    // registered per request, so without an earlier timer most requests paid that system
    // call.
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
        let conn_info = Arc::new(ConnInfo::new(peer, &cfg.trusted_proxies));
        let state = state.clone();
        let metrics = state.metrics.clone();
        let service =
            service_fn(move |req| crate::http::handle(state.clone(), conn_info.clone(), req));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        metrics.connection_opened();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            metrics.connection_closed();
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(cfg.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period elapsed with connections still open");
    }
    anchor.abort();
}
