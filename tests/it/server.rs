//! The server itself: HTTP/2, graceful drain, token algorithms other than the default, and
//! cookie attributes.

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::harness::{PASSWORD, TestServer};

#[tokio::test]
async fn http2_clients_are_served_and_forwarded_as_http1() {
    let srv = TestServer::start().await;
    let t = srv.register("h2@example.com").await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::builder()
        .uri(format!("http://{}/api/over-h2", srv.addr))
        .header("authorization", format!("Bearer {}", t.access))
        .header("x-user-id", "spoofed")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["headers"]["x-user-email"], "h2@example.com");
    assert!(
        v["headers"]["host"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(srv.echo.last().unwrap().header_all("x-user-id").len(), 1);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let srv = TestServer::start().await;
    let addr = srv.addr;
    let inflight = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = "GET /public/slow HTTP/1.1\r\nHost: x\r\nx-echo-delay-ms: 400\r\nConnection: close\r\n\r\n";
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let stopped = tokio::spawn(srv.stop());
    let answer = inflight.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stopped.await.unwrap();
    // And the listener is closed afterwards.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

async fn algorithm_round_trip(alg: &str, extra: &str) -> TestServer {
    let srv = TestServer::start_with(&format!("[tokens]\nalgorithm = \"{alg}\"\n{extra}")).await;
    let t = srv
        .register(&format!("{}@example.com", alg.to_lowercase()))
        .await;
    let header = jsonwebtoken::decode_header(&t.access).unwrap();
    assert_eq!(format!("{:?}", header.alg), alg);
    assert_eq!(srv.status_with("/api/x", &t.access).await, 200, "{alg}");
    srv
}

#[tokio::test]
async fn rs256_tokens_work_and_hmac_with_the_public_key_is_refused() {
    let srv = algorithm_round_trip("RS256", "").await;
    let t = srv.login("rs256@example.com", PASSWORD).await;
    let access = t.json()["access_token"].as_str().unwrap().to_string();
    let jwks = srv.get("/.well-known/jwks.json").send().await.json();
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    // The classic confusion: HS256 keyed with the RSA public key (as PEM and as n bytes).
    assert!(srv.dir.path().join("jwt-signing-rs256.pem").exists());
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["n"].as_str().unwrap())
        .unwrap();
    let claims: serde_json::Value = {
        let payload = access.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    let kid = jsonwebtoken::decode_header(&access).unwrap().kid;
    for secret in [n, jwks["keys"][0].to_string().into_bytes()] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = kid.clone();
        let forged = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&secret)).unwrap();
        let r = srv.get("/api/x").bearer(&forged).send().await;
        assert_eq!(r.status, 401);
        assert_eq!(r.detail(), "Invalid token algorithm");
    }
}

#[tokio::test]
async fn es256_and_hs256_are_selectable() {
    let es = algorithm_round_trip("ES256", "").await;
    let jwks = es.get("/.well-known/jwks.json").send().await.json();
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
    let secret = "s".repeat(40);
    let hs = algorithm_round_trip("HS256", &format!("hmac_secret = \"{secret}\"\n")).await;
    let jwks = hs.get("/.well-known/jwks.json").send().await.json();
    assert_eq!(
        jwks,
        json!({"keys": []}),
        "a shared secret is never published"
    );
}

#[tokio::test]
async fn cookies_are_secure_by_default() {
    let srv = TestServer::start_with("[cookies]\nsecure = true\n").await;
    let r = srv
        .post(&srv.auth_path("/register"))
        .json(json!({"email": "sec@example.com", "password": PASSWORD, "full_name": "S"}))
        .send()
        .await;
    for name in ["access_token", "refresh_token"] {
        let c = r.set_cookie(name).unwrap();
        assert!(
            c.contains("; Secure") && c.contains("HttpOnly") && c.contains("SameSite=Lax"),
            "{c}"
        );
    }
    // A browser app on another site needs `SameSite=None` (always with `Secure`).
    let cross = TestServer::start_with("[cookies]\nsecure = true\nsame_site = \"none\"\n").await;
    let r = cross
        .post(&cross.auth_path("/register"))
        .json(json!({"email": "sec@example.com", "password": PASSWORD, "full_name": "S"}))
        .send()
        .await;
    let c = r.set_cookie("access_token").unwrap();
    assert!(c.contains("SameSite=None") && c.contains("; Secure"), "{c}");
}

#[tokio::test]
async fn cookie_authenticated_account_calls_are_csrf_checked() {
    let srv = TestServer::start().await;
    let t = srv.register("csrf-acct@example.com").await;
    let cookie = format!("access_token={}", t.access);
    let r = srv
        .post(&srv.auth_path("/logout"))
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        srv.status_with("/api/x", &t.access).await,
        200,
        "not logged out"
    );
    let r = srv
        .get(&srv.auth_path("/me"))
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(r.status, 200, "safe methods need no origin evidence");
    let r = srv
        .post(&srv.auth_path("/logout"))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await;
    assert_eq!(r.status, 200);
}
