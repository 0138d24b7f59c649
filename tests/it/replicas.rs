//! Several Portcullis instances over one PostgreSQL database and one Redis: one deployment.
//! What happens on one replica is true on all of them on the next request.

use std::time::{Duration, Instant};

use crate::harness::{PASSWORD, TestServer, Tokens};
use crate::services::{PgDb, production_toml, redis_url, shared_key, unique};

pub struct Deployment {
    pub replicas: Vec<TestServer>,
    _db: PgDb,
    _key_dir: tempfile::TempDir,
}

pub async fn wait_subscribed(srv: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !srv.state.metrics.redis_subscribed() {
        assert!(
            Instant::now() < deadline,
            "never subscribed to Redis invalidations"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn deployment(n: usize) -> Deployment {
    let db = PgDb::create().await;
    let key_dir = tempfile::tempdir().unwrap();
    let key = shared_key(key_dir.path());
    let prefix = format!("{}:", unique("pct_"));
    let toml = production_toml(&db.url, Some((&redis_url(), &prefix)), &key);
    let mut replicas = Vec::new();
    for _ in 0..n {
        replicas.push(TestServer::start_with(&toml).await);
    }
    for r in &replicas {
        wait_subscribed(r).await;
    }
    Deployment {
        replicas,
        _db: db,
        _key_dir: key_dir,
    }
}

async fn status(srv: &TestServer, token: &str) -> u16 {
    srv.status_with("/api/x", token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_started_anywhere_works_everywhere_and_ends_everywhere() {
    let d = deployment(3).await;
    let (a, b, c) = (&d.replicas[0], &d.replicas[1], &d.replicas[2]);
    let t = a.register("everywhere@example.com").await;
    for r in [a, b, c] {
        assert_eq!(status(r, &t.access).await, 200);
    }
    let r = b.logout(&t.access).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        status(a, &t.access).await,
        401,
        "A refuses on the very next request"
    );
    assert_eq!(
        status(c, &t.access).await,
        401,
        "C refuses on the very next request"
    );
    // The refresh token died with the session, on every replica.
    let r = c
        .post(&c.auth_path("/refresh"))
        .json(serde_json::json!({"refresh_token": t.refresh}))
        .send()
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_change_on_one_replica_applies_on_all() {
    let d = deployment(3).await;
    let (a, b, c) = (&d.replicas[0], &d.replicas[1], &d.replicas[2]);
    let admin = c.admin("root@example.com").await;
    let user = a.register("target@example.com").await;
    let (key, _) = a.api_key(&user.access, "replicated").await;
    for r in [a, b] {
        assert_eq!(status(r, &user.access).await, 200);
        assert_eq!(status(r, &key).await, 200);
    }
    let uid = c.me(&user.access).await.json()["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        c.admin_user(&admin.access, &uid, "disable").await.status,
        200
    );
    for r in [a, b] {
        assert_eq!(status(r, &user.access).await, 403);
        assert_eq!(status(r, &key).await, 403);
    }
    assert_eq!(
        c.admin_user(&admin.access, &uid, "enable").await.status,
        200
    );
    // Disabling ended the user's sessions for good: they sign in again.
    assert_eq!(status(a, &user.access).await, 401);
    let r = a
        .login("target@example.com", crate::harness::PASSWORD)
        .await;
    assert_eq!(r.status, 200);
    let user = crate::harness::Tokens::from(&r);
    assert_eq!(
        c.admin_user(&admin.access, &uid, "role?role=admin")
            .await
            .status,
        200
    );
    for r in [a, b] {
        let seen = r.get("/admin-only/x").bearer(&key).send().await;
        assert_eq!(seen.status, 200);
        assert_eq!(seen.echoed_header("x-user-role").as_deref(), Some("admin"));
    }
    // A key revoked on B stops on A and C.
    let (k2, k2_id) = a.api_key(&user.access, "second").await;
    for r in [a, c] {
        assert_eq!(status(r, &k2).await, 200);
    }
    assert_eq!(b.revoke_key(&user.access, &k2_id).await.status, 200);
    for r in [a, c] {
        assert_eq!(status(r, &k2).await, 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_tier_serves_sessions_across_replicas() {
    let d = deployment(2).await;
    let (a, b) = (&d.replicas[0], &d.replicas[1]);
    let t = a.register("shared@example.com").await;
    assert_eq!(
        status(a, &t.access).await,
        200,
        "A loads from SQL and fills Redis"
    );
    let before = b.state.metrics.redis_hits();
    assert_eq!(status(b, &t.access).await, 200);
    assert_eq!(
        b.state.metrics.redis_hits(),
        before + 1,
        "B found the session in Redis"
    );
}

/// Logout on A, then B's next request: how long until B refuses, over many trials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_other_replicas_on_the_next_request() {
    let d = deployment(2).await;
    let (a, b) = (&d.replicas[0], &d.replicas[1]);
    a.register("trials@example.com").await;
    let mut samples = Vec::new();
    for _ in 0..40 {
        let t = Tokens::from(&a.login("trials@example.com", PASSWORD).await);
        assert_eq!(status(b, &t.access).await, 200, "B has the identity cached");
        let r = a.logout(&t.access).await;
        assert_eq!(r.status, 200);
        let started = Instant::now();
        let first = status(b, &t.access).await;
        samples.push(started.elapsed());
        assert_eq!(
            first, 401,
            "B refused on its first request after the logout"
        );
    }
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];
    println!("revocation A->B, logout response to refusal on B: p50 {p50:?}, p99 {p99:?}");
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
}
