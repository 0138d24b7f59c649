//! One contract for every `Store`: each case runs against SQLite (a temporary file) and
//! PostgreSQL (a database of its own).

use chrono::{Duration, Utc};
use portcullis::identity::Role;
use portcullis::store::{
    ApiKeyRecord, DynStore, NewRefreshToken, NewSession, NewUser, Rotation, StoreError, UserPatch,
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

/// The session lifetime the rotation cases run with.
fn life() -> Duration {
    Duration::days(30)
}

fn token(seed: &str) -> String {
    hex::encode(portcullis::secret::hash(seed))
}

pub async fn reuse_knows_the_latest_generation(s: DynStore) {
    s.create_user(&new_user("user_g", "g@x.io")).await.unwrap();
    session(&s, "user_g", "ses_g", "g0").await;
    let now = Utc::now();
    for (spent, next) in [("g0", "g1"), ("g1", "g2")] {
        let r = s
            .rotate_refresh_token(
                &token(spent),
                &refresh(next, Duration::days(1)),
                now,
                life(),
            )
            .await
            .unwrap();
        assert!(matches!(r, Rotation::Rotated { .. }), "{r:?}");
    }
    // g1 was spent last: a replay of it may be a client racing itself.
    match s
        .rotate_refresh_token(&token("g1"), &refresh("x", Duration::days(1)), now, life())
        .await
        .unwrap()
    {
        Rotation::AlreadyRotated { latest, .. } => assert!(latest),
        other => panic!("{other:?}"),
    }
    // g0 is an older generation.
    match s
        .rotate_refresh_token(&token("g0"), &refresh("y", Duration::days(1)), now, life())
        .await
        .unwrap()
    {
        Rotation::AlreadyRotated { latest, .. } => assert!(!latest),
        other => panic!("{other:?}"),
    }
}

pub async fn disabled_users_tokens_are_not_spent(s: DynStore) {
    s.create_user(&new_user("user_d", "d@x.io")).await.unwrap();
    session(&s, "user_d", "ses_d", "d0").await;
    let off = UserPatch {
        disabled: Some(true),
        ..UserPatch::default()
    };
    s.update_user("user_d", &off).await.unwrap();
    let now = Utc::now();
    let r = s
        .rotate_refresh_token(&token("d0"), &refresh("d1", Duration::days(1)), now, life())
        .await
        .unwrap();
    assert!(matches!(r, Rotation::UserDisabled), "{r:?}");
    let on = UserPatch {
        disabled: Some(false),
        ..UserPatch::default()
    };
    s.update_user("user_d", &on).await.unwrap();
    // Not spent: it still rotates once the user is enabled (nothing ended the session).
    let r = s
        .rotate_refresh_token(&token("d0"), &refresh("d1", Duration::days(1)), now, life())
        .await
        .unwrap();
    assert!(matches!(r, Rotation::Rotated { .. }), "{r:?}");
}

pub async fn rotation_never_outlives_the_session(s: DynStore) {
    s.create_user(&new_user("user_l", "l@x.io")).await.unwrap();
    session(&s, "user_l", "ses_l", "l0").await;
    let now = Utc::now();
    // A lifetime that ends in one hour: the next token expires then, not in a day.
    let r = s
        .rotate_refresh_token(
            &token("l0"),
            &refresh("l1", Duration::days(1)),
            now,
            Duration::hours(1),
        )
        .await
        .unwrap();
    assert!(matches!(r, Rotation::Rotated { .. }), "{r:?}");
    let session = s.session_principal("ses_l").await.unwrap().unwrap();
    let left = session.expires_at - now;
    assert!(
        left <= Duration::hours(1) && left > Duration::minutes(55),
        "{left:?}"
    );
    // A lifetime already over: the next token is born expired and cannot be used.
    let r = s
        .rotate_refresh_token(
            &token("l1"),
            &refresh("l2", Duration::days(1)),
            now,
            Duration::seconds(-1),
        )
        .await
        .unwrap();
    assert!(matches!(r, Rotation::Rotated { .. }), "{r:?}");
    let r = s
        .rotate_refresh_token(
            &token("l2"),
            &refresh("l3", Duration::days(1)),
            Utc::now(),
            life(),
        )
        .await
        .unwrap();
    assert!(matches!(r, Rotation::Invalid), "{r:?}");
}

pub async fn refresh_rotation(s: DynStore) {
    s.create_user(&new_user("user_r", "r@x.io")).await.unwrap();
    session(&s, "user_r", "ses_r", "t0").await;
    let now = Utc::now();
    let t0 = hex::encode(portcullis::secret::hash("t0"));
    match s
        .rotate_refresh_token(&t0, &refresh("t1", Duration::days(1)), now, life())
        .await
        .unwrap()
    {
        Rotation::Rotated { session_id, user } => assert_eq!(
            (session_id.as_str(), user.user_id.as_str()),
            ("ses_r", "user_r")
        ),
        other => panic!("{other:?}"),
    }
    match s
        .rotate_refresh_token(&t0, &refresh("t2", Duration::days(1)), now, life())
        .await
        .unwrap()
    {
        Rotation::AlreadyRotated { session_id, .. } => assert_eq!(session_id, "ses_r"),
        other => panic!("{other:?}"),
    }
    let unknown = hex::encode(portcullis::secret::hash("never"));
    assert!(matches!(
        s.rotate_refresh_token(&unknown, &refresh("t3", Duration::days(1)), now, life())
            .await
            .unwrap(),
        Rotation::Invalid
    ));
    assert_eq!(
        s.session_of_refresh_token(&t0).await.unwrap(),
        Some(("ses_r".to_string(), "user_r".to_string()))
    );
    assert!(s.revoke_session("ses_r", now).await.unwrap());
    assert!(!s.revoke_session("ses_r", now).await.unwrap());
    let t1 = hex::encode(portcullis::secret::hash("t1"));
    assert!(matches!(
        s.rotate_refresh_token(&t1, &refresh("t4", Duration::days(1)), now, life())
            .await
            .unwrap(),
        Rotation::Invalid
    ));
    assert!(s.session_principal("ses_r").await.unwrap().unwrap().revoked);
}

pub async fn expired_refresh_tokens_are_invalid(s: DynStore) {
    s.create_user(&new_user("user_e", "e@x.io")).await.unwrap();
    let new = NewSession {
        session_id: "ses_e".into(),
        user_id: "user_e".into(),
        user_agent: None,
        ip_address: None,
        created_at: Utc::now(),
    };
    s.create_session(&new, &refresh("old", Duration::seconds(-5)))
        .await
        .unwrap();
    let old = hex::encode(portcullis::secret::hash("old"));
    let r = s
        .rotate_refresh_token(&old, &refresh("new", Duration::days(1)), Utc::now(), life())
        .await
        .unwrap();
    assert!(matches!(r, Rotation::Invalid));
}

pub async fn racing_rotations_have_one_winner(s: DynStore) {
    s.create_user(&new_user("user_race", "race@x.io"))
        .await
        .unwrap();
    session(&s, "user_race", "ses_race", "shared").await;
    let shared = hex::encode(portcullis::secret::hash("shared"));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            s.rotate_refresh_token(
                &shared,
                &refresh(&format!("next{i}"), Duration::days(1)),
                Utc::now(),
                life(),
            )
            .await
            .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Rotation::Rotated { .. } => winners += 1,
            Rotation::AlreadyRotated { .. } => {}
            Rotation::Invalid | Rotation::UserDisabled => {
                panic!("a loser must see the token as spent")
            }
        }
    }
    assert_eq!(winners, 1);
}

