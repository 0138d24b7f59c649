//! `[throttle]`: how fast failed logins, registrations, refreshes, password changes, API-key
//! creations and unknown API keys may come, per account, per client address and per pair.
//! Each limiter is a rate: `burst` at once, then one more every `every` (GCRA).

use std::time::Duration;

use super::ConfigError;
use super::raw::{RawRate, RawThrottle};
use super::values::*;

/// A limiter's rate: `burst` events at once, then one more each `every`. Over any hour at
/// most `burst + 1h / every` are let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed back to back.
    pub burst: u32,
    /// The steady pace after the burst: one event per this.
    pub every: Duration,
}

impl Rate {
    /// The time an exhausted limiter takes to recover its whole burst.
    pub fn window(&self) -> Duration {
        self.every.saturating_mul(self.burst)
    }
}

/// `[throttle]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Off: nothing is throttled (for benchmarks of the login path, never production).
    pub enabled: bool,
    /// Failed logins per account, from addresses that have not signed into it before.
    pub login_account: Rate,
    /// Failed logins per client address (IPv6: per /64), whatever the account.
    pub login_address: Rate,
    /// Failed logins per (account, address).
    pub login_pair: Rate,
    /// Registrations per address (every attempt counts).
    pub register: Rate,
    /// Failed refreshes per address.
    pub refresh: Rate,
    /// Failed password changes per address, and per account.
    pub change_password: Rate,
    /// API-key creations per address (every attempt counts).
    pub api_key_create: Rate,
    /// Unknown or malformed API keys presented, per address.
    pub api_key_failure: Rate,
    /// After a successful login from an address, failures by others on that account do
    /// not hold that address back for this long.
    pub known_address_for: Duration,
}

const fn every(burst: u32, secs: u64) -> Rate {
    Rate {
        burst,
        every: Duration::from_secs(secs),
    }
}

/// The defaults: the account limit is ASVS 5.0's (at most 100 failures an hour, 10 at
/// once); an address may fail as often across accounts, with a larger burst (shared
/// addresses); the others leave room for scripts and busy offices, and stop floods.
pub(crate) const DEFAULTS: ThrottleConfig = ThrottleConfig {
    enabled: true,
    login_account: every(10, 40),
    login_address: every(20, 45),
    login_pair: every(10, 120),
    register: every(20, 60),
    refresh: every(20, 30),
    change_password: every(5, 120),
    api_key_create: every(20, 30),
    api_key_failure: every(20, 30),
    known_address_for: Duration::from_secs(30 * 24 * 3600),
};

fn rate(name: &str, raw: Option<RawRate>, default: Rate) -> Result<Rate> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let key = format!("throttle.{name}");
    let burst = raw.burst.unwrap_or(default.burst);
    if !(1..=100_000).contains(&burst) {
        return Err(ConfigError::invalid(
            format!("{key}.burst"),
            format!("{burst} must be between 1 and 100000"),
        ));
    }
    let every = nonzero_duration(&format!("{key}.every"), raw.every, default.every)?;
    if every < Duration::from_millis(1) || every > Duration::from_secs(86_400) {
        return Err(ConfigError::invalid(
            format!("{key}.every"),
            "must be between 1ms and 24h",
        ));
    }
    Ok(Rate { burst, every })
}

pub(super) fn throttle(raw: RawThrottle) -> Result<ThrottleConfig> {
    let d = DEFAULTS;
    Ok(ThrottleConfig {
        enabled: raw.enabled.unwrap_or(true),
        login_account: rate("login_account", raw.login_account, d.login_account)?,
        login_address: rate("login_address", raw.login_address, d.login_address)?,
        login_pair: rate("login_pair", raw.login_pair, d.login_pair)?,
        register: rate("register", raw.register, d.register)?,
        refresh: rate("refresh", raw.refresh, d.refresh)?,
        change_password: rate("change_password", raw.change_password, d.change_password)?,
        api_key_create: rate("api_key_create", raw.api_key_create, d.api_key_create)?,
        api_key_failure: rate("api_key_failure", raw.api_key_failure, d.api_key_failure)?,
        known_address_for: nonzero_duration(
            "throttle.known_address_for",
            raw.known_address_for,
            d.known_address_for,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ASVS 5.0 (6.3.1): at most 100 failed attempts an hour on one account.
    #[test]
    fn the_default_account_limit_allows_at_most_100_failures_an_hour() {
        let r = DEFAULTS.login_account;
        let per_hour = u64::from(r.burst) + 3600 / r.every.as_secs();
        assert!(per_hour <= 100, "{per_hour} an hour");
        assert!(r.burst <= 10, "the short-term burst is much tighter");
    }

    #[test]
    fn the_example_file_states_the_defaults() {
        let text = include_str!("../../config/example.toml");
        let config = super::super::Config::from_toml(text, Vec::new()).expect("example parses");
        assert_eq!(config.throttle, DEFAULTS);
        assert_eq!(config.accounts.max_api_keys_per_user, 100);
    }

    #[test]
    fn rates_are_checked_and_name_their_key() {
        let raw = RawThrottle {
            login_pair: Some(RawRate {
                burst: Some(0),
                every: None,
            }),
            ..Default::default()
        };
        let e = throttle(raw).unwrap_err().to_string();
        assert!(e.starts_with("throttle.login_pair.burst"), "{e}");
        let raw = RawThrottle {
            register: Some(RawRate {
                burst: None,
                every: Some("0s".into()),
            }),
            ..Default::default()
        };
        let e = throttle(raw).unwrap_err().to_string();
        assert!(e.starts_with("throttle.register.every"), "{e}");
    }
}
