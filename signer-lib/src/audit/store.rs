//! Where an audit log lives: one [`AuditStore`] trait, implemented for SQLite (the embedded
//! default) and PostgreSQL (production), chosen by URL in [`Store::connect`].
//!
//! Tables (created by [`AuditStore::init`] from `store/sqlite.sql` or `store/postgres.sql`):
//!
//! | table | rows |
//! |---|---|
//! | `audit_metadata` | one: hash algorithm, origin, head signer's public key, creation time |
//! | `audit_records` | one per leaf: index, time, actor, event, object, record DER, leaf hash, and three 64-bit lookup keys |
//! | `audit_nodes` | one per perfect subtree `(level, idx)`, leaves included: its hash |
//! | `audit_heads` | one per signed tree head: size, root, checkpoint text, time |
//! | `audit_purges` | one per retention purge: the leaf range deleted and the head archived with it |
//!
//! Triggers refuse UPDATE and DELETE on all of them (DELETE on records only below a purge mark),
//! as a guard against accidents; tampering by someone who drops the triggers is what the Merkle
//! tree and the signed heads detect.
//!
//! # Lookup keys (store format 2)
//!
//! The indexes that serve lookups by leaf hash, actor and object are on random keys, so every
//! append writes one index page per record and per index. To keep those pages few and cached,
//! the indexes hold a 64-bit integer instead of the value: [`leaf_key`] (the first eight bytes
//! of the leaf hash) and [`text_key`] (the first eight bytes of SHA-256 of the actor or object
//! text). A lookup finds the rows by key and compares the full value on them, so a key collision
//! costs one more row read, never a wrong answer. The keys are copies like the other query
//! columns: a full verification checks them against the record.
//!
//! # Epochs (store format 3)
//!
//! A random key still lands anywhere in its index, so once the index outgrows the cache every
//! append rewrites a page of its own, and the write-ahead log carries a whole page per record
//! and per index: appends slowed down as the log grew (22,700/s at one million records against
//! 54,000/s at 100,000 on SQLite). The two indexes on keys that are new with almost every record
//! — object and leaf hash — therefore lead with the record's epoch, `idx >> EPOCH_BITS`
//! ([`EPOCH_BITS`]): all the inserts of a batch fall into the current epoch's few hundred pages,
//! whatever the size of the log. A lookup probes each epoch (`(idx >> 16) IN (…)`), about 150
//! index probes at ten million records. The actor index keeps its plain key: an actor's records
//! are one run in it, and an append goes to the end of that run.
//!
//! Older formats are upgraded in place by [`AuditStore::upgrade`], in one transaction, when a
//! log is opened: format 1 (the same tables without the keys, indexes on the values themselves)
//! gets the keys, format 2 (keys, no epochs) gets the epoch indexes.

mod postgres;
mod sql;
mod sqlite;

use std::fmt;
use std::future::Future;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use sha2::Digest as _;

use super::merkle::{Hash, HashAlgorithm, NodeId};
use super::record::{Actor, EventType};
use crate::Error;

/// The store format this code creates and reads; older formats are upgraded on open.
pub const STORE_FORMAT: i64 = 3;

/// Records per epoch of the object and leaf-hash indexes, as a power of two (the schema files
/// write it out as `idx >> 16`; a test checks that they agree).
pub const EPOCH_BITS: u32 = 16;

/// The lookup key of a leaf hash: its first eight bytes as a big-endian signed integer.
#[must_use]
pub fn leaf_key(leaf_hash: &Hash) -> i64 {
    let mut first = [0; 8];
    first.copy_from_slice(&leaf_hash[..8]);
    i64::from_be_bytes(first)
}

/// The lookup key of an actor key or object: the first eight bytes of SHA-256 of the UTF-8
/// text, as a big-endian signed integer. SHA-256 whatever the log's hash: this is an index key,
/// and a key that outsiders cannot steer into collisions keeps lookups one row long.
#[must_use]
pub fn text_key(text: &str) -> i64 {
    let digest = sha2::Sha256::digest(text.as_bytes());
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// What a log is, fixed at creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogMetadata {
    /// The tree hash.
    pub hash: HashAlgorithm,
    /// The checkpoint origin (and signed-note key name).
    pub origin: String,
    /// The SubjectPublicKeyInfo (DER) of the key that signs tree heads.
    pub public_key: Vec<u8>,
    /// When the log was created, Unix milliseconds.
    pub created: i64,
}

