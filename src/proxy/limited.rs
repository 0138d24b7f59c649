//! A request body bounded in size and in each wait, for a body that another task pulls
//! (hyper's HTTP/2 client drives it from the connection's task). When a bound trips, the
//! body ends with an error and the reason is left in `Tripped` for the request to report
//! as the client's failure (413, 408) rather than the upstream's.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::{BodyError, BoxError};

/// Why a `Limited` body stopped, once it has.
#[derive(Clone, Default)]
pub(super) struct Tripped(Arc<Mutex<Option<BodyError>>>);

impl Tripped {
    fn set(&self, e: BodyError) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(e);
        }
    }

    /// The reason, if a bound tripped.
    pub(super) fn take(&self) -> Option<BodyError> {
        self.0.lock().ok().and_then(|mut e| e.take())
    }
}

pin_project! {
    /// `inner`, ending with an error once it exceeds `max` bytes or pauses for `idle`.
    pub(super) struct Limited<B> {
        #[pin]
        inner: B,
        left: u64,
        max: u64,
        idle: Duration,
        #[pin]
        wait: Sleep,
        tripped: Tripped,
    }
}

impl<B> Limited<B> {
    pub(super) fn new(inner: B, max: u64, idle: Duration) -> (Limited<B>, Tripped) {
        let tripped = Tripped::default();
        let body = Limited {
            inner,
            left: max,
            max,
            idle,
            wait: tokio::time::sleep(idle),
            tripped: tripped.clone(),
        };
        (body, tripped)
    }
}

fn stopped(e: BodyError, tripped: &Tripped) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    let message = e.to_string();
    tripped.set(e);
    Poll::Ready(Some(Err(message.into())))
}

impl<B> http_body::Body for Limited<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Pending => {
                if this.wait.as_mut().poll(cx).is_ready() {
                    return stopped(BodyError::Timeout, this.tripped);
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.remaining() as u64;
                    if n > *this.left {
                        return stopped(BodyError::TooLarge(*this.max), this.tripped);
                    }
                    *this.left -= n;
                }
                this.wait.as_mut().reset(Instant::now() + *this.idle);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => stopped(BodyError::Malformed(e.into()), this.tripped),
            Poll::Ready(None) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
