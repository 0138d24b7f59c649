//! The one place where an error becomes a response. Every error enum is matched here
//! exhaustively, so a new variant cannot silently become a 500. 4xx bodies carry the
//! origin's `{"detail": ...}` plus a stable `code` — for a 422, `detail` is FastAPI's list
//! of `{loc, msg, type}`, so origin UIs can point at the field; 5xx bodies are generic and
//! the cause is logged once.

use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use super::body::Body;
use super::host::HostError;
use crate::account::AccountError;
use crate::account::validate::Invalid;
use crate::auth::AuthError;
use crate::auth::password::HashError;
use crate::auth::sessions::SessionError;
use crate::metrics::{AuthOutcome, Metrics, UpstreamFailure};
use crate::path::PathError;
use crate::proxy::{BodyError, UpstreamError};
use crate::store::StoreError;
use crate::throttle::Refused;

mod grpc;
mod upstream;

use self::upstream::upstream_reply;

/// Errors on the proxy path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error(transparent)]
    BadPath(#[from] PathError),
    #[error(transparent)]
    BadHost(#[from] HostError),
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("Not Found")]
    NotFound,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("Insufficient permissions")]
    Forbidden,
    /// Portcullis failed at something that cannot fail in a healthy process (500).
    #[error("{0}")]
    Internal(&'static str),
    /// A verify request from a peer outside `server.trusted_proxies` (forward-auth).
    #[error("Forward-auth requests are answered only for server.trusted_proxies")]
    UntrustedPeer,
    /// A verify request for a request no route admits (forward-auth: default deny, and a
    /// status `auth_request` passes on).
    #[error("No route admits this request")]
    NoRoute,
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A `Transfer-Encoding` other than exactly `chunked` (RFC 9112 §6.1): 501.
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    /// Both `Transfer-Encoding` and `Content-Length`.
    #[error("ambiguous message length")]
    AmbiguousLength,
    /// A gRPC call on a route whose upstream speaks HTTP/1.1, which cannot carry trailers.
    #[error("gRPC needs an HTTP/2 upstream")]
    GrpcNeedsH2,
}

impl From<BodyError> for ProxyError {
    fn from(e: BodyError) -> ProxyError {
        ProxyError::Upstream(UpstreamError::Client(e))
    }
}

/// A response's parts before it is built.
struct ErrorReply {
    status: StatusCode,
    code: &'static str,
    /// A sentence, or (422) FastAPI's list of `{loc, msg, type}`.
    detail: serde_json::Value,
    www_authenticate: Option<&'static str>,
    retry_after: Option<&'static str>,
    /// A throttle's refusal: `Retry-After`, `RateLimit`/`RateLimit-Policy`, and
    /// `retry_after` in the body.
    throttled: Option<Refused>,
    /// The request's framing cannot be trusted: close the connection after answering.
    close: bool,
}

/// A 422 naming the field, in FastAPI's shape.
fn unprocessable(code: &'static str, invalid: &Invalid) -> ErrorReply {
    ErrorReply {
        detail: serde_json::json!([{
            "loc": invalid.loc,
            "msg": invalid.msg,
            "type": invalid.kind,
        }]),
        ..reply(StatusCode::UNPROCESSABLE_ENTITY, code, "")
    }
}

fn reply(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ErrorReply {
    ErrorReply {
        status,
        code,
        detail: serde_json::Value::String(detail.into()),
        www_authenticate: None,
        retry_after: None,
        throttled: None,
        close: false,
    }
}

/// A reply after which the connection is closed.
fn closing(r: ErrorReply) -> ErrorReply {
    ErrorReply { close: true, ..r }
}

fn unavailable(cause: &dyn std::fmt::Display) -> ErrorReply {
    tracing::error!(error = %cause, "dependency unavailable");
    ErrorReply {
        retry_after: Some("5"),
        ..reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service temporarily unavailable",
        )
    }
}

fn internal(cause: &dyn std::fmt::Display) -> ErrorReply {
    tracing::error!(error = %cause, "internal error");
    reply(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal server error",
    )
}

fn store_reply(e: StoreError) -> ErrorReply {
    match e {
        StoreError::EmailTaken => reply(
            StatusCode::BAD_REQUEST,
            "email_taken",
            "Email already registered",
        ),
        StoreError::Database(ref inner) => unavailable(inner),
        StoreError::Migrate(ref inner) => internal(inner),
        StoreError::Corrupt(ref what) => internal(what),
        StoreError::Io(ref e) => unavailable(e),
        StoreError::Timeout => unavailable(&e),
    }
}

