//! Logging: the tracing subscriber (text or JSON on stderr, filtered by `log.level` or
//! `PORTCULLIS_LOG`). What is logged never includes a token, key, password or cookie: those
//! travel as `secret::Secret`. The access log (`access`) has its own buffered writer.

pub mod access;

use crate::config::{LogConfig, LogFormat};

pub use access::AccessLog;

/// Installs the global tracing subscriber. Called once, by the binary.
pub fn init_logging(cfg: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The access log `cfg` asks for: on with `log.access_log`, unless the log filter leaves out
/// `portcullis::access` at INFO (as `PORTCULLIS_LOG=warn` does). Called after `init_logging`.
pub fn access_log(cfg: &LogConfig) -> std::io::Result<Option<AccessLog>> {
    let wanted =
        cfg.access_log && tracing::enabled!(target: "portcullis::access", tracing::Level::INFO);
    wanted.then(|| AccessLog::stderr(cfg.format)).transpose()
}
