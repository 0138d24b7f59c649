//! WebSocket tunnels that close when their caller is revoked.

use std::sync::Arc;

use super::AppState;
use super::client::ConnInfo;
use crate::auth::AuthError;
use crate::auth::credentials::{self, OwnedCredential};
use crate::authz::{self, Decision};
use crate::proxy::Tunnel;

/// The tunnel an allowed WebSocket handshake becomes. It holds the client connection's
/// slot, and closes as soon as a revocation means the route would no longer admit the
/// caller's credential (logout, disable, key revocation, a role change) — the same moment
/// the next request with that credential is refused.
pub(super) fn tunnel_for(
    state: &AppState,
    conn: &Arc<ConnInfo>,
    route: &crate::config::RouteConfig,
    headers: &http::HeaderMap,
    authenticated: bool,
) -> Tunnel {
    let hold = conn.clone();
    let cred = authenticated
        .then(|| credentials::extract(headers).ok().flatten())
        .flatten()
        .map(OwnedCredential::from);
    let Some(cred) = cred else {
        return Tunnel::unwatched(hold);
    };
    let resolver = state.resolver.clone();
    let policy = route.policy.clone();
    let mut evictions = resolver.evictions();
    Tunnel {
        hold: Box::new(hold),
        revoked: Box::pin(async move {
            loop {
                if evictions.changed().await.is_err() {
                    return std::future::pending().await;
                }
                let admitted = match resolver.resolve(&cred.borrow()).await {
                    Ok(identity) => authz::decide(&policy, Some(&identity)) == Decision::Allow,
                    // The store is unreachable: judged again at the next revocation.
                    Err(AuthError::Store(_)) => true,
                    Err(_) => false,
                };
                if !admitted {
                    return;
                }
            }
        }),
    }
}
