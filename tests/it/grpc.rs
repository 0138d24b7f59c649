//! gRPC and HTTP/2 upstreams (`upstream_protocol = "h2c"`): a tonic client through
//! Portcullis to tonic services on a hyper HTTP/2 server — unary, server streaming, bidi
//! streaming, the injected identity in the metadata, the refusals answered the gRPC way,
//! `grpc-timeout`, a large stream under flow control, and trailers both ways.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::{Code, Status};

use crate::harness::TestServer;

mod upstream;

use self::upstream::{Raw, Upstream, start_upstream};

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn portcullis(up: &Upstream) -> TestServer {
    TestServer::start_with(&format!(
        r#"
[[routes]]
name = "grpc"
prefix = "/test.Echo"
upstream = "http://{up}"
upstream_protocol = "h2c"

[[routes]]
name = "grpc-admin"
prefix = "/test.Admin"
roles = ["admin"]
upstream = "http://{up}"
upstream_protocol = "h2c"

[[routes]]
name = "grpc-fast"
prefix = "/test.Fast"
response_timeout = "300ms"
upstream = "http://{up}"
upstream_protocol = "h2c"

[[routes]]
name = "grpc-down"
prefix = "/test.Down"
upstream = "http://127.0.0.1:{down}"
upstream_protocol = "h2c"

[[routes]]
name = "grpc-http1"
prefix = "/test.Old"
upstream = "http://{up}"

[[routes]]
name = "plain-h2"
prefix = "/plain.Trailers"
auth = "public"
upstream = "http://{up}"
upstream_protocol = "h2c"
"#,
        up = up.addr,
        down = closed_port(),
    ))
    .await
}

type Client = tonic::client::Grpc<
    tower::util::BoxCloneSyncService<
        http::Request<tonic::body::Body>,
        http::Response<Incoming>,
        hyper::Error,
    >,
>;

/// A gRPC client on one HTTP/2 connection to Portcullis.
async fn client(srv: &TestServer) -> Client {
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let service = tower::service_fn(move |req: http::Request<tonic::body::Body>| {
        let mut send = send.clone();
        async move { send.send_request(req).await }
    });
    let origin: http::Uri = format!("http://{}", srv.addr).parse().unwrap();
    tonic::client::Grpc::with_origin(tower::util::BoxCloneSyncService::new(service), origin)
}

fn request<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    // Spoofed: must never reach the service.
    req.metadata_mut()
        .insert("x-user-id", "user_spoofed".parse().unwrap());
    req
}

async fn unary(
    c: &mut Client,
    path: &'static str,
    req: tonic::Request<Vec<u8>>,
) -> Result<String, Status> {
    c.ready().await.unwrap();
    c.unary(req, PathAndQuery::from_static(path), Raw)
        .await
        .map(|r| String::from_utf8(r.into_inner()).unwrap())
}

