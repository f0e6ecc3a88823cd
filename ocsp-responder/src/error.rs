//! The one error type of ocsp-responder.

use std::path::PathBuf;

/// Everything that can go wrong setting up or running the responder. Request-level problems
/// are not errors: they become OCSP error statuses (see [`crate::request::Rejection`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A serial number that is not a certificate serial we can hold.
    #[error("not a certificate serial number: {serial:?}")]
    BadSerial {
        /// The serial as found (truncated).
        serial: String,
    },
    /// The responder certificate does not qualify as a delegated OCSP signer for the issuer
    /// (RFC 6960 §4.2.2.2): wrong issuer, bad signature, missing id-kp-OCSPSigning or
    /// id-pkix-ocsp-nocheck, not valid now, or a key that does not match.
    #[error("issuer {issuer}: responder certificate {subject} cannot sign for it: {reason}")]
    NotDelegated {
        /// The issuer id.
        issuer: String,
        /// The responder certificate's subject.
        subject: String,
        /// What is wrong.
        reason: String,
    },
    /// Two issuers with the same id or the same CA certificate.
    #[error("issuer {issuer} is configured twice")]
    DuplicateIssuer {
        /// The id.
        issuer: String,
    },
    /// A configured timing or limit is out of range.
    #[error("invalid setting {field}: {reason}")]
    InvalidSetting {
        /// The setting.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The configuration file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is not valid TOML for the schema (misspelt keys included).
    #[error("invalid configuration {}: {message}", path.display())]
    Config {
        /// The file (or `<string>`).
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A key from the key configuration could not be opened.
    #[error("key {name}: {source}")]
    Key {
        /// The key's name in the key configuration.
        name: String,
        /// What hsm-config said.
        #[source]
        source: hsm_config::Error,
    },
    /// A certificate, signature or key operation failed in signer-lib.
    #[error("{context}: {source}")]
    Signer {
        /// What was being done.
        context: String,
        /// The signer-lib error.
        #[source]
        source: signer_lib::Error,
    },
    /// DER encoding or decoding failed for something we built or were configured with.
    #[error("{what}: {source}")]
    Der {
        /// What was being encoded or decoded.
        what: &'static str,
        /// The der error.
        source: der::Error,
    },
    /// The status source (CA database) failed.
    #[error("status source: {0}")]
    Store(String),
    /// A signing task could not be run (the runtime is shutting down).
    #[error("signing task failed: {0}")]
    Task(String),
}

impl Error {
    pub(crate) fn der(what: &'static str, source: der::Error) -> Self {
        Self::Der { what, source }
    }
}
