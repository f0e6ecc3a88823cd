//! The audit log on both stores: appends, group commit, proofs, queries, signed heads, failing
//! closed, tamper detection and retention purges. Every test runs once on SQLite and once on
//! PostgreSQL (`audit_sqlite::…`, `audit_postgres::…`).
//!
//! PostgreSQL comes from `EPORT_TEST_POSTGRES_URL` (e.g. `postgres://audit:audit@127.0.0.1:5432/audit_test`;
//! the role needs CREATE on the database: each test makes its own schema). When it is unset the
//! PostgreSQL tests fail in CI (`CI` set) and are skipped with a notice elsewhere.

#![allow(clippy::unwrap_used, reason = "test helpers: a failed unwrap is a failed test")]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use signer_lib::audit::merkle::MemoryTree;
use signer_lib::audit::store::EPOCH_BITS;
use signer_lib::audit::{
    Actor, AuditLog, AuditRecord, Checkpoint, EventType, HashAlgorithm, Outcome, PurgeOptions, QueryFilter, Role,
    verify_archive,
};
use signer_lib::key::software::SoftwareKey;
use signer_lib::{Error, SignatureAlgorithm, Signer};
use sqlx::AssertSqlSafe;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty place for one log.
struct Db {
    backend: Backend,
    url: String,
    _dir: tempfile::TempDir,
}

async fn fresh(backend: Backend) -> Option<Db> {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        Backend::Sqlite => {
            let url = format!("sqlite:{}", dir.path().join("audit.db").display());
            Some(Db { backend, url, _dir: dir })
        }
        Backend::Postgres => {
            let base = match std::env::var("EPORT_TEST_POSTGRES_URL") {
                Ok(url) if !url.is_empty() => url,
                _ => {
                    assert!(
                        std::env::var_os("CI").is_none(),
                        "EPORT_TEST_POSTGRES_URL is not set: in CI the audit store tests must also run on PostgreSQL"
                    );
                    eprintln!("notice: EPORT_TEST_POSTGRES_URL is not set; skipping this PostgreSQL audit test");
                    return None;
                }
            };
            static SEQ: AtomicU32 = AtomicU32::new(0);
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
            let schema = format!("audit_t{}_{}_{nanos}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
            let pool = sqlx::PgPool::connect(&base).await.expect("cannot connect to EPORT_TEST_POSTGRES_URL");
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&pool).await.unwrap();
            pool.close().await;
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
            Some(Db { backend, url, _dir: dir })
        }
    }
}

