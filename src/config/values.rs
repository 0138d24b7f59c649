//! Scalar values as the TOML spells them -> typed values: durations, positive numbers,
//! socket addresses, SQLite paths. Every error names the key it is about.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;

pub(super) type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn duration(key: &str, value: Option<String>, default: Duration) -> Result<Duration> {
    match value {
        None => Ok(default),
        Some(text) => humantime::parse_duration(&text).map_err(|e| {
            ConfigError::invalid(
                key,
                format!("{text:?} is not a duration like \"15m\" ({e})"),
            )
        }),
    }
}

pub(super) fn nonzero_duration(
    key: &str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration> {
    let d = duration(key, value, default)?;
    if d.is_zero() {
        return Err(ConfigError::invalid(key, "must be longer than 0s"));
    }
    Ok(d)
}

pub(super) fn positive<T: PartialOrd + Default + std::fmt::Display>(
    key: &str,
    value: T,
) -> Result<T> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{value} must be greater than 0"),
        ))
    }
}

pub(super) fn at_least(key: &str, value: usize, min: usize) -> Result<usize> {
    if value >= min {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{value} must be at least {min}"),
        ))
    }
}

pub(super) fn socket_addr(key: &str, text: &str) -> Result<SocketAddr> {
    text.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("{text:?} is not an address like \"127.0.0.1:8080\""),
        )
    })
}

/// The file path of a `sqlite://path` or `sqlite:path` URL, without query parameters.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}
