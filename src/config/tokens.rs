//! `[tokens]`: the signing algorithm, lifetimes, keys and the JWT limits.

use std::path::{Path, PathBuf};

use jsonwebtoken::Algorithm;

use super::raw::*;
use super::values::*;
use super::*;
use crate::secret::Secret;

pub(super) fn tokens(raw: RawTokens, store: &StoreConfig) -> Result<TokenConfig> {
    let algorithm = match raw.algorithm.as_deref().unwrap_or("EdDSA") {
        "EdDSA" => Algorithm::EdDSA,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "HS256" => Algorithm::HS256,
        other => {
            return Err(ConfigError::invalid(
                "tokens.algorithm",
                format!("{other:?} is not one of \"EdDSA\", \"RS256\", \"ES256\", \"HS256\""),
            ));
        }
    };
    let nonempty = |key: &str, value: Option<String>, default: &str| -> Result<String> {
        let v = value.unwrap_or_else(|| default.to_string());
        if v.trim().is_empty() {
            return Err(ConfigError::invalid(key, "must not be empty"));
        }
        Ok(v)
    };
    let hmac_secret = raw.hmac_secret.map(Secret::new);
    if algorithm == Algorithm::HS256 {
        match &hmac_secret {
            Some(s) if s.expose().len() >= 32 => {}
            _ => {
                return Err(ConfigError::invalid(
                    "tokens.hmac_secret",
                    "HS256 needs a secret of at least 32 bytes (set it with PORTCULLIS_TOKENS__HMAC_SECRET_FILE)",
                ));
            }
        }
    } else if hmac_secret.is_some() {
        return Err(ConfigError::invalid(
            "tokens.hmac_secret",
            "is only used with algorithm = \"HS256\"",
        ));
    }
    if algorithm == Algorithm::HS256
        && (raw.signing_key_path.is_some() || !raw.verification_key_paths.is_empty())
    {
        return Err(ConfigError::invalid(
            "tokens.signing_key_path",
            "HS256 uses tokens.hmac_secret, not key files",
        ));
    }
    if store.backend == Backend::Postgres
        && algorithm != Algorithm::HS256
        && raw.signing_key_path.is_none()
        && raw.key_dir.is_none()
    {
        return Err(ConfigError::invalid(
            "tokens.signing_key_path",
            "is required with a PostgreSQL store, so that every replica signs with the same key \
             (create one with `portcullis keys generate`)",
        ));
    }
    let key_dir = match raw.key_dir {
        Some(dir) => PathBuf::from(dir),
        None => sqlite_path(&store.database_url)
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let access_ttl = duration("tokens.access_ttl", raw.access_ttl, DEFAULT_ACCESS_TTL)?;
    let refresh_ttl = duration("tokens.refresh_ttl", raw.refresh_ttl, DEFAULT_REFRESH_TTL)?;
    if access_ttl.is_zero() || refresh_ttl < access_ttl {
        return Err(ConfigError::invalid(
            "tokens.refresh_ttl",
            "access_ttl must be positive and refresh_ttl at least as long as access_ttl",
        ));
    }
    Ok(TokenConfig {
        algorithm,
        issuer: nonempty("tokens.issuer", raw.issuer, DEFAULT_ISSUER)?,
        audience: match raw.audience {
            // The audience-less profile: only for a secret shared with verifiers that
            // expect no `aud` (the origin's). Key pairs have no such verifiers to please.
            Some(a) if a.is_empty() => {
                if algorithm != Algorithm::HS256 {
                    return Err(ConfigError::invalid(
                        "tokens.audience",
                        "may be empty only with algorithm = \"HS256\" (tokens for verifiers that expect no aud)",
                    ));
                }
                None
            }
            other => Some(nonempty("tokens.audience", other, DEFAULT_AUDIENCE)?),
        },
        access_ttl,
        refresh_ttl,
        leeway: duration("tokens.leeway", raw.leeway, DEFAULT_LEEWAY)?,
        refresh_reuse_grace: duration(
            "tokens.refresh_reuse_grace",
            raw.refresh_reuse_grace,
            DEFAULT_REFRESH_REUSE_GRACE,
        )?,
        session_max_lifetime: {
            let d = duration(
                "tokens.session_max_lifetime",
                raw.session_max_lifetime,
                DEFAULT_SESSION_MAX_LIFETIME,
            )?;
            if d < access_ttl {
                return Err(ConfigError::invalid(
                    "tokens.session_max_lifetime",
                    "must be at least tokens.access_ttl",
                ));
            }
            d
        },
        max_token_bytes: at_least(
            "tokens.max_token_bytes",
            raw.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES),
            512,
        )?,
        signing_key_path: raw.signing_key_path.map(PathBuf::from),
        verification_key_paths: raw
            .verification_key_paths
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        hmac_secret,
        key_dir,
    })
}
