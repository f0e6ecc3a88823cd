//! Audit log at scale: fills a log to N records through the real append path, then measures
//! appends with 16 writers on the full log, inclusion and consistency proofs (p50/p99 over
//! random indices), a full verification, and peak memory (`VmHWM`) during each phase.
//!
//! ```sh
//! CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true cargo build --release -p signer-lib --example audit_scale
//! target/release/examples/audit_scale --records 1000000
//! target/release/examples/audit_scale --records 10000000 --skip-verify
//! target/release/examples/audit_scale --records 100000 --url postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! Options: `--records N` (default 1,000,000); `--fill-tasks T` concurrent appenders while
//! filling (default 4096, so the writer commits full batches); `--writers W` and `--appends M`
//! for the measured append phase (default 16 writers × 5,000 appends, each writer waiting for
//! its commit before the next append); `--proofs P` (default 1000); `--skip-verify`;
//! `--synchronous full|normal` for SQLite (default full, the store's default); `--url URL` to
//! use an existing empty database instead of a SQLite file in a temporary directory (which is
//! deleted at the end; its size is printed before); `--db PATH` to keep the SQLite file at PATH
//! instead, and `--reuse` to open that file read-only and skip filling and appending (proofs and
//! verification of a log filled by an earlier run).
//!
//! `--bulk` (SQLite file only) is the documented bulk path for filling 10 million records in
//! minutes: it drops the three query indexes on random keys (actor, object, leaf hash) before the
//! fill and recreates them, from the schema's own statements, after it. Records, tree nodes and
//! heads are written exactly as without it (same `append` path); only the index B-trees are built
//! by one sort instead of one random insert per record. The append phase runs after the indexes
//! are back, so it measures the production cost.
//!
//! Filling uses [`AuditLog::append`] only — the same encoding, group-commit writer and tree
//! code as production — so the stored tree is exactly what appends make. Records look like
//! `message verified` events: 64 actors, a random SHA-256 message digest as object, a source
//! address and a request id.
//!
//! Peak memory is measured per phase by resetting the kernel's high-water mark
//! (`echo 5 > /proc/self/clear_refs`) before the phase and reading `VmHWM` after it.
//!
//! The debug assertions are needed only because the yubihsm mock (a dev-dependency) refuses to
//! compile without them; nothing on the measured paths has any.

#![allow(clippy::unwrap_used, clippy::cast_precision_loss, reason = "a benchmark: any failure aborts it")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use signer_lib::SignatureAlgorithm;
use signer_lib::audit::{Actor, AuditLog, AuditRecord, EventType, HashAlgorithm};
use signer_lib::key::software::SoftwareKey;

struct Options {
    records: u64,
    fill_tasks: u64,
    writers: u64,
    appends: u64,
    proofs: usize,
    verify: bool,
    synchronous: String,
    url: Option<String>,
    db: Option<std::path::PathBuf>,
    reuse: bool,
    bulk: bool,
}

fn options() -> Options {
    let mut o = Options {
        records: 1_000_000,
        fill_tasks: 4096,
        writers: 16,
        appends: 5000,
        proofs: 1000,
        verify: true,
        synchronous: "full".into(),
        url: None,
        db: None,
        reuse: false,
        bulk: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--records" => o.records = value().replace('_', "").parse().unwrap(),
            "--fill-tasks" => o.fill_tasks = value().parse().unwrap(),
            "--writers" => o.writers = value().parse().unwrap(),
            "--appends" => o.appends = value().parse().unwrap(),
            "--proofs" => o.proofs = value().parse().unwrap(),
            "--skip-verify" => o.verify = false,
            "--synchronous" => o.synchronous = value(),
            "--url" => o.url = Some(value()),
            "--db" => o.db = Some(value().into()),
            "--reuse" => o.reuse = true,
            "--bulk" => o.bulk = true,
            other => panic!("unknown option {other}"),
        }
    }
    o
}

/// splitmix64: a fast deterministic generator, enough for benchmark data and sampling.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn record(rng: &mut Rng, n: u64) -> AuditRecord {
    let digest = format!("{:016x}{:016x}{:016x}{:016x}", rng.next(), rng.next(), rng.next(), rng.next());
    let time = 1_750_000_000_000 + i64::try_from(n).unwrap();
    AuditRecord::new(time, Actor::account(format!("platform-{}", n % 64)), EventType::MessageVerified)
        .object(format!("sha256:{digest}"))
        .source("10.1.2.3:44321")
        .request_id(format!("req-{n}"))
}

/// Resets the peak-RSS high-water mark of this process.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// (VmHWM, VmRSS) in MiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The value at `per_mille` / 1000 of the way through `sorted`.
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    sorted[(sorted.len() - 1) * per_mille / 1000]
}

fn summary(name: &str, mut times: Vec<Duration>) {
    times.sort_unstable();
    let total: Duration = times.iter().sum();
    println!(
        "{name}: {} in {total:.2?}: p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        times.len(),
        percentile(&times, 500),
        percentile(&times, 990),
        times.last().unwrap()
    );
}

fn disk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()
}

