//! One request-response exchange on an upstream connection: the head and body written
//! (framed as `codec` says, gathered into few writes, the body bounded in size and in each
//! wait), the response head read, and whether a failed exchange may be retried.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};

use super::codec::{self, Malformed, RequestFraming, ResponseHead};
use super::conn::Conn;
use super::{BodyError, BoxError, ExtraFields, UpstreamError};

/// Request body data is gathered up to this size before it is written.
const WRITE_BATCH: usize = 16 * 1024;

/// Why an exchange failed, and whether it may be retried on a fresh connection.
pub(super) enum ExchangeError {
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
    pub(super) fn retryable(&self, method: &Method, body_started: bool) -> bool {
        !body_started
            && match self {
                ExchangeError::Write(_) => true,
                ExchangeError::Closed => method.is_idempotent(),
                _ => false,
            }
    }

    pub(super) fn into_upstream(self) -> UpstreamError {
        match self {
            ExchangeError::Write(e) | ExchangeError::Read(e) => UpstreamError::Io(e),
            ExchangeError::Closed => UpstreamError::Closed,
            ExchangeError::Client(e) => UpstreamError::Client(e),
            ExchangeError::Protocol(e) => UpstreamError::Malformed(e),
        }
    }
}

/// How much request body a route takes, and how long the client may pause sending it.
#[derive(Debug, Clone, Copy)]
pub(super) struct BodyLimits {
    pub(super) max_bytes: u64,
    pub(super) idle: Duration,
}

/// Writes the request (head and body) and reads the response head, skipping interim 1xx
/// responses other than 101.
pub(super) async fn exchange<B>(
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
