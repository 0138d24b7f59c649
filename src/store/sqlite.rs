//! The embedded store: SQLite through sqlx, one file, created and migrated on first start.
//! WAL mode, foreign keys on, a busy timeout so concurrent writers queue instead of failing.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const USER_COLS: &str = "u.user_id, u.email, u.password_hash, u.full_name, u.organization, \
     u.role, u.disabled, u.email_verified, u.created_at, u.updated_at, u.last_login";
/// Aliased, because key and user rows are read from one joined row with shared column names.
const KEY_COLS: &str = "k.key_id AS k_key_id, k.key_hash AS k_key_hash, k.key_hint AS k_key_hint, \
     k.user_id AS k_user_id, k.name AS k_name, k.created_at AS k_created_at, \
     k.expires_at AS k_expires_at, k.last_used AS k_last_used, k.disabled AS k_disabled";

/// Fixed-width UTC text, so that SQL string comparison orders timestamps correctly.
fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn parse_ts(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("timestamp {text:?}")))
}

fn opt_ts(row: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.try_get::<Option<String>, _>(col)?
        .as_deref()
        .map(parse_ts)
        .transpose()
}

fn user_from_row(row: &SqliteRow) -> Result<User, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(User {
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        full_name: row.try_get("full_name")?,
        organization: row.try_get("organization")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        disabled: row.try_get("disabled")?,
        email_verified: row.try_get("email_verified")?,
        created_at: parse_ts(&row.try_get::<String, _>("created_at")?)?,
        updated_at: parse_ts(&row.try_get::<String, _>("updated_at")?)?,
        last_login: opt_ts(row, "last_login")?,
    })
}

fn key_from_row(row: &SqliteRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        key_id: row.try_get("k_key_id")?,
        key_hash: row.try_get("k_key_hash")?,
        key_hint: row.try_get("k_key_hint")?,
        user_id: row.try_get("k_user_id")?,
        name: row.try_get("k_name")?,
        created_at: parse_ts(&row.try_get::<String, _>("k_created_at")?)?,
        expires_at: opt_ts(row, "k_expires_at")?,
        last_used: opt_ts(row, "k_last_used")?,
        revoked: row.try_get("k_disabled")?,
    })
}

