//! Where the browser goes: return targets that cannot leave the origin (or the
//! `sign_in.return_origins` list), and routes with `sign_in_redirect` that send page loads —
//! only page loads — to the sign-in page.

use super::BROWSER;
use crate::harness::{PASSWORD, TestServer};

#[tokio::test]
async fn return_targets_cannot_leave_the_origin() {
    let srv = TestServer::start_with(BROWSER).await;
    srv.register("redirect@example.com").await;
    let own_host = format!("{}/app/here?x=1", srv.origin());
    // On this host, but the dot segments resolve to `//evil.example`.
    let own_host_dots = format!("{}/.//evil.example", srv.origin());
    for (given, expected) in [
        ("/app/ok?q=%2F", "/app/ok?q=%2F"),
        (
            "https://app.example.com/dash?a=1",
            "https://app.example.com/dash?a=1",
        ),
        (own_host.as_str(), "/app/here?x=1"),
        ("//evil.example", "/"),
        ("///evil.example", "/"),
        ("https:evil.example", "/"),
        ("/\\evil.example", "/"),
        ("\\\\evil.example", "/"),
        ("/%2F%2Fevil.example", "/"),
        ("%2F%2Fevil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("/%252F%252Fevil.example", "/"),
        ("/\t/evil.example", "/"),
        ("https://evil.example/", "/"),
        ("HTTPS://evil.example", "/"),
        ("https://app.example.com@evil.example/", "/"),
        ("https://app.example.com.evil.example/", "/"),
        ("https://evil.example\\@app.example.com/", "/"),
        ("javascript:alert(1)", "/"),
        ("data:text/html,hi", "/"),
        ("/api/v1/auth/sign-in?return_to=/x", "/"),
        ("/API/V1/AUTH/SIGN-OUT", "/"),
        ("/app/../ok", "/app/../ok"),
        ("/.//evil.example", "/"),
        ("/x/..//evil.example", "/"),
        ("/%2e%2e//evil.example", "/"),
        (own_host_dots.as_str(), "/"),
    ] {
        let r = srv
            .sign_in_form("redirect@example.com", PASSWORD, given)
            .await;
        assert_eq!(r.status, 303, "{given:?}");
        assert_eq!(r.header("location"), Some(expected), "{given:?}");
        // The page carries the same verdict in its form.
        let encoded: String = form_urlencoded::byte_serialize(given.as_bytes()).collect();
        let page = srv
            .get(&srv.auth_path(&format!("/sign-in?return_to={encoded}")))
            .send()
            .await;
        assert_eq!(page.status, 200, "{given:?}");
        let field = format!(
            "name=\"return_to\" value=\"{}\"",
            expected.replace('&', "&amp;")
        );
        assert!(page.text().contains(&field), "{given:?}: {}", page.text());
    }
}

#[tokio::test]
async fn page_loads_go_to_sign_in_and_programs_get_401() {
    let srv = TestServer::start_with(BROWSER).await;
    let expected = "/api/v1/auth/sign-in?return_to=%2Fapp%2Freport%3Fy%3D2026%26m%3D12";
    let r = srv.navigate("/app/report?y=2026&m=12", None).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some(expected));
    // An older browser without fetch metadata: Accept decides.
    let r = srv
        .get("/app/report?y=2026&m=12")
        .header("accept", "text/html")
        .send()
        .await;
    assert_eq!(r.header("location"), Some(expected));
    // A stale cookie is "sign in again", too.
    let r = srv.navigate("/app/x", Some("access_token=stale")).await;
    assert_eq!(r.status, 303);

    // Programs: fetch(), JSON clients, non-GET methods, a credential in a header.
    let programs = [
        srv.get("/app/x")
            .header("sec-fetch-mode", "cors")
            .header("accept", "text/html"),
        srv.get("/app/x").header("accept", "application/json"),
        srv.get("/app/x"),
        srv.post("/app/x")
            .header("sec-fetch-mode", "navigate")
            .header("accept", "text/html"),
        srv.get("/app/x")
            .header("accept", "text/html")
            .bearer("not-a-token"),
        srv.get("/app/x")
            .header("accept", "text/html")
            .header("x-api-key", "pk_nope"),
    ];
    for req in programs {
        let r = req.send().await;
        assert_eq!(r.status, 401);
        assert!(r.header("location").is_none());
        assert!(r.json()["detail"].is_string());
    }
    // A route without the policy keeps its 401 for page loads.
    assert_eq!(srv.navigate("/api/x", None).await.status, 401);

    // Signed in without the role: 403, not a loop back to the page.
    let tokens = srv.register("plain@example.com").await;
    let cookie = format!("access_token={}", tokens.access);
    assert_eq!(srv.navigate("/console", Some(&cookie)).await.status, 403);
}
