//! register, login, refresh, logout: the endpoints that start, renew and end sessions.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;

use super::extract::{Caller, JsonBody, OptionalJsonBody};
use super::validate::Invalid;
use super::{
    AccountCtx, AccountError, Result, client_address, client_meta, message, token_response,
    validate,
};
use crate::auth::AuthError;
use crate::auth::credentials::{REFRESH_COOKIE, check_csrf, cookie};
use crate::auth::sessions::{ClientMeta, IssuedTokens};
use crate::identity::Role;
use crate::secret::Secret;
use crate::store::{NewUser, StoreError};
use crate::throttle::Limiter;

#[derive(Deserialize)]
pub(super) struct RegisterBody {
    email: String,
    password: Secret,
    full_name: String,
    organization: Option<String>,
}

/// Validated fields for a new user; shared with the admin create endpoint.
pub(super) struct NewUserInput {
    pub email: String,
    pub full_name: String,
    pub organization: Option<String>,
}

pub(super) fn validate_new_user(
    ctx: &AccountCtx,
    email: &str,
    password: &Secret,
    full_name: &str,
    organization: Option<&str>,
) -> Result<NewUserInput> {
    let email = validate::email(email).map_err(AccountError::Validation)?;
    validate::password(&ctx.accounts.password, password.expose(), &email)
        .map_err(AccountError::Validation)?;
    Ok(NewUserInput {
        email,
        full_name: validate::text("full_name", full_name, 100).map_err(AccountError::Validation)?,
        organization: validate::optional_text("organization", organization, 100)
            .map_err(AccountError::Validation)?,
    })
}

/// Hashes the password and inserts the user; the database decides duplicate emails, so
/// concurrent registrations of one address create exactly one user.
pub(super) async fn insert_user(
    ctx: &AccountCtx,
    input: NewUserInput,
    password: &Secret,
    role: Role,
    disabled: bool,
) -> Result<crate::store::User> {
    if ctx.store.user_by_email(&input.email).await?.is_some() {
        return Err(AccountError::Store(StoreError::EmailTaken));
    }
    let password_hash = ctx.hasher.hash(password).await?;
    let new = NewUser {
        user_id: format!("user_{}", crate::secret::random_hex(12)),
        email: input.email,
        password_hash,
        full_name: input.full_name,
        organization: input.organization,
        role,
        disabled,
        created_at: chrono::Utc::now(),
    };
    Ok(ctx.store.create_user(&new).await?)
}

/// Self-registration (when `accounts.allow_registration`): a new `user`.
pub(super) async fn register_user(
    ctx: &AccountCtx,
    meta: &ClientMeta,
    email: &str,
    password: &Secret,
    full_name: &str,
    organization: Option<&str>,
) -> Result<crate::store::User> {
    if !ctx.accounts.allow_registration {
        return Err(AccountError::Forbidden("Registration is disabled"));
    }
    // Every attempt counts, refused or not: registration is the cheapest way to make the
    // server hash.
    let _counted = ctx
        .throttle
        .attempt(Limiter::Register, client_address(meta))
        .await
        .map_err(AccountError::Throttled)?;
    let input = validate_new_user(ctx, email, password, full_name, organization)?;
    let user = insert_user(ctx, input, password, Role::User, false).await?;
    tracing::info!(user_id = %user.user_id, "user registered");
    Ok(user)
}

pub(super) async fn register(
    State(ctx): State<Arc<AccountCtx>>,
    meta: Option<Extension<ClientMeta>>,
    JsonBody(body): JsonBody<RegisterBody>,
) -> Result<Response> {
    let meta = client_meta(meta);
    let user = register_user(
        &ctx,
        &meta,
        &body.email,
        &body.password,
        &body.full_name,
        body.organization.as_deref(),
    )
    .await?;
    let tokens = ctx.sessions.start(&user, &meta).await?;
    Ok(token_response(&ctx, StatusCode::CREATED, tokens))
}

#[derive(Deserialize)]
pub(super) struct LoginBody {
    email: String,
    password: Secret,
}

/// Checks an email and password and records the login: the user, or
/// `InvalidCredentials` whether the email is unknown or the password wrong (both cost one
/// hash), or `Disabled` — said only to someone who knew the password.
/// The longest password any account here can have: the policy's maximum, or 128 for
/// accounts imported from the origin under its rules.
fn longest_password(ctx: &AccountCtx) -> usize {
    ctx.accounts.password.max_length.max(128)
}

