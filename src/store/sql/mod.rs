//! The `Store` implementation both engines share: one SQL text per operation (`$N`
//! parameters, which sqlx binds by number on SQLite too; `true`/`false`; `RETURNING`), one
//! body per method, timestamps from the application's clock. `sql_store!` instantiates it
//! for an engine's concrete pool and row types; the engine files keep only what truly
//! differs — connecting, migrating, and how a timestamp is stored (`ts`, `read_ts`).

pub(super) mod rows;

/// Columns of a `users` row, for `SELECT … FROM users u` and joins.
pub(super) const USER_COLS: &str = "u.user_id, u.email, u.password_hash, u.full_name, \
     u.organization, u.role, u.disabled, u.email_verified, u.created_at, u.updated_at, \
     u.last_login";
/// The same columns, unqualified, for `RETURNING`.
pub(super) const USER_RETURNING: &str = "user_id, email, password_hash, full_name, \
     organization, role, disabled, email_verified, created_at, updated_at, last_login";
/// Aliased, because key and user rows are read from one joined row with shared column names.
pub(super) const KEY_COLS: &str = "k.key_id AS k_key_id, k.key_hash AS k_key_hash, \
     k.key_hint AS k_key_hint, k.user_id AS k_user_id, k.name AS k_name, \
     k.created_at AS k_created_at, k.expires_at AS k_expires_at, k.last_used AS k_last_used, \
     k.disabled AS k_disabled";

/// Whether an insert or update failed because the email is taken. Both engines report a
/// unique violation; PostgreSQL names the constraint (`idx_users_email`), SQLite names the
/// column in its message.
pub(super) fn email_taken(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation() && db.constraint().unwrap_or(db.message()).contains("email")
        }
        _ => false,
    }
}

