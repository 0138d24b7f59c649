//! HTTP/2 to upstreams (`upstream_protocol = "h2c"` or `"h2"`): hyper's HTTP/2 client over
//! a few connections per route, each shared by concurrent requests. A request goes to the
//! connection with the fewest streams in progress; another connection is opened only when
//! every one carries `STREAMS_PER_CONNECTION`, up to `MAX_CONNECTIONS`. The upstream's
//! SETTINGS (its stream limit, windows) and GOAWAY are honoured by h2; idle connections are
//! kept alive and checked with PINGs; a connection that fails to open makes the next ones
//! wait an exponential backoff, during which requests fail at once (502) rather than pile
//! up. Request bodies stream under the route's size and idle bounds, and trailers pass both
//! ways.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, TE};
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::conn::UpstreamIo;
use super::grpc::{grpc_timeout, is_grpc};
use super::limited::Limited;
use super::{BoxError, ExtraFields, UpstreamError};

/// Connections per route at most.
const MAX_CONNECTIONS: usize = 4;
/// Streams on one connection before another is opened (h2 also holds each connection to
/// the upstream's own `SETTINGS_MAX_CONCURRENT_STREAMS`).
const STREAMS_PER_CONNECTION: usize = 100;
/// PING an idle connection this often; close it when a PING is not answered in time.
const PING_INTERVAL: Duration = Duration::from_secs(20);
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Flow-control windows: what an upstream may send ahead of a slow client, per stream and
/// per connection. They bound the memory a response held up by its client can take.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;
/// Backoff after a failed connect: doubled per failure up to the maximum.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A request body on its way to an HTTP/2 upstream.
pub(super) type OutBody = UnsyncBoxBody<Bytes, BoxError>;

struct Shared {
    send: SendRequest<OutBody>,
    active: Arc<AtomicUsize>,
}

#[derive(Default)]
struct State {
    conns: Vec<Shared>,
    connecting: usize,
    failures: u32,
    retry_at: Option<Instant>,
}

impl State {
    /// A connect's outcome: a failure doubles the wait before the next one (from
    /// `BACKOFF_FIRST` up to `BACKOFF_MAX`), a success ends the backoff.
    fn record(&mut self, ok: bool) {
        if ok {
            self.failures = 0;
            self.retry_at = None;
        } else {
            self.failures = self.failures.saturating_add(1);
            let backoff = BACKOFF_FIRST
                .saturating_mul(1 << self.failures.min(16).saturating_sub(1))
                .min(BACKOFF_MAX);
            self.retry_at = Some(Instant::now() + backoff);
        }
    }
}

/// The refusal while a route backs off.
pub(super) fn backing_off(left: Duration) -> UpstreamError {
    UpstreamError::Connect(
        format!(
            "the last connection attempt failed; next attempt in {} ms",
            left.as_millis().max(1)
        )
        .into(),
    )
}

/// One route's HTTP/2 connections.
#[derive(Default)]
pub(super) struct H2Pool {
    state: Mutex<State>,
    /// Woken when a connect ends, for requests waiting for a connection slot.
    connected: tokio::sync::Notify,
}

/// A stream in progress, counted against its connection until dropped (with the response
/// body, when the response has one).
pub(super) struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Pick {
    Use(SendRequest<OutBody>, Active),
    Connect,
    Wait,
    Backoff(Duration),
}

impl H2Pool {
    fn pick(&self) -> Pick {
        let Ok(mut st) = self.state.lock() else {
            return Pick::Backoff(BACKOFF_MAX);
        };
        st.conns.retain(|c| !c.send.is_closed());
        let least = st
            .conns
            .iter()
            .min_by_key(|c| c.active.load(Ordering::Acquire));
        let room = st.conns.len() + st.connecting < MAX_CONNECTIONS;
        match least {
            Some(c) if c.active.load(Ordering::Acquire) < STREAMS_PER_CONNECTION || !room => {
                c.active.fetch_add(1, Ordering::AcqRel);
                Pick::Use(c.send.clone(), Active(c.active.clone()))
            }
            // One connect at a time: requests arriving meanwhile wait for it rather than
            // open connections of their own (a cold route under load would open them all).
            _ if room && st.connecting == 0 => {
                if st.conns.is_empty()
                    && let Some(at) = st.retry_at
                {
                    let now = Instant::now();
                    if at > now {
                        return Pick::Backoff(at - now);
                    }
                }
                st.connecting += 1;
                Pick::Connect
            }
            _ => Pick::Wait,
        }
    }

    /// How long connects still wait after failed ones, when the route has no connection:
    /// an "auto" route learning its protocol waits the same backoff as HTTP/2 connects.
    pub(super) fn backoff_left(&self) -> Option<Duration> {
        let st = self.state.lock().ok()?;
        let at = st.retry_at.filter(|_| st.conns.is_empty())?;
        at.checked_duration_since(Instant::now())
    }

