//! The SQLite store: one file, write-ahead log (WAL).
//!
//! Durability is chosen in the URL with `?synchronous=full` (the default) or
//! `?synchronous=normal`; the parameter is ours and is removed before the URL goes to the driver.
//!
//! - `full`: the WAL is synced at every commit, so an append that returned `Ok` survives a crash
//!   of the process *and* of the machine (power loss). Each commit costs one fsync; group commit
//!   shares it among all appends waiting at that moment, so throughput grows with the number of
//!   appends in flight.
//! - `normal`: commits are written to the WAL but synced only at checkpoints. An acknowledged
//!   append survives a crash of the process (kill -9), which is what the design requires, but
//!   the last commits can be lost if the machine itself loses power; the file stays consistent
//!   either way. Commits no longer wait for the disk.
//!
//! Appends take the write lock up front (`BEGIN IMMEDIATE`), so a second writer process waits
//! (busy timeout) instead of failing half-way.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::sql::{Dialect, Placeholders, STATEMENT_CACHE, impl_audit_store};
use super::{LeafRow, StoredRecord};
use crate::Error;
use crate::audit::merkle::{Hash, NodeId};

mod direct;

/// An audit log in a SQLite file.
///
/// Appends go through one dedicated connection (`direct.rs`, rusqlite): SQLite keeps its page
/// cache per connection and drops it when another connection has changed the file, so a single
/// appending connection keeps the tree and index pages hot. The rare other writes (creation,
/// upgrade, signed heads, purges) use a sqlx connection of their own; reads use a small sqlx
/// pool, except a full verification's scan, which is rusqlite's too.
///
/// Checkpoints (copying the WAL back into the database file) run in a background task on a read
/// connection, in PASSIVE mode, so the writer does not stop for them; the writer's own automatic
/// checkpoint is left as a backstop (`WAL_BACKSTOP_PAGES`).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    write: SqlitePool,
    direct: Arc<direct::Direct>,
    _checkpointer: Arc<AbortOnDrop>,
}

/// How often the background task checkpoints the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL pages after which the committing writer checkpoints itself (256 MiB of 4 KiB pages); by
/// then the background task has copied most of them, so this checkpoint is short, and the WAL
/// starts over from its beginning. A long WAL lets hot index pages be rewritten many times
/// before they are copied once.
const WAL_BACKSTOP_PAGES: u32 = 65_536;

/// The appending connection's page cache (negative: KiB): the right edges of the tables, the
/// current epoch of the object and leaf indexes and the upper levels of every B-tree stay in
/// it. No larger: SQLite walks the whole cache's hash table at the end of many transactions
/// (`pcache1TruncateUnsafe`), and with 32 MiB that walk was 6 % of a small commit; 8 MiB made
/// 16 one-at-a-time writers 30 % faster and left large batches as fast.
const WRITER_CACHE_KIB: &str = "-8192";
/// Each reader's page cache (KiB): enough for the upper levels of the B-trees that proofs
/// descend; a verification streams through the file and gains nothing from a larger one, and
/// with four readers a larger cache would only add to the process's memory.
const READER_CACHE_KIB: &str = "-8192";

/// Bytes of WAL file kept after the WAL starts over.
const JOURNAL_SIZE_LIMIT: u32 = 64 * 1024 * 1024;

