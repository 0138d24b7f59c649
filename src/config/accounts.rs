//! `[accounts]`, `[password_hashing]`, `[cookies]`, `[cors]`/`[csrf]` and `[sign_in]`: the
//! account API's rules.

use super::raw::*;
use super::values::*;
use super::*;

/// What a new password must be.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    /// Fewest characters.
    pub min_length: usize,
    /// Most characters.
    pub max_length: usize,
    /// Require an upper-case and a lower-case letter and a digit.
    pub require_mixed: bool,
}

/// `[accounts]`.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    /// Where the account API is served.
    pub mount: String,
    /// Whether `POST {mount}/register` is open.
    pub allow_registration: bool,
    /// Password rules.
    pub password: PasswordPolicy,
    /// Largest account-API request body.
    pub max_body_bytes: usize,
    /// Largest page of `GET {mount}/admin/users`.
    pub admin_page_size_max: u32,
    /// Live (unrevoked, unexpired) API keys one user may hold.
    pub max_api_keys_per_user: u32,
}

/// `[password_hashing]`.
#[derive(Debug, Clone)]
pub struct HashingConfig {
    /// argon2id memory, in KiB.
    pub memory_kib: u32,
    /// argon2id passes.
    pub iterations: u32,
    /// argon2id lanes.
    pub parallelism: u32,
    /// Hashes computed at once.
    pub max_concurrent: usize,
    /// Hash requests allowed to wait; more are refused with 503.
    pub max_queued: usize,
    /// Run the hashing threads `SCHED_IDLE`.
    pub low_priority: bool,
}

/// `[cookies]`.
#[derive(Debug, Clone)]
pub struct CookieConfig {
    /// Send the cookies with `Secure`.
    pub secure: bool,
    /// The cookies' `Domain`; unset: host-only.
    pub domain: Option<String>,
    /// The cookies' `SameSite`: `Lax` (default), `Strict`, or `None` (only with `Secure`).
    pub same_site: &'static str,
}

pub(super) fn accounts(raw: RawAccounts) -> Result<AccountsConfig> {
    let mount = raw.mount.unwrap_or_else(|| DEFAULT_MOUNT.to_string());
    if !mount.starts_with('/')
        || mount.len() < 2
        || mount.ends_with('/')
        || crate::path::normalize(&mount).ok().as_deref() != Some(mount.as_str())
    {
        return Err(ConfigError::invalid(
            "accounts.mount",
            format!("{mount:?} must be a normalized absolute path like \"/api/v1/auth\""),
        ));
    }
    let min_length = raw.password_min_length.unwrap_or(DEFAULT_PASSWORD_MIN);
    let max_length = raw.password_max_length.unwrap_or(DEFAULT_PASSWORD_MAX);
    if min_length < 8 {
        return Err(ConfigError::invalid(
            "accounts.password_min_length",
            "must be at least 8 (NIST SP 800-63B)",
        ));
    }
    if max_length < min_length || max_length > 1024 {
        return Err(ConfigError::invalid(
            "accounts.password_max_length",
            "must be between password_min_length and 1024",
        ));
    }
    Ok(AccountsConfig {
        mount,
        allow_registration: raw.allow_registration.unwrap_or(true),
        password: PasswordPolicy {
            min_length,
            max_length,
            require_mixed: raw.password_require_mixed.unwrap_or(false),
        },
        max_body_bytes: positive(
            "accounts.max_body_bytes",
            raw.max_body_bytes.unwrap_or(DEFAULT_ACCOUNT_BODY_LIMIT),
        )?,
        admin_page_size_max: positive(
            "accounts.admin_page_size_max",
            raw.admin_page_size_max
                .unwrap_or(DEFAULT_ADMIN_PAGE_SIZE_MAX),
        )?,
        max_api_keys_per_user: positive(
            "accounts.max_api_keys_per_user",
            raw.max_api_keys_per_user
                .unwrap_or(DEFAULT_MAX_API_KEYS_PER_USER),
        )?,
    })
}

