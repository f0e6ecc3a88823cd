//! Group commit for issuance: the two write transactions of every issuance — **reserve** (claim
//! the enrolment code, insert the serial as `issuing`) and **issued** (the row `good` with its
//! DER and `audit_pending`, the registration `enrolled`, the code's serial) — are jobs for
//! [`IssuanceWriter`], and so is clearing `audit_pending` once the `Issue` record is committed,
//! which nobody waits for ([`IssuanceWriter::audited`]).
//!
//! On SQLite, one writer thread commits whatever jobs are waiting, from all issuances in flight,
//! in **one** transaction. Each job runs the statements its own transaction used to, and its
//! outcome (reserved, code gone, serial taken; marked, or no longer reserved) is decided by
//! them alone; nothing of it is visible before the shared commit, and its caller is answered
//! only after that commit, so "reserved" and "issued" still mean *committed*. If a statement or
//! the commit fails, the transaction is rolled back and every job of the batch gets the error.
//! Why: with `synchronous=FULL` every commit waits for a sync of the write-ahead log, and SQLite
//! has one writer at a time, so one transaction per step made concurrent issuances queue for
//! the write lock — sleeping in SQLite's busy handler, in steps of up to 100 ms — and pay a sync
//! each. Now one sync serves every issuance that reached either step meanwhile, and no issuance
//! waits for a lock another one holds. The thread takes the first job, then every job queued
//! meanwhile, like the audit log's writer ([`signer_lib::audit::AuditLog`]).
//!
//! The thread calls SQLite through rusqlite on a connection of its own (the same bundled SQLite
//! as sqlx's pool, and the same settings), not through sqlx: sqlx-sqlite runs every statement
//! as a round trip to a worker thread of the connection, with owned copies of every bound value,
//! and a batch is five statements per issuance; on one connection of its own the thread also
//! keeps its page cache from batch to batch (SQLite drops a connection's cache when another
//! connection changed the file since). The statements are the store's own (`store.rs`). After
//! a failed batch the connection is dropped and the next batch opens a fresh one; once the pool
//! is closed batches fail, and [`IssuanceWriter::close`] stops the thread.
//!
//! On PostgreSQL each reserve and mark-issued job is still a transaction of its own, run at
//! once on a pooled connection: the server runs concurrent transactions in parallel and already
//! shares one WAL flush among the commits waiting for it, whereas one writer would run every
//! statement of a batch one round trip after another. There the queue carries only the clearing
//! of `audit_pending`, which a task does for all waiting serials in one statement.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};

use super::{
    CLAIM_CODE, CLEAR_AUDIT_PENDING, Dialect, INSERT_CERTIFICATE_IF_FREE, MARK_ISSUED, NewCertificate, SET_CODE_SERIAL,
    SET_REGISTRATION_STATUS, SQLITE_CONNECTION_PRAGMAS, Store, UNCLAIM_CODE, insert_certificate,
};
use crate::Error;

/// The most jobs committed in one transaction.
const MAX_BATCH: usize = 512;
/// Jobs that may wait for the writer before a caller waits to queue its own (back-pressure).
const QUEUE_DEPTH: usize = 4096;

/// Claiming an enrolment code along with a reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The registration whose code is claimed.
    pub registration_id: String,
    /// The attempt limit: a code with this many wrong attempts is burnt.
    pub max_attempts: i64,
}

/// What a reservation came to. Only [`Self::Reserved`] wrote anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// The serial is reserved (`issuing`) and the code, if asked, claimed.
    Reserved,
    /// The code is no longer claimable: used, expired or burnt meanwhile.
    CodeGone,
    /// The serial was taken (never seen with 126 random bits): draw another.
    SerialTaken,
}

struct Reserve {
    cert: NewCertificate,
    claim: Option<Claim>,
    now: i64,
}