/// An authentication failure's response, and what it counts as.
fn auth_reply(e: AuthError) -> (ErrorReply, AuthOutcome) {
    match e {
        AuthError::Missing => (
            ErrorReply {
                www_authenticate: Some("Bearer"),
                ..reply(
                    StatusCode::UNAUTHORIZED,
                    "not_authenticated",
                    "Not authenticated",
                )
            },
            AuthOutcome::Missing,
        ),
        AuthError::InvalidToken(detail) => (
            ErrorReply {
                www_authenticate: Some("Bearer error=\"invalid_token\""),
                ..reply(StatusCode::UNAUTHORIZED, "invalid_token", detail)
            },
            AuthOutcome::Invalid,
        ),
        AuthError::ConflictingCredentials | AuthError::Malformed(_) => (
            ErrorReply {
                www_authenticate: Some("Bearer error=\"invalid_request\""),
                ..reply(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
            },
            AuthOutcome::Invalid,
        ),
        AuthError::Disabled => (
            reply(
                StatusCode::FORBIDDEN,
                "user_disabled",
                "User account is disabled",
            ),
            AuthOutcome::Forbidden,
        ),
        AuthError::CsrfRejected => (
            reply(StatusCode::FORBIDDEN, "csrf", "Cross-site request refused"),
            AuthOutcome::Forbidden,
        ),
        AuthError::BadStoredIdentity => (internal(&e), AuthOutcome::Unavailable),
        AuthError::Store(inner) => (store_reply(inner), AuthOutcome::Unavailable),
        AuthError::Throttled(r) => (throttled(r), AuthOutcome::Invalid),
    }
}

fn hash_reply(e: HashError) -> ErrorReply {
    match e {
        HashError::Busy => ErrorReply {
            retry_after: Some("1"),
            ..reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "Too many sign-in attempts in progress; retry shortly",
            )
        },
        HashError::Internal(ref cause) => internal(cause),
    }
}

fn session_reply(e: SessionError) -> ErrorReply {
    match e {
        SessionError::InvalidRefreshToken | SessionError::RefreshTokenReused => ErrorReply {
            www_authenticate: Some("Bearer error=\"invalid_token\""),
            ..reply(
                StatusCode::UNAUTHORIZED,
                "invalid_refresh_token",
                e.to_string(),
            )
        },
        SessionError::Disabled => reply(
            StatusCode::FORBIDDEN,
            "user_disabled",
            "User account is disabled",
        ),
        SessionError::Store(inner) => store_reply(inner),
        SessionError::Sign(ref inner) => internal(inner),
    }
}

/// 429 for a throttle's refusal.
fn throttled(refused: Refused) -> ErrorReply {
    let detail = format!(
        "Too many attempts; try again in {} seconds",
        refused.retry_after_secs()
    );
    ErrorReply {
        throttled: Some(refused),
        ..reply(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
    }
}

/// What a refusal tells the client to do next, whatever shape its answer takes:
/// `WWW-Authenticate`, `Retry-After`, and a throttle's `RateLimit` fields.
fn advice_headers(r: &ErrorReply, h: &mut http::HeaderMap) {
    if let Some(v) = r.www_authenticate {
        h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(v));
    }
    if let Some(v) = r.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from_static(v));
    }
    if let Some(t) = &r.throttled {
        t.set_headers(h);
    }
}

