//! Throttling across replicas: two instances over one PostgreSQL and one Redis count
//! against the same limits, and the per-user key cap holds under concurrent creation on
//! PostgreSQL and SQLite; with Redis gone, each instance still limits on its own.

use std::time::Duration;

use serde_json::json;

use super::assert_throttled;
use crate::harness::{PASSWORD, TestServer};
use crate::replicas::wait_subscribed;
use crate::services::{Cutter, PgDb, production_toml, redis_addr, shared_key, unique};

const LIMITS: &str = "[throttle]\nlogin_pair = { burst = 4, every = \"10m\" }\napi_key_create = { burst = 100, every = \"1s\" }\n[accounts]\nmax_api_keys_per_user = 5\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_their_counters_through_redis() {
    let db = PgDb::create().await;
    let key_dir = tempfile::tempdir().unwrap();
    let key = shared_key(key_dir.path());
    let prefix = format!("{}:", unique("pct_"));
    let redis = format!("redis://{}", redis_addr());
    let toml = production_toml(&db.url, Some((&redis, &prefix)), &key) + LIMITS;
    let a = TestServer::start_with(&toml).await;
    let b = TestServer::start_with(&toml).await;
    wait_subscribed(&a).await;
    wait_subscribed(&b).await;
    a.register("shared@example.com").await;
    for srv in [&a, &b, &a, &b] {
        assert_eq!(
            srv.login("shared@example.com", "wrong guess").await.status,
            401
        );
    }
    // Four failures, two on each: both replicas now refuse.
    assert_throttled(&a.login("shared@example.com", PASSWORD).await, "login_pair");
    assert_throttled(&b.login("shared@example.com", PASSWORD).await, "login_pair");
    // The counter lives in Redis under the deployment's prefix.
    let mut conn = redis::Client::open(redis.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}throttle:login_pair:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
}

/// With the Redis connection cut, limits are per process: still limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_replica_limits_on_its_own() {
    let db = PgDb::create().await;
    let key_dir = tempfile::tempdir().unwrap();
    let key = shared_key(key_dir.path());
    let cutter = Cutter::start(redis_addr()).await;
    let prefix = format!("{}:", unique("pct_"));
    let redis = format!("redis://{}", cutter.addr);
    let toml = production_toml(&db.url, Some((&redis, &prefix)), &key) + LIMITS;
    let srv = TestServer::start_with(&toml).await;
    wait_subscribed(&srv).await;
    srv.register("alone@example.com").await;
    cutter.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..4 {
        assert_eq!(
            srv.login("alone@example.com", "wrong guess").await.status,
            401
        );
    }
    assert_throttled(
        &srv.login("alone@example.com", PASSWORD).await,
        "login_pair",
    );
    let (_, metrics) = crate::harness::raw_get(srv.admin, "/metrics", "admin", "").await;
    let fallbacks: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("portcullis_throttle_fallbacks_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(fallbacks >= 5, "{fallbacks}");
}

async fn key_cap_holds_under_concurrency(srv: &TestServer) {
    let t = srv.register("capped@example.com").await;
    let attempts = (0..20).map(|i| {
        srv.post(&srv.auth_path("/api-keys"))
            .bearer(&t.access)
            .json(json!({"name": format!("k{i}")}))
            .send()
    });
    let results = futures_util::future::join_all(attempts).await;
    let created: Vec<_> = results.iter().filter(|r| r.status == 201).collect();
    let refused = results.iter().filter(|r| r.status == 409).count();
    assert_eq!(
        created.len(),
        5,
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(refused, 15);
    assert_eq!(
        results.iter().find(|r| r.status == 409).unwrap().json()["code"],
        "api_key_limit"
    );
    // Revoking one frees a place for exactly one more.
    let key_id = created[0].json()["key_id"].as_str().unwrap().to_string();
    assert_eq!(srv.revoke_key(&t.access, &key_id).await.status, 200);
    srv.api_key(&t.access, "replacement").await;
    let r = srv
        .post(&srv.auth_path("/api-keys"))
        .bearer(&t.access)
        .json(json!({"name": "one too many"}))
        .send()
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_cap_holds_under_concurrency_on_postgres() {
    let db = PgDb::create().await;
    let key_dir = tempfile::tempdir().unwrap();
    let key = shared_key(key_dir.path());
    let toml = production_toml(&db.url, None, &key) + LIMITS;
    key_cap_holds_under_concurrency(&TestServer::start_with(&toml).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_cap_holds_under_concurrency_on_sqlite() {
    key_cap_holds_under_concurrency(&TestServer::start_with(LIMITS).await).await;
}
