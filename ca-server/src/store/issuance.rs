//! Group commit for issuance: the two write transactions of every issuance — **reserve** (claim
//! the enrolment code, insert the serial as `issuing`) and **issued** (the row `good` with its
//! DER, the registration `enrolled`, the code's serial) — are jobs for [`IssuanceWriter`].
//!
//! On SQLite, one writer task commits whatever jobs are waiting, from all issuances in flight,
//! in **one** transaction. Each job runs the statements its own transaction used to, and its
//! outcome (reserved, code gone, serial taken; marked, or no longer reserved) is decided by
//! them alone; nothing of it is visible before the shared commit, and its caller is answered
//! only after that commit, so "reserved" and "issued" still mean *committed*. If a statement or
//! the commit fails, the transaction is rolled back and every job of the batch gets the error.
//! Why: with `synchronous=FULL` every commit waits for a sync of the write-ahead log, and SQLite
//! has one writer at a time, so one transaction per step made concurrent issuances queue for
//! the write lock — sleeping in SQLite's busy handler, in steps of up to 100 ms — and pay a sync
//! each. Now one sync serves every issuance that reached either step meanwhile, and no issuance
//! waits for a lock another one holds. The task takes the first job, yields once to the
//! scheduler (so that issuances woken by the previous commit can queue theirs), and drains the
//! queue, like the audit log's writer ([`signer_lib::audit::AuditLog`]).
//!
//! The task keeps one connection of its own, taken from the pool and detached from it (so the
//! file has up to `max_connections` + 1 connections), rather than taking a pooled one per batch.
//! A SQLite connection drops its whole page cache when it finds the database changed by another
//! connection since its last transaction; pooled connections are handed out in turn, so every
//! batch found a stale cache and read each page it touched (the tables' and indexes' roots and
//! leaves) again. The writer's own connection made the last change itself and keeps its cache.
//! After a failed batch it is dropped and the next batch starts on a fresh one, and once the pool
//! is closed batches fail as they did when they took their connection from it.
//!
//! On PostgreSQL each job is still a transaction of its own, run at once on a pooled
//! connection: the server runs concurrent transactions in parallel and already shares one WAL
//! flush among the commits waiting for it, whereas one writer would run every statement of a
//! batch one round trip after another.

use sqlx::{AnyConnection, Connection as _};
use tokio::sync::{mpsc, oneshot};

use super::{Dialect, NewCertificate, Store, insert_certificate};
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
}

/// The jobs of one transaction.
#[derive(Default)]
struct Batch {
    issued: Vec<(Issued, Reply<bool>)>,
    reserve: Vec<(Reserve, Reply<Reservation>)>,
}

impl Batch {
    fn push(&mut self, job: Job) {
        match job {
            Job::Reserve(job, reply) => self.reserve.push((job, reply)),
            Job::Issued(job, reply) => self.issued.push((job, reply)),
        }
    }

    fn len(&self) -> usize {
        self.issued.len() + self.reserve.len()
    }
}

/// The issuance writer (see the module documentation). On SQLite, clones share one writer
/// task, which stops when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct IssuanceWriter {
    store: Store,
    /// The writer task's queue; `None` on PostgreSQL, where each job commits on its own.
    jobs: Option<mpsc::Sender<Job>>,
}

impl IssuanceWriter {
    /// The writer for `store`; on SQLite, starts its task on the current Tokio runtime.
    #[must_use]
    pub fn start(store: Store) -> Self {
        let jobs = (store.dialect() == Dialect::Sqlite).then(|| {
            let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
            tokio::spawn(run(store.clone(), queue));
            jobs
        });
        Self { store, jobs }
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
        let Some(jobs) = &self.jobs else {
            let mut tx = self.store.begin().await?;
            let reserved = reserve(&self.store, &mut tx, &job).await?;
            tx.commit().await?;
            return Ok(reserved);
        };
        let (reply, answer) = oneshot::channel();
        jobs.send(Job::Reserve(job, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
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
        let Some(jobs) = &self.jobs else {
            let mut tx = self.store.begin().await?;
            let marked = issued(&self.store, &mut tx, &job).await?;
            tx.commit().await?;
            return Ok(marked);
        };
        let (reply, answer) = oneshot::channel();
        jobs.send(Job::Issued(job, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::Store("the issuance writer stopped".into())
}

/// The writer task, with its connection (see the module documentation).
async fn run(store: Store, mut queue: mpsc::Receiver<Job>) {
    let mut conn = None;
    while let Some(first) = queue.recv().await {
        let mut batch = Batch::default();
        batch.push(first);
        // Let the issuances that the previous commit woke queue their next step first; a trip
        // through the scheduler, not a timer.
        tokio::task::yield_now().await;
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit(&store, &mut conn, batch).await;
    }
}

/// Runs and commits one batch on the writer's connection `conn` (connected first if it is
/// `None`, and dropped if the batch fails), then answers each job.
async fn commit(store: &Store, conn: &mut Option<AnyConnection>, batch: Batch) {
    let result = match writer_connection(store, conn).await {
        Ok(conn) => run_batch(store, conn, &batch).await,
        Err(e) => Err(e),
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
            for (_, reply) in batch.issued {
                let _ = reply.send(Err(failed()));
            }
            for (_, reply) in batch.reserve {
                let _ = reply.send(Err(failed()));
            }
        }
    }
}

/// The writer's connection: `conn`, or a new one from the pool, detached from it. Refused once
/// the pool is closed.
async fn writer_connection<'c>(
    store: &Store,
    conn: &'c mut Option<AnyConnection>,
) -> Result<&'c mut AnyConnection, Error> {
    if store.pool().is_closed() {
        *conn = None;
        return Err(Error::Store("the CA database is closed".into()));
    }
    let ready = match conn.take() {
        Some(ready) => ready,
        None => store.pool().acquire().await?.detach(),
    };
    Ok(conn.insert(ready))
}

/// The statements of every job of `batch`, in one transaction: their outcomes once committed.
async fn run_batch(
    store: &Store,
    conn: &mut AnyConnection,
    batch: &Batch,
) -> Result<(Vec<bool>, Vec<Reservation>), Error> {
    // As `Store::begin` on SQLite: the write lock up front.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut marked = Vec::with_capacity(batch.issued.len());
    for (job, _) in &batch.issued {
        marked.push(issued(store, &mut tx, job).await?);
    }
    let mut reserved = Vec::with_capacity(batch.reserve.len());
    for (job, _) in &batch.reserve {
        reserved.push(reserve(store, &mut tx, job).await?);
    }
    tx.commit().await?;
    Ok((marked, reserved))
}

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
        sqlx::query("UPDATE enrolment_codes SET used_at = NULL WHERE registration_id = $1")
            .bind(&claim.registration_id)
            .execute(&mut *conn)
            .await?;
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
