//! Forward-auth: the verify endpoint judges the request a proxy holds — named by Traefik's
//! `X-Forwarded-*`, nginx's `X-Original-*` or Envoy's appended path — with the same
//! normalization, routes, credentials, CSRF rule and policies as a proxied request; 200
//! carries the identity, a refusal none; only trusted proxies are answered. And end to end
//! behind a real nginx (`auth_request`), spoofed identity headers never reach the upstream.

mod nginx;

use crate::harness::{Resp, TestServer};

const FORWARD_AUTH: &str = r#"
[server]
trusted_proxies = ["127.0.0.1/32"]

[forward_auth]
enabled = true

[sign_in]
enabled = true

[[routes]]
name = "app"
prefix = "/app"
sign_in_redirect = true
upstream = "http://{echo}"
"#;

const IDENTITY: [&str; 5] = [
    "x-user-id",
    "x-user-email",
    "x-user-role",
    "x-auth-method",
    "x-auth-key-id",
];

impl TestServer {
    /// A Traefik-style verify request for `method target`, with extra headers.
    async fn verify(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self
            .get(&self.auth_path("/verify"))
            .header("x-forwarded-method", method)
            .header("x-forwarded-uri", target)
            .header("x-forwarded-host", "app.example.com")
            .header("x-forwarded-proto", "https");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send().await
    }
}

fn no_identity(r: &Resp) {
    for name in IDENTITY {
        assert!(r.header(name).is_none(), "{name} on a {} answer", r.status);
    }
}

#[tokio::test]
async fn the_original_request_is_judged_like_a_proxied_one() {
    let srv = TestServer::start_with(FORWARD_AUTH).await;
    let user = srv.register("fa@example.com").await;
    let bearer = format!("Bearer {}", user.access);

    let ok = srv
        .verify("GET", "/api/orders?page=2", &[("authorization", &bearer)])
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.header("x-user-email"), Some("fa@example.com"));
    assert_eq!(ok.header("x-user-role"), Some("user"));
    assert_eq!(ok.header("x-auth-method"), Some("jwt"));
    assert!(
        ok.header("x-user-id")
            .is_some_and(|id| id.starts_with("user_"))
    );
    assert_eq!(ok.header("cache-control"), Some("no-store"));

    // No credential, a spoofed identity: 401 and nothing the proxy could copy.
    let spoofed = srv
        .verify(
            "GET",
            "/api/orders",
            &[("x-user-id", "user_admin"), ("x-user-role", "admin")],
        )
        .await;
    assert_eq!(spoofed.status, 401);
    assert!(spoofed.header("www-authenticate").is_some());
    no_identity(&spoofed);
    // The route's role rule, and default deny where no route matches.
    let r = srv
        .verify("GET", "/admin-only/x", &[("authorization", &bearer)])
        .await;
    assert_eq!(r.status, 403);
    no_identity(&r);
    let r = srv
        .verify("GET", "/nowhere", &[("authorization", &bearer)])
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("no_route"))
    );
    // A public route passes without an identity.
    let r = srv.verify("GET", "/public/x", &[]).await;
    assert_eq!(r.status, 200);
    no_identity(&r);

    // The path is normalized before routing: dot segments cannot borrow a public prefix.
    for sneaky in [
        "/public/../api/x",
        "/public/%2e%2e/api/x",
        "/PUBLIC/./../api/x",
    ] {
        assert_eq!(srv.verify("GET", sneaky, &[]).await.status, 401, "{sneaky}");
    }
    for bad in [
        "/public/..%2fapi/x",
        "/public/%252e%252e/api",
        "/public/%25%32%65%25%32%65/api",
        "/api?access_token=x",
    ] {
        assert_eq!(srv.verify("GET", bad, &[]).await.status, 400, "{bad}");
    }
    // An API key in its own header; the original method (not the verify GET) is judged.
    let (key, key_id) = srv.api_key(&user.access, "ci").await;
    let r = srv
        .verify("DELETE", "/api/orders/1", &[("x-api-key", &key)])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-auth-key-id"), Some(key_id.as_str()));
    assert_eq!(r.header("x-auth-method"), Some("api_key"));
}

#[tokio::test]
async fn cookies_pass_the_csrf_rule_of_the_original_host() {
    let srv = TestServer::start_with(FORWARD_AUTH).await;
    let user = srv.register("csrf-fa@example.com").await;
    let cookie = format!("access_token={}", user.access);
    let same_site = srv
        .verify(
            "POST",
            "/api/orders",
            &[("cookie", &cookie), ("origin", "https://app.example.com")],
        )
        .await;
    assert_eq!(same_site.status, 200, "{}", same_site.text());
    let forged = srv
        .verify(
            "POST",
            "/api/orders",
            &[("cookie", &cookie), ("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(forged.status, 403);
    no_identity(&forged);
    // A GET needs no origin.
    let read = srv
        .verify("GET", "/api/orders", &[("cookie", &cookie)])
        .await;
    assert_eq!(read.status, 200);
}

#[tokio::test]
async fn browsers_are_sent_to_sign_in_as_each_proxy_can_pass_it_on() {
    let srv = TestServer::start_with(FORWARD_AUTH).await;
    let nav = [("sec-fetch-mode", "navigate"), ("accept", "text/html")];
    let traefik = srv.verify("GET", "/app/reports?y=1", &nav).await;
    assert_eq!(traefik.status, 303);
    assert_eq!(
        traefik.header("location"),
        Some("/api/v1/auth/sign-in?return_to=%2Fapp%2Freports%3Fy%3D1")
    );
    // nginx's auth_request passes only 401 and 403 on: a 401 that says where to go.
    let nginx = srv
        .get(&srv.auth_path("/verify"))
        .header("x-original-method", "GET")
        .header("x-original-url", "http://app.example.com/app/reports")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await;
    assert_eq!(nginx.status, 401);
    assert_eq!(
        nginx.header("location"),
        Some("/api/v1/auth/sign-in?return_to=%2Fapp%2Freports")
    );
    // API clients still get their 401 JSON.
    let api = srv
        .verify("GET", "/app/reports", &[("accept", "application/json")])
        .await;
    assert_eq!(api.status, 401);
    assert!(api.header("location").is_none());
}

#[tokio::test]
async fn envoy_appends_the_original_path() {
    let srv = TestServer::start_with(FORWARD_AUTH).await;
    let user = srv.register("envoy@example.com").await;
    let r = srv
        .post(&srv.auth_path("/verify/api/orders?x=1"))
        .bearer(&user.access)
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-user-email"), Some("envoy@example.com"));
    let r = srv
        .post(&srv.auth_path("/verify/admin-only"))
        .bearer(&user.access)
        .send()
        .await;
    assert_eq!(r.status, 403);
    // Nothing to judge.
    let r = srv.get(&srv.auth_path("/verify")).send().await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn only_trusted_proxies_are_answered() {
    let srv = TestServer::start_with(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n[forward_auth]\nenabled = true\n",
    )
    .await;
    let user = srv.register("direct@example.com").await;
    let bearer = format!("Bearer {}", user.access);
    let r = srv
        .verify("GET", "/api/x", &[("authorization", &bearer)])
        .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("untrusted_peer"))
    );
    no_identity(&r);

    // Off (the default): the path is the account API's, which has no such endpoint.
    let srv = TestServer::start().await;
    let r = srv.verify("GET", "/api/x", &[]).await;
    assert_eq!(r.status, 404);
}
