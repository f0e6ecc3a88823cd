//! ocsp-responder: an RFC 6960 / RFC 5019 OCSP responder for eport-pki, answering from
//! responses pre-signed by each issuing CA's delegated OCSP signer, fed by the CA database.
//!
//! - [`source`]: where status comes from — the [`StatusSource`] trait, [`Serial`],
//!   [`CertificateStatus`]; in memory ([`source::memory`]) or the CA database ([`source::sql`]).
//! - [`issuer`]: an issuing CA with its delegated responder certificate and key, and the CertID
//!   hashes (SHA-1, SHA-256, SM3) that name it ([`Issuer`], [`CertIdHash`]).
//! - [`request`]: bounded parsing of OCSPRequests ([`request::parse`]).
//! - [`response`]: signing responses through the `Signer` trait; the unsigned error responses.
//! - [`cache`]: the pre-signed responses and their HTTP header values.
//! - [`responder`]: the core — answer, pre-sign, refresh, follow the change feed ([`Responder`]).
//! - [`http`]: the axum [`router`] (POST and GET, caching headers, `/healthz`, `/metrics`), and
//!   [`ocsp_routes`] for merging into ca-server's public listener.
//! - [`metrics`]: Prometheus counters.
//! - [`config`]: the typed TOML configuration of `eport-ocsp serve`.
//! - [`Error`]: the one error type.

pub mod cache;
pub mod config;
mod error;
pub mod http;
pub mod issuer;
pub mod metrics;
pub mod request;
pub mod responder;
pub mod response;
pub mod source;

pub use error::Error;
pub use http::{ocsp_routes, router};
pub use issuer::{CertIdHash, Issuer};
pub use responder::{Answer, Responder, Settings};
pub use source::{CertificateStatus, IssuerId, Serial, StatusSource};
