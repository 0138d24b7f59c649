//! Assembly: `Config` -> `App` (the request path's `AppState`, every handle built once, plus
//! the background work), and `run`, which serves already-bound listeners until the shutdown
//! future resolves. Builds; decides nothing.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::net::TcpListener;

use crate::account::{self, AccountCtx};
use crate::auth::jwt::JwtKeys;
use crate::auth::password::PasswordHasher;
use crate::auth::resolver::{self, Resolver};
use crate::auth::sessions::Sessions;
use crate::cache::shared::RedisTier;
use crate::cache::{IdentityCache, Revocations};
use crate::config::Config;
use crate::http::headers::HeaderPolicy;
use crate::http::{AppState, Live};
use crate::metrics::Metrics;
use crate::proxy::{Proxy, ProxyLimits};
use crate::routes::RouteTable;

/// A built application: state plus the background work it needs.
pub struct App {
    /// The request path's shared state (tests read the store and metrics through it).
    pub state: Arc<AppState>,
    handles: Arc<AccountHandles>,
    /// The client listener's certificate, when it speaks TLS.
    tls: Option<Arc<crate::server::tls::Certificate>>,
    config: Config,
    key_usage: Option<tokio::sync::mpsc::Receiver<(String, i64)>>,
    cache: Arc<IdentityCache>,
    redis: Option<Arc<RedisTier>>,
}

mod reload;
pub use reload::Reloader;

/// The handles the account API is built around. They outlive reloads: a reload rebuilds
/// the account API's settings around the same store, hasher, sessions and caches.
struct AccountHandles {
    store: crate::store::DynStore,
    hasher: Arc<PasswordHasher>,
    sessions: Arc<Sessions>,
    resolver: Arc<Resolver>,
    revocations: Revocations,
    /// `[throttle]` is read at start: its counters outlive reloads.
    throttle: Arc<crate::throttle::Throttle>,
}

/// The part of `config` a reload can change, built around the long-lived `handles`.
/// Fails when a route's TLS files cannot be used.
fn build_live(
    config: &Config,
    handles: &AccountHandles,
    metrics: &Metrics,
) -> Result<Live, crate::config::ConfigError> {
    let ctx = Arc::new(AccountCtx {
        store: handles.store.clone(),
        hasher: handles.hasher.clone(),
        sessions: handles.sessions.clone(),
        resolver: handles.resolver.clone(),
        revocations: handles.revocations.clone(),
        accounts: config.accounts.clone(),
        cookies: config.cookies.clone(),
        csrf_origins: config.csrf.allowed_origins.clone(),
        sign_in: config.sign_in.clone(),
        refresh_ttl_secs: i64::try_from(config.tokens.refresh_ttl.as_secs()).unwrap_or(i64::MAX),
        throttle: handles.throttle.clone(),
    });
    Ok(Live {
        routes: RouteTable::new(config.routes.clone(), metrics)?,
        account: account::router(ctx),
        header_policy: Arc::new(HeaderPolicy::new(config.identity_headers.clone())),
        csrf_origins: config.csrf.allowed_origins.clone(),
        cors: config.cors.clone(),
        forward_auth: config.forward_auth.as_ref().map(|f| f.path.clone()),
    })
}

