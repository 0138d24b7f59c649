//! The account API: register, login, me, duplicate and invalid accounts, bad request
//! bodies, imported bcrypt hashes, and email normalization. Sessions are in `sessions.rs`.

use serde_json::json;

use crate::harness::{PASSWORD, TestServer, Tokens};

#[tokio::test]
async fn register_login_me_round_trip() {
    let srv = TestServer::start().await;
    let r = srv
        .post(&srv.auth_path("/register"))
        .json(json!({"email": "Ada@Example.com", "password": PASSWORD, "full_name": "Ada L", "organization": "Engines"}))
        .send()
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 900);
    assert!(v["refresh_token"].as_str().unwrap().starts_with("pcr_"));
    let access_cookie = r.set_cookie("access_token").unwrap();
    assert!(access_cookie.contains("HttpOnly") && access_cookie.contains("SameSite=Lax"));
    assert!(
        r.set_cookie("refresh_token")
            .unwrap()
            .contains("Path=/api/v1/auth")
    );

    let r = srv.login("ADA@example.COM", PASSWORD).await;
    assert_eq!(r.status, 200);
    let t = Tokens::from(&r);
    let me = srv.me(&t.access).await;
    assert_eq!(me.status, 200);
    let me = me.json();
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["full_name"], "Ada L");
    assert_eq!(me["organization"], "Engines");
    assert_eq!(me["role"], "user");
    assert!(me["last_login"].is_string());
    assert!(me.get("password_hash").is_none());

    let r = srv
        .req(http::Method::PUT, &srv.auth_path("/me"))
        .bearer(&t.access)
        .json(json!({"full_name": "Ada Lovelace", "organization": ""}))
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["full_name"], "Ada Lovelace");
    assert!(r.json()["organization"].is_null());
}

#[tokio::test]
async fn duplicate_and_invalid_registrations() {
    let srv = TestServer::start().await;
    srv.register("dup@example.com").await;
    let r = srv
        .post(&srv.auth_path("/register"))
        .json(json!({"email": "DUP@example.com", "password": PASSWORD, "full_name": "X"}))
        .send()
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.detail(), "Email already registered");
    for (body, why) in [
        (
            json!({"email": "not-an-email", "password": PASSWORD, "full_name": "X"}),
            "email",
        ),
        (
            json!({"email": "a@b.io", "password": "short", "full_name": "X"}),
            "short password",
        ),
        (
            json!({"email": "a@b.io", "password": "x".repeat(129), "full_name": "X"}),
            "long password",
        ),
        (
            json!({"email": "a@b.io", "password": PASSWORD, "full_name": ""}),
            "empty name",
        ),
        (
            json!({"email": "a@b.io", "password": PASSWORD}),
            "missing name",
        ),
        (
            json!({"email": "a@b.io", "password": 12345678, "full_name": "X"}),
            "wrong type",
        ),
    ] {
        let r = srv
            .post(&srv.auth_path("/register"))
            .json(body)
            .send()
            .await;
        assert_eq!(r.status, 422, "{why}: {}", r.text());
        assert!(!r.detail().is_empty());
    }
    let (users, total) = srv.state.store.list_users(0, 10).await.unwrap();
    assert_eq!((users.len(), total), (1, 1), "nothing was written");
}

#[tokio::test]
async fn unicode_passwords_count_characters() {
    let srv = TestServer::start().await;
    let r = srv
        .post(&srv.auth_path("/register"))
        .json(json!({"email": "uni@example.com", "password": "pässwörd", "full_name": "U"}))
        .send()
        .await;
    assert_eq!(r.status, 201, "8 characters, 10 bytes");
    assert_eq!(srv.login("uni@example.com", "pässwörd").await.status, 200);
}

