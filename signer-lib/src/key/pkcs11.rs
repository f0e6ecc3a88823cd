//! PKCS#11 tokens and HSMs, through the `cryptoki` crate: keys named by RFC 7512 URIs
//! ([`Pkcs11Uri`]), opened with [`Pkcs11Key::open`] or made on the token with
//! [`Pkcs11Key::generate`]. Managing a token (listing tokens and their objects, storing
//! certificates, deleting keys, changing the PIN) is in [`token`].
//!
//! # Finding the key
//! The module is loaded and `C_Initialize`d once per process and shared (see `module.rs`).
//! The token is found by its label (and any other token attribute in the URI): slot ids are
//! not stable, SoftHSM2 for one renumbers a slot when its token is initialised. The private
//! key is found by `object=` (CKA_LABEL) and/or `id=` (CKA_ID), and must be the only match. Its
//! public half is read from the public-key object with the same CKA_ID (or label), else from
//! the private key's own CKA_EC_POINT, else from a certificate with the same CKA_ID.
//! CKA_EC_POINT is accepted both as the DER OCTET STRING the standard asks for (SoftHSM2) and
//! as the raw point some tokens return; CKA_EC_PARAMS tells P-256 (named-curve OID) and
//! Ed25519 (CKK_EC_EDWARDS with the id-Ed25519 OID or the PrintableString `edwards25519`).
//!
//! # Signing
//! ECDSA P-256: the message is hashed with SHA-256 here and the digest signed with CKM_ECDSA
//! (SoftHSM2 has no CKM_ECDSA_SHA256); the token returns raw r‖s, which is converted to DER.
//! Ed25519: CKM_EDDSA over the message itself; the 64-byte signature is returned as it is.
//! SM2: PKCS#11 defines no SM2 mechanism and SoftHSM2 has none. Chinese national-crypto
//! tokens sign SM2 with vendor mechanisms (CKM_VENDOR_DEFINED + n, differing per vendor) that
//! this backend does not drive yet, so SM2 keys are refused with
//! [`Error::UnsupportedAlgorithm`]; use such tokens through their SKF/SDF interfaces or add
//! the vendor's mechanism here.
//!
//! # Sessions
//! A `cryptoki` session may be used by one thread at a time, so each key keeps a pool of
//! logged-in sessions: a signature checks one out, creating a new one when all are in use (up
//! to [`MAX_SESSIONS`]; beyond that callers wait for one to come back), and returns it. The
//! PKCS#11 login state belongs to the application, not the session, so only the first session
//! of a token really logs in; later ones get CKR_USER_ALREADY_LOGGED_IN, which is fine. (It
//! also means that a token may not check the PIN of a second key opened while we are logged
//! in to it; SoftHSM2 does not. A wrong PIN then shows when that key has to reconnect.) The private key's object handle is looked up once and
//! shared by the sessions; when a call reports it invalid it is looked up again.
//!
//! # Reconnection
//! When a call shows that the token, our sessions or our login are gone (CKR_DEVICE_REMOVED,
//! CKR_TOKEN_NOT_PRESENT, CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED,
//! CKR_USER_NOT_LOGGED_IN, CKR_CRYPTOKI_NOT_INITIALIZED, CKR_DEVICE_ERROR, ...; or an invalid
//! key handle that cannot be found again because the token left its slot or logged us out),
//! that call fails with [`Error::TokenGone`] and the pool is dropped. It does not retry by
//! itself: the caller learns that the token went away. The next call reconnects: it finds
//! the token by label again, opens a session, logs in with the PIN kept (zeroised on drop)
//! for this purpose, finds the key again and checks that its public key is still the one
//! first opened; if the token is not back that call fails with [`Error::TokenNotFound`] (or
//! whatever is wrong) and the one after tries again.
//!
//! Tests provoke this with [`Pkcs11Key::danger_logout_all_sessions`], which calls `C_Logout`:
//! the application's login ends on every session, as when a token is reset or pulled and
//! re-inserted, and SoftHSM2 drops the handles of private objects. (`C_CloseAllSessions` would
//! be closer to a pulled token, but `cryptoki` 0.12 does not wrap it and unsafe code is
//! forbidden here.) The integration tests also delete a SoftHSM2 token's directory under a
//! running key; SoftHSM2 only scans its token directory in `C_Initialize`, so such a token
//! does not come back in the same process.
//!
//! # SoftHSM2 2.6.1 notes
//! It supports CKM_EC_KEY_PAIR_GEN + CKM_ECDSA on P-256 and CKM_EC_EDWARDS_KEY_PAIR_GEN +
//! CKM_EDDSA (Ed25519). It never locks a user PIN: every wrong PIN sets
//! CKF_USER_PIN_COUNT_LOW (cleared by the next good login) and neither CKF_USER_PIN_FINAL_TRY
//! nor CKF_USER_PIN_LOCKED is ever set, so [`Error::PinLocked`] can only be seen on real
//! tokens. Tokens created by another process (`softhsm2-util --init-token`) after the module
//! was initialised are not seen by this process.

mod module;
pub mod token;
mod uri;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use der::Decode as _;
use rand_core::{OsRng, RngCore as _};
use sha2::Digest as _;
use spki::EncodePublicKey as _;
use zeroize::Zeroizing;

use self::module::{Module, describe, means_token_gone, pkcs11_error, rv};
pub use self::uri::{ObjectType, Pkcs11Uri};
use crate::algorithm::{ED25519, KeyType as SpkiKeyType, SECP256R1, SM2_CURVE};
use crate::{Error, SignatureAlgorithm, Signer};

/// The most sessions one key keeps open; more signers than this wait for a session.
pub const MAX_SESSIONS: usize = 8;

