//! The PostgreSQL store. Commits are durable under the server's `synchronous_commit` (on by
//! default; with synchronous replication it also waits for the standby). A second writer is
//! caught by the primary key of the tree nodes: its batch fails and nothing of it is written.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::sql::{Dialect, POSTGRES_INSERTS, Placeholders, STATEMENT_CACHE, impl_audit_store, impl_sqlx_rows};
use crate::Error;

/// An audit log in a PostgreSQL database (in the first schema of the search path).
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// The same pool: the server keeps one cache for all connections.
    write: PgPool,
}

impl PostgresStore {
    /// Connects to `postgres://…`.
    ///
    /// # Errors
    /// [`Error::Store`] when the URL is bad or the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::Store(format!("bad PostgreSQL URL: {e}")))?
            .statement_cache_capacity(STATEMENT_CACHE);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|e| Error::Store(format!("cannot connect to the PostgreSQL audit store: {e}")))?;
        Ok(Self { write: pool.clone(), pool })
    }
}

/// PostgreSQL: the upgrade locks the metadata row, so a second upgrader waits and then sees the
/// new format.
static POSTGRES: Dialect = Dialect {
    schema: include_str!("postgres.sql"),
    begin_write: "BEGIN",
    lock_format: "SELECT format FROM audit_metadata WHERE id = 1 FOR UPDATE",
    upgrade_2: include_str!("postgres_upgrade_2.sql"),
    upgrade_3: include_str!("postgres_upgrade_3.sql"),
    placeholders: Placeholders::Numbered,
};

impl_audit_store!(PostgresStore, sqlx::Postgres, POSTGRES);
impl_sqlx_rows!(PostgresStore, sqlx::Postgres, POSTGRES, POSTGRES_INSERTS);
