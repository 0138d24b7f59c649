//! `/admin/users…` for callers with role `admin`: list, create, update, disable, enable,
//! change role. Every change to who may do what evicts the user's cached identities.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::extract::{AdminCaller, JsonBody, QueryParams};
use super::session_routes::{insert_user, validate_new_user};
use super::validate::Invalid;
use super::{AccountCtx, AccountError, Message, Result, UserOut, message, validate};
use crate::identity::Role;
use crate::secret::Secret;
use crate::store::UserPatch;

#[derive(Deserialize)]
pub(super) struct PageQuery {
    page: Option<u32>,
    page_size: Option<u32>,
}

#[derive(Serialize)]
pub(super) struct UserPage {
    users: Vec<UserOut>,
    total: i64,
    page: u32,
    page_size: u32,
}

pub(super) async fn list(
    State(ctx): State<Arc<AccountCtx>>,
    _admin: AdminCaller,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Json<UserPage>> {
    let page = q.page.unwrap_or(1);
    let page_size = q.page_size.unwrap_or(50);
    if page == 0 || page_size == 0 || page_size > ctx.accounts.admin_page_size_max {
        let field = if page == 0 { "page" } else { "page_size" };
        return Err(AccountError::Validation(Invalid::query(
            field,
            format!(
                "page must be at least 1 and page_size between 1 and {}",
                ctx.accounts.admin_page_size_max
            ),
        )));
    }
    let offset = i64::from(page - 1) * i64::from(page_size);
    let (users, total) = ctx.store.list_users(offset, i64::from(page_size)).await?;
    Ok(Json(UserPage {
        users: users.into_iter().map(UserOut::from).collect(),
        total,
        page,
        page_size,
    }))
}

#[derive(Deserialize)]
pub(super) struct CreateBody {
    email: String,
    password: Secret,
    full_name: String,
    organization: Option<String>,
    role: Option<Role>,
    disabled: Option<bool>,
}

pub(super) async fn create(
    State(ctx): State<Arc<AccountCtx>>,
    AdminCaller(admin): AdminCaller,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response> {
    let input = validate_new_user(
        &ctx,
        &body.email,
        &body.password,
        &body.full_name,
        body.organization.as_deref(),
    )?;
    let role = body.role.unwrap_or(Role::User);
    let user = insert_user(
        &ctx,
        input,
        &body.password,
        role,
        body.disabled.unwrap_or(false),
    )
    .await?;
    tracing::info!(admin = %admin.identity.user_id, user_id = %user.user_id, "user created by admin");
    // 200, as the origin answers (not 201).
    Ok((StatusCode::OK, Json(UserOut::from(user))).into_response())
}

#[derive(Deserialize)]
pub(super) struct UpdateBody {
    email: Option<String>,
    full_name: Option<String>,
    organization: Option<String>,
    role: Option<Role>,
    disabled: Option<bool>,
}

fn refuse_self_lockout(admin: &AdminCaller, user_id: &str, patch: &UserPatch) -> Result<()> {
    let demotes = patch.role.is_some_and(|r| r != Role::Admin);
    if admin.0.identity.user_id == user_id && (patch.disabled == Some(true) || demotes) {
        return Err(AccountError::BadRequest(
            "Administrators cannot disable or demote themselves",
        ));
    }
    Ok(())
}

/// Applies a patch, then evicts the user's identities if it touched anything they carry.
async fn apply(
    ctx: &AccountCtx,
    admin: &AdminCaller,
    user_id: &str,
    patch: UserPatch,
) -> Result<crate::store::User> {
    refuse_self_lockout(admin, user_id, &patch)?;
    let user = ctx
        .store
        .update_user(user_id, &patch)
        .await?
        .ok_or(AccountError::NotFound("User not found"))?;
    if patch.disabled == Some(true) {
        // Disabling ends every session and refresh token for good: enabling the user
        // again does not bring them back (API keys, which are not sessions, work again).
        ctx.sessions.end_all(user_id, None).await?;
    }
    if patch.role.is_some() || patch.disabled.is_some() || patch.email.is_some() {
        ctx.revocations.user_changed(user_id).await?;
    }
    tracing::info!(
        admin = %admin.0.identity.user_id,
        user_id,
        role = ?patch.role,
        disabled = ?patch.disabled,
        "user updated by admin"
    );
    Ok(user)
}

pub(super) async fn update(
    State(ctx): State<Arc<AccountCtx>>,
    admin: AdminCaller,
    Path(user_id): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Json<UserOut>> {
    let mut patch =
        validate::profile_patch(body.full_name.as_deref(), body.organization.as_deref())
            .map_err(AccountError::Validation)?;
    patch.email = body
        .email
        .as_deref()
        .map(validate::email)
        .transpose()
        .map_err(AccountError::Validation)?;
    patch.role = body.role;
    patch.disabled = body.disabled;
    Ok(Json(apply(&ctx, &admin, &user_id, patch).await?.into()))
}

async fn set_disabled(
    ctx: &AccountCtx,
    admin: &AdminCaller,
    user_id: &str,
    disabled: bool,
) -> Result<()> {
    let patch = UserPatch {
        disabled: Some(disabled),
        ..UserPatch::default()
    };
    apply(ctx, admin, user_id, patch).await.map(drop)
}

pub(super) async fn disable(
    State(ctx): State<Arc<AccountCtx>>,
    admin: AdminCaller,
    Path(user_id): Path<String>,
) -> Result<Json<Message>> {
    set_disabled(&ctx, &admin, &user_id, true).await?;
    Ok(message(format!("User {user_id} disabled successfully")))
}

pub(super) async fn enable(
    State(ctx): State<Arc<AccountCtx>>,
    admin: AdminCaller,
    Path(user_id): Path<String>,
) -> Result<Json<Message>> {
    set_disabled(&ctx, &admin, &user_id, false).await?;
    Ok(message(format!("User {user_id} enabled successfully")))
}

#[derive(Deserialize)]
pub(super) struct RoleQuery {
    role: String,
}

pub(super) async fn set_role(
    State(ctx): State<Arc<AccountCtx>>,
    admin: AdminCaller,
    Path(user_id): Path<String>,
    QueryParams(q): QueryParams<RoleQuery>,
) -> Result<Json<Message>> {
    // The origin answers an unknown role with 400, not 422.
    let role = Role::parse(&q.role).ok_or(AccountError::BadRequest(
        "Invalid role. Must be one of: user, admin, researcher",
    ))?;
    let patch = UserPatch {
        role: Some(role),
        ..UserPatch::default()
    };
    apply(&ctx, &admin, &user_id, patch).await?;
    Ok(message(format!(
        "User {user_id} role changed to {}",
        role.as_str()
    )))
}
