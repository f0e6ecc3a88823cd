//! ca-server: the certification authority of eport-pki — the only process that can reach an
//! issuing key.
//!
//! Core (no HTTP):
//! - [`config`]: the TOML configuration ([`Config`]), strict, with working defaults.
//! - [`ceremony`]: the key ceremony, [`Ca::init`] → [`ceremony::InitReport`].
//! - [`rotation`]: `eport-ca rotate ocsp-signer | tls`, new OCSP signer and HTTPS server
//!   generations ([`Ca::rotate_ocsp_signers`], [`Ca::rotate_tls`]).
//! - [`officer`]: `eport-ca officer add`, a new administrator identity ([`Ca::add_officer`]).
//! - [`root_crl`]: `eport-ca root-crl`, the roots' CRLs re-signed offline
//!   ([`Ca::resign_root_crls`]).
//! - [`admin`]: what those offline administrator commands share.
//! - [`service`]: the CA itself ([`Ca`]): registration, approval, enrolment, renewal,
//!   revocation, listing, CRLs; roles checked and everything audited.
//! - [`crl`]: building and signing CRLs.
//! - [`store`]: the CA database on sqlx `AnyPool` (SQLite or PostgreSQL, one migration set per
//!   dialect).
//! - [`keys`]: where the CA keys live (embedded software keys, or an hsm-config file).
//! - [`clock`]: where the time comes from ([`Clock`]); tests move it.
//! - [`error`]: the one error type ([`Error`]).
//!
//! HTTP layer: [`http`] (axum routes, problem documents, OpenAPI), [`tls`] (rustls, mTLS),
//! [`authz`] (the one authorisation gate), [`serve`] (`eport-ca serve`: both listeners, CRL schedule).

pub mod admin;
pub mod authorisation;
pub mod ceremony;
pub mod clock;
pub mod config;
pub mod crl;
pub mod error;
pub mod keys;
pub mod lock;
pub mod officer;
pub mod root_crl;
pub mod rotation;
pub mod service;
pub mod store;

// ---- HTTP layer (owned by the HTTP engineer): add `pub mod authz; pub mod http; pub mod tls;` here.
pub mod authz;
pub mod http;
pub mod serve;
pub mod tls;
// ---- end of HTTP layer

pub use ceremony::InitReport;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::Config;
pub use error::Error;
pub use service::{
    Approval, Ca, Caller, CertificateFilter, CertificateInfo, CertificateStatus, EventType, Issued, Registration,
    RegistrationRequest, RegistrationStatus, Role, TlsMaterial,
};
