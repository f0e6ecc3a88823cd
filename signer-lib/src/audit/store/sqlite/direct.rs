//! The SQLite store's two hot loops on rusqlite: the group commit's insert and a full
//! verification's scan. Everything else in the store goes through sqlx.
//!
//! Why a second driver: sqlx-sqlite runs each connection on a worker thread of its own and hands
//! every statement, every bound value and every result value across threads as owned copies. A
//! batch of appends cost four hand-offs and an allocation per bound value, and on a full
//! verification the driver's copying was half of the time. rusqlite calls SQLite in place: a
//! batch is one hand-off to a blocking thread, and the scan reads each row's columns where SQLite
//! holds them and packs a thousand rows into two buffers. Both drivers link the same bundled
//! SQLite (one `libsqlite3-sys`), and both open the file in WAL mode, so their connections share
//! the file's locks like any two connections.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use tokio::sync::mpsc;

use super::super::sql::{from_db, stored_leaf_key, to_db};
use super::super::{LeafRow, StoredRecord, leaf_key, text_key};
use super::{READER_CACHE_KIB, WRITER_CACHE_KIB, pragmas};
use crate::Error;
use crate::audit::merkle::{Hash, NodeId};

const INSERT_RECORD: &str = "INSERT INTO audit_records \
     (idx, time_ms, actor, event, object, record, leaf_hash, leaf_key, actor_key, object_key) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

const INSERT_NODE: &str = "INSERT INTO audit_nodes (level, idx, hash) VALUES (?1, ?2, ?3)";

/// Each record joined with its level-0 tree node (one row per record); `node` is 1 when the
/// node equals the leaf hash, 0 when it differs, NULL when it is missing.
const SCAN: &str = "SELECT r.idx, r.time_ms, r.actor, r.event, r.object, r.record, r.leaf_hash, \
     r.leaf_key, r.actor_key, r.object_key, \
     CASE WHEN n.hash IS NULL THEN NULL WHEN n.hash = r.leaf_hash THEN 1 ELSE 0 END \
     FROM audit_records r LEFT JOIN audit_nodes n ON n.level = 0 AND n.idx = r.idx \
     WHERE r.idx >= ?1 AND r.idx < ?2 ORDER BY r.idx";

/// Rows per batch handed from the scanning thread to the checker.
const BATCH_ROWS: usize = 1024;
/// Batches in flight between them: the scan runs ahead of the checks by at most this many.
const BATCHES_AHEAD: usize = 4;

/// The rusqlite connections: one writer (only the log's writer task appends) and one reader
/// kept between scans (a concurrent scan opens its own). Opened on first use.
#[derive(Debug)]
pub(in crate::audit::store) struct Direct {
    path: PathBuf,
    synchronous: &'static str,
    writer: Mutex<Option<Connection>>,
    reader: Mutex<Option<Connection>>,
}

/// A rusqlite error, as a store error.
fn sql_err(context: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::Store(format!("{context}: {e}"))
}

impl Direct {
    /// The file at `path`, which the sqlx pools have already opened (and put in WAL mode);
    /// `synchronous` is `FULL` or `NORMAL`.
    pub(in crate::audit::store) fn new(path: PathBuf, synchronous: &'static str) -> Self {
        Self { path, synchronous, writer: Mutex::new(None), reader: Mutex::new(None) }
    }

    /// Closes the connections that are not in use (one in use is closed when its work ends).
    pub(in crate::audit::store) fn close(&self) {
        drop(self.writer.lock().unwrap_or_else(PoisonError::into_inner).take());
        drop(self.reader.lock().unwrap_or_else(PoisonError::into_inner).take());
    }

    /// A connection with the store's settings (see `sqlite.rs`).
    fn open(&self, cache_kib: &'static str) -> Result<Connection, Error> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_err("cannot open the SQLite audit store"))?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(sql_err("configuring the SQLite audit store"))?;
        for (name, value) in pragmas(self.synchronous, cache_kib) {
            conn.pragma_update(None, name, value).map_err(sql_err("configuring the SQLite audit store"))?;
        }
        Ok(conn)
    }

