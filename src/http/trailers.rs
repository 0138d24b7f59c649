//! Request trailers toward an HTTP/2 upstream pass the same test as request headers
//! (`HeaderPolicy::must_not_pass`), plus `Cookie`: a client cannot smuggle an identity
//! header, a forwarding header or a credential to the upstream by sending it after the
//! body. (Toward HTTP/1.1 upstreams request trailers are not forwarded at all.)

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::COOKIE;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;

use super::headers::HeaderPolicy;

pin_project! {
    /// `inner` with its trailers filtered.
    pub(crate) struct Filtered<B> {
        #[pin]
        inner: B,
        policy: Arc<HeaderPolicy>,
        forward_credentials: bool,
    }
}

impl<B> Filtered<B> {
    pub(crate) fn new(inner: B, policy: Arc<HeaderPolicy>, forward_credentials: bool) -> Self {
        Filtered {
            inner,
            policy,
            forward_credentials,
        }
    }
}

impl<B: http_body::Body<Data = Bytes>> http_body::Body for Filtered<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let Poll::Ready(Some(Ok(frame))) = polled else {
            return polled;
        };
        let frame = match frame.into_trailers() {
            Ok(mut trailers) => {
                let doomed: Vec<_> = trailers
                    .keys()
                    .filter(|name| {
                        (**name == COOKIE && !*this.forward_credentials)
                            || this
                                .policy
                                .must_not_pass(name, *this.forward_credentials, false)
                    })
                    .cloned()
                    .collect();
                for name in doomed {
                    trailers.remove(name);
                }
                Frame::trailers(trailers)
            }
            Err(frame) => frame,
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
