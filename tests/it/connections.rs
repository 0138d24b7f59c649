//! Connections cannot be held hostage: every phase of a client connection is bounded in time
//! (first bytes, keep-alive idle, HTTP/2 idle, a stalled body, a tunnel's idleness and age),
//! so clients that say nothing cannot keep others out, and every slot comes back.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::TestServer;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

const TIGHT: &str = r#"
[server]
max_connections = 4
header_read_timeout = "400ms"
idle_timeout = "600ms"
body_read_timeout = "400ms"
http2_keepalive_interval = "300ms"
http2_keepalive_timeout = "300ms"
"#;

/// Reads until the peer closes (or `limit` passes); returns what was read and whether the
/// peer closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (out, closed)
}

/// Waits until at most `want` connections are open (the test client's own pooled
/// keep-alive connection may still count).
/// How long until the peer closes `stream` (at most 5 s, else the test fails).
async fn time_to_close(stream: &mut TcpStream) -> Duration {
    let started = std::time::Instant::now();
    let (_, closed) = read_until_closed(stream, Duration::from_secs(5)).await;
    assert!(closed, "not closed within 5 s");
    started.elapsed()
}

async fn wait_for_gauge(srv: &TestServer, want: u64) {
    for _ in 0..100 {
        if srv.state.metrics.connections_open() <= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "connections gauge stayed at {}, wanted {want}",
        srv.state.metrics.connections_open()
    );
}