impl Db {
    /// Runs raw SQL on the store, as a database administrator would.
    async fn try_exec(&self, sql: &str) -> Result<(), String> {
        let sql = AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.map_err(|e| e.to_string())?;
                let r = sqlx::raw_sql(sql).execute(&pool).await.map(drop).map_err(|e| e.to_string());
                pool.close().await;
                r
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.map_err(|e| e.to_string())?;
                let r = sqlx::raw_sql(sql).execute(&pool).await.map(drop).map_err(|e| e.to_string());
                pool.close().await;
                r
            }
        }
    }

    /// The first column of the first row of `sql`, as text.
    async fn text(&self, sql: &str) -> String {
        let sql = AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                let text = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                pool.close().await;
                text
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                let text = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                pool.close().await;
                text
            }
        }
    }

    /// How the index `name` is defined.
    async fn index_definition(&self, name: &str) -> String {
        match self.backend {
            Backend::Sqlite => self.text(&format!("SELECT sql FROM sqlite_master WHERE name = '{name}'")).await,
            Backend::Postgres => {
                self.text(&format!(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = '{name}' AND schemaname = current_schema()"
                ))
                .await
            }
        }
    }

    async fn exec(&self, sql: &str) {
        self.try_exec(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Drops the append-only triggers, as an attacker with database rights would first.
    async fn drop_guards(&self) {
        let sql = match self.backend {
            Backend::Sqlite => {
                "DROP TRIGGER audit_records_no_update; DROP TRIGGER audit_records_no_delete; \
                 DROP TRIGGER audit_nodes_no_update; DROP TRIGGER audit_nodes_no_delete; \
                 DROP TRIGGER audit_heads_no_update; DROP TRIGGER audit_heads_no_delete;"
            }
            Backend::Postgres => {
                "DROP TRIGGER audit_records_no_update ON audit_records; \
                 DROP TRIGGER audit_records_no_delete ON audit_records; \
                 DROP TRIGGER audit_nodes_no_change ON audit_nodes; \
                 DROP TRIGGER audit_heads_no_change ON audit_heads;"
            }
        };
        self.exec(sql).await;
    }
}

const T0: i64 = 1_700_000_000_000;
const ORIGIN: &str = "ca.example/audit";

fn ed25519() -> Arc<dyn Signer> {
    Arc::new(SoftwareKey::generate(SignatureAlgorithm::Ed25519).unwrap())
}

/// Record `i`: one second apart, three actors, alternating events.
fn rec(i: u64) -> AuditRecord {
    let event = if i.is_multiple_of(2) { EventType::LoginOk } else { EventType::Issue };
    AuditRecord::new(T0 + i64::try_from(i).unwrap() * 1000, Actor::account(format!("user{}", i % 3)), event)
        .object(format!("serial:{i:04x}"))
}

async fn filled(db: &Db, n: u64) -> (AuditLog, Arc<dyn Signer>) {
    let key = ed25519();
    let log = AuditLog::create(&db.url, Arc::clone(&key), HashAlgorithm::Sha256, ORIGIN).await.unwrap();
    for i in 0..n {
        assert_eq!(log.append(&rec(i)).await.unwrap(), i);
    }
    (log, key)
}

/// Verifies the log at `db` from scratch and returns the tampering it reports.
async fn tampered_at(db: &Db) -> (u64, String) {
    let log = AuditLog::open_unverified(&db.url).await.unwrap();
    match log.verify(|_, _| {}).await {
        Err(Error::Tampered { index, what }) => (index, what),
        other => panic!("tampering not detected: {other:?}"),
    }
}

async fn appends_proves_and_verifies(db: Db) {
    let (log, key) = filled(&db, 37).await;
    let alg = HashAlgorithm::Sha256;
    let head = log.sign_head().await.unwrap();
    assert_eq!(head.size(), 37);
    Checkpoint::verify(head.note(), key.public_key_der()).unwrap();

    let mut mem = MemoryTree::new(alg);
    for i in 0..37 {
        mem.push_data(&rec(i).to_der().unwrap());
    }
    assert_eq!(mem.root(37).unwrap(), *head.root());
    for i in 0..37 {
        let logged = log.record(i).await.unwrap().unwrap();
        assert_eq!(logged.record, rec(i));
        let proof = log.inclusion_proof(i, 37).await.unwrap();
        assert_eq!(proof.path, mem.inclusion_proof(i, 37).unwrap());
        proof.verify(alg, &logged.leaf_hash, head.root()).unwrap();
        let by_hash = log.inclusion_proof_by_leaf_hash(&logged.leaf_hash, 37).await.unwrap();
        assert_eq!(by_hash, proof);
    }
    for old in [0, 1, 5, 16, 36, 37] {
        let proof = log.consistency_proof(old, 37).await.unwrap();
        assert_eq!(proof.path, mem.consistency_proof(old, 37).unwrap());
        proof.verify(alg, &log.root_at(old).await.unwrap(), head.root()).unwrap();
    }
    let old_proof = log.inclusion_proof(3, 10).await.unwrap();
    old_proof.verify(alg, &alg.leaf(&rec(3).to_der().unwrap()), &mem.root(10).unwrap()).unwrap();
    assert!(log.inclusion_proof(37, 37).await.is_err());
    assert!(log.inclusion_proof(0, 38).await.is_err());
    assert!(log.consistency_proof(5, 4).await.is_err());

    let mut calls = Vec::new();
    let report = log.verify(|done, total| calls.push((done, total))).await.unwrap();
    assert_eq!((report.size, report.root, report.records_checked, report.heads_checked), (37, *head.root(), 37, 2));
    assert_eq!(calls.last(), Some(&(37, 37)));
    assert_eq!(report.latest_head.unwrap(), head);
}

async fn group_commit_serves_concurrent_writers(db: Db) {
    let (log, _) = filled(&db, 0).await;
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..100 {
                    got.push(log.append(&rec(t * 1000 + i)).await.unwrap());
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..1600).collect::<Vec<_>>());
    assert_eq!(log.size().await.unwrap(), 1600);
    let head = log.sign_head().await.unwrap();
    let report = log.verify(|_, _| {}).await.unwrap();
    assert_eq!((report.size, report.root), (1600, *head.root()));
}

