//! An upstream response body, decoded as its framing says (length, chunked, until close)
//! from the connection by whoever polls it, with the connection going back to the pool once
//! the body has been read to its end.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::codec::{self, BodyFraming, Chunked, Malformed, Step};
use super::conn::Conn;
use super::h2::Active;
use super::pool::Upstream;
use hyper::body::Incoming;

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
    /// An HTTP/2 response's body (data and trailers as the upstream sent them), with its
    /// stream's place on the connection.
    h2: Option<(Incoming, Active)>,
}

impl UpstreamBody {
    pub(super) fn empty() -> UpstreamBody {
        UpstreamBody {
            conn: None,
            decode: Decode::Done,
            pool: None,
            h2: None,
        }
    }

    pub(super) fn h2(body: Incoming, active: Active) -> UpstreamBody {
        UpstreamBody {
            h2: Some((body, active)),
            ..UpstreamBody::empty()
        }
    }

    pub(super) fn new(
        conn: Conn,
        framing: BodyFraming,
        pool: Option<Arc<Upstream>>,
    ) -> UpstreamBody {
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
            h2: None,
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
        if let Some((body, _)) = &mut this.h2 {
            let polled = Pin::new(body).poll_frame(cx);
            if let Poll::Ready(None | Some(Err(_))) = &polled {
                // The stream is over: its place on the connection is free.
                this.h2 = None;
            }
            return polled.map(|f| f.map(|r| r.map_err(io::Error::other)));
        }
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
        match &self.h2 {
            Some((body, _)) => body.is_end_stream(),
            None => matches!(self.decode, Decode::Done),
        }
    }

    fn size_hint(&self) -> SizeHint {
        if let Some((body, _)) = &self.h2 {
            return body.size_hint();
        }
        match self.decode {
            Decode::Done => SizeHint::with_exact(0),
            Decode::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
