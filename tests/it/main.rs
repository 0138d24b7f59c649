//! Integration tests: the real server on 127.0.0.1:0, driven over real sockets, in front of
//! an in-process echo upstream that records what it received. The production-tier tests use
//! the real PostgreSQL and Redis (see `services.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A test binary has no public API: its helpers are `pub` for sibling modules only.
#![allow(unreachable_pub)]

mod accounts;
mod assertion;
mod browser;
mod channels;
mod cli;
mod connections;
mod cors;
#[path = "../../examples/support/echo.rs"]
mod echo;
mod failures;
mod forward_auth;
mod framing;
mod grpc;
mod h2_upstream;
mod harness;
mod hosts;
mod import;
mod jwt;
mod keys_admin;
mod kubernetes;
mod openapi;
mod operator;
mod paths;
mod proxy;
mod reload;
mod replicas;
mod revocation;
mod server;
mod services;
mod sessions;
mod sign_in;
mod store_contract;
mod throttle;
mod tls;
mod trusted_headers;
mod upgrades;
mod upstream_tls;
mod wire;