/// Records queued without waiting keep their order, a flush waits for them, and closing the
/// log commits the ones still queued; nothing can be queued after that.
async fn queued_records_are_committed_in_order_and_on_close(db: Db) {
    let (log, _) = filled(&db, 0).await;
    let mut pending = Vec::new();
    for i in 0..5 {
        pending.push(log.enqueue(&rec(i)).await.unwrap());
    }
    log.flush().await.unwrap();
    assert_eq!(log.size().await.unwrap(), 5);
    for (i, queued) in (0..).zip(pending) {
        assert_eq!(queued.committed().await.unwrap(), i);
    }

    let late: Vec<_> = [log.enqueue(&rec(5)).await.unwrap(), log.enqueue(&rec(6)).await.unwrap()].into();
    log.close().await;
    assert!(log.enqueue(&rec(7)).await.is_err(), "queued after close");
    assert!(log.flush().await.is_err());
    for (i, queued) in (5..).zip(late) {
        assert_eq!(queued.committed().await.unwrap(), i);
    }
    let reopened = AuditLog::open_unverified(&db.url).await.unwrap();
    let report = reopened.verify(|_, _| {}).await.unwrap();
    assert_eq!(report.records_checked, 7);
    assert_eq!(reopened.record(6).await.unwrap().unwrap().record, rec(6));
}

async fn reads_back_and_queries_records(db: Db) {
    let (log, _) = filled(&db, 30).await;
    let full = AuditRecord::new(
        T0 + 100_000,
        Actor::Certificate { subject: "CN=李四,O=Port Logistics,C=CN".into(), serial: vec![0x01, 0xff] },
        EventType::Revoke,
    )
    .role(Role::SecurityOfficer)
    .object("serial:01ff")
    .failure("certificate already revoked")
    .source("198.51.100.4:50211")
    .request_id("req-7");
    let i = log.append(&full).await.unwrap();
    let back = log.record(i).await.unwrap().unwrap();
    assert_eq!(back.record, full);
    assert_eq!(back.record.outcome, Outcome::Failure("certificate already revoked".into()));
    assert!(log.record(999).await.unwrap().is_none());

    let by_actor =
        log.query(&QueryFilter { actor: Some(Actor::account("user1")), ..QueryFilter::default() }).await.unwrap();
    assert_eq!(by_actor.iter().map(|r| r.index).collect::<Vec<_>>(), (1..30).step_by(3).collect::<Vec<_>>());
    let by_event = log.query(&QueryFilter { event: Some(EventType::Revoke), ..QueryFilter::default() }).await.unwrap();
    assert_eq!(by_event.len(), 1);
    assert_eq!(by_event[0].record, full);
    let by_object =
        log.query(&QueryFilter { object: Some("serial:000a".into()), ..QueryFilter::default() }).await.unwrap();
    assert_eq!(by_object.iter().map(|r| r.index).collect::<Vec<_>>(), vec![10]);
    let by_cert = log
        .query(&QueryFilter {
            actor: Some(Actor::Certificate {
                subject: "CN=李四,O=Port Logistics,C=CN".into(),
                serial: vec![0x01, 0xff],
            }),
            ..QueryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(by_cert.len(), 1);
    let window = log
        .query(&QueryFilter {
            from_time: Some(T0 + 5000),
            to_time: Some(T0 + 20_000),
            event: Some(EventType::Issue),
            limit: 3,
            ..QueryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(window.iter().map(|r| r.index).collect::<Vec<_>>(), vec![5, 7, 9]);
    let page = log.query(&QueryFilter { from_index: Some(28), ..QueryFilter::default() }).await.unwrap();
    assert_eq!(page.iter().map(|r| r.index).collect::<Vec<_>>(), vec![28, 29, 30]);
}

async fn reopens_and_refuses_wrong_use(db: Db) {
    let (log, key) = filled(&db, 3).await;
    log.close().await;
    assert!(matches!(
        AuditLog::create(&db.url, Arc::clone(&key), HashAlgorithm::Sha256, ORIGIN).await,
        Err(Error::Audit(_))
    ));
    let reader = AuditLog::open(&db.url).await.unwrap();
    assert_eq!(reader.size().await.unwrap(), 3);
    assert!(matches!(reader.append(&rec(3)).await, Err(Error::Audit(_))));
    assert!(reader.sign_head().await.is_err());
    assert!(matches!(AuditLog::open_writer(&db.url, ed25519()).await, Err(Error::Audit(_))));
    let writer = AuditLog::open_writer(&db.url, key).await.unwrap();
    assert_eq!(writer.append(&rec(3)).await.unwrap(), 3);
    writer.sign_head().await.unwrap();
    assert_eq!(writer.verify(|_, _| {}).await.unwrap().size, 4);
    assert_eq!(reader.latest_checkpoint().await.unwrap().unwrap().size(), 4);
    assert!(AuditLog::create(&db.url, ed25519(), HashAlgorithm::Sha256, "has space").await.is_err());
}

async fn signs_heads_only_when_the_log_grew(db: Db) {
    let (log, _) = filled(&db, 2).await;
    let a = log.sign_head().await.unwrap();
    let b = log.sign_head().await.unwrap();
    assert_eq!(a, b);
    log.append(&rec(2)).await.unwrap();
    let c = log.sign_head().await.unwrap();
    assert_eq!(c.size(), 3);
    log.verify_consistency(a.note()).await.unwrap();

    let ticker = log.sign_heads_every(std::time::Duration::from_millis(20));
    log.append(&rec(3)).await.unwrap();
    let mut seen = 0;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        seen = log.latest_checkpoint().await.unwrap().unwrap().size();
        if seen == 4 {
            break;
        }
    }
    ticker.abort();
    assert_eq!(seen, 4, "the interval signer did not sign the grown log");
}

async fn fails_closed_when_the_store_breaks(db: Db) {
    let (log, _) = filled(&db, 5).await;
    db.exec("ALTER TABLE audit_records RENAME TO audit_records_gone").await;
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(&rec(100 + i)).await })
        })
        .collect();
    for a in attempts {
        assert!(matches!(a.await.unwrap(), Err(Error::Store(_))), "an append to a broken store was acknowledged");
    }
    assert_eq!(log.size().await.unwrap(), 5);
    db.exec("ALTER TABLE audit_records_gone RENAME TO audit_records").await;
    assert_eq!(log.append(&rec(5)).await.unwrap(), 5);
    log.sign_head().await.unwrap();
    assert_eq!(log.verify(|_, _| {}).await.unwrap().size, 6);

    log.close().await;
    assert!(log.append(&rec(6)).await.is_err(), "an append after close was acknowledged");
}

