//! Portcullis: an authenticating reverse proxy with its own account API.
//!
//! The crate is built in floors; a module uses only what stands below it.
//!
//! 1. Words every layer shares, depending on nothing: [`identity`] (roles, identities, how a
//!    credential was presented), [`secret`] (the redacting `Secret`, random ids, hashes),
//!    [`path`] (one canonical path, prefix matching), [`metrics`] (lock-free counters).
//! 2. [`config`]: the TOML file and environment, validated into typed values.
//! 3. Backends: [`store`] (SQLite and PostgreSQL behind one `Store`), `proxy` (the upstream
//!    HTTP/1.1 client, pools, tunnels), `authz` (policy decisions), [`logging`].
//! 4. [`cache`] (the identity cache and revocation) and `routes` (the route table, each
//!    route with its upstream).
//! 5. [`throttle`]: rate limits on failed logins and the other guessable attempts.
//! 6. [`auth`]: credentials -> identity (JWT, API keys, passwords, the resolver, sessions).
//! 7. `account`: the account API handlers.
//! 8. [`http`]: the request path — `handle()` settles the host and framing, normalizes,
//!    routes, authenticates, authorizes, prepares headers, forwards; `respond` turns every
//!    failure into a response and its metrics label. [`import`] reads the origin gateway.
//! 9. `server` (accept loop, per-connection bounds, drain) and `operator` (the operator
//!    listener).
//! 10. [`app`] assembles everything from a `Config`; [`commands`] is the work behind each
//!     CLI subcommand; `main.rs` only parses, prints and maps exit codes.
//!
//! `fuzzing` (feature `fuzzing`, and in unit tests) holds the fuzz targets' entry points.

/// The process allocator. jemalloc's background thread returns pages freed for a few
/// seconds to the system (its dirty-page decay), where glibc's malloc raises its mmap
/// threshold after the first large free and then keeps freed argon2 working memory in its
/// arenas for good: 19 MiB per concurrent login, once a burst has passed.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub(crate) mod account;
pub mod app;
pub mod auth;
pub(crate) mod authz;
pub mod cache;
pub mod commands;
pub mod config;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
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
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod testing;
pub mod throttle;

pub use app::App;
pub use config::Config;
