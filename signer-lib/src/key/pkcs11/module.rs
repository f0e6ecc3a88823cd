//! PKCS#11 modules, loaded and initialised once per process, and the translation of their
//! return values into [`Error`]s.
//!
//! `C_Initialize` may be called once per process: a second call returns
//! CKR_CRYPTOKI_ALREADY_INITIALIZED, and `C_Finalize` would pull the module out from under every
//! other user. So each module file is loaded once, kept in a process-wide registry keyed by its
//! canonical path, and never finalised; every key opened on it shares the one context. A
//! CKR_CRYPTOKI_ALREADY_INITIALIZED from our own `C_Initialize` (someone else in the process
//! initialised the module first) is accepted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};

use crate::Error;

/// A loaded and initialised PKCS#11 module.
#[derive(Debug)]
pub(super) struct Module {
    /// The canonical path of the module file.
    pub(super) path: PathBuf,
    /// The cryptoki context; cheap to clone, shared by every key on the module.
    pub(super) ctx: Pkcs11,
}

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();

/// Loads and initialises the module at `path`, or returns the one already loaded.
pub(super) fn load(path: &Path) -> Result<Arc<Module>, Error> {
    let module_error = |reason: String| Error::Pkcs11Module { module: path.display().to_string(), reason };
    let canonical = path.canonicalize().map_err(|e| module_error(e.to_string()))?;
    // The registry only ever gains entries; a panic while it was locked cannot leave it
    // half-updated, so a poisoned lock is still safe to use.
    let mut modules = MODULES.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(module) = modules.get(&canonical) {
        return Ok(Arc::clone(module));
    }
    let ctx = Pkcs11::new(&canonical).map_err(|e| module_error(e.to_string()))?;
    initialize(&ctx).map_err(|e| module_error(describe(&e)))?;
    let module = Arc::new(Module { path: canonical.clone(), ctx });
    modules.insert(canonical, Arc::clone(&module));
    Ok(module)
}

/// `C_Initialize` with OS locking (the module may be called from several threads), accepting
/// CKR_CRYPTOKI_ALREADY_INITIALIZED.
fn initialize(ctx: &Pkcs11) -> Result<(), CkError> {
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
        Err(e) => Err(e),
    }
}

impl Module {
    /// Initialises the module again after it reported CKR_CRYPTOKI_NOT_INITIALIZED (someone in
    /// the process called `C_Finalize`).
    pub(super) fn reinitialize(&self) -> Result<(), Error> {
        initialize(&self.ctx)
            .map_err(|e| Error::Pkcs11Module { module: self.path.display().to_string(), reason: describe(&e) })
    }
}

/// The PKCS#11 return value of a cryptoki error, if it is one.
pub(super) fn rv(e: &CkError) -> Option<RvError> {
    match e {
        CkError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// The CKR_ name of a return value (`RvError::PinIncorrect` → `CKR_PIN_INCORRECT`); the
/// cryptoki `Display` is a paragraph of the specification, too long for a log line.
pub(super) fn ckr_name(rv: RvError) -> String {
    let debug = format!("{rv:?}");
    if !debug.chars().all(|c| c.is_ascii_alphanumeric()) {
        // VendorDefined(0x...) and the like.
        return format!("CKR_{debug}");
    }
    let mut name = String::from("CKR");
    for c in debug.chars() {
        if c.is_ascii_uppercase() {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// A short description of a cryptoki error: the CKR_ name for PKCS#11 return values.
pub(super) fn describe(e: &CkError) -> String {
    rv(e).map_or_else(|| e.to_string(), ckr_name)
}

/// [`Error::Pkcs11`] for a failed call of `function`.
pub(super) fn pkcs11_error(function: &'static str, e: &CkError) -> Error {
    Error::Pkcs11 { function, reason: describe(e) }
}

/// Whether a return value means the token, its sessions or our login on it went away, so that
/// the sessions are useless and the next call must reconnect.
pub(super) fn means_token_gone(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::UserNotLoggedIn
            | RvError::CryptokiNotInitialized
            | RvError::SlotIdInvalid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_return_values_as_the_specification_does() {
        assert_eq!(ckr_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(ckr_name(RvError::CryptokiNotInitialized), "CKR_CRYPTOKI_NOT_INITIALIZED");
        assert_eq!(ckr_name(RvError::SlotIdInvalid), "CKR_SLOT_ID_INVALID");
    }

    #[test]
    fn a_missing_module_file_is_a_module_error_naming_the_path() {
        let err = load(Path::new("/nonexistent/libnothing-pkcs11.so")).unwrap_err();
        match err {
            Error::Pkcs11Module { module, .. } => assert_eq!(module, "/nonexistent/libnothing-pkcs11.so"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_that_is_not_a_pkcs11_module_is_a_module_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-module.so");
        std::fs::write(&path, b"not an ELF file").unwrap();
        assert!(matches!(load(&path), Err(Error::Pkcs11Module { .. })));
    }
}
