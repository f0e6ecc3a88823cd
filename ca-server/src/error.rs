//! The one error type of the CA core. The HTTP layer maps each variant to a status code and a
//! problem document (see `API.md`); messages of client errors never carry internals, and
//! [`Error::CodeInvalid`] never says why a code was refused.

use std::path::PathBuf;

use policies::Finding;

/// Everything the CA core can refuse or fail at. Variants carry what explains the outcome.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's role may not do this (三权分立: roles are disjoint and checked here too).
    #[error("{action} is not allowed for this role (allowed: {allowed})")]
    Forbidden {
        /// What was attempted (`register`, `approve`, `revoke`, ...).
        action: &'static str,
        /// The roles that may do it.
        allowed: &'static str,
    },
    /// No usable client identity: no certificate, an unknown one, or one that is revoked,
    /// on hold or expired.
    #[error("not authenticated: {reason}")]
    Unauthenticated {
        /// Why the identity was refused.
        reason: String,
    },
    /// The identity or source address is locked after repeated authentication failures.
    #[error("locked after repeated authentication failures until {until} (unix seconds)")]
    Locked {
        /// When the lock ends, in Unix seconds.
        until: i64,
    },
    /// Something named in the request does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for (`registration 0a1b…`, `certificate 4f…`, `issuer xyz`).
        what: String,
    },
    /// The request is malformed or not acceptable: a bad CSR, a key algorithm the profile does
    /// not allow, an invalid USCC, an unknown profile or reason name, a bad serial.
    #[error("bad {what}: {reason}")]
    BadRequest {
        /// The field or input at fault (`csr`, `key`, `profile`, `uscc`, `reason`, `serial`).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The request conflicts with the current state: the same officer approving twice, a
    /// registration already approved, a certificate already revoked or not on hold.
    #[error("conflict: {what}")]
    Conflict {
        /// What conflicts.
        what: String,
    },
    /// The enrolment code is wrong, expired, used, or out of attempts. Deliberately one
    /// variant with one message: a guesser learns nothing.
    #[error("the enrolment code is not valid")]
    CodeInvalid,
    /// Pre-issuance linting refused the certificate; nothing was signed by the issuing key.
    #[error("certificate refused by the linter: {}", findings_text(.0))]
    Lint(Vec<Finding>),
    /// The audit log could not record the operation, so it was not done (fail closed) or its
    /// result was not released.
    #[error("audit log unavailable: {0}")]
    AuditUnavailable(String),
    /// The CA database failed.
    #[error("database: {0}")]
    Store(String),
    /// A CA-side failure that is not the caller's fault (a key that cannot sign, a
    /// certificate that does not encode).
    #[error("internal error: {0}")]
    Internal(String),
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// `init` was run on a data directory (or database) that already holds a CA, or the
    /// remains of an interrupted ceremony (which is redone from an empty directory).
    #[error(
        "{} already holds an initialised CA or an interrupted key ceremony; refusing to run the ceremony twice",
        .data_dir.display()
    )]
    AlreadyInitialised {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// `open` was run on a data directory without a CA (run `eport-ca init` first).
    #[error("{} holds no initialised CA (run `eport-ca init --data {}`)", .data_dir.display(), .data_dir.display())]
    NotInitialised {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// A CA key could not be generated, stored or opened.
    #[error("key {name}: {reason}")]
    Key {
        /// The key's name (`issuing-p256`, `audit`, ...).
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// Another process (`serve`, or an offline command) holds the data directory's lock.
    #[error(
        "{} is in use by another eport-ca process (its lock is held): stop `eport-ca serve` before `{what}`; \
         what it changes takes effect at the next start",
        .data_dir.display()
    )]
    DataDirInUse {
        /// The data directory.
        data_dir: PathBuf,
        /// The command that wanted it.
        what: String,
    },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the caller is at fault (a 4xx at the HTTP edge) rather than the CA (5xx).
    #[must_use]
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::Forbidden { .. }
                | Self::Unauthenticated { .. }
                | Self::Locked { .. }
                | Self::NotFound { .. }
                | Self::BadRequest { .. }
                | Self::Conflict { .. }
                | Self::CodeInvalid
                | Self::Lint(_)
        )
    }

    /// A [`Error::BadRequest`].
    pub(crate) fn bad(what: &'static str, reason: impl Into<String>) -> Self {
        Self::BadRequest { what, reason: reason.into() }
    }

    /// An [`Error::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// An [`Error::Internal`] from anything displayable.
    pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        Self::Internal(format!("{what}: {e}"))
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.to_string())
    }
}

fn findings_text(findings: &[Finding]) -> String {
    findings.iter().filter(|f| f.is_error()).map(ToString::to_string).collect::<Vec<_>>().join("; ")
}