    /// Inserts `records` and `nodes` in one write transaction and commits (durable as the
    /// store's `synchronous` says). Blocking: call it from a blocking thread.
    pub(in crate::audit::store) fn append(
        &self,
        records: &[StoredRecord],
        nodes: &[(NodeId, Hash)],
    ) -> Result<(), Error> {
        let mut slot = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = match &mut *slot {
            Some(conn) => conn,
            empty => empty.insert(self.open(WRITER_CACHE_KIB)?),
        };
        let result = insert(conn, records, nodes);
        if result.is_err() {
            // The transaction was rolled back when it was dropped; a fresh connection next time
            // leaves nothing of a broken one behind.
            *slot = None;
        }
        result
    }

    /// Streams the leaves `from..end` (see [`SCAN`]) through `check`, in index order; stops at
    /// the first error.
    pub(in crate::audit::store) async fn scan<F>(
        self: &Arc<Self>,
        from: u64,
        end: u64,
        mut check: F,
    ) -> Result<(), Error>
    where
        F: FnMut(&LeafRow<'_>) -> Result<(), Error> + Send,
    {
        let (from, end) = (to_db(from)?, to_db(end)?);
        let (tx, mut rx) = mpsc::channel(BATCHES_AHEAD);
        let direct = Arc::clone(self);
        let scanner = tokio::task::spawn_blocking(move || direct.scan_blocking(from, end, &tx));
        while let Some(batch) = rx.recv().await {
            let batch: LeafBatch = batch?;
            for row in &batch.rows {
                check(&batch.leaf(row))?;
            }
        }
        scanner.await.map_err(|e| Error::Store(format!("the audit scan stopped: {e}")))
    }

    /// The scanning thread: reads rows into batches and sends them; stops when the receiver is
    /// gone (a check failed).
    fn scan_blocking(&self, from: i64, end: i64, tx: &mpsc::Sender<Result<LeafBatch, Error>>) {
        let taken = self.reader.lock().unwrap_or_else(PoisonError::into_inner).take();
        let conn = match taken.map_or_else(|| self.open(READER_CACHE_KIB), Ok) {
            Ok(conn) => conn,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let scanned = (|| {
            let mut stmt = conn.prepare_cached(SCAN).map_err(sql_err("reading audit records"))?;
            let mut rows = stmt.query(params![from, end]).map_err(sql_err("reading audit records"))?;
            let mut batch = LeafBatch::default();
            while let Some(row) = rows.next().map_err(sql_err("reading audit records"))? {
                batch.push(row)?;
                if batch.rows.len() == BATCH_ROWS && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                    return Ok(());
                }
            }
            if !batch.rows.is_empty() {
                let _ = tx.blocking_send(Ok(batch));
            }
            Ok(())
        })();
        if let Err(e) = scanned {
            let _ = tx.blocking_send(Err(e));
        }
        let mut slot = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(conn);
        }
    }
}

/// The insert transaction of [`Direct::append`].
fn insert(conn: &mut Connection, records: &[StoredRecord], nodes: &[(NodeId, Hash)]) -> Result<(), Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql_err("begin"))?;
    {
        let mut insert = tx.prepare_cached(INSERT_RECORD).map_err(sql_err("inserting audit records"))?;
        for r in records {
            insert
                .execute(params![
                    to_db(r.index)?,
                    r.time,
                    r.actor,
                    r.event,
                    r.object,
                    r.der,
                    &r.leaf_hash[..],
                    leaf_key(&r.leaf_hash),
                    text_key(&r.actor),
                    r.object.as_deref().map(text_key),
                ])
                .map_err(sql_err("inserting audit records"))?;
        }
        let mut insert = tx.prepare_cached(INSERT_NODE).map_err(sql_err("inserting tree nodes"))?;
        for (id, hash) in nodes {
            insert
                .execute(params![i64::from(id.level), to_db(id.index)?, &hash[..]])
                .map_err(sql_err("inserting tree nodes (a second writer appending to this log?)"))?;
        }
    }
    tx.commit().map_err(sql_err("committing audit records"))
}

/// Up to [`BATCH_ROWS`] scanned rows: their text columns in one string, their blobs in one
/// buffer, and per row the integers and the ranges.
#[derive(Debug, Default)]
struct LeafBatch {
    text: String,
    bytes: Vec<u8>,
    rows: Vec<PackedLeaf>,
}

#[derive(Debug)]
struct PackedLeaf {
    index: u64,
    time: i64,
    actor: Range<usize>,
    event: Range<usize>,
    object: Option<Range<usize>>,
    der: Range<usize>,
    leaf_hash: Range<usize>,
    leaf_key: i64,
    actor_key: i64,
    object_key: Option<i64>,
    node_matches: Option<bool>,
}

