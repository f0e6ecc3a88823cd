//! A SoftHSM2 for the tests: one configuration and token directory per test process, one
//! token per test.
//!
//! Two SoftHSM2 facts shape this fixture:
//!
//! * SoftHSM2 reads `SOFTHSM2_CONF` when the module is initialised, and a module is
//!   initialised once per process (signer-lib keeps it loaded), so the variable must be set
//!   before any test touches the module, and all tests of a binary share one configuration.
//!   Setting an environment variable inside a running test binary needs `unsafe` in edition
//!   2024 (other threads may be reading the environment), which the workspace forbids. So the
//!   first test that asks for [`softhsm`] re-runs the whole test binary, with the same
//!   arguments, as a child process whose `SOFTHSM2_CONF` points at a fresh temporary
//!   directory, and exits with the child's status once it is done (and the directory is
//!   removed). In the child the variable is there from the start. The price: the parent's
//!   "running N tests" line (and any test it finished first) shows before the child's run.
//! * SoftHSM2 scans its token directory only in `C_Initialize`: a token made by
//!   `softhsm2-util --init-token` after the module was loaded is invisible to the process.
//!   Tokens are therefore made in-process ([`SoftHsm::create_token`]: `C_InitToken` on the free
//!   slot, then `C_InitPIN`), through a cryptoki context of our own on the same module.
//!
//! The module is `$EPORT_PKCS11_MODULE`, or SoftHSM2 where Debian and Ubuntu install it
//! (`apt-get install softhsm2`).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

/// The security officer PIN of every test token.
pub const SO_PIN: &str = "12345678";
/// The user PIN of every test token.
pub const USER_PIN: &str = "123456";

/// Set (to the configuration directory) in the child process that runs the tests.
const DIR_VARIABLE: &str = "EPORT_SOFTHSM_DIR";
/// Where Debian and Ubuntu install SoftHSM2.
const MODULE_CANDIDATES: [&str; 2] =
    ["/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"];

/// The SoftHSM2 of this test process.
#[derive(Debug)]
pub struct SoftHsm {
    dir: PathBuf,
    module: PathBuf,
    ctx: Pkcs11,
    /// Token label → the token's directory under `<dir>/tokens`. The lock also serialises
    /// token creation, which must pick the one free slot.
    tokens: Mutex<HashMap<String, PathBuf>>,
}

/// The PKCS#11 module the tests use: `$EPORT_PKCS11_MODULE`, or SoftHSM2's usual places.
///
/// # Panics
/// When there is none, saying how to install one.
#[must_use]
pub fn module_path() -> PathBuf {
    if let Some(path) = std::env::var_os("EPORT_PKCS11_MODULE") {
        return PathBuf::from(path);
    }
    MODULE_CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists()).unwrap_or_else(|| {
        panic!("SoftHSM2 not found in {MODULE_CANDIDATES:?}: apt-get install softhsm2, or set EPORT_PKCS11_MODULE")
    })
}

/// The process's SoftHSM2 (see the module documentation: the first call in a test binary
/// re-runs the binary in a child process and never returns).
///
/// # Panics
/// When the temporary directory, the child process or the module cannot be set up.
pub fn softhsm() -> &'static SoftHsm {
    static FIXTURE: OnceLock<SoftHsm> = OnceLock::new();
    FIXTURE.get_or_init(|| match std::env::var_os(DIR_VARIABLE) {
        Some(dir) => SoftHsm::start(PathBuf::from(dir)),
        None => rerun_with_fresh_softhsm(),
    })
}

fn config_file(dir: &Path) -> PathBuf {
    dir.join("softhsm2.conf")
}

/// Runs this test binary again under a fresh SoftHSM2 configuration and exits with its status.
fn rerun_with_fresh_softhsm() -> ! {
    let dir = tempfile::Builder::new()
        .prefix("eport-softhsm-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot make a temporary directory for SoftHSM2: {e}"));
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap_or_else(|e| panic!("cannot create {}: {e}", tokens.display()));
    let config =
        format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display());
    std::fs::write(config_file(dir.path()), config).unwrap_or_else(|e| panic!("cannot write softhsm2.conf: {e}"));
    let binary = std::env::current_exe().unwrap_or_else(|e| panic!("cannot find the test binary: {e}"));
    let status = Command::new(&binary)
        .args(std::env::args_os().skip(1))
        .env("SOFTHSM2_CONF", config_file(dir.path()))
        .env(DIR_VARIABLE, dir.path())
        .status()
        .unwrap_or_else(|e| panic!("cannot re-run {} under SoftHSM2: {e}", binary.display()));
    // process::exit runs no destructors: remove the directory first.
    drop(dir);
    std::process::exit(status.code().unwrap_or(101));
}

