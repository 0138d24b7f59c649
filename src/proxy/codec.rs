//! The HTTP/1.1 wire format towards upstreams: request heads written into a reusable buffer,
//! response heads parsed with `httparse` into header values that share the read buffer, the
//! response body's framing (RFC 9112 §6.3), and a chunked-encoding decoder. Pure functions
//! over byte buffers; the I/O is in `mod.rs`.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

/// Response heads longer than this are refused (hyper's client allowed about as much).
pub(super) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// As many header fields as hyper accepts.
const MAX_HEADERS: usize = 100;
/// A chunk-size line (with extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;
/// Trailer sections longer than this are refused.
const MAX_TRAILERS: usize = 16 * 1024;

/// An upstream that does not speak HTTP/1.1 the way it must.
#[derive(Debug, thiserror::Error)]
#[error("malformed upstream response: {0}")]
pub struct Malformed(pub &'static str);

/// How the request body is delimited on the way upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestFraming {
    /// No body.
    Empty,
    /// `Content-Length` (already in the headers).
    Length,
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Decides the request's framing from its body and makes the headers say so. The client's
/// own framing headers were checked by the server; `Transfer-Encoding` is hop-by-hop and
/// already gone.
pub(super) fn request_framing(
    headers: &mut HeaderMap,
    empty: bool,
    exact: Option<u64>,
) -> RequestFraming {
    if empty {
        return RequestFraming::Empty;
    }
    match exact {
        Some(n) => {
            if headers
                .get(CONTENT_LENGTH)
                .and_then(|v| parse_decimal(v.as_bytes()))
                != Some(n)
            {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
            }
            RequestFraming::Length
        }
        None => {
            headers.remove(CONTENT_LENGTH);
            RequestFraming::Chunked
        }
    }
}

/// Appends one header field line to `buf`.
pub(super) fn write_field(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.reserve(name.len() + value.len() + 4);
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

/// Appends the request line and header section to `buf`: the request's own fields, then
/// `extra`'s, then the framing Portcullis chose.
pub(super) fn write_request_head(
    buf: &mut Vec<u8>,
    parts: &Parts,
    framing: RequestFraming,
    extra: &impl super::ExtraFields,
) {
    buf.extend_from_slice(parts.method.as_str().as_bytes());
    buf.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    buf.extend_from_slice(target.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        write_field(buf, name.as_str().as_bytes(), value.as_bytes());
    }
    write_extra_fields(buf, extra);
    if framing == RequestFraming::Chunked {
        buf.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    buf.extend_from_slice(b"\r\n");
}

/// Appends `extra`'s fields as header lines.
pub fn write_extra_fields(buf: &mut Vec<u8>, extra: &impl super::ExtraFields) {
    extra.each_field(|name, value| write_field(buf, name, value));
}

/// Appends one chunk-size line.
pub(super) fn write_chunk_size(buf: &mut Vec<u8>, len: usize) {
    use std::io::Write as _;
    let _ = write!(buf, "{len:x}\r\n");
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// A complete response head.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: BodyFraming,
    /// The upstream allows another request on this connection.
    pub keep_alive: bool,
}

/// Where one header field's name and value are in the head: (offset, length) pairs.
#[derive(Clone, Copy)]
pub(crate) struct Field {
    name: (usize, usize),
    value: (usize, usize),
}

/// Parses a response head from the front of `buf`, consuming it. `Ok(None)`: incomplete.
/// Interim (1xx other than 101) responses are returned like any other; the caller skips them.
/// `fields` is scratch space kept by the caller so that parsing neither allocates nor
/// clears a large array per response.
pub(crate) fn parse_response_head(
    buf: &mut BytesMut,
    method: &Method,
    fields: &mut Vec<Field>,
) -> Result<Option<ResponseHead>, Malformed> {
    let mut raw = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let base = buf.as_ptr() as usize;
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut raw,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(Malformed("response head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Malformed("too many header fields")),
        Err(_) => return Err(Malformed("unparsable response head")),
    };
    if len > MAX_HEAD_BYTES {
        return Err(Malformed("response head too large"));
    }
    let code = parsed.code.unwrap_or(0);
    let version = parsed.version.unwrap_or(1);
    fields.clear();
    fields.extend(parsed.headers.iter().map(|h| Field {
        name: (h.name.as_ptr() as usize - base, h.name.len()),
        value: (h.value.as_ptr() as usize - base, h.value.len()),
    }));
    let status = StatusCode::from_u16(code).map_err(|_| Malformed("invalid status code"))?;
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(fields.len());
    for f in fields.iter() {
        let name = HeaderName::from_bytes(&head[f.name.0..f.name.0 + f.name.1])
            .map_err(|_| Malformed("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(f.value.0..f.value.0 + f.value.1))
            .map_err(|_| Malformed("invalid header value"))?;
        headers.append(name, value);
    }
    let framing = body_framing(status, method, &headers)?;
    let keep_alive = framing != BodyFraming::UntilClose && keeps_alive(version, &headers);
    if headers.contains_key(TRANSFER_ENCODING) {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3), whatever the coding;
        // never pass both on.
        headers.remove(CONTENT_LENGTH);
    }
    Ok(Some(ResponseHead {
        status,
        headers,
        framing,
        keep_alive,
    }))
}

/// What the front of a read buffer holds, as far as interim responses go.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Leading {
    /// A complete interim (1xx other than 101) response head of this many bytes.
    Interim(usize),
    /// Something else: a final response, or bytes the response parser will refuse.
    Final,
    /// Too few bytes to tell.
    Undecided,
}

/// Tells interim responses (`100 Continue`, `103 Early Hints`) apart from a final answer
/// while the request is still being sent.
pub(super) fn leading(buf: &[u8]) -> Leading {
    // "HTTP/1.1 1xx": the status code's first digit is the tenth byte.
    if buf.len() < 12 {
        return Leading::Undecided;
    }
    if buf[9] != b'1' || &buf[9..12] == b"101" {
        return Leading::Final;
    }
    let mut raw = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut raw,
    ) {
        Ok(httparse::Status::Complete(len)) => Leading::Interim(len),
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD_BYTES => Leading::Undecided,
        _ => Leading::Final,
    }
}

fn body_framing(
    status: StatusCode,
    method: &Method,
    headers: &HeaderMap,
) -> Result<BodyFraming, Malformed> {
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(BodyFraming::Empty);
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        let last = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty());
        return Ok(match last {
            Some(t) if t.eq_ignore_ascii_case("chunked") => BodyFraming::Chunked,
            _ => BodyFraming::UntilClose,
        });
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = parse_decimal(part.trim_ascii()).ok_or(Malformed("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Malformed("conflicting content-length values"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => BodyFraming::Empty,
        Some(n) => BodyFraming::Length(n),
        None => BodyFraming::UntilClose,
    })
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
    })
}

