//! Request extractors for the account API: JSON bodies and query strings whose rejections
//! keep the origin's status codes and, for 422, FastAPI's `{"detail": [{loc, msg, type}]}`
//! shape; and the authenticated caller.

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use super::validate::Invalid;
use super::{AccountCtx, AccountError};
use crate::auth::AuthError;
use crate::auth::credentials::{check_csrf, extract};
use crate::identity::{AuthMethod, Identity, Role};

/// The 413 for a body over `accounts.max_body_bytes`, or 400 for one that could not be read.
fn bytes_rejection(r: BytesRejection) -> AccountError {
    match r {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(e)) => {
            AccountError::BodyTooLarge(e.body_text())
        }
        other => AccountError::MalformedJson(other.body_text()),
    }
}

/// The media type of the body, without parameters.
fn essence(headers: &http::HeaderMap) -> &str {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .unwrap_or_default()
        .trim()
}

/// `application/json` or `application/<anything>+json`, parameters ignored.
fn is_json(headers: &http::HeaderMap) -> bool {
    let essence = essence(headers);
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// Where a deserialization error happened, as FastAPI's `loc`: the section (`body`,
/// `query`), then each field name or index on the way. A missing field is named in the
/// message only, so it is taken from there.
fn invalid_at(section: &str, path: &serde_path_to_error::Path, msg: &str) -> Invalid {
    use serde_path_to_error::Segment;
    let mut loc = vec![section.to_owned()];
    for segment in path.iter() {
        match segment {
            Segment::Map { key } => loc.push(key.clone()),
            Segment::Seq { index } => loc.push(index.to_string()),
            Segment::Enum { variant } => loc.push(variant.clone()),
            Segment::Unknown => {}
        }
    }
    let quoted = |prefix: &str| {
        msg.strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(field) = quoted("missing field `") {
        loc.push(field);
        return Invalid {
            loc,
            msg: "Field required".into(),
            kind: "missing",
        };
    }
    if let Some(field) = quoted("unknown field `") {
        loc.push(field);
        return Invalid {
            loc,
            msg: "Extra inputs are not permitted".into(),
            kind: "extra_forbidden",
        };
    }
    Invalid {
        loc,
        msg: msg.to_owned(),
        kind: "type_error",
    }
}

/// A JSON document of type `T`: 400 when malformed, 422 with the field's `loc` when of the
/// wrong shape.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AccountError> {
    let malformed = |e: &serde_json::Error| {
        AccountError::MalformedJson(format!("Failed to parse the request body as JSON: {e}"))
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.classify() != serde_json::error::Category::Data {
            return malformed(inner);
        }
        // serde_json appends the position; the field path says more.
        let text = inner.to_string();
        let suffix = format!(" at line {} column {}", inner.line(), inner.column());
        let msg = text.strip_suffix(&suffix).unwrap_or(&text);
        AccountError::WrongShape(invalid_at("body", e.path(), msg))
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

/// The body, whole (bounded by `accounts.max_body_bytes`).
async fn read_body<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<(Parts, Bytes), AccountError> {
    let (parts, body) = req.into_parts();
    let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
        .await
        .map_err(bytes_rejection)?;
    Ok((parts, bytes))
}

fn not_json() -> AccountError {
    AccountError::WrongContentType("Expected request with `Content-Type: application/json`".into())
}

/// A JSON body: 415 without a JSON content type, 400 when malformed, 413 when too large,
/// 422 when well-formed but of the wrong shape.
pub(super) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = AccountError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AccountError> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let (_, bytes) = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Like `JsonBody`, but an empty body (with any content type, or none) means `T::default()`.
pub(super) struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = AccountError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AccountError> {
        let (parts, bytes) = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        if !is_json(&parts.headers) {
            return Err(not_json());
        }
        parse_json(&bytes).map(OptionalJsonBody)
    }
}

/// An HTML form's fields (`application/x-www-form-urlencoded`): 415 for another type, 422
/// naming the field for a missing or malformed one.
pub(super) struct FormBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for FormBody<T> {
    type Rejection = AccountError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AccountError> {
        if !essence(req.headers()).eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(AccountError::WrongContentType(
                "Expected request with `Content-Type: application/x-www-form-urlencoded`".into(),
            ));
        }
        let (_, bytes) = read_body(req, state).await?;
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(&bytes));
        serde_path_to_error::deserialize(de)
            .map(FormBody)
            .map_err(|e| {
                AccountError::WrongShape(invalid_at("body", e.path(), &e.inner().to_string()))
            })
    }
}

/// Query parameters; a value of the wrong shape is a 422 naming the parameter.
pub(super) struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = AccountError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AccountError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(QueryParams)
            .map_err(|e| {
                AccountError::WrongShape(invalid_at("query", e.path(), &e.inner().to_string()))
            })
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
        let address = parts
            .extensions
            .get::<crate::auth::sessions::ClientMeta>()
            .and_then(|m| m.address);
        let limit = address.map(|ip| (&*ctx.throttle, ip));
        let identity = ctx.resolver.resolve_from(&cred, limit).await?;
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