/// A record row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// The leaf index.
    pub index: u64,
    /// Copy of the record's time (Unix milliseconds), for queries.
    pub time: i64,
    /// Copy of the record's [`Actor::key`], for queries.
    pub actor: String,
    /// Copy of the record's event name, for queries.
    pub event: String,
    /// Copy of the record's object, for queries.
    pub object: Option<String>,
    /// The record's canonical DER.
    pub der: Vec<u8>,
    /// HASH(0x00 || der) as stored.
    pub leaf_hash: Hash,
}

/// A record row as a full verification reads it, borrowed from the driver's row: the record's
/// columns and keys, and whether the level-0 tree node holds the same leaf hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafRow<'a> {
    /// The leaf index.
    pub index: u64,
    /// The `time_ms` column.
    pub time: i64,
    /// The `actor` column.
    pub actor: &'a str,
    /// The `event` column.
    pub event: &'a str,
    /// The `object` column.
    pub object: Option<&'a str>,
    /// The record's canonical DER.
    pub der: &'a [u8],
    /// The `leaf_hash` column (32 bytes unless edited).
    pub leaf_hash: &'a [u8],
    /// The `leaf_key` column.
    pub leaf_key: i64,
    /// The `actor_key` column.
    pub actor_key: i64,
    /// The `object_key` column.
    pub object_key: Option<i64>,
    /// Whether the tree node `(0, index)` equals `leaf_hash`; `None` when that node is missing.
    pub node_matches: Option<bool>,
}

/// A signed tree head row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredHead {
    /// The tree size.
    pub size: u64,
    /// The root hash (a copy of the checkpoint's).
    pub root: Hash,
    /// The checkpoint (signed note).
    pub checkpoint: String,
    /// When it was signed, Unix milliseconds.
    pub time: i64,
}

/// A retention purge: the records `[from, before)` were archived and deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeMark {
    /// The first record deleted.
    pub from: u64,
    /// One past the last record deleted.
    pub before: u64,
    /// When, Unix milliseconds.
    pub time: i64,
    /// The checkpoint the archive was made under.
    pub checkpoint: String,
}

/// Which records a query returns: all conditions that are set must hold. Results are in index
/// order, at most `limit` of them, starting at `from_index`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryFilter {
    /// Records at or after this time (Unix milliseconds).
    pub from_time: Option<i64>,
    /// Records before this time (Unix milliseconds, exclusive).
    pub to_time: Option<i64>,
    /// Records by this actor.
    pub actor: Option<Actor>,
    /// Records of this event type.
    pub event: Option<EventType>,
    /// Records about this object.
    pub object: Option<String>,
    /// Records at or after this index (for paging).
    pub from_index: Option<u64>,
    /// The most records to return; 0 means [`QueryFilter::DEFAULT_LIMIT`].
    pub limit: u32,
}

impl QueryFilter {
    /// The limit used when none is set.
    pub const DEFAULT_LIMIT: u32 = 1000;
}

