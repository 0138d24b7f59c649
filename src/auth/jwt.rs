//! Access tokens: issuing and verifying JWTs with the one configured algorithm. Verification
//! pins the algorithm, requires a known `kid`, and checks `exp`, `nbf`, `iss` and `aud` (or,
//! in HS256's audience-less profile, that there is no `aud`).
//! It is the expensive step the identity cache exists to skip.

use std::collections::HashSet;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::signing_keys::KeyMaterial;
use crate::config::TokenConfig;
use crate::identity::{AuthMethod, Identity, Role};

/// A token's `aud`: one audience, or several (RFC 7519 §4.1.3). Portcullis issues one;
/// it accepts a list that contains its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims of a Portcullis access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AccessClaims {
    pub iss: String,
    /// Absent only in the HS256 audience-less profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    pub sub: String,
    pub email: String,
    pub role: Role,
    pub sid: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
}

/// `typ` of an identity assertion. Explicit typing (RFC 8725 §3.11) keeps an assertion
/// from ever being accepted as an access token, though the same key signs both.
pub(crate) const ASSERTION_TYP: &str = "portcullis-assertion+jwt";

/// How long an identity assertion is valid: long enough for the upstream to check it on
/// arrival, too short to be worth replaying.
pub(crate) const ASSERTION_TTL_SECS: i64 = 30;

/// What `X-Portcullis-Assertion` states: who (absent for an anonymous request), how they
/// proved it, and which request (`htm`, `htu`: method and target as the upstream receives
/// them, after the names of RFC 9449's DPoP proofs).
#[derive(Debug, Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    /// The route's name.
    aud: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
    htm: &'a str,
    htu: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

