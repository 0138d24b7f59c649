//! `portcullis import redis`: reads the origin gateway's Redis records — `user:{user_id}` and
//! `apikey:{rpa_…}` JSON — into the configured store. Users keep their ids and bcrypt hashes
//! (upgraded to argon2id at their next login); keys are stored hashed, never raw. Records
//! already imported are skipped, so running it twice changes nothing; a bad record is
//! counted and reported, never fatal. Never prints a hash or a key.

use chrono::{DateTime, NaiveDateTime, Utc};
use redis::AsyncCommands as _;
use serde::Deserialize;

use crate::account::validate;
use crate::auth::api_key;
use crate::identity::Role;
use crate::store::{ApiKeyRecord, DynStore, NewUser, StoreError};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
/// What happened to the records of one kind.
pub struct Counts {
    /// Written to the store.
    pub imported: u64,
    /// Already there; left as they are.
    pub skipped: u64,
    /// Refused by validation.
    pub invalid: u64,
}

#[derive(Debug, Default)]
/// What an import did.
pub struct Report {
    /// `user:{id}` records.
    pub users: Counts,
    /// `apikey:{key}` records.
    pub api_keys: Counts,
    /// `(redis key, reason)` for every invalid record.
    pub problems: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
/// Why an import stopped.
pub enum ImportError {
    #[error("Redis: {0}")]
    /// The origin's Redis could not be read.
    Redis(#[from] redis::RedisError),
    #[error("store: {0}")]
    /// The store could not be written.
    Store(#[from] StoreError),
}

#[derive(Deserialize)]
struct OriginUser {
    user_id: String,
    email: String,
    password_hash: String,
    full_name: Option<String>,
    organization: Option<String>,
    role: Option<String>,
    #[serde(default)]
    disabled: bool,
    created_at: Option<String>,
}

#[derive(Deserialize)]
struct OriginKey {
    user_id: String,
    name: Option<String>,
    created_at: Option<String>,
}

/// Python's `isoformat()` (naive, taken as UTC) or RFC 3339.
fn parse_time(text: Option<&str>) -> DateTime<Utc> {
    let Some(t) = text else { return Utc::now() };
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc()))
        .unwrap_or_else(|_| Utc::now())
}

async fn keys_matching(
    conn: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> Result<Vec<String>, ImportError> {
    let mut keys: Vec<String> = Vec::new();
    let mut iter = conn.scan_match::<_, String>(pattern).await?;
    while let Some(k) = futures_util::StreamExt::next(&mut iter).await {
        keys.push(k);
    }
    keys.sort();
    Ok(keys)
}

fn user_from(raw: &str) -> Result<NewUser, String> {
    let u: OriginUser = serde_json::from_str(raw).map_err(|e| format!("not a user record: {e}"))?;
    if u.user_id.is_empty() || u.user_id.len() > 50 {
        return Err("user_id is empty or longer than 50 characters".into());
    }
    let email = validate::email(&u.email)?;
    let hash = u.password_hash;
    if !(hash.starts_with("$2a$")
        || hash.starts_with("$2b$")
        || hash.starts_with("$2y$")
        || hash.starts_with("$argon2"))
    {
        return Err("password_hash is not a bcrypt or argon2 hash".into());
    }
    let role = match u.role.as_deref() {
        None => Role::User,
        Some(r) => Role::parse(r).ok_or_else(|| format!("unknown role {r:?}"))?,
    };
    let fallback_name = email.split('@').next().unwrap_or_default().to_string();
    let full_name = validate::text(
        "full_name",
        u.full_name.as_deref().unwrap_or(&fallback_name),
        100,
    )
    .or_else(|_| validate::text("full_name", &fallback_name, 100))?;
    Ok(NewUser {
        user_id: u.user_id,
        email,
        password_hash: hash,
        full_name,
        organization: validate::optional_text("organization", u.organization.as_deref(), 100)?,
        role,
        disabled: u.disabled,
        created_at: parse_time(u.created_at.as_deref()),
    })
}

/// Imports everything under `prefix` (the origin's key prefix, usually empty). With
/// `dry_run`, nothing is written and the counts say what would happen.
pub async fn from_redis(
    url: &str,
    prefix: &str,
    store: &DynStore,
    dry_run: bool,
) -> Result<Report, ImportError> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut report = Report::default();
    let mut imported_ids = std::collections::HashSet::new();

    for key in keys_matching(&mut conn, &format!("{prefix}user:*")).await? {
        let raw: Option<String> = conn.get(&key).await?;
        let user = match raw.as_deref().map(user_from) {
            Some(Ok(u)) => u,
            Some(Err(why)) => {
                report.users.invalid += 1;
                report.problems.push((key, why));
                continue;
            }
            None => continue,
        };
        if store.user_by_id(&user.user_id).await?.is_some() {
            report.users.skipped += 1;
            continue;
        }
        if let Some(other) = store.user_by_email(&user.email).await? {
            report.users.invalid += 1;
            report
                .problems
                .push((key, format!("email already belongs to {}", other.user_id)));
            continue;
        }
        if !dry_run {
            match store.create_user(&user).await {
                Ok(_) => {}
                Err(StoreError::EmailTaken) => {
                    report.users.invalid += 1;
                    report
                        .problems
                        .push((key, "email already registered".into()));
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        imported_ids.insert(user.user_id);
        report.users.imported += 1;
    }

    for key in keys_matching(&mut conn, &format!("{prefix}apikey:*")).await? {
        let raw_key = key[prefix.len() + "apikey:".len()..].to_string();
        let raw: Option<String> = conn.get(&key).await?;
        let Some(raw) = raw else { continue };
        let hint_key = api_key::hint(&raw_key);
        let record: OriginKey = match serde_json::from_str(&raw) {
            Ok(r) => r,
            Err(e) => {
                report.api_keys.invalid += 1;
                report
                    .problems
                    .push((hint_key, format!("not an API key record: {e}")));
                continue;
            }
        };
        if !raw_key.starts_with(api_key::LEGACY_PREFIX) || !api_key::is_well_formed(&raw_key) {
            report.api_keys.invalid += 1;
            report.problems.push((hint_key, "not an rpa_ key".into()));
            continue;
        }
        let owner_known = imported_ids.contains(&record.user_id)
            || store.user_by_id(&record.user_id).await?.is_some();
        if !owner_known {
            report.api_keys.invalid += 1;
            report
                .problems
                .push((hint_key, format!("user {} does not exist", record.user_id)));
            continue;
        }
        let hash_hex = hex::encode(crate::secret::hash(&raw_key));
        if store.api_key_by_hash(&hash_hex).await?.is_some() {
            report.api_keys.skipped += 1;
            continue;
        }
        let name = record.name.as_deref().unwrap_or("imported key");
        let name = validate::text("name", name, 100).unwrap_or_else(|_| "imported key".into());
        let key_record = ApiKeyRecord {
            // Derived from the hash, so a re-run finds the same key.
            key_id: format!("key_{}", &hash_hex[..16]),
            key_hash: hash_hex,
            key_hint: hint_key,
            user_id: record.user_id,
            name,
            created_at: parse_time(record.created_at.as_deref()),
            expires_at: None,
            last_used: None,
            revoked: false,
        };
        if !dry_run {
            store.create_api_key(&key_record).await?;
        }
        report.api_keys.imported += 1;
    }
    Ok(report)
}
