//! The client request's framing, judged before any body byte is read: `Transfer-Encoding`
//! must be exactly `chunked` (RFC 9112 §6.1) and never beside `Content-Length`, and a
//! declared length over the limit is refused at once. Also reads small bodies (the account
//! API's) whole, with a size limit and a bound on each wait. hyper has already refused
//! malformed lengths and chunk sizes it could not parse.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Version};
use http_body_util::BodyExt as _;

use super::respond::ProxyError;
use crate::proxy::BodyError;

/// Checks the request's framing headers and returns its declared `Content-Length`, if any.
pub(crate) fn declared_length(
    version: Version,
    headers: &HeaderMap,
) -> Result<Option<u64>, ProxyError> {
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(first) = codings.next() {
        // HTTP/2 has no transfer codings (h2 refuses the field); this is HTTP/1.x.
        let only_chunked = version != Version::HTTP_2
            && codings.next().is_none()
            && first
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked");
        if !only_chunked {
            return Err(ProxyError::UnsupportedTransferCoding);
        }
        if headers.contains_key(CONTENT_LENGTH) {
            return Err(ProxyError::AmbiguousLength);
        }
        return Ok(None);
    }
    // hyper accepts only a well-formed length (repeated copies must agree).
    Ok(headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok()))
}

/// Refuses a declared length over `limit` before the body is read.
pub(crate) fn check_declared(declared: Option<u64>, limit: u64) -> Result<(), ProxyError> {
    match declared {
        Some(n) if n > limit => Err(BodyError::TooLarge(limit).into()),
        _ => Ok(()),
    }
}

/// Reads a whole body of at most `limit` bytes, waiting at most `idle` for each part.
pub(crate) async fn read_bounded<B>(
    mut body: B,
    limit: u64,
    idle: Duration,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut buf = BytesMut::new();
    while !body.is_end_stream() {
        let frame = tokio::time::timeout(idle, body.frame())
            .await
            .map_err(|_| BodyError::Timeout)?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| BodyError::Malformed(e.into()))?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                return Err(BodyError::TooLarge(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::header_map as headers;

    #[test]
    fn only_plain_chunked_is_a_transfer_coding() {
        let v = Version::HTTP_11;
        assert!(matches!(
            declared_length(v, &headers(&[("transfer-encoding", "chunked")])),
            Ok(None)
        ));
        assert!(matches!(
            declared_length(v, &headers(&[("transfer-encoding", "Chunked ")])),
            Ok(None)
        ));
        for bad in [
            vec![("transfer-encoding", "gzip, chunked")],
            vec![
                ("transfer-encoding", "identity"),
                ("transfer-encoding", "chunked"),
            ],
            vec![("transfer-encoding", "chunked, chunked")],
            vec![("transfer-encoding", "identity")],
        ] {
            assert!(
                matches!(
                    declared_length(v, &headers(&bad)),
                    Err(ProxyError::UnsupportedTransferCoding)
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            declared_length(
                v,
                &headers(&[("transfer-encoding", "chunked"), ("content-length", "5")])
            ),
            Err(ProxyError::AmbiguousLength)
        ));
        assert!(matches!(
            declared_length(v, &headers(&[("content-length", "42")])),
            Ok(Some(42))
        ));
        assert!(matches!(
            check_declared(Some(43), 42),
            Err(ProxyError::Upstream(_))
        ));
        assert!(check_declared(Some(42), 42).is_ok());
    }

    #[tokio::test]
    async fn bounded_reads_stop_at_the_limit() {
        let body = http_body_util::Full::new(Bytes::from_static(b"0123456789"));
        let read = read_bounded(body.clone(), 10, Duration::from_secs(1)).await;
        assert_eq!(read.unwrap(), Bytes::from_static(b"0123456789"));
        let read = read_bounded(body, 9, Duration::from_secs(1)).await;
        assert!(matches!(read, Err(BodyError::TooLarge(9))));
    }
}
