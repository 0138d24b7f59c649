//! One contract for every `Store`: each case runs against SQLite (a temporary file) and
//! PostgreSQL (a database of its own).

use chrono::{Duration, Utc};
use portcullis::identity::Role;
use portcullis::store::{
    ApiKeyRecord, DynStore, NewRefreshToken, NewSession, NewUser, StoreError, UserPatch,
};

use crate::services::PgDb;

/// Keeps whatever backs a store alive for the test's duration.
#[allow(dead_code)]
pub enum Holder {
    Dir(tempfile::TempDir),
    Pg(PgDb),
}

async fn config(url: &str) -> portcullis::Config {
    let text = format!("[store]\ndatabase_url = \"{url}\"\n[tokens]\nkey_dir = \"/nonexistent\"\n");
    portcullis::Config::from_toml(&text, Vec::new()).unwrap()
}

pub async fn sqlite_store() -> (DynStore, Holder) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&format!("sqlite://{}/c.db", dir.path().display())).await;
    (
        portcullis::store::open(&cfg.store, true).await.unwrap(),
        Holder::Dir(dir),
    )
}

pub async fn pg_store() -> (DynStore, Holder) {
    let db = PgDb::create().await;
    let cfg = config(&db.url).await;
    (
        portcullis::store::open(&cfg.store, true).await.unwrap(),
        Holder::Pg(db),
    )
}

fn new_user(id: &str, email: &str) -> NewUser {
    NewUser {
        user_id: id.into(),
        email: email.into(),
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        full_name: "Contract".into(),
        organization: Some("Org".into()),
        role: Role::User,
        disabled: false,
        created_at: Utc::now(),
    }
}

fn refresh(hash_seed: &str, ttl: Duration) -> NewRefreshToken {
    NewRefreshToken {
        token_hash: hex::encode(portcullis::secret::hash(hash_seed)),
        expires_at: Utc::now() + ttl,
        user_agent: Some("ua".into()),
        ip_address: Some("127.0.0.1".into()),
    }
}

async fn session(s: &DynStore, user_id: &str, sid: &str, token: &str) {
    let new = NewSession {
        session_id: sid.into(),
        user_id: user_id.into(),
        user_agent: None,
        ip_address: None,
        created_at: Utc::now(),
    };
    s.create_session(&new, &refresh(token, Duration::days(1)))
        .await
        .unwrap();
}

pub async fn users(s: DynStore) {
    let u = s
        .create_user(&new_user("user_1", "Mixed@Example.com"))
        .await
        .unwrap();
    assert_eq!(u.email, "mixed@example.com");
    assert_eq!(u.organization.as_deref(), Some("Org"));
    assert!(
        s.user_by_email("MIXED@example.com")
            .await
            .unwrap()
            .is_some()
    );
    assert!(matches!(
        s.create_user(&new_user("user_2", "mixed@EXAMPLE.com"))
            .await,
        Err(StoreError::EmailTaken)
    ));
    s.create_user(&new_user("user_2", "other@example.com"))
        .await
        .unwrap();
    let patch = UserPatch {
        organization: Some(None),
        role: Some(Role::Researcher),
        ..Default::default()
    };
    let updated = s.update_user("user_1", &patch).await.unwrap().unwrap();
    assert_eq!(
        (
            updated.organization,
            updated.role,
            updated.full_name.as_str()
        ),
        (None, Role::Researcher, "Contract")
    );
    let clash = UserPatch {
        email: Some("OTHER@example.com".into()),
        ..Default::default()
    };
    assert!(matches!(
        s.update_user("user_1", &clash).await,
        Err(StoreError::EmailTaken)
    ));
    assert!(s.update_user("user_nope", &patch).await.unwrap().is_none());
    s.set_password_hash("user_1", "$2b$04$x").await.unwrap();
    s.record_login("user_1", Utc::now()).await.unwrap();
    let u = s.user_by_id("user_1").await.unwrap().unwrap();
    assert_eq!(u.password_hash, "$2b$04$x");
    assert!(u.last_login.is_some());
    let (page, total) = s.list_users(1, 1).await.unwrap();
    assert_eq!(
        (page.len(), total, page[0].user_id.as_str()),
        (1, 2, "user_2")
    );
}

