//! WebSocket tunnels: after a `101`, the client and upstream connections are spliced into
//! one byte stream, bounded in idle time and in total lifetime, and closed the moment the
//! caller says its principal lost the right to it (a revocation). Carries bytes; never
//! looks at them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::time::Instant;

use super::conn::Conn;

/// What ends a tunnel besides its own close.
pub struct Tunnel {
    /// Resolves when the tunnel must close (its principal was revoked).
    pub revoked: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Kept alive as long as the tunnel (the client connection's slot).
    pub hold: Box<dyn Send + Sync>,
}

impl Tunnel {
    /// A tunnel that only its own close, idleness or age ends.
    pub fn unwatched(hold: impl Send + Sync + 'static) -> Tunnel {
        Tunnel {
            revoked: Box::pin(std::future::pending()),
            hold: Box::new(hold),
        }
    }
}

/// Time bounds on a tunnel.
#[derive(Debug, Clone, Copy)]
pub struct TunnelLimits {
    /// Closed after this long without bytes either way.
    pub idle: Duration,
    /// Closed after this long, whatever the traffic.
    pub max_lifetime: Duration,
}

/// When either side last sent bytes, in milliseconds after `origin`.
struct LastActivity {
    origin: Instant,
    ms: AtomicU64,
}

impl LastActivity {
    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.ms.store(ms, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let at = Duration::from_millis(self.ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(at)
    }
}

/// A stream that records when bytes arrive on it.
struct Watched<S> {
    io: S,
    last: Arc<LastActivity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.last.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Resolves once nothing has arrived on either side for `idle`.
async fn until_idle(last: &LastActivity, idle: Duration) {
    loop {
        let quiet = last.quiet_for();
        if quiet >= idle {
            return;
        }
        tokio::time::sleep(idle - quiet).await;
    }
}

/// Splices the upgraded client connection and the upstream connection, on a task of its own.
pub(super) fn splice(
    client: hyper::upgrade::OnUpgrade,
    upstream: Conn,
    tunnel: Tunnel,
    limits: TunnelLimits,
) {
    tokio::spawn(async move {
        let Tunnel { revoked, hold } = tunnel;
        let client = match client.await {
            Ok(io) => io,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        // Bytes the upstream sent right after its 101 belong to the tunnel.
        if !upstream.rbuf.is_empty() && client.write_all(&upstream.rbuf).await.is_err() {
            return;
        }
        let last = Arc::new(LastActivity {
            origin: Instant::now(),
            ms: AtomicU64::new(0),
        });
        let mut client = Watched {
            io: client,
            last: last.clone(),
        };
        let mut upstream = Watched {
            io: upstream.stream,
            last: last.clone(),
        };
        let ended = tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => "closed",
            () = until_idle(&last, limits.idle) => "idle",
            () = tokio::time::sleep(limits.max_lifetime) => "lifetime",
            () = revoked => "revoked",
        };
        tracing::debug!(ended, "tunnel ended");
        drop(hold);
    });
}
