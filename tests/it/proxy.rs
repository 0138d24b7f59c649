//! Forwarding: header hygiene on every route, X-Forwarded-*, X-Request-Id, routing and
//! default deny, upstream failures, streaming bodies, WebSocket upgrades.

use crate::harness::TestServer;

const SPOOFS: [&str; 10] = [
    "X-User-Id",
    "x_user_id",
    "X.User.Id",
    "x-user_id",
    "X-User-Email",
    "x_user_email",
    "X-User-Role",
    "x.user.role",
    "X-Auth-Method",
    "X_Auth_Key_Id",
];

fn assert_no_spoof(srv: &TestServer) {
    let seen = srv.echo.last().expect("upstream saw the request");
    for (name, value) in &seen.headers {
        assert_ne!(value, "spoofed", "{name} reached the upstream");
    }
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_a_public_route() {
    let srv = TestServer::start().await;
    let mut req = srv.get("/public/x");
    for s in SPOOFS {
        req = req.header(s, "spoofed");
    }
    let r = req.send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_no_spoof(&srv);
    let seen = srv.echo.last().unwrap();
    assert!(seen.header("x-user-id").is_none());
}

#[tokio::test]
async fn spoofed_identity_headers_are_replaced_on_a_protected_route() {
    let srv = TestServer::start().await;
    let t = srv.register("spoof@example.com").await;
    let mut req = srv.get("/api/whoami").bearer(&t.access);
    for s in SPOOFS {
        req = req.header(s, "spoofed");
    }
    let r = req.send().await;
    assert_eq!(r.status, 200);
    assert_no_spoof(&srv);
    let seen = srv.echo.last().unwrap();
    assert_eq!(seen.header_all("x-user-id").len(), 1);
    assert!(seen.header("x-user-id").unwrap().starts_with("user_"));
    assert_eq!(seen.header("x-user-email"), Some("spoof@example.com"));
    assert_eq!(seen.header("x-user-role"), Some("user"));
    assert_eq!(seen.header("x-auth-method"), Some("jwt"));
    assert!(
        seen.header("authorization").is_none(),
        "credential not forwarded by default"
    );
}

#[tokio::test]
async fn renamed_identity_headers_are_injected_and_their_spoofs_removed() {
    let srv = TestServer::start_with(
        "[identity_headers]\nuser_id = \"X-Portcullis-User\"\nemail = \"X-Portcullis-Email\"\n\
         role = \"X-Portcullis-Role\"\nauth_method = \"X-Portcullis-Method\"\n\
         key_id = \"X-Portcullis-Key\"\n",
    )
    .await;
    let t = srv.register("renamed@example.com").await;
    let (key, key_id) = srv.api_key(&t.access, "renamed").await;
    let r = srv
        .get("/api/x")
        .header("x-api-key", &key)
        .header("x_portcullis_user", "spoofed")
        .header("X.Portcullis.Role", "spoofed")
        .header("x-portcullis-key", "spoofed")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_no_spoof(&srv);
    let seen = srv.echo.last().unwrap();
    assert_eq!(seen.header_all("x-portcullis-user").len(), 1);
    assert!(
        seen.header("x-portcullis-user")
            .is_some_and(|v| v.starts_with("user_"))
    );
    assert_eq!(
        seen.header("x-portcullis-email"),
        Some("renamed@example.com")
    );
    assert_eq!(seen.header("x-portcullis-role"), Some("user"));
    assert_eq!(seen.header("x-portcullis-method"), Some("api_key"));
    assert_eq!(seen.header("x-portcullis-key"), Some(key_id.as_str()));
    assert!(
        seen.header("x-user-id").is_none(),
        "the default names are not used"
    );
    assert!(seen.header("x-api-key").is_none(), "key not forwarded");
}

#[tokio::test]
async fn connection_header_cannot_remove_injected_headers() {
    let srv = TestServer::start().await;
    let t = srv.register("conn@example.com").await;
    let r = srv
        .get("/api/x")
        .bearer(&t.access)
        .header(
            "connection",
            "X-User-Id, X-User-Role, X-Forwarded-For, X-Request-Id",
        )
        .header("x-internal", "1")
        .header("connection", "x-internal")
        .send()
        .await;
    assert_eq!(r.status, 200);
    let seen = srv.echo.last().unwrap();
    assert!(
        seen.header("x-user-id")
            .is_some_and(|v| v.starts_with("user_"))
    );
    assert_eq!(seen.header("x-user-role"), Some("user"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert!(seen.header("x-request-id").is_some());
    assert!(
        seen.header("x-internal").is_none(),
        "Connection-named header removed"
    );
    assert!(
        seen.header("connection")
            .is_none_or(|c| !c.contains("X-User"))
    );
}

#[tokio::test]
async fn forwarded_headers_are_set_and_not_trusted_by_default() {
    let srv = TestServer::start().await;
    let r = srv
        .get("/public/x?q=1")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("x-request-id", "trace-abc-123")
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("trace-abc-123"));
    let seen = srv.echo.last().unwrap();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert!(
        seen.header("x-forwarded-host")
            .is_some_and(|h| h.starts_with("127.0.0.1"))
    );
    assert_eq!(seen.header("x-request-id"), Some("trace-abc-123"));
    assert_eq!(seen.target, "/public/x?q=1");
}

#[tokio::test]
async fn trusted_proxies_extend_forwarded_for() {
    let srv = TestServer::start_with("[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n").await;
    let r = srv
        .get("/public/x")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .send()
        .await;
    assert_eq!(r.status, 200);
    let seen = srv.echo.last().unwrap();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
}

#[tokio::test]
async fn malformed_request_ids_are_replaced() {
    let srv = TestServer::start().await;
    let r = srv
        .get("/public/x")
        .header("x-request-id", "bad id with spaces")
        .send()
        .await;
    let rid = r.header("x-request-id").unwrap().to_string();
    assert_eq!(rid.len(), 36, "a UUIDv7: {rid}");
    assert_eq!(
        srv.echo.last().unwrap().header("x-request-id"),
        Some(rid.as_str())
    );
}

#[tokio::test]
async fn unmatched_paths_are_denied() {
    let srv = TestServer::start().await;
    let r = srv.get("/nowhere").send().await;
    assert_eq!(r.status, 404);
    assert_eq!(r.detail(), "Not Found");
    assert!(srv.echo.last().is_none());
    // Segment boundaries: /publicx is not under /public.
    assert_eq!(srv.get("/publicx").send().await.status, 404);
    assert!(srv.echo.last().is_none());
}

#[tokio::test]
async fn trace_is_not_proxied_unless_a_route_lists_it() {
    // TRACE echoes the request back: on a route that injects an identity or forwards
    // credentials, the client (or a script, XST) would read them. Routes without `methods`
    // do not take it; one that lists it does.
    let srv = TestServer::start_with_method_route("diagnostics", "TRACE").await;
    let t = srv.register("trace@example.com").await;
    for method in ["TRACE", "TRACK"] {
        let m = http::Method::from_bytes(method.as_bytes()).unwrap();
        for path in ["/public/x", "/creds/x"] {
            let r = srv
                .req(m.clone(), path)
                .bearer(&t.access)
                .header("cookie", &format!("access_token={}", t.access))
                .send()
                .await;
            assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        }
    }
    assert!(srv.echo.last().is_none(), "a TRACE reached the upstream");
    let r = srv.req(http::Method::TRACE, "/diagnostics/x").send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(srv.echo.last().unwrap().method, "TRACE");
}

#[tokio::test]
async fn protected_routes_require_credentials_and_roles() {
    let srv = TestServer::start().await;
    let r = srv.get("/api/x").send().await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let user = srv.register("plain@example.com").await;
    let r = srv.get("/admin-only/x").bearer(&user.access).send().await;
    assert_eq!(r.status, 403);
    let admin = srv.admin("boss@example.com").await;
    let r = srv.get("/admin-only/x").bearer(&admin.access).send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed_header("x-user-role").as_deref(), Some("admin"));
}

#[tokio::test]
async fn optional_routes_inject_only_valid_identities() {
    let srv = TestServer::start().await;
    let r = srv.get("/optional/x").send().await;
    assert_eq!(r.status, 200);
    assert!(r.echoed_header("x-user-id").is_none());
    let t = srv.register("opt@example.com").await;
    let r = srv.get("/optional/x").bearer(&t.access).send().await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.echoed_header("x-user-email").as_deref(),
        Some("opt@example.com")
    );
    let r = srv.get("/optional/x").bearer("not.a.token").send().await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn strip_prefix_and_upstream_base_path() {
    let srv = TestServer::start().await;
    let t = srv.register("strip@example.com").await;
    let r = srv
        .get("/stripped/v1/items?page=2")
        .bearer(&t.access)
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(srv.echo.last().unwrap().target, "/base/v1/items?page=2");
}

#[tokio::test]
async fn route_can_forward_credentials() {
    let srv = TestServer::start().await;
    let t = srv.register("creds@example.com").await;
    srv.get("/creds/x").bearer(&t.access).send().await;
    let seen = srv.echo.last().unwrap();
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {}", t.access).as_str())
    );
}