pub async fn concurrent_case_variants_make_one_user(s: DynStore) {
    let mut tasks = Vec::new();
    for (i, email) in ["dup@x.io", "DUP@x.io", "Dup@X.io", "dUp@x.IO"]
        .into_iter()
        .enumerate()
    {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create_user(&new_user(&format!("user_{i}"), email)).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::EmailTaken) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 1);
}

pub async fn api_keys(s: DynStore) {
    s.create_user(&new_user("user_k", "k@x.io")).await.unwrap();
    s.create_user(&new_user("user_z", "z@x.io")).await.unwrap();
    let key = |id: &str, seed: &str| ApiKeyRecord {
        key_id: id.into(),
        key_hash: hex::encode(portcullis::secret::hash(seed)),
        key_hint: "pc_abcd...wxyz".into(),
        user_id: "user_k".into(),
        name: format!("key {id}"),
        created_at: Utc::now(),
        expires_at: Some(Utc::now() + Duration::days(3)),
        last_used: None,
        revoked: false,
    };
    s.create_api_key(&key("key_1", "one")).await.unwrap();
    s.create_api_key(&key("key_2", "two")).await.unwrap();
    let by_hash = s
        .api_key_by_hash(&hex::encode(portcullis::secret::hash("one")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (by_hash.key.key_id.as_str(), by_hash.user.email.as_str()),
        ("key_1", "k@x.io")
    );
    assert!(by_hash.key.expires_at.is_some());
    assert!(
        !s.revoke_api_key("user_z", "key_1").await.unwrap(),
        "not their key"
    );
    assert!(s.revoke_api_key("user_k", "key_1").await.unwrap());
    assert!(!s.revoke_api_key("user_k", "key_1").await.unwrap());
    assert!(s.api_key_by_id("key_1").await.unwrap().unwrap().key.revoked);
    let listed: Vec<String> = s
        .list_api_keys("user_k")
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    assert_eq!(listed, vec!["key_2"]);
    let mut all = s.api_keys_of_user("user_k").await.unwrap();
    all.sort();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].0, "key_1");
    let at = Utc::now();
    s.touch_api_keys(&[("key_2".into(), at)]).await.unwrap();
    let used = s
        .api_key_by_id("key_2")
        .await
        .unwrap()
        .unwrap()
        .key
        .last_used
        .unwrap();
    assert!((used - at).num_milliseconds().abs() < 5);
    // Revoking all of a user's keys returns the ones that were still live.
    s.create_api_key(&ApiKeyRecord {
        user_id: "user_z".into(),
        ..key("key_3", "three")
    })
    .await
    .unwrap();
    let revoked = s.revoke_user_api_keys("user_k").await.unwrap();
    assert_eq!(
        revoked,
        vec![(
            "key_2".to_string(),
            hex::encode(portcullis::secret::hash("two"))
        )]
    );
    assert!(s.list_api_keys("user_k").await.unwrap().is_empty());
    assert!(s.revoke_user_api_keys("user_k").await.unwrap().is_empty());
    assert_eq!(s.list_api_keys("user_z").await.unwrap().len(), 1);
}

mod sessions;

use sessions::*;

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _holder) = super::sqlite_store().await;
                super::$case(store).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _holder) = super::pg_store().await;
                super::$case(store).await;
            })*
        }
    };
}

contract!(
    users,
    concurrent_case_variants_make_one_user,
    refresh_rotation,
    expired_refresh_tokens_are_invalid,
    racing_rotations_have_one_winner,
    user_sessions,
    api_keys,
    reuse_knows_the_latest_generation,
    disabled_users_tokens_are_not_spent,
    rotation_never_outlives_the_session,
);