async fn a_second_writer_is_refused_until_it_catches_up(db: Db) {
    let (a, key) = filled(&db, 3).await;
    let b = AuditLog::open_writer(&db.url, key).await.unwrap();
    assert_eq!(a.append(&rec(3)).await.unwrap(), 3);
    // B still thinks the log has 3 records: its batch collides and nothing of it is written.
    assert!(matches!(b.append(&rec(100)).await, Err(Error::Store(_))));
    // It reloads the tree before its next batch and appends after A's record.
    assert_eq!(b.append(&rec(4)).await.unwrap(), 4);
    // A's view (4 records) is stale but true: a head for it is consistent with B's.
    assert_eq!(a.sign_head().await.unwrap().size(), 4);
    assert_eq!(b.sign_head().await.unwrap().size(), 5);
    let report = b.verify(|_, _| {}).await.unwrap();
    assert_eq!(report.size, 5);
    assert_eq!(b.record(4).await.unwrap().unwrap().record, rec(4));
}

async fn guards_refuse_updates_and_deletes(db: Db) {
    let (_log, _) = filled(&db, 4).await;
    assert!(db.try_exec("UPDATE audit_records SET actor = 'account:x' WHERE idx = 1").await.is_err());
    assert!(db.try_exec("DELETE FROM audit_records WHERE idx = 1").await.is_err());
    assert!(db.try_exec("DELETE FROM audit_nodes WHERE idx = 1").await.is_err());
    assert!(db.try_exec("DELETE FROM audit_heads").await.is_err());
    assert!(db.try_exec("UPDATE audit_metadata SET hash_algorithm = 'sm3'").await.is_err());
}

async fn detects_an_edited_field(db: Db) {
    let (log, _) = filled(&db, 20).await;
    log.sign_head().await.unwrap();
    db.drop_guards().await;
    db.exec("UPDATE audit_records SET actor = 'account:mallory' WHERE idx = 7").await;
    let (index, what) = tampered_at(&db).await;
    assert_eq!(index, 7, "{what}");
    assert!(what.contains("actor"), "{what}");

    // The record bytes themselves, on a second log.
    let db2 = fresh(db.backend).await.unwrap();
    let (log2, _) = filled(&db2, 20).await;
    log2.sign_head().await.unwrap();
    db2.drop_guards().await;
    db2.exec("UPDATE audit_records SET record = (SELECT record FROM audit_records WHERE idx = 4) WHERE idx = 7").await;
    assert_eq!(tampered_at(&db2).await.0, 7);
}

async fn detects_a_deleted_record(db: Db) {
    let (log, _) = filled(&db, 20).await;
    log.sign_head().await.unwrap();
    db.drop_guards().await;
    db.exec("DELETE FROM audit_records WHERE idx = 5").await;
    let (index, what) = tampered_at(&db).await;
    assert_eq!(index, 5, "{what}");
    assert!(what.contains("missing"), "{what}");
}

