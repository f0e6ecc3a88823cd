//! `eport audit`: the audit officer's tools over a tamper-evident log, and the records that
//! `eport sign` and `eport verify` append to it.
//!
//! A log is named by a URL (`sqlite:PATH` or `postgres://…`). Heads are signed with the log's
//! key, which `init` fixes; `head` therefore takes `--key` too. Appending records needs no key:
//! a head signed later covers them.
//!
//! Proof files are JSON (`eport-audit-inclusion-proof/1`): the record's DER, its leaf index and
//! hash, the tree size and the inclusion path (hex), the signed head they were made against, and
//! the log's public key. `check-proof` needs only such a file and a head file: no database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use clap::Subcommand;
use signer_lib::audit::{
    Actor, AuditLog, AuditRecord, Checkpoint, EventType, Hash, HashAlgorithm, LoggedRecord, QueryFilter,
    verify_inclusion,
};

use crate::keyref::{self, KeyArgs};

/// The format tag of proof files.
const PROOF_FORMAT: &str = "eport-audit-inclusion-proof/1";

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Create a log whose heads KEYREF signs, and sign its first (empty) head.
    Init {
        /// The log: sqlite:PATH or postgres://USER@HOST/DB.
        #[arg(long)]
        log: String,
        #[command(flatten)]
        key: KeyArgs,
        /// The hash function, fixed for the life of the log: sha256 or sm3.
        #[arg(long, default_value = "sha256")]
        hash: HashAlgorithm,
        /// The log's name in its signed heads (no spaces).
        #[arg(long, default_value = "eport-pki/audit")]
        origin: String,
    },
    /// Sign a new head if the log grew, and print it.
    Head {
        /// The log URL.
        #[arg(long)]
        log: String,
        #[command(flatten)]
        key: KeyArgs,
        /// Also write the head to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify the whole log: every record, every tree node, every signed head. Exit 0 only if intact.
    Verify {
        /// The log URL.
        #[arg(long)]
        log: String,
        /// A head kept earlier (a file): the log must extend it.
        #[arg(long)]
        trusted_head: Option<PathBuf>,
    },
    /// List records.
    Query {
        /// The log URL.
        #[arg(long)]
        log: String,
        /// From this time (RFC 3339, e.g. 2026-11-27T00:00:00Z), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// To this time (RFC 3339), exclusive.
        #[arg(long)]
        to: Option<String>,
        /// Only this actor: account:NAME or cert:HEXSERIAL:SUBJECT.
        #[arg(long)]
        actor: Option<String>,
        /// Only this event type (e.g. message_signed, issue, revoke).
        #[arg(long)]
        event: Option<EventType>,
        /// Only records about this object (serial, digest, ...).
        #[arg(long)]
        object: Option<String>,
        /// At most this many records.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write an inclusion proof of one record against the latest signed head.
    Prove {
        /// The log URL.
        #[arg(long)]
        log: String,
        /// The record's index.
        #[arg(long, conflicts_with = "record_hash", required_unless_present = "record_hash")]
        index: Option<u64>,
        /// The record's leaf hash (hex).
        #[arg(long)]
        record_hash: Option<String>,
        /// Where to write the proof (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a proof file against a head file, offline (no database).
    CheckProof {
        /// A signed head (checkpoint text).
        #[arg(long)]
        head: PathBuf,
        /// A proof written by `eport audit prove`.
        #[arg(long)]
        proof: PathBuf,
        /// The log's public key (PEM SubjectPublicKeyInfo) to check the head's signature with;
        /// without it the key carried in the proof file is used, which only proves consistency.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Prove that the log extends an old head (nothing deleted, changed or reordered since).
    Consistency {
        /// The log URL.
        #[arg(long)]
        log: String,
        /// A head kept earlier.
        #[arg(long)]
        old_head: PathBuf,
    },
    /// Export the log (records, heads, public key) to a new directory.
    Export {
        /// The log URL.
        #[arg(long)]
        log: String,
        /// The directory to create.
        #[arg(long)]
        out: PathBuf,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

pub(crate) fn run(command: AuditCommand) -> Result<ExitCode> {
    runtime()?.block_on(run_async(command))
}

async fn run_async(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Init { log, key, hash, origin } => {
            let signer: Arc<dyn signer_lib::Signer> = Arc::from(keyref::open(&key)?);
            let audit = AuditLog::create(&log, signer, hash, &origin)
                .await
                .with_context(|| format!("cannot create the audit log {log}"))?;
            let head = audit.latest_checkpoint().await?.context("the new log has no head")?;
            audit.close().await;
            println!("created audit log {log} ({hash}, origin {origin}); first head:");
            print!("{}", head.note());
        }
        AuditCommand::Head { log, key, out } => {
            let signer: Arc<dyn signer_lib::Signer> = Arc::from(keyref::open(&key)?);
            let audit = AuditLog::open_writer(&log, signer).await.with_context(|| format!("cannot open {log}"))?;
            let head = audit.sign_head().await?;
            audit.close().await;
            print!("{}", head.note());
            if let Some(out) = out {
                std::fs::write(&out, head.note()).with_context(|| format!("cannot write {}", out.display()))?;
            }
        }
        AuditCommand::Verify { log, trusted_head } => return verify(&log, trusted_head.as_deref()).await,
        AuditCommand::Query { log, from, to, actor, event, object, limit, json } => {
            let audit = AuditLog::open(&log).await.with_context(|| format!("cannot open {log}"))?;
            let filter = QueryFilter {
                from_time: from.as_deref().map(parse_time).transpose()?,
                to_time: to.as_deref().map(parse_time).transpose()?,
                actor: actor.as_deref().map(parse_actor).transpose()?,
                event,
                object,
                from_index: None,
                limit,
            };
            for r in audit.query(&filter).await? {
                if json {
                    println!("{}", record_json(&r));
                } else {
                    println!("{}", record_line(&r));
                }
            }
        }
        AuditCommand::Prove { log, index, record_hash, out } => {
            let audit = AuditLog::open(&log).await.with_context(|| format!("cannot open {log}"))?;
            let head = audit
                .latest_checkpoint()
                .await?
                .context("the log has no signed head yet: sign one with `eport audit head`")?;
            let proof = match (index, record_hash) {
                (Some(i), _) => audit.inclusion_proof(i, head.size()).await,
                (None, Some(h)) => audit.inclusion_proof_by_leaf_hash(&parse_hash(&h)?, head.size()).await,
                (None, None) => bail!("give --index or --record-hash"),
            }
            .with_context(|| format!("no proof against the latest head (size {})", head.size()))?;
            let record = audit
                .record(proof.leaf_index)
                .await?
                .with_context(|| format!("record {} is not in the log (purged?)", proof.leaf_index))?;
            let bundle = serde_json::json!({
                "format": PROOF_FORMAT,
                "origin": head.origin(),
                "hash": audit.metadata().hash.name(),
                "log_public_key": base64::engine::general_purpose::STANDARD.encode(&audit.metadata().public_key),
                "leaf_index": proof.leaf_index,
                "tree_size": proof.tree_size,
                "leaf_hash": hex::encode(record.leaf_hash),
                "record_der": base64::engine::general_purpose::STANDARD.encode(record.record.to_der()?),
                "path": proof.path.iter().map(hex::encode).collect::<Vec<_>>(),
                "checkpoint": head.note(),
            });
            crate::write_new(&out, serde_json::to_string_pretty(&bundle)?.as_bytes())?;
            println!(
                "proof of record {} in a tree of {} written to {}",
                proof.leaf_index,
                proof.tree_size,
                out.display()
            );
        }
        AuditCommand::CheckProof { head, proof, public_key } => {
            return check_proof(&head, &proof, public_key.as_deref());
        }
        AuditCommand::Consistency { log, old_head } => {
            let audit = AuditLog::open(&log).await.with_context(|| format!("cannot open {log}"))?;
            let old = read_text(&old_head)?;
            match audit.verify_consistency(&old).await {
                Ok(p) => println!("consistent: the log at size {} extends the head of size {}", p.new_size, p.old_size),
                Err(e) => {
                    eprintln!("eport: audit log INCONSISTENT with {}: {e}", old_head.display());
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        AuditCommand::Export { log, out } => export(&log, &out).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(log: &str, trusted_head: Option<&Path>) -> Result<ExitCode> {
    let audit = AuditLog::open_unverified(log).await.with_context(|| format!("cannot open {log}"))?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // Hidden unless stderr is a terminal (indicatif's default draw target checks that).
    let result = audit.verify(|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    let result = result.await;
    bar.finish_and_clear();
    match result {
        Ok(report) => {
            println!(
                "intact: {} records checked, {} signed heads checked, root {} at size {}",
                report.records_checked,
                report.heads_checked,
                hex::encode(report.root),
                report.size
            );
            if let Some(path) = trusted_head {
                let old = read_text(path)?;
                if let Err(e) = audit.verify_consistency(&old).await {
                    eprintln!("eport: audit log INVALID: it does not extend the trusted head {}: {e}", path.display());
                    return Ok(ExitCode::FAILURE);
                }
                println!("the log extends the trusted head {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("eport: audit log INVALID: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn check_proof(head_path: &Path, proof_path: &Path, public_key: Option<&Path>) -> Result<ExitCode> {
    let note = read_text(head_path)?;
    let bundle: serde_json::Value = serde_json::from_str(&read_text(proof_path)?)
        .with_context(|| format!("{}: not a proof file", proof_path.display()))?;
    if bundle["format"] != PROOF_FORMAT {
        bail!("{}: not an {PROOF_FORMAT} file", proof_path.display());
    }
    let field = |name: &str| bundle[name].as_str().with_context(|| format!("proof file lacks {name}"));
    let number = |name: &str| bundle[name].as_u64().with_context(|| format!("proof file lacks {name}"));
    let b64 = |name: &str| -> Result<Vec<u8>> {
        base64::engine::general_purpose::STANDARD.decode(field(name)?).with_context(|| format!("{name} is not base64"))
    };
    let key = match public_key {
        Some(path) => {
            let pem = read_text(path)?;
            let (label, der) = der::pem::decode_vec(pem.as_bytes())
                .map_err(|e| anyhow::anyhow!("{}: not a PEM public key: {e}", path.display()))?;
            if label != "PUBLIC KEY" {
                bail!("{}: expected a PUBLIC KEY PEM, found {label}", path.display());
            }
            der
        }
        None => {
            eprintln!("note: the head's signature is checked with the key in the proof file; pin it with --public-key");
            b64("log_public_key")?
        }
    };
    let hash: HashAlgorithm = field("hash")?.parse()?;
    let head = match Checkpoint::verify(&note, &key) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("eport: proof INVALID: the head is not signed by the log key: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let (leaf_index, tree_size) = (number("leaf_index")?, number("tree_size")?);
    if tree_size != head.size() {
        eprintln!("eport: proof INVALID: the proof is for a tree of {tree_size} records, the head for {}", head.size());
        return Ok(ExitCode::FAILURE);
    }
    let record_der = b64("record_der")?;
    let leaf_hash = hash.leaf(&record_der);
    if hex::encode(leaf_hash) != field("leaf_hash")? {
        eprintln!("eport: proof INVALID: the record does not hash to the stated leaf hash");
        return Ok(ExitCode::FAILURE);
    }
    let path = bundle["path"]
        .as_array()
        .context("proof file lacks path")?
        .iter()
        .map(|v| v.as_str().context("path entries are hex strings").and_then(parse_hash))
        .collect::<Result<Vec<Hash>>>()?;
    if let Err(e) = verify_inclusion(hash, &leaf_hash, leaf_index, tree_size, &path, head.root()) {
        eprintln!("eport: proof INVALID: {e}");
        return Ok(ExitCode::FAILURE);
    }
    let record = AuditRecord::from_der(&record_der)?;
    println!(
        "valid: record {leaf_index} ({} by {}, {}) is in the log {} of {tree_size} records signed by its key",
        record.event,
        record.actor,
        crate::format_millis(record.time),
        head.origin()
    );
    Ok(ExitCode::SUCCESS)
}

async fn export(log: &str, out: &Path) -> Result<()> {
    let audit = AuditLog::open(log).await.with_context(|| format!("cannot open {log}"))?;
    std::fs::create_dir(out).with_context(|| format!("cannot create {}", out.display()))?;
    let meta = audit.metadata();
    let key_pem = der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &meta.public_key)
        .map_err(|e| anyhow::anyhow!("cannot encode the log key: {e}"))?;
    crate::write_new(&out.join("log-public-key.pem"), key_pem.as_bytes())?;
    if let Some(head) = audit.latest_checkpoint().await? {
        crate::write_new(&out.join("head.txt"), head.note().as_bytes())?;
    }
    let mut lines = String::new();
    let mut from_index = 0u64;
    let mut count = 0u64;
    loop {
        let filter = QueryFilter { from_index: Some(from_index), limit: 1000, ..QueryFilter::default() };
        let batch = audit.query(&filter).await?;
        let Some(last) = batch.last() else { break };
        from_index = last.index + 1;
        for r in &batch {
            lines.push_str(&record_json(r).to_string());
            lines.push('\n');
            count += 1;
        }
    }
    crate::write_new(&out.join("records.jsonl"), lines.as_bytes())?;
    println!("exported {count} records, the latest head and the log key to {}", out.display());
    Ok(())
}

fn record_line(r: &LoggedRecord) -> String {
    let rec = &r.record;
    let outcome = match &rec.outcome {
        signer_lib::audit::Outcome::Success => "ok".to_owned(),
        signer_lib::audit::Outcome::Failure(why) => format!("FAILED: {why}"),
    };
    format!(
        "{:>8}  {}  {:<20} {}{}  {}",
        r.index,
        crate::format_millis(rec.time),
        rec.event.to_string(),
        rec.actor,
        rec.object.as_deref().map(|o| format!("  object={o}")).unwrap_or_default(),
        outcome
    )
}

fn record_json(r: &LoggedRecord) -> serde_json::Value {
    let rec = &r.record;
    serde_json::json!({
        "index": r.index,
        "leaf_hash": hex::encode(r.leaf_hash),
        "time": crate::format_millis(rec.time),
        "time_ms": rec.time,
        "actor": rec.actor.key(),
        "role": rec.role.map(|x| x.to_string()),
        "event": rec.event.to_string(),
        "object": rec.object,
        "outcome": match &rec.outcome {
            signer_lib::audit::Outcome::Success => serde_json::json!("success"),
            signer_lib::audit::Outcome::Failure(why) => serde_json::json!({ "failure": why }),
        },
        "source": rec.source,
        "request_id": rec.request_id,
    })
}

fn parse_time(s: &str) -> Result<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{s:?} is not an RFC 3339 time such as 2026-11-27T08:00:00Z"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).context("time out of range")
}

fn parse_actor(s: &str) -> Result<Actor> {
    if let Some(name) = s.strip_prefix("account:") {
        return Ok(Actor::account(name));
    }
    if let Some(rest) = s.strip_prefix("cert:")
        && let Some((serial, subject)) = rest.split_once(':')
    {
        let serial = hex::decode(serial).with_context(|| format!("{serial:?} is not a hex serial"))?;
        return Ok(Actor::Certificate { subject: subject.to_owned(), serial });
    }
    bail!("actor must be account:NAME or cert:HEXSERIAL:SUBJECT")
}

fn parse_hash(s: &str) -> Result<Hash> {
    let bytes = hex::decode(s.trim()).with_context(|| format!("{s:?} is not hex"))?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("a record hash is 32 bytes (64 hex digits)"))
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Appends the record of a message signed or verified through the CLI (`--log`). Appending
/// needs no key: the next head signed with `eport audit head` covers the record.
///
/// # Errors
/// When the log cannot be opened or the append is not committed: the caller fails closed.
pub(crate) fn append(log: &str, record: AuditRecord) -> Result<u64> {
    runtime()?.block_on(async {
        let audit = AuditLog::open_appender(log).await.with_context(|| format!("cannot open the audit log {log}"))?;
        let index = audit.append(&record).await.context("the audit record was not written")?;
        audit.close().await;
        Ok(index)
    })
}