/// CKA_EC_PARAMS for P-256: the DER of OID 1.2.840.10045.3.1.7 (RFC 5480 namedCurve).
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// CKA_EC_PARAMS for Ed25519: the DER of OID 1.3.101.112 (id-Ed25519, RFC 8410).
const ED25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// The length of a CKA_ID made up for a generated key.
const GENERATED_ID_LEN: usize = 16;

/// A private key on a PKCS#11 token. Signing goes to the token; see the module documentation
/// for sessions and reconnection. The PIN is kept (zeroised on drop) to log in again after
/// the token comes back, and is never shown by `Debug`.
pub struct Pkcs11Key {
    module: Arc<Module>,
    /// The module path as the caller gave it, for [`Self::uri`] and messages.
    module_path: PathBuf,
    token_label: String,
    key_label: Option<String>,
    /// CKA_ID of the key, possibly empty.
    key_id: Vec<u8>,
    pin: Option<Zeroizing<String>>,
    algorithm: SignatureAlgorithm,
    spki: Vec<u8>,
    pool: Mutex<Pool>,
    /// Signalled when a session is returned or the pool is dropped.
    returned: Condvar,
}

/// The sessions of one key. Sessions of an older `generation` (from before the token went
/// away) are closed when they come back instead of being pooled.
struct Pool {
    generation: u64,
    /// `None` after the token went away: the next call reconnects.
    connection: Option<Connection>,
    idle: Vec<Session>,
    /// Sessions of this generation, idle or checked out.
    open: usize,
}

#[derive(Clone, Copy)]
struct Connection {
    slot: Slot,
    /// The private key's handle; shared by the sessions (handles are per application).
    key: ObjectHandle,
}

/// A session checked out of the pool.
struct Lease {
    session: Session,
    slot: Slot,
    key: ObjectHandle,
    generation: u64,
}

/// The curves we sign with on tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    P256,
    Ed25519,
}

impl Curve {
    fn algorithm(self) -> SignatureAlgorithm {
        match self {
            Self::P256 => SignatureAlgorithm::EcdsaP256Sha256,
            Self::Ed25519 => SignatureAlgorithm::Ed25519,
        }
    }
}

/// What is read from the token about a private key.
struct KeyDetails {
    label: Option<String>,
    id: Vec<u8>,
    curve: Curve,
    spki: Vec<u8>,
}

impl Pkcs11Key {
    /// Opens the private key named by `uri` on a token of the module at `module`, logging in
    /// with `pin`. The URI must name the key by `object=` and/or `id=`, and the token by
    /// `token=` (or other token attributes) unless the module has a single token.
    /// `uri.module_path` is not consulted: `module` is the module. Without a PIN the session is
    /// logged in through the protected authentication path if the token has one, and not at
    /// all if the token does not require a login.
    ///
    /// # Errors
    /// [`Error::Pkcs11Module`] when the module cannot be loaded; [`Error::TokenNotFound`] when
    /// no token matches; [`Error::WrongPin`] (with the token's retry flags) or
    /// [`Error::PinLocked`] when the login is refused; [`Error::KeyNotFound`] when no private
    /// key (or no public key for it) matches; [`Error::InvalidPkcs11Uri`] when the URI names
    /// no key or matches several tokens or keys; [`Error::UnsupportedAlgorithm`] for keys other
    /// than P-256 and Ed25519 (SM2 included, see the module documentation);
    /// [`Error::Pkcs11`] or [`Error::TokenGone`] for other failures of the token.
    pub fn open(module: &Path, uri: &Pkcs11Uri, pin: Option<&str>) -> Result<Self, Error> {
        let uri_text = uri.to_string();
        let invalid = |reason: &str| Error::InvalidPkcs11Uri { uri: uri_text.clone(), reason: reason.to_owned() };
        if uri.object.is_none() && uri.id.is_none() {
            return Err(invalid("names no key: give object= (the key's label) and/or id="));
        }
        if uri.object_type.is_some_and(|t| t != ObjectType::Private) {
            return Err(invalid("a signing key is opened by its private key: use type=private or no type"));
        }
        let loaded = module::load(module)?;
        let (slot, token_label) = find_slot(&loaded, uri)?;
        let session = open_session(&loaded, slot, &token_label, false)?;
        login(&loaded, slot, &session, &token_label, pin)?;
        let handles = find_private_keys(&session, uri.object.as_deref(), uri.id.as_deref())
            .map_err(|e| token_error(&token_label, "C_FindObjects", &e))?;
        let key = match handles.as_slice() {
            [] => {
                return Err(Error::KeyNotFound {
                    what: "private key",
                    name: key_name(uri.object.as_deref(), uri.id.as_deref()),
                    place: format!("token {token_label:?}"),
                });
            }
            [one] => *one,
            many => {
                return Err(invalid(&format!(
                    "matches {} private keys on token {token_label:?}: add id= or object=",
                    many.len()
                )));
            }
        };
        let details = read_key(&session, key, &token_label)?;
        Ok(Self::assemble(loaded, module, token_label, details, pin, Connection { slot, key }, session))
    }