async fn detects_swapped_records(db: Db) {
    let (log, _) = filled(&db, 20).await;
    log.sign_head().await.unwrap();
    db.drop_guards().await;
    let copy = |from: u64| {
        format!(
            "record = (SELECT record FROM swap WHERE idx = {from}), leaf_hash = (SELECT leaf_hash FROM swap WHERE idx = {from}), \
             actor = (SELECT actor FROM swap WHERE idx = {from}), event = (SELECT event FROM swap WHERE idx = {from}), \
             object = (SELECT object FROM swap WHERE idx = {from}), time_ms = (SELECT time_ms FROM swap WHERE idx = {from})"
        )
    };
    db.exec(&format!(
        "CREATE TABLE swap AS SELECT * FROM audit_records WHERE idx IN (3, 11); \
         UPDATE audit_records SET {} WHERE idx = 3; UPDATE audit_records SET {} WHERE idx = 11; DROP TABLE swap;",
        copy(11),
        copy(3)
    ))
    .await;
    let (index, what) = tampered_at(&db).await;
    assert_eq!(index, 3, "{what}");
}

async fn detects_a_truncated_tail(db: Db) {
    let (log, _) = filled(&db, 20).await;
    log.sign_head().await.unwrap();
    log.close().await;
    db.drop_guards().await;
    db.exec(
        "DELETE FROM audit_records WHERE idx >= 15; \
         DELETE FROM audit_nodes WHERE ((idx + 1) << CAST(level AS INTEGER)) > 15;",
    )
    .await;
    let (index, what) = tampered_at(&db).await;
    assert_eq!(index, 15, "{what}");
    assert!(matches!(AuditLog::open(&db.url).await, Err(Error::Tampered { index: 15, .. })));
}

async fn detects_a_head_signed_by_another_key(db: Db) {
    let (log, _) = filled(&db, 10).await;
    let head10 = log.sign_head().await.unwrap();
    for i in 10..20 {
        log.append(&rec(i)).await.unwrap();
    }
    log.sign_head().await.unwrap();
    let forged = Checkpoint::sign(ORIGIN, 10, head10.root(), &*ed25519()).unwrap();
    db.drop_guards().await;
    db.exec(&format!("UPDATE audit_heads SET checkpoint = '{}' WHERE tree_size = 10", forged.note())).await;
    let (index, what) = tampered_at(&db).await;
    assert_eq!(index, 9, "{what}");
    assert!(what.contains("signed tree head at size 10"), "{what}");
}

async fn rejects_a_head_the_log_does_not_extend(db: Db) {
    let (log, key) = filled(&db, 8).await;
    let own_old = log.sign_head().await.unwrap();
    for i in 8..12 {
        log.append(&rec(i)).await.unwrap();
    }
    log.sign_head().await.unwrap();
    let proof = log.verify_consistency(own_old.note()).await.unwrap();
    assert_eq!((proof.old_size, proof.new_size), (8, 12));

    // A head of another log (other key, other origin).
    let other_db = fresh(db.backend).await.unwrap();
    let other = AuditLog::create(&other_db.url, ed25519(), HashAlgorithm::Sha256, "other.example/audit").await.unwrap();
    other.append(&rec(0)).await.unwrap();
    let foreign = other.sign_head().await.unwrap();
    assert!(log.verify_consistency(foreign.note()).await.is_err());

    // A fork: same key and origin, different history.
    let fork_db = fresh(db.backend).await.unwrap();
    let fork = AuditLog::create(&fork_db.url, key, HashAlgorithm::Sha256, ORIGIN).await.unwrap();
    for i in 0..8 {
        fork.append(&rec(i + 1000)).await.unwrap();
    }
    let forked = fork.sign_head().await.unwrap();
    assert!(matches!(log.verify_consistency(forked.note()).await, Err(Error::BadProof(_))));
    // A head from the future of this log cannot be extended either.
    for i in 8..20 {
        fork.append(&rec(i + 1000)).await.unwrap();
    }
    assert!(log.verify_consistency(fork.sign_head().await.unwrap().note()).await.is_err());
}

