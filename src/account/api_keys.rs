//! `/api-keys`: create (the key is shown once), list (masked), revoke (effective on the next
//! request). Only a session credential may manage keys: a leaked key cannot mint more, list
//! its siblings or revoke them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::extract::{JsonBody, SessionCaller};
use super::validate::Invalid;
use super::{
    AccountCtx, AccountError, Message, Result, client_address, client_meta, message, validate,
};
use crate::auth::api_key;
use crate::auth::sessions::ClientMeta;
use crate::store::ApiKeyRecord;
use crate::throttle::Limiter;

#[derive(Deserialize)]
pub(super) struct CreateBody {
    name: String,
    expires_in_days: Option<i64>,
}

#[derive(Serialize)]
struct CreatedKey {
    api_key: String,
    key_id: String,
    name: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

pub(super) async fn create(
    State(ctx): State<Arc<AccountCtx>>,
    SessionCaller(caller): SessionCaller,
    meta: Option<axum::Extension<ClientMeta>>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response> {
    let _counted = ctx
        .throttle
        .attempt(Limiter::ApiKeyCreate, client_address(&client_meta(meta)))
        .await
        .map_err(AccountError::Throttled)?;
    let name = validate::text("name", &body.name, 100).map_err(AccountError::Validation)?;
    if let Some(days) = body.expires_in_days
        && !(1..=365).contains(&days)
    {
        return Err(AccountError::Validation(Invalid::body(
            "expires_in_days",
            "expires_in_days must be between 1 and 365",
        )));
    }
    let now = Utc::now();
    let minted = api_key::generate();
    let record = ApiKeyRecord {
        key_id: format!("key_{}", crate::secret::random_hex(8)),
        key_hash: minted.hash_hex,
        key_hint: minted.hint,
        user_id: caller.identity.user_id.clone(),
        name,
        created_at: now,
        expires_at: body
            .expires_in_days
            .map(|d| now + chrono::Duration::days(d)),
        last_used: None,
        revoked: false,
    };
    let cap = ctx.accounts.max_api_keys_per_user;
    if !ctx.store.create_api_key_within(&record, cap).await? {
        return Err(AccountError::TooManyKeys(cap));
    }
    tracing::info!(user_id = %record.user_id, key_id = %record.key_id, "API key created");
    let out = CreatedKey {
        api_key: minted.key,
        key_id: record.key_id,
        name: record.name,
        created_at: record.created_at,
        expires_at: record.expires_at,
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[derive(Serialize)]
struct ListedKey {
    key_id: String,
    name: String,
    /// Masked: prefix, four characters, last four.
    api_key: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
pub(super) struct KeyList {
    api_keys: Vec<ListedKey>,
}

pub(super) async fn list(
    State(ctx): State<Arc<AccountCtx>>,
    SessionCaller(caller): SessionCaller,
) -> Result<Json<KeyList>> {
    let keys = ctx.store.list_api_keys(&caller.identity.user_id).await?;
    Ok(Json(KeyList {
        api_keys: keys
            .into_iter()
            .map(|k| ListedKey {
                key_id: k.key_id,
                name: k.name,
                api_key: k.key_hint,
                created_at: k.created_at,
                expires_at: k.expires_at,
                last_used: k.last_used,
            })
            .collect(),
    }))
}

pub(super) async fn revoke(
    State(ctx): State<Arc<AccountCtx>>,
    SessionCaller(caller): SessionCaller,
    Path(key_id): Path<String>,
) -> Result<Json<Message>> {
    if !ctx
        .store
        .revoke_api_key(&caller.identity.user_id, &key_id)
        .await?
    {
        return Err(AccountError::NotFound("API key not found"));
    }
    ctx.revocations.key_revoked(&key_id).await?;
    Ok(message("API key revoked successfully"))
}
