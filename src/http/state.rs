//! `AppState`: every handle the request path needs, built once by `app` and shared by all
//! connections. Holds; builds nothing.

use std::sync::Arc;

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
    pub routes: RouteTable,
    pub proxy: Proxy,
    pub resolver: Arc<Resolver>,
    pub sessions: Arc<Sessions>,
    pub account: axum::Router,
    pub mount: String,
    pub jwks: Bytes,
    pub header_policy: HeaderPolicy,
    pub csrf_origins: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub metrics: Arc<Metrics>,
    pub store: DynStore,
    pub access_log: bool,
    /// `accounts.max_body_bytes`.
    pub account_body_limit: u64,
    /// `server.body_read_timeout`.
    pub body_read_timeout: std::time::Duration,
}
