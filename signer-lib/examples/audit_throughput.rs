//! Audit log throughput with group commit: W concurrent writers, each appending M records and
//! waiting for each commit, then a full verification and a round of proofs.
//!
//! ```sh
//! cargo run -p signer-lib --example audit_throughput -- [WRITERS] [APPENDS_PER_WRITER] [URL]
//! # optimised build; debug assertions stay on because the yubihsm mock (a dev-dependency)
//! # refuses to compile without them:
//! CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true cargo run --release -p signer-lib --example audit_throughput
//! ```
//!
//! Without a URL the log is a fresh SQLite file in a temporary directory.

#![allow(clippy::unwrap_used, reason = "a benchmark: any failure aborts it")]

use std::sync::Arc;
use std::time::Instant;

use signer_lib::SignatureAlgorithm;
use signer_lib::audit::{Actor, AuditLog, AuditRecord, EventType, HashAlgorithm, now_millis};
use signer_lib::key::software::SoftwareKey;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let writers: u64 = args.get(1).map_or(16, |a| a.parse().unwrap());
    let per_writer: u64 = args.get(2).map_or(20_000, |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let url = args.get(3).cloned().unwrap_or_else(|| format!("sqlite:{}", dir.path().join("audit.db").display()));

    let key = Arc::new(SoftwareKey::generate(SignatureAlgorithm::Ed25519).unwrap());
    let log = AuditLog::create(&url, key, HashAlgorithm::Sha256, "bench.example/audit").await.unwrap();

    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let record = AuditRecord::new(
                        now_millis(),
                        Actor::account(format!("platform-{w}")),
                        EventType::MessageVerified,
                    )
                    .object(format!("sha256:{:064x}", w * per_writer + i))
                    .source("10.1.2.3:44321")
                    .request_id(format!("req-{w}-{i}"));
                    log.append(&record).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let total = writers * per_writer;
    #[allow(clippy::cast_precision_loss, reason = "a rate for display")]
    let rate = total as f64 / elapsed.as_secs_f64();
    println!("append: {total} records from {writers} writers in {elapsed:.2?}: {rate:.0} appends/s");

    let start = Instant::now();
    let head = log.sign_head().await.unwrap();
    println!("sign_head at size {}: {:.2?}", head.size(), start.elapsed());

    let start = Instant::now();
    let mut proofs = 0u32;
    for i in (0..total).step_by(usize::try_from((total / 1000).max(1)).unwrap()) {
        log.inclusion_proof(i, head.size()).await.unwrap();
        proofs += 1;
    }
    println!("inclusion proofs: {proofs} in {:.2?} ({:.2?} each)", start.elapsed(), start.elapsed() / proofs.max(1));

    let start = Instant::now();
    let report = log.verify(|_, _| {}).await.unwrap();
    let elapsed = start.elapsed();
    #[allow(clippy::cast_precision_loss, reason = "a rate for display")]
    let rate = report.size as f64 / elapsed.as_secs_f64();
    println!("verify: {} records in {elapsed:.2?}: {rate:.0} records/s", report.size);
    log.close().await;
}