    /// Counts a connect made elsewhere (an "auto" route learning its protocol, or finding
    /// HTTP/1.1) toward the backoff: a failure lengthens it, a success ends it.
    pub(super) fn record_connect(&self, ok: bool) {
        if let Ok(mut st) = self.state.lock() {
            st.record(ok);
        }
    }

    /// Takes a connection opened elsewhere (an "auto" route learning its protocol), if
    /// there is room for it.
    pub(super) fn adopt(&self, send: SendRequest<OutBody>) {
        if let Ok(mut st) = self.state.lock() {
            st.conns.retain(|c| !c.send.is_closed());
            if st.conns.len() + st.connecting < MAX_CONNECTIONS {
                st.record(true);
                st.conns.push(Shared {
                    send,
                    active: Arc::new(AtomicUsize::new(0)),
                });
            }
        }
        self.connected.notify_waiters();
    }

    /// A connection's sender and its stream count, connecting when needed.
    async fn checkout(
        &self,
        upstream: &super::Upstream,
    ) -> Result<(SendRequest<OutBody>, Active), UpstreamError> {
        loop {
            let waiting = self.connected.notified();
            tokio::pin!(waiting);
            waiting.as_mut().enable();
            match self.pick() {
                Pick::Use(send, active) => return Ok((send, active)),
                Pick::Wait => waiting.await,
                Pick::Backoff(left) => return Err(backing_off(left)),
                Pick::Connect => {
                    // Given back even if this request is dropped (timeout, client gone)
                    // before the connect ends.
                    let slot = ConnectSlot(Some(self));
                    let connected = Box::pin(handshake(upstream)).await;
                    return slot.finish(connected);
                }
            }
        }
    }
}

/// A connect in progress, counted in `State::connecting` until it ends or is abandoned.
struct ConnectSlot<'a>(Option<&'a H2Pool>);

impl ConnectSlot<'_> {
    fn finish(
        mut self,
        connected: Result<SendRequest<OutBody>, UpstreamError>,
    ) -> Result<(SendRequest<OutBody>, Active), UpstreamError> {
        let Some(pool) = self.0.take() else {
            return Err(UpstreamError::Closed);
        };
        let out = match pool.state.lock() {
            Ok(mut st) => {
                st.connecting -= 1;
                st.record(connected.is_ok());
                connected.map(|send| {
                    let active = Arc::new(AtomicUsize::new(1));
                    st.conns.push(Shared {
                        send: send.clone(),
                        active: active.clone(),
                    });
                    (send, Active(active))
                })
            }
            Err(_) => Err(UpstreamError::Closed),
        };
        pool.connected.notify_waiters();
        out
    }
}

impl Drop for ConnectSlot<'_> {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            if let Ok(mut st) = pool.state.lock() {
                st.connecting -= 1;
            }
            pool.connected.notify_waiters();
        }
    }
}

/// Opens one HTTP/2 connection: TCP (and TLS, where ALPN must pick `h2`), then the
/// preface and SETTINGS exchange. On an "auto" route whose upstream picks HTTP/1.1 now, the
/// connection goes to the idle HTTP/1.1 ones and this request fails (the next go there).
async fn handshake(upstream: &super::Upstream) -> Result<SendRequest<OutBody>, UpstreamError> {
    let io = upstream.connect_io().await?;
    if agreed_h2(&io) {
        return handshake_on(io).await;
    }
    if upstream.is_auto() {
        upstream.keep_connection(io).await?;
        return Err(UpstreamError::Connect(
            "the upstream now picks HTTP/1.1 (ALPN); the next requests use it".into(),
        ));
    }
    Err(UpstreamError::Connect(
        "the upstream did not agree to HTTP/2 (ALPN)".into(),
    ))
}

/// Whether HTTP/2 may be spoken on `io`: without TLS (h2c, by prior knowledge), or with
/// TLS where ALPN picked `h2`.
pub(super) fn agreed_h2(io: &UpstreamIo) -> bool {
    match io {
        hyper_rustls::MaybeHttpsStream::Http(_) => true,
        hyper_rustls::MaybeHttpsStream::Https(tls) => {
            tls.inner().get_ref().1.alpn_protocol() == Some(b"h2")
        }
    }
}

