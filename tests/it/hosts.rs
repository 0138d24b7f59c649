//! Host is validated: exactly one, syntactically valid, agreeing with the target's authority;
//! what is routed on is what is forwarded and copied into `X-Forwarded-Host`.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};

use crate::harness::{TestServer, status_of};

const DOCS_ROUTE: &str = r#"
[[routes]]
name = "docs"
prefix = "/"
host = "docs.example.com"
auth = "public"
upstream = "http://127.0.0.1:9"
"#;

#[tokio::test]
async fn bad_hosts_are_400_and_never_forwarded() {
    let srv = TestServer::start().await;
    for head in [
        // No Host at all.
        "GET /public/x HTTP/1.1\r\n",
        // Two Host lines, same or different.
        "GET /public/x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n",
        "GET /public/x HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n",
        // Not a host.
        "GET /public/x HTTP/1.1\r\nHost: a, b\r\n",
        "GET /public/x HTTP/1.1\r\nHost: x@y\r\n",
        "GET /public/x HTTP/1.1\r\nHost: x/../admin\r\n",
        "GET /public/x HTTP/1.1\r\nHost: a.example:99999\r\n",
        "GET /public/x HTTP/1.1\r\nHost: \r\n",
        // An absolute target with user info.
        "GET http://u@a.example/public/x HTTP/1.1\r\nHost: a.example\r\n",
    ] {
        let text = srv.raw(&format!("{head}Connection: close\r\n\r\n")).await;
        assert_eq!(status_of(&text), 400, "{head:?}: {text}");
    }
    assert!(srv.echo.requests().is_empty(), "nothing was forwarded");
    // Controls: a valid host with a port, and HTTP/1.0 without Host.
    let text = srv
        .raw("GET /public/x HTTP/1.1\r\nHost: a.example:8080\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status_of(&text), 200, "{text}");
    assert_eq!(
        srv.echo.last().unwrap().header("x-forwarded-host"),
        Some("a.example:8080")
    );
    let text = srv.raw("GET /public/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(status_of(&text), 200, "{text}");
}

#[tokio::test]
async fn a_trailing_dot_matches_the_host_route() {
    let srv = TestServer::start_with(DOCS_ROUTE).await;
    // The route's upstream is dead, so reaching it shows as 502; not matching it, as 404.
    let text = srv
        .raw("GET /docs HTTP/1.1\r\nHost: docs.example.com.\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status_of(&text), 502, "{text}");
    let text = srv
        .raw("GET /docs HTTP/1.1\r\nHost: DOCS.example.com.:8443\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status_of(&text), 502, "{text}");
    let text = srv
        .raw("GET /docs HTTP/1.1\r\nHost: other.example.com\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status_of(&text), 404, "{text}");
}

#[tokio::test]
async fn an_absolute_target_replaces_host() {
    let srv = TestServer::start().await;
    let text = srv
        .raw(
            "GET http://real.example:8080/public/x?q=1 HTTP/1.1\r\nHost: spoofed.example\r\n\
             Connection: close\r\n\r\n",
        )
        .await;
    assert_eq!(status_of(&text), 200, "{text}");
    let seen = srv.echo.last().unwrap();
    assert_eq!(seen.target, "/public/x?q=1");
    assert_eq!(seen.header_all("host"), vec!["real.example:8080"]);
    assert_eq!(seen.header("x-forwarded-host"), Some("real.example:8080"));
}

#[tokio::test]
async fn http2_authority_and_host_must_agree() {
    let srv = TestServer::start().await;
    let h2 = srv.h2().await;
    let request = |authority: &str, host: Option<&str>| {
        let mut req = http::Request::builder().uri(format!("http://{authority}/public/h2"));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        req.body(()).unwrap()
    };
    for (authority, host, want) in [
        ("a.example", Some("b.example"), 400),
        ("a.example", Some("a.example"), 200),
        ("a.example", None, 200),
    ] {
        let status = h2.send(request(authority, host)).await;
        assert_eq!(status, want, "{authority} {host:?}");
    }
    let seen = srv.echo.last().unwrap();
    assert_eq!(seen.header_all("host"), vec!["a.example"]);
    // hyper's own client (no host field) keeps working.
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let resp = client
        .get(format!("http://{}/public/x", srv.addr).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
}
