//! The client connection's byte stream: the bytes read while telling HTTP/1.1 from HTTP/2,
//! handed back to the protocol before the socket's own; the requests in progress on it; the
//! HTTP/1.1 request-head deadline; and the bound on a write the client does not take.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use super::tls::ClientStream;
use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
pub(super) const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which protocol the first bytes announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http1,
    Http2,
}

/// Reads until the first bytes tell the protocol apart: the HTTP/2 preface in full, or any
/// byte that differs from it. `Ok(None)`: the client closed first. The caller bounds the
/// time this may take.
pub(super) async fn sniff<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> io::Result<Option<(Protocol, BytesMut)>> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(Some((Protocol::Http1, buf)));
        }
        if n == H2_PREFACE.len() {
            return Ok(Some((Protocol::Http2, buf)));
        }
    }
}

/// Requests in progress on a connection (a request counts until its response body is
/// finished or dropped), and since when there have been none.
pub(super) struct Activity {
    active: AtomicUsize,
    /// Requests begun on this connection so far.
    begun: AtomicU64,
    /// Milliseconds after `origin` at which `active` last dropped to zero.
    idle_since_ms: AtomicU64,
    origin: Instant,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            active: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    pub(super) fn begin(self: &Arc<Activity>) -> InFlight {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.begun.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    fn begun(&self) -> u64 {
        self.begun.load(Ordering::Acquire)
    }

    fn busy(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    /// How long the connection has had nothing in progress; `None` while a request is.
    pub(super) fn idle_for(&self) -> Option<Duration> {
        if self.busy() {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.origin.elapsed().saturating_sub(since))
    }
}

/// One request in progress; dropping it ends it.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        if a.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            let ms = u64::try_from(a.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
            a.idle_since_ms.store(ms, Ordering::Release);
        }
    }
}

/// The deadline for an HTTP/1.1 request head: it starts with the head's first byte (so a
/// quiet keep-alive connection is bounded by `idle_timeout`, not by this) and is cleared
/// when the request begins.
struct HeadDeadline {
    timeout: Duration,
    /// Armed while a head is arriving: the number of requests begun before it, so that
    /// the request it becomes disarms it.
    armed: Option<u64>,
    sleep: Pin<Box<Sleep>>,
}

/// The client connection's byte stream: first the bytes read while telling the protocols
/// apart, then the socket's. For HTTP/1.1 it also enforces the head deadline: a client that
/// starts a request head must finish it within `header_read_timeout`, or the read fails.
pub(super) struct ClientIo {
    prefix: BytesMut,
    inner: ClientStream,
    activity: Arc<Activity>,
    head: Option<HeadDeadline>,
    send: SendDeadline,
}

/// The bound on a write the client does not take: a client that stops reading (a slow-read
/// attack, or one gone without a FIN) fails the connection after `send_timeout` without
/// progress, instead of holding it.
struct SendDeadline {
    timeout: Duration,
    /// Armed while a write waits for the client; made on the first wait.
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl SendDeadline {
    /// Passes a write's outcome through, arming the deadline while it waits and failing it
    /// once the deadline passes.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.armed = false;
            return polled;
        }
        let timeout = self.timeout;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if !self.armed {
            self.armed = true;
            sleep.as_mut().reset(Instant::now() + timeout);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took nothing for send_timeout",
            )));
        }
        Poll::Pending
    }
}

impl ClientIo {
    /// `head_timeout`: HTTP/1.1's `header_read_timeout`, already running for the first
    /// head (the sniffed bytes are its start); `None` for HTTP/2.
    pub(super) fn new(
        prefix: BytesMut,
        inner: ClientStream,
        activity: Arc<Activity>,
        head_timeout: Option<(Duration, Instant)>,
        send_timeout: Duration,
    ) -> ClientIo {
        ClientIo {
            prefix,
            inner,
            activity,
            send: SendDeadline {
                timeout: send_timeout,
                sleep: None,
                armed: false,
            },
            head: head_timeout.map(|(timeout, deadline)| HeadDeadline {
                timeout,
                armed: Some(0),
                sleep: Box::pin(tokio::time::sleep_until(deadline)),
            }),
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let Some(head) = this.head.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        let begun = this.activity.begun();
        if head.armed.is_some_and(|at| at != begun) {
            // The head became a request.
            head.armed = None;
        }
        if this.activity.busy() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if head.armed.is_none() && buf.filled().len() > before {
            // The first byte of the next request head.
            head.armed = Some(begun);
            let deadline = Instant::now() + head.timeout;
            head.sleep.as_mut().reset(deadline);
        }
        if polled.is_pending() && head.armed.is_some() && head.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not completed within header_read_timeout",
            )));
        }
        polled
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.send.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.send.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn tells_the_protocols_apart_and_replays_what_it_read() {
        let (mut client, mut server) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let (proto, prefix) = sniff(&mut server).await.unwrap().unwrap();
        assert_eq!(proto, Protocol::Http1);
        let mut rewound = ClientIo::new(
            prefix,
            ClientStream::Plain(server),
            Arc::new(Activity::new()),
            None,
            Duration::from_secs(5),
        );
        client.write_all(b"Host: x\r\n\r\n").await.unwrap();
        drop(client);
        let mut all = Vec::new();
        rewound.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");

        // The preface arriving in pieces is still HTTP/2.
        let (mut client, mut server) = pair().await;
        let task = tokio::spawn(async move { sniff(&mut server).await.unwrap() });
        client.write_all(&H2_PREFACE[..3]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        client.write_all(&H2_PREFACE[3..]).await.unwrap();
        let (proto, prefix) = task.await.unwrap().unwrap();
        assert_eq!(proto, Protocol::Http2);
        assert_eq!(&prefix[..], &H2_PREFACE[..]);

        // "PRX" differs from the preface at its third byte.
        let (mut client, mut server) = pair().await;
        client.write_all(b"PRX").await.unwrap();
        assert_eq!(
            sniff(&mut server).await.unwrap().unwrap().0,
            Protocol::Http1
        );

        // A client that closes before deciding.
        let (mut client, mut server) = pair().await;
        client.write_all(b"P").await.unwrap();
        drop(client);
        assert!(sniff(&mut server).await.unwrap().is_none());
    }
}