/// Implements `Store` for `$store` (with a `pool` field). `$ts` turns a timestamp into the
/// engine's stored form; `$read_ts(row, column)` reads one back, `Option`al.
macro_rules! sql_store {
    ($store:ty, $db:ty, $row:ty, ts = $ts:path, read_ts = $read_ts:path) => {
        use sqlx::Row as _;

        use super::sql::{email_taken, USER_COLS, USER_RETURNING};

        super::sql::rows::sql_rows!($store, $db, $row, ts = $ts, read_ts = $read_ts);

        #[async_trait::async_trait]
        impl Store for $store {
            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn create_user(&self, new: &NewUser) -> Result<User, StoreError> {
                let sql = format!(
                    "INSERT INTO users (user_id, email, password_hash, full_name, organization, \
                     role, disabled, created_at, updated_at) \
                     VALUES ($1, lower($2), $3, $4, $5, $6, $7, $8, $8) RETURNING {USER_RETURNING}"
                );
                let result = sqlx::query(&sql)
                    .bind(&new.user_id)
                    .bind(&new.email)
                    .bind(&new.password_hash)
                    .bind(&new.full_name)
                    .bind(&new.organization)
                    .bind(new.role.as_str())
                    .bind(new.disabled)
                    .bind($ts(new.created_at))
                    .fetch_one(&self.pool)
                    .await;
                match result {
                    Ok(row) => user_from_row(&row),
                    Err(e) if email_taken(&e) => Err(StoreError::EmailTaken),
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
                let rows = sqlx::query(&sql).bind(limit).bind(offset).fetch_all(&self.pool).await?;
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(&self.pool)
                    .await?;
                let users = rows.iter().map(user_from_row).collect::<Result<_, _>>()?;
                Ok((users, total))
            }

            async fn update_user(&self, user_id: &str, patch: &UserPatch) -> Result<Option<User>, StoreError> {
                let sql = format!(
                    "UPDATE users SET email = COALESCE(lower($1), email), \
                     full_name = COALESCE($2, full_name), \
                     organization = CASE WHEN $3 THEN $4 ELSE organization END, \
                     role = COALESCE($5, role), disabled = COALESCE($6, disabled), \
                     updated_at = $7 WHERE user_id = $8 RETURNING {USER_RETURNING}"
                );
                let result = sqlx::query(&sql)
                    .bind(&patch.email)
                    .bind(&patch.full_name)
                    .bind(patch.organization.is_some())
                    .bind(patch.organization.clone().flatten())
                    .bind(patch.role.map(Role::as_str))
                    .bind(patch.disabled)
                    .bind($ts(Utc::now()))
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await;
                match result {
                    Ok(row) => row.as_ref().map(user_from_row).transpose(),
                    Err(e) if email_taken(&e) => Err(StoreError::EmailTaken),
                    Err(e) => Err(e.into()),
                }
            }

            async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE user_id = $3")
                    .bind(hash)
                    .bind($ts(Utc::now()))
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn record_login(&self, user_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
                sqlx::query("UPDATE users SET last_login = $1 WHERE user_id = $2")
                    .bind($ts(at))
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn create_session(&self, session: &NewSession, first: &NewRefreshToken) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO sessions (session_id, user_id, created_at, expires_at, \
                     user_agent, ip_address) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&session.session_id)
                .bind(&session.user_id)
                .bind($ts(session.created_at))
                .bind($ts(first.expires_at))
                .bind(&session.user_agent)
                .bind(&session.ip_address)
                .execute(&mut *tx)
                .await?;
                Self::insert_refresh(&mut tx, &session.session_id, &session.user_id, first, session.created_at)
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
                // The conditional UPDATE is the single point of decision: SQLite's write lock,
                // or PostgreSQL's row lock (a second UPDATE waits, then re-checks
                // `rotated_at IS NULL`), lets only one of two racing calls spend the token.
                let spent = sqlx::query(
                    "UPDATE refresh_tokens SET rotated_at = $1 WHERE token_hash = $2 \
                     AND rotated_at IS NULL AND revoked = false AND expires_at > $1 \
                     AND session_id IN (SELECT session_id FROM sessions WHERE revoked_at IS NULL) \
                     AND user_id IN (SELECT user_id FROM users WHERE disabled = false) \
                     RETURNING session_id, user_id",
                )
                .bind($ts(now))
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
                    return match $read_ts(&r, "rotated_at")? {
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
                let session = sqlx::query("SELECT created_at FROM sessions WHERE session_id = $1")
                    .bind(&session_id)
                    .fetch_one(&mut *tx)
                    .await?;
                let created = $read_ts(&session, "created_at")?
                    .ok_or_else(|| StoreError::Corrupt("session created_at is null".into()))?;
                let next = super::capped(next, created + session_max_lifetime);
                Self::insert_refresh(&mut tx, &session_id, &user_id, &next, now).await?;
                let sql = format!("SELECT {USER_COLS} FROM users u WHERE u.user_id = $1");
                let user_row = sqlx::query(&sql).bind(&user_id).fetch_one(&mut *tx).await?;
                let user = user_from_row(&user_row)?;
                tx.commit().await?;
                Ok(Rotation::Rotated { session_id, user })
            }

            async fn session_principal(&self, session_id: &str) -> Result<Option<SessionPrincipal>, StoreError> {
                let sql = format!(
                    "SELECT s.session_id AS sid, s.expires_at AS s_expires, \
                     s.revoked_at AS s_revoked, {USER_COLS} \
                     FROM sessions s JOIN users u ON u.user_id = s.user_id WHERE s.session_id = $1"
                );
                let row = sqlx::query(&sql).bind(session_id).fetch_optional(&self.pool).await?;
                row.map(|r| {
                    Ok(SessionPrincipal {
                        session_id: r.try_get("sid")?,
                        expires_at: $read_ts(&r, "s_expires")?
                            .ok_or_else(|| StoreError::Corrupt("session expires_at is null".into()))?,
                        revoked: $read_ts(&r, "s_revoked")?.is_some(),
                        user: user_from_row(&r)?,
                    })
                })
                .transpose()
            }

            async fn session_of_refresh_token(&self, token_hash: &str) -> Result<Option<(String, String)>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT session_id, user_id FROM refresh_tokens WHERE token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn revoke_session(&self, session_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let ended: Option<String> = sqlx::query_scalar(
                    "UPDATE sessions SET revoked_at = $1 WHERE session_id = $2 \
                     AND revoked_at IS NULL RETURNING session_id",
                )
                .bind($ts(now))
                .bind(session_id)
                .fetch_optional(&mut *tx)
                .await?;
                sqlx::query("UPDATE refresh_tokens SET revoked = true WHERE session_id = $1")
                    .bind(session_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(ended.is_some())
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
                     AND ($3 IS NULL OR session_id <> $3) RETURNING session_id",
                )
                .bind($ts(now))
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
                    "SELECT session_id FROM sessions WHERE user_id = $1 AND expires_at > $2",
                )
                .bind(user_id)
                .bind($ts(Utc::now()))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
                Self::insert_api_key(&self.pool, key).await
            }

            async fn create_api_key_within(
                &self,
                key: &ApiKeyRecord,
                max_live: u32,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                // A write first: PostgreSQL locks the user's row (a second creation for the
                // same user waits here until this one commits, then counts its key), and
                // SQLite takes its one write lock before anything is read.
                sqlx::query("UPDATE users SET updated_at = updated_at WHERE user_id = $1")
                    .bind(&key.user_id)
                    .execute(&mut *tx)
                    .await?;
                let live: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM api_keys WHERE user_id = $1 AND disabled = false \
                     AND (expires_at IS NULL OR expires_at > $2)",
                )
                .bind(&key.user_id)
                .bind($ts(key.created_at))
                .fetch_one(&mut *tx)
                .await?;
                if live >= i64::from(max_live) {
                    return Ok(false);
                }
                Self::insert_api_key(&mut *tx, key).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
                let sql = format!(
                    "SELECT {KEY_COLS} FROM api_keys k WHERE k.user_id = $1 \
                     AND k.disabled = false ORDER BY k.id"
                );
                let rows = sqlx::query(&sql).bind(user_id).fetch_all(&self.pool).await?;
                rows.iter().map(key_from_row).collect()
            }

            async fn revoke_api_key(&self, user_id: &str, key_id: &str) -> Result<bool, StoreError> {
                let revoked: Option<String> = sqlx::query_scalar(
                    "UPDATE api_keys SET disabled = true WHERE key_id = $1 AND user_id = $2 \
                     AND disabled = false RETURNING key_id",
                )
                .bind(key_id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(revoked.is_some())
            }

            async fn revoke_user_api_keys(&self, user_id: &str) -> Result<Vec<(String, String)>, StoreError> {
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
                Ok(sqlx::query_as("SELECT key_id, key_hash FROM api_keys WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn touch_api_keys(&self, used: &[(String, DateTime<Utc>)]) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                for (key_id, at) in used {
                    sqlx::query("UPDATE api_keys SET last_used = $1 WHERE key_id = $2")
                        .bind($ts(*at))
                        .bind(key_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(in crate::store) use sql_store;
