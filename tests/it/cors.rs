//! CORS: preflights answered before authentication with exactly the allowed values (or 403
//! and no CORS header), actual responses — errors included — echo an allowed origin, never
//! `*` with credentials, always `Vary: Origin`; the upstream's own CORS headers never leak
//! past a policy; `cors = "upstream"` forwards preflights only; and the CSRF rule uses the
//! same origin list.

use http::Method;

use crate::harness::TestServer;

const CORS: &str = r#"
[cors]
allowed_origins = ["https://app.example.com", "https://*.tenant.example"]

[[routes]]
name = "browser"
prefix = "/browser"
cors = "inherit"
upstream = "http://{echo}"

[[routes]]
name = "partner"
prefix = "/partner"
upstream = "http://{echo}"
[routes.cors]
allowed_origins = ["https://partner.example"]
allowed_methods = ["GET"]
allowed_headers = ["authorization"]
credentials = false
max_age = "1m"

[[routes]]
name = "own-cors"
prefix = "/own-cors"
cors = "upstream"
upstream = "http://{echo}"
"#;

async fn preflight(
    srv: &TestServer,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> crate::harness::Resp {
    let mut req = srv
        .req(Method::OPTIONS, path)
        .header("origin", origin)
        .header("access-control-request-method", method);
    if !headers.is_empty() {
        req = req.header("access-control-request-headers", headers);
    }
    req.send().await
}

const CORS_HEADERS: [&str; 6] = [
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
];

fn no_cors_headers(r: &crate::harness::Resp) {
    for h in CORS_HEADERS {
        assert!(r.header(h).is_none(), "{h} on {:?}", r.headers);
    }
}

#[tokio::test]
async fn preflights_are_answered_before_authentication_with_the_allowed_values() {
    let srv = TestServer::start_with(CORS).await;
    srv.echo.clear();
    let r = preflight(
        &srv,
        "/browser/items",
        "https://app.example.com",
        "PUT",
        "Authorization, Content-Type",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let methods = r.header("access-control-allow-methods").unwrap();
    assert!(
        methods.contains("PUT") && methods.contains("DELETE"),
        "{methods}"
    );
    let headers = r.header("access-control-allow-headers").unwrap();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert!(r.header("vary").unwrap().contains("Origin"));
    // A subdomain pattern, at any depth.
    let r = preflight(
        &srv,
        "/browser/items",
        "https://a.b.tenant.example",
        "GET",
        "",
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://a.b.tenant.example")
    );
    // The account API answers under [cors] too.
    let r = preflight(
        &srv,
        &srv.auth_path("/login"),
        "https://app.example.com",
        "POST",
        "content-type",
    )
    .await;
    assert_eq!(r.status, 204);
    // No preflight reached the upstream, and none needed a credential.
    assert!(srv.echo.requests().is_empty());
}

#[tokio::test]
async fn refused_preflights_are_403_without_any_cors_header() {
    let srv = TestServer::start_with(CORS).await;
    for (path, origin, method, headers) in [
        ("/browser/x", "https://evil.example", "GET", ""),
        (
            "/browser/x",
            "https://app.example.com.evil.example",
            "GET",
            "",
        ),
        ("/browser/x", "http://app.example.com", "GET", ""),
        ("/browser/x", "null", "GET", ""),
        ("/browser/x", "https://tenant.example", "GET", ""),
        ("/browser/x", "https://app.example.com", "TRACE", ""),
        (
            "/browser/x",
            "https://app.example.com",
            "GET",
            "x-secret-header",
        ),
        // The route's own policy replaces [cors]: the global origin is not allowed there,
        // and neither is a method or header outside its lists.
        ("/partner/x", "https://app.example.com", "GET", ""),
        ("/partner/x", "https://partner.example", "DELETE", ""),
        (
            "/partner/x",
            "https://partner.example",
            "GET",
            "content-type",
        ),
    ] {
        let r = preflight(&srv, path, origin, method, headers).await;
        assert_eq!(
            r.status,
            403,
            "{path} {origin} {method} {headers}: {}",
            r.text()
        );
        assert_eq!(r.json()["code"], "cors");
        no_cors_headers(&r);
    }
    let r = preflight(
        &srv,
        "/partner/x",
        "https://partner.example",
        "GET",
        "Authorization",
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-credentials"), None);
    assert_eq!(r.header("access-control-max-age"), Some("60"));
}

#[tokio::test]
async fn actual_responses_echo_an_allowed_origin_errors_included() {
    let srv = TestServer::start_with(CORS).await;
    let t = srv.register("cors-actual@example.com").await;
    let ok = srv
        .get("/browser/data")
        .bearer(&t.access)
        .header("origin", "https://app.example.com")
        .header("x-echo-set-header", "access-control-allow-origin: *")
        .send()
        .await;
    assert_eq!(ok.status, 200);
    // The upstream's `*` is replaced by the policy's answer.
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        ok.headers
            .get_all("access-control-allow-origin")
            .iter()
            .count(),
        1
    );
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        ok.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert!(ok.header("vary").unwrap().contains("Origin"));
    // A 401 carries them too, so the app can read it and send the user to sign in.
    let unauth = srv
        .get("/browser/data")
        .header("origin", "https://app.example.com")
        .send()
        .await;
    assert_eq!(unauth.status, 401);
    assert_eq!(
        unauth.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    // So do the account API's answers.
    let me = srv
        .get(&srv.auth_path("/me"))
        .bearer(&t.access)
        .header("origin", "https://x.tenant.example")
        .send()
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(
        me.header("access-control-allow-origin"),
        Some("https://x.tenant.example")
    );
    // An unlisted origin gets no CORS header (the browser hides the answer), but the upstream's
    // own permissive headers are still removed, and the answer still varies on Origin.
    let other = srv
        .get("/browser/data")
        .bearer(&t.access)
        .header("origin", "https://evil.example")
        .header(
            "x-echo-set-header",
            "access-control-allow-origin: https://evil.example",
        )
        .send()
        .await;
    assert_eq!(other.status, 200);
    no_cors_headers(&other);
    assert!(other.header("vary").unwrap().contains("Origin"));
    // Without credentials, still the origin and not `*`.
    let partner = srv
        .get("/partner/x")
        .bearer(&t.access)
        .header("origin", "https://partner.example")
        .send()
        .await;
    assert_eq!(
        partner.header("access-control-allow-origin"),
        Some("https://partner.example")
    );
    assert_eq!(partner.header("access-control-allow-credentials"), None);
}

#[tokio::test]
async fn routes_without_cors_leave_the_upstreams_headers_and_options_alone() {
    let srv = TestServer::start_with(CORS).await;
    // /public has no `cors`: an OPTIONS is an ordinary request, the upstream answers.
    let r = preflight(&srv, "/public/x", "https://app.example.com", "GET", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(srv.echo.last().unwrap().method, "OPTIONS");
    let r = srv
        .get("/public/x")
        .header("origin", "https://app.example.com")
        .header(
            "x-echo-set-header",
            "access-control-allow-origin: https://app.example.com",
        )
        .send()
        .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    // A protected route without `cors`: the preflight needs a credential like anything else.
    let r = preflight(&srv, "/api/x", "https://app.example.com", "GET", "").await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn cors_upstream_forwards_preflights_unauthenticated_and_nothing_else() {
    let srv = TestServer::start_with(CORS).await;
    let r = srv
        .req(Method::OPTIONS, "/own-cors/x")
        .header("origin", "https://anywhere.example")
        .header("access-control-request-method", "POST")
        .header("x-user-id", "forged")
        .header(
            "x-echo-set-header",
            "access-control-allow-origin: https://anywhere.example",
        )
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://anywhere.example")
    );
    let seen = srv.echo.last().unwrap();
    assert_eq!(seen.method, "OPTIONS");
    assert!(seen.header("x-user-id").is_none(), "{:?}", seen.headers);
    // Any other request, OPTIONS without Access-Control-Request-Method included, still
    // needs a credential.
    assert_eq!(srv.get("/own-cors/x").send().await.status, 401);
    let plain = srv
        .req(Method::OPTIONS, "/own-cors/x")
        .header("origin", "https://anywhere.example")
        .send()
        .await;
    assert_eq!(plain.status, 401);
}

#[tokio::test]
async fn csrf_accepts_the_cors_origins_and_nothing_else() {
    let srv = TestServer::start_with(CORS).await;
    let t = srv.register("cors-csrf@example.com").await;
    let cookie = format!("access_token={}", t.access);
    for (path, origin, want) in [
        ("/browser/x", "https://app.example.com", 200),
        ("/browser/x", "https://x.tenant.example", 200),
        ("/browser/x", "https://evil.example", 403),
        ("/browser/x", "null", 403),
        // The route's own list decides on its route: the global origin is not in it.
        ("/partner/x", "https://app.example.com", 403),
        ("/partner/x", "https://partner.example", 200),
        // Routes without `cors` use the global list.
        ("/api/x", "https://app.example.com", 200),
        ("/api/x", "https://partner.example", 403),
    ] {
        let r = srv
            .post(path)
            .header("cookie", &cookie)
            .header("origin", origin)
            .send()
            .await;
        assert_eq!(r.status, want, "{path} from {origin}: {}", r.text());
    }
}

#[tokio::test]
async fn the_older_csrf_spelling_still_names_the_origins() {
    let srv =
        TestServer::start_with("[csrf]\nallowed_origins = [\"https://legacy.example\"]\n").await;
    let r = preflight(
        &srv,
        &srv.auth_path("/me"),
        "https://legacy.example",
        "GET",
        "authorization",
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://legacy.example")
    );
}