/// The preface and SETTINGS exchange on a connected socket; the connection is then driven
/// by a task of its own.
pub(super) async fn handshake_on(io: UpstreamIo) -> Result<SendRequest<OutBody>, UpstreamError> {
    let (send, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake(io)
        .await
        .map_err(|e| UpstreamError::Connect(Box::new(e)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
        }
    });
    Ok(send)
}

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2); `http::headers` has removed them already
/// from what the client sent, this is the last word before the wire.
fn drop_connection_fields(headers: &mut http::HeaderMap) {
    for name in [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        TE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Sends `req` over one of `upstream`'s HTTP/2 connections and waits for the response head
/// within `timeout`. A request a connection gave back unsent (it was closing: GOAWAY) goes
/// to another, up to once per connection; a bodyless one the upstream refused unprocessed
/// is sent again once.
pub(super) async fn forward<B>(
    upstream: &super::Upstream,
    pool: &H2Pool,
    req: Request<B>,
    extra: &impl ExtraFields,
    body_idle: Duration,
) -> Result<(Response<hyper::body::Incoming>, Active), UpstreamError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    let grpc = is_grpc(&parts.headers);
    let timeout = match grpc.then(|| grpc_timeout(&parts.headers)).flatten() {
        Some(asked) => asked.min(upstream.response_timeout),
        None => upstream.response_timeout,
    };
    // `:authority` is what `Host` would have said (the upstream's, or the client's with
    // preserve_host); `:scheme` is the upstream's.
    let authority = parts
        .headers
        .remove(HOST)
        .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
        .unwrap_or_else(|| upstream.authority().clone());
    let mut uri = parts.uri.into_parts();
    uri.scheme = Some(upstream.scheme().clone());
    uri.authority = Some(authority);
    // Cannot fail (the origin-form target's path, a scheme and an authority); if it did, it
    // would be a 502 like any failure on the upstream's side, not a failed connect.
    parts.uri = Uri::from_parts(uri).map_err(|e| UpstreamError::Io(std::io::Error::other(e)))?;
    parts.version = Version::HTTP_2;
    drop_connection_fields(&mut parts.headers);
    extra.each_header(|name, value| {
        parts.headers.append(name, value);
    });
    if grpc {
        parts
            .headers
            .insert(TE, HeaderValue::from_static("trailers"));
    }
    // A request without a body can be sent again if the upstream refuses its stream
    // unprocessed (REFUSED_STREAM, or GOAWAY below its id); one with a body cannot, as the
    // body has gone into the first attempt.
    let replay = body.is_end_stream().then(|| {
        (
            parts.method.clone(),
            parts.uri.clone(),
            parts.headers.clone(),
        )
    });
    // A request without a body has nothing to bound.
    let (body, tripped) = if replay.is_some() {
        (empty(), None)
    } else {
        let (body, tripped) = Limited::new(body, upstream.max_body_bytes, body_idle);
        (body.boxed_unsync(), Some(tripped))
    };
    let mut req = Some(Request::from_parts(parts, body));
    let sent = async {
        // A request that never left (its connection was closing) may try each connection
        // once; one the upstream refused unprocessed is sent again once.
        let mut unsent_left = MAX_CONNECTIONS;
        let mut replayed = false;
        loop {
            let (mut send, active) = pool.checkout(upstream).await?;
            let Some(r) = req.take() else {
                return Err(UpstreamError::Closed);
            };
            match send.try_send_request(r).await {
                Ok(resp) => return Ok((resp, active)),
                Err(mut e) => {
                    let unsent = e.take_message();
                    let error = e.into_error();
                    match (unsent, &replay) {
                        // Never sent (the connection was closing): send it on another.
                        (Some(r), _) if unsent_left > 0 => {
                            unsent_left -= 1;
                            req = Some(r);
                        }
                        (None, Some((method, uri, headers)))
                            if !replayed && unprocessed(&error) =>
                        {
                            replayed = true;
                            let mut again = Request::new(empty());
                            *again.method_mut() = method.clone();
                            *again.uri_mut() = uri.clone();
                            *again.version_mut() = Version::HTTP_2;
                            *again.headers_mut() = headers.clone();
                            req = Some(again);
                        }
                        _ => return Err(UpstreamError::from(error)),
                    }
                }
            }
        }
    };
    match tokio::time::timeout(timeout, sent).await {
        Err(_) => Err(UpstreamError::Timeout),
        Ok(Ok(sent)) => Ok(sent),
        // A request body that broke its bounds is the client's failure, not the upstream's.
        Ok(Err(e)) => Err(tripped
            .and_then(|t| t.take())
            .map_or(e, UpstreamError::Client)),
    }
}

/// The upstream says it did not process the stream: RST_STREAM with REFUSED_STREAM, or a
/// GOAWAY whose last stream id is below it (RFC 9113 §8.7).
fn unprocessed(e: &hyper::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(h2) = c.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM) || h2.is_go_away();
        }
        cause = c.source();
    }
    false
}

fn empty() -> OutBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

impl From<hyper::Error> for UpstreamError {
    fn from(e: hyper::Error) -> UpstreamError {
        UpstreamError::Io(std::io::Error::other(e))
    }
}
