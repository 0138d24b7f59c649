use super::*;

fn head(text: &str, method: &Method) -> Result<Option<ResponseHead>, Malformed> {
    let mut buf = BytesMut::from(text.as_bytes());
    parse_response_head(&mut buf, method, &mut Vec::new())
}

fn framing(text: &str) -> BodyFraming {
    head(text, &Method::GET).unwrap().unwrap().framing
}

#[test]
fn response_heads_parse_and_consume_only_the_head() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 201 Created\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 3\r\n\r\nabc"[..],
    );
    let h = parse_response_head(&mut buf, &Method::GET, &mut Vec::new())
        .unwrap()
        .unwrap();
    assert_eq!(h.status, 201);
    assert_eq!(h.headers.get_all("x-a").iter().count(), 2);
    assert_eq!(h.framing, BodyFraming::Length(3));
    assert!(h.keep_alive);
    assert_eq!(&buf[..], b"abc");
    assert!(
        head("HTTP/1.1 200 OK\r\nContent-Le", &Method::GET)
            .unwrap()
            .is_none()
    );
}

#[test]
fn body_framing_follows_rfc_9112() {
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n"),
        BodyFraming::Chunked
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        BodyFraming::UntilClose
    );
    assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n"), BodyFraming::UntilClose);
    assert_eq!(
        framing("HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n"),
        BodyFraming::Empty
    );
    assert_eq!(
        framing("HTTP/1.1 304 Not Modified\r\n\r\n"),
        BodyFraming::Empty
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        BodyFraming::Empty
    );
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n"),
        BodyFraming::Length(7)
    );
    let h = head(
        "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
        &Method::HEAD,
    )
    .unwrap()
    .unwrap();
    assert_eq!(h.framing, BodyFraming::Empty);
    let chunked = head(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        &Method::GET,
    )
    .unwrap()
    .unwrap();
    assert!(
        chunked.headers.get(CONTENT_LENGTH).is_none(),
        "never both framings"
    );
    assert!(
        !head("HTTP/1.1 200 OK\r\n\r\n", &Method::GET)
            .unwrap()
            .unwrap()
            .keep_alive
    );
}

#[test]
fn bad_lengths_and_heads_are_refused() {
    for bad in [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTX/1.1 200 OK\r\n\r\n",
    ] {
        assert!(head(bad, &Method::GET).is_err(), "{bad:?}");
    }
    let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD_BYTES + 1));
    assert!(head(&huge, &Method::GET).is_err());
}

#[test]
fn interim_answers_are_told_from_final_ones() {
    assert_eq!(
        leading(b"HTTP/1.1 100 Continue\r\n\r\nHTTP"),
        Leading::Interim(25)
    );
    assert_eq!(leading(b"HTTP/1.1 100 Contin"), Leading::Undecided);
    assert_eq!(leading(b"HTTP/1.1 1"), Leading::Undecided);
    assert_eq!(leading(b"HTTP/1.1 413 Too Large\r\n"), Leading::Final);
    assert_eq!(leading(b"HTTP/1.1 101 Switching"), Leading::Final);
}

#[test]
fn keep_alive_depends_on_version_and_connection() {
    let ka = |t: &str| head(t, &Method::GET).unwrap().unwrap().keep_alive;
    assert!(!ka(
        "HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(!ka("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(ka(
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
    ));
}

fn decode_all(wire: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>), Malformed> {
    // Fed one byte at a time: every state must cope with partial input.
    let mut state = Chunked::Size;
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut input = wire.iter();
    loop {
        match decode_chunked(&mut state, &mut buf)? {
            Step::Data(d) => out.extend_from_slice(&d),
            Step::End(t) => {
                assert!(buf.is_empty());
                return Ok((out, t));
            }
            Step::Progress => {}
            Step::NeedMore => match input.next() {
                Some(b) => buf.extend_from_slice(&[*b]),
                None => return Err(Malformed("eof")),
            },
        }
    }
}

#[test]
fn chunked_bodies_decode_with_extensions_and_trailers() {
    let (body, trailers) = decode_all(b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n").unwrap();
    assert_eq!(body, b"hello0123456789");
    assert!(trailers.is_none());
    let (body, trailers) = decode_all(b"3\r\nabc\r\n0\r\nx-checksum: 42\r\n\r\n").unwrap();
    assert_eq!(body, b"abc");
    assert_eq!(trailers.unwrap().get("x-checksum").unwrap(), "42");
    for bad in [
        &b"g\r\nabc\r\n0\r\n\r\n"[..],
        b"3\r\nabcX\r\n0\r\n\r\n",
        b"3\nabc\r\n0\r\n\r\n",
        b"\r\n",
        b"10000000000000000\r\n",
    ] {
        assert!(decode_all(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn request_heads_carry_the_body_framing() {
    let req = http::Request::post("/a?b=1")
        .header("host", "up")
        .header("content-length", "3")
        .body(())
        .unwrap();
    let (mut parts, ()) = req.into_parts();
    assert_eq!(
        request_framing(&mut parts.headers, false, None),
        RequestFraming::Chunked
    );
    let mut buf = Vec::new();
    write_request_head(&mut buf, &parts, RequestFraming::Chunked, &());
    assert_eq!(
        String::from_utf8(buf).unwrap(),
        "POST /a?b=1 HTTP/1.1\r\nhost: up\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    struct Identity;
    impl super::super::ExtraFields for Identity {
        fn each_field(&self, mut field: impl FnMut(&[u8], &[u8])) {
            field(b"x-user-id", b"u1");
        }
    }
    let mut buf = Vec::new();
    write_request_head(&mut buf, &parts, RequestFraming::Chunked, &Identity);
    assert_eq!(
        String::from_utf8(buf).unwrap(),
        "POST /a?b=1 HTTP/1.1\r\nhost: up\r\nx-user-id: u1\r\n\
         transfer-encoding: chunked\r\n\r\n",
        "extra fields follow the request's own and precede the framing"
    );
    assert_eq!(
        request_framing(&mut parts.headers, false, Some(7)),
        RequestFraming::Length
    );
    assert_eq!(parts.headers.get(CONTENT_LENGTH).unwrap(), "7");
    let mut buf = Vec::new();
    write_chunk_size(&mut buf, 255);
    assert_eq!(buf, b"ff\r\n");
}