async fn purges_after_archiving_and_keeps_proofs_working(db: Db) {
    let (log, key) = filled(&db, 30).await;
    let now = T0 + 400 * 86_400_000;
    let dir = tempfile::tempdir().unwrap();
    let actor = Actor::account("audit-officer");
    let mut opts = PurgeOptions::new(T0 + 10_500, dir.path().join("a1"), now, actor.clone());
    opts.floor_days = 179;
    assert!(matches!(log.purge(&opts).await, Err(Error::Audit(_))), "a floor under 180 days was accepted");
    opts.floor_days = 180;
    let too_young = PurgeOptions::new(now - 179 * 86_400_000, dir.path().join("x"), now, actor.clone());
    assert!(matches!(log.purge(&too_young).await, Err(Error::Audit(_))), "records inside the floor were purged");

    let report = log.purge(&opts).await.unwrap();
    assert_eq!((report.from, report.before), (0, 11));
    let archive = verify_archive(&dir.path().join("a1"), key.public_key_der()).unwrap();
    assert_eq!((archive.first, archive.end, archive.hash), (0, 11, HashAlgorithm::Sha256));
    assert!(log.record(5).await.unwrap().is_none());
    assert_eq!(log.record(11).await.unwrap().unwrap().record, rec(11));
    let purge_record = log.record(30).await.unwrap().unwrap().record;
    assert_eq!((purge_record.event, purge_record.actor), (EventType::Purge, actor.clone()));

    // Proofs for later records, and consistency from purged sizes, still work.
    let head = log.sign_head().await.unwrap();
    let alg = HashAlgorithm::Sha256;
    log.inclusion_proof(20, head.size())
        .await
        .unwrap()
        .verify(alg, &alg.leaf(&rec(20).to_der().unwrap()), head.root())
        .unwrap();
    log.consistency_proof(5, head.size())
        .await
        .unwrap()
        .verify(alg, &log.root_at(5).await.unwrap(), head.root())
        .unwrap();
    let report = log.verify(|_, _| {}).await.unwrap();
    assert_eq!((report.purged_before, report.size, report.records_checked), (11, 31, 20));
    AuditLog::open(&db.url).await.unwrap();

    // A second purge starts where the first ended.
    let second = log.purge(&PurgeOptions::new(T0 + 20_500, dir.path().join("a2"), now, actor)).await.unwrap();
    assert_eq!((second.from, second.before), (11, 21));
    let archive = verify_archive(&dir.path().join("a2"), key.public_key_der()).unwrap();
    assert_eq!((archive.first, archive.end), (11, 21));
    assert_eq!(log.verify(|_, _| {}).await.unwrap().purged_before, 21);

    // A damaged archive, or the wrong key, is refused.
    assert!(verify_archive(&dir.path().join("a2"), ed25519().public_key_der()).is_err());
    flip_byte(&dir.path().join("a1").join("records.der"), 40);
    assert!(verify_archive(&dir.path().join("a1"), key.public_key_der()).is_err());
    // The archive directory must be new or empty.
    let reuse = PurgeOptions::new(T0 + 25_500, dir.path().join("a2"), now, Actor::account("x"));
    assert!(log.purge(&reuse).await.is_err());
    // Rows above the purge mark stay protected.
    assert!(db.try_exec("DELETE FROM audit_records WHERE idx = 25").await.is_err());
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

async fn works_with_sm2_and_p256_keys_and_sm3_hashing(db: Db) {
    let key: Arc<dyn Signer> = Arc::new(SoftwareKey::generate(SignatureAlgorithm::Sm2Sm3).unwrap());
    let log = AuditLog::create(&db.url, Arc::clone(&key), HashAlgorithm::Sm3, ORIGIN).await.unwrap();
    for i in 0..9 {
        log.append(&rec(i)).await.unwrap();
    }
    let head = log.sign_head().await.unwrap();
    Checkpoint::verify(head.note(), key.public_key_der()).unwrap();
    let mut mem = MemoryTree::new(HashAlgorithm::Sm3);
    for i in 0..9 {
        mem.push_data(&rec(i).to_der().unwrap());
    }
    assert_eq!(*head.root(), mem.root(9).unwrap());
    let leaf = log.record(4).await.unwrap().unwrap().leaf_hash;
    log.inclusion_proof(4, 9).await.unwrap().verify(HashAlgorithm::Sm3, &leaf, head.root()).unwrap();
    assert_eq!(log.verify(|_, _| {}).await.unwrap().heads_checked, 2);

    let db2 = fresh(db.backend).await.unwrap();
    let p256: Arc<dyn Signer> = Arc::new(SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap());
    let log2 = AuditLog::create(&db2.url, p256, HashAlgorithm::Sha256, ORIGIN).await.unwrap();
    log2.append(&rec(0)).await.unwrap();
    log2.sign_head().await.unwrap();
    log2.verify(|_, _| {}).await.unwrap();
}

/// Turns a new log back into store format 1 (the record columns without lookup keys, indexes on
/// the values themselves), as logs made before format 2 are.
async fn downgrade_to_format_1(db: &Db) {
    let (drop_guard, old_indexes) = match db.backend {
        Backend::Sqlite => (
            "DROP TRIGGER audit_metadata_no_update;",
            "CREATE INDEX audit_records_actor ON audit_records (actor); \
             CREATE INDEX audit_records_object ON audit_records (object); \
             CREATE INDEX audit_records_leaf ON audit_records (leaf_hash);",
        ),
        Backend::Postgres => (
            "DROP TRIGGER audit_metadata_no_change ON audit_metadata;",
            "CREATE INDEX audit_records_actor ON audit_records (actor, idx); \
             CREATE INDEX audit_records_object ON audit_records (object, idx); \
             CREATE INDEX audit_records_leaf ON audit_records (leaf_hash);",
        ),
    };
    db.exec(&format!(
        "DROP INDEX audit_records_actor; DROP INDEX audit_records_object; DROP INDEX audit_records_leaf; \
         ALTER TABLE audit_records DROP COLUMN leaf_key; ALTER TABLE audit_records DROP COLUMN actor_key; \
         ALTER TABLE audit_records DROP COLUMN object_key; {old_indexes} {drop_guard} \
         UPDATE audit_metadata SET format = 1 WHERE id = 1;"
    ))
    .await;
}

async fn upgrades_a_format_1_log_on_open(db: Db) {
    let (log, key) = filled(&db, 30).await;
    let head = log.sign_head().await.unwrap();
    let leaf = log.record(17).await.unwrap().unwrap().leaf_hash;
    log.close().await;
    downgrade_to_format_1(&db).await;

    let log = AuditLog::open_writer(&db.url, key).await.unwrap();
    assert_eq!(log.verify(|_, _| {}).await.unwrap().root, *head.root());
    assert_eq!(log.inclusion_proof_by_leaf_hash(&leaf, 30).await.unwrap().leaf_index, 17);
    let by_actor =
        log.query(&QueryFilter { actor: Some(Actor::account("user1")), ..QueryFilter::default() }).await.unwrap();
    assert_eq!(by_actor.iter().map(|r| r.index).collect::<Vec<_>>(), (1..30).step_by(3).collect::<Vec<_>>());
    let by_object =
        log.query(&QueryFilter { object: Some("serial:000a".into()), ..QueryFilter::default() }).await.unwrap();
    assert_eq!(by_object.iter().map(|r| r.index).collect::<Vec<_>>(), vec![10]);
    assert_eq!(log.append(&rec(30)).await.unwrap(), 30);
    log.sign_head().await.unwrap();
    assert_eq!(log.verify(|_, _| {}).await.unwrap().size, 31);
    // The guards lifted for the upgrade are back, and a second open changes nothing.
    assert!(db.try_exec("UPDATE audit_records SET actor = 'account:x' WHERE idx = 1").await.is_err());
    assert!(db.try_exec("UPDATE audit_metadata SET format = 1").await.is_err());
    log.close().await;
    assert_eq!(AuditLog::open(&db.url).await.unwrap().size().await.unwrap(), 31);
}

/// Turns a new log back into store format 2 (lookup keys, object and leaf indexes without the
/// epoch), as logs made before format 3 are.
async fn downgrade_to_format_2(db: &Db) {
    let (drop_guard, old_indexes) = match db.backend {
        Backend::Sqlite => (
            "DROP TRIGGER audit_metadata_no_update;",
            "CREATE INDEX audit_records_object ON audit_records (object_key); \
             CREATE INDEX audit_records_leaf ON audit_records (leaf_key);",
        ),
        Backend::Postgres => (
            "DROP TRIGGER audit_metadata_no_change ON audit_metadata;",
            "CREATE INDEX audit_records_object ON audit_records (object_key, idx); \
             CREATE INDEX audit_records_leaf ON audit_records (leaf_key);",
        ),
    };
    db.exec(&format!(
        "DROP INDEX audit_records_object; DROP INDEX audit_records_leaf; {old_indexes} {drop_guard} \
         UPDATE audit_metadata SET format = 2 WHERE id = 1;"
    ))
    .await;
}

async fn upgrades_a_format_2_log_on_open(db: Db) {
    let (log, key) = filled(&db, 30).await;
    let head = log.sign_head().await.unwrap();
    let leaf = log.record(17).await.unwrap().unwrap().leaf_hash;
    log.close().await;
    downgrade_to_format_2(&db).await;
    assert!(!db.index_definition("audit_records_leaf").await.contains(">> 16"));

    let log = AuditLog::open_writer(&db.url, key).await.unwrap();
    for index in ["audit_records_leaf", "audit_records_object"] {
        let definition = db.index_definition(index).await;
        assert!(definition.contains(&format!(">> {EPOCH_BITS}")), "{definition}");
    }
    assert_eq!(log.verify(|_, _| {}).await.unwrap().root, *head.root());
    assert_eq!(log.inclusion_proof_by_leaf_hash(&leaf, 30).await.unwrap().leaf_index, 17);
    let by_object =
        log.query(&QueryFilter { object: Some("serial:000a".into()), ..QueryFilter::default() }).await.unwrap();
    assert_eq!(by_object.iter().map(|r| r.index).collect::<Vec<_>>(), vec![10]);
    assert_eq!(log.append(&rec(30)).await.unwrap(), 30);
    assert!(db.try_exec("UPDATE audit_metadata SET format = 2").await.is_err());
    log.close().await;
    assert_eq!(AuditLog::open(&db.url).await.unwrap().size().await.unwrap(), 31);
}

/// Lookups by leaf hash and by object probe every epoch of the log: records of the first and of
/// the second epoch are found, and paging by index skips the epochs before it.
async fn finds_records_in_every_epoch(db: Db) {
    let log = AuditLog::create(&db.url, ed25519(), HashAlgorithm::Sha256, ORIGIN).await.unwrap();
    let n = (1u64 << EPOCH_BITS) + 5;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { (i, log.append(&rec(i)).await.unwrap()) })
        })
        .collect();
    let mut index_of = vec![0; usize::try_from(n).unwrap()];
    for task in tasks {
        let (i, index) = task.await.unwrap();
        index_of[usize::try_from(i).unwrap()] = index;
    }
    log.sign_head().await.unwrap();
    let (first, last) =
        (index_of.iter().position(|&x| x == 2).unwrap(), index_of.iter().position(|&x| x == n - 2).unwrap());
    for i in [first, last] {
        let index = index_of[i];
        let leaf = log.record(index).await.unwrap().unwrap().leaf_hash;
        assert_eq!(log.inclusion_proof_by_leaf_hash(&leaf, n).await.unwrap().leaf_index, index);
        let object = Some(format!("serial:{i:04x}"));
        let found = log.query(&QueryFilter { object: object.clone(), ..QueryFilter::default() }).await.unwrap();
        assert_eq!(found.iter().map(|r| r.index).collect::<Vec<_>>(), vec![index]);
        let after = QueryFilter { object, from_index: Some(index + 1), ..QueryFilter::default() };
        assert!(log.query(&after).await.unwrap().is_empty());
    }
    log.close().await;
}

