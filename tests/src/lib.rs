//! Shared helpers for the interop tests: temp dirs, running OpenSSL, SoftHSM2 tokens.

pub mod softhsm;
