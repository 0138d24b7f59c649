//! The browser's way in: `{mount}/sign-in`, `/sign-up` and `/sign-out` as HTML pages whose
//! forms post back here, then a 303 to a validated return target with the session's
//! HttpOnly cookies set. The forms carry no token: every post must come from this origin
//! (or an allowed one) by `Origin` or `Sec-Fetch-Site`, which also stops login CSRF. The
//! messages never say whether an email is registered.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use http::header::HOST;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::extract::{FormBody, QueryParams};
use super::pages::{self, Notice, Page, SignUpValues};
use super::session_routes::{check_password, refresh_limited, register_user};
use super::{AccountCtx, AccountError, Result, clear_cookies, client_meta, set_session_cookies};
use crate::auth::AuthError;
use crate::auth::credentials::{REFRESH_COOKIE, check_origin, cookie, extract};
use crate::auth::sessions::{ClientMeta, SessionError};
use crate::identity::AuthMethod;
use crate::path::{is_local_target, under_prefix_ignoring_case};
use crate::secret::Secret;
use crate::store::{StoreError, User};
use crate::throttle::Refused;

const WRONG_ORIGIN: &str =
    "This form must be sent from this site's own page. Reload the page and try again.";

fn enabled(ctx: &AccountCtx) -> Result<()> {
    if ctx.sign_in.enabled {
        Ok(())
    } else {
        Err(AccountError::NotFound("Not Found"))
    }
}

/// Where the browser goes after signing in: a path on this origin (`path::is_local_target`),
/// an absolute URL on an origin in `sign_in.return_origins`, or — for an absolute URL on
/// this page's own host — its path only. Anything else, or a sign-in page itself (a loop),
/// is `sign_in.default_return`.
pub(super) fn return_target(ctx: &AccountCtx, headers: &HeaderMap, raw: Option<&str>) -> String {
    let default = || ctx.sign_in.default_return.clone();
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return default();
    };
    let own_page = |target: &str| {
        let path = target.split(['?', '#']).next().unwrap_or_default();
        under_prefix_ignoring_case(path, &format!("{}/sign-in", ctx.accounts.mount))
            || under_prefix_ignoring_case(path, &format!("{}/sign-up", ctx.accounts.mount))
            || under_prefix_ignoring_case(path, &format!("{}/sign-out", ctx.accounts.mount))
    };
    if is_local_target(raw) {
        return if own_page(raw) {
            default()
        } else {
            raw.to_owned()
        };
    }
    // An absolute URL: no userinfo, no byte a browser would drop or reinterpret.
    if raw.len() > 2048 || !raw.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
        return default();
    }
    let Ok(uri) = raw.parse::<http::Uri>() else {
        return default();
    };
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return default();
    };
    if !matches!(scheme, "http" | "https") || authority.as_str().contains('@') {
        return default();
    }
    if ctx
        .sign_in
        .return_origins
        .allows(&format!("{scheme}://{authority}"))
    {
        return raw.to_owned();
    }
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    if host.is_some_and(|h| h.eq_ignore_ascii_case(authority.as_str()))
        && let Some(pq) = uri.path_and_query().map(|pq| pq.as_str())
        && is_local_target(pq)
        && !own_page(pq)
    {
        return pq.to_owned();
    }
    default()
}

#[derive(Deserialize, Default)]
pub(super) struct PageQuery {
    return_to: Option<String>,
    signed_out: Option<String>,
}

/// Whether the request carries a session cookie that is valid right now.
async fn signed_in(ctx: &AccountCtx, headers: &HeaderMap) -> bool {
    let Ok(Some(cred)) = extract(headers) else {
        return false;
    };
    cred.method == AuthMethod::Cookie && ctx.resolver.resolve(&cred).await.is_ok()
}

/// The 303 back, with a new session's cookies.
async fn signed_in_as(
    ctx: &AccountCtx,
    user: &User,
    meta: &ClientMeta,
    target: &str,
) -> Result<Response> {
    let tokens = ctx.sessions.start(user, meta).await?;
    let mut headers = HeaderMap::new();
    set_session_cookies(ctx, &tokens, &mut headers);
    Ok(pages::see_other(target, headers))
}