/// The settings of every connection to the file, sqlx's and rusqlite's (`direct.rs`), as
/// `PRAGMA` name and value. The journal mode (WAL) belongs to the file; the busy timeout is set
/// through each driver.
fn pragmas(synchronous: &'static str, cache_kib: &'static str) -> [(&'static str, String); 5] {
    [
        ("synchronous", synchronous.to_owned()),
        ("cache_size", cache_kib.to_owned()),
        // Statement journals and the sorts of an index build in memory, not in temporary files.
        ("temp_store", "memory".to_owned()),
        ("wal_autocheckpoint", WAL_BACKSTOP_PAGES.to_string()),
        ("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string()),
    ]
}

/// Stops the background checkpoint task when the last clone of the store goes.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SqliteStore {
    /// Opens `sqlite:PATH[?synchronous=full|normal]`, creating the file when `create` is set.
    ///
    /// # Errors
    /// [`Error::Store`] when the URL is bad or the file cannot be opened.
    pub async fn connect(url: &str, create: bool) -> Result<Self, Error> {
        let (url, synchronous) = split_synchronous(url)?;
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(|e| Error::Store(format!("bad SQLite URL: {e}")))?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(30))
            .statement_cache_capacity(STATEMENT_CACHE);
        let open = |max, cache_kib| {
            let options = pragmas(synchronous, cache_kib).into_iter().fold(options.clone(), |o, (k, v)| o.pragma(k, v));
            SqlitePoolOptions::new()
                .max_connections(max)
                .test_before_acquire(false) // a local file: a broken connection fails the statement anyway
                .connect_with(options)
        };
        let write = open(1, READER_CACHE_KIB)
            .await
            .map_err(|e| Error::Store(format!("cannot open the SQLite audit store: {e}")))?;
        let pool = open(4, READER_CACHE_KIB)
            .await
            .map_err(|e| Error::Store(format!("cannot open the SQLite audit store: {e}")))?;
        let checkpoints = pool.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
            while !checkpoints.is_closed() {
                ticks.tick().await;
                // A failed checkpoint is retried at the next tick; the backstop bounds the WAL.
                let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&checkpoints).await;
            }
        });
        let direct = Arc::new(direct::Direct::new(options.get_filename().to_path_buf(), synchronous));
        Ok(Self { pool, write, direct, _checkpointer: Arc::new(AbortOnDrop(task.abort_handle())) })
    }

    /// The batch insert of `append` (after its checks), on the rusqlite writer.
    async fn append_rows(&self, records: Vec<StoredRecord>, nodes: Vec<(NodeId, Hash)>) -> Result<(), Error> {
        let direct = Arc::clone(&self.direct);
        tokio::task::spawn_blocking(move || direct.append(&records, &nodes))
            .await
            .map_err(|e| Error::Store(format!("the audit append stopped: {e}")))?
    }

    /// Closes the rusqlite connections (part of `close`).
    fn close_rows(&self) {
        self.direct.close();
    }

    /// The scan of `scan_leaves`, on a rusqlite reader.
    async fn scan_rows<F>(&self, from: u64, end: u64, check: F) -> Result<(), Error>
    where
        F: FnMut(&LeafRow<'_>) -> Result<(), Error> + Send,
    {
        self.direct.scan(from, end, check).await
    }
}

/// Takes our `synchronous` parameter out of the URL: `FULL` (the default) or `NORMAL`.
fn split_synchronous(url: &str) -> Result<(String, &'static str), Error> {
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_owned(), "FULL")) };
    let mut synchronous = "FULL";
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("synchronous", "full" | "FULL")) => synchronous = "FULL",
            Some(("synchronous", "normal" | "NORMAL")) => synchronous = "NORMAL",
            Some(("synchronous", other)) => {
                return Err(Error::Store(format!(
                    "synchronous={other} is not allowed for an audit log (full or normal)"
                )));
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    Ok((url, synchronous))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_synchronous_parameter_out_of_the_url() {
        let (url, s) = split_synchronous("sqlite:/a/b.db?synchronous=normal&mode=rwc").unwrap();
        assert_eq!((url.as_str(), s == "NORMAL"), ("sqlite:/a/b.db?mode=rwc", true));
        let (url, s) = split_synchronous("sqlite:/a/b.db").unwrap();
        assert_eq!((url.as_str(), s == "FULL"), ("sqlite:/a/b.db", true));
        assert!(split_synchronous("sqlite:x.db?synchronous=off").is_err());
    }
}

/// SQLite: `BEGIN IMMEDIATE` takes the write lock up front, which also serialises upgrades.
static SQLITE: Dialect = Dialect {
    schema: include_str!("sqlite.sql"),
    begin_write: "BEGIN IMMEDIATE",
    lock_format: "SELECT format FROM audit_metadata WHERE id = 1",
    upgrade_2: include_str!("sqlite_upgrade_2.sql"),
    upgrade_3: include_str!("sqlite_upgrade_3.sql"),
    placeholders: Placeholders::Anonymous,
};

impl_audit_store!(SqliteStore, sqlx::Sqlite, SQLITE);
