//! Opening the key a [`KeyBackend`] names: reading its secret from the environment and
//! handing it to the signer-lib backend.

use std::ffi::OsString;
use std::path::PathBuf;

use signer_lib::key::pkcs11::Pkcs11Key;
use signer_lib::key::software::SoftwareKey;
use signer_lib::key::yubihsm::YubiHsmKey;
use signer_lib::{SignatureAlgorithm, Signer};

use crate::{Error, KeyBackend, KeysConfig};

/// The environment variable naming the PKCS#11 module when a key's `module` is absent.
pub const PKCS11_MODULE_ENV: &str = "EPORT_PKCS11_MODULE";

/// Opens the key `backend` names, reading its passphrase, PIN or password from the process
/// environment. Opening may block (a token login, a device round-trip).
///
/// # Errors
/// [`Error::MissingEnv`] (naming the variable, never a value) when a `*_env` variable is not
/// set, [`Error::EmptyEnv`] or [`Error::EnvNotUnicode`]; [`Error::NoPkcs11Module`];
/// [`Error::Sm2DistidOnOtherKey`]; [`Error::Signer`] when the backend fails (file missing,
/// wrong passphrase or PIN, token or device unreachable, key not found).
pub fn open(backend: &KeyBackend) -> Result<Box<dyn Signer>, Error> {
    open_with_env(backend, &|name: &str| std::env::var_os(name))
}

/// [`open`] with the environment given as a function from variable name to value, so that
/// callers (and tests) can supply secrets without touching the process environment.
///
/// # Errors
/// As [`open`].
pub fn open_with_env(backend: &KeyBackend, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Box<dyn Signer>, Error> {
    match backend {
        KeyBackend::Software { path, passphrase_env, sm2_distid } => {
            let passphrase = passphrase_env.as_ref().map(|name| name.read("passphrase_env", env)).transpose()?;
            let key = SoftwareKey::load(path, passphrase.as_ref().map(|p| p.as_bytes()))?;
            let key = match sm2_distid {
                None => key,
                Some(distid) if key.algorithm() == SignatureAlgorithm::Sm2Sm3 => key.with_sm2_distid(distid)?,
                Some(_) => return Err(Error::Sm2DistidOnOtherKey { path: path.clone(), algorithm: key.algorithm() }),
            };
            Ok(Box::new(key))
        }
        KeyBackend::Pkcs11 { module, uri, pin_env } => {
            let module = match (module, &uri.module_path) {
                (Some(module), _) => module.clone(),
                (None, Some(module_path)) => PathBuf::from(module_path),
                (None, None) => env(PKCS11_MODULE_ENV)
                    .filter(|m| !m.is_empty())
                    .map(PathBuf::from)
                    .ok_or(Error::NoPkcs11Module { variable: PKCS11_MODULE_ENV })?,
            };
            let pin = pin_env.as_ref().map(|name| name.read("pin_env", env)).transpose()?;
            let key = Pkcs11Key::open(&module, uri, pin.as_ref().map(|p| p.as_str()))?;
            Ok(Box::new(key))
        }
        KeyBackend::YubiHsm { connector, auth_key_id, password_env, key_id } => {
            let password = password_env.read("password_env", env)?;
            let key = YubiHsmKey::open(connector.as_str(), *auth_key_id, &password, *key_id)?;
            Ok(Box::new(key))
        }
    }
}

impl KeysConfig {
    /// Opens key `name` (see [`open`]).
    ///
    /// # Errors
    /// [`Error::UnknownKey`], otherwise as [`open`].
    pub fn open(&self, name: &str) -> Result<Box<dyn Signer>, Error> {
        open(self.key(name)?)
    }
}
