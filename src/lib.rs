//! Portcullis: an authenticating reverse proxy with its own account API.
//!
//! Crate map, in request order:
//! - [`server`]: accept loop, connection limit, graceful shutdown.
//! - [`http`]: `handle()`, path normalization, header hygiene, error responses.
//! - [`routes`]: the route table; first match wins.
//! - [`auth`]: credentials -> identity (JWT, API keys, passwords, sessions, the resolver).
//! - [`cache`]: the in-process identity cache and revocation.
//! - [`authz`]: route policy decisions.
//! - [`proxy`]: pooled upstream connections and their HTTP/1.1 client, streaming, WebSocket tunnels.
//! - [`account`]: the account API (register, login, ..., admin).
//! - [`store`]: the `Store` trait and its SQLite implementation.
//! - [`config`], [`app`], [`admin`], [`logging`], [`metrics`]: configuration, wiring, operator
//!   endpoints, logs and metrics. [`import`] reads the origin gateway's Redis records.

pub(crate) mod account;
pub mod app;
pub mod auth;
pub(crate) mod authz;
pub mod cache;
pub mod commands;
pub mod config;
pub mod http;
pub mod identity;
pub mod import;
pub mod logging;
pub mod metrics;
pub(crate) mod operator;
pub mod path;
pub mod proxy;
pub(crate) mod routes;
pub mod secret;
pub(crate) mod server;
pub mod store;

pub use app::App;
pub use config::Config;
