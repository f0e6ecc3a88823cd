//! hsm-config: typed configuration naming the keys eport-pki signs with and where they live.
//!
//! - [`config`]: the TOML schema ([`KeysConfig`], [`KeyBackend`]), strict (unknown fields are
//!   errors) and loaded relative to the file's directory.
//! - [`env_var`]: secrets are never in the file; `*_env` fields name the environment variable
//!   holding each ([`EnvVarName`]).
//! - [`signer`]: [`open`] turns a [`KeyBackend`] into a [`signer_lib::Signer`].
//! - [`Error`]: the one error type.
//!
//! Example configurations ship in `hsm-config/examples/`.

pub mod config;
pub mod env_var;
mod error;
pub mod signer;

pub use config::{ConnectorUrl, KeyBackend, KeysConfig};
pub use env_var::EnvVarName;
pub use error::Error;
pub use signer::{PKCS11_MODULE_ENV, open, open_with_env};
