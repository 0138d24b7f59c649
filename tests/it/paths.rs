//! One canonical path: what is matched is exactly what is forwarded; ambiguous spellings are
//! refused with 400 and never reach the upstream. Raw sockets, so no client library
//! normalizes anything first.

use crate::harness::TestServer;

#[tokio::test]
async fn equivalent_spellings_are_forwarded_canonically() {
    let srv = TestServer::start().await;
    let cases = [
        ("//public//a", "/public/a"),
        ("/public/./a", "/public/a"),
        ("/x/../public/a", "/public/a"),
        ("/public/a/b/../c", "/public/a/c"),
        ("/%70ublic/%61?q=%2F", "/public/a?q=%2F"),
        ("/public/a%20b", "/public/a%20b"),
        ("/public/%7euser", "/public/~user"),
        ("/public/a/", "/public/a/"),
    ];
    for (sent, forwarded) in cases {
        srv.echo.clear();
        let status = srv.raw_get_status(sent, "").await;
        assert_eq!(status, 200, "{sent}");
        assert_eq!(srv.echo.last().unwrap().target, forwarded, "{sent}");
    }
}

#[tokio::test]
async fn ambiguous_paths_are_refused_and_never_forwarded() {
    let srv = TestServer::start().await;
    for target in [
        "/public/a%2Fb",
        "/public/a%2fb",
        "/public/a%5Cb",
        "/public/a%00b",
        "/public/%2e%2e/%2e%2e/etc/passwd",
        "/public/../../x",
        "/public/a;jsessionid=1",
        "/public/a%3Bb",
        "/public/a%zz",
    ] {
        let status = srv.raw_get_status(target, "").await;
        assert_eq!(status, 400, "{target}");
    }
    let text = srv
        .raw("GET /public/a\\b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        srv.echo.requests().is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn dot_segments_cannot_escape_a_protected_prefix() {
    let srv = TestServer::start().await;
    // /public/../api/x is /api/x: it must be judged (and refused) as /api/x.
    for target in [
        "/public/../api/x",
        "/public/%2e%2e/api/x",
        "/public/.%2e/api/x",
    ] {
        assert_eq!(srv.raw_get_status(target, "").await, 401, "{target}");
    }
    assert!(srv.echo.requests().is_empty());
    // And /api/../public/x is public.
    assert_eq!(srv.raw_get_status("/api/../public/x", "").await, 200);
    assert_eq!(srv.echo.last().unwrap().target, "/public/x");
}

#[tokio::test]
async fn prefixes_match_on_segment_boundaries() {
    let srv = TestServer::start().await;
    assert_eq!(srv.raw_get_status("/public", "").await, 200);
    assert_eq!(srv.raw_get_status("/publicity", "").await, 404);
    assert_eq!(srv.raw_get_status("/public-x", "").await, 404);
    assert_eq!(srv.raw_get_status("/api2/x", "").await, 404);
}

#[tokio::test]
async fn double_encoded_paths_are_refused() {
    let srv = TestServer::start().await;
    for target in [
        "/public/%252e%252e/admin",
        "/public/%252e%252e/%252e%252e/api/x",
        // Becomes the first one once %32 and %65 are decoded: found by fuzzing.
        "/public/%25%32%65%25%32%65/admin",
        "/public/a%252Fb",
        "/public/%2541dmin",
    ] {
        assert_eq!(srv.raw_get_status(target, "").await, 400, "{target}");
    }
    assert!(srv.echo.requests().is_empty());
    // A literal percent sign that is not followed by hex digits stays allowed.
    assert_eq!(srv.raw_get_status("/public/100%25", "").await, 200);
    assert_eq!(srv.echo.last().unwrap().target, "/public/100%25");
}

#[tokio::test]
async fn prefixes_match_letters_in_either_case_by_default() {
    let srv = TestServer::start_with(
        r#"
[[routes]]
name = "api-admin"
prefix = "/api/admin"
roles = ["admin"]
upstream = "http://127.0.0.1:9"

[[routes]]
name = "strict"
prefix = "/strict/admin"
roles = ["admin"]
case_sensitive = true
upstream = "http://127.0.0.1:9"
"#,
    )
    .await;
    let user = srv.register("case@example.com").await;
    let auth = format!("Authorization: Bearer {}\r\n", user.access);
    // Every spelling of /api/admin is judged by the admin route: 403 for a user.
    for target in [
        "/api/admin/x",
        "/api/ADMIN/x",
        "/API/Admin",
        "/api/%41dmin/x",
        "/api/%61DMIN/x",
    ] {
        assert_eq!(srv.raw_get_status(target, &auth).await, 403, "{target}");
    }
    assert!(srv.echo.requests().is_empty());
    // The weaker /api route still takes what is not under /api/admin.
    assert_eq!(srv.raw_get_status("/api/adminx", &auth).await, 200);
    assert_eq!(srv.raw_get_status("/API/other", &auth).await, 200);
    assert_eq!(srv.echo.last().unwrap().target, "/API/other");
    // The account API's mount also matches in either case.
    let text = srv
        .raw(&format!(
            "GET /API/V1/AUTH/me HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
        ))
        .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("case@example.com"), "{text}");
    // A case-sensitive route opts out: other spellings fall through (here to nothing).
    assert_eq!(srv.raw_get_status("/strict/ADMIN/x", &auth).await, 404);
    assert_eq!(srv.raw_get_status("/strict/admin/x", &auth).await, 403);
}
