//! The production store: PostgreSQL through sqlx, migrated from `migrations/postgres/`.
//! Every statement runs under a server-side `statement_timeout`, and pool acquisition has its
//! own timeout, so a dead or slow database fails a request instead of hanging it.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};

use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const USER_COLS: &str = "u.user_id, u.email, u.password_hash, u.full_name, u.organization, \
     u.role, u.disabled, u.email_verified, u.created_at, u.updated_at, u.last_login";
/// Aliased, because key and user rows are read from one joined row with shared column names.
const KEY_COLS: &str = "k.key_id AS k_key_id, k.key_hash AS k_key_hash, k.key_hint AS k_key_hint, \
     k.user_id AS k_user_id, k.name AS k_name, k.created_at AS k_created_at, \
     k.expires_at AS k_expires_at, k.last_used AS k_last_used, k.disabled AS k_disabled";

fn user_from_row(row: &PgRow) -> Result<User, StoreError> {
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
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_login: row.try_get("last_login")?,
    })
}

fn key_from_row(row: &PgRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        key_id: row.try_get("k_key_id")?,
        key_hash: row.try_get("k_key_hash")?,
        key_hint: row.try_get("k_key_hint")?,
        user_id: row.try_get("k_user_id")?,
        name: row.try_get("k_name")?,
        created_at: row.try_get("k_created_at")?,
        expires_at: row.try_get("k_expires_at")?,
        last_used: row.try_get("k_last_used")?,
        revoked: row.try_get("k_disabled")?,
    })
}

