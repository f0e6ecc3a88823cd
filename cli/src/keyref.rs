//! KEYREF: a key named by a file path (PKCS#8) or a `pkcs11:` URI (RFC 7512).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use signer_lib::key::pkcs11::{Pkcs11Key, Pkcs11Uri};
use signer_lib::key::software::{KeyFormat, SoftwareKey};
use signer_lib::{SignatureAlgorithm, Signer};

use crate::secret_from_env;

/// The flags that name a key and the secrets it needs (by environment-variable name only).
#[derive(Clone, Debug, Args)]
pub struct KeyArgs {
    /// A key file (PKCS#8, PEM or DER) or a pkcs11: URI such as "pkcs11:token=ent-001;object=sign-key".
    #[arg(long)]
    pub key: String,
    /// The PKCS#11 module (shared library) for pkcs11: keys.
    #[arg(long, env = "EPORT_PKCS11_MODULE")]
    pub module: Option<PathBuf>,
    /// Name of the environment variable holding the token PIN.
    #[arg(long, value_name = "VAR")]
    pub pin_env: Option<String>,
    /// Name of the environment variable holding the key file's passphrase.
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
    /// SM2 signer ID (GM/T 0009); the default is "1234567812345678".
    #[arg(long, value_name = "ID")]
    pub sm2_id: Option<String>,
}

/// Where a key lives.
#[derive(Debug)]
pub enum KeyRef {
    /// A PKCS#8 file.
    File(PathBuf),
    /// A key on a PKCS#11 token.
    Pkcs11(Box<Pkcs11Uri>),
}

impl KeyRef {
    /// Parses a KEYREF.
    ///
    /// # Errors
    /// When a `pkcs11:` URI is malformed.
    pub fn parse(s: &str) -> Result<Self> {
        if s.starts_with("pkcs11:") {
            Ok(Self::Pkcs11(Box::new(s.parse().with_context(|| format!("invalid key reference {s:?}"))?)))
        } else {
            Ok(Self::File(PathBuf::from(s)))
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "in {}", p.display()),
            Self::Pkcs11(u) => write!(f, "on token: {u}"),
        }
    }
}

fn module(args: &KeyArgs) -> Result<&Path> {
    match &args.module {
        Some(m) => Ok(m),
        None => bail!("a pkcs11: key needs --module or EPORT_PKCS11_MODULE naming the PKCS#11 library"),
    }
}

fn pin(args: &KeyArgs) -> Result<Option<zeroize::Zeroizing<String>>> {
    args.pin_env.as_deref().map(secret_from_env).transpose()
}

/// Opens the key named by `args`.
///
/// # Errors
/// When the file cannot be read or decrypted, or the token, PIN or key is wrong.
pub fn open(args: &KeyArgs) -> Result<Box<dyn Signer>> {
    match KeyRef::parse(&args.key)? {
        KeyRef::File(path) => {
            let passphrase = args.passphrase_env.as_deref().map(secret_from_env).transpose()?;
            let key = SoftwareKey::load(&path, passphrase.as_ref().map(|p| p.as_bytes()))
                .with_context(|| format!("cannot load key {}", path.display()))?;
            let key = match &args.sm2_id {
                Some(id) => key.with_sm2_distid(id)?,
                None => key,
            };
            Ok(Box::new(key))
        }
        KeyRef::Pkcs11(uri) => {
            if args.sm2_id.is_some() {
                bail!("--sm2-id applies to software SM2 keys only");
            }
            let pin = pin(args)?;
            let key = Pkcs11Key::open(module(args)?, &uri, pin.as_deref().map(String::as_str))?;
            Ok(Box::new(key))
        }
    }
}

/// A key and the certificates (DER) stored next to it.
pub type KeyWithCertificates = (Box<dyn Signer>, Vec<Vec<u8>>);

/// Opens the key named by `args`, with the certificates stored next to it: for a `pkcs11:`
/// key, the certificate objects with the key's CKA_ID (DER); none for a key file.
///
/// # Errors
/// As [`open`], and when the token's certificates cannot be read.
pub fn open_with_certificates(args: &KeyArgs) -> Result<KeyWithCertificates> {
    match KeyRef::parse(&args.key)? {
        KeyRef::File(_) => Ok((open(args)?, Vec::new())),
        KeyRef::Pkcs11(uri) => {
            if args.sm2_id.is_some() {
                bail!("--sm2-id applies to software SM2 keys only");
            }
            let pin = pin(args)?;
            let key = Pkcs11Key::open(module(args)?, &uri, pin.as_deref().map(String::as_str))?;
            let certificates = key.certificates()?;
            Ok((Box::new(key), certificates))
        }
    }
}

/// Generates a key where `reference` says and returns a description of where it went.
///
/// # Errors
/// When the file exists, the token refuses, or the algorithm is not available there.
pub fn generate(reference: &KeyRef, args: &KeyArgs, algorithm: SignatureAlgorithm, der: bool) -> Result<String> {
    match reference {
        KeyRef::File(path) => {
            let passphrase = args.passphrase_env.as_deref().map(secret_from_env).transpose()?;
            let key = SoftwareKey::generate(algorithm)?;
            let key = match &args.sm2_id {
                Some(id) => key.with_sm2_distid(id)?,
                None => key,
            };
            let format = if der { KeyFormat::Der } else { KeyFormat::Pem };
            key.save(path, passphrase.as_ref().map(|p| p.as_bytes()), format)?;
            Ok(format!(
                "in {} ({})",
                path.display(),
                if passphrase.is_some() { "PKCS#8, encrypted" } else { "PKCS#8, NOT encrypted" }
            ))
        }
        KeyRef::Pkcs11(uri) => {
            let pin = pin(args)?;
            let key = Pkcs11Key::generate(module(args)?, uri, pin.as_deref().map(String::as_str), algorithm)?;
            Ok(format!("on token: {}", key.uri()))
        }
    }
}