struct Issued {
    serial: String,
    der: Vec<u8>,
    enrolled: Option<String>,
    now: i64,
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

enum Job {
    Reserve(Reserve, Reply<Reservation>),
    Issued(Issued, Reply<bool>),
    /// The serial's `Issue` audit record is committed: clear its flag (nobody waits for it).
    Audited(String),
    /// Stop: release the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// The jobs of one transaction.
#[derive(Default)]
struct Batch {
    issued: Vec<(Issued, Reply<bool>)>,
    reserve: Vec<(Reserve, Reply<Reservation>)>,
    audited: Vec<String>,
}

impl Batch {
    /// Adds a job; a close request is handed back instead.
    fn push(&mut self, job: Job) -> Option<oneshot::Sender<()>> {
        match job {
            Job::Reserve(job, reply) => self.reserve.push((job, reply)),
            Job::Issued(job, reply) => self.issued.push((job, reply)),
            Job::Audited(serial) => self.audited.push(serial),
            Job::Close(done) => return Some(done),
        }
        None
    }

    fn len(&self) -> usize {
        self.issued.len() + self.reserve.len() + self.audited.len()
    }

    /// `first` and every job queued meanwhile, up to [`MAX_BATCH`]; a close request ends the
    /// batch and is handed back.
    fn gather(first: Job, queue: &mut mpsc::Receiver<Job>) -> (Self, Option<oneshot::Sender<()>>) {
        let mut batch = Self::default();
        let mut close = batch.push(first);
        while close.is_none() && batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => close = batch.push(job),
                Err(_) => break,
            }
        }
        (batch, close)
    }
}

/// The issuance writer (see the module documentation). Clones share one queue and what serves
/// it — on SQLite the writer thread, on PostgreSQL a task that only clears `audit_pending` —
/// which stops on [`Self::close`] or when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct IssuanceWriter {
    store: Store,
    queue: mpsc::Sender<Job>,
}

impl IssuanceWriter {
    /// The writer for `store`: on SQLite, starts its thread; on PostgreSQL, its task (on the
    /// current Tokio runtime).
    ///
    /// # Errors
    /// [`Error::Internal`] when the thread cannot be started.
    pub fn start(store: Store) -> Result<Self, Error> {
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        match store.sqlite_path() {
            Some(path) => {
                let (writer_store, path) = (store.clone(), path.to_path_buf());
                std::thread::Builder::new()
                    .name("ca-issuance-writer".into())
                    .spawn(move || run(&writer_store, &path, jobs))
                    .map_err(|e| Error::Internal(format!("cannot start the issuance writer: {e}")))?;
            }
            None => drop(tokio::spawn(clear_pending(store.clone(), jobs))),
        }
        Ok(Self { store, queue })
    }

    /// Stops the writer once the jobs queued before this call are done (on SQLite closing its
    /// connection); later queued jobs fail.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.queue.send(Job::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }

    /// Whether reserve and mark-issued jobs go through the writer (SQLite) or are each a
    /// transaction of their own, run at once (PostgreSQL).
    fn batches(&self) -> bool {
        self.store.dialect() == Dialect::Sqlite
    }

