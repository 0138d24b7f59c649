//! Forwarding to upstreams. Each route keeps a pool of keep-alive HTTP/1.1 connections
//! (`TCP_NODELAY`, per-route connect timeout, TLS for `https://`). The task serving the client
//! connection writes the request and reads the response itself — no connection task per
//! upstream connection and no channels between tasks, so a proxied request costs the four
//! socket calls it needs and little else. Bodies stream both ways; a connection goes back to
//! its pool when its response body has been read to the end. WebSocket upgrades become a
//! byte tunnel. Never decides who may call what.

mod codec;
#[cfg(test)]
mod tests;
mod tunnel;

pub use tunnel::{Tunnel, TunnelLimits};

use std::future::{Future as _, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes, BytesMut};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Frame, SizeHint};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tower::ServiceExt as _;

use self::codec::{BodyFraming, Chunked, Malformed, RequestFraming, ResponseHead, Step};
use crate::config::RouteConfig;
use crate::http::headers::strip_hop_by_hop;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Idle connections older than this are closed rather than reused (below the common
/// 60–75 s keep-alive timeouts of upstream servers).
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
const MAX_IDLE_PER_ROUTE: usize = 1024;
/// Request body data is gathered up to this size before it is written.
const WRITE_BATCH: usize = 16 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to upstream: {0}")]
    Connect(#[source] BoxError),
    #[error("upstream did not answer in time")]
    Timeout,
    #[error("upstream request failed: {0}")]
    Other(#[source] BoxError),
    /// The client's request body, not the upstream, failed: a 4xx, never counted as an
    /// upstream failure.
    #[error(transparent)]
    Client(#[from] BodyError),
}

/// What can go wrong with the request body the client sends.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Bad chunked framing, a truncated body, too many chunk extensions, ...
    #[error("malformed request body: {0}")]
    Malformed(#[source] BoxError),
    /// No body bytes arrived for `server.body_read_timeout`.
    #[error("the request body stopped arriving")]
    Timeout,
    /// More than the route's `max_body_bytes`.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
}

type TlsStream = tokio_rustls::client::TlsStream<TokioIo<TokioIo<TcpStream>>>;

/// The byte stream to an upstream.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// One upstream connection: its stream, the bytes read but not yet consumed, and a write
/// buffer kept between requests.
struct Conn {
    stream: Stream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    fields: Vec<codec::Field>,
}

impl Conn {
    fn new(stream: Stream) -> Conn {
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
    fn still_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        matches!(
            Pin::new(&mut self.stream).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 2 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let read = self.stream.read_buf(&mut self.rbuf);
        std::pin::pin!(read).poll(cx)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Ready when a final answer has started to arrive before the request was completely
    /// sent. Interim answers (`100 Continue` to an `Expect`, say) are dropped: they ask for
    /// the rest of the request.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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
    async fn send(&mut self, mut buf: &[u8]) -> io::Result<bool> {
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
    async fn flush_wbuf(&mut self) -> io::Result<bool> {
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

struct Idle {
    conn: Conn,
    since: Instant,
}

/// One route's upstream: how to connect, its Host, and the idle connections.
pub struct Upstream {
    connector: HttpsConnector<HttpConnector>,
    target: Uri,
    host: Option<HeaderValue>,
    idle: Mutex<Vec<Idle>>,
}

impl Upstream {
    /// `tls`: the client configuration for `https://` upstreams; the public web PKI roots
    /// when `None`.
    fn new(route: &RouteConfig, tls: Option<&tokio_rustls::rustls::ClientConfig>) -> Upstream {
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
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let target = Uri::builder()
            .scheme(route.upstream.scheme.clone())
            .authority(route.upstream.authority.clone())
            .path_and_query("/")
            .build()
            .unwrap_or_default();
        Upstream {
            connector,
            target,
            host: HeaderValue::from_str(route.upstream.authority.as_str()).ok(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn pop_idle(&self) -> Option<Conn> {
        loop {
            let entry = self.idle.lock().ok()?.pop()?;
            let mut conn = entry.conn;
            if entry.since.elapsed() < IDLE_TIMEOUT && conn.still_open() {
                return Some(conn);
            }
        }
    }

    fn put_idle(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_PER_ROUTE
        {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<Conn, UpstreamError> {
        let io = self
            .connector
            .clone()
            .oneshot(self.target.clone())
            .await
            .map_err(UpstreamError::Connect)?;
        let stream = match io {
            MaybeHttpsStream::Http(tcp) => Stream::Plain(tcp.into_inner()),
            MaybeHttpsStream::Https(tls) => Stream::Tls(Box::new(tls.into_inner())),
        };
        Ok(Conn::new(stream))
    }
}

/// Why an exchange failed, and whether it may be retried on a fresh connection.
enum ExchangeError {
    /// Writing the request failed.
    Write(io::Error),
    /// The connection ended (or was reset) before any byte of a response.
    Closed,
    /// The client's body was malformed, too slow or too large.
    Client(BodyError),
    Read(io::Error),
    Protocol(Malformed),
}

impl ExchangeError {
    /// A pooled connection the upstream had already closed. Retried when nothing of the
    /// body was consumed and the request cannot have been acted on twice: the write itself
    /// failed, or the method is idempotent.
    fn retryable(&self, method: &Method, body_started: bool) -> bool {
        !body_started
            && match self {
                ExchangeError::Write(_) => true,
                ExchangeError::Closed => method.is_idempotent(),
                _ => false,
            }
    }

    fn into_upstream(self) -> UpstreamError {
        match self {
            ExchangeError::Write(e) | ExchangeError::Read(e) => UpstreamError::Other(Box::new(e)),
            ExchangeError::Closed => {
                UpstreamError::Other("upstream closed the connection without answering".into())
            }
            ExchangeError::Client(e) => UpstreamError::Client(e),
            ExchangeError::Protocol(e) => UpstreamError::Other(Box::new(e)),
        }
    }
}

pub struct Proxy {
    upstreams: Vec<Arc<Upstream>>,
    limits: ProxyLimits,
}

/// Time bounds on what the client sends through the proxy.
#[derive(Debug, Clone, Copy)]
pub struct ProxyLimits {
    /// The longest wait for the client's next request-body bytes.
    pub body_read_timeout: Duration,
    pub tunnel: TunnelLimits,
}

impl ProxyLimits {
    pub fn from_config(cfg: &crate::config::ServerConfig) -> ProxyLimits {
        ProxyLimits {
            body_read_timeout: cfg.body_read_timeout,
            tunnel: TunnelLimits {
                idle: cfg.tunnel_idle_timeout,
                max_lifetime: cfg.tunnel_max_lifetime,
            },
        }
    }
}

/// Header fields to write after a forwarded request's own: the identity and forwarding
/// headers, which then never pass through a `HeaderMap`.
pub trait ExtraFields: Sync {
    fn write_fields(&self, buf: &mut Vec<u8>);
}

/// No extra fields.
impl ExtraFields for () {
    fn write_fields(&self, _: &mut Vec<u8>) {}
}

pub use codec::write_field;

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
    pub fn new(routes: &[RouteConfig], limits: ProxyLimits) -> Proxy {
        Proxy::build(routes, None, limits)
    }

    /// With a TLS client configuration of the test's own (a private root).
    #[cfg(test)]
    fn with_tls(
        routes: &[RouteConfig],
        tls: tokio_rustls::rustls::ClientConfig,
        limits: ProxyLimits,
    ) -> Proxy {
        Proxy::build(routes, Some(&tls), limits)
    }

    fn build(
        routes: &[RouteConfig],
        tls: Option<&tokio_rustls::rustls::ClientConfig>,
        limits: ProxyLimits,
    ) -> Proxy {
        Proxy {
            upstreams: routes
                .iter()
                .map(|r| Arc::new(Upstream::new(r, tls)))
                .collect(),
            limits,
        }
    }

    /// Sends a prepared request (origin-form URI, hop-by-hop headers removed) to route
    /// `index`'s upstream, with `extra`'s fields after its own. With `tunnel` (an allowed
    /// WebSocket handshake), a `101` reply turns both connections into one byte tunnel,
    /// which `tunnel.revoked` can close.
    pub async fn forward<B>(
        &self,
        index: usize,
        route: &RouteConfig,
        mut req: Request<B>,
        extra: &impl ExtraFields,
        tunnel: Option<Tunnel>,
    ) -> Result<Response<UpstreamBody>, UpstreamError>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let Some(upstream) = self.upstreams.get(index) else {
            return Err(UpstreamError::Other("route has no upstream".into()));
        };
        let upgrade = tunnel.is_some();
        let client_upgrade = tunnel.map(|t| (hyper::upgrade::on(&mut req), t));
        let (mut parts, mut body) = req.into_parts();
        if (!route.preserve_host || !parts.headers.contains_key(http::header::HOST))
            && let Some(host) = &upstream.host
        {
            parts.headers.insert(http::header::HOST, host.clone());
        }
        let framing = codec::request_framing(
            &mut parts.headers,
            body.is_end_stream(),
            body.size_hint().exact(),
        );
        let limits = BodyLimits {
            max_bytes: route.max_body_bytes,
            idle: self.limits.body_read_timeout,
        };
        let exchange = async {
            let mut started = false;
            let (mut conn, reused) = match upstream.pop_idle() {
                Some(conn) => (conn, true),
                // Boxed: connecting is rare, and its future would otherwise enlarge every
                // request's.
                None => (Box::pin(upstream.connect()).await?, false),
            };
            // A pooled connection the upstream closed under the request is replaced once.
            let mut may_retry = reused;
            loop {
                let sent = exchange(
                    &mut conn,
                    &parts,
                    extra,
                    &mut body,
                    framing,
                    limits,
                    &mut started,
                )
                .await;
                match sent {
                    Ok(head) => return Ok((conn, head)),
                    Err(e) if may_retry && e.retryable(&parts.method, started) => {
                        conn = Box::pin(upstream.connect()).await?;
                        may_retry = false;
                    }
                    Err(e) => return Err(e.into_upstream()),
                }
            }
        };
        let (conn, head) = match tokio::time::timeout(route.response_timeout, exchange).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(result) => result?,
        };
        let ResponseHead {
            status,
            mut headers,
            framing,
            keep_alive,
        } = head;
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        strip_hop_by_hop(&mut headers, switching && upgrade);
        let body = if switching {
            let Some((client_side, tunnel)) = client_upgrade else {
                return Err(UpstreamError::Other(
                    "upstream switched protocols without being asked".into(),
                ));
            };
            tunnel::splice(client_side, conn, tunnel, self.limits.tunnel);
            UpstreamBody::empty()
        } else {
            let pool = keep_alive.then(|| upstream.clone());
            UpstreamBody::new(conn, framing, pool)
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.version_mut() = Version::HTTP_11;
        *resp.headers_mut() = headers;
        Ok(resp)
    }
}

/// How much request body a route takes, and how long the client may pause sending it.
#[derive(Debug, Clone, Copy)]
struct BodyLimits {
    max_bytes: u64,
    idle: Duration,
}

/// Writes the request (head and body) and reads the response head, skipping interim 1xx
/// responses other than 101.
async fn exchange<B>(
    conn: &mut Conn,
    parts: &http::request::Parts,
    extra: &impl ExtraFields,
    body: &mut B,
    framing: RequestFraming,
    limits: BodyLimits,
    started: &mut bool,
) -> Result<ResponseHead, ExchangeError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    conn.wbuf.clear();
    codec::write_request_head(&mut conn.wbuf, parts, framing, extra);
    yield_once().await;
    let complete = send_body(conn, body, framing, limits, started).await?;
    let mut received = !complete;
    loop {
        if !conn.rbuf.is_empty() {
            match codec::parse_response_head(&mut conn.rbuf, &parts.method, &mut conn.fields) {
                Ok(Some(head))
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    continue;
                }
                Ok(Some(mut head)) => {
                    // An answer before the whole request: the rest of it was never sent,
                    // so the connection cannot carry another request.
                    head.keep_alive &= complete;
                    return Ok(head);
                }
                Ok(None) => {}
                Err(e) => return Err(ExchangeError::Protocol(e)),
            }
        }
        match conn.fill().await {
            Ok(0) if !received => return Err(ExchangeError::Closed),
            Ok(0) => {
                return Err(ExchangeError::Protocol(Malformed(
                    "connection closed inside the response head",
                )));
            }
            Ok(_) => received = true,
            Err(_) if !received => return Err(ExchangeError::Closed),
            Err(e) => return Err(ExchangeError::Read(e)),
        }
    }
}

/// Lets every other task that is ready run first.
async fn yield_once() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

/// Writes the head already in `conn.wbuf` and then the body, gathering small frames into
/// one write; the head goes out alone only when the body is not ready yet. Request trailers
/// are not forwarded. `Ok(false)`: the upstream answered before the request was complete,
/// and sending stopped.
async fn send_body<B>(
    conn: &mut Conn,
    body: &mut B,
    framing: RequestFraming,
    limits: BodyLimits,
    started: &mut bool,
) -> Result<bool, ExchangeError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let chunked = framing == RequestFraming::Chunked;
    let mut sent: u64 = 0;
    if framing != RequestFraming::Empty {
        loop {
            let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await;
            let frame = match polled {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    if !conn.flush_wbuf().await.map_err(ExchangeError::Write)? {
                        return Ok(false);
                    }
                    // Waiting for the client's next bytes, for at most `idle`; the upstream
                    // may answer meanwhile.
                    let waiting = poll_fn(|cx| match Pin::new(&mut *body).poll_frame(cx) {
                        Poll::Ready(frame) => Poll::Ready(Ok(Some(frame))),
                        Poll::Pending => conn.poll_answer(cx).map_ok(|()| None),
                    });
                    let next = tokio::time::timeout(limits.idle, waiting)
                        .await
                        .map_err(|_| ExchangeError::Client(BodyError::Timeout))?
                        .map_err(ExchangeError::Write)?;
                    match next {
                        Some(frame) => frame,
                        None => return Ok(false),
                    }
                }
            };
            let Some(frame) = frame else { break };
            *started = true;
            let frame = frame.map_err(|e| ExchangeError::Client(BodyError::Malformed(e.into())))?;
            let Ok(data) = frame.into_data() else {
                // Trailers end the body.
                break;
            };
            if data.is_empty() {
                continue;
            }
            sent = sent.saturating_add(data.len() as u64);
            if sent > limits.max_bytes {
                return Err(ExchangeError::Client(BodyError::TooLarge(limits.max_bytes)));
            }
            if chunked {
                codec::write_chunk_size(&mut conn.wbuf, data.len());
            }
            if data.len() >= WRITE_BATCH {
                if !conn.flush_wbuf().await.map_err(ExchangeError::Write)?
                    || !conn.send(&data).await.map_err(ExchangeError::Write)?
                {
                    return Ok(false);
                }
            } else {
                conn.wbuf.extend_from_slice(&data);
            }
            if chunked {
                conn.wbuf.extend_from_slice(b"\r\n");
            }
            if conn.wbuf.len() >= WRITE_BATCH
                && !conn.flush_wbuf().await.map_err(ExchangeError::Write)?
            {
                return Ok(false);
            }
        }
        if chunked {
            conn.wbuf.extend_from_slice(b"0\r\n\r\n");
        }
    }
    conn.flush_wbuf().await.map_err(ExchangeError::Write)
}

/// Where an upstream response body is.
enum Decode {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

/// An upstream response body, read from the connection by whoever polls it. When it has
/// been read to the end its connection returns to the pool (if the upstream keeps it
/// alive); dropped early, the connection is closed.
pub struct UpstreamBody {
    conn: Option<Conn>,
    decode: Decode,
    pool: Option<Arc<Upstream>>,
}

impl UpstreamBody {
    fn empty() -> UpstreamBody {
        UpstreamBody {
            conn: None,
            decode: Decode::Done,
            pool: None,
        }
    }

    fn new(conn: Conn, framing: BodyFraming, pool: Option<Arc<Upstream>>) -> UpstreamBody {
        let decode = match framing {
            BodyFraming::Empty => Decode::Done,
            BodyFraming::Length(n) => Decode::Length(n),
            BodyFraming::Chunked => Decode::Chunked(Chunked::Size),
            BodyFraming::UntilClose => Decode::UntilClose,
        };
        let mut body = UpstreamBody {
            conn: Some(conn),
            decode,
            pool,
        };
        if matches!(body.decode, Decode::Done) {
            body.finish();
        }
        body
    }

    /// The body is complete: a connection with nothing left over goes back to the pool.
    fn finish(&mut self) {
        self.decode = Decode::Done;
        if let (Some(conn), Some(pool)) = (self.conn.take(), self.pool.take())
            && conn.rbuf.is_empty()
        {
            pool.put_idle(conn);
        }
    }
}

fn malformed(e: Malformed) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.decode {
                Decode::Done => return Poll::Ready(None),
                Decode::Length(left) => {
                    if !conn.rbuf.is_empty() {
                        let take = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(conn.rbuf.len());
                        let data = conn.rbuf.split_to(take).freeze();
                        *left -= take as u64;
                        if *left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Decode::UntilClose => {
                    if !conn.rbuf.is_empty() {
                        let data = conn.rbuf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Decode::Chunked(state) => match codec::decode_chunked(state, &mut conn.rbuf) {
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::End(trailers)) => {
                        this.finish();
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                    Ok(Step::Progress) => continue,
                    Ok(Step::NeedMore) => {}
                    Err(e) => {
                        this.conn = None;
                        return Poll::Ready(Some(Err(malformed(e))));
                    }
                },
            }
            // Nothing buffered to hand out: read more.
            match conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    if matches!(this.decode, Decode::UntilClose) {
                        this.decode = Decode::Done;
                        this.conn = None;
                        return Poll::Ready(None);
                    }
                    this.conn = None;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upstream closed the connection inside the response body",
                    ))));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.decode, Decode::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.decode {
            Decode::Done => SizeHint::with_exact(0),
            Decode::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