fn keeps_alive(version: u8, headers: &HeaderMap) -> bool {
    let mut close = false;
    let mut keep_alive = false;
    for value in headers.get_all(CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            close |= token.eq_ignore_ascii_case(b"close");
            keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    if version >= 1 {
        !close
    } else {
        keep_alive && !close
    }
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunked {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// What one decoding step produced.
#[derive(Debug)]
pub(crate) enum Step {
    /// Body bytes.
    Data(Bytes),
    /// The body ended, with these trailers (possibly none).
    End(Option<HeaderMap>),
    /// More input is needed.
    NeedMore,
    /// The decoder moved on without output; call again.
    Progress,
}

/// One step of chunked decoding from the front of `buf`.
pub(crate) fn decode_chunked(state: &mut Chunked, buf: &mut BytesMut) -> Result<Step, Malformed> {
    match *state {
        Chunked::Size => {
            let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                return if buf.len() > MAX_CHUNK_LINE {
                    Err(Malformed("chunk-size line too long"))
                } else {
                    Ok(Step::NeedMore)
                };
            };
            if nl > MAX_CHUNK_LINE || nl == 0 || buf[nl - 1] != b'\r' {
                return Err(Malformed("invalid chunk-size line"));
            }
            let line = &buf[..nl - 1];
            let end = line
                .iter()
                .position(|&b| b == b';' || b == b' ' || b == b'\t')
                .unwrap_or(line.len());
            let size = parse_hex(&line[..end]).ok_or(Malformed("invalid chunk size"))?;
            buf.advance(nl + 1);
            *state = if size == 0 {
                Chunked::Trailers
            } else {
                Chunked::Data(size)
            };
            Ok(Step::Progress)
        }
        Chunked::Data(left) => {
            if buf.is_empty() {
                return Ok(Step::NeedMore);
            }
            let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            let data = buf.split_to(take).freeze();
            let left = left - take as u64;
            *state = if left == 0 {
                Chunked::DataEnd
            } else {
                Chunked::Data(left)
            };
            Ok(Step::Data(data))
        }
        Chunked::DataEnd => {
            if buf.len() < 2 {
                return Ok(Step::NeedMore);
            }
            if &buf[..2] != b"\r\n" {
                return Err(Malformed("chunk data not followed by CRLF"));
            }
            buf.advance(2);
            *state = Chunked::Size;
            Ok(Step::Progress)
        }
        Chunked::Trailers => {
            if buf.len() < 2 {
                return Ok(Step::NeedMore);
            }
            if &buf[..2] == b"\r\n" {
                buf.advance(2);
                return Ok(Step::End(None));
            }
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return if buf.len() > MAX_TRAILERS {
                    Err(Malformed("trailer section too large"))
                } else {
                    Ok(Step::NeedMore)
                };
            };
            let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let trailers = match httparse::parse_headers(&buf[..end + 4], &mut raw) {
                Ok(httparse::Status::Complete((_, fields))) => {
                    let mut map = HeaderMap::with_capacity(fields.len());
                    for f in fields {
                        if let (Ok(n), Ok(v)) = (
                            HeaderName::from_bytes(f.name.as_bytes()),
                            HeaderValue::from_bytes(f.value),
                        ) {
                            map.append(n, v);
                        }
                    }
                    map
                }
                _ => return Err(Malformed("invalid trailer section")),
            };
            buf.advance(end + 4);
            Ok(Step::End(Some(trailers)))
        }
    }
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        Some(acc * 16 + u64::from(v))
    })
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
