//! The tamper-evident audit trail (GB/T 22239 8.1.4.3, R9–R13, R53): every security-relevant
//! event is a typed record appended to a Merkle log (RFC 9162 §2.1) whose heads are signed as
//! C2SP checkpoints, so that deleting, changing, reordering or truncating records is detected.
//!
//! - [`record`]: the [`AuditRecord`], its closed [`EventType`] catalogue and its canonical DER.
//! - [`merkle`]: RFC 9162 hashing (SHA-256 or SM3, fixed per log), the prover over perfect
//!   subtrees, and the O(log n) right edge of the tree.
//! - [`proof`]: inclusion and consistency proof verifiers, written from the RFC's algorithms.
//! - [`checkpoint`]: signed tree heads as signed notes, for Ed25519, ECDSA P-256 and SM2 keys.
//! - [`store`]: the [`AuditStore`] trait and its SQLite and PostgreSQL implementations.
//! - [`log`]: [`AuditLog`], with group-commit appends, proofs, queries, full verification and
//!   retention purges.
//! - [`archive`]: what a purge leaves behind, and [`verify_archive`] to check it offline.
//!
//! ```no_run
//! # async fn demo() -> Result<(), signer_lib::Error> {
//! use std::sync::Arc;
//! use signer_lib::audit::{Actor, AuditLog, AuditRecord, EventType, HashAlgorithm, now_millis};
//! use signer_lib::key::software::SoftwareKey;
//! use signer_lib::SignatureAlgorithm;
//!
//! let key = Arc::new(SoftwareKey::generate(SignatureAlgorithm::Sm2Sm3)?);
//! let log = AuditLog::create("sqlite:/var/lib/eport/audit.db", key, HashAlgorithm::Sm3, "ca.example/audit").await?;
//! let index = log.append(&AuditRecord::new(now_millis(), Actor::account("ra-officer-1"), EventType::Approval)).await?;
//! let head = log.sign_head().await?;
//! let proof = log.inclusion_proof(index, head.size()).await?;
//! # Ok(()) }
//! ```

pub mod archive;
pub mod checkpoint;
pub mod log;
pub mod merkle;
pub mod proof;
pub mod record;
pub mod store;

pub use archive::{ArchiveReport, verify_archive};
pub use checkpoint::Checkpoint;
pub use log::{
    AuditLog, LoggedRecord, MIN_RETENTION_DAYS, PendingAppend, PurgeOptions, PurgeReport, VerifyReport, now_millis,
};
pub use merkle::{Hash, HashAlgorithm};
pub use proof::{ConsistencyProof, InclusionProof, verify_consistency, verify_inclusion};
pub use record::{Actor, AuditRecord, EventType, Outcome, Role};
pub use store::{AuditStore, QueryFilter, Store};
