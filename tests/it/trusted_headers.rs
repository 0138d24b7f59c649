//! Headers other proxies and frameworks trust as identity or routing truth never pass from
//! the client, on any route and under any spelling; Portcullis sets the ones it owns.

use crate::harness::TestServer;

const FOREIGN: [&str; 31] = [
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Uri",
    "X-Original-URL",
    "X-Original-URI",
    "X-Rewrite-URL",
    "X-Real-IP",
    "Forwarded",
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Groups",
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Auth-Request-Access-Token",
    "X-Remote-User",
    "Remote-User",
    "X-Authenticated-User",
    "True-Client-IP",
    "X-Client-IP",
    "X-Cluster-Client-IP",
    "Client-IP",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "X-Forwarded-Ssl",
    "X-Forwarded-Scheme",
    "X-Scheme",
    "X-Forwarded-Server",
    "X-Original-Host",
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
];

/// The name as sent, and two aliases a backend might fold into it.
fn spellings(name: &str) -> [String; 3] {
    [
        name.to_string(),
        name.to_ascii_lowercase().replace('-', "_"),
        name.to_ascii_uppercase().replace('-', "."),
    ]
}

#[tokio::test]
async fn other_proxies_identity_and_routing_headers_are_removed_everywhere() {
    let srv = TestServer::start_with(
        "[identity_headers]\nalso_remove = [\"X-Tenant-Id\", \"X-Internal-*\"]\n",
    )
    .await;
    let t = srv.register("foreign@example.com").await;
    let names: Vec<&str> = FOREIGN
        .iter()
        .chain(&["X-Tenant-Id", "X-Internal-Role"])
        .copied()
        .collect();
    // Three spellings of every name exceed the 100 fields a request head may carry, so
    // they go in several requests.
    for chunk in names.chunks(16) {
        let mut head = String::new();
        for name in chunk {
            for (i, spelled) in spellings(name).iter().enumerate() {
                head.push_str(&format!("{spelled}: spoofed-{i}\r\n"));
            }
        }
        for (path, auth) in [
            ("/public/x", String::new()),
            ("/api/x", format!("Authorization: Bearer {}\r\n", t.access)),
        ] {
            srv.echo.clear();
            let text = srv
                .raw(&format!(
                    "GET {path} HTTP/1.1\r\nHost: app.example\r\n{auth}{head}X-Kept: yes\r\nConnection: close\r\n\r\n"
                ))
                .await;
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            let seen = srv.echo.last().unwrap();
            for name in chunk {
                for spelled in spellings(name) {
                    assert!(
                        seen.header(&spelled.to_ascii_lowercase()).is_none(),
                        "{path}: {spelled} reached the upstream"
                    );
                }
            }
            // Portcullis's own forwarding headers are there, with its values; unrelated
            // headers pass.
            assert_eq!(seen.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
            assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
            assert_eq!(seen.header("x-forwarded-host"), Some("app.example"));
            assert_eq!(seen.header("x-kept"), Some("yes"));
        }
    }
}

#[tokio::test]
async fn a_method_override_cannot_turn_a_checked_get_into_a_delete() {
    // A GET-only route: a backend's method-override middleware must not turn the GET
    // Portcullis matched into the DELETE no route lets through.
    let srv = TestServer::start_with_method_route("readonly", "GET").await;
    let r = srv.req(http::Method::DELETE, "/readonly/x").send().await;
    assert_eq!(r.status, 404, "no route takes a DELETE: {}", r.text());
    let r = srv
        .get("/readonly/x")
        .header("X-HTTP-Method-Override", "DELETE")
        .header("x_http_method", "DELETE")
        .header("X-Method-Override", "DELETE")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = srv.echo.last().expect("upstream saw the request");
    assert_eq!(seen.method, "GET");
    for (name, value) in &seen.headers {
        assert!(value != "DELETE", "{name}: {value} reached the upstream");
    }
}

#[tokio::test]
async fn http2_cookie_fields_are_joined_for_the_http1_upstream() {
    let srv = TestServer::start().await;
    let req = http::Request::builder()
        .uri(format!("http://{}/public/cookies", srv.addr))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("cookie", "c=3")
        .body(())
        .unwrap();
    assert_eq!(srv.h2().await.send(req).await, 200);
    let seen = srv.echo.last().unwrap();
    assert_eq!(seen.header_all("cookie"), vec!["a=1; b=2; c=3"]);
}
