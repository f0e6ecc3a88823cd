//! signer-lib: the library every party of the e-port links.
//!
//! - [`key`]: the [`Signer`] trait and its backends — software keys (encrypted PKCS#8),
//!   PKCS#11 tokens and YubiHSM 2.
//! - [`algorithm`]: the signature algorithms we sign and verify with, and their identifiers.
//! - [`sm2`]: SM2 specifics — distinguishing IDs, the Z value, DER ⇄ raw r‖s.
//! - [`verify`]: raw signature verification against a SubjectPublicKeyInfo.
//! - [`csr`]: PKCS#10 certification requests signed by any [`Signer`].
//! - [`certificate`]: X.509 certificates signed by any [`Signer`] (test and demo CAs), PEM/DER parsing.
//! - [`envelope`]: CMS SignedData (RFC 5652, CAdES-BES attributes, GM/T 0010 for SM2).
//! - `tls` (feature `tls`): any [`Signer`] as a rustls key, and a pinned-root client configuration.
//! - [`audit`]: the tamper-evident audit trail — Merkle log (RFC 9162), signed checkpoints, SQLite/PostgreSQL stores.

pub mod algorithm;
pub mod audit;
pub mod certificate;
pub mod csr;
pub mod envelope;
mod error;
pub mod key;
pub mod sm2;
#[cfg(feature = "tls")]
pub mod tls;
pub mod verify;

pub use algorithm::SignatureAlgorithm;
pub use error::Error;
pub use key::Signer;
