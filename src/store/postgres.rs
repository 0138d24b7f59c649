//! The production store: PostgreSQL through sqlx, migrated from `migrations/postgres/`.
//! Every statement runs under a server-side `statement_timeout`, and pool acquisition has its
//! own timeout, so a dead or slow database fails a request instead of hanging it. Timestamps
//! are `TIMESTAMPTZ`. Everything else is `sql::sql_store!`, shared with SQLite.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Timestamps bind as themselves.
fn ts(t: DateTime<Utc>) -> DateTime<Utc> {
    t
}

fn read_ts(row: &PgRow, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    use sqlx::Row as _;
    Ok(row.try_get(col)?)
}

pub(crate) struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub(crate) async fn open(
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

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }
}

super::sql::sql_store!(PostgresStore, Postgres, PgRow, ts = ts, read_ts = read_ts);
