//! Live reload: a new configuration's live part (routes, upstreams, policies, CORS and
//! CSRF origins, identity-header names, forward-auth, the account API's settings) replaces
//! the old one in one swap. Requests already running finish on the configuration they
//! started with. A file that does not validate changes nothing: the error is logged (the
//! same words `check-config` prints) and counted, and the last good configuration stays.
//! Settings that only take effect at start are named in the log when they differ.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{AccountHandles, build_live};
use crate::config::{Config, ConfigError};
use crate::http::AppState;

/// Applies new configurations to a running server. Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    state: Arc<AppState>,
    handles: Arc<AccountHandles>,
    /// The configuration last applied (to name what a new one cannot change live).
    current: Arc<Mutex<Config>>,
}

/// Sections (or keys) read only at start: a change to them waits for a restart.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut names = Vec::new();
    let (o, n) = (&old.server, &new.server);
    if o.listen != n.listen || o.admin_listen != n.admin_listen {
        names.push("server.listen / server.admin_listen");
    }
    if differs(&o.trusted_proxies, &n.trusted_proxies) {
        names.push("server.trusted_proxies");
    }
    if o.watch_config != n.watch_config {
        names.push("server.watch_config");
    }
    if o.tls != n.tls || o.admin_tls != n.admin_tls {
        names.push(
            "server.tls_cert_file / tls_key_file / admin_tls (the files' contents do reload)",
        );
    }
    let limits = |s: &crate::config::ServerConfig| {
        let mut s = s.clone();
        s.listen = old.server.listen;
        s.admin_listen = old.server.admin_listen;
        s.trusted_proxies.clear();
        s.watch_config = false;
        s.tls = None;
        s.admin_tls = false;
        format!("{s:?}")
    };
    if limits(o) != limits(n) {
        names.push("server (connection limits, timeouts, worker threads)");
    }
    if differs(&old.store, &new.store) {
        names.push("store");
    }
    if differs(&old.tokens, &new.tokens) {
        names.push("tokens");
    }
    if differs(&old.hashing, &new.hashing) {
        names.push("password_hashing");
    }
    if differs(&old.cache, &new.cache) {
        names.push("cache");
    }
    if old.throttle != new.throttle {
        names.push("throttle");
    }
    if differs(&old.log, &new.log) {
        names.push("log");
    }
    if old.accounts.mount != new.accounts.mount {
        names.push("accounts.mount");
    }
    if old.accounts.max_body_bytes != new.accounts.max_body_bytes {
        names.push("accounts.max_body_bytes");
    }
    names
}

impl Reloader {
    pub(super) fn new(state: Arc<AppState>, handles: Arc<AccountHandles>, config: Config) -> Self {
        Reloader {
            state,
            handles,
            current: Arc::new(Mutex::new(config)),
        }
    }

    /// Swaps in `new`'s live part; returns the settings that differ but wait for a restart
    /// (and logs them). Fails, changing nothing, when a route's TLS files cannot be used.
    pub fn apply(&self, mut new: Config) -> Result<Vec<&'static str>, ConfigError> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = needs_restart(&current, &new);
        // What waits for a restart keeps its running value, so the live part is built
        // consistent with it (the account API's cookie paths follow the running mount).
        new.server = current.server.clone();
        new.store = current.store.clone();
        new.tokens = current.tokens.clone();
        new.hashing = current.hashing.clone();
        new.cache = current.cache.clone();
        new.log = current.log.clone();
        new.accounts.mount = current.accounts.mount.clone();
        new.accounts.max_body_bytes = current.accounts.max_body_bytes;
        let live = build_live(&new, &self.handles, &self.state.metrics)?;
        self.state.live.store(Arc::new(live));
        self.state.metrics.record_reload(true);
        tracing::info!(routes = new.routes.len(), "configuration reloaded");
        if !waiting.is_empty() {
            tracing::warn!(
                settings = %waiting.join(", "),
                "changed settings that only take effect after a restart; still using the old values"
            );
        }
        *current = new;
        Ok(waiting)
    }

    /// Reads `path` as `serve` does (the environment's overrides included) and applies it.
    /// A file that does not load changes nothing; its error is logged and returned.
    pub fn reload_file(&self, path: &Path) -> Result<Vec<&'static str>, ConfigError> {
        let applied = Config::load_file(path, std::env::vars())
            .and_then(|c| {
                c.check_serving()?;
                Ok(c)
            })
            .and_then(|c| self.apply(c));
        match applied {
            Ok(waiting) => Ok(waiting),
            Err(e) => {
                self.state.metrics.record_reload(false);
                tracing::error!(
                    path = %path.display(),
                    error = %e,
                    "configuration not reloaded; the last good one stays"
                );
                Err(e)
            }
        }
    }

    /// Reloads whenever the file's contents change, checking every `every`. Follows
    /// symbolic links, so a Kubernetes ConfigMap update (a swap of the `..data` link) is
    /// seen like an edit. Runs until dropped.
    pub async fn watch(self, path: PathBuf, every: Duration) {
        let mut last = tokio::fs::read(&path).await.ok();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = tokio::fs::read(&path).await.ok();
            if now.is_some() && now != last {
                let _ = self.reload_file(&path);
                last = now;
            }
        }
    }
}