#[tokio::test]
async fn concurrent_duplicate_registration_creates_one_user() {
    let srv = std::sync::Arc::new(TestServer::start().await);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let srv = srv.clone();
        tasks.push(tokio::spawn(async move {
            let email = if i % 2 == 0 {
                "race@example.com"
            } else {
                "RACE@example.com"
            };
            srv.post(&srv.auth_path("/register"))
                .json(json!({"email": email, "password": PASSWORD, "full_name": "R"}))
                .send()
                .await
                .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 400),
        "{statuses:?}"
    );
    let (_, total) = srv.state.store.list_users(0, 10).await.unwrap();
    assert_eq!(total, 1);
}

#[tokio::test]
async fn login_failures_look_the_same() {
    let srv = TestServer::start().await;
    srv.register("known@example.com").await;
    let wrong = srv.login("known@example.com", "wrong password!").await;
    let unknown = srv.login("nobody@example.com", "wrong password!").await;
    for r in [&wrong, &unknown] {
        assert_eq!(r.status, 401);
        assert_eq!(r.detail(), "Incorrect email or password");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert!(r.set_cookie("access_token").is_none());
    }
    assert_eq!(wrong.body, unknown.body);
}

#[tokio::test]
async fn several_credentials_are_refused() {
    let srv = TestServer::start().await;
    let a = srv.register("two@example.com").await;
    let b = Tokens::from(&srv.login("two@example.com", PASSWORD).await);
    let r = srv
        .get("/api/x")
        .bearer(&a.access)
        .header("cookie", &format!("access_token={}", b.access))
        .send()
        .await;
    assert_eq!(r.status, 400);
    assert!(srv.echo.requests().is_empty());
}

#[tokio::test]
async fn bad_bodies_get_clear_4xx_and_write_nothing() {
    let srv = TestServer::start_with("[accounts]\nmax_body_bytes = 1024\n").await;
    let path = srv.auth_path("/register");
    let valid = json!({"email": "a@b.io", "password": PASSWORD, "full_name": "X"}).to_string();
    let huge = json!({"email": "a@b.io", "password": "p".repeat(5000), "full_name": "X"});
    let cases = [
        (400, "application/json", "{not json".to_string()),
        (415, "text/plain", valid.clone()),
        (413, "application/json", huge.to_string()),
        (422, "application/json", json!(["a", "list"]).to_string()),
        (
            422,
            "application/json",
            json!({"email": "a@b.io"}).to_string(),
        ),
    ];
    for (expected, content_type, body) in cases {
        let r = srv
            .post(&path)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await;
        assert_eq!(r.status, expected, "{}", r.text());
        // A sentence, or for a 422 FastAPI's list naming the field.
        let v = r.json();
        if expected == 422 {
            assert!(v["detail"][0]["loc"][0] == "body", "{v}");
        } else {
            assert!(v["detail"].is_string(), "{v}");
        }
    }
    let (_, total) = srv.state.store.list_users(0, 10).await.unwrap();
    assert_eq!(total, 0);
    let r = srv.get(&srv.auth_path("/nope")).send().await;
    assert_eq!(r.status, 404);
    let r = srv.get(&srv.auth_path("/login")).send().await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn bcrypt_hashes_from_the_origin_log_in_and_are_upgraded() {
    let srv = TestServer::start().await;
    let legacy = bcrypt::hash("legacy-password-1", 4).unwrap();
    srv.state
        .store
        .create_user(&portcullis::store::NewUser {
            user_id: "user_abc123".into(),
            email: "legacy@example.com".into(),
            password_hash: legacy,
            full_name: "Legacy".into(),
            organization: None,
            role: portcullis::identity::Role::Researcher,
            disabled: false,
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    let r = srv.login("legacy@example.com", "legacy-password-1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let user = srv
        .state
        .store
        .user_by_id("user_abc123")
        .await
        .unwrap()
        .unwrap();
    assert!(user.password_hash.starts_with("$argon2id$"), "rehashed");
    assert_eq!(
        srv.login("legacy@example.com", "legacy-password-1")
            .await
            .status,
        200
    );
    assert_eq!(srv.login("legacy@example.com", "wrong").await.status, 401);
    let t = Tokens::from(&r);
    let seen = srv.get("/api/x").bearer(&t.access).send().await;
    assert_eq!(
        seen.echoed_header("x-user-id").as_deref(),
        Some("user_abc123")
    );
    assert_eq!(
        seen.echoed_header("x-user-role").as_deref(),
        Some("researcher")
    );
}

#[tokio::test]
async fn registration_can_be_disabled() {
    let srv = TestServer::start_with("[accounts]\nallow_registration = false\n").await;
    let r = srv
        .post(&srv.auth_path("/register"))
        .json(json!({"email": "no@example.com", "password": PASSWORD, "full_name": "N"}))
        .send()
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn mixed_character_rule_is_available() {
    let srv = TestServer::start_with("[accounts]\npassword_require_mixed = true\n").await;
    let r = srv
        .post(&srv.auth_path("/register"))
        .json(json!({"email": "mix@example.com", "password": "alllowercase", "full_name": "M"}))
        .send()
        .await;
    assert_eq!(r.status, 422);
    let r = srv
        .post(&srv.auth_path("/register"))
        .json(json!({"email": "mix@example.com", "password": "Sunny2Garden", "full_name": "M"}))
        .send()
        .await;
    assert_eq!(r.status, 201);
}

/// Registers `first`, then shows that every spelling in `twins` is the same account: the
/// address stored and injected is `stored`, registering a twin is refused, and a twin signs
/// in. The first registration's tokens.
async fn one_account(srv: &TestServer, first: &str, stored: &str, twins: &[&str]) -> Tokens {
    let t = srv.register(first).await;
    let r = srv.get("/api/x").bearer(&t.access).send().await;
    assert_eq!(r.echoed_header("x-user-email").as_deref(), Some(stored));
    for twin in twins {
        let r = srv.try_register(twin).await;
        assert_eq!(r.status, 400, "{twin}: {}", r.text());
        assert_eq!(r.detail(), "Email already registered");
        assert_eq!(srv.login(twin, PASSWORD).await.status, 200, "{twin}");
    }
    t
}

#[tokio::test]
async fn emails_are_one_account_after_nfkc_and_case_folding() {
    let srv = TestServer::start().await;
    let t = one_account(
        &srv,
        "ｕ1@example.test",
        "u1@example.test",
        &[
            "u1@example.test",
            "U1@EXAMPLE.TEST",
            "Ｕ１@ｅｘａｍｐｌｅ.test",
        ],
    )
    .await;
    let me = srv.me(&t.access).await;
    assert_eq!(me.json()["email"], "u1@example.test");
}

#[tokio::test]
async fn no_account_answer_may_be_stored_by_a_cache_or_sniffed() {
    let srv = TestServer::start().await;
    let user = srv.register("nostore@example.com").await;
    let admin = srv.admin("nostore-admin@example.com").await;
    let answers = vec![
        ("login", srv.login("nostore@example.com", PASSWORD).await),
        (
            "refresh",
            srv.post(&srv.auth_path("/refresh"))
                .json(json!({"refresh_token": user.refresh}))
                .send()
                .await,
        ),
        ("me", srv.me(&user.access).await),
        (
            "new key",
            srv.post(&srv.auth_path("/api-keys"))
                .bearer(&user.access)
                .json(json!({"name": "k"}))
                .send()
                .await,
        ),
        (
            "keys",
            srv.get(&srv.auth_path("/api-keys"))
                .bearer(&user.access)
                .send()
                .await,
        ),
        (
            "users",
            srv.get(&srv.auth_path("/admin/users"))
                .bearer(&admin.access)
                .send()
                .await,
        ),
        ("401", srv.get(&srv.auth_path("/me")).send().await),
        (
            "422",
            srv.post(&srv.auth_path("/register"))
                .json(json!({"email": "x"}))
                .send()
                .await,
        ),
        ("404", srv.get(&srv.auth_path("/nowhere")).send().await),
        ("register", srv.try_register("nostore2@example.com").await),
    ];
    for (what, r) in &answers {
        assert!(r.status < 500, "{what}: {}", r.status);
        assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
    }
    // A handler's own choice stands: the OpenAPI document may be revalidated.
    let doc = srv.get(&srv.auth_path("/openapi.json")).send().await;
    assert_eq!(doc.header("cache-control"), Some("no-cache"));
}

#[tokio::test]
async fn an_internationalized_domain_is_one_account_in_unicode_or_punycode() {
    let srv = TestServer::start().await;
    // Stored and injected with the domain in its Unicode form.
    one_account(
        &srv,
        "ida@xn--e1afmkfd.test",
        "ida@пример.test",
        &[
            "ida@пример.test",
            "IDA@ПРИМЕР.TEST",
            "ida@XN--E1AFMKFD.test",
        ],
    )
    .await;
    // Punycode that decodes to no valid name is refused, and nothing is written.
    let r = srv.try_register("ida@xn--a.test").await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["detail"][0]["loc"], json!(["body", "email"]));
    assert_eq!(srv.login("ida@xn--a.test", PASSWORD).await.status, 401);
}

#[tokio::test]
async fn common_passwords_and_the_email_name_are_refused_and_long_logins_are_422() {
    let srv = TestServer::start().await;
    for (email, password, says) in [
        ("hygiene@example.com", "iloveyou1", "too common"),
        ("hygiene@example.com", "Baseball1", "too common"),
        ("hygiene@example.com", "my hygiene routine", "email address"),
    ] {
        let r = srv
            .post(&srv.auth_path("/register"))
            .json(json!({"email": email, "password": password, "full_name": "H"}))
            .send()
            .await;
        assert_eq!(r.status, 422, "{password}");
        let body = r.json();
        assert_eq!(body["detail"][0]["loc"], json!(["body", "password"]));
        let msg = body["detail"][0]["msg"].as_str().unwrap();
        assert!(msg.contains(says) && !msg.contains(password), "{msg}");
    }
    // The same rules for a new password.
    let t = srv.register("changer@example.com").await;
    let r = srv
        .post(&srv.auth_path("/change-password"))
        .bearer(&t.access)
        .json(json!({"current_password": PASSWORD, "new_password": "password123"}))
        .send()
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["detail"][0]["loc"],
        json!(["body", "new_password"])
    );
    // A login with a password longer than any account can have: 422, never hashed.
    let r = srv.login("changer@example.com", &"x".repeat(129)).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["detail"][0]["loc"], json!(["body", "password"]));
    assert_eq!(
        srv.login("changer@example.com", "wrong password!")
            .await
            .status,
        401
    );
}
