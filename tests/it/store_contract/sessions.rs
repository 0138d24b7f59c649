//! The contract's session cases: refresh rotation, reuse and its generations, disabled
//! users, absolute lifetimes, races, and ending a user's sessions.

use chrono::{Duration, Utc};
use portcullis::store::{DynStore, NewSession, Rotation, UserPatch};

use super::{new_user, refresh, session};

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
