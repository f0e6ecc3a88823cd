//! [`AuditLog`]: the append-only log that services write to and audit officers check.
//!
//! # Group commit
//!
//! A log opened for writing owns one writer task. [`AuditLog::append`] encodes the record and
//! hashes its leaf in the caller's task, then sends it with a one-shot reply channel over a
//! bounded queue. The writer takes the first waiting record, yields once to the scheduler (so
//! that callers woken by the previous batch can queue theirs), drains whatever else is queued
//! (up to [`MAX_BATCH`]), extends its in-memory right edge of the tree ([`Frontier`]),
//! and writes the records and every perfect subtree they complete in **one** transaction. Only
//! after the commit does it answer each caller with its index; if the transaction fails, every
//! caller in the batch gets the error and the writer reloads its tree state from the store before
//! the next batch. While a batch commits, new appends queue up and form the next batch, so one
//! fsync serves many appends.
//!
//! # Failing closed
//!
//! `append` returns `Ok(index)` only for a committed record. A store that cannot be written, a
//! writer that stopped, a log opened read-only or a second writer appending behind our back all
//! give an `Err`, and the caller must not carry out the action it meant to record. A second
//! writer is detected by the store's unique key on the tree nodes: its batch fails whole, and
//! it reloads the tree before its next batch.
//!
//! # Throughput
//!
//! A batch costs one hand-off to the database (SQLite) or a few round trips (PostgreSQL) and, with
//! durable commits, one sync of the log file, so throughput grows with the number of appends in
//! flight. With W callers that each wait for their own append, a batch holds at most W records,
//! so throughput is at most W per commit time: on SQLite with `synchronous=full` that is W per
//! sync of the write-ahead log, whatever the code does. `synchronous=normal` (see
//! [`super::store::SqliteStore`]) removes the sync from the commit and keeps acknowledged records
//! across a process crash, not across a power loss. The indexes on random keys (leaf hash,
//! object) lead with the record's epoch (see [`super::store`]), so a batch writes only the
//! current epoch's pages of them and appends do not slow down as the log grows. Figures:
//! `examples/audit_throughput.rs` (appends) and `examples/audit_scale.rs` (1 and 10 million
//! records: appends, proofs, verification, memory).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::archive::{ArchiveWriter, Manifest, verify_archive};
use super::checkpoint::{Checkpoint, check_origin, key_id};
use super::merkle::{
    Frontier, Hash, HashAlgorithm, NodeId, consistency_ranges, decompose, inclusion_ranges, nodes_for, range_hash,
};
use super::proof::{ConsistencyProof, InclusionProof};
use super::record::{Actor, AuditRecord, EventType};
use super::store::{
    AuditStore, LeafRow, LogMetadata, PurgeMark, QueryFilter, Store, StoredHead, StoredRecord, leaf_key, text_key,
};
use crate::{Error, Signer};

/// The most records committed in one transaction.
pub const MAX_BATCH: usize = 4096;
/// Appends that may wait for the writer before `append` itself waits (back-pressure).
const QUEUE_DEPTH: usize = 16 * 1024;
/// Records read per round trip by purges, and heads by [`AuditLog::verify`].
const READ_BATCH: u32 = 2048;
/// Records checked per query by [`AuditLog::verify`]. The records stream through; what is held
/// is the tree nodes above the leaves of a chunk (about one per record, 40 bytes each) for the
/// chunk being checked and the next, and the signed heads inside the chunk.
const VERIFY_CHUNK: u64 = 65_536;
/// The shortest retention a purge accepts, in days (GB/T 22239 8.1.5.4 d, Cybersecurity Law
/// Art. 21: network logs are kept for at least six months).
pub const MIN_RETENTION_DAYS: u32 = 180;
const MILLIS_PER_DAY: i64 = 86_400_000;

/// The current time in Unix milliseconds, for stamping records at the edge of a service.
#[must_use]
pub fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A record read back from the log, with its position and leaf hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRecord {
    /// The leaf index.
    pub index: u64,
    /// HASH(0x00 || DER), the value inclusion proofs are for.
    pub leaf_hash: Hash,
    /// The record.
    pub record: AuditRecord,
}

/// What a full verification checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The number of leaves verified up to.
    pub size: u64,
    /// The recomputed root at that size.
    pub root: Hash,
    /// Records decoded and re-hashed (those below `purged_before` are gone and not counted).
    pub records_checked: u64,
    /// Records below this index were purged; the tree from there on was checked from the kept
    /// perfect-subtree hashes.
    pub purged_before: u64,
    /// Signed heads whose signature and root were checked.
    pub heads_checked: u64,
    /// The latest signed head.
    pub latest_head: Option<Checkpoint>,
}

/// What a retention purge does; see [`AuditLog::purge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeOptions {
    /// Purge records older than this (Unix milliseconds).
    pub before_time: i64,
    /// Where the archive goes; must not exist or be empty.
    pub archive_dir: PathBuf,
    /// The retention floor in days: at least [`MIN_RETENTION_DAYS`].
    pub floor_days: u32,
    /// The current time (Unix milliseconds), against which the floor is measured.
    pub now: i64,
    /// Who purges; recorded in the `purge` record the log appends.
    pub actor: Actor,
}

impl PurgeOptions {
    /// Options with the minimum retention floor.
    #[must_use]
    pub fn new(before_time: i64, archive_dir: impl Into<PathBuf>, now: i64, actor: Actor) -> Self {
        Self { before_time, archive_dir: archive_dir.into(), floor_days: MIN_RETENTION_DAYS, now, actor }
    }
}