/// Storage for one audit log. Implementations must make [`append`](Self::append) atomic (all
/// rows or none) and durable when it returns `Ok`, and must offer no way to change or remove a
/// row except [`purge`](Self::purge).
pub trait AuditStore: Send + Sync + fmt::Debug + 'static {
    /// Creates the tables and writes the metadata, in one transaction.
    ///
    /// # Errors
    /// [`Error::Audit`] when a log already exists there; [`Error::Store`] on database errors.
    fn init(&self, metadata: &LogMetadata) -> impl Future<Output = Result<(), Error>> + Send;

    /// Upgrades a log of an earlier store format to [`STORE_FORMAT`] in one transaction (a
    /// no-op for a current log, or where there is no log). Returns the format it upgraded from.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors; then nothing was changed.
    fn upgrade(&self) -> impl Future<Output = Result<Option<i64>, Error>> + Send;

    /// Reads the metadata.
    ///
    /// # Errors
    /// [`Error::Store`] when there is no log or on database errors.
    fn metadata(&self) -> impl Future<Output = Result<LogMetadata, Error>> + Send;

    /// Appends `records` (indices `first..`, at least one) and the tree `nodes` they complete, in
    /// one transaction. The nodes include the leaves, so the unique key on `(level, idx)` refuses
    /// the batch of a writer that is behind (another writer appended meanwhile).
    ///
    /// # Errors
    /// [`Error::Store`] on database errors, a second writer included; then nothing was written.
    fn append(
        &self,
        first: u64,
        records: Vec<StoredRecord>,
        nodes: Vec<(NodeId, Hash)>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The number of leaves: one past the highest level-0 node.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors.
    fn leaf_count(&self) -> impl Future<Output = Result<u64, Error>> + Send;

    /// The highest stored node index at `level`.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors.
    fn max_node_index(&self, level: u8) -> impl Future<Output = Result<Option<u64>, Error>> + Send;

    /// The stored hashes of `ids`; ids that are not stored are left out.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors.
    fn nodes(&self, ids: &[NodeId]) -> impl Future<Output = Result<Vec<(NodeId, Hash)>, Error>> + Send;

    /// The stored nodes of `level` with index in `first..=last`, in index order.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors.
    fn level_range(
        &self,
        level: u8,
        first: u64,
        last: u64,
    ) -> impl Future<Output = Result<Vec<(u64, Hash)>, Error>> + Send;

    /// Up to `limit` records with index ≥ `from`, in index order.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors.
    fn records(&self, from: u64, limit: u32) -> impl Future<Output = Result<Vec<StoredRecord>, Error>> + Send;

    /// Calls `check` on every record with index in `from..end`, in index order, joined with
    /// its level-0 tree node, as the driver produces the rows (nothing is collected); stops at
    /// the first error `check` returns and returns it.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors; `check`'s error.
    fn scan_leaves<F>(&self, from: u64, end: u64, check: F) -> impl Future<Output = Result<(), Error>> + Send
    where
        F: FnMut(&LeafRow<'_>) -> Result<(), Error> + Send;

    /// The record at `index`, if stored.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors.
    fn record(&self, index: u64) -> impl Future<Output = Result<Option<StoredRecord>, Error>> + Send;

    /// The highest stored record index.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors.
    fn last_record_index(&self) -> impl Future<Output = Result<Option<u64>, Error>> + Send;

    /// The lowest index of a stored record with this leaf hash.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors.
    fn find_leaf(&self, leaf_hash: &Hash) -> impl Future<Output = Result<Option<u64>, Error>> + Send;

    /// The lowest index ≥ `from` of a record whose time is at or after `time`.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors.
    fn first_at_or_after(&self, from: u64, time: i64) -> impl Future<Output = Result<Option<u64>, Error>> + Send;

    /// The records matching `filter`.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors.
    fn query(&self, filter: &QueryFilter) -> impl Future<Output = Result<Vec<StoredRecord>, Error>> + Send;

    /// Stores a signed head; a head for a size that already has one is ignored.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors.
    fn add_head(&self, head: &StoredHead) -> impl Future<Output = Result<(), Error>> + Send;

    /// The head with the largest tree size.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors.
    fn latest_head(&self) -> impl Future<Output = Result<Option<StoredHead>, Error>> + Send;

    /// Up to `limit` heads with size ≥ `from_size`, by size.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors.
    fn heads(&self, from_size: u64, limit: u32) -> impl Future<Output = Result<Vec<StoredHead>, Error>> + Send;

    /// Records `mark` and deletes the records `[mark.from, mark.before)`, in one transaction.
    /// Tree nodes are kept. Returns the number of records deleted.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors; then nothing was deleted.
    fn purge(&self, mark: &PurgeMark) -> impl Future<Output = Result<u64, Error>> + Send;

    /// The latest purge mark.
    ///
    /// # Errors
    /// [`Error::Store`] on database errors.
    fn latest_purge(&self) -> impl Future<Output = Result<Option<PurgeMark>, Error>> + Send;

    /// Closes the connections; later calls fail.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// The stores this crate ships, chosen by URL.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Store {
    /// `sqlite:PATH`.
    Sqlite(SqliteStore),
    /// `postgres://…` or `postgresql://…`.
    Postgres(PostgresStore),
}

impl Store {
    /// Connects to the store at `url`: `sqlite:PATH` (the file is created when `create` is set;
    /// add `?synchronous=normal` to trade power-loss durability for speed, see [`SqliteStore`])
    /// or `postgres://USER@HOST/DB` (add `?options=-csearch_path%3DSCHEMA` to use a schema).
    ///
    /// # Errors
    /// [`Error::Audit`] for another scheme; [`Error::Store`] when the database cannot be opened.
    pub async fn connect(url: &str, create: bool) -> Result<Self, Error> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(SqliteStore::connect(url, create).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(PostgresStore::connect(url).await?))
        } else {
            Err(Error::Audit("an audit store URL starts with sqlite: or postgres://".into()))
        }
    }
}

