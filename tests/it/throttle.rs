//! Throttling over real sockets: failed logins per pair, address and account (with the
//! owner's own address kept open), registration, refresh, password change, API-key creation
//! and unknown API keys per address, the 429 contract (`Retry-After`, `RateLimit`,
//! `RateLimit-Policy`, JSON), the client address (trusted proxies only, IPv6 by /64), the
//! per-user key cap under concurrency, and the operator's view.

mod flood;
mod shared;

use serde_json::json;

use crate::harness::{PASSWORD, Resp, TestServer, raw_get};

/// Peers on loopback are a trusted proxy here, so `X-Forwarded-For` names the client.
const BEHIND_PROXY: &str = r#"
[server]
trusted_proxies = ["127.0.0.1/32", "::1/128"]
"#;

async fn login_from(srv: &TestServer, from: &str, email: &str, password: &str) -> Resp {
    srv.post(&srv.auth_path("/login"))
        .header("x-forwarded-for", from)
        .json(json!({"email": email, "password": password}))
        .send()
        .await
}

/// The 429 contract: status, `Retry-After`, both RateLimit fields naming the limiter, and
/// the JSON body.
pub fn assert_throttled(r: &Resp, limiter: &str) -> u64 {
    assert_eq!(r.status, 429, "{}", r.text());
    let v = r.json();
    assert_eq!(v["code"], "rate_limited", "{v}");
    assert_eq!(v["limiter"], limiter, "{v}");
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(wait >= 1);
    assert_eq!(v["retry_after"], wait);
    let policy = r.header("ratelimit-policy").expect("RateLimit-Policy");
    assert!(policy.starts_with(&format!("\"{limiter}\";q=")), "{policy}");
    assert!(policy.contains(";w="), "{policy}");
    let state = r.header("ratelimit").expect("RateLimit");
    assert_eq!(state, format!("\"{limiter}\";r=0;t={wait}"));
    wait
}