fn email_conflict(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation() && db.constraint() == Some("idx_users_email")
        }
        _ => false,
    }
}

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn open(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
        statement_timeout: Duration,
    ) -> Result<PostgresStore, StoreError> {
        let timeout_ms = statement_timeout.as_millis().max(1).to_string();
        let options = PgConnectOptions::from_str(url)?
            .application_name("portcullis")
            .options([("statement_timeout", timeout_ms.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(PostgresStore { pool })
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
        tx: &mut Transaction<'_, Postgres>,
        session_id: &str,
        user_id: &str,
        token: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, user_id, session_id, created_at, expires_at, \
             user_agent, ip_address) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&token.token_hash)
        .bind(user_id)
        .bind(session_id)
        .bind(now)
        .bind(token.expires_at)
        .bind(&token.user_agent)
        .bind(&token.ip_address)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE sessions SET expires_at = $1 WHERE session_id = $2")
            .bind(token.expires_at)
            .bind(session_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, new: &NewUser) -> Result<User, StoreError> {
        let sql = format!(
            "INSERT INTO users AS u (user_id, email, password_hash, full_name, organization, role, \
             disabled, created_at, updated_at) VALUES ($1, lower($2), $3, $4, $5, $6, $7, $8, $8) \
             RETURNING {USER_COLS}"
        );
        let result = sqlx::query(&sql)
            .bind(&new.user_id)
            .bind(&new.email)
            .bind(&new.password_hash)
            .bind(&new.full_name)
            .bind(&new.organization)
            .bind(new.role.as_str())
            .bind(new.disabled)
            .bind(new.created_at)
            .fetch_one(&self.pool)
            .await;
        match result {
            Ok(row) => user_from_row(&row),
            Err(e) if email_conflict(&e) => Err(StoreError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        self.fetch_user("u.email = lower($1)", email).await
    }

    async fn user_by_id(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        self.fetch_user("u.user_id = $1", user_id).await
    }

    async fn list_users(&self, offset: i64, limit: i64) -> Result<(Vec<User>, i64), StoreError> {
        let sql = format!("SELECT {USER_COLS} FROM users u ORDER BY u.id LIMIT $1 OFFSET $2");
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
        let sql = format!(
            "UPDATE users AS u SET email = COALESCE(lower($1), email), full_name = COALESCE($2, full_name), \
             organization = CASE WHEN $3 THEN $4 ELSE organization END, \
             role = COALESCE($5, role), disabled = COALESCE($6, disabled), updated_at = NOW() \
             WHERE user_id = $7 RETURNING {USER_COLS}"
        );
        let result = sqlx::query(&sql)
            .bind(&patch.email)
            .bind(&patch.full_name)
            .bind(patch.organization.is_some())
            .bind(patch.organization.clone().flatten())
            .bind(patch.role.map(Role::as_str))
            .bind(patch.disabled)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await;
        match result {
            Ok(row) => row.as_ref().map(user_from_row).transpose(),
            Err(e) if email_conflict(&e) => Err(StoreError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET password_hash = $1, updated_at = NOW() WHERE user_id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_login(&self, user_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET last_login = $1 WHERE user_id = $2")
            .bind(at)
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
             ip_address) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&session.session_id)
        .bind(&session.user_id)
        .bind(session.created_at)
        .bind(first.expires_at)
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
        // Row-level locking decides the race: a second concurrent UPDATE waits for the first
        // to commit, re-checks `rotated_at IS NULL`, and matches nothing.
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = $1 WHERE token_hash = $2 \
             AND rotated_at IS NULL AND revoked = false AND expires_at > $1 \
             AND session_id IN (SELECT session_id FROM sessions WHERE revoked_at IS NULL) \
             AND user_id IN (SELECT user_id FROM users WHERE disabled = false) \
             RETURNING session_id, user_id, \
             (SELECT created_at FROM sessions s WHERE s.session_id = refresh_tokens.session_id) \
             AS session_created",
        )
        .bind(now)
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
                 WHERE rt.token_hash = $1",
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
            return match r.try_get::<Option<DateTime<Utc>>, _>("rotated_at")? {
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
        let created: DateTime<Utc> = spent.try_get("session_created")?;
        let next = capped(next, created + session_max_lifetime);
        Self::insert_refresh(&mut tx, &session_id, &user_id, &next, now).await?;
        let sql = format!("SELECT {USER_COLS} FROM users u WHERE u.user_id = $1");
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
             WHERE s.session_id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(session_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(SessionPrincipal {
                session_id: r.try_get("sid")?,
                expires_at: r.try_get("s_expires")?,
                revoked: r
                    .try_get::<Option<DateTime<Utc>>, _>("s_revoked")?
                    .is_some(),
                user: user_from_row(&r)?,
            })
        })
        .transpose()
    }

    async fn session_of_refresh_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT session_id, user_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn revoke_session(
        &self,
        session_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE session_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE refresh_tokens SET revoked = true WHERE session_id = $1")
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
            "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
             AND session_id IS DISTINCT FROM $3 RETURNING session_id",
        )
        .bind(now)
        .bind(user_id)
        .bind(except)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked = true WHERE revoked = false AND session_id IN \
             (SELECT session_id FROM sessions WHERE user_id = $1 AND revoked_at IS NOT NULL)",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn unexpired_session_ids(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT session_id FROM sessions WHERE user_id = $1 AND expires_at > NOW()",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (key_id, key_hash, key_hint, user_id, name, created_at, \
             expires_at, disabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.key_id)
        .bind(&key.key_hash)
        .bind(&key.key_hint)
        .bind(&key.user_id)
        .bind(&key.name)
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.revoked)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLS} FROM api_keys k WHERE k.user_id = $1 AND k.disabled = false \
             ORDER BY k.id"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_api_key(&self, user_id: &str, key_id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE api_keys SET disabled = true WHERE key_id = $1 AND user_id = $2 \
             AND disabled = false",
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
            "UPDATE api_keys SET disabled = true WHERE user_id = $1 AND disabled = false \
             RETURNING key_id, key_hash",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<KeyPrincipal>, StoreError> {
        self.fetch_key("k.key_hash = $1", key_hash).await
    }

    async fn api_key_by_id(&self, key_id: &str) -> Result<Option<KeyPrincipal>, StoreError> {
        self.fetch_key("k.key_id = $1", key_id).await
    }

    async fn api_keys_of_user(&self, user_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT key_id, key_hash FROM api_keys WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn touch_api_keys(&self, used: &[(String, DateTime<Utc>)]) -> Result<(), StoreError> {
        let (ids, times): (Vec<String>, Vec<DateTime<Utc>>) = used.iter().cloned().unzip();
        sqlx::query(
            "UPDATE api_keys AS k SET last_used = v.at FROM UNNEST($1::text[], $2::timestamptz[]) \
             AS v(key_id, at) WHERE k.key_id = v.key_id",
        )
        .bind(&ids)
        .bind(&times)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
