//! Reading rows into the store's types, and the helpers the shared operations build on
//! (fetching a user or a key with its user, storing a refresh token), for `sql_store!`.

/// Row decoding and helper methods for `$store`; see `sql_store!`.
macro_rules! sql_rows {
    ($store:ty, $db:ty, $row:ty, ts = $ts:path, read_ts = $read_ts:path) => {
        use super::sql::KEY_COLS;

        fn user_from_row(row: &$row) -> Result<User, StoreError> {
            let role: String = row.try_get("role")?;
            let required = |col: &str| {
                $read_ts(row, col)?.ok_or_else(|| StoreError::Corrupt(format!("{col} is null")))
            };
            Ok(User {
                user_id: row.try_get("user_id")?,
                email: row.try_get("email")?,
                password_hash: row.try_get("password_hash")?,
                full_name: row.try_get("full_name")?,
                organization: row.try_get("organization")?,
                role: Role::parse(&role)
                    .ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
                disabled: row.try_get("disabled")?,
                email_verified: row.try_get("email_verified")?,
                created_at: required("created_at")?,
                updated_at: required("updated_at")?,
                last_login: $read_ts(row, "last_login")?,
            })
        }

        fn key_from_row(row: &$row) -> Result<ApiKeyRecord, StoreError> {
            Ok(ApiKeyRecord {
                key_id: row.try_get("k_key_id")?,
                key_hash: row.try_get("k_key_hash")?,
                key_hint: row.try_get("k_key_hint")?,
                user_id: row.try_get("k_user_id")?,
                name: row.try_get("k_name")?,
                created_at: $read_ts(row, "k_created_at")?
                    .ok_or_else(|| StoreError::Corrupt("key created_at is null".into()))?,
                expires_at: $read_ts(row, "k_expires_at")?,
                last_used: $read_ts(row, "k_last_used")?,
                revoked: row.try_get("k_disabled")?,
            })
        }

        impl $store {
            async fn fetch_user(&self, clause: &str, value: &str) -> Result<Option<User>, StoreError> {
                let sql = format!("SELECT {USER_COLS} FROM users u WHERE {clause}");
                let row = sqlx::query(&sql).bind(value).fetch_optional(&self.pool).await?;
                row.as_ref().map(user_from_row).transpose()
            }

            async fn fetch_key(&self, clause: &str, value: &str) -> Result<Option<KeyPrincipal>, StoreError> {
                let sql = format!(
                    "SELECT {KEY_COLS}, {USER_COLS} FROM api_keys k \
                     JOIN users u ON u.user_id = k.user_id WHERE {clause}"
                );
                let row = sqlx::query(&sql).bind(value).fetch_optional(&self.pool).await?;
                row.map(|r| Ok(KeyPrincipal { key: key_from_row(&r)?, user: user_from_row(&r)? }))
                    .transpose()
            }

            /// Inserts `key` through `exec` (the pool, or a transaction).
            async fn insert_api_key<'e, E>(exec: E, key: &ApiKeyRecord) -> Result<(), StoreError>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                sqlx::query(
                    "INSERT INTO api_keys (key_id, key_hash, key_hint, user_id, name, created_at, \
                     expires_at, disabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&key.key_id)
                .bind(&key.key_hash)
                .bind(&key.key_hint)
                .bind(&key.user_id)
                .bind(&key.name)
                .bind($ts(key.created_at))
                .bind(key.expires_at.map($ts))
                .bind(key.revoked)
                .execute(exec)
                .await?;
                Ok(())
            }

            /// Stores `token` in its session, whose expiry follows the newest token's.
            async fn insert_refresh(
                tx: &mut sqlx::Transaction<'_, $db>,
                session_id: &str,
                user_id: &str,
                token: &NewRefreshToken,
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, user_id, session_id, created_at, \
                     expires_at, user_agent, ip_address) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&token.token_hash)
                .bind(user_id)
                .bind(session_id)
                .bind($ts(now))
                .bind($ts(token.expires_at))
                .bind(&token.user_agent)
                .bind(&token.ip_address)
                .execute(&mut **tx)
                .await?;
                sqlx::query("UPDATE sessions SET expires_at = $1 WHERE session_id = $2")
                    .bind($ts(token.expires_at))
                    .bind(session_id)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }
        }
    };
}

pub(in crate::store) use sql_rows;