async fn detects_an_edited_lookup_key(db: Db) {
    let (log, _) = filled(&db, 20).await;
    log.sign_head().await.unwrap();
    db.drop_guards().await;
    // Hides record 6 from queries by object, without touching the record itself.
    db.exec("UPDATE audit_records SET object_key = object_key + 1 WHERE idx = 6").await;
    let (index, what) = tampered_at(&db).await;
    assert_eq!(index, 6, "{what}");
    assert!(what.contains("object_key"), "{what}");
}

async fn detects_a_missing_or_edited_leaf_node(db: Db) {
    let (log, _) = filled(&db, 20).await;
    log.sign_head().await.unwrap();
    db.drop_guards().await;
    db.exec("DELETE FROM audit_nodes WHERE level = 0 AND idx = 9").await;
    let (index, what) = tampered_at(&db).await;
    assert_eq!(index, 9, "{what}");
    assert!(what.contains("(level 0, index 9) is missing"), "{what}");

    let db2 = fresh(db.backend).await.unwrap();
    let (log2, _) = filled(&db2, 20).await;
    log2.sign_head().await.unwrap();
    db2.drop_guards().await;
    db2.exec("UPDATE audit_nodes SET hash = (SELECT hash FROM audit_nodes WHERE level = 0 AND idx = 3) WHERE level = 0 AND idx = 12")
        .await;
    let (index, what) = tampered_at(&db2).await;
    assert_eq!(index, 12, "{what}");
    assert!(what.contains("(level 0, index 12) differs"), "{what}");
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod audit_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = super::fresh(super::Backend::Sqlite).await {
                        super::$name(db).await;
                    }
                }
            )*
        }
        mod audit_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = super::fresh(super::Backend::Postgres).await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}

on_both_stores!(
    appends_proves_and_verifies,
    group_commit_serves_concurrent_writers,
    queued_records_are_committed_in_order_and_on_close,
    reads_back_and_queries_records,
    reopens_and_refuses_wrong_use,
    signs_heads_only_when_the_log_grew,
    fails_closed_when_the_store_breaks,
    a_second_writer_is_refused_until_it_catches_up,
    guards_refuse_updates_and_deletes,
    detects_an_edited_field,
    detects_a_deleted_record,
    detects_swapped_records,
    detects_a_truncated_tail,
    detects_a_head_signed_by_another_key,
    rejects_a_head_the_log_does_not_extend,
    purges_after_archiving_and_keeps_proofs_working,
    works_with_sm2_and_p256_keys_and_sm3_hashing,
    upgrades_a_format_1_log_on_open,
    upgrades_a_format_2_log_on_open,
    finds_records_in_every_epoch,
    detects_an_edited_lookup_key,
    detects_a_missing_or_edited_leaf_node,
);