pub async fn user_sessions(s: DynStore) {
    s.create_user(&new_user("user_s", "s@x.io")).await.unwrap();
    for (sid, tok) in [("ses_a", "ta"), ("ses_b", "tb"), ("ses_c", "tc")] {
        session(&s, "user_s", sid, tok).await;
    }
    let mut live = s.unexpired_session_ids("user_s").await.unwrap();
    live.sort();
    assert_eq!(live, vec!["ses_a", "ses_b", "ses_c"]);
    let mut ended = s
        .revoke_user_sessions("user_s", Some("ses_b"), Utc::now())
        .await
        .unwrap();
    ended.sort();
    assert_eq!(ended, vec!["ses_a", "ses_c"]);
    // Ended sessions are still listed until they expire: a change to the user can still
    // affect what is cached for them.
    let mut listed = s.unexpired_session_ids("user_s").await.unwrap();
    listed.sort();
    assert_eq!(listed, vec!["ses_a", "ses_b", "ses_c"]);
    let ta = hex::encode(portcullis::secret::hash("ta"));
    let r = s
        .rotate_refresh_token(&ta, &refresh("ta2", Duration::days(1)), Utc::now(), life())
        .await
        .unwrap();
    assert!(
        matches!(r, Rotation::Invalid),
        "an ended session's tokens are dead"
    );
    let all = s
        .revoke_user_sessions("user_s", None, Utc::now())
        .await
        .unwrap();
    assert_eq!(all, vec!["ses_b"]);
    // An expired session is not listed.
    let expired = NewSession {
        session_id: "ses_old".into(),
        user_id: "user_s".into(),
        user_agent: None,
        ip_address: None,
        created_at: Utc::now(),
    };
    s.create_session(&expired, &refresh("t_old", Duration::seconds(-5)))
        .await
        .unwrap();
    assert!(
        !s.unexpired_session_ids("user_s")
            .await
            .unwrap()
            .contains(&"ses_old".to_string())
    );
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