pub(super) fn hashing(raw: RawPasswordHashing) -> Result<HashingConfig> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib = raw.memory_kib.unwrap_or(DEFAULT_ARGON2_MEMORY_KIB);
    if memory_kib < 8 {
        return Err(ConfigError::invalid(
            "password_hashing.memory_kib",
            "must be at least 8",
        ));
    }
    Ok(HashingConfig {
        memory_kib,
        iterations: positive(
            "password_hashing.iterations",
            raw.iterations.unwrap_or(DEFAULT_ARGON2_ITERATIONS),
        )?,
        parallelism: positive(
            "password_hashing.parallelism",
            raw.parallelism.unwrap_or(DEFAULT_ARGON2_PARALLELISM),
        )?,
        max_concurrent: positive(
            "password_hashing.max_concurrent",
            raw.max_concurrent.unwrap_or(cores),
        )?,
        max_queued: raw.max_queued.unwrap_or(DEFAULT_HASH_QUEUE),
        low_priority: raw.low_priority.unwrap_or(true),
    })
}

pub(super) fn cookies(raw: RawCookies) -> Result<CookieConfig> {
    let domain = raw.domain.filter(|d| !d.is_empty());
    if let Some(d) = &domain
        && !d.trim_start_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    {
        return Err(ConfigError::invalid(
            "cookies.domain",
            format!("{d:?} is not a domain name"),
        ));
    }
    let secure = raw.secure.unwrap_or(true);
    let same_site = match raw
        .same_site
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("lax") => "Lax",
        Some("strict") => "Strict",
        // Browsers drop a `SameSite=None` cookie without `Secure`.
        Some("none") if secure => "None",
        Some("none") => {
            return Err(ConfigError::invalid(
                "cookies.same_site",
                "\"none\" needs secure = true (browsers refuse it otherwise)",
            ));
        }
        Some(other) => {
            return Err(ConfigError::invalid(
                "cookies.same_site",
                format!("{other:?} is not \"lax\", \"strict\" or \"none\""),
            ));
        }
    };
    Ok(CookieConfig {
        secure,
        domain,
        same_site,
    })
}

/// `[cors]` and `[csrf]`: one origin list. `csrf.allowed_origins` is the older spelling of
/// `cors.allowed_origins`; naming the origins in both is an error.
pub(super) fn cors_and_csrf(
    cors: RawCors,
    csrf: RawCsrf,
) -> Result<(Option<std::sync::Arc<CorsPolicy>>, CsrfConfig)> {
    let mut cors = cors;
    if !csrf.allowed_origins.is_empty() {
        if !cors.allowed_origins.is_empty() {
            return Err(ConfigError::invalid(
                "csrf.allowed_origins",
                "name the allowed origins once, in cors.allowed_origins",
            ));
        }
        // Validated under its own key first, so errors name what the file says.
        super::cors::origins("csrf.allowed_origins", &csrf.allowed_origins)?;
        cors.allowed_origins = csrf.allowed_origins;
    }
    let policy = super::cors::policy("cors", cors)?;
    let allowed_origins = policy
        .as_ref()
        .map(|p| p.csrf_origins.clone())
        .unwrap_or_default();
    Ok((policy, CsrfConfig { allowed_origins }))
}

/// `[sign_in]`.
pub(super) fn sign_in(raw: RawSignIn) -> Result<SignInConfig> {
    let default_return = raw.default_return.unwrap_or_else(|| "/".to_string());
    if !crate::path::is_local_target(&default_return) {
        return Err(ConfigError::invalid(
            "sign_in.default_return",
            format!("{default_return:?} must be a path on this origin, like \"/\" or \"/app\""),
        ));
    }
    let app_name = raw.app_name.unwrap_or_else(|| "Portcullis".to_string());
    if app_name.trim().is_empty()
        || app_name.chars().count() > 60
        || app_name.chars().any(char::is_control)
    {
        return Err(ConfigError::invalid(
            "sign_in.app_name",
            "must be 1 to 60 characters, without control characters",
        ));
    }
    let return_origins = super::cors::origins("sign_in.return_origins", &raw.return_origins)?;
    if return_origins.any() {
        return Err(ConfigError::invalid(
            "sign_in.return_origins",
            "\"*\" would make the sign-in page an open redirect: name the origins",
        ));
    }
    Ok(SignInConfig {
        enabled: raw.enabled.unwrap_or(true),
        app_name,
        return_origins,
        default_return,
    })
}