/// An access token could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("token signing failed: {0}")]
pub struct SignError(#[from] jsonwebtoken::errors::Error);

pub(crate) struct JwtKeys {
    material: KeyMaterial,
    validation: Validation,
    issuer: String,
    audience: Option<String>,
    access_ttl_secs: i64,
    leeway_secs: i64,
    max_token_bytes: usize,
}

impl JwtKeys {
    pub(crate) fn new(material: KeyMaterial, cfg: &TokenConfig) -> JwtKeys {
        let mut validation = Validation::new(material.algorithm);
        validation.algorithms = vec![material.algorithm];
        validation.leeway = cfg.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&cfg.issuer]);
        let mut required = vec!["exp", "nbf", "iss", "sub"];
        match &cfg.audience {
            Some(audience) => {
                validation.validate_aud = true;
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Checked in `verify`: a token with any `aud` is refused.
            None => validation.validate_aud = false,
        }
        validation.required_spec_claims = required
            .into_iter()
            .map(String::from)
            .collect::<HashSet<_>>();
        JwtKeys {
            material,
            validation,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            access_ttl_secs: i64::try_from(cfg.access_ttl.as_secs()).unwrap_or(i64::MAX),
            leeway_secs: i64::try_from(cfg.leeway.as_secs()).unwrap_or(0),
            max_token_bytes: cfg.max_token_bytes,
        }
    }

    pub(crate) fn leeway_secs(&self) -> i64 {
        self.leeway_secs
    }

    pub(crate) fn access_ttl_secs(&self) -> i64 {
        self.access_ttl_secs
    }

    pub(crate) fn jwks(&self) -> serde_json::Value {
        self.material.jwks()
    }

    /// Signs an access token for a session; returns the token and its `exp`.
    pub(crate) fn issue(
        &self,
        user_id: &str,
        email: &str,
        role: Role,
        session_id: &str,
        now: i64,
    ) -> Result<(String, i64), SignError> {
        let exp = now.saturating_add(self.access_ttl_secs);
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(Audience::One),
            sub: user_id.to_string(),
            email: email.to_string(),
            role,
            sid: session_id.to_string(),
            iat: now,
            nbf: now,
            exp,
            jti: crate::secret::random_hex(16),
        };
        let mut header = Header::new(self.material.algorithm);
        header.kid = Some(self.material.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.material.encoding)?;
        Ok((token, exp))
    }

    /// Signs an identity assertion for one forwarded request.
    pub(crate) fn assertion(
        &self,
        route: &str,
        method: &str,
        target: &str,
        identity: Option<(&Identity, AuthMethod)>,
    ) -> Result<String, SignError> {
        let now = chrono::Utc::now().timestamp();
        let claims = AssertionClaims {
            iss: &self.issuer,
            aud: route,
            sub: identity.map(|(i, _)| i.user_id.as_str()),
            email: identity.map(|(i, _)| i.email.as_str()),
            role: identity.map(|(i, _)| i.role.as_str()),
            auth_method: identity.map(|(_, m)| m.as_str()),
            key_id: identity.and_then(|(i, _)| i.key_id.as_deref()),
            htm: method,
            htu: target,
            iat: now,
            exp: now.saturating_add(ASSERTION_TTL_SECS),
            jti: crate::secret::random_hex(16),
        };
        let mut header = Header::new(self.material.algorithm);
        header.kid = Some(self.material.kid.clone());
        header.typ = Some(ASSERTION_TYP.to_owned());
        Ok(jsonwebtoken::encode(
            &header,
            &claims,
            &self.material.encoding,
        )?)
    }

    fn key_for(&self, kid: &str) -> Option<&DecodingKey> {
        self.material
            .verifying
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| &k.key)
    }

    /// Verifies signature and claims (RFC 8725's profile: one pinned algorithm, a known
    /// `kid`, no `crit` extensions, `iat` not in the future, and for tokens signed with this
    /// instance's own key a lifetime no longer than it issues). The error is a message safe
    /// to show the client.
    pub(crate) fn verify(&self, token: &str) -> Result<AccessClaims, &'static str> {
        if token.len() > self.max_token_bytes {
            return Err("Token is too long");
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| "Invalid token")?;
        if header.alg != self.material.algorithm {
            return Err("Invalid token algorithm");
        }
        if header.typ.as_deref() == Some(ASSERTION_TYP) {
            // An assertion is a statement to an upstream, never a credential.
            return Err("Invalid token");
        }
        if header.crit.is_some() {
            // No extension is understood, so any critical one must be refused (RFC 7515
            // §4.1.11).
            return Err("Token has unsupported critical header parameters");
        }
        let kid = header.kid.as_deref().ok_or("Token has no key id")?;
        let key = self.key_for(kid).ok_or("Token signed by an unknown key")?;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => "Token has expired",
                ErrorKind::ImmatureSignature => "Token is not yet valid",
                ErrorKind::InvalidIssuer => "Invalid token issuer",
                ErrorKind::InvalidAudience => "Invalid token audience",
                ErrorKind::InvalidAlgorithm => "Invalid token algorithm",
                _ => "Invalid token",
            })?;
        if self.audience.is_none() && claims.aud.is_some() {
            // Minted for some audience, so not for this audience-less deployment.
            return Err("Invalid token audience");
        }
        let now = chrono::Utc::now().timestamp();
        if claims.iat > now.saturating_add(self.leeway_secs) {
            return Err("Token was issued in the future");
        }
        if kid == self.material.kid
            && claims.exp.saturating_sub(claims.iat)
                > self.access_ttl_secs.saturating_add(self.leeway_secs)
        {
            return Err("Token lifetime is longer than this issuer allows");
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn keys_in(dir: &std::path::Path, extra: &str) -> JwtKeys {
        let text = format!("[tokens]\nkey_dir = \"{}\"\n{extra}", dir.display());
        let cfg = Config::from_toml(&text, Vec::new()).unwrap().tokens;
        let material = super::super::signing_keys::load(&cfg).unwrap();
        JwtKeys::new(material, &cfg)
    }

    fn keys(extra: &str) -> (JwtKeys, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (keys_in(dir.path(), extra), dir)
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn issued_token_verifies_with_all_claims() {
        let (k, _d) = keys("");
        let (token, exp) = k
            .issue("user_1", "a@b.co", Role::Admin, "ses_1", now())
            .unwrap();
        let c = k.verify(&token).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.sid.as_str(), c.role),
            ("user_1", "ses_1", Role::Admin)
        );
        assert_eq!(c.exp, exp);
        assert_eq!(c.exp - c.iat, 900);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
        assert!(header.kid.is_some());
    }

    #[test]
    fn expired_and_future_tokens_are_refused() {
        let (k, _d) = keys("leeway = \"5s\"\n");
        let (old, _) = k
            .issue("u", "a@b.co", Role::User, "s", now() - 3600)
            .unwrap();
        assert_eq!(k.verify(&old).unwrap_err(), "Token has expired");
        let (future, _) = k
            .issue("u", "a@b.co", Role::User, "s", now() + 3600)
            .unwrap();
        assert_eq!(k.verify(&future).unwrap_err(), "Token is not yet valid");
    }

    #[test]
    fn other_keys_issuers_and_audiences_are_refused() {
        let (a, _d1) = keys("");
        let (b, _d2) = keys("");
        let (token, _) = b.issue("u", "a@b.co", Role::User, "s", now()).unwrap();
        assert_eq!(
            a.verify(&token).unwrap_err(),
            "Token signed by an unknown key"
        );
        let dir = tempfile::tempdir().unwrap();
        let iss1 = keys_in(dir.path(), "issuer = \"one\"\n");
        let iss2 = keys_in(dir.path(), "issuer = \"two\"\n");
        let (token, _) = iss2.issue("u", "a@b.co", Role::User, "s", now()).unwrap();
        assert_eq!(iss1.verify(&token).unwrap_err(), "Invalid token issuer");
        let aud1 = keys_in(dir.path(), "audience = \"mine\"\n");
        let aud2 = keys_in(dir.path(), "audience = \"other\"\n");
        let (token, _) = aud2.issue("u", "a@b.co", Role::User, "s", now()).unwrap();
        assert_eq!(aud1.verify(&token).unwrap_err(), "Invalid token audience");
    }

    #[test]
    fn the_audience_less_hs256_profile_pleases_verifiers_that_expect_no_aud() {
        let secret = "s".repeat(40);
        let hs = |audience: &str| {
            keys(&format!(
                "algorithm = \"HS256\"\nhmac_secret = \"{secret}\"\n{audience}"
            ))
        };
        // A verifier like the origin's: the shared secret, `exp`, and no audience configured —
        // which, as in PyJWT and python-jose, refuses any token that carries an `aud`.
        let origin_verifies = |token: &str| {
            let mut v = Validation::new(jsonwebtoken::Algorithm::HS256);
            v.required_spec_claims = ["exp".to_string()].into_iter().collect();
            let key = DecodingKey::from_secret(secret.as_bytes());
            jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).map(|d| d.claims)
        };
        let (with_aud, _d1) = hs("");
        let (token, _) = with_aud
            .issue("u1", "a@b.co", Role::User, "s", now())
            .unwrap();
        assert_eq!(
            origin_verifies(&token).unwrap_err().kind(),
            &ErrorKind::InvalidAudience
        );
        let (without, _d2) = hs("audience = \"\"\n");
        let (token, _) = without
            .issue("u1", "a@b.co", Role::User, "s", now())
            .unwrap();
        let claims = origin_verifies(&token).unwrap();
        assert_eq!(
            (claims["sub"].as_str(), claims["email"].as_str()),
            (Some("u1"), Some("a@b.co"))
        );
        assert!(claims.get("aud").is_none());
        assert_eq!(without.verify(&token).unwrap().sub, "u1");
        // What it gives up: `aud` no longer tells deployments sharing the secret apart. It
        // still refuses a token minted for an audience.
        let (minted_for_aud, _) = with_aud
            .issue("u1", "a@b.co", Role::User, "s", now())
            .unwrap();
        assert_eq!(
            without.verify(&minted_for_aud).unwrap_err(),
            "Invalid token audience"
        );
        // Only HS256 may drop the audience.
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[tokens]\nkey_dir = \"{}\"\naudience = \"\"\n",
            dir.path().display()
        );
        let err = Config::from_toml(&text, Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("tokens.audience: "), "{err}");
    }
}