/// Forwards a call to the store inside a [`Store`].
macro_rules! forward {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call.await,
            Store::Postgres($s) => $call.await,
        }
    };
}

impl AuditStore for Store {
    async fn init(&self, metadata: &LogMetadata) -> Result<(), Error> {
        forward!(self, s => s.init(metadata))
    }
    async fn upgrade(&self) -> Result<Option<i64>, Error> {
        forward!(self, s => s.upgrade())
    }
    async fn metadata(&self) -> Result<LogMetadata, Error> {
        forward!(self, s => s.metadata())
    }
    async fn append(&self, first: u64, records: Vec<StoredRecord>, nodes: Vec<(NodeId, Hash)>) -> Result<(), Error> {
        forward!(self, s => s.append(first, records, nodes))
    }
    async fn leaf_count(&self) -> Result<u64, Error> {
        forward!(self, s => s.leaf_count())
    }
    async fn max_node_index(&self, level: u8) -> Result<Option<u64>, Error> {
        forward!(self, s => s.max_node_index(level))
    }
    async fn nodes(&self, ids: &[NodeId]) -> Result<Vec<(NodeId, Hash)>, Error> {
        forward!(self, s => s.nodes(ids))
    }
    async fn level_range(&self, level: u8, first: u64, last: u64) -> Result<Vec<(u64, Hash)>, Error> {
        forward!(self, s => s.level_range(level, first, last))
    }
    async fn records(&self, from: u64, limit: u32) -> Result<Vec<StoredRecord>, Error> {
        forward!(self, s => s.records(from, limit))
    }
    async fn scan_leaves<F>(&self, from: u64, end: u64, check: F) -> Result<(), Error>
    where
        F: FnMut(&LeafRow<'_>) -> Result<(), Error> + Send,
    {
        forward!(self, s => s.scan_leaves(from, end, check))
    }
    async fn record(&self, index: u64) -> Result<Option<StoredRecord>, Error> {
        forward!(self, s => s.record(index))
    }
    async fn last_record_index(&self) -> Result<Option<u64>, Error> {
        forward!(self, s => s.last_record_index())
    }
    async fn find_leaf(&self, leaf_hash: &Hash) -> Result<Option<u64>, Error> {
        forward!(self, s => s.find_leaf(leaf_hash))
    }
    async fn first_at_or_after(&self, from: u64, time: i64) -> Result<Option<u64>, Error> {
        forward!(self, s => s.first_at_or_after(from, time))
    }
    async fn query(&self, filter: &QueryFilter) -> Result<Vec<StoredRecord>, Error> {
        forward!(self, s => s.query(filter))
    }
    async fn add_head(&self, head: &StoredHead) -> Result<(), Error> {
        forward!(self, s => s.add_head(head))
    }
    async fn latest_head(&self) -> Result<Option<StoredHead>, Error> {
        forward!(self, s => s.latest_head())
    }
    async fn heads(&self, from_size: u64, limit: u32) -> Result<Vec<StoredHead>, Error> {
        forward!(self, s => s.heads(from_size, limit))
    }
    async fn purge(&self, mark: &PurgeMark) -> Result<u64, Error> {
        forward!(self, s => s.purge(mark))
    }
    async fn latest_purge(&self) -> Result<Option<PurgeMark>, Error> {
        forward!(self, s => s.latest_purge())
    }
    async fn close(&self) {
        forward!(self, s => s.close());
    }
}
