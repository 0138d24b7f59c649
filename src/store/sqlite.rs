//! The embedded store: SQLite through sqlx, one file, created and migrated on first start.
//! WAL mode, foreign keys on, a busy timeout so concurrent writers queue instead of failing.
//! Timestamps are stored as fixed-width UTC text, so SQL string comparison orders them.
//! Everything else is `sql::sql_store!`, shared with PostgreSQL.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Fixed-width UTC text, so that SQL string comparison orders timestamps correctly.
fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Reads a timestamp column written by `ts`.
fn read_ts(row: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    use sqlx::Row as _;
    row.try_get::<Option<String>, _>(col)?
        .map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| StoreError::Corrupt(format!("timestamp {text:?}")))
        })
        .transpose()
}

pub(crate) struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating the file and its directory if needed) without migrating.
    pub(crate) async fn open(
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

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }
}

super::sql::sql_store!(SqliteStore, Sqlite, SqliteRow, ts = ts, read_ts = read_ts);
