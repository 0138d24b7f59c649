//! The failure rules: Redis absent, slow or flapping never refuses valid credentials; a
//! database outage serves cached identities for a bounded time and answers 503 (never 401)
//! for anything that needs the database; nothing hangs.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{PASSWORD, TestServer, Tokens};
use crate::replicas::wait_subscribed;
use crate::services::{Cutter, PgDb, pg_addr, production_toml, redis_addr, shared_key, unique};

async fn status(srv: &TestServer, token: &str) -> u16 {
    srv.status_with("/api/x", token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_and_serves_without_redis() {
    let db = PgDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key(dir.path());
    let toml = production_toml(&db.url, Some(("redis://127.0.0.1:1", "none:")), &key);
    let srv = TestServer::start_with(&toml).await;
    let t = srv.register("no-redis@example.com").await;
    assert_eq!(status(&srv, &t.access).await, 200);
    let (api_key, _) = srv.api_key(&t.access, "k").await;
    assert_eq!(status(&srv, &api_key).await, 200);
    let r = srv.logout(&t.access).await;
    assert_eq!(r.status, 200, "revocation works without Redis");
    assert_eq!(status(&srv, &t.access).await, 401);
    assert!(!srv.state.metrics.redis_subscribed());
    assert!(
        srv.state
            .metrics
            .render()
            .contains("portcullis_redis_lookups_total{result=\"error\"}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_is_a_miss_not_a_stall() {
    let db = PgDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key(dir.path());
    let cutter = Cutter::start(redis_addr()).await;
    let redis = format!("redis://{}", cutter.addr);
    let prefix = format!("{}:", unique("pct_"));
    let srv =
        TestServer::start_with(&production_toml(&db.url, Some((&redis, &prefix)), &key)).await;
    wait_subscribed(&srv).await;
    cutter.blackhole();
    let t = srv.register("slow-redis@example.com").await;
    let started = Instant::now();
    assert_eq!(status(&srv, &t.access).await, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_subscription_flushes_on_reconnect() {
    let db = PgDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key(dir.path());
    let prefix = format!("{}:", unique("pct_"));
    let direct = crate::services::redis_url();
    let a = TestServer::start_with(&production_toml(&db.url, Some((&direct, &prefix)), &key)).await;
    let cutter = Cutter::start(redis_addr()).await;
    let via_cutter = format!("redis://{}", cutter.addr);
    let b = TestServer::start_with(&production_toml(
        &db.url,
        Some((&via_cutter, &prefix)),
        &key,
    ))
    .await;
    wait_subscribed(&a).await;
    wait_subscribed(&b).await;

    let t = a.register("flapping@example.com").await;
    assert_eq!(status(&b, &t.access).await, 200, "cached on B");
    cutter.cut();
    // Valid credentials keep working on B while its Redis is gone (SQL fall-through).
    let fresh = Tokens::from(&a.login("flapping@example.com", PASSWORD).await);
    assert_eq!(status(&b, &fresh.access).await, 200);
    // A revocation B cannot hear about.
    let r = a.logout(&t.access).await;
    assert_eq!(r.status, 200);
    let resubscribes = b.state.metrics.redis_resubscribes();
    cutter.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.state.metrics.redis_resubscribes() == resubscribes {
        assert!(Instant::now() < deadline, "B never resubscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status(&b, &t.access).await,
        401,
        "B flushed what it might have missed"
    );
    assert_eq!(status(&b, &fresh.access).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_serves_cached_identities_for_a_bounded_time() {
    let db = PgDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key(dir.path());
    let cutter = Cutter::start(pg_addr()).await;
    let toml = format!(
        "{}[cache]\nttl = \"1s\"\nstale_bound = \"2s\"\n",
        production_toml(&db.url_via(cutter.addr), None, &key)
    );
    let srv = TestServer::start_with(&toml).await;
    let cached = srv.register("cached@example.com").await;
    let uncached = srv.register("uncached@example.com").await;
    assert_eq!(status(&srv, &cached.access).await, 200);

    cutter.cut();
    let outage = Instant::now();
    assert_eq!(
        status(&srv, &cached.access).await,
        200,
        "fresh in the cache"
    );
    let r = srv.get("/api/x").bearer(&uncached.access).send().await;
    assert_eq!(
        r.status,
        503,
        "a cache miss is 503, never 401: {}",
        r.text()
    );
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(r.json()["code"], "unavailable");
    let login = srv.login("cached@example.com", PASSWORD).await;
    assert_eq!(login.status, 503);
    assert!(login.header("retry-after").is_some());

    tokio::time::sleep(Duration::from_millis(1300).saturating_sub(outage.elapsed())).await;
    assert_eq!(
        status(&srv, &cached.access).await,
        200,
        "stale, within the bound"
    );
    assert!(srv.state.metrics.stale_served() > 0);
    tokio::time::sleep(Duration::from_millis(3300).saturating_sub(outage.elapsed())).await;
    assert_eq!(
        status(&srv, &cached.access).await,
        503,
        "past ttl + stale_bound"
    );

    cutter.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if status(&srv, &cached.access).await == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        srv.login("uncached@example.com", PASSWORD).await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_fails_fast() {
    let db = PgDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key(dir.path());
    let cutter = Cutter::start(pg_addr()).await;
    let srv = TestServer::start_with(&production_toml(&db.url_via(cutter.addr), None, &key)).await;
    let t = srv.register("hang@example.com").await;
    cutter.blackhole();
    let started = Instant::now();
    let r = srv
        .post(&srv.auth_path("/login"))
        .json(json!({"email": "hang@example.com", "password": PASSWORD}))
        .send()
        .await;
    assert_eq!(r.status, 503);
    let r2 = srv.get("/api/x").bearer(&t.access).send().await;
    assert_eq!(r2.status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}
