//! One client connection, every phase bounded: the first bytes (HTTP/1.1 or HTTP/2?) and
//! each HTTP/1.1 request head within `header_read_timeout` of their first byte (`io`); the
//! connection closed gracefully once no request has been in progress for `idle_timeout`
//! (HTTP/1.1 keep-alive and HTTP/2 alike), or when the server drains; HTTP/2 peers that stop
//! answering PINGs dropped by hyper (`http2_keepalive_*`). The proxy bounds request bodies
//! and tunnels.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::drain::Drain;
use super::io::{Activity, ClientIo, InFlight, Protocol, sniff};
use super::tls::ClientStream;
use crate::http::AppState;
use crate::http::body::{Body, BoxError};
use crate::http::client::ConnInfo;

/// The protocol builders and time bounds every connection shares.
pub(super) struct Protocols {
    pub http1: http1::Builder,
    pub http2: http2::Builder<TokioExecutor>,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
}

pin_project! {
    /// A response body that keeps its request counted as in progress until it is done.
    pub struct Tracked {
        #[pin]
        inner: Body,
        _in_flight: InFlight,
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A hyper connection future that can be asked to finish gracefully.
trait Graceful: Future {
    fn begin_shutdown(self: Pin<&mut Self>);
}

impl<S> Graceful for http1::UpgradeableConnection<TokioIo<ClientIo>, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = Tracked>,
    S::Error: Into<BoxError>,
{
    fn begin_shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<S> Graceful for http2::Connection<TokioIo<ClientIo>, S, TokioExecutor>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = Tracked>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    fn begin_shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Serves one accepted connection until it ends, idles out, or the server drains.
pub(super) async fn serve(
    protocols: Arc<Protocols>,
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    state: Arc<AppState>,
    conn_info: Arc<ConnInfo>,
    drain: Arc<Drain>,
) {
    let mut subscription = drain.subscribe();
    let head_deadline = Instant::now() + protocols.header_read_timeout;
    // The TLS handshake counts against the same first deadline as the first bytes.
    let mut stream = match tls {
        None => ClientStream::Plain(tcp),
        Some(acceptor) => {
            let handshake = tokio::select! {
                done = tokio::time::timeout_at(head_deadline, acceptor.accept(tcp)) => done,
                _ = &mut subscription.signal => return,
            };
            match handshake {
                Ok(Ok(tls)) => ClientStream::Tls(Box::new(tls)),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            }
        }
    };
    let sniffed = tokio::select! {
        sniffed = tokio::time::timeout_at(head_deadline, sniff(&mut stream)) => sniffed,
        _ = &mut subscription.signal => return,
    };
    let Ok(Ok(Some((protocol, prefix)))) = sniffed else {
        // Silent, too slow to say which protocol, or gone: the slot is freed.
        return;
    };
    let activity = Arc::new(Activity::new());
    let head =
        (protocol == Protocol::Http1).then_some((protocols.header_read_timeout, head_deadline));
    let io = TokioIo::new(ClientIo::new(
        prefix,
        stream,
        activity.clone(),
        head,
        protocols.send_timeout,
    ));
    let tracker = activity.clone();
    let service = service_fn(move |req| {
        let in_flight = tracker.begin();
        let handled = crate::http::handle(state.clone(), conn_info.clone(), req);
        async move {
            let resp = handled.await?;
            Ok::<_, Infallible>(resp.map(|inner| Tracked {
                inner,
                _in_flight: in_flight,
            }))
        }
    });
    match protocol {
        Protocol::Http1 => {
            let conn = protocols
                .http1
                .serve_connection(io, service)
                .with_upgrades();
            drive(conn, &activity, &protocols, &mut subscription.signal).await;
        }
        Protocol::Http2 => {
            let conn = protocols.http2.serve_connection(io, service);
            drive(conn, &activity, &protocols, &mut subscription.signal).await;
        }
    }
}

/// Polls the connection, closing it gracefully when it has been idle for `idle_timeout` or
/// the server drains. A connection asked to close gets `header_read_timeout` to finish what
/// is not in progress yet; one draining for shutdown, until the server stops waiting.
async fn drive<C, E>(
    conn: C,
    activity: &Activity,
    protocols: &Protocols,
    draining: &mut oneshot::Receiver<()>,
) where
    C: Graceful<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let idle = protocols.idle_timeout;
    let check = tokio::time::sleep(idle);
    tokio::pin!(check);
    let idled_out = loop {
        tokio::select! {
            biased;
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut check => match activity.idle_for() {
                Some(quiet) if quiet >= idle => break true,
                Some(quiet) => check.as_mut().reset(Instant::now() + (idle - quiet)),
                None => check.as_mut().reset(Instant::now() + idle),
            },
            _ = &mut *draining => break false,
        }
    };
    conn.as_mut().begin_shutdown();
    if idled_out {
        let _ = tokio::time::timeout(protocols.header_read_timeout, conn).await;
    } else {
        let _ = conn.await;
    }
}
