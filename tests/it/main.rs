//! Integration tests: the real server on 127.0.0.1:0, driven over real sockets, in front of
//! an in-process echo upstream that records what it received.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod cli;
mod harness;
mod jwt;
mod keys_admin;
mod paths;
mod proxy;
mod server;
