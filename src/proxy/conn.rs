//! One upstream connection: the byte stream (plain TCP or TLS), the bytes read and not yet
//! consumed, a write buffer kept between requests, and the waits a request makes on it —
//! for room to write, or for an answer that comes before the request is complete.

use std::future::{Future as _, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf as _, BytesMut};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

use super::codec;

/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;

type TlsStream = tokio_rustls::client::TlsStream<TokioIo<TokioIo<TcpStream>>>;

/// A byte stream that is plain TCP, or TLS over it: the upstream side here (`Stream`), the
/// client listener's side in `server::tls`. An enum, so a read or write is one match, not a
/// boxed call.
pub(crate) enum PlainOrTls<T> {
    Plain(TcpStream),
    Tls(Box<T>),
}

/// A connected socket to an upstream as the connector hands it over, TLS or not.
pub(super) type UpstreamIo = hyper_rustls::MaybeHttpsStream<TokioIo<TcpStream>>;

/// The connector's socket as this module's `Stream`.
pub(super) fn stream_of(io: UpstreamIo) -> Stream {
    match io {
        hyper_rustls::MaybeHttpsStream::Http(tcp) => Stream::Plain(tcp.into_inner()),
        hyper_rustls::MaybeHttpsStream::Https(tls) => Stream::Tls(Box::new(tls.into_inner())),
    }
}

/// The byte stream to an upstream.
pub(super) type Stream = PlainOrTls<TlsStream>;

impl<T: AsyncRead + Unpin> AsyncRead for PlainOrTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PlainOrTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PlainOrTls::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PlainOrTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PlainOrTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PlainOrTls::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PlainOrTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            PlainOrTls::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            PlainOrTls::Plain(s) => s.is_write_vectored(),
            PlainOrTls::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PlainOrTls::Plain(s) => Pin::new(s).poll_flush(cx),
            PlainOrTls::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PlainOrTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PlainOrTls::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// One upstream connection: its stream, the bytes read but not yet consumed, and a write
/// buffer kept between requests.
pub(super) struct Conn {
    pub(super) stream: Stream,
    pub(super) rbuf: BytesMut,
    pub(super) wbuf: Vec<u8>,
    pub(super) fields: Vec<codec::Field>,
}

impl Conn {
    pub(super) fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(1024),
            fields: Vec::with_capacity(16),
        }
    }

    /// Whether an idle connection can take a request: the upstream has neither closed it
    /// nor sent anything unasked. Looks only at readiness the event loop already has, so a
    /// quiet connection costs no system call.
    pub(super) fn still_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        matches!(
            Pin::new(&mut self.stream).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }

    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 2 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let read = self.stream.read_buf(&mut self.rbuf);
        std::pin::pin!(read).poll(cx)
    }

    pub(super) async fn fill(&mut self) -> io::Result<usize> {
        poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Ready when a final answer has started to arrive before the request was completely
    /// sent. Interim answers (`100 Continue` to an `Expect`, say) are dropped: they ask for
    /// the rest of the request.
    pub(super) fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match codec::leading(&self.rbuf) {
                codec::Leading::Interim(len) => {
                    self.rbuf.advance(len);
                    continue;
                }
                codec::Leading::Final => return Poll::Ready(Ok(())),
                codec::Leading::Undecided => {}
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Writes `buf`. While the socket takes no more, watches for the upstream answering
    /// before the request is complete (an early 413 or 401, say): `Ok(false)` then, with
    /// the answer's first bytes in `rbuf`.
    pub(super) async fn send(&mut self, mut buf: &[u8]) -> io::Result<bool> {
        poll_fn(|cx| {
            loop {
                if buf.is_empty() {
                    return Poll::Ready(Ok(true));
                }
                match Pin::new(&mut self.stream).poll_write(cx, buf) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => buf = &buf[n..],
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return self.poll_answer(cx).map_ok(|()| false),
                }
            }
        })
        .await
    }

    /// Sends the buffered bytes; `Ok(false)`: the upstream answered first.
    pub(super) async fn flush_wbuf(&mut self) -> io::Result<bool> {
        let mut wbuf = std::mem::take(&mut self.wbuf);
        let sent = self.send(&wbuf).await;
        wbuf.clear();
        self.wbuf = wbuf;
        if !sent? {
            return Ok(false);
        }
        self.stream.flush().await?;
        Ok(true)
    }
}