fn unique_violation_on(err: &sqlx::Error, column: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => db.is_unique_violation() && db.message().contains(column),
        _ => false,
    }
}

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating the file and its directory if needed) without migrating.
    pub async fn open(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<SqliteStore, StoreError> {
        if let Some(path) = crate::config::sqlite_path(url)
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                let what = format!("cannot create {}: {e}", Path::new(dir).display());
                StoreError::Io(std::io::Error::new(e.kind(), what))
            })?;
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn fetch_user(&self, clause: &str, value: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLS} FROM users u WHERE {clause}");
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn fetch_key(
        &self,
        clause: &str,
        value: &str,
    ) -> Result<Option<KeyPrincipal>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLS}, {USER_COLS} FROM api_keys k JOIN users u ON u.user_id = k.user_id \
             WHERE {clause}"
        );
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(KeyPrincipal {
                key: key_from_row(&r)?,
                user: user_from_row(&r)?,
            })
        })
        .transpose()
    }

    async fn insert_refresh(
        tx: &mut Transaction<'_, Sqlite>,
        session_id: &str,
        user_id: &str,
        token: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, user_id, session_id, created_at, expires_at, \
             user_agent, ip_address) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&token.token_hash)
        .bind(user_id)
        .bind(session_id)
        .bind(ts(now))
        .bind(ts(token.expires_at))
        .bind(&token.user_agent)
        .bind(&token.ip_address)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE sessions SET expires_at = ? WHERE session_id = ?")
            .bind(ts(token.expires_at))
            .bind(session_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, new: &NewUser) -> Result<User, StoreError> {
        let now = new.created_at;
        let result = sqlx::query(
            "INSERT INTO users (user_id, email, password_hash, full_name, organization, role, \
             disabled, created_at, updated_at) VALUES (?, lower(?), ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&new.user_id)
        .bind(&new.email)
        .bind(&new.password_hash)
        .bind(&new.full_name)
        .bind(&new.organization)
        .bind(new.role.as_str())
        .bind(new.disabled)
        .bind(ts(now))
        .bind(ts(now))
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => {}
            Err(e) if unique_violation_on(&e, "email") => return Err(StoreError::EmailTaken),
            Err(e) => return Err(e.into()),
        }
        self.fetch_user("u.user_id = ?", &new.user_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("inserted user vanished".into()))
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        self.fetch_user("u.email = ?", email).await
    }

    async fn user_by_id(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        self.fetch_user("u.user_id = ?", user_id).await
    }

    async fn list_users(&self, offset: i64, limit: i64) -> Result<(Vec<User>, i64), StoreError> {
        let sql = format!("SELECT {USER_COLS} FROM users u ORDER BY u.id LIMIT ? OFFSET ?");
        let rows = sqlx::query(&sql)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        let users = rows.iter().map(user_from_row).collect::<Result<_, _>>()?;
        Ok((users, total))
    }

    async fn update_user(
        &self,
        user_id: &str,
        patch: &UserPatch,
    ) -> Result<Option<User>, StoreError> {
        let result = sqlx::query(
            "UPDATE users SET email = COALESCE(lower(?), email), full_name = COALESCE(?, full_name), \
             organization = CASE WHEN ? THEN ? ELSE organization END, role = COALESCE(?, role), \
             disabled = COALESCE(?, disabled), updated_at = ? WHERE user_id = ?",
        )
        .bind(&patch.email)
        .bind(&patch.full_name)
        .bind(patch.organization.is_some())
        .bind(patch.organization.clone().flatten())
        .bind(patch.role.map(Role::as_str))
        .bind(patch.disabled)
        .bind(ts(Utc::now()))
        .bind(user_id)
        .execute(&self.pool)
        .await;
        match result {
            Ok(r) if r.rows_affected() == 0 => Ok(None),
            Ok(_) => self.user_by_id(user_id).await,
            Err(e) if unique_violation_on(&e, "email") => Err(StoreError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE user_id = ?")
            .bind(hash)
            .bind(ts(Utc::now()))
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_login(&self, user_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET last_login = ? WHERE user_id = ?")
            .bind(ts(at))
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn create_session(
        &self,
        session: &NewSession,
        first: &NewRefreshToken,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (session_id, user_id, created_at, expires_at, user_agent, \
             ip_address) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&session.session_id)
        .bind(&session.user_id)
        .bind(ts(session.created_at))
        .bind(ts(first.expires_at))
        .bind(&session.user_agent)
        .bind(&session.ip_address)
        .execute(&mut *tx)
        .await?;
        Self::insert_refresh(
            &mut tx,
            &session.session_id,
            &session.user_id,
            first,
            session.created_at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        next: &NewRefreshToken,
        now: DateTime<Utc>,
        session_max_lifetime: chrono::Duration,
    ) -> Result<Rotation, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The conditional UPDATE is the single point of decision: it takes SQLite's write
        // lock, so of two racing calls only one can see `rotated_at IS NULL`.
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = ?1 WHERE token_hash = ?2 \
             AND rotated_at IS NULL AND revoked = 0 AND expires_at > ?1 \
             AND session_id IN (SELECT session_id FROM sessions WHERE revoked_at IS NULL) \
             AND user_id IN (SELECT user_id FROM users WHERE disabled = 0) \
             RETURNING session_id, user_id",
        )
        .bind(ts(now))
        .bind(presented_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(spent) = spent else {
            let row = sqlx::query(
                "SELECT rt.session_id, rt.user_id, rt.rotated_at, rt.revoked, \
                 u.disabled AS user_disabled, \
                 EXISTS (SELECT 1 FROM refresh_tokens n WHERE n.session_id = rt.session_id \
                         AND n.id > rt.id AND n.rotated_at IS NOT NULL) AS superseded \
                 FROM refresh_tokens rt JOIN users u ON u.user_id = rt.user_id \
                 WHERE rt.token_hash = ?",
            )
            .bind(presented_hash)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            let Some(r) = row else {
                return Ok(Rotation::Invalid);
            };
            if r.try_get::<bool, _>("user_disabled")? {
                return Ok(Rotation::UserDisabled);
            }
            if r.try_get::<bool, _>("revoked")? {
                return Ok(Rotation::Invalid);
            }
            return match opt_ts(&r, "rotated_at")? {
                Some(rotated_at) => Ok(Rotation::AlreadyRotated {
                    session_id: r.try_get("session_id")?,
                    user_id: r.try_get("user_id")?,
                    rotated_at,
                    latest: !r.try_get::<bool, _>("superseded")?,
                }),
                None => Ok(Rotation::Invalid),
            };
        };
        let session_id: String = spent.try_get("session_id")?;
        let user_id: String = spent.try_get("user_id")?;
        let created: String =
            sqlx::query_scalar("SELECT created_at FROM sessions WHERE session_id = ?")
                .bind(&session_id)
                .fetch_one(&mut *tx)
                .await?;
        let next = capped(next, parse_ts(&created)? + session_max_lifetime);
        Self::insert_refresh(&mut tx, &session_id, &user_id, &next, now).await?;
        let sql = format!("SELECT {USER_COLS} FROM users u WHERE u.user_id = ?");
        let user_row = sqlx::query(&sql).bind(&user_id).fetch_one(&mut *tx).await?;
        let user = user_from_row(&user_row)?;
        tx.commit().await?;
        Ok(Rotation::Rotated { session_id, user })
    }

    async fn session_principal(
        &self,
        session_id: &str,
    ) -> Result<Option<SessionPrincipal>, StoreError> {
        let sql = format!(
            "SELECT s.session_id AS sid, s.expires_at AS s_expires, s.revoked_at AS s_revoked, \
             {USER_COLS} FROM sessions s JOIN users u ON u.user_id = s.user_id \
             WHERE s.session_id = ?"
        );
        let row = sqlx::query(&sql)
            .bind(session_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(SessionPrincipal {
                session_id: r.try_get("sid")?,
                expires_at: parse_ts(&r.try_get::<String, _>("s_expires")?)?,
                revoked: opt_ts(&r, "s_revoked")?.is_some(),
                user: user_from_row(&r)?,
            })
        })
        .transpose()
    }

    async fn session_of_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row =
            sqlx::query("SELECT session_id, user_id FROM refresh_tokens WHERE token_hash = ?")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row
            .map(|r| -> Result<_, sqlx::Error> {
                Ok((r.try_get("session_id")?, r.try_get("user_id")?))
            })
            .transpose()?)
    }

    async fn revoke_session(
        &self,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE sessions SET revoked_at = ? WHERE session_id = ? AND revoked_at IS NULL",
        )
        .bind(ts(now))
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE refresh_tokens SET revoked = 1 WHERE session_id = ?")
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ended: Vec<String> = sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL \
             AND session_id IS NOT ? RETURNING session_id",
        )
        .bind(ts(now))
        .bind(user_id)
        .bind(except)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked = 1 WHERE revoked = 0 AND session_id IN \
             (SELECT session_id FROM sessions WHERE user_id = ? AND revoked_at IS NOT NULL)",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn unexpired_session_ids(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT session_id FROM sessions WHERE user_id = ? AND expires_at > ?",
        )
        .bind(user_id)
        .bind(ts(Utc::now()))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (key_id, key_hash, key_hint, user_id, name, created_at, \
             expires_at, disabled) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.key_id)
        .bind(&key.key_hash)
        .bind(&key.key_hint)
        .bind(&key.user_id)
        .bind(&key.name)
        .bind(ts(key.created_at))
        .bind(key.expires_at.map(ts))
        .bind(key.revoked)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLS} FROM api_keys k WHERE k.user_id = ? AND k.disabled = 0 ORDER BY k.id"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_api_key(&self, user_id: &str, key_id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE api_keys SET disabled = 1 WHERE key_id = ? AND user_id = ? AND disabled = 0",
        )
        .bind(key_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn revoke_user_api_keys(
        &self,
        user_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "UPDATE api_keys SET disabled = 1 WHERE user_id = ? AND disabled = 0 \
             RETURNING key_id, key_hash",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<KeyPrincipal>, StoreError> {
        self.fetch_key("k.key_hash = ?", key_hash).await
    }

    async fn api_key_by_id(&self, key_id: &str) -> Result<Option<KeyPrincipal>, StoreError> {
        self.fetch_key("k.key_id = ?", key_id).await
    }

    async fn api_keys_of_user(&self, user_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT key_id, key_hash FROM api_keys WHERE user_id = ?")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn touch_api_keys(&self, used: &[(String, DateTime<Utc>)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (key_id, at) in used {
            sqlx::query("UPDATE api_keys SET last_used = ? WHERE key_id = ?")
                .bind(ts(*at))
                .bind(key_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
