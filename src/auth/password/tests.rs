//! Tests of password hashing: argon2id and bcrypt, rehash decisions, the queue bound.

use super::*;

/// Verification outcomes the tests expect.
const ACCEPTED: Verified = Verified {
    ok: true,
    needs_rehash: false,
};
const ACCEPTED_STALE: Verified = Verified {
    ok: true,
    needs_rehash: true,
};
const REFUSED: Verified = Verified {
    ok: false,
    needs_rehash: false,
};

fn config(memory_kib: u32, max_concurrent: usize, max_queued: usize) -> HashingConfig {
    HashingConfig {
        memory_kib,
        iterations: 1,
        parallelism: 1,
        max_concurrent,
        max_queued,
        low_priority: false,
    }
}

fn hasher_with(cfg: &HashingConfig) -> PasswordHasher {
    PasswordHasher::new(cfg, Arc::new(Metrics::new(vec![]))).unwrap()
}

fn hasher(max_concurrent: usize, max_queued: usize) -> PasswordHasher {
    hasher_with(&config(256, max_concurrent, max_queued))
}

fn secret(s: &str) -> Secret {
    Secret::new(s.to_string())
}

#[tokio::test]
async fn argon2id_round_trip() {
    let h = hasher(2, 4);
    let stored = h.hash(&secret("correct horse")).await.unwrap();
    assert!(stored.starts_with("$argon2id$v=19$m=256,t=1,p=1$"));
    let good = h
        .verify(&secret("correct horse"), Some(&stored))
        .await
        .unwrap();
    assert_eq!(good, ACCEPTED);
    let bad = h
        .verify(&secret("wrong horse"), Some(&stored))
        .await
        .unwrap();
    assert!(!bad.ok);
}

#[test]
fn hashes_interoperate_with_the_argon2_crate() {
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
    let params = Params::new(256, 1, 1, None).unwrap();
    let spare = Spare::default();
    let ours = hash_now(&spare, &params, "interop password").unwrap();
    let standard = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let parsed = PasswordHash::new(&ours).unwrap();
    assert!(
        standard
            .verify_password(b"interop password", &parsed)
            .is_ok()
    );
    assert!(standard.verify_password(b"other", &parsed).is_err());
    let salt = SaltString::generate(&mut OsRng);
    let theirs = standard
        .hash_password(b"their password", &salt)
        .unwrap()
        .to_string();
    assert!(verify_now(&spare, &params, "their password", &theirs).ok);
    assert!(!verify_now(&spare, &params, "wrong", &theirs).ok);
    // The dummy hash parses, costs a real check, and matches nothing.
    let dummy = dummy_hash(&params).unwrap();
    assert!(!verify_now(&spare, &params, "", &dummy).ok);
    assert!(PasswordHash::new(&dummy).is_ok());
}

#[tokio::test]
async fn bcrypt_verifies_and_asks_for_rehash() {
    let h = hasher(2, 4);
    let legacy = bcrypt::hash("old-password", 4).unwrap();
    let v = h
        .verify(&secret("old-password"), Some(&legacy))
        .await
        .unwrap();
    assert_eq!(v, ACCEPTED_STALE);
    let v = h.verify(&secret("other"), Some(&legacy)).await.unwrap();
    assert_eq!(v, REFUSED);
}

#[tokio::test]
async fn weaker_argon2_parameters_ask_for_rehash() {
    let weak = hasher(1, 1).hash(&secret("pw-123456")).await.unwrap();
    let strong = hasher_with(&config(512, 1, 1));
    let v = strong
        .verify(&secret("pw-123456"), Some(&weak))
        .await
        .unwrap();
    assert_eq!(v, ACCEPTED_STALE);
}

#[tokio::test]
async fn unknown_user_never_verifies() {
    let h = hasher(1, 1);
    let v = h.verify(&secret("anything"), None).await.unwrap();
    assert!(!v.ok);
}

#[tokio::test]
async fn full_queue_is_refused() {
    let h = Arc::new(hasher(1, 0));
    // Occupy the only thread so the next call has to queue, and the queue holds nothing.
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    h.pool
        .jobs
        .lock()
        .unwrap()
        .send(Box::new(move |_: &Spare| {
            let _ = blocked.recv();
        }))
        .unwrap();
    let waiting = {
        let h = h.clone();
        tokio::spawn(async move { h.hash(&secret("first-one")).await })
    };
    while h.in_flight.load(Ordering::Acquire) == 0 {
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        h.hash(&secret("second")).await,
        Err(HashError::Busy)
    ));
    assert!(
        h.metrics
            .render()
            .contains("portcullis_password_hash_rejections_total 1")
    );
    release.send(()).unwrap();
    assert!(waiting.await.unwrap().is_ok());
}

#[test]
fn hash_rate_is_measured() {
    let rate = measure_rate(&config(64, 1, 1), 1, Duration::from_millis(200)).unwrap();
    assert!(rate > 1.0, "{rate}");
}

#[test]
fn working_memory_is_reused_then_freed_when_idle() {
    let params = Params::new(256, 1, 1, None).unwrap();
    let spare = Spare::default();
    assert_eq!(spare.kept_bytes(), 0);
    let first = hash_now(&spare, &params, "pw").unwrap();
    // One hash keeps its 256 KiB for the next one, which takes it rather than a second.
    assert_eq!(spare.kept_bytes(), 256 * 1024);
    hash_now(&spare, &params, "pw").unwrap();
    assert_eq!(spare.kept_bytes(), 256 * 1024);
    assert!(verify_now(&spare, &params, "pw", &first).ok);
    // Recently used memory stays; memory idle for the bound is freed.
    spare.drop_idle(Duration::from_secs(60));
    assert_eq!(spare.kept_bytes(), 256 * 1024);
    std::thread::sleep(Duration::from_millis(20));
    spare.drop_idle(Duration::from_millis(10));
    assert_eq!(spare.kept_bytes(), 0);
    // Far larger parameters than configured are hashed in a one-off allocation.
    let big = Params::new(1024, 1, 1, None).unwrap();
    let mut out = [0u8; 32];
    argon2_into(
        &spare,
        Algorithm::Argon2id,
        Version::V0x13,
        &big,
        b"pw",
        b"saltsaltsalt",
        &mut out,
        params.block_count(),
    )
    .unwrap();
    assert_eq!(spare.kept_bytes(), 0);
}