/// `/test.Echo/Download`: `spec` is "<messages> <bytes each>"; the reply stream.
async fn download(c: &mut Client, spec: &str, token: &str) -> tonic::Streaming<Vec<u8>> {
    c.ready().await.unwrap();
    c.server_streaming(
        request(spec.as_bytes().to_vec(), Some(token)),
        PathAndQuery::from_static("/test.Echo/Download"),
        Raw,
    )
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test]
async fn unary_calls_carry_the_verified_identity_and_never_the_spoofed_one() {
    let up = start_upstream().await;
    let srv = portcullis(&up).await;
    let t = srv.register("grpc-user@example.com").await;
    let mut c = client(&srv).await;
    let got = unary(
        &mut c,
        "/test.Echo/Unary",
        request(b"hi".to_vec(), Some(&t.access)),
    )
    .await
    .unwrap();
    assert!(got.starts_with("user=user_"), "{got}");
    assert!(!got.contains("spoofed"), "{got}");
    assert!(got.contains("role=user"), "{got}");
    // The credential stays with Portcullis.
    assert!(got.contains("auth=-"), "{got}");
    assert!(got.ends_with("msg=hi"), "{got}");

    // The upstream's own status, message and trailers pass through as it sent them.
    let err = unary(&mut c, "/test.Echo/Fail", request(vec![], Some(&t.access)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(err.message(), "no such thing");
    assert_eq!(err.metadata().get("x-upstream-detail").unwrap(), "kept");
}

#[tokio::test]
async fn refusals_are_answered_with_grpc_status_codes() {
    let up = start_upstream().await;
    let srv = portcullis(&up).await;
    let t = srv.register("grpc-refused@example.com").await;
    let mut c = client(&srv).await;

    // Answered by Portcullis with grpc-status itself (HTTP 200, trailers-only), not left for
    // the client to guess from an HTTP status: the message is Portcullis's own.
    let none = unary(&mut c, "/test.Echo/Unary", request(vec![], None))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    assert_eq!(none.message(), "Not authenticated");
    assert_eq!(none.metadata().get("www-authenticate").unwrap(), "Bearer");
    let bad = unary(
        &mut c,
        "/test.Echo/Unary",
        request(vec![], Some("not-a-token")),
    )
    .await
    .unwrap_err();
    assert_eq!(bad.code(), Code::Unauthenticated, "{bad:?}");
    let denied = unary(
        &mut c,
        "/test.Admin/Unary",
        request(vec![], Some(&t.access)),
    )
    .await
    .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert_eq!(denied.message(), "Insufficient permissions");

    let down = unary(&mut c, "/test.Down/Unary", request(vec![], Some(&t.access)))
        .await
        .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    assert_eq!(down.message(), "Upstream unavailable");
    let old = unary(&mut c, "/test.Old/Unary", request(vec![], Some(&t.access)))
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::Unimplemented, "{old:?}");
    assert!(old.message().contains("h2c"), "{old:?}");

    // The same refusal over raw HTTP/2: status 200, no body, grpc-status in the headers.
    let h2 = srv.h2().await;
    let mut raw = h2.client.clone().ready().await.unwrap();
    let req = http::Request::post(format!("http://{}/test.Echo/Unary", srv.addr))
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let (resp, _) = raw.send_request(req, true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["grpc-status"], "16");
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    assert!(resp.body().is_end_stream());
}

#[tokio::test]
async fn grpc_timeout_is_a_deadline_capped_by_the_route() {
    let up = start_upstream().await;
    let srv = portcullis(&up).await;
    let t = srv.register("grpc-deadline@example.com").await;
    let mut c = client(&srv).await;

    let mut req = request(vec![], Some(&t.access));
    req.set_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let err = unary(&mut c, "/test.Echo/Slow", req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    // A longer grpc-timeout does not extend the route's 300 ms.
    let mut req = request(vec![], Some(&t.access));
    req.set_timeout(Duration::from_secs(30));
    let started = std::time::Instant::now();
    let err = unary(&mut c, "/test.Fast/Slow", req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    // Without one, the route's own timeout (30 s by default) lets the call finish.
    let got = unary(
        &mut c,
        "/test.Echo/Slow",
        request(b"late".to_vec(), Some(&t.access)),
    )
    .await
    .unwrap();
    assert!(got.ends_with("msg=late"), "{got}");
}

#[tokio::test]
async fn streams_flow_both_ways() {
    let up = start_upstream().await;
    let srv = portcullis(&up).await;
    let t = srv.register("grpc-stream@example.com").await;
    let mut c = client(&srv).await;

    let got: Vec<Vec<u8>> = download(&mut c, "20 1000", &t.access)
        .await
        .map(|m| m.unwrap())
        .collect()
        .await;
    assert_eq!(got.len(), 20);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, m)| m.len() == 1000 && m.iter().all(|&b| b == i as u8))
    );

    // Bidi: each reply comes back before the next message is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let outgoing =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    c.ready().await.unwrap();
    let resp = c.streaming(
        request(outgoing, Some(&t.access)),
        PathAndQuery::from_static("/test.Echo/Reverse"),
        Raw,
    );
    let sending = tokio::spawn(async move {
        tx.send(b"abc".to_vec()).await.unwrap();
        tx
    });
    let mut replies = resp.await.unwrap().into_inner();
    let tx = sending.await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap(), b"cba");
    tx.send(b"hello".to_vec()).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap(), b"olleh");
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
    // The stream ended with grpc-status 0 in the trailers.
    assert!(replies.trailers().await.unwrap().is_some());
}

#[tokio::test]
async fn a_large_stream_moves_under_flow_control() {
    let up = start_upstream().await;
    let srv = portcullis(&up).await;
    let t = srv.register("grpc-large@example.com").await;
    let mut c = client(&srv).await;

    // 96 MiB in 1 MiB messages; the client reads one, then stops reading for a while.
    let mut stream = download(&mut c, "96 1048576", &t.access).await;
    assert_eq!(stream.message().await.unwrap().unwrap().len(), 1 << 20);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ahead = up.produced.load(Ordering::SeqCst);
    eprintln!("produced while the client paused: {} KiB", ahead >> 10);
    // What the upstream could produce is what the flow-control windows and send buffers
    // on the way hold (a few MiB), not the stream.
    assert!(
        ahead < 24 << 20,
        "the upstream produced {} MiB ahead",
        ahead >> 20
    );
    let mut n = 1;
    while let Some(m) = stream.message().await.unwrap() {
        assert_eq!(m.len(), 1 << 20);
        assert!(m.iter().all(|&b| b == n as u8));
        n += 1;
    }
    assert_eq!(n, 96);
}

#[tokio::test]
async fn trailers_pass_both_ways_and_protected_ones_are_dropped() {
    let up = start_upstream().await;
    let srv = portcullis(&up).await;
    let h2 = srv.h2().await;
    let mut client = h2.client.clone().ready().await.unwrap();
    let req = http::Request::post(format!("http://{}/plain.Trailers/echo", srv.addr))
        .body(())
        .unwrap();
    let (resp, mut body) = client.send_request(req, false).unwrap();
    body.send_data(Bytes::from_static(b"twelve bytes"), false)
        .unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc123".parse().unwrap());
    trailers.insert("x-user-id", "user_spoofed".parse().unwrap());
    trailers.insert("X-Forwarded-For", "6.6.6.6".parse().unwrap());
    trailers.insert("authorization", "Bearer stolen".parse().unwrap());
    body.send_trailers(trailers).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut recv = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = recv.data().await {
        data.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(data, b"12 bytes");
    let got = recv.trailers().await.unwrap().expect("response trailers");
    assert_eq!(got.get("x-got-x-checksum").unwrap(), "abc123");
    assert!(got.get("x-got-x-user-id").is_none(), "{got:?}");
    assert!(got.get("x-got-x-forwarded-for").is_none(), "{got:?}");
    assert!(got.get("x-got-authorization").is_none(), "{got:?}");
}