    /// Hands `job` to the writer and waits for its answer.
    async fn ask<T>(&self, job: Job, answer: oneshot::Receiver<Result<T, Error>>) -> Result<T, Error> {
        self.queue.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Reserves `cert.serial` (status `issuing`), first claiming the code if `claim` is given,
    /// and returns once that is committed. Nothing is written unless the answer is
    /// [`Reservation::Reserved`].
    ///
    /// # Errors
    /// [`Error::Store`] when the transaction (on SQLite, the batch's) failed: nothing of it was
    /// written.
    pub async fn reserve(&self, cert: NewCertificate, claim: Option<Claim>, now: i64) -> Result<Reservation, Error> {
        let job = Reserve { cert, claim, now };
        if !self.batches() {
            let mut tx = self.store.begin().await?;
            let reserved = reserve(&self.store, &mut tx, &job).await?;
            tx.commit().await?;
            return Ok(reserved);
        }
        let (reply, answer) = oneshot::channel();
        self.ask(Job::Reserve(job, reply), answer).await
    }

    /// Marks reserved `serial` issued with its certificate and, for an enrolment, records the
    /// registration `enrolled` and the serial on its code; returns once that is committed.
    /// `false` (and nothing written) when the serial was no longer `issuing`.
    ///
    /// # Errors
    /// [`Error::Store`] when the transaction (on SQLite, the batch's) failed: nothing of it was
    /// written.
    pub async fn issued(
        &self,
        serial: String,
        der: Vec<u8>,
        enrolled: Option<String>,
        now: i64,
    ) -> Result<bool, Error> {
        let job = Issued { serial, der, enrolled, now };
        if !self.batches() {
            let mut tx = self.store.begin().await?;
            let marked = issued(&self.store, &mut tx, &job).await?;
            tx.commit().await?;
            return Ok(marked);
        }
        let (reply, answer) = oneshot::channel();
        self.ask(Job::Issued(job, reply), answer).await
    }

    /// Records, in a later batch and without waiting, that the `Issue` audit record of an issued
    /// `serial` is committed. If that is lost (a failed batch, a crash), the CA finds the record
    /// when it next starts and clears the flag then.
    pub fn audited(&self, serial: String) {
        if let Err(mpsc::error::TrySendError::Full(job)) = self.queue.try_send(Job::Audited(serial)) {
            // A full queue: a task waits for room instead of the caller.
            let queue = self.queue.clone();
            tokio::spawn(async move {
                let _ = queue.send(job).await;
            });
        }
    }
}

/// The writer on PostgreSQL, where only [`Job::Audited`] and [`Job::Close`] are queued:
/// clears `audit_pending` for every serial waiting in one statement (one transaction per
/// serial would add a WAL flush per certificate). A failure is logged; the next start settles
/// those rows from the audit log.
async fn clear_pending(store: Store, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.recv().await {
        let (batch, close) = Batch::gather(first, &mut queue);
        if let Err(e) = store.clear_audit_pending(&batch.audited).await {
            tracing::warn!(serials = batch.audited.len(), error = %e, "audit_pending not cleared (start-up recovery will)");
        }
        if let Some(done) = close {
            let _ = done.send(());
            return;
        }
    }
}

fn stopped() -> Error {
    Error::Store("the issuance writer stopped".into())
}

/// The writer thread: takes the first job waiting, then every job queued meanwhile (up to
/// [`MAX_BATCH`]), commits them as one batch, and answers each; ends on [`Job::Close`] or when
/// every [`IssuanceWriter`] is gone.
fn run(store: &Store, path: &Path, mut queue: mpsc::Receiver<Job>) {
    let mut conn = None;
    while let Some(first) = queue.blocking_recv() {
        let (batch, close) = Batch::gather(first, &mut queue);
        if batch.len() > 0 {
            commit(store, path, &mut conn, batch);
        }
        if let Some(done) = close {
            drop(conn.take());
            let _ = done.send(());
            return;
        }
    }
}

/// Runs and commits one batch on the writer's connection `conn` (opened first if it is `None`,
/// and dropped if the batch fails), then answers each job.
fn commit(store: &Store, path: &Path, conn: &mut Option<Connection>, batch: Batch) {
    let result = if store.pool().is_closed() {
        Err(Error::Store("the CA database is closed".into()))
    } else {
        let ready = match conn.take() {
            Some(ready) => Ok(ready),
            None => open(path),
        };
        ready.and_then(|ready| run_batch(conn.insert(ready), &batch).map_err(sql_error))
    };
    if result.is_err() {
        *conn = None;
    }
    match result {
        Ok((marked, reserved)) => {
            for ((_, reply), marked) in batch.issued.into_iter().zip(marked) {
                let _ = reply.send(Ok(marked));
            }
            for ((_, reply), reserved) in batch.reserve.into_iter().zip(reserved) {
                let _ = reply.send(Ok(reserved));
            }
        }
        Err(e) => {
            let failed = || Error::Store(format!("the issuance batch was not committed: {e}"));
            if !batch.audited.is_empty() {
                tracing::warn!(serials = batch.audited.len(), error = %e, "audit_pending not cleared (start-up recovery will)");
            }
            for (_, reply) in batch.issued {
                let _ = reply.send(Err(failed()));
            }
            for (_, reply) in batch.reserve {
                let _ = reply.send(Err(failed()));
            }
        }
    }
}

fn sql_error(e: rusqlite::Error) -> Error {
    Error::Store(e.to_string())
}

/// The writer's connection, with the settings the pool's connections get (`Store::connect`).
fn open(path: &Path) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| Error::Store(format!("cannot open the CA database: {e}")))?;
    conn.execute_batch(SQLITE_CONNECTION_PRAGMAS).map_err(sql_error)?;
    Ok(conn)
}