/// What a purge did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeReport {
    /// The first record purged.
    pub from: u64,
    /// One past the last record purged (equal to `from` when nothing was old enough).
    pub before: u64,
    /// The archive directory (`None` when nothing was purged).
    pub archive_dir: Option<PathBuf>,
    /// The signed head the archive was made under.
    pub checkpoint: Option<Checkpoint>,
}

/// A message to the writer task.
/// A record queued by [`AuditLog::enqueue`], not yet known to be committed.
#[derive(Debug)]
#[must_use = "a queued record may still fail; await `committed` or say why not"]
pub struct PendingAppend(oneshot::Receiver<Result<u64, Error>>);

impl PendingAppend {
    /// The record's index once it is committed.
    ///
    /// # Errors
    /// As [`AuditLog::append`]: the record was not committed.
    pub async fn committed(self) -> Result<u64, Error> {
        self.0.await.map_err(|_| writer_stopped())?
    }
}

enum Command {
    Append(StoredRecord, oneshot::Sender<Result<u64, Error>>),
    /// The committed size and root, after everything queued before it.
    Snapshot(oneshot::Sender<Result<(u64, Hash), Error>>),
    /// Finish the queued appends and stop.
    Close(oneshot::Sender<()>),
}

/// An append-only, tamper-evident audit log (RFC 9162 Merkle tree, signed checkpoints) in an
/// [`AuditStore`]. Clones share one store and one writer.
#[derive(Debug)]
pub struct AuditLog<S: AuditStore = Store> {
    inner: Arc<Inner<S>>,
}

impl<S: AuditStore> Clone for AuditLog<S> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

#[derive(Debug)]
struct Inner<S> {
    store: Arc<S>,
    meta: LogMetadata,
    signer: Option<Arc<dyn Signer>>,
    writer: Option<mpsc::Sender<Command>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl AuditLog<Store> {
    /// Creates a log at `url` (`sqlite:PATH` or `postgres://…`, see [`Store::connect`]) whose
    /// heads `signer` signs, hashing with `hash`, and signs its first (empty) tree head. The log
    /// is open for writing.
    ///
    /// # Errors
    /// [`Error::Audit`] for a bad origin or when a log already exists there; [`Error::Store`];
    /// the signer's errors.
    pub async fn create(url: &str, signer: Arc<dyn Signer>, hash: HashAlgorithm, origin: &str) -> Result<Self, Error> {
        Self::create_in(Store::connect(url, true).await?, signer, hash, origin).await
    }

    /// Opens the log at `url` for reading (size, proofs, queries, verification), after checking
    /// that the stored tree still has the root of the latest signed head.
    ///
    /// # Errors
    /// [`Error::Store`]; [`Error::Tampered`] when the quick check fails.
    pub async fn open(url: &str) -> Result<Self, Error> {
        Self::open_in(Store::connect(url, false).await?).await
    }

    /// Opens the log at `url` for reading without the quick check, so that [`Self::verify`] can
    /// report exactly what is wrong with a damaged log.
    ///
    /// # Errors
    /// [`Error::Store`] when the store or its metadata cannot be read.
    pub async fn open_unverified(url: &str) -> Result<Self, Error> {
        Self::open_unverified_in(Store::connect(url, false).await?).await
    }

    /// Opens the log at `url` for appending, with the key that signs its heads.
    ///
    /// # Errors
    /// [`Error::Audit`] when `signer` is not the log's key; as [`Self::open`].
    pub async fn open_writer(url: &str, signer: Arc<dyn Signer>) -> Result<Self, Error> {
        Self::open_writer_in(Store::connect(url, false).await?, signer).await
    }
}

impl AuditLog<Store> {
    /// Opens the log at `url` for appending only, without its head-signing key (a command-line
    /// tool recording one event): heads are signed later by whoever holds the key, and cover
    /// everything appended before.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub async fn open_appender(url: &str) -> Result<Self, Error> {
        let store = Store::connect(url, false).await?;
        store.upgrade().await?;
        let meta = store.metadata().await?;
        let frontier = load_frontier(&store).await?;
        check_state(&store, &meta, &frontier).await?;
        Ok(Self::start(Arc::new(store), meta, None, frontier))
    }
}

impl<S: AuditStore> AuditLog<S> {
    /// [`AuditLog::create`] in a given store.
    ///
    /// # Errors
    /// As [`AuditLog::create`].
    pub async fn create_in(
        store: S,
        signer: Arc<dyn Signer>,
        hash: HashAlgorithm,
        origin: &str,
    ) -> Result<Self, Error> {
        check_origin(origin)?;
        key_id(origin, signer.public_key_der())?;
        let meta = LogMetadata {
            hash,
            origin: origin.to_owned(),
            public_key: signer.public_key_der().to_vec(),
            created: now_millis(),
        };
        store.init(&meta).await?;
        let log = Self::start(Arc::new(store), meta, Some(signer), Frontier::new());
        log.sign_head().await?;
        Ok(log)
    }

    /// [`AuditLog::open`] in a given store.
    ///
    /// # Errors
    /// As [`AuditLog::open`].
    pub async fn open_in(store: S) -> Result<Self, Error> {
        store.upgrade().await?;
        let meta = store.metadata().await?;
        let frontier = load_frontier(&store).await?;
        check_state(&store, &meta, &frontier).await?;
        Ok(Self::reader(Arc::new(store), meta))
    }

    /// [`AuditLog::open_unverified`] in a given store.
    ///
    /// # Errors
    /// As [`AuditLog::open_unverified`].
    pub async fn open_unverified_in(store: S) -> Result<Self, Error> {
        store.upgrade().await?;
        let meta = store.metadata().await?;
        Ok(Self::reader(Arc::new(store), meta))
    }

