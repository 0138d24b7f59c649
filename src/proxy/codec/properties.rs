//! Properties of the codec, checked on generated input: a request head written here reads
//! back the same through a standard parser; a response head parses into exactly the fields
//! it was written with and consumes only itself; the chunked decoder, fed any bytes in any
//! pieces, decodes or errors — never panics, never loops, never yields more than it was
//! given — and returns exactly what was chunked.

use proptest::prelude::*;

use super::*;

/// A header name a client or upstream might send (not one that decides framing).
fn field_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,12}".prop_filter("framing fields are chosen by the codec", |n| {
        !matches!(
            n.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "te" | "upgrade" | "host"
        )
    })
}

/// A field value without leading or trailing whitespace (which HTTP does not keep).
fn field_value() -> impl Strategy<Value = String> {
    "([!-~]([ -~]{0,16}[!-~])?)?"
}

fn fields() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((field_name(), field_value()), 0..12)
}

/// Decodes `input`, handed over in pieces of the given sizes, to the end of the body.
fn decode_all(input: &[u8], pieces: &[usize]) -> Result<(Vec<u8>, bool), Malformed> {
    let mut state = Chunked::Size;
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut sizes = pieces.iter().copied().chain(std::iter::repeat(usize::MAX));
    // Every step consumes input, yields data, ends, or asks for more: a bound far above
    // what any input here needs catches a decoder that spins.
    for _ in 0..100_000 {
        match decode_chunked(&mut state, &mut buf)? {
            Step::Data(d) => out.extend_from_slice(&d),
            Step::End(_) => return Ok((out, true)),
            Step::Progress => {}
            Step::NeedMore => {
                if fed == input.len() {
                    return Ok((out, false));
                }
                let n = sizes.next().unwrap_or(1).clamp(1, input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
        }
    }
    panic!("the decoder made no progress");
}

proptest! {
    #[test]
    fn a_written_request_head_reads_back_the_same(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        path in "(/[a-zA-Z0-9._~%-]{0,8}){1,4}",
        query in prop::option::of("[a-z0-9=&]{0,12}"),
        fields in fields(),
        chunked in any::<bool>(),
    ) {
        let target = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let mut req = http::Request::builder().method(method).uri(target.as_str());
        for (n, v) in &fields {
            req = req.header(n.as_str(), v.as_str());
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        let framing = if chunked { RequestFraming::Chunked } else { RequestFraming::Empty };
        let mut buf = Vec::new();
        write_request_head(&mut buf, &parts, framing, &());
        let mut raw = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut raw);
        let len = match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("{other:?}: {}", String::from_utf8_lossy(&buf)),
        };
        prop_assert_eq!(len, buf.len());
        prop_assert_eq!(parsed.method, Some(method));
        prop_assert_eq!(parsed.path, Some(target.as_str()));
        let mut want: Vec<(String, Vec<u8>)> = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        if chunked {
            want.push(("transfer-encoding".into(), b"chunked".to_vec()));
        }
        let got: Vec<(String, Vec<u8>)> = parsed
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn a_response_head_parses_into_its_fields_and_consumes_only_itself(
        status in 200u16..600,
        fields in fields(),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut text = format!("HTTP/1.1 {status} Reason\r\n").into_bytes();
        for (n, v) in &fields {
            text.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        text.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        text.extend_from_slice(&body);
        let mut buf = BytesMut::from(&text[..]);
        let head = parse_response_head(&mut buf, &Method::GET, &mut Vec::new())
            .expect("well-formed")
            .expect("complete");
        prop_assert_eq!(head.status.as_u16(), status);
        let got: Vec<(String, String)> = head
            .headers
            .iter()
            .filter(|(n, _)| *n != CONTENT_LENGTH)
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        // A HeaderMap groups repeated names at the first one's place; compare per name.
        for (name, _) in &fields {
            let want: Vec<&str> =
                fields.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
            let have: Vec<&str> =
                got.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
            prop_assert_eq!(have, want);
        }
        prop_assert_eq!(got.len(), fields.len());
        if status == 204 || status == 304 || body.is_empty() {
            prop_assert!(matches!(head.framing, BodyFraming::Empty | BodyFraming::Length(0)));
        } else {
            prop_assert_eq!(head.framing, BodyFraming::Length(body.len() as u64));
        }
        prop_assert_eq!(&buf[..], &body[..]);
    }

    #[test]
    fn the_chunked_decoder_never_panics_or_over_reads(
        input in prop::collection::vec(any::<u8>(), 0..512),
        pieces in prop::collection::vec(1usize..64, 0..16),
    ) {
        if let Ok((out, _)) = decode_all(&input, &pieces) {
            prop_assert!(out.len() <= input.len());
        }
    }

    #[test]
    fn the_chunked_decoder_reads_back_what_was_chunked(
        body in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in prop::collection::vec(1usize..300, 0..12),
        pieces in prop::collection::vec(1usize..40, 0..40),
        extension in any::<bool>(),
    ) {
        let mut wire = Vec::new();
        let mut rest = &body[..];
        for cut in cuts.iter().copied().chain(std::iter::repeat(300)) {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(cut.min(rest.len()));
            write_chunk_size(&mut wire, chunk.len());
            if extension {
                // Extensions sit between the size and the line end: `5;name=value`.
                let at = wire.len() - 2;
                wire.splice(at..at, b";ext=1".iter().copied());
            }
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
            rest = tail;
        }
        wire.extend_from_slice(b"0\r\nx-checksum: 1\r\n\r\n");
        let (out, ended) = decode_all(&wire, &pieces).expect("well-formed");
        prop_assert!(ended);
        prop_assert_eq!(out, body);
    }
}
