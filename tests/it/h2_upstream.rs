//! Plain HTTP over HTTP/2 upstreams (`upstream_protocol = "h2c"`): the same guarantees as
//! the HTTP/1.1 path (identity, hygiene, body bounds), connections shared and bounded, a
//! connection the upstream closes with GOAWAY replaced without failing requests, and a
//! backoff while the upstream is down.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::harness::TestServer;

async fn with_h2_route(upstream: SocketAddr, extra: &str) -> TestServer {
    TestServer::start_with(&format!(
        "[[routes]]\nname = \"h2\"\nprefix = \"/h2\"\nupstream = \"http://{upstream}\"\n\
         upstream_protocol = \"h2c\"\nmax_body_bytes = 1000\n{extra}"
    ))
    .await
}

#[tokio::test]
async fn an_h2c_route_forwards_like_an_http1_route() {
    let echo = crate::echo::Echo::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let srv = with_h2_route(echo.addr, "").await;
    let t = srv.register("h2-user@example.com").await;
    let r = srv
        .get("/h2/x/../y?q=1&r=2")
        .bearer(&t.access)
        .header("x-user-id", "user_spoofed")
        .header("x-custom", "kept")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = echo.last().unwrap();
    assert_eq!(seen.target, "/h2/y?q=1&r=2");
    assert_eq!(seen.header_all("x-user-id").len(), 1);
    assert!(seen.header("x-user-id").unwrap().starts_with("user_"));
    assert_eq!(seen.header("x-custom"), Some("kept"));
    assert!(seen.header("authorization").is_none());
    assert!(seen.header("x-request-id").is_some());
    assert!(seen.header("x-forwarded-for").is_some());
    // No credential: refused before the upstream.
    let before = echo.requests().len();
    assert_eq!(srv.get("/h2/x").send().await.status, 401);
    assert_eq!(echo.requests().len(), before);
    // A body within the route's bound passes; a streamed one beyond it is the client's 413.
    let ok = srv
        .post("/h2/upload")
        .bearer(&t.access)
        .body(vec![b'a'; 900])
        .send()
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(echo.last().unwrap().body_len, 900);
    let head = format!(
        "POST /h2/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        t.access
    );
    let chunk = format!("{:x}\r\n{}\r\n", 600, "b".repeat(600));
    let answer = srv.raw(&format!("{head}{chunk}{chunk}0\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

/// An HTTP/2 upstream counting its connections, which closes each one (GOAWAY) after
/// `per_connection` requests.
async fn counting_upstream(per_connection: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    let addr = crate::harness::serve_each(move |tcp| {
        count.fetch_add(1, Ordering::SeqCst);
        serve_h2(tcp, per_connection)
    })
    .await;
    (addr, connections)
}

async fn serve_h2(tcp: tokio::net::TcpStream, per_connection: usize) {
    let served = Arc::new(AtomicUsize::new(0));
    let (enough_tx, mut enough) = tokio::sync::mpsc::channel::<()>(1);
    let service = hyper::service::service_fn(move |_req| {
        let served = served.clone();
        let enough_tx = enough_tx.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if served.fetch_add(1, Ordering::SeqCst) + 1 == per_connection {
                let _ = enough_tx.try_send(());
            }
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = enough.recv() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

#[tokio::test]
async fn concurrent_requests_share_a_few_connections() {
    let (addr, connections) = counting_upstream(usize::MAX).await;
    let srv = with_h2_route(addr, "auth = \"public\"\n").await;
    let calls = (0..200).map(|_| srv.get("/h2/x").send());
    let answers = futures_util::future::join_all(calls).await;
    assert!(answers.iter().all(|r| r.status == 200));
    let used = connections.load(Ordering::SeqCst);
    // 200 requests at once: at most 4 connections (100 streams each before another opens).
    assert!((1..=4).contains(&used), "{used} connections");
}

#[tokio::test]
async fn connections_closed_with_goaway_are_replaced_without_failing_requests() {
    let (addr, connections) = counting_upstream(3).await;
    let srv = with_h2_route(addr, "auth = \"public\"\n").await;
    for i in 0..12 {
        let r = srv.get("/h2/x").send().await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    // The upstream was reconnected to as it closed connections. Not necessarily four: a
    // request sent between the upstream's first GOAWAY (which names no last stream) and its
    // closing one is still served on the old connection.
    let used = connections.load(Ordering::SeqCst);
    assert!(used >= 2, "{used} connections");
    // Concurrent requests while connections keep closing: none is lost either.
    let calls = (0..30).map(|_| srv.get("/h2/x").send());
    let answers = futures_util::future::join_all(calls).await;
    let failed: Vec<_> = answers
        .iter()
        .filter(|r| r.status != 200)
        .map(|r| r.text())
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}

#[tokio::test]
async fn a_failed_connect_backs_off_then_recovers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let srv = with_h2_route(addr, "auth = \"public\"\n").await;
    assert_eq!(srv.get("/h2/x").send().await.status, 502);
    // The upstream comes up; within the first backoff (100 ms) requests still fail at once,
    // without a connection attempt.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_h2(tcp, usize::MAX));
        }
    });
    assert_eq!(srv.get("/h2/x").send().await.status, 502);
    assert_eq!(connections.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(srv.get("/h2/x").send().await.status, 200);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

/// Listens on a port of its own and relays each connection to `upstream`, keeping a copy
/// of the bytes sent toward the upstream (every connection's into the one buffer: meant
/// for a client that opens one).
async fn recording_relay(upstream: SocketAddr) -> (SocketAddr, Arc<std::sync::Mutex<Vec<u8>>>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let copy = sent.clone();
    let addr = crate::harness::serve_each(move |client| {
        let copy = copy.clone();
        async move {
            let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
            });
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                copy.lock().unwrap().extend_from_slice(&buf[..n]);
                if to_server.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    })
    .await;
    (addr, sent)
}

/// The payload sizes of the HEADERS frames in the bytes a client sent on one HTTP/2
/// connection.
fn headers_frame_sizes(wire: &[u8]) -> Vec<usize> {
    assert!(wire.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    let mut at = 24;
    let mut sizes = Vec::new();
    while at + 9 <= wire.len() {
        let len = usize::from(wire[at]) << 16
            | usize::from(wire[at + 1]) << 8
            | usize::from(wire[at + 2]);
        if wire[at + 3] == 1 {
            sizes.push(len);
        }
        at += 9 + len;
    }
    sizes
}

#[tokio::test]
async fn per_request_values_and_credentials_stay_out_of_the_compression_table() {
    // HPACK's dynamic table (4 KiB here) keeps the fields every request repeats, so each
    // request's header block is small. A new x-request-id or identity assertion indexed on
    // every request would evict them, and the block would swell each time they came back.
    let (addr, connections) = counting_upstream(usize::MAX).await;
    let (relay, wire) = recording_relay(addr).await;
    let srv = with_h2_route(relay, "identity_assertion = true\n").await;
    let t = srv.register("hpack-user@example.com").await;
    for _ in 0..10 {
        let batch = (0..20).map(|_| srv.get("/h2/x").bearer(&t.access).send());
        for r in futures_util::future::join_all(batch).await {
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    // Twenty requests at once on a cold route still open one connection.
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    let sizes = headers_frame_sizes(&wire.lock().unwrap());
    assert_eq!(sizes.len(), 200);
    let steady = &sizes[5..];
    let (least, most) = (steady.iter().min().unwrap(), steady.iter().max().unwrap());
    // What varies is the Huffman-coded length of the request id and the assertion.
    assert!(
        most - least < 40,
        "header blocks of {least} to {most} bytes: {sizes:?}"
    );
}

/// An HTTP/2 upstream (the h2 crate, frame by frame) that resets the first stream of each
/// connection, and every stream carrying `x-refuse`, with REFUSED_STREAM; it answers the
/// others with 200. Counts the streams it saw.
async fn refusing_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let streams = Arc::new(AtomicUsize::new(0));
    let seen = streams.clone();
    let addr = crate::harness::serve_each(move |tcp| {
        let seen = seen.clone();
        async move {
            let Ok(mut conn) = h2::server::handshake(tcp).await else {
                return;
            };
            let mut first = true;
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                if std::mem::take(&mut first) || req.headers().contains_key("x-refuse") {
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                } else {
                    let _ = respond.send_response(http::Response::new(()), true);
                }
            }
        }
    })
    .await;
    (addr, streams)
}

#[tokio::test]
async fn a_refused_stream_is_sent_again_once_when_it_has_no_body() {
    let (addr, streams) = refusing_upstream().await;
    let srv = with_h2_route(addr, "auth = \"public\"\n").await;
    // The connection's first stream is refused unprocessed: the GET goes again and passes.
    assert_eq!(srv.get("/h2/x").send().await.status, 200);
    assert_eq!(streams.load(Ordering::SeqCst), 2);
    // Refused every time: one more attempt, then 502.
    let r = srv.get("/h2/x").header("x-refuse", "1").send().await;
    assert_eq!(r.status, 502);
    assert_eq!(streams.load(Ordering::SeqCst), 4);
    // A request with a body is never sent twice: its body went into the first attempt.
    let r = srv
        .post("/h2/x")
        .header("x-refuse", "1")
        .body(&b"once"[..])
        .send()
        .await;
    assert_eq!(r.status, 502);
    assert_eq!(streams.load(Ordering::SeqCst), 5);
}
