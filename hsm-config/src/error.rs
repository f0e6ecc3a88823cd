//! The one error type of hsm-config.

use std::path::PathBuf;

/// Everything that can go wrong loading a key configuration or opening a key from it.
///
/// No variant carries a secret: environment variables are named, never their values, and
/// TOML errors keep the parser's message and position but not the offending source line (a
/// misnamed field may hold a PIN).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read key configuration {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed or does not fit the schema (unknown or misspelt field, missing
    /// field, wrong type, unknown backend).
    #[error("invalid key configuration {}{}: {message}", origin.display(), position(*line, *column))]
    Parse {
        /// The file, or `<string>` for [`crate::KeysConfig::from_toml_str`].
        origin: PathBuf,
        /// 1-based line of the error, when the parser knows it.
        line: Option<usize>,
        /// 1-based column (in characters) of the error, when the parser knows it.
        column: Option<usize>,
        /// The parser's message, e.g. "unknown field `pin_enV`, expected one of ...".
        message: String,
    },
    /// A field would hold a secret in the file itself.
    #[error(
        "key configuration {}: keys.{key}.{field} would hold a secret in the file; secrets are read from the \
         environment: name the variable with {hint} = \"VARIABLE\"",
        origin.display()
    )]
    InlineSecret {
        /// The file, or `<string>`.
        origin: PathBuf,
        /// The key's name.
        key: String,
        /// The forbidden field.
        field: String,
        /// The field to use instead (`pin_env`, `password_env`, `passphrase_env`).
        hint: String,
    },
    /// The environment variable named by a `*_env` field is not set.
    #[error("environment variable {variable} (named by {field}) is not set")]
    MissingEnv {
        /// The variable's name.
        variable: String,
        /// The configuration field that names it.
        field: &'static str,
    },
    /// The environment variable named by a `*_env` field is set but empty.
    #[error("environment variable {variable} (named by {field}) is empty")]
    EmptyEnv {
        /// The variable's name.
        variable: String,
        /// The configuration field that names it.
        field: &'static str,
    },
    /// The environment variable named by a `*_env` field is not valid UTF-8.
    #[error("environment variable {variable} (named by {field}) is not valid UTF-8")]
    EnvNotUnicode {
        /// The variable's name.
        variable: String,
        /// The configuration field that names it.
        field: &'static str,
    },
    /// A PKCS#11 key names no module and the fallback variable is not set either.
    #[error(
        "no PKCS#11 module: set `module` in the key configuration, `?module-path=` in its URI, or the environment variable {variable}"
    )]
    NoPkcs11Module {
        /// The fallback variable ([`crate::PKCS11_MODULE_ENV`]).
        variable: &'static str,
    },
    /// `sm2_distid` was given for a key that is not an SM2 key.
    #[error("sm2_distid is set but the key at {} is a {algorithm} key", path.display())]
    Sm2DistidOnOtherKey {
        /// The key file.
        path: PathBuf,
        /// The key's algorithm.
        algorithm: signer_lib::SignatureAlgorithm,
    },
    /// [`crate::KeysConfig::open`] was asked for a key the configuration does not name.
    #[error("no key named {name:?} in the configuration (it names: {known})")]
    UnknownKey {
        /// The name asked for.
        name: String,
        /// The names the configuration has, comma-separated.
        known: String,
    },
    /// The key backend failed (file, token or HSM).
    #[error(transparent)]
    Signer(#[from] signer_lib::Error),
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}
