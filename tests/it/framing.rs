//! Framing errors are the client's: a malformed or truncated request body is 400 (never
//! 502, never an upstream failure), a transfer coding other than `chunked` is 501, a
//! declared length over the limit is 413 before any body byte is read, an oversized head
//! is 431.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{TestServer, status_of};

/// Sends `bytes`, optionally half-closes, and reads the answer until the server closes (or
/// 5 s pass).
async fn exchange(srv: &TestServer, bytes: &[u8], half_close: bool) -> String {
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    if half_close {
        s.shutdown().await.unwrap();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn upstream_failures(srv: &TestServer) -> u64 {
    srv.state
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("portcullis_upstream_failures_total"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn malformed_chunked_bodies_are_400_not_502() {
    let srv = TestServer::start().await;
    let head = "POST /public/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    let flood = format!("5{}\r\nhello\r\n0\r\n\r\n", ";x=y".repeat(8192));
    for body in [
        "10000000000000000\r\nx\r\n0\r\n\r\n",
        "-1\r\nx\r\n0\r\n\r\n",
        "0x10\r\nxxxxxxxxxxxxxxxx\r\n0\r\n\r\n",
        "5\nhello\n0\n\n",
        "5\r\nhelloXX0\r\n\r\n",
        flood.as_str(),
    ] {
        let text = exchange(&srv, format!("{head}{body}").as_bytes(), false).await;
        assert_eq!(status_of(&text), 400, "{body:.40?}: {text}");
        assert!(text.contains("\"code\":\"bad_body\""), "{text}");
    }
    assert_eq!(upstream_failures(&srv), 0);
}

#[tokio::test]
async fn a_truncated_body_is_400() {
    let srv = TestServer::start().await;
    let text = exchange(
        &srv,
        b"POST /public/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly ten b",
        true,
    )
    .await;
    assert_eq!(status_of(&text), 400, "{text}");
    assert_eq!(upstream_failures(&srv), 0);
}

#[tokio::test]
async fn transfer_codings_other_than_chunked_are_501() {
    let srv = TestServer::start().await;
    for te in [
        "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
    ] {
        let text = exchange(
            &srv,
            format!("POST /public/upload HTTP/1.1\r\nHost: a\r\n{te}\r\n5\r\nhello\r\n0\r\n\r\n")
                .as_bytes(),
            false,
        )
        .await;
        assert_eq!(status_of(&text), 501, "{te:?}: {text}");
    }
    // A last coding other than chunked leaves the length unknowable: 400 and closed
    // (RFC 9112 §6.3; hyper answers before Portcullis sees the request).
    for te in ["identity", "gzip", "chunked, gzip"] {
        let text = exchange(
            &srv,
            format!(
                "POST /public/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\nhello"
            )
            .as_bytes(),
            false,
        )
        .await;
        assert_eq!(status_of(&text), 400, "{te:?}: {text}");
    }
    assert!(srv.echo.requests().is_empty(), "nothing was forwarded");
    // Both framings at once: chunked wins and Content-Length never reaches the upstream
    // (RFC 9112 §6.3; hyper drops it before Portcullis sees the request).
    let text = exchange(
        &srv,
        b"POST /public/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        false,
    )
    .await;
    if status_of(&text) == 200 {
        let seen = srv.echo.last().unwrap();
        assert!(
            seen.header("content-length").is_none() || seen.header("transfer-encoding").is_none()
        );
        assert_eq!(seen.body_len, 5);
    } else {
        assert_eq!(status_of(&text), 400, "{text}");
    }
}

const LIMITED: &str = r#"
[[routes]]
name = "limited"
prefix = "/limited"
auth = "public"
max_body_bytes = 1024
upstream = "http://{echo}"
"#;

#[tokio::test]
async fn declared_lengths_over_the_limit_are_413_before_the_body() {
    let srv = TestServer::start_with(LIMITED).await;
    for (path, length) in [
        ("/api/v1/auth/login", "10737418240"),
        ("/api/v1/auth/register", "16385"),
        ("/limited/upload", "1025"),
        ("/public/upload", "104857601"),
    ] {
        let started = std::time::Instant::now();
        // Only the head is sent: the answer must not wait for the body.
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("answered without reading the body")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert_eq!(status_of(&text), 413, "{path}: {text}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    assert!(srv.echo.requests().is_empty(), "nothing was forwarded");
    // At the limit, it passes.
    let body = "y".repeat(1024);
    let text = exchange(
        &srv,
        format!("POST /limited/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n{body}").as_bytes(),
        false,
    )
    .await;
    assert_eq!(status_of(&text), 200, "{text}");
}

#[tokio::test]
async fn a_streamed_body_over_the_route_limit_is_413() {
    let srv = TestServer::start_with(LIMITED).await;
    let big = "x".repeat(2000);
    let text = exchange(
        &srv,
        format!(
            "POST /limited/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        )
        .as_bytes(),
        false,
    )
    .await;
    assert_eq!(status_of(&text), 413, "{text}");
    assert_eq!(upstream_failures(&srv), 0);
}

#[tokio::test]
async fn oversized_request_heads_are_431() {
    let srv = TestServer::start().await;
    let huge = "v".repeat(70 * 1024);
    let text = exchange(
        &srv,
        format!("GET /public/x HTTP/1.1\r\nHost: a\r\nX-Big: {huge}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
        false,
    )
    .await;
    assert_eq!(status_of(&text), 431, "{:.200}", text);
    // Just under the default 64 KiB passes.
    let fits = "v".repeat(60 * 1024);
    let text = exchange(
        &srv,
        format!("GET /public/x HTTP/1.1\r\nHost: a\r\nX-Big: {fits}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
        false,
    )
    .await;
    assert_eq!(status_of(&text), 200, "{:.200}", text);
}
