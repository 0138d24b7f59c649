//! Revocation really revokes: disabling ends sessions for good, a disabled user's refresh
//! spends nothing, replaying any older refresh token ends the session at once, sessions
//! have an absolute lifetime, and a password change can take the API keys with it.

use serde_json::json;

use crate::harness::{PASSWORD, TestServer, Tokens};

async fn set_disabled(srv: &TestServer, admin: &Tokens, email: &str, disabled: bool) {
    let verb = if disabled { "disable" } else { "enable" };
    let r = srv
        .admin_user(&admin.access, &srv.user_id(email).await, verb)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn disabling_ends_sessions_for_good_and_pauses_keys() {
    let srv = TestServer::start().await;
    let admin = srv.admin("revoker@example.com").await;
    let t = srv.register("paused@example.com").await;
    let (key, _) = srv.api_key(&t.access, "k").await;
    assert_eq!(srv.status_with("/api/x", &t.access).await, 200);

    set_disabled(&srv, &admin, "paused@example.com", true).await;
    assert_eq!(srv.status_with("/api/x", &t.access).await, 403);
    assert_eq!(srv.status_with("/api/x", &key).await, 403);
    // A refresh while disabled is refused as such.
    let r = srv.refresh(&t.refresh).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(srv.login("paused@example.com", PASSWORD).await.status, 403);

    set_disabled(&srv, &admin, "paused@example.com", false).await;
    // The sessions that existed before do not come back...
    assert_eq!(srv.status_with("/api/x", &t.access).await, 401);
    assert_eq!(srv.refresh(&t.refresh).await.status, 401);
    // ...the key does (it is not a session), and signing in again works.
    assert_eq!(srv.status_with("/api/x", &key).await, 200);
    assert_eq!(srv.login("paused@example.com", PASSWORD).await.status, 200);
}

#[tokio::test]
async fn replaying_an_older_generation_ends_the_session_even_within_the_grace() {
    let srv = TestServer::start().await; // the default 5 s grace window
    let rt1 = srv.register("generations@example.com").await;
    let r = srv.refresh(&rt1.refresh).await;
    assert_eq!(r.status, 200);
    let rt2 = Tokens::from(&r);
    let r = srv.refresh(&rt2.refresh).await;
    assert_eq!(r.status, 200);
    let rt3 = Tokens::from(&r);
    // RT2 was spent last: replaying it within the grace window is a race, not a theft.
    let r = srv.refresh(&rt2.refresh).await;
    assert_eq!(r.status, 401);
    assert_eq!(srv.status_with("/api/x", &rt3.access).await, 200);
    // RT1 is two generations old: someone kept a copy. The session ends at once.
    let r = srv.refresh(&rt1.refresh).await;
    assert_eq!(r.status, 401);
    assert_eq!(srv.refresh(&rt3.refresh).await.status, 401);
    assert_eq!(srv.status_with("/api/x", &rt3.access).await, 401);
}

#[tokio::test]
async fn sessions_end_at_their_absolute_lifetime_however_often_refreshed() {
    let srv = TestServer::start_with(
        "[tokens]\naccess_ttl = \"1s\"\nleeway = \"0s\"\nsession_max_lifetime = \"3s\"\n",
    )
    .await;
    let mut t = srv.register("finite@example.com").await;
    let started = std::time::Instant::now();
    let mut last_ok = started;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let r = srv.refresh(&t.refresh).await;
        if r.status != 200 {
            assert_eq!(r.status, 401, "{}", r.text());
            break;
        }
        last_ok = std::time::Instant::now();
        t = Tokens::from(&r);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(6),
            "never ended"
        );
    }
    let lived = last_ok - started;
    // Refreshed until about 3 s after sign-in (plus a request's latency), not on and on.
    assert!(
        lived < std::time::Duration::from_millis(4000),
        "refreshed past the lifetime: {lived:?}"
    );
    assert!(lived > std::time::Duration::from_millis(2000), "{lived:?}");
    assert_eq!(srv.status_with("/api/x", &t.access).await, 401);
}

#[tokio::test]
async fn a_password_change_can_revoke_api_keys() {
    let srv = TestServer::start().await;
    let t = srv.register("rotate-keys@example.com").await;
    let (kept, _) = srv.api_key(&t.access, "kept").await;
    let change = |from: &str, to: &str, revoke: Option<bool>| {
        let mut body = json!({"current_password": from, "new_password": to});
        if let Some(r) = revoke {
            body["revoke_api_keys"] = json!(r);
        }
        srv.post(&srv.auth_path("/change-password"))
            .bearer(&t.access)
            .json(body)
    };
    // By default keys survive a password change.
    let r = change(PASSWORD, "second long password", None).send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(srv.status_with("/api/x", &kept).await, 200);
    let (also, _) = srv.api_key(&t.access, "also").await;
    let r = change("second long password", "third long password", Some(true))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(srv.status_with("/api/x", &kept).await, 401);
    assert_eq!(
        srv.get("/api/x")
            .header("x-api-key", &also)
            .send()
            .await
            .status,
        401
    );
    let list = srv.list_keys(&t.access).await;
    assert!(list.json()["api_keys"].as_array().unwrap().is_empty());
}
