//! `AppState`: every handle the request path needs, built once by `app` and shared by all
//! connections, and `Live`, the part a reload swaps. Holds; builds nothing.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use ipnet::IpNet;

use crate::auth::resolver::Resolver;
use crate::auth::sessions::Sessions;
use crate::http::headers::HeaderPolicy;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::routes::RouteTable;
use crate::store::DynStore;

/// Everything a request needs, shared by all connections.
pub struct AppState {
    /// What a reload replaces: each request loads it once and keeps it to the end.
    pub(crate) live: ArcSwap<Live>,
    pub(crate) proxy: Proxy,
    /// Credential -> identity, through the cache tiers.
    pub resolver: Arc<Resolver>,
    /// Starting, refreshing and ending sessions.
    pub sessions: Arc<Sessions>,
    pub(crate) mount: String,
    pub(crate) jwks: Bytes,
    pub(crate) trusted_proxies: Vec<IpNet>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The store.
    pub store: DynStore,
    /// The token keys: they also sign identity assertions.
    pub(crate) jwt: Arc<crate::auth::jwt::JwtKeys>,
    /// The Redis tier, when configured (`/readyz` reports on it).
    pub(crate) redis: Option<Arc<crate::cache::shared::RedisTier>>,
    /// Limits on unknown API keys (the account API holds the same one for its limits).
    pub(crate) throttle: Arc<crate::throttle::Throttle>,
    /// The access log, when on.
    pub(crate) access_log: Option<crate::logging::AccessLog>,
    /// `accounts.max_body_bytes`.
    pub(crate) account_body_limit: u64,
    /// `server.body_read_timeout`.
    pub(crate) body_read_timeout: std::time::Duration,
}

/// The part of the configuration that can change while serving (`serve` reloads it on
/// SIGHUP, or when the file changes with `server.watch_config`): routes with their
/// upstreams and policies, CORS and CSRF origins, identity-header names, forward-auth, and
/// the account API's own settings. Swapped whole, so no request sees half of two.
pub struct Live {
    pub(crate) routes: RouteTable,
    pub(crate) account: axum::Router,
    pub(crate) header_policy: Arc<HeaderPolicy>,
    pub(crate) csrf_origins: crate::config::Origins,
    /// `[cors]`: the account API's, and routes' with `cors = "inherit"`.
    pub(crate) cors: Option<Arc<crate::config::CorsPolicy>>,
    /// `forward_auth.path`, when forward-auth is on.
    pub(crate) forward_auth: Option<String>,
}
