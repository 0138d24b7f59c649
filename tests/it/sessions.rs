//! Sessions over the account API: refresh rotation and reuse, racing refreshes, logout,
//! password change, and cookie sessions with their CSRF rule.

use serde_json::json;

use crate::harness::{PASSWORD, TestServer, Tokens};

#[tokio::test]
async fn refresh_rotates_and_reuse_is_refused() {
    let srv = TestServer::start().await;
    let first = srv.register("rot@example.com").await;
    let r = srv.refresh(&first.refresh).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let second = Tokens::from(&r);
    assert_ne!(second.refresh, first.refresh);
    assert_eq!(srv.status_with("/api/x", &second.access).await, 200);
    let again = srv.refresh(&first.refresh).await;
    assert_eq!(again.status, 401);
    let junk = srv.refresh("pcr_not-a-real-token").await;
    assert_eq!(junk.status, 401);
    assert_eq!(junk.detail(), "Invalid refresh token");
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_family() {
    let srv = TestServer::start_with("[tokens]\nrefresh_reuse_grace = \"0s\"\n").await;
    let first = srv.register("family@example.com").await;
    let refresh = |token: String| {
        let srv = &srv;
        async move { srv.refresh(&token).await }
    };
    let r = refresh(first.refresh.clone()).await;
    assert_eq!(r.status, 200);
    let second = Tokens::from(&r);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // The stolen first token comes back: the whole family ends.
    let replay = refresh(first.refresh.clone()).await;
    assert_eq!(replay.status, 401);
    assert_eq!(replay.detail(), "Refresh token already used");
    assert_eq!(
        refresh(second.refresh.clone()).await.status,
        401,
        "family revoked"
    );
    assert_eq!(srv.status_with("/api/x", &second.access).await, 401);
}

#[tokio::test]
async fn racing_refreshes_do_not_both_succeed() {
    let srv = std::sync::Arc::new(TestServer::start().await);
    let t = srv.register("racer@example.com").await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let srv = srv.clone();
        let token = t.refresh.clone();
        tasks.push(tokio::spawn(async move {
            let r = srv.refresh(&token).await;
            (
                r.status,
                if r.status == 200 {
                    Some(Tokens::from(&r))
                } else {
                    None
                },
            )
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (status, tokens) = task.await.unwrap();
        assert!(status == 200 || status == 401, "{status}");
        winners.extend(tokens);
    }
    assert_eq!(winners.len(), 1, "exactly one refresh wins");
    // Within the grace window a lost race does not end the session.
    let w = &winners[0];
    assert_eq!(srv.status_with("/api/x", &w.access).await, 200);
    let next = srv.refresh(&w.refresh).await;
    assert_eq!(next.status, 200);
}

#[tokio::test]
async fn logout_ends_the_session_on_the_next_request() {
    let srv = TestServer::start().await;
    let t = srv.register("bye@example.com").await;
    assert_eq!(srv.status_with("/api/x", &t.access).await, 200);
    let r = srv.logout(&t.access).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["message"].is_string());
    assert!(r.set_cookie("access_token").unwrap().contains("Max-Age=0"));
    let after = srv.get("/api/x").bearer(&t.access).send().await;
    assert_eq!(after.status, 401);
    let refresh = srv.refresh(&t.refresh).await;
    assert_eq!(
        refresh.status, 401,
        "the session's refresh token died with it"
    );
}

#[tokio::test]
async fn logout_revoke_all_ends_every_session() {
    let srv = TestServer::start().await;
    let a = srv.register("all@example.com").await;
    let b = Tokens::from(&srv.login("all@example.com", PASSWORD).await);
    let r = srv
        .post(&srv.auth_path("/logout"))
        .bearer(&a.access)
        .json(json!({"revoke_all": true}))
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(srv.status_with("/api/x", &b.access).await, 401);
    assert_eq!(srv.post(&srv.auth_path("/logout")).send().await.status, 401);
}

#[tokio::test]
async fn change_password_ends_other_sessions() {
    let srv = TestServer::start().await;
    let current = srv.register("pw@example.com").await;
    let other = Tokens::from(&srv.login("pw@example.com", PASSWORD).await);
    let bad = srv
        .post(&srv.auth_path("/change-password"))
        .bearer(&current.access)
        .json(json!({"current_password": "not it at all", "new_password": "brand new secret"}))
        .send()
        .await;
    assert_eq!(bad.status, 400);
    let r = srv
        .post(&srv.auth_path("/change-password"))
        .bearer(&current.access)
        .json(json!({"current_password": PASSWORD, "new_password": "brand new secret"}))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(srv.status_with("/api/x", &current.access).await, 200);
    assert_eq!(srv.status_with("/api/x", &other.access).await, 401);
    assert_eq!(srv.login("pw@example.com", PASSWORD).await.status, 401);
    assert_eq!(
        srv.login("pw@example.com", "brand new secret").await.status,
        200
    );
}

#[tokio::test]
async fn cookie_sessions_and_csrf() {
    let srv =
        TestServer::start_with("[csrf]\nallowed_origins = [\"https://app.example.com\"]\n").await;
    let t = srv.register("cookie@example.com").await;
    let cookie = format!("access_token={}", t.access);
    let r = srv.get("/api/x").header("cookie", &cookie).send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed_header("x-auth-method").as_deref(), Some("cookie"));
    assert!(
        r.echoed_header("cookie").is_none(),
        "the credential cookie is not forwarded"
    );
    // Unsafe method with a cookie and no origin evidence: refused before the upstream.
    srv.echo.clear();
    let r = srv.post("/api/x").header("cookie", &cookie).send().await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "csrf");
    let r = srv
        .post("/api/x")
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await;
    assert_eq!(r.status, 403);
    assert!(srv.echo.requests().is_empty());
    let r = srv
        .post("/api/x")
        .header("cookie", &cookie)
        .header("origin", "https://app.example.com")
        .send()
        .await;
    assert_eq!(r.status, 200);
    let r = srv
        .post("/api/x")
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await;
    assert_eq!(r.status, 200);
    // Bearer requests need no CSRF evidence.
    assert_eq!(
        srv.post("/api/x").bearer(&t.access).send().await.status,
        200
    );
    // Cookie refresh is CSRF-checked too.
    let rc = format!("refresh_token={}", t.refresh);
    let r = srv
        .post(&srv.auth_path("/refresh"))
        .header("cookie", &rc)
        .send()
        .await;
    assert_eq!(r.status, 403);
    let r = srv
        .post(&srv.auth_path("/refresh"))
        .header("cookie", &rc)
        .header("origin", "https://app.example.com")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn an_upstream_cannot_plant_the_session_cookies() {
    // Only the account API issues `access_token` and `refresh_token`: an upstream that set
    // them could sign the browser into another account. Its own cookies pass.
    let srv = TestServer::start().await;
    let victim = srv.register("planted@example.com").await;
    let attacker = srv.register("planter@example.com").await;
    let r = srv
        .get("/api/x")
        .bearer(&victim.access)
        .header(
            "x-echo-set-header",
            &format!("set-cookie: access_token={}; Path=/", attacker.access),
        )
        .header(
            "x-echo-set-header",
            &format!("set-cookie: refresh_token={}; Path=/", attacker.refresh),
        )
        .header("x-echo-set-header", "set-cookie: theme=dark; Path=/")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.set_cookie("access_token"), None);
    assert_eq!(r.set_cookie("refresh_token"), None);
    assert_eq!(r.set_cookie("theme").as_deref(), Some("theme=dark; Path=/"));
}
