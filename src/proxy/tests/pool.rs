//! Pooled connections: reuse, closes noticed, safe retries, early answers.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full, StreamBody};

use super::{Act, Script, send};
use crate::proxy::UpstreamError;

#[tokio::test]
async fn closed_idle_connections_are_noticed_before_use() {
    // The upstream closes after answering, without saying so.
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na";
    let (up, route, proxy) = Script::with_proxy(vec![Act::AnswerClose(ok), Act::Answer(ok)]).await;
    send(&proxy, &route, Method::GET, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Even a POST is safe: the closed connection is discarded, not written to.
    let (status, _, _, _) = send(&proxy, &route, Method::POST, Some("x")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(up.accepted(), 2);
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn a_pooled_connection_dropped_mid_request_is_retried_only_when_safe() {
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na";
    // Each first request is answered; the second on that connection is read and dropped.
    let (up, route, proxy) = Script::with_proxy(vec![
        Act::Answer(ok),
        Act::Close,
        Act::Answer(ok),
        Act::Answer(ok),
        Act::Close,
    ])
    .await;
    send(&proxy, &route, Method::GET, None).await.unwrap();
    let (status, _, body, _) = send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!(
        (status, &body[..]),
        (200, &b"a"[..]),
        "GET retried on a new connection"
    );
    assert_eq!(up.accepted(), 2);
    send(&proxy, &route, Method::GET, None).await.unwrap();
    // A POST may have been acted on: it is not sent twice.
    let err = send(&proxy, &route, Method::POST, None).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Closed), "{err:?}");
    let connections: Vec<usize> = up.seen().iter().map(|s| s.connection).collect();
    assert_eq!(connections, [1, 1, 2, 2, 2]);
    assert_eq!(up.accepted(), 2, "no retry connection for the POST");
}

#[tokio::test]
async fn malformed_and_truncated_responses_are_errors() {
    let (_up, route, proxy) = Script::with_proxy(vec![
        Act::Answer("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        Act::AnswerClose("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
        Act::Answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ])
    .await;
    let req = || Request::get("/x").body(Full::new(Bytes::new())).unwrap();
    assert!(matches!(
        proxy.forward(&route, req(), &(), None).await,
        Err(UpstreamError::Malformed(_))
    ));
    let resp = proxy.forward(&route, req(), &(), None).await.unwrap();
    assert!(resp.into_body().collect().await.is_err(), "short body");
    let resp = proxy.forward(&route, req(), &(), None).await.unwrap();
    assert!(resp.into_body().collect().await.is_err(), "bad chunk size");
}

#[tokio::test]
async fn head_responses_have_no_body_and_keep_the_connection() {
    let (up, route, proxy) = Script::with_proxy(vec![
        Act::Answer("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
        Act::Answer("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz"),
    ])
    .await;
    let (status, headers, body, _) = send(&proxy, &route, Method::HEAD, None).await.unwrap();
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(headers.get("content-length").unwrap(), "1000");
    let (_, _, body, _) = send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!(body, b"z");
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn an_upstream_answering_before_the_body_ends_is_heard() {
    let (up, route, proxy) = Script::with_proxy(vec![
        Act::AnswerBeforeBody("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig"),
        Act::AnswerBeforeBody("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"),
        Act::Answer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ])
    .await;
    // More than the socket buffers hold: the write blocks, and the answer is read instead.
    let huge = Bytes::from(vec![b'x'; 64 * 1024 * 1024]);
    let req = Request::post("/x").body(Full::new(huge)).unwrap();
    let started = std::time::Instant::now();
    let resp = proxy.forward(&route, req, &(), None).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        &resp.into_body().collect().await.unwrap().to_bytes()[..],
        b"big"
    );
    // A client still sending (a body that never ends): the upstream's refusal comes through.
    let never = StreamBody::new(futures_util::stream::pending::<
        Result<http_body::Frame<Bytes>, std::io::Error>,
    >());
    let req = Request::post("/x").body(never).unwrap();
    let resp = proxy.forward(&route, req, &(), None).await.unwrap();
    assert_eq!(resp.status(), 401);
    drop(resp);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not the response timeout"
    );
    // Neither connection is reused: each carried a request that was never finished.
    send(&proxy, &route, Method::GET, None).await.unwrap();
    assert_eq!(up.accepted(), 3);
}

#[tokio::test]
async fn a_100_continue_while_the_body_is_awaited_does_not_stop_it() {
    let (up, route, proxy) = Script::with_proxy(vec![Act::ContinueThenAnswer(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )])
    .await;
    // The client's body comes late, after the upstream's 100 Continue.
    let late = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(b"late body")))
    });
    let req = Request::post("/x")
        .header("expect", "100-continue")
        .body(StreamBody::new(Box::pin(late)))
        .unwrap();
    let resp = proxy.forward(&route, req, &(), None).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        &resp.into_body().collect().await.unwrap().to_bytes()[..],
        b"ok"
    );
    assert_eq!(up.seen()[0].body, b"late body");
}
