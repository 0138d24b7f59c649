//! The origin gateway's wire contract, to the letter: the messages, statuses and error
//! shapes its clients were written against.

use http::Method;
use serde_json::json;

use crate::harness::{PASSWORD, TestServer};

#[tokio::test]
async fn admin_messages_and_statuses_match_the_origin() {
    let srv = TestServer::start().await;
    let admin = srv.admin("wire-admin@example.com").await;
    let created = srv
        .post(&srv.auth_path("/admin/users"))
        .bearer(&admin.access)
        .json(json!({"email": "wire-user@example.com", "password": PASSWORD, "full_name": "W"}))
        .send()
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let uid = created.json()["user_id"].as_str().unwrap().to_string();
    for (action, want) in [
        ("disable", format!("User {uid} disabled successfully")),
        ("enable", format!("User {uid} enabled successfully")),
        (
            "role?role=researcher",
            format!("User {uid} role changed to researcher"),
        ),
    ] {
        let r = srv.admin_user(&admin.access, &uid, action).await;
        assert_eq!(r.status, 200, "{action}: {}", r.text());
        assert_eq!(r.json(), json!({"message": want}), "{action}");
    }
    let bad = srv
        .admin_user(&admin.access, &uid, "role?role=wizard")
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.detail().contains("role"), "{}", bad.text());
    // Nothing changed.
    let user = srv.state.store.user_by_id(&uid).await.unwrap().unwrap();
    assert_eq!(user.role.as_str(), "researcher");
}

#[tokio::test]
async fn key_revocation_and_password_messages_match_the_origin() {
    let srv = TestServer::start().await;
    let t = srv.register("wire-keys@example.com").await;
    let (_, key_id) = srv.api_key(&t.access, "ci").await;
    let r = srv.revoke_key(&t.access, &key_id).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"message": "API key revoked successfully"}));
    let r = srv
        .post(&srv.auth_path("/change-password"))
        .bearer(&t.access)
        .json(json!({"current_password": "not the password", "new_password": "a brand new passphrase"}))
        .send()
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.detail(), "Current password is incorrect");
    // The old password still works: nothing changed.
    assert_eq!(
        srv.login("wire-keys@example.com", PASSWORD).await.status,
        200
    );
}

#[tokio::test]
async fn validation_errors_are_fastapi_lists_that_name_the_field() {
    let srv = TestServer::start().await;
    let register = srv.auth_path("/register");
    for (body, loc, kind) in [
        (
            json!({"email": "not-an-email", "password": PASSWORD, "full_name": "X"}),
            json!(["body", "email"]),
            "value_error",
        ),
        (
            json!({"email": "short@example.com", "password": "short", "full_name": "X"}),
            json!(["body", "password"]),
            "value_error",
        ),
        (
            json!({"email": "blank@example.com", "password": PASSWORD, "full_name": "  "}),
            json!(["body", "full_name"]),
            "value_error",
        ),
        (
            json!({"password": PASSWORD, "full_name": "X"}),
            json!(["body", "email"]),
            "missing",
        ),
        (
            json!({"email": 42, "password": PASSWORD, "full_name": "X"}),
            json!(["body", "email"]),
            "type_error",
        ),
    ] {
        let r = srv.post(&register).json(body.clone()).send().await;
        assert_eq!(r.status, 422, "{body}: {}", r.text());
        let v = r.json();
        let detail = v["detail"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(detail.len(), 1, "{v}");
        assert_eq!(detail[0]["loc"], loc, "{v}");
        assert_eq!(detail[0]["type"], kind, "{v}");
        assert!(!detail[0]["msg"].as_str().unwrap().is_empty(), "{v}");
        assert!(v["code"].is_string(), "the stable code stays: {v}");
    }
    // A query parameter is located in the query; change-password's field by its own name.
    let admin = srv.admin("wire-422@example.com").await;
    let r = srv
        .get(&srv.auth_path("/admin/users?page_size=0"))
        .bearer(&admin.access)
        .send()
        .await;
    assert_eq!(r.json()["detail"][0]["loc"], json!(["query", "page_size"]));
    let r = srv
        .get(&srv.auth_path("/admin/users?page=x"))
        .bearer(&admin.access)
        .send()
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["detail"][0]["loc"], json!(["query", "page"]));
    let r = srv
        .post(&srv.auth_path("/change-password"))
        .bearer(&admin.access)
        .json(json!({"current_password": PASSWORD, "new_password": "x"}))
        .send()
        .await;
    assert_eq!(
        r.json()["detail"][0]["loc"],
        json!(["body", "new_password"])
    );
    // Malformed JSON stays a 400 with a sentence.
    let r = srv
        .req(Method::POST, &register)
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["detail"].is_string());
}