#[tokio::test]
async fn failed_logins_on_one_pair_are_refused_before_any_hashing() {
    let srv =
        TestServer::start_with("[throttle]\nlogin_pair = { burst = 3, every = \"10m\" }\n").await;
    srv.register("pair@example.com").await;
    for _ in 0..3 {
        assert_eq!(
            srv.login("pair@example.com", "wrong password").await.status,
            401
        );
    }
    let r = srv.login("pair@example.com", "wrong password").await;
    let wait = assert_throttled(&r, "login_pair");
    assert!((500..=600).contains(&wait), "{wait}");
    // The right password is refused too: the decision comes before the password is checked.
    assert_throttled(&srv.login("pair@example.com", PASSWORD).await, "login_pair");
    // Other accounts from this address are not held back by this pair.
    srv.register("other@example.com").await;
    assert_eq!(srv.login("other@example.com", PASSWORD).await.status, 200);
    let (_, metrics) = raw_get(srv.admin, "/metrics", "admin", "").await;
    assert!(
        metrics.contains("portcullis_throttled_total{limiter=\"login_pair\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn successful_logins_do_not_count() {
    let srv = TestServer::start_with(
        "[throttle]\nlogin_pair = { burst = 2, every = \"10m\" }\nlogin_address = { burst = 2, every = \"10m\" }\nlogin_account = { burst = 2, every = \"10m\" }\n",
    )
    .await;
    srv.register("often@example.com").await;
    for _ in 0..6 {
        assert_eq!(srv.login("often@example.com", PASSWORD).await.status, 200);
    }
    assert_eq!(
        srv.login("often@example.com", "wrong password")
            .await
            .status,
        401
    );
}

/// The documented policy: spraying one account from many addresses slows every unknown
/// address (the account limiter), but the owner's address, known from an earlier sign-in,
/// is not held back by others' failures.
#[tokio::test]
async fn an_attacker_spraying_one_account_cannot_lock_its_owner_out() {
    let srv = TestServer::start_with(&format!(
        "{BEHIND_PROXY}[throttle]\nlogin_account = {{ burst = 5, every = \"10m\" }}\n"
    ))
    .await;
    srv.register("victim@example.com").await;
    let home = "198.51.100.7";
    assert_eq!(
        login_from(&srv, home, "victim@example.com", PASSWORD)
            .await
            .status,
        200
    );
    let mut refused = 0;
    for i in 0..20 {
        let attacker = format!("203.0.113.{}", 10 + i);
        let r = login_from(&srv, &attacker, "victim@example.com", "guess").await;
        match r.status {
            401 => assert_eq!(refused, 0, "a refusal is followed only by refusals"),
            429 => {
                assert_throttled(&r, "login_account");
                refused += 1;
            }
            other => panic!("{other}: {}", r.text()),
        }
    }
    assert_eq!(
        refused, 15,
        "five failures at once, then the account is slowed"
    );
    // The owner, from home: straight in, while the account is throttled for everyone else.
    assert_eq!(
        login_from(&srv, home, "victim@example.com", PASSWORD)
            .await
            .status,
        200
    );
    // A new address of the owner's waits like any other (at most one interval).
    let r = login_from(&srv, "192.0.2.55", "victim@example.com", PASSWORD).await;
    assert!(assert_throttled(&r, "login_account") <= 600);
    // The operator sees the sprayed account at the top.
    let (status, body) = raw_get(srv.admin, "/throttled?limit=5", "admin", "").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["top"][0]["limiter"], "login_account", "{v}");
    assert_eq!(v["top"][0]["key"], "victim@example.com", "{v}");
    assert_eq!(v["top"][0]["refused"], 16, "{v}");
}

#[tokio::test]
async fn failures_across_accounts_are_limited_per_address_and_untrusted_forwarding_is_ignored() {
    // No trusted proxy: X-Forwarded-For is the client's own claim, and ignored.
    let srv =
        TestServer::start_with("[throttle]\nlogin_address = { burst = 4, every = \"10m\" }\n")
            .await;
    for i in 0..4 {
        let r = login_from(
            &srv,
            &format!("203.0.113.{i}"),
            &format!("u{i}@example.com"),
            "x1234567",
        )
        .await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    let r = login_from(&srv, "203.0.113.99", "fresh@example.com", "x1234567").await;
    assert_throttled(&r, "login_address");
}

#[tokio::test]
async fn ipv6_clients_share_a_limit_per_64() {
    let srv = TestServer::start_with(&format!(
        "{BEHIND_PROXY}[throttle]\nlogin_address = {{ burst = 2, every = \"10m\" }}\n"
    ))
    .await;
    for (i, from) in ["2001:db8:5:6::1", "2001:db8:5:6:ffff::2"]
        .iter()
        .enumerate()
    {
        let r = login_from(&srv, from, &format!("v6-{i}@example.com"), "x1234567").await;
        assert_eq!(r.status, 401);
    }
    let r = login_from(&srv, "2001:db8:5:6:1:2:3:4", "v6-x@example.com", "x1234567").await;
    assert_throttled(&r, "login_address");
    // The next /64 is another client.
    let r = login_from(&srv, "2001:db8:5:7::1", "v6-y@example.com", "x1234567").await;
    assert_eq!(r.status, 401);
    let (_, body) = raw_get(srv.admin, "/throttled", "admin", "").await;
    assert!(body.contains("2001:db8:5:6::/64"), "{body}");
}

#[tokio::test]
async fn registrations_are_limited_per_address() {
    let srv =
        TestServer::start_with("[throttle]\nregister = { burst = 3, every = \"10m\" }\n").await;
    for i in 0..3 {
        srv.register(&format!("r{i}@example.com")).await;
    }
    let r = srv
        .post(&srv.auth_path("/register"))
        .json(json!({"email": "r9@example.com", "password": PASSWORD, "full_name": "R"}))
        .send()
        .await;
    assert_throttled(&r, "register");
    assert!(
        srv.state
            .store
            .user_by_email("r9@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn failed_refreshes_are_limited_per_address_and_good_ones_are_free() {
    let srv =
        TestServer::start_with("[throttle]\nrefresh = { burst = 2, every = \"10m\" }\n").await;
    let mut t = srv.register("refresh@example.com").await;
    for _ in 0..4 {
        let r = srv.refresh(&t.refresh).await;
        assert_eq!(r.status, 200, "{}", r.text());
        t = crate::harness::Tokens::from(&r);
    }
    for _ in 0..2 {
        assert_eq!(srv.refresh("pcr_not-a-real-token").await.status, 401);
    }
    assert_throttled(&srv.refresh("pcr_not-a-real-token").await, "refresh");
    assert_throttled(&srv.refresh(&t.refresh).await, "refresh");
}

#[tokio::test]
async fn wrong_current_passwords_are_limited() {
    let srv =
        TestServer::start_with("[throttle]\nchange_password = { burst = 2, every = \"10m\" }\n")
            .await;
    let t = srv.register("change@example.com").await;
    let change = |current: &'static str| {
        srv.post(&srv.auth_path("/change-password"))
            .bearer(&t.access)
            .json(json!({"current_password": current, "new_password": "a brand new secret 9"}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(change("not the password").await.status, 400);
    }
    assert_throttled(&change(PASSWORD).await, "change_password");
    assert_eq!(srv.login("change@example.com", PASSWORD).await.status, 200);
}

#[tokio::test]
async fn unknown_api_keys_are_limited_per_address_but_verified_keys_keep_working() {
    let srv =
        TestServer::start_with("[throttle]\napi_key_failure = { burst = 3, every = \"10m\" }\n")
            .await;
    let t = srv.register("keys@example.com").await;
    let (key, _) = srv.api_key(&t.access, "good").await;
    let srv = &srv;
    let with_key =
        |k: String| async move { srv.get("/api/thing").header("x-api-key", &k).send().await };
    assert_eq!(with_key(key.clone()).await.status, 200);
    // Well-formed (the legacy form has no checksum), so each one is a store lookup.
    let guess = |i: u32| format!("rpa_{i:0>32}");
    for i in 0..3 {
        assert_eq!(with_key(guess(i)).await.status, 401);
    }
    let r = with_key(guess(3)).await;
    assert_throttled(&r, "api_key_failure");
    // Refused without a lookup from now on, on the account API too.
    assert_throttled(&with_key(guess(4)).await, "api_key_failure");
    let r = srv
        .get(&srv.auth_path("/me"))
        .header("x-api-key", &guess(5))
        .send()
        .await;
    assert_throttled(&r, "api_key_failure");
    // The key this process has verified still works.
    assert_eq!(with_key(key).await.status, 200);
}

#[tokio::test]
async fn api_key_creation_is_limited_per_address() {
    let srv =
        TestServer::start_with("[throttle]\napi_key_create = { burst = 2, every = \"10m\" }\n")
            .await;
    let t = srv.register("mint@example.com").await;
    srv.api_key(&t.access, "one").await;
    srv.api_key(&t.access, "two").await;
    let r = srv
        .post(&srv.auth_path("/api-keys"))
        .bearer(&t.access)
        .json(json!({"name": "three"}))
        .send()
        .await;
    assert_throttled(&r, "api_key_create");
    assert_eq!(
        srv.list_keys(&t.access).await.json()["api_keys"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn the_sign_in_and_sign_up_forms_say_when_to_try_again() {
    let srv = TestServer::start_with(
        "[throttle]\nlogin_pair = { burst = 1, every = \"10m\" }\nregister = { burst = 2, every = \"10m\" }\n",
    )
    .await;
    srv.register("form@example.com").await;
    let post = |page: &str, body: &'static str| {
        srv.post(&srv.auth_path(page))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", &format!("http://{}", srv.addr))
            .body(body)
            .send()
    };
    let sign_in = "email=form%40example.com&password=wrong";
    assert_eq!(post("/sign-in", sign_in).await.status, 400);
    let r = post("/sign-in", sign_in).await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert!(
        r.header("ratelimit")
            .unwrap()
            .starts_with("\"login_pair\";r=0;t=")
    );
    assert!(r.header("ratelimit-policy").is_some());
    assert!(
        r.text().contains("Too many attempts. Try again in"),
        "{}",
        r.text()
    );
    // The JSON registration above was the first of two; the form gets the second.
    let sign_up =
        "email=fresh%40example.com&full_name=Nell&organization=&password=a+long+new+secret+9";
    let r = post("/sign-up", sign_up).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let r = post("/sign-up", sign_up).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(
        r.text().contains("Too many attempts. Try again in"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn with_throttling_off_nothing_is_refused() {
    let srv = TestServer::start_with(
        "[throttle]\nenabled = false\nlogin_pair = { burst = 1, every = \"10m\" }\n",
    )
    .await;
    srv.register("free@example.com").await;
    for _ in 0..4 {
        assert_eq!(srv.login("free@example.com", "wrong").await.status, 401);
    }
}