/// The statements of every job of `batch`, in one transaction: their outcomes once committed.
/// A failed statement drops the transaction, which rolls it back.
fn run_batch(conn: &mut Connection, batch: &Batch) -> rusqlite::Result<(Vec<bool>, Vec<Reservation>)> {
    // As `Store::begin` on SQLite: the write lock up front.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let marked = batch.issued.iter().map(|(job, _)| issued_sqlite(&tx, job)).collect::<Result<_, _>>()?;
    let reserved = batch.reserve.iter().map(|(job, _)| reserve_sqlite(&tx, job)).collect::<Result<_, _>>()?;
    for serial in &batch.audited {
        tx.prepare_cached(CLEAR_AUDIT_PENDING)?.execute(params![serial])?;
    }
    tx.commit()?;
    Ok((marked, reserved))
}

/// [`reserve`] on the writer's connection.
fn reserve_sqlite(tx: &rusqlite::Transaction<'_>, job: &Reserve) -> rusqlite::Result<Reservation> {
    if let Some(claim) = &job.claim
        && tx.prepare_cached(CLAIM_CODE)?.execute(params![job.now, claim.registration_id, claim.max_attempts])? != 1
    {
        return Ok(Reservation::CodeGone);
    }
    let c = &job.cert;
    let inserted = tx.prepare_cached(INSERT_CERTIFICATE_IF_FREE)?.execute(params![
        c.serial,
        c.issuer,
        c.subject,
        c.profile,
        c.registration_id,
        c.uscc,
        c.not_before,
        c.not_after,
        "issuing",
        None::<&[u8]>,
        job.now,
    ])?;
    if inserted == 1 {
        return Ok(Reservation::Reserved);
    }
    if let Some(claim) = &job.claim {
        tx.prepare_cached(UNCLAIM_CODE)?.execute(params![claim.registration_id])?;
    }
    Ok(Reservation::SerialTaken)
}

/// [`issued`] on the writer's connection.
fn issued_sqlite(tx: &rusqlite::Transaction<'_>, job: &Issued) -> rusqlite::Result<bool> {
    if tx.prepare_cached(MARK_ISSUED)?.execute(params![job.der, job.now, job.serial])? != 1 {
        return Ok(false);
    }
    if let Some(registration_id) = &job.enrolled {
        tx.prepare_cached(SET_REGISTRATION_STATUS)?.execute(params!["enrolled", job.now, registration_id])?;
        tx.prepare_cached(SET_CODE_SERIAL)?.execute(params![job.serial, registration_id])?;
    }
    Ok(true)
}

// On PostgreSQL, each job's own transaction, on sqlx.

/// One reservation's statements: claim the code, insert the serial; if the serial is taken,
/// give the claim back, so the job leaves nothing behind.
async fn reserve(store: &Store, conn: &mut AnyConnection, job: &Reserve) -> Result<Reservation, Error> {
    if let Some(claim) = &job.claim
        && !store.claim_code(conn, &claim.registration_id, job.now, claim.max_attempts).await?
    {
        return Ok(Reservation::CodeGone);
    }
    if insert_certificate(conn, &job.cert, "issuing", None, job.now, true).await? {
        return Ok(Reservation::Reserved);
    }
    if let Some(claim) = &job.claim {
        // Claimed a statement ago in this transaction, from `used_at IS NULL`.
        sqlx::query(UNCLAIM_CODE).bind(&claim.registration_id).execute(&mut *conn).await?;
    }
    Ok(Reservation::SerialTaken)
}

/// One issuance's final statements. The registration is updated first, then its code, the
/// order in which other transactions lock them.
async fn issued(store: &Store, conn: &mut AnyConnection, job: &Issued) -> Result<bool, Error> {
    if !store.mark_issued(conn, &job.serial, &job.der, job.now).await? {
        return Ok(false);
    }
    if let Some(registration_id) = &job.enrolled {
        store.set_registration_status(conn, registration_id, "enrolled", job.now).await?;
        store.set_code_serial(conn, registration_id, &job.serial).await?;
    }
    Ok(true)
}
