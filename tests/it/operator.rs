//! The operator listener: `/readyz` is 200 while the store answers and 503 while it does
//! not; Redis down is reported as degraded in the body and stays ready (identities then
//! come from the store). `/healthz` only says the process is up.

use std::time::{Duration, Instant};

use crate::harness::{TestServer, raw_get};
use crate::services::{Cutter, PgDb, pg_addr, production_toml, redis_addr, shared_key, unique};

async fn operator(srv: &TestServer, path: &str) -> (u16, String) {
    raw_get(srv.admin, path, "admin", "").await
}

/// Polls `/readyz` until its body contains `want` (Redis connects in the background).
async fn ready_with(srv: &TestServer, want: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = operator(srv, "/readyz").await;
        if body.contains(want) || Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn ready_with_the_embedded_store() {
    let srv = TestServer::start().await;
    assert_eq!(operator(&srv, "/healthz").await.0, 200);
    let (status, body) = operator(&srv, "/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(body, "ready\nstore: ok\nredis: not configured\n");
    let (status, body) = operator(&srv, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("portcullis_"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_decides_readiness_and_redis_only_degrades_it() {
    let db = PgDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key(dir.path());
    let pg = Cutter::start(pg_addr()).await;
    let redis = Cutter::start(redis_addr()).await;
    let toml = production_toml(
        &db.url_via(pg.addr),
        Some((
            &format!("redis://{}", redis.addr),
            &format!("{}:", unique("pct_")),
        )),
        &key,
    );
    let srv = TestServer::start_with(&toml).await;
    let (status, body) = ready_with(&srv, "redis: ok").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "ready\nstore: ok\nredis: ok\n")
    );

    // Redis gone: still ready, and the body says what is missing.
    redis.cut();
    let (status, body) = ready_with(&srv, "redis: unreachable").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ready, degraded\nstore: ok\n"), "{body}");
    redis.restore();
    let (status, _) = ready_with(&srv, "redis: ok").await;
    assert_eq!(status, 200);

    // The store gone: not ready, until it is back.
    pg.cut();
    let (status, body) = ready_with(&srv, "not ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store: "), "{body}");
    assert_eq!(
        operator(&srv, "/healthz").await.0,
        200,
        "alive all the same"
    );
    pg.restore();
    let (status, body) = ready_with(&srv, "ready\nstore: ok").await;
    assert_eq!(status, 200, "{body}");
}
