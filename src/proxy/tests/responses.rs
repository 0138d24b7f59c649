//! Response framing and request-body framing over a scripted upstream.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{Full, StreamBody};

use super::{Act, Script, send};

#[tokio::test]
async fn content_length_responses_reuse_one_connection() {
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    let (up, route, proxy) =
        Script::with_proxy(vec![Act::Answer(ok), Act::Answer(ok), Act::Answer(ok)]).await;
    for _ in 0..3 {
        let (status, _, body, _) = send(&proxy, &route, Method::GET, None).await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"hello"[..]));
    }
    assert_eq!(up.accepted(), 1);
    let seen = up.seen();
    assert!(seen[0].head.starts_with("GET /x HTTP/1.1\r\n"));
    assert!(
        seen[0]
            .head
            .contains(&format!("host: 127.0.0.1:{}\r\n", up.port))
    );
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_drops_content_length() {
    let (_up, route, proxy) = Script::with_proxy(vec![Act::AnswerClose(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabcdefgh",
    )])
    .await;
    let (status, headers, body, _) = send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!(status, 200);
    assert!(headers.get("content-length").is_none(), "{headers:?}");
    // Delimited by the close, not by the length it also claimed.
    assert_eq!(body, b"abcdefgh");
}

#[tokio::test]
async fn chunked_responses_decode_and_keep_their_trailers() {
    let (up, route, proxy) = Script::with_proxy(vec![
        Act::Answer(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n\
             4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nx-sum: 7\r\n\r\n",
        ),
        Act::Answer("HTTP/1.1 204 No Content\r\n\r\n"),
    ])
    .await;
    let (status, headers, body, trailers) = send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, b"wikipedia");
    assert!(headers.get("transfer-encoding").is_none(), "hop-by-hop");
    assert!(
        headers.get("content-length").is_none(),
        "never with chunked"
    );
    assert_eq!(trailers.unwrap().get("x-sum").unwrap(), "7");
    let (status, _, body, _) = send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!((status, body.len()), (204, 0));
    assert_eq!(up.accepted(), 1, "reused after a chunked body");
}

#[tokio::test]
async fn interim_responses_are_skipped_and_close_delimited_bodies_end_at_eof() {
    let (up, route, proxy) = Script::with_proxy(vec![
        Act::AnswerClose("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil the end"),
        Act::Answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ])
    .await;
    let (status, _, body, _) = send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!((status, &body[..]), (200, &b"until the end"[..]));
    let (_, _, body, _) = send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!(body, b"ok");
    assert_eq!(up.accepted(), 2, "a close-delimited body is never reused");
}

#[tokio::test]
async fn request_bodies_keep_or_gain_framing() {
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let (up, route, proxy) =
        Script::with_proxy(vec![Act::Answer(ok), Act::Answer(ok), Act::Answer(ok)]).await;
    send(&proxy, &route, Method::POST, Some("sized"))
        .await
        .unwrap();
    // A body of unknown length goes chunked, frame by frame.
    let frames = futures_util::stream::iter(["one ", "two ", "", "three"].map(|s| {
        Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(s.as_bytes())))
    }));
    let req = Request::post("/x")
        .header("content-length", "999")
        .body(StreamBody::new(frames))
        .unwrap();
    let resp = proxy.forward(&route, req, &(), None).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let req = Request::get("/x").body(Full::new(Bytes::new())).unwrap();
    proxy.forward(&route, req, &(), None).await.unwrap();
    let seen = up.seen();
    assert!(seen[0].head.contains("content-length: 5\r\n"));
    assert_eq!(seen[0].body, b"sized");
    assert!(seen[1].head.contains("transfer-encoding: chunked\r\n"));
    assert!(
        !seen[1].head.contains("content-length"),
        "a stale length is dropped"
    );
    assert_eq!(seen[1].body, b"one two three");
    assert!(
        !seen[2].head.contains("content-length") && !seen[2].head.contains("transfer-encoding")
    );
}
