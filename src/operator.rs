//! The operator listener, separate from client traffic: `/healthz` (the process is up),
//! `/readyz` (the store answers; Redis is reported), `/metrics` (Prometheus text),
//! `/throttled` (the keys this process refused most lately, JSON). Nothing here
//! authenticates, so bind it where only operators and the orchestrator can reach it.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::http::AppState;
use crate::http::body::Body;

/// How long a client of the operator listener has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp
}

/// Ready once the listener serves (configuration, keys, store and migrations are done by
/// then) and while the store answers; Redis being down makes it degraded, not unready —
/// identities then come from the store, which is slower but correct.
async fn readiness(state: &AppState) -> Response<Body> {
    let store = match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            "unavailable"
        }
        Err(_) => "timed out",
    };
    let redis = match &state.redis {
        None => "not configured",
        Some(tier) if tier.ping(READY_TIMEOUT).await => "ok",
        Some(_) => "unreachable (degraded: identities come from the store)",
    };
    let (status, verdict) = match (store, redis.starts_with("unreachable")) {
        ("ok", false) => (StatusCode::OK, "ready"),
        ("ok", true) => (StatusCode::OK, "ready, degraded"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not ready"),
    };
    let body = format!("{verdict}\nstore: {store}\nredis: {redis}\n");
    text(status, "text/plain", body)
}

/// `GET /throttled?limit=N` (default 20, at most 1000): the keys this process refused
/// most in the last hour, most first, and the refusals of keys it had no room to track.
fn throttled(state: &AppState, query: Option<&str>) -> Response<Body> {
    let limit = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(20)
        .min(1000);
    let (top, untracked) = state.throttle.top(limit);
    let body = serde_json::json!({
        "scope": "this replica",
        "window": "last hour",
        "top": top,
        "untracked_refusals": untracked,
    });
    text(StatusCode::OK, "application/json", body.to_string())
}

async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    Ok(match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => readiness(&state).await,
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.metrics.render(),
        ),
        "/throttled" => throttled(&state, req.uri().query()),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
        };
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), req));
            let builder = auto::Builder::new(TokioExecutor::new());
            match tls {
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    if let Ok(Ok(tls)) = handshake.await {
                        let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                    }
                }
            }
        });
    }
}
