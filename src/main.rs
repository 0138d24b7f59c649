//! The `portcullis` command: parses arguments, loads configuration, starts logging, runs the
//! chosen subcommand and maps failures to exit codes (64 for bad configuration).

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::identity::Role;
use portcullis::{App, Config};

/// sysexits.h EX_USAGE: the configuration (or command line) is wrong.
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "An authenticating reverse proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file without binding ports.
    CheckConfig { file: PathBuf },
    /// Create or upgrade the database schema.
    Migrate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Measure argon2id hashes per second at the configured parameters (for sizing).
    HashRate {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Threads to hash on; default: the available CPUs.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Import users and API keys from the origin gateway.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Read `user:{id}` and `apikey:{rpa_…}` records from the origin's Redis.
    Redis {
        /// The origin's Redis, e.g. redis://127.0.0.1:6379/0
        #[arg(long = "from")]
        from: String,
        #[arg(long, short)]
        config: PathBuf,
        /// A prefix the origin put before its keys (usually none).
        #[arg(long, default_value = "")]
        prefix: String,
        /// Report what would be imported; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from the first line of stdin.
    Create {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "user")]
        role: String,
        /// Default: the part of the email before the `@`.
        #[arg(long)]
        full_name: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new private signing key (PKCS#8 PEM; a random secret for HS256).
    Generate {
        #[arg(long, default_value = "EdDSA")]
        algorithm: String,
        #[arg(long)]
        out: PathBuf,
    },
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load_file(path, std::env::vars()).map_err(|e| {
        eprintln!("portcullis: configuration error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// A configuration `serve` can run with (`check-config` checks exactly this).
fn load_serving_config(path: &Path) -> Result<Config, ExitCode> {
    let cfg = load_config(path)?;
    cfg.check_serving().map_err(|e| {
        eprintln!("portcullis: configuration error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })?;
    Ok(cfg)
}

fn fail(context: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("portcullis: {context}: {e:#}");
    ExitCode::FAILURE
}

fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers == 1 {
        // One core: the single-threaded scheduler avoids cross-thread wake-ups entirely.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if workers > 1 {
            b.worker_threads(workers);
        }
        b.enable_all().build()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let cfg = match load_serving_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match runtime(cfg.server.worker_threads) {
                Ok(rt) => rt.block_on(serve(cfg)),
                Err(e) => fail("cannot start the runtime", e),
            }
        }
        Command::HashRate {
            config,
            seconds,
            threads,
        } => hash_rate(&config, seconds, threads),
        command => match runtime(0) {
            Ok(rt) => rt.block_on(run(command)),
            Err(e) => fail("cannot start the runtime", e),
        },
    }
}

fn hash_rate(config: &Path, seconds: u64, threads: Option<usize>) -> ExitCode {
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let h = &cfg.hashing;
    match portcullis::auth::password::measure_rate(
        h,
        threads,
        std::time::Duration::from_secs(seconds),
    ) {
        Ok(rate) => {
            println!(
                "{rate:.1} hashes/s (argon2id m={} KiB, t={}, p={}; {threads} threads)",
                h.memory_kib, h.iterations, h.parallelism
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail("hashing failed", e),
    }
}

async fn run(command: Command) -> ExitCode {
    match command {
        // Handled in `main`, before a runtime exists.
        Command::Serve { .. } | Command::HashRate { .. } => ExitCode::from(EXIT_CONFIG),
        Command::CheckConfig { file } => match load_serving_config(&file) {
            Ok(cfg) => {
                println!("{}: ok ({} routes)", file.display(), cfg.routes.len());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Migrate { config } => {
            let cfg = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match portcullis::app::open_store(&cfg, true).await {
                Ok(_) => {
                    println!("database is up to date");
                    ExitCode::SUCCESS
                }
                Err(e) => fail("migration failed", e),
            }
        }
        Command::User {
            command:
                UserCommand::Create {
                    config,
                    email,
                    role,
                    full_name,
                },
        } => {
            let name =
                full_name.unwrap_or_else(|| email.split('@').next().unwrap_or("").to_string());
            create_user(&config, &email, &role, &name).await
        }
        Command::Keys {
            command: KeysCommand::Generate { algorithm, out },
        } => generate_key(&algorithm, &out),
        Command::Import {
            command:
                ImportCommand::Redis {
                    from,
                    config,
                    prefix,
                    dry_run,
                },
        } => import_redis(&from, &config, &prefix, dry_run).await,
    }
}

async fn serve(cfg: Config) -> ExitCode {
    portcullis::logging::init_logging(&cfg.log);
    let listener = match tokio::net::TcpListener::bind(cfg.server.listen).await {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on {}", cfg.server.listen), e),
    };
    let admin = match cfg.server.admin_listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => return fail(&format!("cannot listen on {addr}"), e),
        },
        None => None,
    };
    let listen = cfg.server.listen;
    let app = match App::build(cfg).await {
        Ok(app) => app,
        Err(e) => return fail("start-up failed", e),
    };
    tracing::info!(%listen, "portcullis listening");
    match app.run(listener, admin, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("shut down cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => fail("server failed", e),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown signal received; draining connections");
}

async fn create_user(config: &Path, email: &str, role: &str, full_name: &str) -> ExitCode {
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(role) = Role::parse(role) else {
        eprintln!("portcullis: --role must be one of user, admin, researcher");
        return ExitCode::from(EXIT_CONFIG);
    };
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return fail("cannot read the password from stdin", "read failed");
    }
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    match portcullis::account::create_user_offline(&cfg, email, &password, full_name, role).await {
        Ok(user_id) => {
            println!("{user_id}");
            ExitCode::SUCCESS
        }
        Err(e) => fail("cannot create the user", e),
    }
}

fn generate_key(algorithm: &str, out: &Path) -> ExitCode {
    let alg = match algorithm {
        "EdDSA" => jsonwebtoken::Algorithm::EdDSA,
        "ES256" => jsonwebtoken::Algorithm::ES256,
        "RS256" => jsonwebtoken::Algorithm::RS256,
        "HS256" => jsonwebtoken::Algorithm::HS256,
        _ => {
            eprintln!("portcullis: --algorithm must be one of EdDSA, ES256, RS256, HS256");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = portcullis::auth::keys::generate_pem(alg)
        .and_then(|pem| portcullis::auth::keys::write_private_file(out, pem.as_bytes()));
    match result {
        Ok(()) => {
            println!("wrote {} key to {}", algorithm, out.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail("key generation failed", e),
    }
}

async fn import_redis(from: &str, config: &Path, prefix: &str, dry_run: bool) -> ExitCode {
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match portcullis::app::open_store(&cfg, true).await {
        Ok(s) => s,
        Err(e) => return fail("cannot open the store", e),
    };
    match portcullis::import::from_redis(from, prefix, &store, dry_run).await {
        Ok(report) => {
            for (key, why) in &report.problems {
                eprintln!("invalid: {key}: {why}");
            }
            let line = |what: &str, c: portcullis::import::Counts| {
                println!(
                    "{what:<9} imported {}, skipped {}, invalid {}",
                    c.imported, c.skipped, c.invalid
                );
            };
            if dry_run {
                println!("dry run: nothing was written");
            }
            line("users:", report.users);
            line("api keys:", report.api_keys);
            ExitCode::SUCCESS
        }
        Err(e) => fail("import failed", e),
    }
}
