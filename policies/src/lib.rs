//! policies: the certificate profiles of eport-pki as TOML data, and the code that applies
//! and lints them.
//!
//! - [`profile`]: the profile schema ([`Profile`]), loaded from `policies/profiles/*.toml`
//!   or from the copies compiled in ([`Profile::by_id`], [`Profiles::embedded`]).
//! - [`subject`]: what the RA knows about a subject ([`SubjectData`]) and the name built
//!   from it; [`uscc`]: the unified social credit code check of GB 32100-2015.
//! - [`issuer`]: [`issue`] builds a certificate from an [`IssueRequest`], lints it signed by a
//!   throwaway key, and only then signs it with the issuing key; [`random_serial`].
//! - [`extension`]: the extensions a profile calls for, with the profile's criticality.
//! - [`mod@lint`]: the linter ([`lint()`], [`Finding`], [`LINTS`]).
//! - [`authorisation`]: a legal representative's signed authorisation of an operator.
//! - [`oid`]: the object identifiers used, with their sources.
//! - [`Error`]: the one error type.

pub mod authorisation;
mod error;
pub mod extension;
pub mod issuer;
pub mod lint;
pub mod oid;
pub mod profile;
pub mod serial;
pub mod subject;
#[cfg(test)]
mod testing;
pub mod uscc;

pub use error::{Error, UsccDefect};
pub use issuer::{IssueRequest, IssuerUrls, build_tbs, issue, issue_with_warnings};
pub use lint::{Finding, LINTS, Level, lint, lint_tbs};
pub use profile::{Profile, Profiles};
pub use serial::random_serial;
pub use subject::{OfficerRole, SubjectData};
pub use uscc::validate_uscc;