#[tokio::test]
async fn silent_and_idle_connections_cannot_fill_every_slot() {
    let srv = TestServer::start_with(TIGHT).await;
    // Every slot taken: two silent sockets, one that sent only "P", one HTTP/2 connection
    // that sent the preface and SETTINGS and then nothing.
    let mut hostile = Vec::new();
    for _ in 0..2 {
        hostile.push(TcpStream::connect(srv.addr).await.unwrap());
    }
    let mut p = TcpStream::connect(srv.addr).await.unwrap();
    p.write_all(b"P").await.unwrap();
    hostile.push(p);
    let mut h2 = TcpStream::connect(srv.addr).await.unwrap();
    h2.write_all(H2_PREFACE).await.unwrap();
    h2.write_all(H2_SETTINGS).await.unwrap();
    hostile.push(h2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(srv.state.metrics.connections_open(), 4);

    // A new client is served once the hostile ones are cut off: within the first-bytes
    // bound for the silent ones, the idle bound for the HTTP/2 one.
    let started = std::time::Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(5), srv.raw_get_status("/public/x", ""))
        .await
        .expect("a new client is served");
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Each hostile socket was closed by the server.
    for mut s in hostile {
        let (_, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
        assert!(closed, "a hostile connection was left open");
    }
    wait_for_gauge(&srv, 0).await;
}

#[tokio::test]
async fn idle_keep_alive_and_http2_connections_are_closed() {
    let srv = TestServer::start_with(TIGHT).await;
    // HTTP/1.1: one request, then quiet.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    assert!(closed);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // HTTP/2 with a client that answers PINGs: one request, then no streams.
    let h2 = srv.h2().await;
    let req = http::Request::builder()
        .uri(format!("http://{}/public/h2", srv.addr))
        .body(())
        .unwrap();
    assert_eq!(h2.send(req).await, 200);
    // The server ends the connection (GOAWAY) once it has been idle.
    let ended = tokio::time::timeout(Duration::from_secs(5), h2.driver).await;
    assert!(ended.is_ok(), "idle HTTP/2 connection was not closed");
    wait_for_gauge(&srv, 0).await;
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_on_proxied_routes_and_the_account_api() {
    let srv = TestServer::start_with(TIGHT).await;
    for path in ["/public/upload", "/api/v1/auth/login"] {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
                 Content-Length: 100\r\n\r\n{{\"email\":"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let (out, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
    }
    assert_eq!(
        srv.state
            .metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("portcullis_upstream_failures_total") && !l.ends_with(" 0"))
            .count(),
        0,
        "a stalled client is not an upstream failure"
    );
    wait_for_gauge(&srv, 0).await;
}

/// Opens a WebSocket tunnel through /api with `auth` and checks it carries bytes.
async fn open_tunnel(srv: &TestServer, auth: &str) -> TcpStream {
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(
        format!(
            "GET /api/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{auth}\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping");
    s
}

#[tokio::test]
async fn tunnels_end_when_idle_and_when_too_old() {
    let srv = TestServer::start_with(
        "[server]\ntunnel_idle_timeout = \"400ms\"\ntunnel_max_lifetime = \"1500ms\"\n",
    )
    .await;
    let t = srv.register("tunnel-time@example.com").await;
    let auth = format!("Authorization: Bearer {}\r\n", t.access);
    let base = srv.state.metrics.connections_open();

    let mut quiet = open_tunnel(&srv, &auth).await;
    let took = time_to_close(&mut quiet).await;
    assert!(took < Duration::from_millis(1200), "{took:?}");

    // A busy tunnel lives until its maximum lifetime, not longer.
    let mut busy = open_tunnel(&srv, &auth).await;
    let started = std::time::Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(5) {
        if busy.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
        let mut one = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(200), busy.read(&mut one)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "the tunnel outlived its maximum lifetime");
    let lived = started.elapsed();
    assert!(
        lived > Duration::from_millis(1000) && lived < Duration::from_millis(3000),
        "{lived:?}"
    );
    wait_for_gauge(&srv, base).await;
}

#[tokio::test]
async fn tunnels_close_when_their_principal_is_revoked() {
    let srv = TestServer::start().await;
    let admin = srv.admin("tunnel-admin@example.com").await;
    let t = srv.register("tunnel-revoked@example.com").await;
    let (key, key_id) = srv.api_key(&t.access, "socket").await;
    let base = srv.state.metrics.connections_open();

    // Logout ends the session: its tunnel closes at once.
    let mut by_token = open_tunnel(&srv, &format!("Authorization: Bearer {}\r\n", t.access)).await;
    let mut by_key = open_tunnel(&srv, &format!("X-API-Key: {key}\r\n")).await;
    let r = srv.logout(&t.access).await;
    assert_eq!(r.status, 200);
    let (_, closed) = read_until_closed(&mut by_token, Duration::from_secs(2)).await;
    assert!(closed, "the logged-out session's tunnel is still open");
    // The key's tunnel is another principal: still open.
    by_key.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(2), by_key.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();

    // Key revocation closes the key's tunnel.
    let fresh = srv
        .login("tunnel-revoked@example.com", crate::harness::PASSWORD)
        .await;
    let fresh = crate::harness::Tokens::from(&fresh);
    let r = srv.revoke_key(&fresh.access, &key_id).await;
    assert_eq!(r.status, 200);
    let (_, closed) = read_until_closed(&mut by_key, Duration::from_secs(2)).await;
    assert!(closed, "the revoked key's tunnel is still open");

    // Disabling the user closes their tunnels.
    let mut by_fresh =
        open_tunnel(&srv, &format!("Authorization: Bearer {}\r\n", fresh.access)).await;
    let user_id = srv.user_id("tunnel-revoked@example.com").await;
    let r = srv.admin_user(&admin.access, &user_id, "disable").await;
    assert_eq!(r.status, 200);
    let (_, closed) = read_until_closed(&mut by_fresh, Duration::from_secs(2)).await;
    assert!(closed, "the disabled user's tunnel is still open");
    wait_for_gauge(&srv, base).await;
}

#[tokio::test]
async fn keep_alive_idleness_and_slow_heads_have_their_own_bounds() {
    let srv = TestServer::start_with(
        "[server]\nheader_read_timeout = \"300ms\"\nidle_timeout = \"1500ms\"\n",
    )
    .await;
    // A quiet keep-alive connection lives until idle_timeout, not header_read_timeout.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let lived = time_to_close(&mut s).await;
    assert!(
        lived > Duration::from_millis(1200) && lived < Duration::from_millis(2500),
        "{lived:?}"
    );
    // A second request on a kept-alive connection, then a head that never ends: cut off
    // header_read_timeout after its first byte.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /public/1 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.write_all(b"GET /public/2 HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let took = time_to_close(&mut s).await;
    assert!(took < Duration::from_millis(1000), "{took:?}");
    // Slowloris from the first byte: the same bound.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\n").await.unwrap();
    let took = time_to_close(&mut s).await;
    assert!(took < Duration::from_millis(1000), "{took:?}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    let srv = TestServer::start_with("[server]\nsend_timeout = \"500ms\"\n").await;
    let base = srv.state.metrics.connections_open();
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    // 32 MiB answer, far more than the socket buffers hold; the client reads nothing.
    s.write_all(b"GET /public/big HTTP/1.1\r\nHost: a\r\nx-echo-bytes: 33554432\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(srv.state.metrics.connections_open(), base + 1);
    // The server gives up on the stalled write and frees the slot.
    wait_for_gauge(&srv, base).await;
    // Reading now finds the answer cut short.
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed);
    assert!(out.len() < 32 << 20, "{}", out.len());
}
