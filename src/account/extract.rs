//! Request extractors for the account API: JSON bodies whose rejections keep the origin's
//! `{"detail": ...}` shape and status codes, and the authenticated caller.

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, FailedToBufferBody, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::{AccountCtx, AccountError};
use crate::auth::AuthError;
use crate::auth::credentials::{check_csrf, extract};
use crate::identity::{AuthMethod, Identity, Role};
/// Why a body could not be read as JSON, by kind (`http::respond` picks the statuses).
fn json_rejection(r: JsonRejection) -> AccountError {
    match r {
        JsonRejection::JsonDataError(e) => AccountError::WrongShape(e.body_text()),
        JsonRejection::JsonSyntaxError(e) => AccountError::MalformedJson(e.body_text()),
        JsonRejection::MissingJsonContentType(e) => AccountError::NotJson(e.body_text()),
        JsonRejection::BytesRejection(e) => bytes_rejection(e),
        other => AccountError::MalformedJson(other.body_text()),
    }
}

fn bytes_rejection(r: BytesRejection) -> AccountError {
    match r {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(e)) => {
            AccountError::BodyTooLarge(e.body_text())
        }
        other => AccountError::MalformedJson(other.body_text()),
    }
}

/// A JSON body: 415 without a JSON content type, 400 when malformed, 413 when too large,
/// 422 when well-formed but of the wrong shape.
pub(super) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = AccountError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AccountError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

/// Like `JsonBody`, but an empty body means `T::default()`.
pub(super) struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = AccountError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AccountError> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(bytes_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        JsonBody::from_request(req, state)
            .await
            .map(|JsonBody(v)| OptionalJsonBody(v))
    }
}

/// Query parameters; a malformed query string is a 400 in the `{"detail"}` shape.
pub(super) struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = AccountError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AccountError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(QueryParams(v)),
            Err(r) => Err(AccountError::WrongShape(r.body_text())),
        }
    }
}

/// The authenticated caller, resolved exactly as on proxied routes (same credentials, same
/// cache, same CSRF rule for cookies).
pub(super) struct Caller {
    pub identity: Arc<Identity>,
}

impl FromRequestParts<Arc<AccountCtx>> for Caller {
    type Rejection = AccountError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &Arc<AccountCtx>,
    ) -> Result<Self, AccountError> {
        let cred = extract(&parts.headers)?.ok_or(AuthError::Missing)?;
        if cred.method == AuthMethod::Cookie {
            check_csrf(&parts.method, &parts.headers, &ctx.csrf_origins)?;
        }
        let identity = ctx.resolver.resolve(&cred).await?;
        Ok(Caller { identity })
    }
}

/// A caller signed in with a session (an access token, as a bearer token or the cookie):
/// operations that manage the account itself refuse API keys, so a leaked key cannot mint
/// keys, change the password or end the owner's sessions.
pub(super) struct SessionCaller(pub Caller);

/// The 403 for an account operation attempted without a session.
pub(super) fn session_required() -> AccountError {
    AccountError::Forbidden(
        "This operation needs a signed-in session; API keys cannot manage the account",
    )
}

impl FromRequestParts<Arc<AccountCtx>> for SessionCaller {
    type Rejection = AccountError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &Arc<AccountCtx>,
    ) -> Result<Self, AccountError> {
        let caller = Caller::from_request_parts(parts, ctx).await?;
        if caller.identity.session_id.is_none() {
            return Err(session_required());
        }
        Ok(SessionCaller(caller))
    }
}

/// A caller whose role is `admin`.
pub(super) struct AdminCaller(pub Caller);

impl FromRequestParts<Arc<AccountCtx>> for AdminCaller {
    type Rejection = AccountError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &Arc<AccountCtx>,
    ) -> Result<Self, AccountError> {
        let caller = Caller::from_request_parts(parts, ctx).await?;
        if caller.identity.role != Role::Admin {
            return Err(AccountError::Forbidden("Admin privileges required"));
        }
        Ok(AdminCaller(caller))
    }
}