/// `GET {mount}/sign-in`: the form — or, for a browser that is signed in, or holds a refresh
/// cookie that is still good, straight back to the return target (renewing the session).
pub(super) async fn sign_in_page(
    State(ctx): State<Arc<AccountCtx>>,
    headers: HeaderMap,
    meta: Option<Extension<ClientMeta>>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Response> {
    enabled(&ctx)?;
    let target = return_target(&ctx, &headers, q.return_to.as_deref());
    if signed_in(&ctx, &headers).await {
        return Ok(pages::see_other(&target, HeaderMap::new()));
    }
    let mut extra = HeaderMap::new();
    if let Ok(Some(token)) = cookie(&headers, REFRESH_COOKIE) {
        match refresh_limited(&ctx, &client_meta(meta), token).await {
            Ok(tokens) => {
                set_session_cookies(&ctx, &tokens, &mut extra);
                return Ok(pages::see_other(&target, extra));
            }
            // Another tab spent it a moment ago and holds the new cookies: leave them be.
            // Throttled: the form, which needs no refresh.
            Err(
                AccountError::Session(SessionError::RefreshTokenReused)
                | AccountError::Throttled(_),
            ) => {}
            Err(AccountError::Session(SessionError::Store(e))) => return Err(e.into()),
            Err(AccountError::Session(_)) => clear_cookies(&ctx, &mut extra),
            Err(e) => return Err(e),
        }
    }
    let notice = match q.signed_out {
        Some(_) => Notice::Info("You have signed out."),
        None => Notice::None,
    };
    let page = Page::new(&ctx, &target);
    let body = page.sign_in("", &notice, ctx.accounts.allow_registration);
    let mut resp = pages::html(&ctx.sign_in, StatusCode::OK, body);
    resp.headers_mut().extend(extra);
    Ok(resp)
}

#[derive(Deserialize)]
pub(super) struct SignInForm {
    #[serde(default)]
    email: String,
    password: Option<Secret>,
    return_to: Option<String>,
}

/// `POST {mount}/sign-in`: the form's answer.
pub(super) async fn sign_in(
    State(ctx): State<Arc<AccountCtx>>,
    headers: HeaderMap,
    meta: Option<Extension<ClientMeta>>,
    FormBody(form): FormBody<SignInForm>,
) -> Result<Response> {
    enabled(&ctx)?;
    let target = return_target(&ctx, &headers, form.return_to.as_deref());
    let page = Page::new(&ctx, &target);
    let again = |status, message: &str| {
        let body = page.sign_in(
            &form.email,
            &Notice::Error(message),
            ctx.accounts.allow_registration,
        );
        Ok(pages::html(&ctx.sign_in, status, body))
    };
    if check_origin(&headers, &ctx.csrf_origins).is_err() {
        return again(StatusCode::FORBIDDEN, WRONG_ORIGIN);
    }
    let password = form
        .password
        .clone()
        .unwrap_or_else(|| Secret::new(String::new()));
    let meta = client_meta(meta);
    match check_password(&ctx, &meta, &form.email, &password).await {
        Ok(user) => signed_in_as(&ctx, &user, &meta, &target).await,
        Err(AccountError::InvalidCredentials) => {
            again(StatusCode::BAD_REQUEST, "Incorrect email or password.")
        }
        Err(AccountError::Throttled(refused)) => {
            try_later(&refused, |m| again(StatusCode::TOO_MANY_REQUESTS, m))
        }
        // Only someone who knew the password learns this.
        Err(AccountError::Auth(AuthError::Disabled)) => again(
            StatusCode::FORBIDDEN,
            "This account is disabled. Contact an administrator.",
        ),
        Err(e) => Err(e),
    }
}

/// The form again, saying when to try again: 429 with `Retry-After` and the RateLimit
/// fields, as the JSON API answers.
fn try_later(refused: &Refused, again: impl FnOnce(&str) -> Result<Response>) -> Result<Response> {
    let wait = refused.retry_after_secs();
    let mut resp = again(&format!("Too many attempts. Try again in {wait} seconds."))?;
    refused.set_headers(resp.headers_mut());
    Ok(resp)
}

/// `GET {mount}/sign-up`: the registration form (404 while registration is closed).
pub(super) async fn sign_up_page(
    State(ctx): State<Arc<AccountCtx>>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Response> {
    enabled(&ctx)?;
    if !ctx.accounts.allow_registration {
        return Err(AccountError::NotFound("Not Found"));
    }
    let target = return_target(&ctx, &headers, q.return_to.as_deref());
    let page = Page::new(&ctx, &target);
    let empty = SignUpValues {
        email: "",
        full_name: "",
        organization: "",
    };
    let body = page.sign_up(
        &empty,
        &Notice::None,
        None,
        ctx.accounts.password.min_length,
    );
    Ok(pages::html(&ctx.sign_in, StatusCode::OK, body))
}

#[derive(Deserialize)]
pub(super) struct SignUpForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    full_name: String,
    #[serde(default)]
    organization: String,
    password: Option<Secret>,
    return_to: Option<String>,
}

/// `POST {mount}/sign-up`. An email that is already registered gets the same answer as
/// any other failure — unless the password is that account's, when it simply signs in.
pub(super) async fn sign_up(
    State(ctx): State<Arc<AccountCtx>>,
    headers: HeaderMap,
    meta: Option<Extension<ClientMeta>>,
    FormBody(form): FormBody<SignUpForm>,
) -> Result<Response> {
    enabled(&ctx)?;
    if !ctx.accounts.allow_registration {
        return Err(AccountError::NotFound("Not Found"));
    }
    let target = return_target(&ctx, &headers, form.return_to.as_deref());
    let page = Page::new(&ctx, &target);
    let again = |status, message: &str, field: Option<&str>| {
        let values = SignUpValues {
            email: &form.email,
            full_name: &form.full_name,
            organization: &form.organization,
        };
        let body = page.sign_up(
            &values,
            &Notice::Error(message),
            field,
            ctx.accounts.password.min_length,
        );
        Ok(pages::html(&ctx.sign_in, status, body))
    };
    if check_origin(&headers, &ctx.csrf_origins).is_err() {
        return again(StatusCode::FORBIDDEN, WRONG_ORIGIN, None);
    }
    let password = form
        .password
        .clone()
        .unwrap_or_else(|| Secret::new(String::new()));
    let organization = Some(form.organization.as_str()).filter(|o| !o.trim().is_empty());
    let meta = client_meta(meta);
    match register_user(
        &ctx,
        &meta,
        &form.email,
        &password,
        &form.full_name,
        organization,
    )
    .await
    {
        Ok(user) => signed_in_as(&ctx, &user, &meta, &target).await,
        Err(AccountError::Validation(invalid)) => {
            let field = invalid.loc.get(1).map(String::as_str);
            again(StatusCode::BAD_REQUEST, &invalid.msg, field)
        }
        Err(AccountError::Throttled(refused)) => {
            try_later(&refused, |m| again(StatusCode::TOO_MANY_REQUESTS, m, None))
        }
        Err(AccountError::Store(StoreError::EmailTaken)) => {
            match check_password(&ctx, &meta, &form.email, &password).await {
                Ok(user) => signed_in_as(&ctx, &user, &meta, &target).await,
                Err(AccountError::InvalidCredentials | AccountError::Auth(AuthError::Disabled)) => {
                    again(
                        StatusCode::BAD_REQUEST,
                        "We could not create an account with these details. If you already \
                         have an account, sign in instead.",
                        None,
                    )
                }
                Err(AccountError::Throttled(refused)) => {
                    try_later(&refused, |m| again(StatusCode::TOO_MANY_REQUESTS, m, None))
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// `GET {mount}/sign-out`: a confirmation with a button (a link must not sign anyone out).
pub(super) async fn sign_out_page(State(ctx): State<Arc<AccountCtx>>) -> Result<Response> {
    enabled(&ctx)?;
    let page = Page::new(&ctx, &ctx.sign_in.default_return);
    Ok(pages::html(&ctx.sign_in, StatusCode::OK, page.sign_out()))
}

/// `POST {mount}/sign-out`: ends the session the cookies belong to, clears them, and shows
/// the sign-in page.
pub(super) async fn sign_out(
    State(ctx): State<Arc<AccountCtx>>,
    headers: HeaderMap,
) -> Result<Response> {
    enabled(&ctx)?;
    if check_origin(&headers, &ctx.csrf_origins).is_err() {
        let page = Page::new(&ctx, &ctx.sign_in.default_return);
        return Ok(pages::html(
            &ctx.sign_in,
            StatusCode::FORBIDDEN,
            page.sign_out(),
        ));
    }
    if let Ok(Some(cred)) = extract(&headers)
        && cred.method == AuthMethod::Cookie
        && let Ok(identity) = ctx.resolver.resolve(&cred).await
        && let Some(sid) = &identity.session_id
    {
        ctx.sessions.end(sid).await?;
    }
    if let Ok(Some(token)) = cookie(&headers, REFRESH_COOKIE)
        && let Some((sid, _)) = ctx.sessions.session_of(token).await?
    {
        ctx.sessions.end(&sid).await?;
    }
    let mut cleared = HeaderMap::new();
    clear_cookies(&ctx, &mut cleared);
    let location = format!("{}/sign-in?signed_out=1", ctx.accounts.mount);
    Ok(pages::see_other(&location, cleared))
}

/// `GET {mount}/assets/sign-in.css`.
pub(super) async fn stylesheet(State(ctx): State<Arc<AccountCtx>>) -> Result<Response> {
    enabled(&ctx)?;
    Ok(pages::stylesheet())
}