impl SoftHsm {
    fn start(dir: PathBuf) -> Self {
        let expected = config_file(&dir);
        let actual = std::env::var_os("SOFTHSM2_CONF").map(PathBuf::from);
        assert_eq!(
            actual.as_deref(),
            Some(expected.as_path()),
            "{DIR_VARIABLE} is set but SOFTHSM2_CONF is not its config"
        );
        let module = module_path();
        let ctx = Pkcs11::new(&module).unwrap_or_else(|e| panic!("cannot load {}: {e}", module.display()));
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => panic!("C_Initialize of {}: {e}", module.display()),
        }
        Self { dir, module, ctx, tokens: Mutex::default() }
    }

    /// The module to open keys with.
    #[must_use]
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// The directory holding `softhsm2.conf` and `tokens/`.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn token_directories(&self) -> BTreeSet<PathBuf> {
        let tokens = self.dir.join("tokens");
        std::fs::read_dir(&tokens)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", tokens.display()))
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect()
    }

    fn slot_of(&self, label: &str) -> Option<Slot> {
        let slots = self.ctx.get_slots_with_token().unwrap_or_else(|e| panic!("C_GetSlotList: {e}"));
        slots
            .into_iter()
            .find(|s| self.ctx.get_token_info(*s).is_ok_and(|t| t.token_initialized() && t.label() == label))
    }

    /// Creates a token labelled `label` with [`SO_PIN`] and [`USER_PIN`], and returns its
    /// directory.
    ///
    /// # Panics
    /// When the label is taken or SoftHSM2 refuses.
    pub fn create_token(&self, label: &str) -> PathBuf {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(self.slot_of(label).is_none(), "a token labelled {label:?} exists already");
        let before = self.token_directories();
        let slots = self.ctx.get_slots_with_token().unwrap_or_else(|e| panic!("C_GetSlotList: {e}"));
        let free = slots
            .into_iter()
            .find(|s| self.ctx.get_token_info(*s).is_ok_and(|t| !t.token_initialized()))
            .unwrap_or_else(|| panic!("SoftHSM2 offers no free slot"));
        self.ctx
            .init_token(free, &AuthPin::new(SO_PIN.into()), label)
            .unwrap_or_else(|e| panic!("C_InitToken {label:?}: {e}"));
        let slot = self.slot_of(label).unwrap_or_else(|| panic!("token {label:?} not found after C_InitToken"));
        let session = self.ctx.open_rw_session(slot).unwrap_or_else(|e| panic!("C_OpenSession: {e}"));
        session.login(UserType::So, Some(&AuthPin::new(SO_PIN.into()))).unwrap_or_else(|e| panic!("SO C_Login: {e}"));
        session.init_pin(&AuthPin::new(USER_PIN.into())).unwrap_or_else(|e| panic!("C_InitPIN: {e}"));
        session.logout().unwrap_or_else(|e| panic!("C_Logout: {e}"));
        drop(session);
        let mut created: Vec<PathBuf> = self.token_directories().difference(&before).cloned().collect();
        assert_eq!(created.len(), 1, "C_InitToken {label:?} made directories {created:?}");
        let directory = created.swap_remove(0);
        tokens.insert(label.to_owned(), directory.clone());
        directory
    }

    /// The directory of a token made by [`Self::create_token`].
    #[must_use]
    pub fn token_directory(&self, label: &str) -> Option<PathBuf> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner).get(label).cloned()
    }

    /// A read-write session on the token labelled `label`, logged in as the user (or already
    /// logged in through another session of this process), for inspecting objects.
    ///
    /// # Panics
    /// When there is no such token or the login fails.
    #[must_use]
    pub fn user_session(&self, label: &str) -> Session {
        let slot = self.slot_of(label).unwrap_or_else(|| panic!("no token labelled {label:?}"));
        let session = self.ctx.open_rw_session(slot).unwrap_or_else(|e| panic!("C_OpenSession: {e}"));
        match session.login(UserType::User, Some(&AuthPin::new(USER_PIN.into()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => session,
            Err(e) => panic!("user C_Login on {label:?}: {e}"),
        }
    }
}
