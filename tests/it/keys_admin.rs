//! API keys (create, use, list, revoke) and the admin endpoints, including revocations that
//! must take effect on the very next request.

use serde_json::json;

use crate::harness::{PASSWORD, TestServer, Tokens};

#[tokio::test]
async fn api_keys_work_as_bearer_and_header_and_are_listed_masked() {
    let srv = TestServer::start().await;
    let t = srv.register("keys@example.com").await;
    let (key, key_id) = srv.api_key(&t.access, "ci").await;
    assert!(key.starts_with("pc_") && key.len() == 52, "{key}");
    let r = srv.get("/api/x").bearer(&key).send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed_header("x-auth-method").as_deref(), Some("api_key"));
    assert_eq!(
        r.echoed_header("x-auth-key-id").as_deref(),
        Some(key_id.as_str())
    );
    assert!(r.echoed_header("x-api-key").is_none());
    let r = srv.get("/api/x").header("x-api-key", &key).send().await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.echoed_header("x-user-email").as_deref(),
        Some("keys@example.com")
    );

    let list = srv.list_keys(&t.access).await;
    assert_eq!(list.status, 200);
    let listed = &list.json()["api_keys"][0];
    assert_eq!(listed["key_id"], key_id.as_str());
    assert_eq!(listed["name"], "ci");
    let masked = listed["api_key"].as_str().unwrap();
    assert!(
        masked.contains("...") && !masked.contains(&key[8..40]),
        "{masked}"
    );
    assert!(!list.text().contains(&key));
}

#[tokio::test]
async fn malformed_and_unknown_keys_are_refused() {
    let srv = TestServer::start().await;
    let t = srv.register("bad-keys@example.com").await;
    let (key, _) = srv.api_key(&t.access, "k").await;
    let mut typo = key.clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    for bad in [
        typo.as_str(),
        "pc_short",
        "pc_0000000000000000000000000000000000000000000AAAAAA",
    ] {
        let r = srv.get("/api/x").header("x-api-key", bad).send().await;
        assert_eq!(r.status, 401, "{bad}");
        assert_eq!(r.detail(), "Invalid API key");
    }
}

