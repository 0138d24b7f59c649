//! `portcullis import redis` against a real Redis holding records shaped exactly like the
//! origin gateway's, into PostgreSQL.

use std::process::Command;

use redis::AsyncCommands as _;
use serde_json::json;

use crate::harness::{TestServer, Tokens};
use crate::services::{PgDb, production_toml, redis_url, shared_key, unique};

fn import(config: &std::path::Path, prefix: &str, dry_run: bool) -> (String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args([
        "import",
        "redis",
        "--from",
        &redis_url(),
        "--prefix",
        prefix,
        "--config",
    ])
    .arg(config);
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}{stderr}");
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_records_import_idempotently_and_keep_working() {
    let prefix = format!("{}:", unique("origin_"));
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let legacy_hash = bcrypt::hash("origin-password", 4).unwrap();
    let old_key = "rpa_Q2xhc3NpY0tleUZyb21UaGVPcmlnaW5HYXRld2F5MDE";
    let records = [
        (
            "user:user_abc123",
            json!({"user_id": "user_abc123", "email": "Origin.User@Example.com", "password_hash": legacy_hash,
                   "full_name": "Origin User", "organization": "Lab", "role": "researcher", "disabled": false,
                   "email_verified": false, "created_at": "2024-05-01T10:00:00.123456"}).to_string(),
        ),
        (
            "user:user_off",
            json!({"user_id": "user_off", "email": "off@example.com", "password_hash": legacy_hash,
                   "full_name": "Off", "organization": null, "role": "user", "disabled": true,
                   "created_at": "2024-05-02T10:00:00"}).to_string(),
        ),
        ("user:user_broken", "{not json".to_string()),
        (
            "user:user_noemail",
            json!({"user_id": "user_noemail", "email": "nope", "password_hash": legacy_hash}).to_string(),
        ),
        (
            &format!("apikey:{old_key}"),
            json!({"user_id": "user_abc123", "name": "old script", "created_at": "2024-06-01T00:00:00"}).to_string(),
        ),
        (
            "apikey:rpa_T3JwaGFuS2V5Rm9yTm9Vc2VyQXRBbGwwMDAwMDAwMDA",
            json!({"user_id": "user_ghost", "name": "orphan"}).to_string(),
        ),
    ];
    for (k, v) in &records {
        let _: () = conn.set_ex(format!("{prefix}{k}"), v, 600).await.unwrap();
    }

    let db = PgDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key(dir.path());
    let echo = crate::echo::Echo::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let cfg_path = dir.path().join("p.toml");
    let toml = production_toml(&db.url, None, &key);
    std::fs::write(
        &cfg_path,
        crate::harness::config_text(dir.path(), echo.addr, &toml),
    )
    .unwrap();

    let (out, _) = import(&cfg_path, &prefix, true);
    assert!(out.contains("dry run"), "{out}");
    assert!(
        out.contains("users:    imported 2, skipped 0, invalid 2"),
        "{out}"
    );
    assert!(
        out.contains("api keys: imported 1, skipped 0, invalid 1"),
        "{out}"
    );

    let (out, err) = import(&cfg_path, &prefix, false);
    assert!(
        out.contains("users:    imported 2, skipped 0, invalid 2"),
        "{out}"
    );
    assert!(
        out.contains("api keys: imported 1, skipped 0, invalid 1"),
        "{out}"
    );
    assert!(
        err.contains("user:user_broken") && err.contains("user_ghost"),
        "{err}"
    );
    assert!(
        !err.contains(old_key) && !out.contains("$2b$"),
        "never prints secrets"
    );

    let (out, _) = import(&cfg_path, &prefix, false);
    assert!(
        out.contains("users:    imported 0, skipped 2, invalid 2"),
        "{out}"
    );
    assert!(
        out.contains("api keys: imported 0, skipped 1, invalid 1"),
        "{out}"
    );

    let srv = TestServer::start_with(&toml).await;
    let login = srv
        .login("origin.user@example.com", "origin-password")
        .await;
    assert_eq!(login.status, 200, "{}", login.text());
    let user = srv
        .state
        .store
        .user_by_id("user_abc123")
        .await
        .unwrap()
        .unwrap();
    assert!(
        user.password_hash.starts_with("$argon2id$"),
        "upgraded at first login"
    );
    assert_eq!(
        user.created_at.to_rfc3339(),
        "2024-05-01T10:00:00.123456+00:00"
    );
    assert_eq!(
        srv.login("off@example.com", "origin-password").await.status,
        403
    );
    let t = Tokens::from(&login);
    let seen = srv.get("/api/x").bearer(&t.access).send().await;
    assert_eq!(
        seen.echoed_header("x-user-id").as_deref(),
        Some("user_abc123")
    );
    assert_eq!(
        seen.echoed_header("x-user-role").as_deref(),
        Some("researcher")
    );
    for r in [
        srv.get("/api/x").header("x-api-key", old_key).send().await,
        srv.get("/api/x").bearer(old_key).send().await,
    ] {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.echoed_header("x-auth-method").as_deref(), Some("api_key"));
    }
    let stored = srv
        .state
        .store
        .api_key_by_hash(&hex::encode(portcullis::secret::hash(old_key)))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.key.key_hash, old_key, "stored hashed");
    assert!(stored.key.key_hint.starts_with("rpa_") && stored.key.key_hint.contains("..."));
}
