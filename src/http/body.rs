//! The response body type: a small fixed body, an upstream's streamed body, or an account
//! API body. An enum rather than a boxed trait object, so proxying allocates no box.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    #[project = BodyProj]
    pub enum Body {
        Full { #[pin] inner: Full<Bytes> },
        Upstream { #[pin] inner: crate::proxy::UpstreamBody },
        Axum { #[pin] inner: axum::body::Body },
    }
}

impl Body {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
        Body::Full {
            inner: Full::new(bytes.into()),
        }
    }
}

impl From<crate::proxy::UpstreamBody> for Body {
    fn from(inner: crate::proxy::UpstreamBody) -> Body {
        Body::Upstream { inner }
    }
}

impl From<axum::body::Body> for Body {
    fn from(inner: axum::body::Body) -> Body {
        Body::Axum { inner }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            BodyProj::Full { inner } => inner
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|never| match never {}))),
            BodyProj::Upstream { inner } => inner
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            BodyProj::Axum { inner } => inner
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full { inner } => inner.is_end_stream(),
            Body::Upstream { inner } => inner.is_end_stream(),
            Body::Axum { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full { inner } => inner.size_hint(),
            Body::Upstream { inner } => inner.size_hint(),
            Body::Axum { inner } => inner.size_hint(),
        }
    }
}