    /// Generates a key pair on the token named by `uri` and opens its private key. The private
    /// key is CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE, and may only sign;
    /// both halves are labelled `uri.object` (required) and get CKA_ID `uri.id`, or 16 fresh
    /// random bytes when the URI has no id.
    ///
    /// # Errors
    /// [`Error::UnsupportedAlgorithm`] for SM2 (PKCS#11 has no SM2 mechanism; national-crypto
    /// tokens need vendor mechanisms, see the module documentation);
    /// [`Error::InvalidPkcs11Uri`] when the URI has no (or an empty) `object=`;
    /// [`Error::KeyExists`] when an object with that label (or the given id) is already on the
    /// token; [`Error::TokenFull`] when the token has no room for the key pair; otherwise as
    /// [`Self::open`].
    pub fn generate(
        module: &Path,
        uri: &Pkcs11Uri,
        pin: Option<&str>,
        algorithm: SignatureAlgorithm,
    ) -> Result<Self, Error> {
        let (mechanism, params) = match algorithm {
            SignatureAlgorithm::EcdsaP256Sha256 => (Mechanism::EccKeyPairGen, P256_PARAMS),
            SignatureAlgorithm::Ed25519 => (Mechanism::EccEdwardsKeyPairGen, ED25519_PARAMS),
            SignatureAlgorithm::Sm2Sm3 => return Err(sm2_unsupported()),
        };
        let invalid = |reason: &str| Error::InvalidPkcs11Uri { uri: uri.to_string(), reason: reason.to_owned() };
        let label = match uri.object.as_deref() {
            Some(label) if !label.is_empty() => label,
            _ => return Err(invalid("a generated key needs a label: give object=")),
        };
        if uri.object_type.is_some_and(|t| t != ObjectType::Private) {
            return Err(invalid("a generated key is named by its private key: use type=private or no type"));
        }
        let loaded = module::load(module)?;
        let (slot, token_label) = find_slot(&loaded, uri)?;
        let place = format!("token {token_label:?}");
        let session = open_session(&loaded, slot, &token_label, true)?;
        login(&loaded, slot, &session, &token_label, pin)?;

        let existing = |template: &[Attribute]| {
            session.find_objects(template).map_err(|e| token_error(&token_label, "C_FindObjects", &e))
        };
        if !existing(&[Attribute::Label(label.as_bytes().to_vec())])?.is_empty() {
            return Err(Error::KeyExists { name: format!("labelled {label:?}"), place });
        }
        let id = match &uri.id {
            Some(id) => {
                if !existing(&[Attribute::Id(id.clone())])?.is_empty() {
                    return Err(Error::KeyExists { name: format!("with id {}", hex::encode(id)), place });
                }
                id.clone()
            }
            None => {
                let mut id = vec![0u8; GENERATED_ID_LEN];
                OsRng.fill_bytes(&mut id);
                id
            }
        };

        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(params.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Derive(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id),
        ];
        let (_public, private) = session
            .generate_key_pair(&mechanism, &public_template, &private_template)
            .map_err(|e| token::creation_error(&loaded, slot, &token_label, "C_GenerateKeyPair", &e))?;
        let details = read_key(&session, private, &token_label)?;
        Ok(Self::assemble(loaded, module, token_label, details, pin, Connection { slot, key: private }, session))
    }

    fn assemble(
        module: Arc<Module>,
        module_path: &Path,
        token_label: String,
        details: KeyDetails,
        pin: Option<&str>,
        connection: Connection,
        session: Session,
    ) -> Self {
        Self {
            module,
            module_path: module_path.to_path_buf(),
            token_label,
            key_label: details.label,
            key_id: details.id,
            pin: pin.map(|p| Zeroizing::new(p.to_owned())),
            algorithm: details.curve.algorithm(),
            spki: details.spki,
            pool: Mutex::new(Pool { generation: 0, connection: Some(connection), idle: vec![session], open: 1 }),
            returned: Condvar::new(),
        }
    }

    /// The full URI of the key: token label, key label, id, `type=private` and the module
    /// path (as given to [`Self::open`] or [`Self::generate`]).
    #[must_use]
    pub fn uri(&self) -> Pkcs11Uri {
        Pkcs11Uri {
            token: Some(self.token_label.clone()),
            object: self.key_label.clone(),
            id: (!self.key_id.is_empty()).then(|| self.key_id.clone()),
            object_type: Some(ObjectType::Private),
            module_path: Some(self.module_path.display().to_string()),
            ..Pkcs11Uri::default()
        }
    }

    /// The label of the token the key is on.
    #[must_use]
    pub fn token_label(&self) -> &str {
        &self.token_label
    }

    /// The key's CKA_ID (empty if the key has none); its public key and certificates on the
    /// token carry the same id.
    #[must_use]
    pub fn key_id(&self) -> &[u8] {
        &self.key_id
    }

    /// The key's CKA_LABEL, if it has one.
    #[must_use]
    pub fn key_label(&self) -> Option<&str> {
        self.key_label.as_deref()
    }

    /// The DER X.509 certificates stored on the token with the key's CKA_ID (none when the key
    /// has an empty id), read through one of the key's pooled sessions: certificates are public
    /// objects, and the login state is the application's anyway.
    ///
    /// # Errors
    /// [`Error::TokenGone`] (dropping the pool, as [`Signer::sign`] does) when the token went
    /// away; as [`Signer::sign`] when no session can be had; [`Error::Pkcs11`] for other
    /// failures of the token.
    pub fn certificates(&self) -> Result<Vec<Vec<u8>>, Error> {
        let Some(id) = self.id_selector() else { return Ok(Vec::new()) };
        let lease = self.checkout()?;
        match token::read_certificates(&lease.session, id) {
            Ok(certificates) => {
                self.checkin(lease);
                Ok(certificates)
            }
            Err((function, e)) => Err(self.failed(lease, function, &e)),
        }
    }

    /// How many sessions the key holds open now (idle and in use); at most [`MAX_SESSIONS`],
    /// and 0 after the token went away until the next call reconnects.
    #[must_use]
    pub fn session_count(&self) -> usize {
        let pool = self.lock_pool();
        if pool.connection.is_some() { pool.open } else { 0 }
    }

