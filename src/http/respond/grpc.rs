//! Refusals of gRPC calls, answered the gRPC way: HTTP 200 with no body and the status in
//! the header block ("trailers-only"), so a gRPC client reports UNAUTHENTICATED or
//! UNAVAILABLE instead of a protocol error about an unexpected HTTP status.

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};

use super::ErrorReply;
use crate::http::body::Body;

/// gRPC status codes (grpc/doc/statuscodes.md).
mod code {
    pub(super) const UNKNOWN: u8 = 2;
    pub(super) const INVALID_ARGUMENT: u8 = 3;
    pub(super) const DEADLINE_EXCEEDED: u8 = 4;
    pub(super) const PERMISSION_DENIED: u8 = 7;
    pub(super) const RESOURCE_EXHAUSTED: u8 = 8;
    pub(super) const UNIMPLEMENTED: u8 = 12;
    pub(super) const INTERNAL: u8 = 13;
    pub(super) const UNAVAILABLE: u8 = 14;
    pub(super) const UNAUTHENTICATED: u8 = 16;
}

/// The gRPC status a refusal with this HTTP status stands for.
pub(super) fn status_code(status: StatusCode) -> u8 {
    match status.as_u16() {
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 | 405 | 501 => code::UNIMPLEMENTED,
        413 | 429 => code::RESOURCE_EXHAUSTED,
        400 | 408 | 411 | 414 | 431 => code::INVALID_ARGUMENT,
        502 | 503 => code::UNAVAILABLE,
        504 => code::DEADLINE_EXCEEDED,
        500 => code::INTERNAL,
        _ => code::UNKNOWN,
    }
}

/// `grpc-message`: percent-encoded outside printable ASCII and `%` (the gRPC HTTP/2 spec).
fn message(text: &str) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(text.len());
    for &b in text.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    }
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("refused"))
}

pub(super) fn trailers_only(r: ErrorReply) -> Response<Body> {
    let mut resp = Response::new(Body::full(bytes::Bytes::new()));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert(
        "grpc-status",
        HeaderValue::from(u16::from(status_code(r.status))),
    );
    h.insert("grpc-message", message(r.detail.as_str().unwrap_or(r.code)));
    super::advice_headers(&r, h);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_the_grpc_codes_clients_expect() {
        for (http, grpc) in [
            (401, 16),
            (403, 7),
            (502, 14),
            (503, 14),
            (504, 4),
            (404, 12),
        ] {
            assert_eq!(status_code(StatusCode::from_u16(http).unwrap()), grpc);
        }
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(message("Not 100% ok: é\n"), "Not 100%25 ok: %C3%A9%0A");
    }
}