#[tokio::main]
async fn main() {
    let o = options();
    let dir = tempfile::tempdir().unwrap();
    let file = o.db.clone().unwrap_or_else(|| dir.path().join("audit.db"));
    let url = o.url.clone().unwrap_or_else(|| format!("sqlite:{}?synchronous={}", file.display(), o.synchronous));
    println!("log: {url}");
    if o.reuse {
        let start = Instant::now();
        let log = AuditLog::open(&url).await.unwrap();
        println!("open (with the quick check) at size {}: {:.2?}", log.size().await.unwrap(), start.elapsed());
        measure_reads(&o, &log).await;
        log.close().await;
        return;
    }
    let key = Arc::new(SoftwareKey::generate(SignatureAlgorithm::Ed25519).unwrap());
    let log = AuditLog::create(&url, key, HashAlgorithm::Sha256, "bench.example/audit").await.unwrap();

    // Indexes on random keys that `--bulk` drops during the fill.
    let bulk_indexes: Vec<&str> = include_str!("../src/audit/store/sqlite.sql")
        .lines()
        .filter(|l| ["_actor ", "_object ", "_leaf "].iter().any(|n| l.starts_with("CREATE INDEX") && l.contains(n)))
        .collect();
    let raw = if o.bulk {
        assert_eq!(bulk_indexes.len(), 3, "the schema's query indexes changed");
        let pool = sqlx::sqlite::SqlitePool::connect(&format!("sqlite:{}", file.display())).await.unwrap();
        for index in &bulk_indexes {
            let name = index.split_whitespace().nth(2).unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP INDEX {name}"))).execute(&pool).await.unwrap();
        }
        Some(pool)
    } else {
        None
    };

    // Fill.
    reset_peak();
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..o.fill_tasks)
        .map(|t| {
            let (log, next, total) = (log.clone(), Arc::clone(&next), o.records);
            tokio::spawn(async move {
                let mut rng = Rng(t);
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    log.append(&record(&mut rng, n)).await.unwrap();
                    if n % 1_000_000 == 999_999 {
                        println!("  filled {} in {:.1?}", n + 1, start.elapsed());
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let (hwm, rss) = memory();
    println!(
        "fill: {} records with {} tasks in {elapsed:.1?}: {:.0} appends/s; peak RSS {hwm} MiB, RSS {rss} MiB",
        o.records,
        o.fill_tasks,
        o.records as f64 / elapsed.as_secs_f64()
    );
    if let Some(pool) = raw {
        let start = Instant::now();
        for index in &bulk_indexes {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*index)).execute(&pool).await.unwrap();
        }
        pool.close().await;
        println!("bulk: query indexes recreated in {:.1?}", start.elapsed());
    }
    if o.url.is_none() {
        println!("database size after fill: {:.2} GB", disk_size(file.parent().unwrap()) as f64 / 1e9);
    }

    // Appends at this size: W writers, each waiting for its commit before the next append.
    let start = Instant::now();
    let tasks: Vec<_> = (0..o.writers)
        .map(|w| {
            let (log, per) = (log.clone(), o.appends);
            tokio::spawn(async move {
                let mut rng = Rng(1_000_000 + w);
                let mut times = Vec::with_capacity(usize::try_from(per).unwrap());
                for i in 0..per {
                    let r = record(&mut rng, w * per + i);
                    let t = Instant::now();
                    log.append(&r).await.unwrap();
                    times.push(t.elapsed());
                }
                times
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    let n = o.writers * o.appends;
    println!(
        "append at size {}: {n} records from {} writers in {elapsed:.2?}: {:.0} appends/s",
        o.records,
        o.writers,
        n as f64 / elapsed.as_secs_f64()
    );
    summary("  append latency", latencies);

    let start = Instant::now();
    let head = log.sign_head().await.unwrap();
    println!("sign_head at size {}: {:.2?}", head.size(), start.elapsed());
    measure_reads(&o, &log).await;
    log.close().await;
    if o.url.is_none() {
        let size = disk_size(file.parent().unwrap()) as f64 / 1e9;
        let fate = if o.db.is_some() { "kept" } else { "deleted now" };
        println!("database size at the end: {size:.2} GB ({fate})");
    }
}

/// Proofs against the latest signed head, then a full verification.
async fn measure_reads(o: &Options, log: &AuditLog) {
    let head = log.latest_checkpoint().await.unwrap().unwrap();
    let size = head.size();

    // Proofs.
    reset_peak();
    let mut rng = Rng(42);
    let mut times = Vec::with_capacity(o.proofs);
    for _ in 0..o.proofs {
        let index = rng.below(size);
        let t = Instant::now();
        let proof = log.inclusion_proof(index, size).await.unwrap();
        times.push(t.elapsed());
        let leaf = log.record(index).await.unwrap().unwrap().leaf_hash;
        proof.verify(HashAlgorithm::Sha256, &leaf, head.root()).unwrap();
    }
    summary(&format!("inclusion proof at size {size}"), times);
    let mut times = Vec::with_capacity(o.proofs);
    for i in 0..o.proofs {
        let old = 1 + rng.below(size - 1);
        let t = Instant::now();
        let proof = log.consistency_proof(old, size).await.unwrap();
        times.push(t.elapsed());
        if i < 20 {
            proof.verify(HashAlgorithm::Sha256, &log.root_at(old).await.unwrap(), head.root()).unwrap();
        }
    }
    summary(&format!("consistency proof to size {size}"), times);
    let mut times = Vec::with_capacity(o.proofs);
    for _ in 0..o.proofs {
        let index = rng.below(size);
        let leaf = log.record(index).await.unwrap().unwrap().leaf_hash;
        let t = Instant::now();
        log.inclusion_proof_by_leaf_hash(&leaf, size).await.unwrap();
        times.push(t.elapsed());
    }
    summary(&format!("inclusion proof by leaf hash at size {size}"), times);
    let (hwm, rss) = memory();
    println!("proofs: peak RSS {hwm} MiB, RSS {rss} MiB");

    if o.verify {
        reset_peak();
        let start = Instant::now();
        let report = log.verify(|_, _| {}).await.unwrap();
        let elapsed = start.elapsed();
        let (hwm, rss) = memory();
        println!(
            "verify: {} records in {elapsed:.2?}: {:.0} records/s; peak RSS {hwm} MiB, RSS {rss} MiB",
            report.size,
            report.size as f64 / elapsed.as_secs_f64()
        );
    }
}
