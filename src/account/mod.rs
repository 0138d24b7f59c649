//! The account API under the mount (default `/api/v1/auth`), wire-compatible with the origin
//! gateway: register, login, refresh, logout, me, change-password, API keys, admin. JSON in
//! and out; errors are `{"detail": ...}`. Never forwards anything upstream.

mod api_keys;
mod extract;
mod openapi;
mod pages;
mod profile;
mod session_routes;
mod sign_in;
mod user_admin;
pub(crate) mod validate;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use chrono::{DateTime, Utc};
use http::{HeaderValue, Method, StatusCode};
use serde::Serialize;

use crate::auth::AuthError;
use crate::auth::password::{HashError, PasswordHasher};
use crate::auth::resolver::Resolver;
use crate::auth::sessions::{ClientMeta, IssuedTokens, SessionError, Sessions};
use crate::cache::Revocations;
use crate::config::{AccountsConfig, CookieConfig};
use crate::identity::Role;
use crate::store::{DynStore, StoreError, User};

/// What the account handlers need; built once in `app.rs`.
pub(crate) struct AccountCtx {
    pub store: DynStore,
    pub hasher: Arc<PasswordHasher>,
    pub sessions: Arc<Sessions>,
    pub resolver: Arc<Resolver>,
    pub revocations: Revocations,
    pub accounts: AccountsConfig,
    pub cookies: CookieConfig,
    pub csrf_origins: crate::config::Origins,
    pub sign_in: crate::config::SignInConfig,
    pub refresh_ttl_secs: i64,
    pub throttle: Arc<crate::throttle::Throttle>,
}

/// Everything that can go wrong in an account request. `http::respond` turns each variant
/// into a response in one exhaustive match.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AccountError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A value refused by a rule (422, FastAPI's list shape).
    #[error("{0}")]
    Validation(validate::Invalid),
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("Incorrect email or password")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    /// The body is not declared JSON (or, for the sign-in forms, a form) (415).
    #[error("{0}")]
    WrongContentType(String),
    /// The body is not well-formed JSON (400).
    #[error("{0}")]
    MalformedJson(String),
    /// Well-formed JSON, or a query string, of the wrong shape (422, FastAPI's list shape).
    #[error("{0}")]
    WrongShape(validate::Invalid),
    /// Larger than `accounts.max_body_bytes` (413).
    #[error("{0}")]
    BodyTooLarge(String),
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The user holds `accounts.max_api_keys_per_user` live keys already (409).
    #[error("At most {0} API keys per user")]
    TooManyKeys(u32),
    /// Refused by a throttle (429).
    #[error("throttled by {}", .0.limiter.label())]
    Throttled(crate::throttle::Refused),
}

pub(crate) type Result<T> = std::result::Result<T, AccountError>;

/// A user as the API shows it (never the password hash).
#[derive(Debug, Serialize)]
pub(crate) struct UserOut {
    pub user_id: String,
    pub email: String,
    pub full_name: String,
    pub organization: Option<String>,
    pub role: Role,
    pub disabled: bool,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
}

