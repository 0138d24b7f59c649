//! The TOML file as written, field for field. Unknown keys are errors. No validation here:
//! `validate.rs` turns this into typed values.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    pub server: RawServer,
    pub store: RawStore,
    pub tokens: RawTokens,
    pub accounts: RawAccounts,
    pub password_hashing: RawPasswordHashing,
    pub cookies: RawCookies,
    pub csrf: RawCsrf,
    pub cors: RawCors,
    pub sign_in: RawSignIn,
    pub forward_auth: RawForwardAuth,
    pub throttle: RawThrottle,
    pub identity_headers: RawIdentityHeaders,
    pub cache: RawCache,
    pub log: RawLog,
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub listen: Option<String>,
    pub worker_threads: Option<usize>,
    pub admin_listen: Option<String>,
    pub max_connections: Option<usize>,
    pub header_read_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub send_timeout: Option<String>,
    pub max_header_bytes: Option<usize>,
    pub idle_timeout: Option<String>,
    pub http2_keepalive_interval: Option<String>,
    pub http2_keepalive_timeout: Option<String>,
    pub tunnel_idle_timeout: Option<String>,
    pub tunnel_max_lifetime: Option<String>,
    pub shutdown_grace: Option<String>,
    pub trusted_proxies: Vec<String>,
    pub watch_config: Option<bool>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub admin_tls: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    pub database_url: Option<String>,
    pub max_connections: Option<u32>,
    pub acquire_timeout: Option<String>,
    pub statement_timeout: Option<String>,
    pub migrate_on_start: Option<bool>,
    pub redis_url: Option<String>,
    pub redis_key_prefix: Option<String>,
    pub redis_timeout: Option<String>,
    pub redis_channel: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTokens {
    pub algorithm: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub access_ttl: Option<String>,
    pub refresh_ttl: Option<String>,
    pub leeway: Option<String>,
    pub refresh_reuse_grace: Option<String>,
    pub session_max_lifetime: Option<String>,
    pub max_token_bytes: Option<usize>,
    pub signing_key_path: Option<String>,
    pub verification_key_paths: Vec<String>,
    pub hmac_secret: Option<String>,
    pub key_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAccounts {
    pub mount: Option<String>,
    pub allow_registration: Option<bool>,
    pub password_min_length: Option<usize>,
    pub password_max_length: Option<usize>,
    pub password_require_mixed: Option<bool>,
    pub max_body_bytes: Option<usize>,
    pub admin_page_size_max: Option<u32>,
    pub max_api_keys_per_user: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawForwardAuth {
    pub enabled: Option<bool>,
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSignIn {
    pub enabled: Option<bool>,
    pub app_name: Option<String>,
    pub return_origins: Vec<String>,
    pub default_return: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPasswordHashing {
    pub memory_kib: Option<u32>,
    pub iterations: Option<u32>,
    pub parallelism: Option<u32>,
    pub max_concurrent: Option<usize>,
    pub max_queued: Option<usize>,
    pub low_priority: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCookies {
    pub secure: Option<bool>,
    pub domain: Option<String>,
    pub same_site: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCsrf {
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawIdentityHeaders {
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub role: Option<String>,
    pub auth_method: Option<String>,
    pub key_id: Option<String>,
    pub also_remove: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCache {
    pub max_entries: Option<u64>,
    pub ttl: Option<String>,
    pub stale_bound: Option<String>,
    pub unknown_key_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
    pub access_log: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRoute {
    pub name: Option<String>,
    pub prefix: Option<String>,
    pub methods: Option<Vec<String>>,
    pub host: Option<String>,
    pub upstream: Option<String>,
    pub upstream_protocol: Option<String>,
    pub auth: Option<String>,
    pub roles: Option<Vec<String>>,
    pub strip_prefix: Option<bool>,
    pub case_sensitive: Option<bool>,
    pub forward_credentials: Option<bool>,
    pub preserve_host: Option<bool>,
    pub websocket: Option<bool>,
    pub connect_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub cors: Option<RawRouteCors>,
    pub sign_in_redirect: Option<bool>,
    pub identity_assertion: Option<bool>,
    pub access_log: Option<bool>,
    pub tls_ca_file: Option<String>,
    pub tls_client_cert_file: Option<String>,
    pub tls_client_key_file: Option<String>,
    pub tls_server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCors {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Option<Vec<String>>,
    pub allowed_headers: Option<Vec<String>>,
    pub exposed_headers: Option<Vec<String>>,
    pub max_age: Option<String>,
    pub credentials: Option<bool>,
}

/// A route's `cors`: a mode name or a table of its own.
#[derive(Debug)]
pub(super) enum RawRouteCors {
    Mode(String),
    Own(RawCors),
}

// By hand rather than `untagged`, so a mistake inside the table is reported as itself
// (`unknown field ...`) instead of "did not match any variant".
impl<'de> Deserialize<'de> for RawRouteCors {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match toml::Value::deserialize(d)? {
            toml::Value::String(mode) => Ok(RawRouteCors::Mode(mode)),
            table @ toml::Value::Table(_) => table
                .try_into()
                .map(RawRouteCors::Own)
                .map_err(|e| D::Error::custom(e.message())),
            other => Err(D::Error::custom(format!(
                "expected \"inherit\", \"upstream\", \"off\" or a table, found {}",
                other.type_str()
            ))),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawThrottle {
    pub enabled: Option<bool>,
    pub login_account: Option<RawRate>,
    pub login_address: Option<RawRate>,
    pub login_pair: Option<RawRate>,
    pub register: Option<RawRate>,
    pub refresh: Option<RawRate>,
    pub change_password: Option<RawRate>,
    pub api_key_create: Option<RawRate>,
    pub api_key_failure: Option<RawRate>,
    pub known_address_for: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRate {
    pub burst: Option<u32>,
    pub every: Option<String>,
}