impl LeafBatch {
    /// Copies one row of [`SCAN`] in.
    ///
    /// SQLite lets an edited column hold any type. Whatever a column holds is taken the way
    /// SQLite's own conversion to text would take it, so that the checks compare it with the
    /// record and name the row; an integer column holding something else gets a value that can
    /// never match the record (a time of `i64::MIN`, the complement of the right key).
    fn push(&mut self, row: &rusqlite::Row<'_>) -> Result<(), Error> {
        let get = |i| row.get_ref(i).map_err(sql_err("reading audit records"));
        let index = match get(0)? {
            ValueRef::Integer(i) => from_db(i, "record index")?,
            _ => return Err(Error::Store("a record index that is not an integer".into())),
        };
        let actor = self.text(get(2)?);
        let event = self.text(get(3)?);
        let object = match get(4)? {
            ValueRef::Null => None,
            v => Some(self.text(v)),
        };
        let der = self.bytes(get(5)?);
        let leaf_hash = self.bytes(get(6)?);
        let time = int(get(1)?).unwrap_or(i64::MIN);
        let leaf_key = int(get(7)?).unwrap_or_else(|| !stored_leaf_key(&self.bytes[leaf_hash.clone()]));
        let actor_key = int(get(8)?).unwrap_or_else(|| !text_key(&self.text[actor.clone()]));
        let object_key = match get(9)? {
            ValueRef::Null => None,
            ValueRef::Integer(i) => Some(i),
            _ => Some(object.clone().map_or(0, |o| !text_key(&self.text[o]))),
        };
        let node_matches = match get(10)? {
            ValueRef::Integer(n) => Some(n == 1),
            _ => None,
        };
        self.rows.push(PackedLeaf {
            index,
            time,
            actor,
            event,
            object,
            der,
            leaf_hash,
            leaf_key,
            actor_key,
            object_key,
            node_matches,
        });
        Ok(())
    }

    fn text(&mut self, value: ValueRef<'_>) -> Range<usize> {
        let start = self.text.len();
        match value {
            ValueRef::Null => {}
            ValueRef::Integer(i) => {
                let _ = write!(self.text, "{i}");
            }
            ValueRef::Real(f) => {
                let _ = write!(self.text, "{f}");
            }
            ValueRef::Text(b) | ValueRef::Blob(b) => self.text.push_str(&String::from_utf8_lossy(b)),
        }
        start..self.text.len()
    }

    fn bytes(&mut self, value: ValueRef<'_>) -> Range<usize> {
        let start = self.bytes.len();
        match value {
            ValueRef::Null => {}
            ValueRef::Integer(i) => self.bytes.extend_from_slice(i.to_string().as_bytes()),
            ValueRef::Real(f) => self.bytes.extend_from_slice(f.to_string().as_bytes()),
            ValueRef::Text(b) | ValueRef::Blob(b) => self.bytes.extend_from_slice(b),
        }
        start..self.bytes.len()
    }

    /// Row `row` as the checks see it.
    fn leaf(&self, row: &PackedLeaf) -> LeafRow<'_> {
        LeafRow {
            index: row.index,
            time: row.time,
            actor: &self.text[row.actor.clone()],
            event: &self.text[row.event.clone()],
            object: row.object.clone().map(|o| &self.text[o]),
            der: &self.bytes[row.der.clone()],
            leaf_hash: &self.bytes[row.leaf_hash.clone()],
            leaf_key: row.leaf_key,
            actor_key: row.actor_key,
            object_key: row.object_key,
            node_matches: row.node_matches,
        }
    }
}

fn int(value: ValueRef<'_>) -> Option<i64> {
    match value {
        ValueRef::Integer(i) => Some(i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_get_the_store_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        drop(Connection::open(&path).unwrap());
        let conn = Direct::new(path, "NORMAL").open(WRITER_CACHE_KIB).unwrap();
        let get = |pragma: &str| conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(get("synchronous"), 1, "NORMAL");
        assert_eq!(get("cache_size"), -8192);
        assert_eq!(get("temp_store"), 2, "memory");
        assert_eq!(get("wal_autocheckpoint"), 65_536);
        assert_eq!(get("journal_size_limit"), 64 * 1024 * 1024);
    }
}