impl From<User> for UserOut {
    fn from(u: User) -> UserOut {
        UserOut {
            user_id: u.user_id,
            email: u.email,
            full_name: u.full_name,
            organization: u.organization,
            role: u.role,
            disabled: u.disabled,
            email_verified: u.email_verified,
            created_at: u.created_at,
            last_login: u.last_login,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Message {
    pub message: std::borrow::Cow<'static, str>,
}

pub(crate) fn message(text: impl Into<std::borrow::Cow<'static, str>>) -> axum::Json<Message> {
    axum::Json(Message {
        message: text.into(),
    })
}

#[derive(Debug, Serialize)]
struct TokenOut {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: i64,
}

fn cookie(ctx: &AccountCtx, name: &str, value: &str, max_age: i64, path: &str) -> HeaderValue {
    let same_site = ctx.cookies.same_site;
    let mut text =
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}");
    if ctx.cookies.secure {
        text.push_str("; Secure");
    }
    if let Some(domain) = &ctx.cookies.domain {
        text.push_str("; Domain=");
        text.push_str(domain);
    }
    // Tokens are base64url/base62 and the config values are validated, so this cannot fail;
    // an empty value would only drop the cookie, never break the response.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The token response, with the HttpOnly cookies the origin's UI uses. The refresh cookie
/// is scoped to the mount so it only travels to the account API.
fn token_response(ctx: &AccountCtx, status: StatusCode, tokens: IssuedTokens) -> Response {
    let mut headers = http::HeaderMap::new();
    set_session_cookies(ctx, &tokens, &mut headers);
    let body = TokenOut {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        token_type: "bearer",
        expires_in: tokens.expires_in,
    };
    (status, headers, axum::Json(body)).into_response()
}

/// The session's HttpOnly cookies (the refresh cookie scoped to the mount, so it only
/// travels to the account API). `never_stored` keeps caches from storing the answer.
fn set_session_cookies(ctx: &AccountCtx, tokens: &IssuedTokens, h: &mut http::HeaderMap) {
    use crate::auth::credentials::{ACCESS_COOKIE, REFRESH_COOKIE};
    let access = cookie(
        ctx,
        ACCESS_COOKIE,
        &tokens.access_token,
        tokens.expires_in,
        "/",
    );
    let refresh = cookie(
        ctx,
        REFRESH_COOKIE,
        &tokens.refresh_token,
        ctx.refresh_ttl_secs,
        &ctx.accounts.mount,
    );
    h.append(http::header::SET_COOKIE, access);
    h.append(http::header::SET_COOKIE, refresh);
}

fn clear_cookies(ctx: &AccountCtx, h: &mut http::HeaderMap) {
    use crate::auth::credentials::{ACCESS_COOKIE, REFRESH_COOKIE};
    h.append(
        http::header::SET_COOKIE,
        cookie(ctx, ACCESS_COOKIE, "", 0, "/"),
    );
    h.append(
        http::header::SET_COOKIE,
        cookie(ctx, REFRESH_COOKIE, "", 0, &ctx.accounts.mount),
    );
}

fn client_meta(meta: Option<axum::Extension<ClientMeta>>) -> ClientMeta {
    meta.map(|axum::Extension(m)| m).unwrap_or_default()
}

/// The client's address for the throttle (unspecified only outside a request).
fn client_address(meta: &ClientMeta) -> std::net::IpAddr {
    meta.address
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

async fn not_found() -> AccountError {
    AccountError::NotFound("Not Found")
}

async fn method_not_allowed() -> AccountError {
    AccountError::MethodNotAllowed
}

/// The account API's router; paths are relative to the mount.
/// Every endpoint under the mount: path, method and handler. The router is built from
/// this list, and `openapi::OPERATIONS` must describe each entry (a test checks both ways).
fn endpoints() -> Vec<(&'static str, Method, MethodRouter<Arc<AccountCtx>>)> {
    vec![
        ("/register", Method::POST, post(session_routes::register)),
        ("/login", Method::POST, post(session_routes::login)),
        ("/refresh", Method::POST, post(session_routes::refresh)),
        ("/logout", Method::POST, post(session_routes::logout)),
        ("/me", Method::GET, get(profile::me)),
        ("/me", Method::PUT, put(profile::update_me)),
        (
            "/change-password",
            Method::POST,
            post(profile::change_password),
        ),
        ("/api-keys", Method::POST, post(api_keys::create)),
        ("/api-keys", Method::GET, get(api_keys::list)),
        (
            "/api-keys/{key_id}",
            Method::DELETE,
            delete(api_keys::revoke),
        ),
        ("/admin/users", Method::GET, get(user_admin::list)),
        ("/admin/users", Method::POST, post(user_admin::create)),
        (
            "/admin/users/{user_id}",
            Method::PUT,
            put(user_admin::update),
        ),
        (
            "/admin/users/{user_id}/disable",
            Method::PUT,
            put(user_admin::disable),
        ),
        (
            "/admin/users/{user_id}/enable",
            Method::PUT,
            put(user_admin::enable),
        ),
        (
            "/admin/users/{user_id}/role",
            Method::PUT,
            put(user_admin::set_role),
        ),
        ("/sign-in", Method::GET, get(sign_in::sign_in_page)),
        ("/sign-in", Method::POST, post(sign_in::sign_in)),
        ("/sign-up", Method::GET, get(sign_in::sign_up_page)),
        ("/sign-up", Method::POST, post(sign_in::sign_up)),
        ("/sign-out", Method::GET, get(sign_in::sign_out_page)),
        ("/sign-out", Method::POST, post(sign_in::sign_out)),
        ("/assets/sign-in.css", Method::GET, get(sign_in::stylesheet)),
        ("/openapi.json", Method::GET, get(openapi_document)),
    ]
}

/// `GET {mount}/openapi.json`.
async fn openapi_document(State(ctx): State<Arc<AccountCtx>>) -> Response {
    (
        [(http::header::CACHE_CONTROL, "no-cache")],
        axum::Json(openapi::document(&ctx)),
    )
        .into_response()
}

pub(crate) fn router(ctx: Arc<AccountCtx>) -> Router {
    let limit = ctx.accounts.max_body_bytes;
    let mut router = Router::new();
    for (path, _, handler) in endpoints() {
        router = router.route(path, handler);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(never_stored))
        .with_state(ctx)
}

/// Every answer of the account API is about an account (a profile, a user list, API keys)
/// or carries a secret (tokens, a new key), errors included: no cache may keep it
/// (`Cache-Control: no-store`, unless the handler chose its own, as the OpenAPI document
/// and the stylesheet do), and no browser may read it as another type than it says
/// (`X-Content-Type-Options: nosniff`).
async fn never_stored(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.entry(http::header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adding a route without describing it, or describing one that is gone, fails here.
    #[test]
    fn the_openapi_document_describes_exactly_the_routes() {
        let served: Vec<(String, String)> = endpoints()
            .into_iter()
            .map(|(path, method, _)| (method.as_str().to_ascii_lowercase(), path.to_string()))
            .collect();
        let described: Vec<(String, String)> = openapi::OPERATIONS
            .iter()
            .map(|o| (o.method.to_string(), o.path.to_string()))
            .collect();
        for s in &served {
            assert!(
                described.contains(s),
                "{s:?} is served but not in the OpenAPI document"
            );
        }
        for d in &described {
            assert!(served.contains(d), "{d:?} is described but not served");
        }
    }
}
