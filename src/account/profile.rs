//! The caller's own account: `GET/PUT /me` and `POST /change-password`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::extract::{Caller, JsonBody, SessionCaller};
use super::{
    AccountCtx, AccountError, Message, Result, UserOut, client_address, client_meta, message,
    validate,
};
use crate::auth::sessions::ClientMeta;
use crate::secret::Secret;
use crate::throttle::Limiter;

async fn current_user(ctx: &AccountCtx, caller: &Caller) -> Result<crate::store::User> {
    ctx.store
        .user_by_id(&caller.identity.user_id)
        .await?
        .ok_or(AccountError::NotFound("User not found"))
}

pub(super) async fn me(
    State(ctx): State<Arc<AccountCtx>>,
    caller: Caller,
) -> Result<Json<UserOut>> {
    Ok(Json(current_user(&ctx, &caller).await?.into()))
}

#[derive(Deserialize)]
pub(super) struct UpdateMeBody {
    full_name: Option<String>,
    organization: Option<String>,
}

pub(super) async fn update_me(
    State(ctx): State<Arc<AccountCtx>>,
    SessionCaller(caller): SessionCaller,
    JsonBody(body): JsonBody<UpdateMeBody>,
) -> Result<Json<UserOut>> {
    let patch = validate::profile_patch(body.full_name.as_deref(), body.organization.as_deref())
        .map_err(AccountError::Validation)?;
    let user = ctx
        .store
        .update_user(&caller.identity.user_id, &patch)
        .await?
        .ok_or(AccountError::NotFound("User not found"))?;
    Ok(Json(user.into()))
}

#[derive(Deserialize)]
pub(super) struct ChangePasswordBody {
    current_password: Secret,
    new_password: Secret,
    /// Also revoke every API key of the user (default: keys keep working).
    #[serde(default)]
    revoke_api_keys: bool,
}

/// Changes the password and ends every other session of the user (the current one stays).
/// With `revoke_api_keys`, the user's API keys are revoked too.
pub(super) async fn change_password(
    State(ctx): State<Arc<AccountCtx>>,
    SessionCaller(caller): SessionCaller,
    meta: Option<axum::Extension<ClientMeta>>,
    JsonBody(body): JsonBody<ChangePasswordBody>,
) -> Result<Json<Message>> {
    validate::password(
        &ctx.accounts.password,
        body.new_password.expose(),
        &caller.identity.email,
    )
    .map_err(|e| AccountError::Validation(e.at("new_password")))?;
    if body.current_password.expose().chars().count() > 1024 {
        return Err(AccountError::BadRequest("Current password is incorrect"));
    }
    // Before the hash: a stolen session cannot guess the current password quickly, from
    // one address or many. Only a failed change counts.
    let attempt = ctx
        .throttle
        .attempt_as(
            Limiter::ChangePassword,
            client_address(&client_meta(meta)),
            &caller.identity.user_id,
        )
        .await
        .map_err(AccountError::Throttled)?;
    let user = current_user(&ctx, &caller).await?;
    let verified = ctx
        .hasher
        .verify(&body.current_password, Some(&user.password_hash))
        .await?;
    if !verified.ok {
        return Err(AccountError::BadRequest("Current password is incorrect"));
    }
    if body.new_password == body.current_password {
        return Err(AccountError::BadRequest(
            "New password must be different from the current password",
        ));
    }
    ctx.throttle.succeeded(attempt).await;
    let hash = ctx.hasher.hash(&body.new_password).await?;
    ctx.store.set_password_hash(&user.user_id, &hash).await?;
    ctx.sessions
        .end_all(&user.user_id, caller.identity.session_id.as_deref())
        .await?;
    if body.revoke_api_keys {
        let keys = ctx.store.revoke_user_api_keys(&user.user_id).await?;
        ctx.revocations.keys_revoked(keys).await;
    }
    tracing::info!(
        user_id = %user.user_id,
        revoke_api_keys = body.revoke_api_keys,
        "password changed; other sessions ended"
    );
    Ok(message("Password changed successfully"))
}