#[tokio::test]
async fn upstream_failures_become_502_and_504() {
    let srv = TestServer::start().await;
    let r = srv.get("/dead/x").send().await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["code"], "upstream_unavailable");
    let started = std::time::Instant::now();
    let r = srv
        .get("/slow/x")
        .header("x-echo-delay-ms", "3000")
        .send()
        .await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["code"], "upstream_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[tokio::test]
async fn large_bodies_stream_through() {
    let srv = TestServer::start().await;
    let t = srv.register("big@example.com").await;
    let body = vec![b'x'; 8 * 1024 * 1024];
    let r = srv
        .post("/api/upload")
        .bearer(&t.access)
        .body(body)
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], 8 * 1024 * 1024);
}

#[tokio::test]
async fn upstream_status_and_hop_by_hop_response_headers() {
    let srv = TestServer::start().await;
    let r = srv
        .get("/public/x")
        .header("x-echo-status", "418")
        .send()
        .await;
    assert_eq!(r.status, 418);
    assert!(r.header("keep-alive").is_none());
}

#[tokio::test]
async fn websocket_upgrade_passes_through_for_allowed_callers() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let srv = TestServer::start().await;
    let t = srv.register("ws@example.com").await;
    let handshake = |auth: Option<&str>| {
        format!(
            "GET /api/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{}\r\n",
            auth.map(|a| format!("Authorization: Bearer {a}\r\n"))
                .unwrap_or_default()
        )
    };
    // Without credentials: refused, never upgraded.
    let refused = srv
        .raw(&handshake(None).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"))
        .await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");

    let mut stream = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    stream
        .write_all(handshake(Some(&t.access)).as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    stream.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = vec![0u8; 23];
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_exact(&mut echoed),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");
    let seen = srv.echo.last().unwrap();
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert!(seen.header("x-user-id").is_some());
}

#[tokio::test]
async fn jwks_is_published() {
    let srv = TestServer::start().await;
    let r = srv.get("/.well-known/jwks.json").send().await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["keys"][0]["kty"], "OKP");
    assert_eq!(v["keys"][0]["alg"], "EdDSA");
    assert!(v["keys"][0].get("d").is_none());
}

#[tokio::test]
async fn upstream_connections_are_reused_and_closed_ones_replaced() {
    let srv = TestServer::start().await;
    for _ in 0..3 {
        assert_eq!(srv.get("/public/a").send().await.status, 200);
    }
    assert_eq!(srv.echo.connections(), 1, "one pooled connection");
    // The upstream closes the connection after answering; the next request gets a new one.
    let r = srv
        .get("/public/b")
        .header("x-echo-close", "1")
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("connection").is_none(),
        "hop-by-hop response header removed"
    );
    for _ in 0..2 {
        assert_eq!(srv.get("/public/c").send().await.status, 200);
    }
    assert_eq!(srv.echo.connections(), 2);
}