fn build(r: ErrorReply) -> Response<Body> {
    let mut body = serde_json::json!({ "detail": r.detail, "code": r.code });
    if let Some(t) = &r.throttled {
        body["retry_after"] = t.retry_after_secs().into();
        body["limiter"] = t.limiter.label().into();
    }
    let mut resp = Response::new(Body::full(body.to_string()));
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    advice_headers(&r, h);
    if r.close {
        h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Builds the response to a failed request and counts it in the metrics: one match decides
/// both, so a response and its metrics label cannot disagree.
pub(crate) fn proxy_error(e: ProxyError, metrics: &Metrics) -> Response<Body> {
    build(counted(e, metrics))
}

/// The same for a gRPC call: answered the gRPC way (`grpc::trailers_only`), with the HTTP
/// status it stands for returned beside it for the metrics and the access log.
pub(crate) fn grpc_error(e: ProxyError, metrics: &Metrics) -> (Response<Body>, StatusCode) {
    let reply = counted(e, metrics);
    let status = reply.status;
    (grpc::trailers_only(reply), status)
}

fn counted(e: ProxyError, metrics: &Metrics) -> ErrorReply {
    let (reply, auth, upstream) = classify(e);
    if let Some(outcome) = auth {
        metrics.record_auth(outcome);
    }
    if let Some(failure) = upstream {
        metrics.record_upstream_failure(failure);
    }
    reply
}

type Classified = (ErrorReply, Option<AuthOutcome>, Option<UpstreamFailure>);

fn classify(e: ProxyError) -> Classified {
    match e {
        ProxyError::BadPath(p) => (
            reply(StatusCode::BAD_REQUEST, "bad_path", p.to_string()),
            None,
            None,
        ),
        ProxyError::BadHost(h) => (
            reply(StatusCode::BAD_REQUEST, "bad_host", h.to_string()),
            None,
            None,
        ),
        ProxyError::BadRequest(detail) => (
            reply(StatusCode::BAD_REQUEST, "bad_request", detail),
            None,
            None,
        ),
        ProxyError::NotFound => (
            reply(StatusCode::NOT_FOUND, "not_found", "Not Found"),
            None,
            None,
        ),
        ProxyError::Auth(a) => {
            let (reply, outcome) = auth_reply(a);
            (reply, Some(outcome), None)
        }
        ProxyError::Forbidden => (
            reply(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Insufficient permissions",
            ),
            Some(AuthOutcome::Forbidden),
            None,
        ),
        ProxyError::Internal(_) | ProxyError::UntrustedPeer | ProxyError::NoRoute => {
            let (status, code) = match e {
                ProxyError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                ProxyError::UntrustedPeer => (StatusCode::FORBIDDEN, "untrusted_peer"),
                _ => (StatusCode::FORBIDDEN, "no_route"),
            };
            (reply(status, code, e.to_string()), None, None)
        }
        ProxyError::Upstream(u) => {
            let (reply, failure) = upstream_reply(u);
            (reply, None, failure)
        }
        ProxyError::UnsupportedTransferCoding => (
            closing(reply(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported_transfer_coding",
                "Only Transfer-Encoding: chunked is supported",
            )),
            None,
            None,
        ),
        ProxyError::AmbiguousLength => (
            closing(reply(
                StatusCode::BAD_REQUEST,
                "bad_framing",
                "Transfer-Encoding and Content-Length together are ambiguous",
            )),
            None,
            None,
        ),
        ProxyError::GrpcNeedsH2 => (
            reply(
                StatusCode::NOT_IMPLEMENTED,
                "grpc_needs_h2",
                "gRPC needs HTTP/2 to the upstream: upstream_protocol = \"h2c\" or \"h2\" on \
                 this route (on an \"auto\" route, the upstream picked HTTP/1.1)",
            ),
            None,
            None,
        ),
    }
}

pub(crate) fn account_error(e: AccountError) -> Response<Body> {
    build(match e {
        AccountError::Auth(a) => auth_reply(a).0,
        AccountError::Validation(invalid) => unprocessable("validation", &invalid),
        AccountError::BadRequest(detail) => reply(StatusCode::BAD_REQUEST, "bad_request", detail),
        AccountError::InvalidCredentials => ErrorReply {
            www_authenticate: Some("Bearer"),
            ..reply(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Incorrect email or password",
            )
        },
        AccountError::Forbidden(detail) => reply(StatusCode::FORBIDDEN, "forbidden", detail),
        AccountError::NotFound(detail) => reply(StatusCode::NOT_FOUND, "not_found", detail),
        AccountError::WrongContentType(detail) => {
            reply(StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_body", detail)
        }
        AccountError::MalformedJson(detail) => {
            reply(StatusCode::BAD_REQUEST, "invalid_body", detail)
        }
        AccountError::WrongShape(invalid) => unprocessable("invalid_body", &invalid),
        AccountError::BodyTooLarge(detail) => {
            reply(StatusCode::PAYLOAD_TOO_LARGE, "invalid_body", detail)
        }
        AccountError::MethodNotAllowed => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method Not Allowed",
        ),
        AccountError::Session(s) => session_reply(s),
        AccountError::Store(s) => store_reply(s),
        AccountError::Hash(h) => hash_reply(h),
        AccountError::TooManyKeys(cap) => reply(
            StatusCode::CONFLICT,
            "api_key_limit",
            format!("At most {cap} live API keys per user; revoke one first"),
        ),
        AccountError::Throttled(r) => throttled(r),
    })
}

/// A refused CORS preflight: 403, and no CORS header (the browser then blocks the call).
pub(crate) fn cors_refused() -> Response<Body> {
    build(reply(
        StatusCode::FORBIDDEN,
        "cors",
        "Cross-origin request not allowed",
    ))
}

/// Account handlers return `AccountError`; axum turns it into the response built here.
impl axum::response::IntoResponse for AccountError {
    fn into_response(self) -> axum::response::Response {
        account_error(self).map(axum::body::Body::new)
    }
}
