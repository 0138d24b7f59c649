//! Credentials never cross channels: the `access_token` cookie carries only access tokens,
//! `X-API-Key` only API keys, and account management needs a session. A credential in the
//! query string is refused.

use serde_json::json;

use crate::harness::{PASSWORD, TestServer};

#[tokio::test]
async fn an_api_key_in_the_access_cookie_cannot_mint_keys_even_once_cached() {
    let srv = TestServer::start().await;
    let t = srv.register("leak@example.com").await;
    let (key, key_id) = srv.api_key(&t.access, "leaked").await;
    // The key is used once in its own channel, so the identity cache knows it.
    assert_eq!(
        srv.get("/api/x")
            .header("x-api-key", &key)
            .send()
            .await
            .status,
        200
    );
    // Then presented as the session cookie, with a same-origin signal.
    let r = srv
        .post(&srv.auth_path("/api-keys"))
        .header("cookie", &format!("access_token={key}"))
        .header("sec-fetch-site", "same-origin")
        .json(json!({"name": "minted"}))
        .send()
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    // And on a proxied route, the cookie channel refuses it too.
    let r = srv
        .get("/api/x")
        .header("cookie", &format!("access_token={key}"))
        .send()
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    // Nothing was minted: the user still has exactly the one key.
    let list = srv.list_keys(&t.access).await;
    let keys = list.json()["api_keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["key_id"], key_id.as_str());
}

#[tokio::test]
async fn a_cached_access_token_is_refused_in_x_api_key() {
    let srv = TestServer::start().await;
    let t = srv.register("jwt-as-key@example.com").await;
    assert_eq!(srv.status_with("/api/x", &t.access).await, 200);
    let r = srv
        .get("/api/x")
        .header("x-api-key", &t.access)
        .send()
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    // In its own channels it still works.
    let r = srv
        .get("/api/x")
        .header("cookie", &format!("access_token={}", t.access))
        .send()
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn account_management_needs_a_session_not_a_key() {
    let srv = TestServer::start().await;
    let t = srv.register("manage@example.com").await;
    let (key, key_id) = srv.api_key(&t.access, "automation").await;
    let cases = [
        (http::Method::POST, "/api-keys", json!({"name": "child"})),
        (http::Method::GET, "/api-keys", json!(null)),
        (
            http::Method::DELETE,
            &*format!("/api-keys/{key_id}"),
            json!(null),
        ),
        (
            http::Method::POST,
            "/change-password",
            json!({"current_password": PASSWORD, "new_password": "another long password"}),
        ),
        (http::Method::PUT, "/me", json!({"full_name": "Changed"})),
        (http::Method::POST, "/logout", json!({"revoke_all": true})),
    ];
    for (method, path, body) in cases {
        let mut req = srv.req(method.clone(), &srv.auth_path(path)).bearer(&key);
        if !body.is_null() {
            req = req.json(body);
        }
        let r = req.send().await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
        assert!(r.detail().contains("session"), "{}", r.detail());
    }
    // Nothing changed: the key works, the password is the old one, the name is unchanged,
    // the session is alive.
    assert_eq!(srv.status_with("/api/x", &key).await, 200);
    assert_eq!(srv.login("manage@example.com", PASSWORD).await.status, 200);
    let me = srv.me(&t.access).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["full_name"], "Test User");
    // Reading one's own profile with a key is not managing it.
    let me = srv.me(&key).await;
    assert_eq!(me.status, 200);
}

#[tokio::test]
async fn credentials_in_the_query_string_are_refused() {
    let srv = TestServer::start().await;
    let t = srv.register("query@example.com").await;
    for target in [
        format!("/api/x?access_token={}", t.access),
        format!("/api/x?a=1&ACCESS_TOKEN={}", t.access),
        format!("/api/x?access%5Ftoken={}", t.access),
        format!("/public/x?access_token={}", t.access),
        format!("{}?access_token={}", srv.auth_path("/me"), t.access),
    ] {
        let r = srv.get(&target).bearer(&t.access).send().await;
        assert_eq!(r.status, 400, "{target}: {}", r.text());
    }
    assert!(srv.echo.requests().is_empty(), "nothing was forwarded");
    // Other query parameters pass.
    let r = srv
        .get("/api/x?token_type=x&q=access_token")
        .bearer(&t.access)
        .send()
        .await;
    assert_eq!(r.status, 200);
}

/// Puts `key` into the store for the user with `email`, as an import would.
async fn store_key(srv: &TestServer, email: &str, key: &str) {
    let user = srv.state.store.user_by_email(email).await.unwrap().unwrap();
    let record = portcullis::store::ApiKeyRecord {
        key_id: format!("key_{}", portcullis::secret::random_hex(8)),
        key_hash: hex::encode(portcullis::secret::hash(key)),
        key_hint: "pc_...".into(),
        user_id: user.user_id,
        name: "inserted".into(),
        created_at: chrono::Utc::now(),
        expires_at: None,
        last_used: None,
        revoked: false,
    };
    srv.state.store.create_api_key(&record).await.unwrap();
}

#[tokio::test]
async fn unknown_keys_are_remembered_as_misses() {
    let srv = TestServer::start_with("[cache]\nunknown_key_ttl = \"1h\"\n").await;
    srv.register("misses@example.com").await;
    // A well-formed key (valid checksum) the store does not know.
    let unknown = portcullis::auth::api_key::generate().key;
    let r = srv.get("/api/x").header("x-api-key", &unknown).send().await;
    assert_eq!(r.status, 401);
    // The store learns it behind Portcullis's back; the remembered miss means the store
    // is not asked again.
    store_key(&srv, "misses@example.com", &unknown).await;
    let r = srv.get("/api/x").header("x-api-key", &unknown).send().await;
    assert_eq!(r.status, 401);

    // With misses not remembered, the same sequence reaches the store the second time.
    let srv = TestServer::start_with("[cache]\nunknown_key_ttl = \"0s\"\n").await;
    srv.register("no-misses@example.com").await;
    let unknown = portcullis::auth::api_key::generate().key;
    let r = srv.get("/api/x").header("x-api-key", &unknown).send().await;
    assert_eq!(r.status, 401);
    store_key(&srv, "no-misses@example.com", &unknown).await;
    let r = srv.get("/api/x").header("x-api-key", &unknown).send().await;
    assert_eq!(r.status, 200, "{}", r.text());
}
