//! `X-Portcullis-Assertion`: on routes that ask for it, every forwarded request carries a
//! short-lived JWT an upstream can verify with the JWKS — who, how, and exactly which
//! request — that clients cannot forge or smuggle in, and that never works as a credential.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;

use crate::harness::TestServer;

const ASSERTING: &str = r#"
[[routes]]
name = "orders"
prefix = "/orders"
strip_prefix = true
identity_assertion = true
upstream = "http://{echo}/v2"

[[routes]]
name = "catalog"
prefix = "/catalog"
auth = "optional"
identity_assertion = true
upstream = "http://{echo}"
"#;

/// Verifies an assertion the way an upstream would: the JWKS, the pinned algorithm, the
/// issuer, the route name as audience, and the explicit type.
async fn verify(srv: &TestServer, token: &str, route: &str) -> Value {
    let jwks: JwkSet =
        serde_json::from_value(srv.get("/.well-known/jwks.json").send().await.json()).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("portcullis-assertion+jwt"));
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid in the JWKS");
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[route]);
    validation.set_issuer(&[srv.config.tokens.issuer.as_str()]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn upstreams_can_verify_who_sent_what() {
    let srv = TestServer::start_with(ASSERTING).await;
    let user = srv.register("asserted@example.com").await;
    let r = srv
        .get("/orders/42?expand=lines")
        .bearer(&user.access)
        .header("x-portcullis-assertion", "forged")
        .send()
        .await;
    assert_eq!(r.status, 200);
    let seen = srv.echo.last().unwrap();
    let all = seen.header_all("x-portcullis-assertion");
    assert_eq!(all.len(), 1, "the client's copy is gone");
    let claims = verify(&srv, all[0], "orders").await;
    assert_eq!(claims["sub"], r.echoed_header("x-user-id").unwrap());
    assert_eq!(claims["email"], "asserted@example.com");
    assert_eq!(claims["role"], "user");
    assert_eq!(claims["auth_method"], "jwt");
    // Method and target exactly as the upstream received them.
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["htu"], seen.target.as_str());
    assert_eq!(seen.target, "/v2/42?expand=lines");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=60).contains(&lifetime), "{lifetime}");
    let first_jti = claims["jti"].as_str().unwrap().to_string();

    // One per request.
    srv.get("/orders/42").bearer(&user.access).send().await;
    let again = srv.echo.last().unwrap();
    let claims = verify(
        &srv,
        again.header("x-portcullis-assertion").unwrap(),
        "orders",
    )
    .await;
    assert_ne!(claims["jti"], first_jti.as_str());

    // An assertion is not a credential, in any channel.
    let token = all[0].to_string();
    assert_eq!(srv.status_with("/api/x", &token).await, 401);
    let r = srv
        .get("/api/x")
        .header("cookie", &format!("access_token={token}"))
        .send()
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn anonymous_requests_are_asserted_as_anonymous_and_other_routes_get_none() {
    let srv = TestServer::start_with(ASSERTING).await;
    srv.get("/catalog/items")
        .header("x-portcullis-assertion", "forged")
        .send()
        .await;
    let seen = srv.echo.last().unwrap();
    let claims = verify(
        &srv,
        seen.header("x-portcullis-assertion").unwrap(),
        "catalog",
    )
    .await;
    assert!(
        claims.get("sub").is_none() && claims.get("email").is_none(),
        "{claims}"
    );
    assert_eq!(claims["htu"], "/catalog/items");
    // A route without the setting: nothing, and never the client's.
    srv.get("/public/x")
        .header("x-portcullis-assertion", "forged")
        .send()
        .await;
    assert!(
        srv.echo
            .last()
            .unwrap()
            .header("x-portcullis-assertion")
            .is_none()
    );
}