impl App {
    /// Builds every handle from `config`: the store (migrated when configured), keys, caches, Redis, the routes with their upstreams, and the account API.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let store = crate::store::open(&config.store, config.store.migrate_on_start)
            .await
            .context("opening the database")?;
        let metrics = Arc::new(Metrics::new(
            config.routes.iter().map(|r| r.name.clone()).collect(),
        ));
        let material = crate::auth::signing_keys::load(&config.tokens)
            .context("loading token signing keys")?;
        let jwt = Arc::new(JwtKeys::new(material, &config.tokens));
        let jwks = Bytes::from(jwt.jwks().to_string());
        let cache = Arc::new(IdentityCache::new(&config.cache));
        let redis = match &config.store.redis {
            Some(cfg) => Some(
                RedisTier::new(cfg, config.tokens.access_ttl, metrics.clone())
                    .context("configuring Redis")?,
            ),
            None => None,
        };
        let revocations = Revocations::new(cache.clone(), store.clone(), redis.clone());
        let (resolver, key_usage) = Resolver::new(
            jwt.clone(),
            store.clone(),
            cache.clone(),
            redis.clone(),
            metrics.clone(),
        );
        let resolver = Arc::new(resolver);
        let sessions = Arc::new(Sessions::new(
            store.clone(),
            jwt.clone(),
            revocations.clone(),
            config.tokens.refresh_ttl,
            config.tokens.refresh_reuse_grace,
            config.tokens.session_max_lifetime,
        ));
        let hasher = Arc::new(
            PasswordHasher::new(&config.hashing, metrics.clone())
                .context("configuring password hashing")?,
        );
        let throttle = Arc::new(crate::throttle::Throttle::new(
            &config.throttle,
            redis.clone(),
            metrics.clone(),
        ));
        let handles = Arc::new(AccountHandles {
            store: store.clone(),
            hasher,
            sessions: sessions.clone(),
            resolver: resolver.clone(),
            revocations,
            throttle: throttle.clone(),
        });
        let live = build_live(&config, &handles, &metrics).context("building the routes")?;
        let state = AppState {
            live: ArcSwap::from_pointee(live),
            proxy: Proxy::new(ProxyLimits::from_config(&config.server)),
            resolver,
            sessions,
            mount: config.accounts.mount.clone(),
            jwks,
            trusted_proxies: config.server.trusted_proxies.clone(),
            metrics,
            store,
            redis: redis.clone(),
            throttle,
            jwt: jwt.clone(),
            access_log: crate::logging::access_log(&config.log)
                .context("starting the access log")?,
            account_body_limit: config.accounts.max_body_bytes as u64,
            body_read_timeout: config.server.body_read_timeout,
        };
        let tls = match &config.server.tls {
            Some(files) => Some(
                crate::server::tls::Certificate::load(files)
                    .map_err(anyhow::Error::msg)
                    .context("loading the TLS certificate")?,
            ),
            None => None,
        };
        Ok(App {
            state: Arc::new(state),
            handles,
            tls,
            config,
            key_usage: Some(key_usage),
            cache,
            redis,
        })
    }

    /// What applies a new configuration to this application once it runs.
    pub fn reloader(&self) -> Reloader {
        Reloader::new(
            self.state.clone(),
            self.handles.clone(),
            self.config.clone(),
        )
    }

    /// Serves `listener` (and `admin`, if given) until `shutdown` resolves, then drains
    /// open connections for up to `server.shutdown_grace`.
    pub async fn run(
        mut self,
        listener: TcpListener,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        if let Some(rx) = self.key_usage.take() {
            tokio::spawn(resolver::run_key_usage_writer(self.state.store.clone(), rx));
        }
        if let Some(redis) = &self.redis {
            redis.start(self.cache.clone());
        }
        let tls = match &self.tls {
            Some(cert) => {
                let config = cert.server_config().map_err(anyhow::Error::msg)?;
                tokio::spawn(cert.clone().watch());
                Some(tokio_rustls::TlsAcceptor::from(config))
            }
            None => None,
        };
        let admin_tls = tls.clone().filter(|_| self.config.server.admin_tls);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        if let Some(admin) = admin {
            let state = self.state.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                crate::operator::serve(admin, admin_tls, state, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            });
        }
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let mut stop = stop_rx;
        crate::server::serve(
            listener,
            tls,
            self.state.clone(),
            &self.config.server,
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        )
        .await;
        // The drained requests' lines, before the process exits.
        if let Some(log) = &self.state.access_log {
            let log = log.clone();
            let _ = tokio::task::spawn_blocking(move || log.flush()).await;
        }
        Ok(())
    }
}
