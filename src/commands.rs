//! The work behind each `portcullis` subcommand, so that `main.rs` only parses arguments,
//! prints and maps failures to exit codes: serving, migrating, creating a user offline,
//! generating a signing key, importing from the origin gateway, measuring the hash rate.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use jsonwebtoken::Algorithm;

use crate::account::validate;
use crate::auth::password::PasswordHasher;
use crate::config::Config;
use crate::identity::Role;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::{DynStore, NewUser};

/// How often `server.watch_config` looks at the file.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Binds the listeners, builds the application and serves until `shutdown` resolves,
/// reloading `config_path` on SIGHUP (and when it changes, with `server.watch_config`).
pub async fn serve(
    cfg: Config,
    config_path: &std::path::Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
    let operator = match cfg.server.admin_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        ),
        None => None,
    };
    // The bound address: with port 0 in the file, the one the system chose.
    let listen = listener.local_addr().unwrap_or(cfg.server.listen);
    let watch = cfg.server.watch_config;
    let app = crate::App::build(cfg).await.context("start-up failed")?;
    let reloader = app.reloader();
    let path = config_path.to_path_buf();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
        let (reloader, path) = (reloader.clone(), path.clone());
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!(path = %path.display(), "SIGHUP: reloading the configuration");
                let _ = reloader.reload_file(&path);
            }
        });
    }
    if watch {
        tokio::spawn(reloader.watch(path, WATCH_INTERVAL));
    }
    tracing::info!(%listen, "portcullis listening");
    app.run(listener, operator, shutdown).await
}

/// Opens the configured store, applying pending migrations.
pub async fn migrate(cfg: &Config) -> anyhow::Result<DynStore> {
    crate::store::open(&cfg.store, true)
        .await
        .context("opening the database")
}

/// `portcullis user create`: the account API's validation and hashing, without a server.
/// Returns the new user's id.
pub async fn create_user(
    cfg: &Config,
    email: &str,
    password: &str,
    full_name: &str,
    role: Role,
) -> anyhow::Result<String> {
    let email = validate::email(email).map_err(anyhow::Error::msg)?;
    validate::password(&cfg.accounts.password, password, &email).map_err(anyhow::Error::msg)?;
    let full_name = validate::text("full_name", full_name, 100).map_err(anyhow::Error::msg)?;
    let store = migrate(cfg).await?;
    let hasher = PasswordHasher::new(&cfg.hashing, Arc::new(Metrics::new(Vec::new())))?;
    let password_hash = hasher.hash(&Secret::new(password.to_string())).await?;
    let user = store
        .create_user(&NewUser {
            user_id: format!("user_{}", crate::secret::random_hex(12)),
            email,
            password_hash,
            full_name,
            organization: None,
            role,
            disabled: false,
            created_at: chrono::Utc::now(),
        })
        .await?;
    Ok(user.user_id)
}

/// Writes a new private signing key (PKCS#8 PEM; a random secret for HS256) to `out`,
/// which must not exist yet.
pub fn generate_key(algorithm: Algorithm, out: &Path) -> anyhow::Result<()> {
    let pem = crate::auth::signing_keys::generate_pem(algorithm)?;
    crate::auth::signing_keys::write_private_file(out, pem.as_bytes())?;
    Ok(())
}

/// Imports the origin gateway's users and API keys from its Redis.
pub async fn import_redis(
    cfg: &Config,
    from: &str,
    prefix: &str,
    dry_run: bool,
) -> anyhow::Result<crate::import::Report> {
    let store = migrate(cfg).await?;
    Ok(crate::import::from_redis(from, prefix, &store, dry_run).await?)
}

/// argon2id hashes per second at the configured parameters, on `threads` threads.
pub fn hash_rate(cfg: &Config, threads: usize, seconds: u64) -> anyhow::Result<f64> {
    Ok(crate::auth::password::measure_rate(
        &cfg.hashing,
        threads,
        Duration::from_secs(seconds),
    )?)
}
