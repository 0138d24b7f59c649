//! The `portcullis` command: parses arguments, loads configuration, starts logging, runs the
//! chosen subcommand and maps failures to exit codes (64 for bad configuration).

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use portcullis::Config;
use portcullis::commands;
use portcullis::identity::Role;

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
        #[arg(long, value_enum, default_value_t = RoleArg::User)]
        role: RoleArg,
        /// Default: the part of the email before the `@`.
        #[arg(long)]
        full_name: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new private signing key (PKCS#8 PEM; a random secret for HS256).
    Generate {
        #[arg(long, value_enum, default_value_t = AlgorithmArg::EdDSA)]
        algorithm: AlgorithmArg,
        #[arg(long)]
        out: PathBuf,
    },
}

/// `--role`: the roles a user can have.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    User,
    Admin,
    Researcher,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::User => Role::User,
            RoleArg::Admin => Role::Admin,
            RoleArg::Researcher => Role::Researcher,
        }
    }
}

/// `--algorithm`: the token signature algorithms, spelled as JOSE spells them.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    #[value(name = "EdDSA")]
    EdDSA,
    #[value(name = "ES256")]
    ES256,
    #[value(name = "RS256")]
    RS256,
    #[value(name = "HS256")]
    HS256,
}

impl From<AlgorithmArg> for jsonwebtoken::Algorithm {
    fn from(a: AlgorithmArg) -> jsonwebtoken::Algorithm {
        match a {
            AlgorithmArg::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            AlgorithmArg::ES256 => jsonwebtoken::Algorithm::ES256,
            AlgorithmArg::RS256 => jsonwebtoken::Algorithm::RS256,
            AlgorithmArg::HS256 => jsonwebtoken::Algorithm::HS256,
        }
    }
}

/// What a configuration file is needed for: serving (and `check-config`) needs routes;
/// commands that only touch the database do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Serving,
    Database,
}

/// Loads `path` with the environment's overrides; a bad file prints its error and is exit
/// code 64.
fn load_config(path: &Path, purpose: Purpose) -> Result<Config, ExitCode> {
    let checked = Config::load_file(path, std::env::vars()).and_then(|cfg| {
        if purpose == Purpose::Serving {
            cfg.check_serving()?;
        }
        Ok(cfg)
    });
    checked.map_err(|e| {
        eprintln!("portcullis: configuration error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn fail(context: &str, e: impl Into<anyhow::Error>) -> ExitCode {
    eprintln!("portcullis: {context}: {}", causes(&e.into()));
    ExitCode::FAILURE
}

/// An error and its causes, each said once: a cause whose text the message so far already
/// holds is left out, since some errors (the store's, sqlx's) put their source in their own
/// message as well as returning it as the source.
fn causes(e: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(&text);
    }
    said
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

/// Runs `work` on a runtime, mapping a start-up failure to an exit code.
fn block_on(workers: usize, work: impl Future<Output = ExitCode>) -> ExitCode {
    match runtime(workers) {
        Ok(rt) => rt.block_on(work),
        Err(e) => fail("cannot start the runtime", e),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; a wrong argument is 64.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Serve { config } => match load_config(&config, Purpose::Serving) {
            Ok(cfg) => {
                portcullis::logging::init_logging(&cfg.log);
                block_on(cfg.server.worker_threads, async move {
                    match commands::serve(cfg, &config, shutdown_signal()).await {
                        Ok(()) => {
                            tracing::info!("shut down cleanly");
                            ExitCode::SUCCESS
                        }
                        Err(e) => fail("server failed", e),
                    }
                })
            }
            Err(code) => code,
        },
        Command::CheckConfig { file } => match load_config(&file, Purpose::Serving) {
            Ok(cfg) => {
                println!("{}: ok ({} routes)", file.display(), cfg.routes.len());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Migrate { config } => match load_config(&config, Purpose::Database) {
            Ok(cfg) => block_on(0, async move {
                match commands::migrate(&cfg).await {
                    Ok(_) => {
                        println!("database is up to date");
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail("migration failed", e),
                }
            }),
            Err(code) => code,
        },
        Command::User {
            command:
                UserCommand::Create {
                    config,
                    email,
                    role,
                    full_name,
                },
        } => match load_config(&config, Purpose::Database) {
            Ok(cfg) => {
                let name =
                    full_name.unwrap_or_else(|| email.split('@').next().unwrap_or("").to_string());
                let mut line = String::new();
                if std::io::stdin().lock().read_line(&mut line).is_err() {
                    return fail(
                        "cannot read the password from stdin",
                        anyhow::anyhow!("read failed"),
                    );
                }
                let password = line.trim_end_matches(['\r', '\n']).to_string();
                block_on(0, async move {
                    match commands::create_user(&cfg, &email, &password, &name, role.into()).await {
                        Ok(user_id) => {
                            println!("{user_id}");
                            ExitCode::SUCCESS
                        }
                        Err(e) => fail("cannot create the user", e),
                    }
                })
            }
            Err(code) => code,
        },
        Command::Keys {
            command: KeysCommand::Generate { algorithm, out },
        } => match commands::generate_key(algorithm.into(), &out) {
            Ok(()) => {
                println!("wrote {algorithm:?} key to {}", out.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail("key generation failed", e),
        },
        Command::HashRate {
            config,
            seconds,
            threads,
        } => match load_config(&config, Purpose::Database) {
            Ok(cfg) => {
                let threads = threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                let h = &cfg.hashing;
                match commands::hash_rate(&cfg, threads, seconds) {
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
            Err(code) => code,
        },
        Command::Import {
            command:
                ImportCommand::Redis {
                    from,
                    config,
                    prefix,
                    dry_run,
                },
        } => match load_config(&config, Purpose::Database) {
            Ok(cfg) => block_on(0, async move {
                match commands::import_redis(&cfg, &from, &prefix, dry_run).await {
                    Ok(report) => {
                        print_import(&report, dry_run);
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail("import failed", e),
                }
            }),
            Err(code) => code,
        },
    }
}

fn print_import(report: &portcullis::import::Report, dry_run: bool) {
    for (key, why) in &report.problems {
        eprintln!("invalid: {key}: {why}");
    }
    let line = |what: &str, c: &portcullis::import::Counts| {
        println!(
            "{what:<9} imported {}, skipped {}, invalid {}",
            c.imported, c.skipped, c.invalid
        );
    };
    if dry_run {
        println!("dry run: nothing was written");
    }
    line("users:", &report.users);
    line("api keys:", &report.api_keys);
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

#[cfg(test)]
mod tests {
    use super::causes;

    /// Says its source in its own message and returns it as the source too.
    #[derive(Debug)]
    struct Repeats(std::io::Error);

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "database error: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let inner = std::io::Error::other("role \"bob\" does not exist");
        let e = anyhow::Error::new(Repeats(inner)).context("opening the database");
        assert_eq!(
            causes(&e),
            "opening the database: database error: role \"bob\" does not exist"
        );
        // Causes that say something new are all kept, in order.
        let e = anyhow::anyhow!("refused")
            .context("connecting")
            .context("start-up failed");
        assert_eq!(causes(&e), "start-up failed: connecting: refused");
    }
}
