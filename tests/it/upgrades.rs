//! Upgrades: only WebSocket is tunnelled, only on routes that turn it on, and a
//! cookie-authenticated handshake must come from an allowed origin (no cross-site WebSocket
//! hijacking).

use crate::harness::{TestServer, status_of};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn handshake(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: app.example:8443\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    )
}

/// The status line of the answer to a handshake (the connection is left open on a 101).
async fn handshake_status(srv: &TestServer, request: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    status_of(&String::from_utf8_lossy(&buf[..n]))
}

#[tokio::test]
async fn h2c_and_other_upgrades_are_proxied_as_plain_requests() {
    let srv = TestServer::start().await;
    let t = srv.register("h2c@example.com").await;
    let text = srv
        .raw(&format!(
            "GET /api/h2c HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
             Connection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\
             \r\n",
            t.access
        ))
        .await;
    assert_eq!(status_of(&text), 200, "{text}");
    let seen = srv.echo.last().unwrap();
    assert!(seen.header("upgrade").is_none(), "{:?}", seen.headers);
    assert!(seen.header("http2-settings").is_none());
    assert!(seen.header("connection").is_none());
    // HTTP2-Settings is dropped even without a Connection header naming it.
    srv.raw(
        "GET /public/x HTTP/1.1\r\nHost: localhost\r\nHTTP2-Settings: AAMAAABk\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(srv.echo.last().unwrap().header("http2-settings").is_none());
}

#[tokio::test]
async fn websocket_is_off_unless_the_route_turns_it_on() {
    let srv = TestServer::start().await;
    // /public has no `websocket = true`: the handshake is forwarded without Upgrade and the
    // client never gets a tunnel (this echo answers 101 anyway, which is refused).
    let status = handshake_status(&srv, &handshake("/public/ws", "")).await;
    assert_ne!(status, 101);
    let seen = srv.echo.last().unwrap();
    assert!(seen.header("upgrade").is_none());
    // The route that turns it on tunnels.
    let t = srv.register("ws-on@example.com").await;
    let auth = format!("Authorization: Bearer {}\r\n", t.access);
    assert_eq!(
        handshake_status(&srv, &handshake("/api/ws", &auth)).await,
        101
    );
}

#[tokio::test]
async fn cookie_authenticated_handshakes_must_come_from_an_allowed_origin() {
    let srv =
        TestServer::start_with("[csrf]\nallowed_origins = [\"https://app.example.com\"]\n").await;
    let t = srv.register("cswsh@example.com").await;
    let cookie = format!("Cookie: access_token={}\r\n", t.access);
    for (extra, want) in [
        // Another origin, even of the same site.
        ("Origin: https://evil.example\r\n", 403),
        (
            "Origin: https://other.app.example:8443\r\nSec-Fetch-Site: same-site\r\n",
            403,
        ),
        ("Origin: null\r\n", 403),
        // No origin at all: a browser always sends one, so this is not one to trust.
        ("", 403),
        // The request's own origin, a configured one, or a same-origin fetch.
        ("Origin: http://app.example:8443\r\n", 101),
        ("Origin: https://app.example.com\r\n", 101),
        ("Sec-Fetch-Site: same-origin\r\n", 101),
    ] {
        let status =
            handshake_status(&srv, &handshake("/api/ws", &format!("{cookie}{extra}"))).await;
        assert_eq!(status, want, "{extra:?}");
    }
    // A bearer token is not sent by the browser on its own: no origin needed.
    let bearer = format!("Authorization: Bearer {}\r\n", t.access);
    assert_eq!(
        handshake_status(&srv, &handshake("/api/ws", &bearer)).await,
        101
    );
}
