//! The typed values of what browsers may do: `[cors]` (and a route's own `cors`), the CSRF
//! rule's origin list, and `[sign_in]`. Parsed in `cors` and `accounts`.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};

use super::cors;

/// `[csrf]`.
#[derive(Debug, Clone)]
pub struct CsrfConfig {
    /// Origins allowed to send cookie-authenticated unsafe requests (and WebSocket
    /// handshakes), besides the request's own origin: `cors.allowed_origins` (or, in older
    /// files, `csrf.allowed_origins`), without `*`.
    pub allowed_origins: Origins,
}

/// `[sign_in]`: the browser sign-in page (`{mount}/sign-in`, `/sign-up`, `/sign-out`).
#[derive(Debug, Clone)]
pub struct SignInConfig {
    /// Whether the pages are served.
    pub enabled: bool,
    /// The name the pages show ("Sign in to {app_name}").
    pub app_name: String,
    /// Origins an absolute return URL may have (besides paths on the page's own origin).
    pub return_origins: Origins,
    /// Where a signed-in browser goes when no valid return URL was given.
    pub default_return: String,
}

/// A list of allowed origins: exact ones and subdomain patterns.
#[derive(Debug, Clone, Default)]
pub struct Origins(pub(crate) Vec<cors::OriginRule>);

/// What a browser may do cross-origin: `[cors]`, or a route's own `cors` table.
#[derive(Debug)]
pub struct CorsPolicy {
    /// Origins allowed.
    pub origins: Origins,
    /// Methods a preflight may ask for.
    pub methods: Vec<Method>,
    /// Request headers a preflight may ask for (lower case).
    pub headers: Vec<HeaderName>,
    /// Whether responses carry `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// `Access-Control-Allow-Methods`, rendered once.
    pub allow_methods: HeaderValue,
    /// `Access-Control-Allow-Headers`, rendered once.
    pub allow_headers: HeaderValue,
    /// `Access-Control-Expose-Headers`, if any header is exposed.
    pub expose_headers: Option<HeaderValue>,
    /// `Access-Control-Max-Age` (seconds).
    pub max_age: HeaderValue,
    /// The CSRF rule's view of `origins` (without `*`), for cookie-authenticated requests to
    /// a route with this policy.
    pub csrf_origins: Origins,
}

/// A route's CORS behaviour.
#[derive(Debug, Clone)]
pub enum RouteCors {
    /// No CORS headers; a preflight is treated like any other request.
    None,
    /// The global `[cors]`.
    Inherit,
    /// Preflights are forwarded to the upstream unauthenticated; the upstream answers CORS.
    Upstream,
    /// A policy of the route's own.
    Own(Arc<CorsPolicy>),
}