    /// Logs the application out of the token (`C_Logout` through one of the key's sessions).
    /// PKCS#11 login state is per application, so every session of this process on the token,
    /// including other keys' sessions, loses its login, as when the token is reset or pulled
    /// and re-inserted. For tests of reconnection: the next signature fails with
    /// [`Error::TokenGone`], the one after logs in again.
    ///
    /// # Errors
    /// As [`Signer::sign`] when no session can be had, [`Error::Pkcs11`] when `C_Logout` fails.
    #[doc(hidden)]
    pub fn danger_logout_all_sessions(&self) -> Result<(), Error> {
        let lease = self.checkout()?;
        let result = lease.session.logout();
        self.checkin(lease);
        result.map_err(|e| pkcs11_error("C_Logout", &e))
    }

    fn lock_pool(&self) -> MutexGuard<'_, Pool> {
        // Every critical section leaves the pool consistent before anything that can panic
        // (it only pushes, pops and counts), so a poisoned lock still guards a valid pool.
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks a session out of the pool: an idle one, a new one, or (after the token went
    /// away) the first one of a new connection.
    fn checkout(&self) -> Result<Lease, Error> {
        let mut pool = self.lock_pool();
        loop {
            let Some(connection) = pool.connection else {
                // Reconnecting under the lock: concurrent callers wait for this attempt rather
                // than all trying at once.
                let (connection, session) = self.reconnect()?;
                pool.generation += 1;
                pool.connection = Some(connection);
                pool.open = 1;
                return Ok(Lease { session, slot: connection.slot, key: connection.key, generation: pool.generation });
            };
            let generation = pool.generation;
            let lease = |session| Lease { session, slot: connection.slot, key: connection.key, generation };
            if let Some(session) = pool.idle.pop() {
                return Ok(lease(session));
            }
            if pool.open < MAX_SESSIONS {
                let session = open_session(&self.module, connection.slot, &self.token_label, false)
                    .and_then(|s| login(&self.module, connection.slot, &s, &self.token_label, self.pin()).map(|()| s));
                return match session {
                    Ok(session) => {
                        pool.open += 1;
                        Ok(lease(session))
                    }
                    Err(e) => {
                        if matches!(e, Error::TokenGone { .. }) {
                            drop_connection(&mut pool);
                            self.returned.notify_all();
                        }
                        Err(e)
                    }
                };
            }
            pool = self.returned.wait(pool).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Returns a session to the pool, or closes it if it belongs to a connection that is gone.
    fn checkin(&self, lease: Lease) {
        let mut pool = self.lock_pool();
        if lease.generation == pool.generation && pool.connection.is_some() {
            pool.idle.push(lease.session);
        }
        drop(pool);
        self.returned.notify_one();
    }

    /// Drops the pool after `lease` showed the token is gone; the next call reconnects.
    fn token_gone(&self, lease: Lease, reason: String) -> Error {
        let mut pool = self.lock_pool();
        if lease.generation == pool.generation {
            drop_connection(&mut pool);
        }
        drop(pool);
        drop(lease);
        self.returned.notify_all();
        Error::TokenGone { label: self.token_label.clone(), reason }
    }

    /// Records a re-found key handle for the sessions of `generation`.
    fn remember_key(&self, generation: u64, key: ObjectHandle) {
        let mut pool = self.lock_pool();
        if pool.generation == generation
            && let Some(connection) = pool.connection.as_mut()
        {
            connection.key = key;
        }
    }

    fn pin(&self) -> Option<&str> {
        self.pin.as_ref().map(|p| p.as_str())
    }

    /// Finds the token and key again after the token went away, and checks that the key is
    /// still the one first opened.
    fn reconnect(&self) -> Result<(Connection, Session), Error> {
        let selector = Pkcs11Uri { token: Some(self.token_label.clone()), ..Pkcs11Uri::default() };
        let (slot, _) = find_slot(&self.module, &selector)?;
        let session = open_session(&self.module, slot, &self.token_label, false)?;
        login(&self.module, slot, &session, &self.token_label, self.pin())?;
        let handles = find_private_keys(&session, self.key_label.as_deref(), self.id_selector())
            .map_err(|e| token_error(&self.token_label, "C_FindObjects", &e))?;
        for key in handles {
            if read_key(&session, key, &self.token_label).is_ok_and(|d| d.spki == self.spki) {
                return Ok((Connection { slot, key }, session));
            }
        }
        Err(Error::KeyNotFound {
            what: "private key (with the public key first opened)",
            name: key_name(self.key_label.as_deref(), self.id_selector()),
            place: format!("token {:?}", self.token_label),
        })
    }

    /// The key's CKA_ID as a search criterion: `None` when it is empty.
    fn id_selector(&self) -> Option<&[u8]> {
        (!self.key_id.is_empty()).then_some(self.key_id.as_slice())
    }

    /// Signs `data` with `mechanism` on a pooled session, handling a stale key handle and a
    /// token that went away (see the module documentation).
    fn sign_on_token(&self, mechanism: &Mechanism<'_>, data: &[u8]) -> Result<Vec<u8>, Error> {
        let mut lease = self.checkout()?;
        let first = match lease.session.sign(mechanism, lease.key, data) {
            Ok(signature) => {
                self.checkin(lease);
                return Ok(signature);
            }
            Err(e) => e,
        };
        if !matches!(rv(&first), Some(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid)) {
            return Err(self.failed(lease, "C_Sign", &first));
        }
        // The handle went stale (a logout, a re-inserted token, the key re-created): find the
        // key again.
        let handles = match find_private_keys(&lease.session, self.key_label.as_deref(), self.id_selector()) {
            Ok(handles) => handles,
            Err(e) => return Err(self.failed(lease, "C_FindObjects", &e)),
        };
        let Some(&key) = handles.first() else {
            if let Some(reason) = self.why_lost(&lease, &first) {
                return Err(self.token_gone(lease, reason));
            }
            self.checkin(lease);
            return Err(Error::KeyNotFound {
                what: "private key",
                name: key_name(self.key_label.as_deref(), self.id_selector()),
                place: format!("token {:?}", self.token_label),
            });
        };
        self.remember_key(lease.generation, key);
        lease.key = key;
        match lease.session.sign(mechanism, key, data) {
            Ok(signature) => {
                self.checkin(lease);
                Ok(signature)
            }
            Err(e) => Err(self.failed(lease, "C_Sign", &e)),
        }
    }

    /// The error for a failed call: [`Error::TokenGone`] (dropping the pool) when the return
    /// value says so, otherwise [`Error::Pkcs11`] with the session returned to the pool.
    fn failed(&self, lease: Lease, function: &'static str, e: &CkError) -> Error {
        if rv(e).is_some_and(means_token_gone) {
            return self.token_gone(lease, format!("{function}: {}", describe(e)));
        }
        self.checkin(lease);
        pkcs11_error(function, e)
    }

    /// After the key handle went stale and the key cannot be found again: why, if the token is
    /// gone or has logged us out; `None` if the token is there and we are logged in (the key
    /// itself was deleted).
    fn why_lost(&self, lease: &Lease, first: &CkError) -> Option<String> {
        let rv = describe(first);
        match self.module.ctx.get_token_info(lease.slot) {
            Ok(info) if info.label() == self.token_label => {}
            Ok(info) => {
                return Some(format!("{rv}; slot {} now holds token {:?}", lease.slot, info.label()));
            }
            Err(e) => return Some(format!("{rv}; the token left its slot (C_GetTokenInfo: {})", describe(&e))),
        }
        if self.pin.is_none() {
            // Without a PIN we never logged in, so there is no login to lose.
            None
        } else {
            match lease.session.get_session_info() {
                Ok(info) if matches!(info.session_state(), SessionState::RoUser | SessionState::RwUser) => None,
                Ok(_) => Some(format!("{rv}; the token logged us out (reset, or re-inserted)")),
                Err(e) => Some(format!("{rv}; C_GetSessionInfo: {}", describe(&e))),
            }
        }
    }
}

fn drop_connection(pool: &mut Pool) {
    pool.connection = None;
    pool.idle.clear();
    pool.open = 0;
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("module", &self.module_path)
            .field("token", &self.token_label)
            .field("label", &self.key_label)
            .field("id", &hex::encode(&self.key_id))
            .field("algorithm", &self.algorithm)
            .field("pin", &self.pin.as_ref().map(|_| "(set)"))
            .finish_non_exhaustive()
    }
}

impl Signer for Pkcs11Key {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        match self.algorithm {
            SignatureAlgorithm::EcdsaP256Sha256 => {
                let digest = sha2::Sha256::digest(message);
                let raw = self.sign_on_token(&Mechanism::Ecdsa, &digest)?;
                if raw.len() != 64 {
                    return Err(Error::SigningFailed(format!(
                        "CKM_ECDSA returned {} bytes, not the 64 of a P-256 r‖s",
                        raw.len()
                    )));
                }
                crate::sm2::raw_to_der(&raw)
            }
            SignatureAlgorithm::Ed25519 => {
                let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
                let signature = self.sign_on_token(&mechanism, message)?;
                if signature.len() != 64 {
                    return Err(Error::SigningFailed(format!(
                        "CKM_EDDSA returned {} bytes, not the 64 of an Ed25519 signature",
                        signature.len()
                    )));
                }
                Ok(signature)
            }
            // Never constructed: open and generate refuse SM2.
            SignatureAlgorithm::Sm2Sm3 => Err(sm2_unsupported()),
        }
    }
}

fn sm2_unsupported() -> Error {
    Error::UnsupportedAlgorithm {
        oid: "SM2 on a PKCS#11 token: PKCS#11 defines no SM2 mechanism and SoftHSM2 has none; \
              national-crypto tokens need their vendor mechanisms (CKM_VENDOR_DEFINED), which this \
              backend does not drive"
            .into(),
    }
}

/// `object="label" id=0102` for messages.
fn key_name(label: Option<&str>, id: Option<&[u8]>) -> String {
    match (label, id) {
        (Some(label), Some(id)) => format!("object={label:?} id={}", hex::encode(id)),
        (Some(label), None) => format!("object={label:?}"),
        (None, Some(id)) => format!("id={}", hex::encode(id)),
        (None, None) => "(any)".into(),
    }
}

/// [`Error::TokenGone`] for return values that mean so, [`Error::Pkcs11`] otherwise.
fn token_error(label: &str, function: &'static str, e: &CkError) -> Error {
    if rv(e).is_some_and(means_token_gone) {
        Error::TokenGone { label: label.to_owned(), reason: format!("{function}: {}", describe(e)) }
    } else {
        pkcs11_error(function, e)
    }
}

/// Finds the one initialised token matching the token attributes of `uri`; returns its slot
/// and label. The `library-*` attributes are not checked: the module is chosen by path.
fn find_slot(module: &Module, uri: &Pkcs11Uri) -> Result<(Slot, String), Error> {
    let slots = slots_with_token(module)?;

    let wanted = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    let mut found = Vec::new();
    for slot in slots {
        if uri.slot_id.is_some_and(|id| id != slot.id()) {
            continue;
        }
        // A token can leave between C_GetSlotList and C_GetTokenInfo: skip it.
        let Ok(token) = module.ctx.get_token_info(slot) else { continue };
        if !token.token_initialized()
            || !wanted(&uri.token, token.label())
            || !wanted(&uri.manufacturer, token.manufacturer_id())
            || !wanted(&uri.model, token.model())
            || !wanted(&uri.serial, token.serial_number())
        {
            continue;
        }
        if uri.slot_description.is_some() || uri.slot_manufacturer.is_some() {
            let Ok(info) = module.ctx.get_slot_info(slot) else { continue };
            if !wanted(&uri.slot_description, info.slot_description())
                || !wanted(&uri.slot_manufacturer, info.manufacturer_id())
            {
                continue;
            }
        }
        found.push((slot, token.label().to_owned()));
    }
    match found.len() {
        1 => Ok(found.swap_remove(0)),
        0 => Err(Error::TokenNotFound {
            label: uri.token.clone().unwrap_or_else(|| {
                let selector = Pkcs11Uri {
                    manufacturer: uri.manufacturer.clone(),
                    model: uri.model.clone(),
                    serial: uri.serial.clone(),
                    slot_id: uri.slot_id,
                    slot_description: uri.slot_description.clone(),
                    slot_manufacturer: uri.slot_manufacturer.clone(),
                    ..Pkcs11Uri::default()
                };
                format!("(any, {selector})")
            }),
        }),
        n => Err(Error::InvalidPkcs11Uri {
            uri: uri.to_string(),
            reason: format!(
                "matches {n} tokens ({}): name one with token=",
                found.iter().map(|(_, l)| format!("{l:?}")).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

/// The slots that hold a token (`C_GetSlotList` with tokenPresent), initialising the module
/// again if someone in the process finalised it.
fn slots_with_token(module: &Module) -> Result<Vec<Slot>, Error> {
    match module.ctx.get_slots_with_token() {
        Err(e) if rv(&e) == Some(RvError::CryptokiNotInitialized) => {
            // Someone finalised the module; initialise it again and retry once.
            module.reinitialize()?;
            module.ctx.get_slots_with_token()
        }
        other => other,
    }
    .map_err(|e| pkcs11_error("C_GetSlotList", &e))
}

fn open_session(module: &Module, slot: Slot, label: &str, read_write: bool) -> Result<Session, Error> {
    let session = if read_write { module.ctx.open_rw_session(slot) } else { module.ctx.open_ro_session(slot) };
    session.map_err(|e| token_error(label, "C_OpenSession", &e))
}

/// Logs `session` in as the user (see [`Pkcs11Key::open`] for the no-PIN cases).
fn login(module: &Module, slot: Slot, session: &Session, label: &str, pin: Option<&str>) -> Result<(), Error> {
    let token = module.ctx.get_token_info(slot).map_err(|e| token_error(label, "C_GetTokenInfo", &e))?;
    let result = match pin {
        Some(_) if token.user_pin_locked() => return Err(Error::PinLocked { label: label.to_owned() }),
        Some(pin) => session.login(UserType::User, Some(&AuthPin::new(pin.into()))),
        None if token.protected_authentication_path() => session.login(UserType::User, None),
        None if token.login_required() => {
            return Err(Error::Pkcs11 {
                function: "C_Login",
                reason: format!("token {label:?} requires a user PIN and none was given"),
            });
        }
        None => return Ok(()),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) => login_failure(&e, label, || {
            // Read the retry flags as they are after this failure.
            module.ctx.get_token_info(slot).map_or((false, false), |t| (t.user_pin_final_try(), t.user_pin_count_low()))
        }),
    }
}

/// What a failed `C_Login` means; `flags` reads (final try, count low) from the token.
fn login_failure(e: &CkError, label: &str, flags: impl FnOnce() -> (bool, bool)) -> Result<(), Error> {
    match rv(e) {
        // Another session of this application logged in already: the session is logged in.
        Some(RvError::UserAlreadyLoggedIn) => Ok(()),
        Some(RvError::PinIncorrect) => {
            let (final_try, count_low) = flags();
            Err(Error::WrongPin { label: label.to_owned(), final_try, count_low })
        }
        Some(RvError::PinLocked) => Err(Error::PinLocked { label: label.to_owned() }),
        _ => Err(token_error(label, "C_Login", e)),
    }
}

fn find_private_keys(session: &Session, label: Option<&str>, id: Option<&[u8]>) -> Result<Vec<ObjectHandle>, CkError> {
    let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
    if let Some(label) = label {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = id {
        template.push(Attribute::Id(id.to_vec()));
    }
    session.find_objects(&template)
}

/// Reads the label, id, curve and public key of the private key `key`.
fn read_key(session: &Session, key: ObjectHandle, token_label: &str) -> Result<KeyDetails, Error> {
    let attributes = session
        .get_attributes(
            key,
            &[AttributeType::KeyType, AttributeType::EcParams, AttributeType::Label, AttributeType::Id],
        )
        .map_err(|e| token_error(token_label, "C_GetAttributeValue", &e))?;
    let (mut key_type, mut params, mut label, mut id) = (None, None, None, Vec::new());
    for attribute in attributes {
        match attribute {
            Attribute::KeyType(k) => key_type = Some(k),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::Label(l) => label = Some(String::from_utf8_lossy(&l).into_owned()),
            Attribute::Id(i) => id = i,
            _ => {}
        }
    }
    let key_type = key_type.ok_or_else(|| Error::Pkcs11 {
        function: "C_GetAttributeValue",
        reason: "the private key has no CKA_KEY_TYPE".into(),
    })?;
    let curve = curve_of(key_type, params.as_deref())?;
    let spki = public_key(session, key, curve, label.as_deref(), &id, token_label)?;
    Ok(KeyDetails { label, id, curve, spki })
}

/// The curve of a key from CKA_KEY_TYPE and CKA_EC_PARAMS.
fn curve_of(key_type: KeyType, params: Option<&[u8]>) -> Result<Curve, Error> {
    let oid = params.and_then(|p| der::asn1::ObjectIdentifier::from_der(p).ok());
    if key_type == KeyType::EC {
        return match oid {
            Some(SECP256R1) => Ok(Curve::P256),
            Some(SM2_CURVE) => Err(sm2_unsupported()),
            Some(other) => Err(Error::UnsupportedAlgorithm { oid: format!("curve {other} on a PKCS#11 token") }),
            None => {
                Err(Error::UnsupportedAlgorithm { oid: "an EC key whose CKA_EC_PARAMS is not a named curve".into() })
            }
        };
    }
    if key_type == KeyType::EC_EDWARDS {
        // SoftHSM2 stores the private key's parameters as PrintableString "edwards25519"
        // (the PKCS#11 3.0 curve name), the public key's as the OID it was given.
        let name = params.and_then(|p| der::asn1::PrintableStringRef::from_der(p).ok());
        return match (oid, name) {
            (Some(ED25519), _) => Ok(Curve::Ed25519),
            (_, Some(name)) if name.as_str() == "edwards25519" => Ok(Curve::Ed25519),
            _ => Err(Error::UnsupportedAlgorithm { oid: "an Edwards curve other than Ed25519".into() }),
        };
    }
    Err(Error::UnsupportedAlgorithm { oid: format!("PKCS#11 key type {key_type}") })
}

/// The SubjectPublicKeyInfo of the private key `key`: from the public-key object with the same
/// id (or label), else the private key's CKA_EC_POINT, else a certificate with the same id.
fn public_key(
    session: &Session,
    key: ObjectHandle,
    curve: Curve,
    label: Option<&str>,
    id: &[u8],
    token_label: &str,
) -> Result<Vec<u8>, Error> {
    let attribute_error = |e: CkError| token_error(token_label, "C_GetAttributeValue", &e);
    let find_error = |e: CkError| token_error(token_label, "C_FindObjects", &e);
    let mut template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
    match (id.is_empty(), label) {
        (false, _) => template.push(Attribute::Id(id.to_vec())),
        (true, Some(label)) => template.push(Attribute::Label(label.as_bytes().to_vec())),
        (true, None) => {}
    }
    let candidates = if template.len() > 1 { session.find_objects(&template).map_err(find_error)? } else { Vec::new() };
    for object in candidates.into_iter().chain(std::iter::once(key)) {
        let point = session.get_attributes(object, &[AttributeType::EcPoint]).map_err(attribute_error)?;
        if let Some(Attribute::EcPoint(point)) = point.into_iter().next() {
            return spki_from_ec_point(curve, &point);
        }
    }
    if !id.is_empty() {
        let certificates = session
            .find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE), Attribute::Id(id.to_vec())])
            .map_err(find_error)?;
        for certificate in certificates {
            let value = session.get_attributes(certificate, &[AttributeType::Value]).map_err(attribute_error)?;
            if let Some(Attribute::Value(der_bytes)) = value.into_iter().next() {
                let certificate = x509_cert::Certificate::from_der(&der_bytes)
                    .map_err(|e| Error::der("certificate on the token", e))?;
                let spki = der::Encode::to_der(&certificate.tbs_certificate.subject_public_key_info)
                    .map_err(|e| Error::der("certificate public key", e))?;
                let parsed = spki::SubjectPublicKeyInfoRef::from_der(&spki).map_err(|e| Error::der("public key", e))?;
                let expected = match curve {
                    Curve::P256 => SpkiKeyType::P256,
                    Curve::Ed25519 => SpkiKeyType::Ed25519,
                };
                if SpkiKeyType::of_spki(&parsed).ok() == Some(expected) {
                    return Ok(spki);
                }
            }
        }
    }
    Err(Error::KeyNotFound {
        what: "public key",
        name: key_name(label, (!id.is_empty()).then_some(id)),
        place: format!("token {token_label:?}"),
    })
}

/// A DER SubjectPublicKeyInfo from a CKA_EC_POINT value, which the standard wants as a DER
/// OCTET STRING around the point and some tokens return bare.
fn spki_from_ec_point(curve: Curve, value: &[u8]) -> Result<Vec<u8>, Error> {
    let plausible = |b: &[u8]| match curve {
        Curve::P256 => (b.len() == 65 && b[0] == 0x04) || (b.len() == 33 && (b[0] == 0x02 || b[0] == 0x03)),
        Curve::Ed25519 => b.len() == 32,
    };
    let point = match der::asn1::OctetStringRef::from_der(value) {
        Ok(wrapped) if plausible(wrapped.as_bytes()) => wrapped.as_bytes(),
        _ if plausible(value) => value,
        _ => {
            return Err(Error::InvalidPublicKey(format!(
                "CKA_EC_POINT of {} bytes is neither a {curve:?} point nor a DER OCTET STRING around one",
                value.len()
            )));
        }
    };
    let document = match curve {
        Curve::P256 => p256::PublicKey::from_sec1_bytes(point)
            .map_err(|_| Error::InvalidPublicKey("CKA_EC_POINT is not a point on P-256".into()))?
            .to_public_key_der(),
        Curve::Ed25519 => {
            let bytes: [u8; 32] =
                point.try_into().map_err(|_| Error::InvalidPublicKey("an Ed25519 public key is 32 bytes".into()))?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| Error::InvalidPublicKey("CKA_EC_POINT is not an Ed25519 public key".into()))?
                .to_public_key_der()
        }
    };
    Ok(document.map_err(|e| Error::der("public key", e))?.into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::sec1::ToEncodedPoint as _;

    fn p256_point() -> (Vec<u8>, Vec<u8>) {
        let key = p256::SecretKey::random(&mut OsRng);
        let public = key.public_key();
        (public.to_encoded_point(false).as_bytes().to_vec(), public.to_public_key_der().unwrap().into_vec())
    }

    #[test]
    fn reads_p256_points_wrapped_in_an_octet_string_or_bare() {
        let (point, spki) = p256_point();
        let mut wrapped = vec![0x04, 65];
        wrapped.extend_from_slice(&point);
        assert_eq!(spki_from_ec_point(Curve::P256, &wrapped).unwrap(), spki);
        assert_eq!(spki_from_ec_point(Curve::P256, &point).unwrap(), spki);
    }

    #[test]
    fn reads_bare_points_that_happen_to_look_like_der() {
        // A bare point whose x starts with 0x3f parses as an OCTET STRING of 63 bytes: that is
        // not a plausible point, so the bytes are taken as they are.
        for _ in 0..20_000 {
            let (point, spki) = p256_point();
            if point[1] == 63 {
                assert_eq!(spki_from_ec_point(Curve::P256, &point).unwrap(), spki);
                return;
            }
        }
        panic!("no point with x[0] = 0x3f in 20 000 tries (p ≈ e⁻⁷⁸)");
    }

    #[test]
    fn reads_ed25519_points_wrapped_or_bare() {
        let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
        let point = key.verifying_key().to_bytes();
        let spki = key.verifying_key().to_public_key_der().unwrap().into_vec();
        let mut wrapped = vec![0x04, 32];
        wrapped.extend_from_slice(&point);
        assert_eq!(spki_from_ec_point(Curve::Ed25519, &wrapped).unwrap(), spki);
        assert_eq!(spki_from_ec_point(Curve::Ed25519, &point).unwrap(), spki);
    }

    #[test]
    fn refuses_ec_points_of_the_wrong_size_or_off_the_curve() {
        assert!(matches!(spki_from_ec_point(Curve::P256, &[0x04; 40]), Err(Error::InvalidPublicKey(_))));
        let mut off_curve = vec![0x04];
        off_curve.extend_from_slice(&[0x11; 64]);
        assert!(matches!(spki_from_ec_point(Curve::P256, &off_curve), Err(Error::InvalidPublicKey(_))));
        assert!(matches!(spki_from_ec_point(Curve::Ed25519, &[1; 31]), Err(Error::InvalidPublicKey(_))));
    }

    #[test]
    fn tells_curves_from_key_type_and_ec_params() {
        assert_eq!(curve_of(KeyType::EC, Some(P256_PARAMS)).unwrap(), Curve::P256);
        assert_eq!(curve_of(KeyType::EC_EDWARDS, Some(ED25519_PARAMS)).unwrap(), Curve::Ed25519);
        // PrintableString "edwards25519", as SoftHSM2 stores it on the private key.
        let printable = [&[0x13, 12][..], b"edwards25519"].concat();
        assert_eq!(curve_of(KeyType::EC_EDWARDS, Some(&printable)).unwrap(), Curve::Ed25519);
        let sm2 = [0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d];
        let err = curve_of(KeyType::EC, Some(&sm2)).unwrap_err();
        assert!(err.to_string().contains("SM2"), "{err}");
        let p384 = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
        assert!(matches!(curve_of(KeyType::EC, Some(&p384)), Err(Error::UnsupportedAlgorithm { .. })));
        assert!(matches!(curve_of(KeyType::RSA, None), Err(Error::UnsupportedAlgorithm { .. })));
    }

    #[test]
    fn maps_login_failures_to_pin_errors() {
        let login = |rv| CkError::Pkcs11(rv, cryptoki::context::Function::Login);
        match login_failure(&login(RvError::PinIncorrect), "t", || (true, true)) {
            Err(Error::WrongPin { label, final_try: true, count_low: true }) => assert_eq!(label, "t"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            login_failure(&login(RvError::PinLocked), "t", || (false, false)),
            Err(Error::PinLocked { .. })
        ));
        assert!(login_failure(&login(RvError::UserAlreadyLoggedIn), "t", || (false, false)).is_ok());
        assert!(matches!(
            login_failure(&login(RvError::DeviceRemoved), "t", || (false, false)),
            Err(Error::TokenGone { .. })
        ));
        assert!(matches!(
            login_failure(&login(RvError::PinLenRange), "t", || (false, false)),
            Err(Error::Pkcs11 { function: "C_Login", .. })
        ));
    }

    #[test]
    fn generating_sm2_is_refused_before_touching_any_module() {
        let uri = Pkcs11Uri::for_object("t", "k");
        let err =
            Pkcs11Key::generate(Path::new("/nonexistent.so"), &uri, None, SignatureAlgorithm::Sm2Sm3).unwrap_err();
        assert!(matches!(err, Error::UnsupportedAlgorithm { .. }), "{err:?}");
    }

    #[test]
    fn opening_needs_a_uri_that_names_a_key() {
        let uri = Pkcs11Uri { token: Some("t".into()), ..Pkcs11Uri::default() };
        let err = Pkcs11Key::open(Path::new("/nonexistent.so"), &uri, None).unwrap_err();
        assert!(matches!(err, Error::InvalidPkcs11Uri { .. }), "{err:?}");
    }
}