#[tokio::test]
async fn revoked_keys_stop_working_at_once_and_others_keys_are_404() {
    let srv = TestServer::start().await;
    let owner = srv.register("owner@example.com").await;
    let stranger = srv.register("stranger@example.com").await;
    let (key, key_id) = srv.api_key(&owner.access, "doomed").await;
    assert_eq!(srv.status_with("/api/x", &key).await, 200);
    let r = srv.revoke_key(&stranger.access, &key_id).await;
    assert_eq!(r.status, 404);
    assert_eq!(srv.status_with("/api/x", &key).await, 200);
    let r = srv.revoke_key(&owner.access, &key_id).await;
    assert_eq!(r.status, 200);
    let after = srv.get("/api/x").bearer(&key).send().await;
    assert_eq!(after.status, 401);
    let list = srv.list_keys(&owner.access).await;
    assert_eq!(list.json()["api_keys"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn key_creation_rules() {
    let srv = TestServer::start().await;
    let t = srv.register("rules@example.com").await;
    for days in [0, 366, -1] {
        let r = srv
            .post(&srv.auth_path("/api-keys"))
            .bearer(&t.access)
            .json(json!({"name": "x", "expires_in_days": days}))
            .send()
            .await;
        assert_eq!(r.status, 422, "{days}");
    }
    let r = srv
        .post(&srv.auth_path("/api-keys"))
        .bearer(&t.access)
        .json(json!({"name": "yearly", "expires_in_days": 365}))
        .send()
        .await;
    assert_eq!(r.status, 201);
    let v = r.json();
    let created = chrono::DateTime::parse_from_rfc3339(v["created_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_days(), 365);
    // A key cannot mint keys.
    let key = v["api_key"].as_str().unwrap();
    let r = srv
        .post(&srv.auth_path("/api-keys"))
        .bearer(key)
        .json(json!({"name": "child"}))
        .send()
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn last_used_is_recorded_off_the_request_path() {
    let srv = TestServer::start().await;
    let t = srv.register("used@example.com").await;
    let (key, key_id) = srv.api_key(&t.access, "u").await;
    for _ in 0..3 {
        assert_eq!(srv.status_with("/api/x", &key).await, 200);
    }
    let mut last_used = None;
    for _ in 0..50 {
        let kp = srv
            .state
            .store
            .api_key_by_id(&key_id)
            .await
            .unwrap()
            .unwrap();
        if kp.key.last_used.is_some() {
            last_used = kp.key.last_used;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let first = last_used.expect("last_used written");
    // Further use within the minute does not write again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(srv.status_with("/api/x", &key).await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let kp = srv
        .state
        .store
        .api_key_by_id(&key_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kp.key.last_used, Some(first));
}

#[tokio::test]
async fn admin_manages_users_and_changes_apply_on_the_next_request() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root@example.com").await;
    let user = srv.register("member@example.com").await;
    let (key, _) = srv.api_key(&user.access, "member-key").await;
    let me = srv.me(&user.access).await.json();
    let uid = me["user_id"].as_str().unwrap().to_string();

    let forbidden = srv
        .get(&srv.auth_path("/admin/users"))
        .bearer(&user.access)
        .send()
        .await;
    assert_eq!(forbidden.status, 403);

    let page = srv
        .get(&srv.auth_path("/admin/users?page=1&page_size=1"))
        .bearer(&admin.access)
        .send()
        .await;
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.json();
    assert_eq!(page["total"], 2);
    assert_eq!(page["users"].as_array().unwrap().len(), 1);
    let bad_page = srv
        .get(&srv.auth_path("/admin/users?page=0"))
        .bearer(&admin.access)
        .send()
        .await;
    assert_eq!(bad_page.status, 422);

    // Disable: tokens and keys refused at once (403). Enabling restores the key, not the
    // sessions that disabling ended.
    let r = srv.admin_user(&admin.access, &uid, "disable").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(srv.status_with("/api/x", &user.access).await, 403);
    assert_eq!(srv.status_with("/api/x", &key).await, 403);
    assert_eq!(srv.login("member@example.com", PASSWORD).await.status, 403);
    let r = srv.admin_user(&admin.access, &uid, "enable").await;
    assert_eq!(r.status, 200);
    assert_eq!(srv.status_with("/api/x", &user.access).await, 401);
    assert_eq!(srv.status_with("/api/x", &key).await, 200);
    let r = srv.login("member@example.com", PASSWORD).await;
    assert_eq!(r.status, 200);
    let user = Tokens::from(&r);

    // Role change: the very next request carries the new role.
    assert_eq!(srv.status_with("/admin-only/x", &user.access).await, 403);
    let r = srv.admin_user(&admin.access, &uid, "role?role=admin").await;
    assert_eq!(r.status, 200);
    let r = srv.get("/admin-only/x").bearer(&user.access).send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed_header("x-user-role").as_deref(), Some("admin"));
    assert_eq!(srv.status_with("/admin-only/x", &key).await, 200);
    let r = srv
        .admin_user(&admin.access, &uid, "role?role=wizard")
        .await;
    assert_eq!(r.status, 400);

    // Update fields; unknown users are 404.
    let r = srv
        .req(
            http::Method::PUT,
            &srv.auth_path(&format!("/admin/users/{uid}")),
        )
        .bearer(&admin.access)
        .json(json!({"full_name": "Renamed", "role": "researcher"}))
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["role"], "researcher");
    let r = srv.get("/api/x").bearer(&user.access).send().await;
    assert_eq!(
        r.echoed_header("x-user-role").as_deref(),
        Some("researcher")
    );
    let missing = srv.auth_path("/admin/users/user_nope/disable");
    assert_eq!(
        srv.req(http::Method::PUT, &missing)
            .bearer(&admin.access)
            .send()
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn admin_creates_users_and_cannot_lock_themselves_out() {
    let srv = TestServer::start().await;
    let admin = srv.admin("chief@example.com").await;
    let r = srv
        .post(&srv.auth_path("/admin/users"))
        .bearer(&admin.access)
        .json(json!({"email": "made@example.com", "password": PASSWORD, "full_name": "Made", "role": "researcher"}))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["role"], "researcher");
    let t = Tokens::from(&srv.login("made@example.com", PASSWORD).await);
    let seen = srv.get("/api/x").bearer(&t.access).send().await;
    assert_eq!(
        seen.echoed_header("x-user-role").as_deref(),
        Some("researcher")
    );
    let dup = srv
        .post(&srv.auth_path("/admin/users"))
        .bearer(&admin.access)
        .json(json!({"email": "MADE@example.com", "password": PASSWORD, "full_name": "Again"}))
        .send()
        .await;
    assert_eq!(dup.status, 400);

    let me = srv.me(&admin.access).await.json();
    let own = me["user_id"].as_str().unwrap();
    let r = srv.admin_user(&admin.access, own, "disable").await;
    assert_eq!(r.status, 400);
    let r = srv.admin_user(&admin.access, own, "role?role=user").await;
    assert_eq!(r.status, 400);
}
