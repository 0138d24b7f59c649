//! Access-token verification against forged, altered and out-of-date tokens. Each forged
//! token is otherwise valid: it names a live session of a real user.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::harness::TestServer;

fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let h = B64.decode(it.next().unwrap()).unwrap();
    let c = B64.decode(it.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&h).unwrap(),
        serde_json::from_slice(&c).unwrap(),
    )
}

fn sign(srv: &TestServer, header: &Value, claims: &Value) -> String {
    let key = EncodingKey::from_ed_pem(&srv.signing_key_pem()).unwrap();
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = header["kid"].as_str().map(str::to_string);
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

async fn status(srv: &TestServer, token: &str) -> (u16, String) {
    let r = srv.get("/api/x").bearer(token).send().await;
    let www = r.header("www-authenticate").unwrap_or_default().to_string();
    if r.status == 401 {
        assert_eq!(www, "Bearer error=\"invalid_token\"", "RFC 6750 challenge");
    }
    (r.status, r.detail())
}

#[tokio::test]
async fn genuine_token_works_and_re_signing_it_unchanged_still_works() {
    let srv = TestServer::start().await;
    let t = srv.register("genuine@example.com").await;
    let (header, claims) = parts(&t.access);
    assert_eq!(status(&srv, &t.access).await.0, 200);
    // Control: the test's own signing produces a token the server accepts, so the failures
    // below are caused by what each case changes.
    assert_eq!(status(&srv, &sign(&srv, &header, &claims)).await.0, 200);
    for claim in [
        "iss", "aud", "sub", "email", "role", "sid", "iat", "nbf", "exp", "jti",
    ] {
        assert!(claims.get(claim).is_some(), "claim {claim}");
    }
    assert!(header["kid"].is_string());
}

#[tokio::test]
async fn alg_none_is_refused() {
    let srv = TestServer::start().await;
    let t = srv.register("none@example.com").await;
    let (mut header, claims) = parts(&t.access);
    header["alg"] = json!("none");
    assert_eq!(status(&srv, &unsigned(&header, &claims)).await.0, 401);
    header["alg"] = json!("None");
    assert_eq!(status(&srv, &unsigned(&header, &claims)).await.0, 401);
}

#[tokio::test]
async fn tampered_payload_is_refused() {
    let srv = TestServer::start().await;
    let t = srv.register("tamper@example.com").await;
    let (_, mut claims) = parts(&t.access);
    claims["role"] = json!("admin");
    let mut pieces: Vec<&str> = t.access.split('.').collect();
    let forged_claims = B64.encode(claims.to_string());
    pieces[1] = &forged_claims;
    assert_eq!(status(&srv, &pieces.join(".")).await.0, 401);
    // A flipped signature bit is refused too.
    let mut sig = B64.decode(t.access.rsplit('.').next().unwrap()).unwrap();
    sig[0] ^= 1;
    let flipped = format!(
        "{}.{}",
        t.access.rsplit_once('.').unwrap().0,
        B64.encode(sig)
    );
    assert_eq!(status(&srv, &flipped).await.0, 401);
}

#[tokio::test]
async fn another_servers_key_is_refused() {
    let a = TestServer::start().await;
    let b = TestServer::start().await;
    let t = b.register("other@example.com").await;
    assert_eq!(status(&a, &t.access).await.0, 401);
    // Even with a's kid in the header, b's signature does not verify under a's key.
    let a_token = a.register("other@example.com").await;
    let (a_header, _) = parts(&a_token.access);
    let (_, claims) = parts(&t.access);
    let key = EncodingKey::from_ed_pem(&b.signing_key_pem()).unwrap();
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = a_header["kid"].as_str().map(str::to_string);
    let forged = jsonwebtoken::encode(&h, &claims, &key).unwrap();
    assert_eq!(status(&a, &forged).await.0, 401);
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_refused() {
    let srv = TestServer::start().await;
    let t = srv.register("confuse@example.com").await;
    let (header, claims) = parts(&t.access);
    let jwks = srv.get("/.well-known/jwks.json").send().await.json();
    let public_raw = B64.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
    for secret in [
        public_raw.clone(),
        jwks["keys"][0]["x"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = header["kid"].as_str().map(str::to_string);
        let forged = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&secret)).unwrap();
        let (code, detail) = status(&srv, &forged).await;
        assert_eq!(code, 401);
        assert_eq!(detail, "Invalid token algorithm");
    }
}

#[tokio::test]
async fn time_claims_are_enforced() {
    let srv = TestServer::start().await;
    let t = srv.register("time@example.com").await;
    let (header, claims) = parts(&t.access);
    let now = chrono::Utc::now().timestamp();
    let mut expired = claims.clone();
    expired["exp"] = json!(now - 3600);
    assert_eq!(
        status(&srv, &sign(&srv, &header, &expired)).await,
        (401, "Token has expired".into())
    );
    let mut future = claims.clone();
    future["nbf"] = json!(now + 3600);
    assert_eq!(
        status(&srv, &sign(&srv, &header, &future)).await,
        (401, "Token is not yet valid".into())
    );
    let mut string_exp = claims.clone();
    string_exp["exp"] = json!((now + 600).to_string());
    assert_eq!(status(&srv, &sign(&srv, &header, &string_exp)).await.0, 401);
    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(status(&srv, &sign(&srv, &header, &no_exp)).await.0, 401);
}

#[tokio::test]
async fn issuer_and_audience_are_enforced() {
    let srv = TestServer::start().await;
    let t = srv.register("issaud@example.com").await;
    let (header, claims) = parts(&t.access);
    let mut iss = claims.clone();
    iss["iss"] = json!("someone-else");
    assert_eq!(
        status(&srv, &sign(&srv, &header, &iss)).await,
        (401, "Invalid token issuer".into())
    );
    let mut aud = claims.clone();
    aud["aud"] = json!("another-api");
    assert_eq!(
        status(&srv, &sign(&srv, &header, &aud)).await,
        (401, "Invalid token audience".into())
    );
}

#[tokio::test]
async fn a_forged_subject_for_a_real_session_is_refused() {
    let srv = TestServer::start().await;
    let victim = srv.register("victim@example.com").await;
    let attacker = srv.register("attacker@example.com").await;
    let (header, mut claims) = parts(&attacker.access);
    let (_, victim_claims) = parts(&victim.access);
    // Even a correctly signed token must name the session's own user.
    claims["sub"] = victim_claims["sub"].clone();
    assert_eq!(status(&srv, &sign(&srv, &header, &claims)).await.0, 401);
}

#[tokio::test]
async fn a_forged_subject_is_refused_when_the_session_is_already_cached() {
    let srv = TestServer::start().await;
    let victim = srv.register("cached-victim@example.com").await;
    let attacker = srv.register("cached-attacker@example.com").await;
    // The attacker's session is loaded into the cache by its genuine token.
    assert_eq!(status(&srv, &attacker.access).await.0, 200);
    let (header, mut claims) = parts(&attacker.access);
    let (_, victim_claims) = parts(&victim.access);
    claims["sub"] = victim_claims["sub"].clone();
    claims["jti"] = json!("another-jti");
    assert_eq!(status(&srv, &sign(&srv, &header, &claims)).await.0, 401);
    assert_eq!(status(&srv, &attacker.access).await.0, 200);
}

#[tokio::test]
async fn a_cached_token_is_refused_once_it_expires() {
    let srv = TestServer::start_with("[tokens]\naccess_ttl = \"1s\"\nleeway = \"0s\"\n").await;
    let t = srv.register("short@example.com").await;
    assert_eq!(status(&srv, &t.access).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        status(&srv, &t.access).await,
        (401, "Token has expired".into())
    );
}

#[tokio::test]
async fn repeated_tokens_are_served_from_the_cache() {
    let srv = TestServer::start().await;
    let t = srv.register("cached@example.com").await;
    let misses = srv.state.metrics.cache_misses();
    let hits = srv.state.metrics.cache_hits();
    for _ in 0..5 {
        assert_eq!(status(&srv, &t.access).await.0, 200);
    }
    assert_eq!(
        srv.state.metrics.cache_misses() - misses,
        1,
        "verified once"
    );
    assert_eq!(srv.state.metrics.cache_hits() - hits, 4);
}

#[tokio::test]
async fn generated_keys_and_sessions_survive_a_restart() {
    let srv = TestServer::start().await;
    let t = srv.register("restart@example.com").await;
    let dir = srv.stop().await;
    let srv = TestServer::start_in(dir, "").await;
    assert_eq!(status(&srv, &t.access).await.0, 200);
}

fn signing_header(t: &str) -> Header {
    let (header, _) = parts(t);
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = header["kid"].as_str().map(str::to_string);
    h
}

fn sign_with(srv: &TestServer, header: &Header, claims: &Value) -> String {
    let key = EncodingKey::from_ed_pem(&srv.signing_key_pem()).unwrap();
    jsonwebtoken::encode(header, claims, &key).unwrap()
}

#[tokio::test]
async fn rfc_8725_profile_crit_future_iat_size_and_lifetime() {
    let srv = TestServer::start().await;
    let t = srv.register("profile@example.com").await;
    let (_, claims) = parts(&t.access);
    let now = chrono::Utc::now().timestamp();

    // A critical header parameter nobody here understands.
    let mut h = signing_header(&t.access);
    h.crit = Some(vec!["exp".into()]);
    let (code, detail) = status(&srv, &sign_with(&srv, &h, &claims)).await;
    assert_eq!(code, 401, "{detail}");
    assert!(detail.contains("critical"), "{detail}");
    // Control: the same header without crit is accepted.
    let h = signing_header(&t.access);
    assert_eq!(status(&srv, &sign_with(&srv, &h, &claims)).await.0, 200);

    // Issued an hour from now (nbf kept in the past so only iat is wrong).
    let mut c = claims.clone();
    c["iat"] = json!(now + 3600);
    c["exp"] = json!(now + 3600 + 600);
    let (code, detail) = status(&srv, &sign_with(&srv, &h, &c)).await;
    assert_eq!(code, 401, "{detail}");
    assert!(detail.contains("future"), "{detail}");

    // A lifetime longer than this issuer's (15 minutes + 10 s leeway).
    let mut c = claims.clone();
    c["iat"] = json!(now);
    c["exp"] = json!(now + 24 * 3600);
    let (code, detail) = status(&srv, &sign_with(&srv, &h, &c)).await;
    assert_eq!(code, 401, "{detail}");
    assert!(detail.contains("lifetime"), "{detail}");
    c["exp"] = json!(now + 900);
    assert_eq!(status(&srv, &sign_with(&srv, &h, &c)).await.0, 200);

    // A validly signed token of about 60 KiB (an extra claim as padding).
    let mut c = claims.clone();
    c["pad"] = json!("x".repeat(44 * 1024));
    let big = sign_with(&srv, &h, &c);
    assert!(
        big.len() > 58 * 1024 && big.len() < 62 * 1024,
        "{}",
        big.len()
    );
    let r = srv.get("/api/x").bearer(&big).send().await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.detail().contains("too long"), "{}", r.detail());
    // Under the default cap (8 KiB), padding is fine.
    c["pad"] = json!("x".repeat(1024));
    assert_eq!(status(&srv, &sign_with(&srv, &h, &c)).await.0, 200);
}

#[tokio::test]
async fn an_audience_list_containing_ours_is_accepted() {
    let srv = TestServer::start().await;
    let t = srv.register("aud-list@example.com").await;
    let (_, claims) = parts(&t.access);
    let h = signing_header(&t.access);
    let mut c = claims.clone();
    c["aud"] = json!(["other-service", "portcullis"]);
    assert_eq!(status(&srv, &sign_with(&srv, &h, &c)).await.0, 200);
    c["aud"] = json!(["other-service", "third"]);
    let (code, detail) = status(&srv, &sign_with(&srv, &h, &c)).await;
    assert_eq!((code, detail.as_str()), (401, "Invalid token audience"));
    c["aud"] = json!([]);
    assert_eq!(status(&srv, &sign_with(&srv, &h, &c)).await.0, 401);
}