pub(super) async fn check_password(
    ctx: &AccountCtx,
    meta: &ClientMeta,
    email: &str,
    password: &Secret,
) -> Result<crate::store::User> {
    // Out-of-policy lengths can never match a stored password; refusing them before any
    // hashing keeps a megabyte "password" from costing a hash.
    if password.expose().chars().count() > longest_password(ctx) {
        return Err(AccountError::InvalidCredentials);
    }
    let email = validate::email(email).unwrap_or_else(|_| validate::normalize_email(email));
    // Before the hash: a throttled attempt costs a Redis call, not a hash. A failure keeps
    // what it took; a right password gives it back.
    let attempt = ctx
        .throttle
        .login(&email, client_address(meta))
        .await
        .map_err(AccountError::Throttled)?;
    let user = ctx.store.user_by_email(&email).await?;
    let verified = ctx
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await?;
    let Some(user) = user.filter(|_| verified.ok) else {
        return Err(AccountError::InvalidCredentials);
    };
    ctx.throttle.succeeded(attempt).await;
    if user.disabled {
        return Err(AuthError::Disabled.into());
    }
    if verified.needs_rehash {
        let fresh = ctx.hasher.hash(password).await?;
        ctx.store.set_password_hash(&user.user_id, &fresh).await?;
        tracing::info!(user_id = %user.user_id, "password hash upgraded to argon2id");
    }
    ctx.store
        .record_login(&user.user_id, chrono::Utc::now())
        .await?;
    Ok(user)
}

pub(super) async fn login(
    State(ctx): State<Arc<AccountCtx>>,
    meta: Option<Extension<ClientMeta>>,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response> {
    // Longer than any password this deployment accepts: refused as registration refuses
    // it (422), before any hashing.
    let longest = longest_password(&ctx);
    if body.password.expose().chars().count() > longest {
        return Err(AccountError::Validation(validate::Invalid::body(
            "password",
            format!("Password must be at most {longest} characters"),
        )));
    }
    let meta = client_meta(meta);
    let user = check_password(&ctx, &meta, &body.email, &body.password).await?;
    let tokens = ctx.sessions.start(&user, &meta).await?;
    Ok(token_response(&ctx, StatusCode::OK, tokens))
}

#[derive(Deserialize, Default)]
pub(super) struct RefreshBody {
    refresh_token: Option<Secret>,
}

pub(super) async fn refresh(
    State(ctx): State<Arc<AccountCtx>>,
    method: Method,
    headers: HeaderMap,
    meta: Option<Extension<ClientMeta>>,
    OptionalJsonBody(body): OptionalJsonBody<RefreshBody>,
) -> Result<Response> {
    let from_cookie = cookie(&headers, REFRESH_COOKIE)?;
    let token = match (&body.refresh_token, from_cookie) {
        (Some(t), _) => t.expose().to_string(),
        (None, Some(c)) => {
            // A cookie is sent by the browser on its own: the CSRF rule applies.
            check_csrf(&method, &headers, &ctx.csrf_origins)?;
            c.to_string()
        }
        (None, None) => {
            return Err(AccountError::Validation(
                Invalid::body("refresh_token", "Field required").kind("missing"),
            ));
        }
    };
    let meta = client_meta(meta);
    let tokens = refresh_limited(&ctx, &meta, &token).await?;
    Ok(token_response(&ctx, StatusCode::OK, tokens))
}

/// Renews a session, with failed refreshes limited per address.
pub(super) async fn refresh_limited(
    ctx: &AccountCtx,
    meta: &ClientMeta,
    token: &str,
) -> Result<IssuedTokens> {
    let attempt = ctx
        .throttle
        .attempt(Limiter::Refresh, client_address(meta))
        .await
        .map_err(AccountError::Throttled)?;
    let tokens = ctx.sessions.refresh(token, meta).await?;
    ctx.throttle.succeeded(attempt).await;
    Ok(tokens)
}

#[derive(Deserialize, Default)]
pub(super) struct LogoutBody {
    refresh_token: Option<Secret>,
    revoke_all: Option<bool>,
}

pub(super) async fn logout(
    State(ctx): State<Arc<AccountCtx>>,
    caller: Caller,
    headers: HeaderMap,
    OptionalJsonBody(body): OptionalJsonBody<LogoutBody>,
) -> Result<Response> {
    let user_id = &caller.identity.user_id;
    if body.revoke_all == Some(true) {
        if caller.identity.session_id.is_none() {
            return Err(super::extract::session_required());
        }
        ctx.sessions.end_all(user_id, None).await?;
    } else {
        if let Some(sid) = &caller.identity.session_id {
            ctx.sessions.end(sid).await?;
        }
        let cookie_token = cookie(&headers, REFRESH_COOKIE).ok().flatten();
        let named = body.refresh_token.as_ref().map(Secret::expose);
        for token in named.into_iter().chain(cookie_token) {
            if let Some((sid, owner)) = ctx.sessions.session_of(token).await?
                && &owner == user_id
            {
                ctx.sessions.end(&sid).await?;
            }
        }
    }
    let mut resp = Json(message("Successfully logged out").0).into_response();
    super::clear_cookies(&ctx, resp.headers_mut());
    Ok(resp)
}
