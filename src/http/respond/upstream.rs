//! Upstream failures and broken client bodies as replies: 502/504 with the failure kind
//! counted, and 400/408/413 that close the connection.

use http::StatusCode;

use super::{ErrorReply, closing, reply};
use crate::metrics::UpstreamFailure;
use crate::proxy::{BodyError, UpstreamError};

pub(super) fn upstream_reply(u: UpstreamError) -> (ErrorReply, Option<UpstreamFailure>) {
    let unavailable = |what: &str, cause: &dyn std::fmt::Display, failure| {
        tracing::warn!(error = %cause, "{what}");
        (
            reply(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "Upstream request failed",
            ),
            Some(failure),
        )
    };
    match u {
        UpstreamError::Connect(ref cause) => {
            tracing::warn!(error = %cause, "upstream connect failed");
            (
                reply(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unavailable",
                    "Upstream unavailable",
                ),
                Some(UpstreamFailure::Connect),
            )
        }
        UpstreamError::Timeout => {
            tracing::warn!("upstream timed out");
            (
                reply(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "Upstream timed out",
                ),
                Some(UpstreamFailure::Timeout),
            )
        }
        UpstreamError::Io(ref e) => {
            unavailable("upstream connection failed", e, UpstreamFailure::Io)
        }
        UpstreamError::Closed => unavailable(
            "upstream closed the connection",
            &u,
            UpstreamFailure::Closed,
        ),
        UpstreamError::Malformed(ref e) => {
            unavailable("malformed upstream answer", e, UpstreamFailure::Malformed)
        }
        UpstreamError::UnaskedSwitch => unavailable(
            "upstream switched protocols",
            &u,
            UpstreamFailure::UnaskedSwitch,
        ),
        UpstreamError::Target(ref e) => {
            unavailable("bad upstream target", e, UpstreamFailure::Target)
        }
        UpstreamError::Client(b) => (body_reply(&b), None),
    }
}

fn body_reply(e: &BodyError) -> ErrorReply {
    closing(match e {
        BodyError::Malformed(cause) => {
            tracing::debug!(error = %cause, "malformed request body");
            reply(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "Malformed request body",
            )
        }
        BodyError::Timeout => reply(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "The request body stopped arriving",
        ),
        BodyError::TooLarge(limit) => reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("Request body larger than {limit} bytes"),
        ),
    })
}