    /// [`AuditLog::open_writer`] in a given store.
    ///
    /// # Errors
    /// As [`AuditLog::open_writer`].
    pub async fn open_writer_in(store: S, signer: Arc<dyn Signer>) -> Result<Self, Error> {
        store.upgrade().await?;
        let meta = store.metadata().await?;
        if signer.public_key_der() != meta.public_key.as_slice() {
            return Err(Error::Audit("the signer's key is not the key this log's heads are signed with".into()));
        }
        let frontier = load_frontier(&store).await?;
        check_state(&store, &meta, &frontier).await?;
        Ok(Self::start(Arc::new(store), meta, Some(signer), frontier))
    }

    fn reader(store: Arc<S>, meta: LogMetadata) -> Self {
        Self { inner: Arc::new(Inner { store, meta, signer: None, writer: None, task: Mutex::new(None) }) }
    }

    fn start(store: Arc<S>, meta: LogMetadata, signer: Option<Arc<dyn Signer>>, frontier: Frontier) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let task = tokio::spawn(run_writer(Arc::clone(&store), meta.hash, Some(frontier), rx));
        Self { inner: Arc::new(Inner { store, meta, signer, writer: Some(tx), task: Mutex::new(Some(task)) }) }
    }

    /// What the log is: hash algorithm, origin, head-signing key, creation time.
    #[must_use]
    pub fn metadata(&self) -> &LogMetadata {
        &self.inner.meta
    }

    fn writer(&self) -> Result<&mpsc::Sender<Command>, Error> {
        self.inner.writer.as_ref().ok_or_else(|| Error::Audit("the audit log was opened read-only".into()))
    }

    fn signer(&self) -> Result<&Arc<dyn Signer>, Error> {
        self.inner
            .signer
            .as_ref()
            .ok_or_else(|| Error::Audit("the audit log was opened without its head-signing key".into()))
    }

    /// Appends a record and returns its index once it is committed (see the module
    /// documentation on group commit).
    ///
    /// # Errors
    /// Any error means the record was not acknowledged and the caller must fail closed:
    /// [`Error::Audit`] for a read-only or closed log; [`Error::Store`] when the transaction
    /// failed; [`Error::Malformed`] when the record cannot be encoded.
    pub async fn append(&self, record: &AuditRecord) -> Result<u64, Error> {
        self.enqueue(record).await?.committed().await
    }

    /// Hands a record to the writer and returns as soon as it is queued, before it is
    /// committed: it takes its place after every record queued before it, a later
    /// [`Self::close`] commits it first, and [`PendingAppend::committed`] waits for its commit.
    /// For a record whose loss in a crash is acceptable because what it reports is recorded
    /// durably elsewhere (the CA's record of an API call whose state change it already audited).
    ///
    /// # Errors
    /// As [`Self::append`] for what can fail before the record is queued.
    pub async fn enqueue(&self, record: &AuditRecord) -> Result<PendingAppend, Error> {
        let writer = self.writer()?;
        let der = record.to_der()?;
        let stored = StoredRecord {
            index: 0, // assigned by the writer
            time: record.time,
            actor: record.actor.key(),
            event: record.event.name().to_owned(),
            object: record.object.clone(),
            leaf_hash: self.inner.meta.hash.leaf(&der),
            der,
        };
        let (tx, rx) = oneshot::channel();
        writer.send(Command::Append(stored, tx)).await.map_err(|_| writer_stopped())?;
        Ok(PendingAppend(rx))
    }

    /// Returns once every record queued before this call is committed (or has failed).
    ///
    /// # Errors
    /// [`Error::Audit`] for a read-only or closed log; [`Error::Store`].
    pub async fn flush(&self) -> Result<(), Error> {
        self.snapshot().await.map(|_| ())
    }

    /// The committed size and root, as the writer sees them.
    async fn snapshot(&self) -> Result<(u64, Hash), Error> {
        let (tx, rx) = oneshot::channel();
        self.writer()?.send(Command::Snapshot(tx)).await.map_err(|_| writer_stopped())?;
        rx.await.map_err(|_| writer_stopped())?
    }

    /// Signs a head for the current tree if the log grew since the latest head, stores it and
    /// returns it; otherwise returns the latest head. Before signing, the latest head's root is
    /// checked against the stored tree, so the log never signs a head inconsistent with an
    /// earlier one.
    ///
    /// # Errors
    /// [`Error::Audit`] for a read-only log; [`Error::Tampered`] when the stored tree no longer
    /// matches the latest head; [`Error::Store`]; the signer's errors.
    pub async fn sign_head(&self) -> Result<Checkpoint, Error> {
        let signer = Arc::clone(self.signer()?);
        let (size, root) = self.snapshot().await?;
        if let Some(head) = self.inner.store.latest_head().await? {
            let checkpoint = verify_head(&self.inner.meta, &head)?;
            if head.size > size || (head.size == size && head.root != root) {
                return Err(Error::Tampered {
                    index: size.min(head.size).saturating_sub(1),
                    what: format!("the latest signed head (size {}) does not match the tree (size {size})", head.size),
                });
            }
            if head.size == size {
                return Ok(checkpoint);
            }
            if self.root_at(head.size).await? != head.root {
                return Err(Error::Tampered {
                    index: head.size.saturating_sub(1),
                    what: format!("the stored tree no longer has the root signed at size {}", head.size),
                });
            }
        }
        let origin = self.inner.meta.origin.clone();
        let checkpoint = tokio::task::spawn_blocking(move || Checkpoint::sign(&origin, size, &root, &*signer))
            .await
            .map_err(|e| Error::SigningFailed(format!("the signing task failed: {e}")))??;
        let head = StoredHead { size, root, checkpoint: checkpoint.note().to_owned(), time: now_millis() };
        self.inner.store.add_head(&head).await?;
        Ok(checkpoint)
    }

    /// Runs [`Self::sign_head`] now and then every `period`, in a task the caller owns: abort the
    /// handle to stop it. The task ends only when signing fails, returning the error (raise an
    /// alarm: heads are no longer being published).
    #[must_use]
    pub fn sign_heads_every(&self, period: Duration) -> JoinHandle<Error> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                if let Err(e) = log.sign_head().await {
                    return e;
                }
            }
        })
    }

    /// The latest signed head, verified with the log's key.
    ///
    /// # Errors
    /// [`Error::Store`]; [`Error::Tampered`] when the stored head does not verify.
    pub async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, Error> {
        let head = self.inner.store.latest_head().await?;
        head.map(|h| verify_head(&self.inner.meta, &h)).transpose()
    }

    /// The number of records ever appended (purged ones included).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn size(&self) -> Result<u64, Error> {
        self.inner.store.leaf_count().await
    }

    /// The root of the tree of the first `size` records, from the stored subtree hashes.
    ///
    /// # Errors
    /// [`Error::Audit`] when the log is smaller; [`Error::Store`]; [`Error::Tampered`] when a
    /// subtree hash is missing.
    pub async fn root_at(&self, size: u64) -> Result<Hash, Error> {
        let nodes = self.fetch_nodes_within(&decompose(0, size), size).await?;
        range_hash(self.inner.meta.hash, 0, size, &nodes)
    }

    async fn check_size(&self, size: u64) -> Result<(), Error> {
        let have = self.size().await?;
        if size > have {
            return Err(Error::Audit(format!("the log has {have} records, fewer than {size}")));
        }
        Ok(())
    }

    async fn fetch_nodes(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, Hash>, Error> {
        Ok(self.inner.store.nodes(ids).await?.into_iter().collect())
    }

    /// The stored hashes of `ids`, for a tree of `size` leaves, in one round trip: the lookup
    /// also asks for the leaf `size - 1`, whose presence shows that the log has `size` leaves
    /// (leaves are only ever stored left to right). Only when it is absent does a second query
    /// tell a log that is too small (an [`Error::Audit`]) from a missing node.
    async fn fetch_nodes_within(&self, ids: &[NodeId], size: u64) -> Result<HashMap<NodeId, Hash>, Error> {
        let Some(last) = size.checked_sub(1).map(|index| NodeId { level: 0, index }) else {
            return self.fetch_nodes(ids).await;
        };
        let mut wanted = ids.to_vec();
        if !wanted.contains(&last) {
            wanted.push(last);
        }
        let nodes = self.fetch_nodes(&wanted).await?;
        if !nodes.contains_key(&last) {
            self.check_size(size).await?;
        }
        Ok(nodes)
    }

    /// The inclusion proof of record `index` in the tree of the first `tree_size` records.
    ///
    /// # Errors
    /// [`Error::Audit`] when `index >= tree_size` or the log is smaller than `tree_size`;
    /// [`Error::Store`]; [`Error::Tampered`] when a subtree hash is missing.
    pub async fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<InclusionProof, Error> {
        if index >= tree_size {
            return Err(Error::Audit(format!("record {index} is not in a tree of {tree_size} records")));
        }
        let ranges = inclusion_ranges(index, tree_size);
        let nodes = self.fetch_nodes_within(&nodes_for(&ranges), tree_size).await?;
        let path =
            ranges.iter().map(|&(s, e)| range_hash(self.inner.meta.hash, s, e, &nodes)).collect::<Result<_, _>>()?;
        Ok(InclusionProof { leaf_index: index, tree_size, path })
    }

    /// The inclusion proof of the (first) record with leaf hash `leaf_hash`.
    ///
    /// # Errors
    /// [`Error::Audit`] when no such record is in the tree of `tree_size`; as
    /// [`Self::inclusion_proof`].
    pub async fn inclusion_proof_by_leaf_hash(
        &self,
        leaf_hash: &Hash,
        tree_size: u64,
    ) -> Result<InclusionProof, Error> {
        let index = self
            .inner
            .store
            .find_leaf(leaf_hash)
            .await?
            .ok_or_else(|| Error::Audit(format!("no record has leaf hash {}", hex::encode(leaf_hash))))?;
        self.inclusion_proof(index, tree_size).await
    }

    /// The consistency proof from the tree of `old_size` records to the tree of `new_size`.
    ///
    /// # Errors
    /// [`Error::Audit`] when `old_size > new_size` or the log is smaller than `new_size`;
    /// [`Error::Store`]; [`Error::Tampered`] when a subtree hash is missing.
    pub async fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<ConsistencyProof, Error> {
        if old_size > new_size {
            return Err(Error::Audit(format!("tree size {old_size} is larger than {new_size}")));
        }
        let ranges = consistency_ranges(old_size, new_size);
        let nodes = self.fetch_nodes_within(&nodes_for(&ranges), new_size).await?;
        let path =
            ranges.iter().map(|&(s, e)| range_hash(self.inner.meta.hash, s, e, &nodes)).collect::<Result<_, _>>()?;
        Ok(ConsistencyProof { old_size, new_size, path })
    }

    /// Checks that this log extends `old` (a checkpoint someone kept): the note must be signed
    /// by the log's key, and a consistency proof from its size to the latest signed head (or to
    /// the current tree, if no head is that large) must verify. Returns the proof.
    ///
    /// # Errors
    /// [`Error::BadProof`] or [`Error::Malformed`] when `old` is not a head of this log or the
    /// log does not extend it; [`Error::Store`].
    pub async fn verify_consistency(&self, old: &str) -> Result<ConsistencyProof, Error> {
        let meta = &self.inner.meta;
        let old = Checkpoint::verify(old, &meta.public_key)?;
        if old.origin() != meta.origin {
            return Err(Error::BadProof(format!("the checkpoint is for {:?}, not {:?}", old.origin(), meta.origin)));
        }
        let (new_size, new_root) = match self.latest_checkpoint().await? {
            Some(head) if head.size() >= old.size() => (head.size(), *head.root()),
            _ => {
                let size = self.size().await?;
                (size, self.root_at(size).await?)
            }
        };
        if old.size() > new_size {
            return Err(Error::BadProof(format!(
                "the checkpoint is for {} records but the log has {new_size}: it was truncated",
                old.size()
            )));
        }
        let proof = self.consistency_proof(old.size(), new_size).await?;
        proof.verify(meta.hash, old.root(), &new_root)?;
        Ok(proof)
    }

    /// The record at `index`; `None` when it was never appended or has been purged.
    ///
    /// # Errors
    /// [`Error::Store`]; [`Error::Tampered`] when the stored record is not what its leaf hash
    /// says.
    pub async fn record(&self, index: u64) -> Result<Option<LoggedRecord>, Error> {
        let stored = self.inner.store.record(index).await?;
        stored.map(|s| logged(self.inner.meta.hash, s)).transpose()
    }

    /// The records matching `filter`, in index order.
    ///
    /// # Errors
    /// [`Error::Store`]; [`Error::Tampered`] when a stored record is not what its leaf hash
    /// says.
    pub async fn query(&self, filter: &QueryFilter) -> Result<Vec<LoggedRecord>, Error> {
        let rows = self.inner.store.query(filter).await?;
        rows.into_iter().map(|s| logged(self.inner.meta.hash, s)).collect()
    }

    /// Verifies the whole log, streaming the records in index order in batches (memory does not
    /// grow with the log): every record decodes and re-hashes to its stored leaf hash, its query
    /// columns match it, no index is missing, the tree recomputed with an O(log n) stack matches
    /// every stored perfect-subtree hash, and every stored signed head carries a valid signature
    /// by the log's key and the recomputed root at its size. `progress(done, total)` is called
    /// after each batch.
    ///
    /// # Errors
    /// [`Error::Tampered`] naming the first bad index and what is wrong there; [`Error::Store`].
    pub async fn verify(&self, mut progress: impl FnMut(u64, u64)) -> Result<VerifyReport, Error> {
        let store = &*self.inner.store;
        let meta = &self.inner.meta;
        let alg = meta.hash;
        let start = store.latest_purge().await?.map_or(0, |p| p.before);
        let latest = store.latest_head().await?;
        let total = store
            .leaf_count()
            .await?
            .max(store.last_record_index().await?.map_or(0, |i| i + 1))
            .max(latest.as_ref().map_or(0, |h| h.size))
            .max(start);
        let mut heads = HeadCursor::default();
        let mut heads_checked = 0;

        // Below a purge mark the records are gone: check the heads there against the kept nodes
        // and start the stack from the kept right edge.
        let mut tree = if start == 0 {
            Frontier::new()
        } else {
            let nodes = self.fetch_nodes(&decompose(0, start)).await?;
            let parts = decompose(0, start)
                .iter()
                .map(|id| {
                    nodes.get(id).copied().ok_or_else(|| Error::Tampered {
                        index: start - 1,
                        what: format!(
                            "the kept tree node (level {}, index {}) of the purged range is missing",
                            id.level, id.index
                        ),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Frontier::from_parts(start, &parts)?
        };
        while let Some(head) = heads.next_up_to(store, start).await? {
            let root = if head.size == start { tree.root(alg) } else { self.root_at(head.size).await? };
            check_head(meta, &head, &root)?;
            heads_checked += 1;
        }

        // Chunk by chunk: the records stream through `check_leaf`, one row per record (its level-0
        // node joined to it), while the nodes above the leaves of the next chunk are read on
        // another connection.
        let mut next = start;
        let mut upper = UpperNodes::load(store, next, (next + VERIFY_CHUNK).min(total)).await?;
        while next < total {
            let (from, end) = (next, (next + VERIFY_CHUNK).min(total));
            heads.load_through(store, end).await?;
            let following = async {
                if end < total {
                    UpperNodes::load(store, end, (end + VERIFY_CHUNK).min(total)).await
                } else {
                    Ok(UpperNodes::default())
                }
            };
            let check = |row: &LeafRow<'_>| {
                if row.index != next {
                    return Err(missing(next, total));
                }
                let leaf = check_leaf(alg, row)?;
                let mut bad = None;
                tree.push(alg, leaf, |id, h| {
                    if id.level > 0 && bad.is_none() {
                        bad = upper.check(id, h, next).err();
                    }
                });
                if let Some(e) = bad {
                    return Err(e);
                }
                next += 1;
                while let Some(head) = heads.pop_up_to(next) {
                    check_head(meta, &head, &tree.root(alg))?;
                    heads_checked += 1;
                }
                Ok(())
            };
            let (scanned, loaded) = tokio::join!(store.scan_leaves(from, end, check), following);
            scanned?;
            if next < end {
                return Err(missing(next, total));
            }
            upper = loaded?;
            progress(next - start, total - start);
        }
        if next < total {
            return Err(missing(next, total));
        }
        // A perfect subtree past the last leaf would be used by proofs once the log grows.
        let leaves = store.leaf_count().await?;
        for level in 1..64u8 {
            if let Some(max) = store.max_node_index(level).await?
                && (max + 1).checked_mul(1 << level).is_none_or(|end| end > leaves)
            {
                return Err(Error::Tampered {
                    index: next,
                    what: format!("a stored tree node (level {level}, index {max}) lies past the last record"),
                });
            }
        }
        Ok(VerifyReport {
            size: next,
            root: tree.root(alg),
            records_checked: next - start,
            purged_before: start,
            heads_checked,
            latest_head: latest.map(|h| verify_head(meta, &h)).transpose()?,
        })
    }

    /// Archives and deletes the records older than `options.before_time` (retention, R13).
    ///
    /// Refuses a floor below [`MIN_RETENTION_DAYS`] and a cut-off later than `now − floor`.
    /// The purged range is always a prefix: it ends at the first record that is not old enough.
    /// First it signs a head covering the range, writes the archive (see [`super::archive`]) and
    /// checks it with [`verify_archive`]; only then does it delete the record rows. The tree
    /// nodes are kept, so proofs for later records and consistency proofs still work; the
    /// records themselves are then only in the archive. Finally it appends a `purge` record.
    ///
    /// # Errors
    /// [`Error::Audit`] for a read-only log, a floor below 180 days or a cut-off inside the
    /// floor, or a non-empty archive directory; [`Error::Io`]; [`Error::Store`]; any error of
    /// [`Self::sign_head`].
    pub async fn purge(&self, options: &PurgeOptions) -> Result<PurgeReport, Error> {
        self.signer()?;
        if options.floor_days < MIN_RETENTION_DAYS {
            return Err(Error::Audit(format!(
                "a retention floor of {} days is below the minimum of {MIN_RETENTION_DAYS}",
                options.floor_days
            )));
        }
        let floor_ms = i64::from(options.floor_days) * MILLIS_PER_DAY;
        if options.before_time > options.now.saturating_sub(floor_ms) {
            return Err(Error::Audit(format!(
                "refusing to purge records younger than the retention floor of {} days",
                options.floor_days
            )));
        }
        let store = &*self.inner.store;
        let from = store.latest_purge().await?.map_or(0, |p| p.before);
        let (size, _) = self.snapshot().await?;
        let before = store.first_at_or_after(from, options.before_time).await?.unwrap_or(size).min(size);
        if before <= from {
            return Ok(PurgeReport { from, before: from, archive_dir: None, checkpoint: None });
        }
        let checkpoint = self.sign_head().await?;
        let dir = self.write_archive(&options.archive_dir, from, before, &checkpoint).await?;
        let public_key = self.inner.meta.public_key.clone();
        let check_dir = dir.clone();
        blocking(move || verify_archive(&check_dir, &public_key)).await?;
        let mark = PurgeMark { from, before, time: options.now, checkpoint: checkpoint.note().to_owned() };
        store.purge(&mark).await?;
        let record = AuditRecord::new(options.now, options.actor.clone(), EventType::Purge)
            .object(format!("records {from}..{before} archived under tree size {}", checkpoint.size()));
        self.append(&record).await?;
        Ok(PurgeReport { from, before, archive_dir: Some(dir), checkpoint: Some(checkpoint) })
    }

    async fn write_archive(
        &self,
        dir: &Path,
        from: u64,
        before: u64,
        checkpoint: &Checkpoint,
    ) -> Result<PathBuf, Error> {
        let dir = dir.to_owned();
        let writer = blocking(move || ArchiveWriter::create(&dir)).await?;
        let mut next = from;
        while next < before {
            let rows = self.inner.store.records(next, READ_BATCH).await?;
            let mut bytes = Vec::new();
            for row in rows.into_iter().take_while(|r| r.index < before) {
                if row.index != next {
                    return Err(missing(next, before));
                }
                bytes.extend_from_slice(&row.der);
                next += 1;
            }
            if bytes.is_empty() {
                return Err(missing(next, before));
            }
            let w = writer.clone();
            blocking(move || w.append_records(&bytes)).await?;
        }
        let left = {
            let ids = decompose(0, from);
            let nodes = self.fetch_nodes(&ids).await?;
            ids.iter()
                .map(|id| range_hash(self.inner.meta.hash, id.first_leaf(), id.end_leaf(), &nodes))
                .collect::<Result<Vec<_>, _>>()?
        };
        let consistency = self.consistency_proof(before, checkpoint.size()).await?.path;
        let manifest = Manifest {
            origin: self.inner.meta.origin.clone(),
            hash: self.inner.meta.hash,
            first: from,
            end: before,
            tree_size: checkpoint.size(),
            left,
            consistency,
        };
        let checkpoint = checkpoint.clone();
        blocking(move || writer.finish(&checkpoint, &manifest)).await
    }

    /// Lets the queued appends finish, stops the writer and closes the store. Later calls on
    /// any clone fail.
    pub async fn close(&self) {
        if let Some(writer) = &self.inner.writer {
            let (tx, rx) = oneshot::channel();
            if writer.send(Command::Close(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
        let task = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
        self.inner.store.close().await;
    }
}

fn writer_stopped() -> Error {
    Error::Audit("the audit writer has stopped; nothing was recorded".into())
}

fn missing(index: u64, total: u64) -> Error {
    Error::Tampered { index, what: format!("record {index} is missing, but the log has {total} records") }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Audit(format!("a file task failed: {e}")))?
}

/// Decodes a stored record, refusing one whose bytes do not hash to its stored leaf.
fn logged(alg: HashAlgorithm, stored: StoredRecord) -> Result<LoggedRecord, Error> {
    if alg.leaf(&stored.der) != stored.leaf_hash {
        return Err(Error::Tampered { index: stored.index, what: "the record does not hash to its leaf hash".into() });
    }
    let record = AuditRecord::from_der(&stored.der)
        .map_err(|e| Error::Tampered { index: stored.index, what: format!("the record does not decode: {e}") })?;
    Ok(LoggedRecord { index: stored.index, leaf_hash: stored.leaf_hash, record })
}

/// The checks of one record row in a full verification: the record decodes, hashes to its
/// stored leaf hash, which is the level-0 tree node, and its query columns and lookup keys are
/// those of the record. Returns the leaf hash.
fn check_leaf(alg: HashAlgorithm, row: &LeafRow<'_>) -> Result<Hash, Error> {
    let index = row.index;
    let record = AuditRecord::from_der(row.der)
        .map_err(|e| Error::Tampered { index, what: format!("the record does not decode: {e}") })?;
    let leaf = alg.leaf(row.der);
    if row.leaf_hash != leaf {
        return Err(Error::Tampered { index, what: "the stored leaf hash is not the hash of the record".into() });
    }
    let column = |name: &str, stored: &dyn std::fmt::Debug, actual: &dyn std::fmt::Debug| Error::Tampered {
        index,
        what: format!("the {name} column ({stored:?}) does not match the record ({actual:?})"),
    };
    if row.time != record.time {
        return Err(column("time", &row.time, &record.time));
    }
    let actor = record.actor.key();
    if row.actor != actor {
        return Err(column("actor", &row.actor, &actor));
    }
    if row.event != record.event.name() {
        return Err(column("event", &row.event, &record.event.name()));
    }
    if row.object != record.object.as_deref() {
        return Err(column("object", &row.object, &record.object));
    }
    if row.leaf_key != leaf_key(&leaf) {
        return Err(column("leaf_key", &row.leaf_key, &leaf_key(&leaf)));
    }
    if row.actor_key != text_key(&actor) {
        return Err(column("actor_key", &row.actor_key, &text_key(&actor)));
    }
    let object_key = record.object.as_deref().map(text_key);
    if row.object_key != object_key {
        return Err(column("object_key", &row.object_key, &object_key));
    }
    match row.node_matches {
        Some(true) => Ok(leaf),
        Some(false) => Err(Error::Tampered {
            index,
            what: format!("the stored tree node (level 0, index {index}) differs from the records"),
        }),
        None => {
            Err(Error::Tampered { index, what: format!("the stored tree node (level 0, index {index}) is missing") })
        }
    }
}

/// Verifies a stored head's signature and that its row agrees with its checkpoint.
fn verify_head(meta: &LogMetadata, head: &StoredHead) -> Result<Checkpoint, Error> {
    let index = head.size.saturating_sub(1);
    let checkpoint = Checkpoint::verify(&head.checkpoint, &meta.public_key)
        .map_err(|e| Error::Tampered { index, what: format!("the signed tree head at size {}: {e}", head.size) })?;
    if checkpoint.origin() != meta.origin || checkpoint.size() != head.size || *checkpoint.root() != head.root {
        return Err(Error::Tampered {
            index,
            what: format!("the signed tree head stored at size {} does not match its checkpoint", head.size),
        });
    }
    Ok(checkpoint)
}

/// [`verify_head`] plus the root recomputed at the head's size.
fn check_head(meta: &LogMetadata, head: &StoredHead, root: &Hash) -> Result<(), Error> {
    verify_head(meta, head)?;
    if head.root != *root {
        return Err(Error::Tampered {
            index: head.size.saturating_sub(1),
            what: format!("the records do not have the root signed at size {}", head.size),
        });
    }
    Ok(())
}

/// The stored tree nodes above the leaves that one verification chunk `[first, end)` completes,
/// by level: node `(l, j)` is completed by leaf `(j + 1) · 2^l − 1`, so they are the nodes with
/// `j` in `[first >> l, end >> l)`, and the leaves complete them in index order.
#[derive(Default)]
struct UpperNodes {
    /// `levels[l - 1]`: the stored nodes of level `l` not yet checked, in index order.
    levels: Vec<VecDeque<(u64, Hash)>>,
}

impl UpperNodes {
    async fn load(store: &impl AuditStore, first: u64, end: u64) -> Result<Self, Error> {
        let mut levels = Vec::new();
        for level in 1..64u8 {
            if (1u64 << level) > end {
                break;
            }
            let (lo, hi) = (first >> level, end >> level);
            let nodes = if hi > lo { store.level_range(level, lo, hi - 1).await? } else { Vec::new() };
            levels.push(nodes.into());
        }
        Ok(Self { levels })
    }

    /// Checks the node `id` that leaf `index` completed against the stored one.
    fn check(&mut self, id: NodeId, hash: &Hash, index: u64) -> Result<(), Error> {
        let stored = usize::from(id.level).checked_sub(1).and_then(|l| self.levels.get_mut(l)).and_then(|level| {
            while level.front().is_some_and(|(j, _)| *j < id.index) {
                level.pop_front();
            }
            level.front().filter(|(j, _)| *j == id.index).map(|(_, h)| *h)
        });
        let what = match stored {
            Some(s) if s == *hash => return Ok(()),
            Some(_) => "differs from the records",
            None => "is missing",
        };
        Err(Error::Tampered {
            index,
            what: format!("the stored tree node (level {}, index {}) {what}", id.level, id.index),
        })
    }
}

/// Reads the signed heads in size order, a page at a time.
#[derive(Default)]
struct HeadCursor {
    buffer: VecDeque<StoredHead>,
    from: u64,
    done: bool,
}

impl HeadCursor {
    /// The next head if its size is at most `size`.
    async fn next_up_to(&mut self, store: &impl AuditStore, size: u64) -> Result<Option<StoredHead>, Error> {
        self.load_through(store, size).await?;
        Ok(self.pop_up_to(size))
    }

    /// Reads pages until every head of size at most `size` is buffered.
    async fn load_through(&mut self, store: &impl AuditStore, size: u64) -> Result<(), Error> {
        while !self.done && self.buffer.back().is_none_or(|h| h.size <= size) {
            let page = store.heads(self.from, READ_BATCH).await?;
            self.done = u32::try_from(page.len()).map_or(true, |n| n < READ_BATCH);
            if let Some(last) = page.last() {
                self.from = last.size + 1;
            }
            self.buffer.extend(page);
        }
        Ok(())
    }

    /// The next buffered head if its size is at most `size`.
    fn pop_up_to(&mut self, size: u64) -> Option<StoredHead> {
        if self.buffer.front().is_some_and(|h| h.size <= size) { self.buffer.pop_front() } else { None }
    }
}

/// Loads the right edge of the stored tree.
async fn load_frontier(store: &impl AuditStore) -> Result<Frontier, Error> {
    let size = store.leaf_count().await?;
    let ids = decompose(0, size);
    let nodes: HashMap<NodeId, Hash> = store.nodes(&ids).await?.into_iter().collect();
    let parts = ids
        .iter()
        .map(|id| {
            nodes.get(id).copied().ok_or_else(|| Error::Tampered {
                index: id.first_leaf(),
                what: format!("the stored tree node (level {}, index {}) is missing", id.level, id.index),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Frontier::from_parts(size, &parts)
}

/// The quick check on open: the latest signed head verifies, is not larger than the tree, and
/// its root is the stored tree's root at its size; the last record matches its leaf node.
async fn check_state(store: &impl AuditStore, meta: &LogMetadata, tree: &Frontier) -> Result<(), Error> {
    let size = tree.size();
    if let Some(head) = store.latest_head().await? {
        verify_head(meta, &head)?;
        if head.size > size {
            return Err(Error::Tampered {
                index: size,
                what: format!("the latest signed head covers {} records but the tree has {size}", head.size),
            });
        }
        let root = if head.size == size {
            tree.root(meta.hash)
        } else {
            let ids = decompose(0, head.size);
            let nodes: HashMap<NodeId, Hash> = store.nodes(&ids).await?.into_iter().collect();
            range_hash(meta.hash, 0, head.size, &nodes)?
        };
        if root != head.root {
            return Err(Error::Tampered {
                index: head.size.saturating_sub(1),
                what: format!("the stored tree does not have the root signed at size {}", head.size),
            });
        }
    }
    let purged = store.latest_purge().await?.map_or(0, |p| p.before);
    if size > purged {
        let last = size - 1;
        let leaf = store.nodes(&[NodeId { level: 0, index: last }]).await?;
        let record = store.record(last).await?;
        match (record, leaf.first()) {
            (Some(r), Some((_, h))) if r.leaf_hash == *h && meta.hash.leaf(&r.der) == *h => {}
            _ => {
                return Err(Error::Tampered {
                    index: last,
                    what: "the last record does not match its tree leaf".into(),
                });
            }
        }
    }
    Ok(())
}

/// The writer task: group commit (see the module documentation).
async fn run_writer<S: AuditStore>(
    store: Arc<S>,
    alg: HashAlgorithm,
    mut tree: Option<Frontier>,
    mut rx: mpsc::Receiver<Command>,
) {
    let mut records: Vec<StoredRecord> = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<oneshot::Sender<Result<u64, Error>>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        let mut control = None;
        match first {
            Command::Append(r, reply) => {
                records.push(r);
                replies.push(reply);
            }
            other => control = Some(other),
        }
        if control.is_none() {
            // Let the tasks that the previous batch's replies woke queue their next records
            // before this batch is cut; it costs a trip through the scheduler, not a timer.
            tokio::task::yield_now().await;
        }
        while control.is_none() && records.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Command::Append(r, reply)) => {
                    records.push(r);
                    replies.push(reply);
                }
                Ok(other) => control = Some(other),
                Err(_) => break,
            }
        }
        if !records.is_empty() {
            commit(&*store, alg, &mut tree, &mut records, &mut replies).await;
        }
        match control {
            Some(Command::Snapshot(reply)) => {
                let state = match &tree {
                    Some(t) => Ok(t.clone()),
                    None => load_frontier(&*store).await,
                };
                if let Ok(t) = &state {
                    tree = Some(t.clone());
                }
                let _ = reply.send(state.map(|t| (t.size(), t.root(alg))));
            }
            Some(Command::Close(reply)) => {
                rx.close();
                while let Ok(cmd) = rx.try_recv() {
                    if let Command::Append(_, reply) = cmd {
                        let _ = reply.send(Err(writer_stopped()));
                    }
                }
                let _ = reply.send(());
                return;
            }
            Some(Command::Append(..)) | None => {}
        }
    }
}

/// Commits one batch and answers its callers.
async fn commit<S: AuditStore>(
    store: &S,
    alg: HashAlgorithm,
    tree: &mut Option<Frontier>,
    records: &mut Vec<StoredRecord>,
    replies: &mut Vec<oneshot::Sender<Result<u64, Error>>>,
) {
    let current = match tree.take() {
        Some(t) => Ok(t),
        None => load_frontier(store).await,
    };
    let result = match current {
        Ok(mut next) => {
            let first = next.size();
            let mut nodes = Vec::with_capacity(records.len() * 2 + 64);
            for (i, r) in (first..).zip(records.iter_mut()) {
                r.index = i;
                next.push(alg, r.leaf_hash, |id, h| nodes.push((id, *h)));
            }
            match store.append(first, std::mem::take(records), nodes).await {
                Ok(()) => {
                    *tree = Some(next);
                    Ok(first)
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    records.clear();
    match result {
        Ok(first) => {
            for (i, reply) in (first..).zip(replies.drain(..)) {
                let _ = reply.send(Ok(i));
            }
        }
        Err(why) => {
            for reply in replies.drain(..) {
                let _ = reply.send(Err(Error::Store(format!("the audit record was not committed: {why}"))));
            }
        }
    }
}
