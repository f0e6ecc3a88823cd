//! Managing a PKCS#11 token itself rather than signing with one of its keys: what tokens a
//! module offers ([`list_tokens`]), the objects on a token, storing certificates next to their
//! keys, deleting a key with everything that belongs to it, and changing the user PIN
//! ([`change_pin`]). These back `eport token list/show/enroll/renew/change-pin`.
//!
//! # Sessions and login
//! A [`Token`] holds one read-write session logged in as the user for as long as it lives; it
//! does not pool or reconnect (it is for short management tasks): when the token goes away its
//! calls fail with [`Error::TokenGone`] (a call that fails for another reason is checked
//! against `C_GetTokenInfo`, as not every module says CKR_DEVICE_REMOVED), and the caller
//! opens it again. Dropping it closes the
//! session but does not call `C_Logout`: the PKCS#11 login belongs to the application, and a
//! logout would log out every [`Pkcs11Key`] of this process on the token as well. The token
//! logs the application out by itself when its last session closes. For the same reason a
//! [`Token::open`] while this process is already logged in to the token is not a PIN check
//! (CKR_USER_ALREADY_LOGGED_IN is accepted, see the `pkcs11` module documentation).
//!
//! # Objects and ids
//! A key pair and its certificates are tied together by CKA_ID, as PKCS#11 applications
//! (OpenSC, p11-kit, NSS, browsers) expect: [`Pkcs11Key::generate`] gives both halves one id,
//! [`Token::store_certificate`] stores the certificate under the key's id, and
//! [`Token::delete_with_id`] removes all of them. Certificates are public token objects with
//! CKA_SUBJECT, CKA_ISSUER and CKA_SERIAL_NUMBER taken from the DER (as the standard asks, and
//! as applications search by them) and CKA_CERTIFICATE_CATEGORY 1 (token user) or 2
//! (authority). `cryptoki` 0.12 has no attribute for CKA_CERTIFICATE_CATEGORY, so it is passed
//! through `Attribute::VendorDefined`, which hands its type number (0x87) to the module as it
//! is; a token that does not know the attribute (CKR_ATTRIBUTE_TYPE_INVALID) gets the
//! certificate without it.
//!
//! # Errors of a full token
//! Tokens report a full object store differently: CKR_DEVICE_MEMORY is the standard answer,
//! but some smart cards answer C_CreateObject or C_GenerateKeyPair with CKR_DEVICE_ERROR when
//! their file system is full. Creating objects therefore maps CKR_DEVICE_MEMORY, and
//! CKR_DEVICE_ERROR while the token is still in its slot with the same label, to
//! [`Error::TokenFull`]; a CKR_DEVICE_ERROR from a token that has left is [`Error::TokenGone`].
//!
//! # PINs
//! A wrong PIN is [`Error::WrongPin`] with the token's count-low and final-try flags as read
//! after the failure; a locked PIN is [`Error::PinLocked`] (only the security officer can
//! unblock it, with `C_InitPIN`); a new PIN the token refuses (CKR_PIN_LEN_RANGE,
//! CKR_PIN_INVALID) is [`Error::NewPinRejected`] with the token's length limits.
//! [`TokenInfo::user_pin_to_be_changed`] reports a factory-default PIN; [`change_pin`] works
//! the same whether or not the token asks for the change. Changing the PIN does not update
//! the PIN an open [`Pkcs11Key`] keeps for reconnecting: reopen such keys with the new PIN.
//!
//! # National-crypto (SM2) tokens
//! What is here is algorithm-neutral: listing tokens, reading CKA_ID/CKA_LABEL/CKA_VALUE,
//! storing X.509 certificates (an SM2-with-SM3 certificate is stored like any other) and
//! destroying objects work on any PKCS#11 token. What a Chinese national-crypto token would
//! need beyond that is in the keys, not in token management:
//! * key generation and signing with the vendor's SM2 mechanisms (CKM_VENDOR_DEFINED + n,
//!   different per vendor; PKCS#11 up to 3.1 defines no SM2 or SM3 mechanism), with SM3
//!   hashing of Z_A ‖ M either on the token or here before a raw SM2 signature;
//! * recognising its keys: [`Token::objects`] reports [`SignatureAlgorithm::Sm2Sm3`] for
//!   CKK_EC keys whose CKA_EC_PARAMS is the SM2 curve OID (1.2.156.10197.1.301) and no
//!   algorithm for vendor key types (CKK_VENDOR_DEFINED), which such tokens often use;
//! * many of them are driven through GM/T 0016 (SKF) or GM/T 0018 (SDF) rather than PKCS#11,
//!   with containers instead of CKA_ID; those interfaces need a backend of their own.
//!
//! [`Pkcs11Key`]: super::Pkcs11Key
//! [`Pkcs11Key::generate`]: super::Pkcs11Key::generate

use std::ffi::c_ulong;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo as CkTokenInfo};
use cryptoki::types::AuthPin;
use der::{Decode as _, Encode as _};

use super::module::{self, Module, describe, rv};
use super::{curve_of, find_slot, login, login_failure, open_session, slots_with_token, token_error};
use crate::algorithm::SM2_CURVE;
use crate::{Error, SignatureAlgorithm};

/// CKA_CERTIFICATE_CATEGORY (PKCS#11 2.20 and later), which `cryptoki` 0.12 does not name.
const CKA_CERTIFICATE_CATEGORY: c_ulong = 0x87;
/// CKA_CERTIFICATE_CATEGORY values: a certificate of the token's user, and of an authority.
const CATEGORY_TOKEN_USER: c_ulong = 1;
const CATEGORY_AUTHORITY: c_ulong = 2;

/// What a token says about itself (`C_GetTokenInfo`), for `eport token list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// CKA_LABEL of the token (blank padding removed).
    pub label: String,
    /// The manufacturer id.
    pub manufacturer: String,
    /// The model.
    pub model: String,
    /// The serial number, as the token writes it.
    pub serial: String,
    /// CKF_LOGIN_REQUIRED: private objects and key use need a user login.
    pub login_required: bool,
    /// CKF_USER_PIN_INITIALIZED: the security officer has set a user PIN.
    pub user_pin_initialized: bool,
    /// CKF_USER_PIN_COUNT_LOW: a wrong user PIN was given since the last good one.
    pub user_pin_count_low: bool,
    /// CKF_USER_PIN_FINAL_TRY: one more wrong user PIN locks it.
    pub user_pin_final_try: bool,
    /// CKF_USER_PIN_LOCKED: the user PIN is locked; a security officer must unblock it.
    pub user_pin_locked: bool,
    /// CKF_USER_PIN_TO_BE_CHANGED: the user PIN is a factory default (or expired) and should
    /// be changed before use.
    pub user_pin_to_be_changed: bool,
    /// CKF_PROTECTED_AUTHENTICATION_PATH: the PIN is entered on the device (PIN pad,
    /// fingerprint), not given by us.
    pub protected_authentication_path: bool,
    /// Free memory for public objects in bytes, if the token says.
    pub free_public_memory: Option<u64>,
    /// Free memory for private objects in bytes, if the token says.
    pub free_private_memory: Option<u64>,
}

impl From<&CkTokenInfo> for TokenInfo {
    fn from(info: &CkTokenInfo) -> Self {
        let bytes = |memory: Option<usize>| memory.and_then(|m| u64::try_from(m).ok());
        Self {
            label: info.label().to_owned(),
            manufacturer: info.manufacturer_id().to_owned(),
            model: info.model().to_owned(),
            serial: info.serial_number().to_owned(),
            login_required: info.login_required(),
            user_pin_initialized: info.user_pin_initialized(),
            user_pin_count_low: info.user_pin_count_low(),
            user_pin_final_try: info.user_pin_final_try(),
            user_pin_locked: info.user_pin_locked(),
            user_pin_to_be_changed: info.user_pin_to_be_changed(),
            protected_authentication_path: info.protected_authentication_path(),
            free_public_memory: bytes(info.free_public_memory()),
            free_private_memory: bytes(info.free_private_memory()),
        }
    }
}

/// The initialised tokens present in the slots of the module at `module`, in slot order.
/// Slots without a token, and tokens that are not initialised (SoftHSM2's free slot, a blank
/// card), are left out, as is a token that leaves while it is being listed.
///
/// # Errors
/// [`Error::Pkcs11Module`] when the module cannot be loaded; [`Error::Pkcs11`] when the
/// module cannot list its slots.
pub fn list_tokens(module: &Path) -> Result<Vec<TokenInfo>, Error> {
    let loaded = module::load(module)?;
    let slots = slots_with_token(&loaded)?;
    Ok(slots
        .into_iter()
        .filter_map(|slot| loaded.ctx.get_token_info(slot).ok())
        .filter(CkTokenInfo::token_initialized)
        .map(|info| TokenInfo::from(&info))
        .collect())
}

/// The kinds of object [`Token::objects`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// CKO_PRIVATE_KEY.
    PrivateKey,
    /// CKO_PUBLIC_KEY.
    PublicKey,
    /// CKO_CERTIFICATE.
    Certificate,
}

/// A key or certificate on a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenObject {
    /// What it is.
    pub kind: ObjectKind,
    /// CKA_LABEL, if set (bytes that are not UTF-8 are replaced).
    pub label: Option<String>,
    /// CKA_ID, possibly empty; a key pair and its certificates share one.
    pub id: Vec<u8>,
    /// For keys: the signature algorithm of the key, when it is one we know (P-256, Ed25519,
    /// SM2 by its curve OID); `None` for certificates and other keys.
    pub algorithm: Option<SignatureAlgorithm>,
    /// For certificates: CKA_VALUE, the DER certificate.
    pub certificate_der: Option<Vec<u8>>,
}

/// A logged-in read-write session on one token, for managing its objects (see the module
/// documentation).
pub struct Token {
    module: Arc<Module>,
    slot: Slot,
    label: String,
    session: Session,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("module", &self.module.path)
            .field("slot", &self.slot.id())
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Opens a read-write session on the token labelled `token_label` of the module at
    /// `module` and logs in as the user with `pin` (without a PIN: through the protected
    /// authentication path if the token has one, not at all if it needs no login).
    ///
    /// # Errors
    /// [`Error::Pkcs11Module`] when the module cannot be loaded; [`Error::TokenNotFound`] when
    /// no token has that label; [`Error::WrongPin`] (with the token's retry flags) or
    /// [`Error::PinLocked`] when the login is refused; [`Error::TokenGone`] or
    /// [`Error::Pkcs11`] for other failures of the token.
    pub fn open(module: &Path, token_label: &str, pin: Option<&str>) -> Result<Self, Error> {
        let loaded = module::load(module)?;
        let selector = super::Pkcs11Uri { token: Some(token_label.to_owned()), ..super::Pkcs11Uri::default() };
        let (slot, label) = find_slot(&loaded, &selector)?;
        let session = open_session(&loaded, slot, &label, true)?;
        login(&loaded, slot, &session, &label, pin)?;
        Ok(Self { module: loaded, slot, label, session })
    }

    /// The token's label.
    #[must_use]
    pub fn label(&self) -> &str {
        &self.label
    }

    /// What the token says about itself now (flags and free memory change as it is used).
    ///
    /// # Errors
    /// [`Error::TokenGone`] when the token left its slot; [`Error::Pkcs11`] otherwise.
    pub fn info(&self) -> Result<TokenInfo, Error> {
        let info = self.module.ctx.get_token_info(self.slot).map_err(|e| self.error("C_GetTokenInfo", &e))?;
        Ok(TokenInfo::from(&info))
    }

    /// The private keys, public keys and certificates on the token (in that order; within a
    /// kind, in the token's order). Only objects the session may see are listed: all of them,
    /// as it is logged in.
    ///
    /// # Errors
    /// [`Error::TokenGone`] when the token went away; [`Error::Pkcs11`] for other failures.
    pub fn objects(&self) -> Result<Vec<TokenObject>, Error> {
        let mut objects = Vec::new();
        for kind in [ObjectKind::PrivateKey, ObjectKind::PublicKey, ObjectKind::Certificate] {
            let handles = self.find(&[Attribute::Class(class_of(kind))])?;
            for handle in handles {
                objects.push(self.read_object(kind, handle)?);
            }
        }
        Ok(objects)
    }

    /// The DER certificates on the token whose CKA_ID is `id`.
    ///
    /// # Errors
    /// [`Error::TokenGone`] when the token went away; [`Error::Pkcs11`] for other failures.
    pub fn certificates_with_id(&self, id: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        read_certificates(&self.session, id).map_err(|(function, e)| self.error(function, &e))
    }

    /// Stores the DER X.509 certificate `der` on the token as a public token object
    /// (CKO_CERTIFICATE, CKC_X_509) labelled `label` with CKA_ID `id`, usually the id of its
    /// key; CKA_SUBJECT, CKA_ISSUER and CKA_SERIAL_NUMBER are taken from the certificate, and
    /// CKA_CERTIFICATE_CATEGORY is 2 (authority) when `authority`, else 1 (token user). A
    /// certificate already stored with the same id and the same DER is not stored twice (so an
    /// interrupted enrolment can simply be repeated).
    ///
    /// # Errors
    /// [`Error::Malformed`] when `der` is not an X.509 certificate; [`Error::TokenFull`] when
    /// the token has no room for it; [`Error::TokenGone`] when the token went away;
    /// [`Error::Pkcs11`] for other failures.
    pub fn store_certificate(&self, label: &str, id: &[u8], der: &[u8], authority: bool) -> Result<(), Error> {
        let certificate = x509_cert::Certificate::from_der(der).map_err(|e| Error::der("certificate", e))?;
        let tbs = &certificate.tbs_certificate;
        let subject = tbs.subject.to_der().map_err(|e| Error::der("certificate subject", e))?;
        let issuer = tbs.issuer.to_der().map_err(|e| Error::der("certificate issuer", e))?;
        let serial = tbs.serial_number.to_der().map_err(|e| Error::der("certificate serial number", e))?;

        let same =
            [Attribute::Class(ObjectClass::CERTIFICATE), Attribute::Id(id.to_vec()), Attribute::Value(der.to_vec())];
        if !self.find(&same)?.is_empty() {
            return Ok(());
        }

        let mut template = vec![
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
            Attribute::Subject(subject),
            Attribute::Issuer(issuer),
            Attribute::SerialNumber(serial),
            Attribute::Value(der.to_vec()),
        ];
        let category = if authority { CATEGORY_AUTHORITY } else { CATEGORY_TOKEN_USER };
        template.push(certificate_category(category));
        let created = match self.session.create_object(&template) {
            Err(e) if rv(&e) == Some(RvError::AttributeTypeInvalid) => {
                // A token that predates CKA_CERTIFICATE_CATEGORY: store without it.
                template.pop();
                self.session.create_object(&template)
            }
            other => other,
        };
        created.map(|_| ()).map_err(|e| {
            self.gone_or(
                creation_error(&self.module, self.slot, &self.label, "C_CreateObject", &e),
                "C_CreateObject",
                &e,
            )
        })
    }

    /// Destroys every private key, public key and certificate whose CKA_ID is `id` (the
    /// certificates first, the private key last) and returns how many. An empty `id` destroys
    /// nothing and returns 0: it would match every object that has no id.
    ///
    /// # Errors
    /// [`Error::TokenGone`] when the token went away; [`Error::Pkcs11`] for other failures
    /// (CKR_ACTION_PROHIBITED for an object that is not CKA_DESTROYABLE, for one). Objects
    /// destroyed before the failure stay destroyed.
    pub fn delete_with_id(&self, id: &[u8]) -> Result<usize, Error> {
        if id.is_empty() {
            return Ok(0);
        }
        let mut destroyed = 0;
        for kind in [ObjectKind::Certificate, ObjectKind::PublicKey, ObjectKind::PrivateKey] {
            for handle in self.find(&[Attribute::Class(class_of(kind)), Attribute::Id(id.to_vec())])? {
                self.session.destroy_object(handle).map_err(|e| self.error("C_DestroyObject", &e))?;
                destroyed += 1;
            }
        }
        Ok(destroyed)
    }

    /// Gives every object (private key, public key, certificates) whose CKA_ID is `id` the
    /// label `label` (C_SetAttributeValue); returns how many. The last step of a renewal: the
    /// new key takes the old one's label once the old one is gone.
    ///
    /// # Errors
    /// [`Error::TokenGone`] when the token went away; [`Error::Pkcs11`] when the token refuses
    /// (a token may make labels read-only).
    pub fn relabel(&self, id: &[u8], label: &str) -> Result<usize, Error> {
        if id.is_empty() {
            return Ok(0);
        }
        let mut changed = 0;
        for kind in [ObjectKind::PrivateKey, ObjectKind::PublicKey, ObjectKind::Certificate] {
            for handle in self.find(&[Attribute::Class(class_of(kind)), Attribute::Id(id.to_vec())])? {
                self.session
                    .update_attributes(handle, &[Attribute::Label(label.as_bytes().to_vec())])
                    .map_err(|e| self.error("C_SetAttributeValue", &e))?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    fn find(&self, template: &[Attribute]) -> Result<Vec<ObjectHandle>, Error> {
        self.session.find_objects(template).map_err(|e| self.error("C_FindObjects", &e))
    }

    fn read_object(&self, kind: ObjectKind, handle: ObjectHandle) -> Result<TokenObject, Error> {
        let wanted: &[AttributeType] = match kind {
            ObjectKind::PrivateKey | ObjectKind::PublicKey => {
                &[AttributeType::Label, AttributeType::Id, AttributeType::KeyType, AttributeType::EcParams]
            }
            ObjectKind::Certificate => &[AttributeType::Label, AttributeType::Id, AttributeType::Value],
        };
        let attributes =
            self.session.get_attributes(handle, wanted).map_err(|e| self.error("C_GetAttributeValue", &e))?;
        let mut object = TokenObject { kind, label: None, id: Vec::new(), algorithm: None, certificate_der: None };
        let (mut key_type, mut params) = (None, None);
        for attribute in attributes {
            match attribute {
                Attribute::Label(l) => object.label = Some(String::from_utf8_lossy(&l).into_owned()),
                Attribute::Id(id) => object.id = id,
                Attribute::KeyType(k) => key_type = Some(k),
                Attribute::EcParams(p) => params = Some(p),
                Attribute::Value(v) => object.certificate_der = Some(v),
                _ => {}
            }
        }
        object.algorithm = key_type.and_then(|k| algorithm_of(k, params.as_deref()));
        Ok(object)
    }

    fn error(&self, function: &'static str, e: &CkError) -> Error {
        self.gone_or(token_error(&self.label, function, e), function, e)
    }

    /// `error` for a failed call of `function`, unless it is a plain [`Error::Pkcs11`] and the
    /// token is no longer in its slot: then [`Error::TokenGone`]. Not every module says
    /// CKR_DEVICE_REMOVED; SoftHSM2 answers CKR_GENERAL_ERROR once a token's directory is gone.
    fn gone_or(&self, error: Error, function: &'static str, e: &CkError) -> Error {
        if !matches!(error, Error::Pkcs11 { .. }) {
            return error;
        }
        let reason = match self.module.ctx.get_token_info(self.slot) {
            Ok(info) if info.label() == self.label => return error,
            Ok(info) => format!("slot {} now holds token {:?}", self.slot, info.label()),
            Err(probe) => format!("the token left its slot (C_GetTokenInfo: {})", describe(&probe)),
        };
        Error::TokenGone { label: self.label.clone(), reason: format!("{function}: {}; {reason}", describe(e)) }
    }
}

/// Changes the user PIN of the token labelled `token_label` from `old` to `new`: `C_SetPIN` on
/// a read-write session logged in as the user with `old`. It works whether or not the token
/// flags the PIN to be changed; a token that answers the login with CKR_PIN_EXPIRED gets the
/// `C_SetPIN` it asks for.
///
/// # Errors
/// [`Error::WrongPin`] (with the token's retry flags) when `old` is wrong; [`Error::PinLocked`]
/// when the PIN is locked; [`Error::NewPinRejected`] when the token refuses `new` (length,
/// characters); [`Error::TokenNotFound`], [`Error::TokenGone`], [`Error::Pkcs11Module`] or
/// [`Error::Pkcs11`] as [`Token::open`].
pub fn change_pin(module: &Path, token_label: &str, old: &str, new: &str) -> Result<(), Error> {
    let loaded = module::load(module)?;
    let selector = super::Pkcs11Uri { token: Some(token_label.to_owned()), ..super::Pkcs11Uri::default() };
    let (slot, label) = find_slot(&loaded, &selector)?;
    let session = open_session(&loaded, slot, &label, true)?;
    let pin_state = || {
        loaded.ctx.get_token_info(slot).map_or_else(
            |_| PinState::default(),
            |t| PinState {
                final_try: t.user_pin_final_try(),
                count_low: t.user_pin_count_low(),
                lengths: Some((t.min_pin_length(), t.max_pin_length())),
            },
        )
    };
    let info = loaded.ctx.get_token_info(slot).map_err(|e| token_error(&label, "C_GetTokenInfo", &e))?;
    if info.user_pin_locked() {
        return Err(Error::PinLocked { label });
    }
    let old_pin = AuthPin::new(old.into());
    match session.login(UserType::User, Some(&old_pin)) {
        // The token wants the PIN changed before anything else, which is what comes next.
        Err(e) if rv(&e) == Some(RvError::PinExpired) => {}
        Err(e) => login_failure(&e, &label, || {
            let state = pin_state();
            (state.final_try, state.count_low)
        })?,
        Ok(()) => {}
    }
    session.set_pin(&old_pin, &AuthPin::new(new.into())).map_err(|e| set_pin_failure(&e, &label, pin_state))
}

/// What the token says about its user PIN, read after a failure.
#[derive(Clone, Copy, Debug, Default)]
struct PinState {
    final_try: bool,
    count_low: bool,
    /// The least and most characters a PIN may have.
    lengths: Option<(usize, usize)>,
}

/// What a failed `C_SetPIN` means; `state` reads the token's PIN flags and limits.
fn set_pin_failure(e: &CkError, label: &str, state: impl FnOnce() -> PinState) -> Error {
    let label = label.to_owned();
    match rv(e) {
        Some(RvError::PinIncorrect) => {
            let PinState { final_try, count_low, .. } = state();
            Error::WrongPin { label, final_try, count_low }
        }
        Some(RvError::PinLocked) => Error::PinLocked { label },
        Some(RvError::PinLenRange) => {
            let reason = match state().lengths {
                Some((min, max)) => format!("a PIN must have {min} to {max} characters (CKR_PIN_LEN_RANGE)"),
                None => "its length is out of the token's range (CKR_PIN_LEN_RANGE)".to_owned(),
            };
            Error::NewPinRejected { label, reason }
        }
        Some(RvError::PinInvalid) => Error::NewPinRejected {
            label,
            reason: "it has characters the token does not accept in a PIN (CKR_PIN_INVALID)".to_owned(),
        },
        _ => token_error(&label, "C_SetPIN", e),
    }
}

/// The error for a failed `function` that creates objects (`C_CreateObject`,
/// `C_GenerateKeyPair`) on the token in `slot`: [`Error::TokenFull`] for CKR_DEVICE_MEMORY,
/// and for CKR_DEVICE_ERROR while the token is still there (see the module documentation);
/// otherwise as `token_error`.
pub(super) fn creation_error(module: &Module, slot: Slot, label: &str, function: &'static str, e: &CkError) -> Error {
    full_or(e, label, function, || module.ctx.get_token_info(slot).is_ok_and(|t| t.label() == label))
}

/// [`creation_error`] with the presence check as an argument: `present` says whether the
/// token labelled `label` is still in its slot.
fn full_or(e: &CkError, label: &str, function: &'static str, present: impl FnOnce() -> bool) -> Error {
    match rv(e) {
        Some(RvError::DeviceMemory) => Error::TokenFull { token: label.to_owned() },
        Some(RvError::DeviceError) if present() => Error::TokenFull { token: label.to_owned() },
        _ => token_error(label, function, e),
    }
}

/// The DER values of the certificates with CKA_ID `id` visible to `session`; on failure, the
/// function that failed and its error.
pub(super) fn read_certificates(session: &Session, id: &[u8]) -> Result<Vec<Vec<u8>>, (&'static str, CkError)> {
    let handles = session
        .find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE), Attribute::Id(id.to_vec())])
        .map_err(|e| ("C_FindObjects", e))?;
    let mut certificates = Vec::with_capacity(handles.len());
    for handle in handles {
        let value = session.get_attributes(handle, &[AttributeType::Value]).map_err(|e| ("C_GetAttributeValue", e))?;
        if let Some(Attribute::Value(der)) = value.into_iter().next() {
            certificates.push(der);
        }
    }
    Ok(certificates)
}

fn class_of(kind: ObjectKind) -> ObjectClass {
    match kind {
        ObjectKind::PrivateKey => ObjectClass::PRIVATE_KEY,
        ObjectKind::PublicKey => ObjectClass::PUBLIC_KEY,
        ObjectKind::Certificate => ObjectClass::CERTIFICATE,
    }
}

/// The algorithm of a key from CKA_KEY_TYPE and CKA_EC_PARAMS, for listing: unlike opening a
/// key, an SM2 key is named (the token holds one even if we cannot sign with it here).
fn algorithm_of(key_type: KeyType, params: Option<&[u8]>) -> Option<SignatureAlgorithm> {
    if key_type == KeyType::EC && params.and_then(|p| der::asn1::ObjectIdentifier::from_der(p).ok()) == Some(SM2_CURVE)
    {
        return Some(SignatureAlgorithm::Sm2Sm3);
    }
    curve_of(key_type, params).ok().map(super::Curve::algorithm)
}

/// CKA_CERTIFICATE_CATEGORY with `value`, a CK_ULONG in the platform's byte order.
fn certificate_category(value: c_ulong) -> Attribute {
    Attribute::VendorDefined((AttributeType::VendorDefined(CKA_CERTIFICATE_CATEGORY), value.to_ne_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn device_memory_on_creation_means_the_token_is_full() {
        let e = CkError::Pkcs11(RvError::DeviceMemory, Function::CreateObject);
        match full_or(&e, "card", "C_CreateObject", || false) {
            Error::TokenFull { token } => assert_eq!(token, "card"),
            other => panic!("{other:?}"),
        }
        let message = full_or(&e, "card", "C_CreateObject", || true).to_string();
        assert!(message.contains("remove"), "{message}");
    }

    #[test]
    fn device_error_on_creation_is_full_if_the_token_is_still_there_and_gone_otherwise() {
        let e = CkError::Pkcs11(RvError::DeviceError, Function::GenerateKeyPair);
        assert!(matches!(full_or(&e, "card", "C_GenerateKeyPair", || true), Error::TokenFull { .. }));
        assert!(matches!(full_or(&e, "card", "C_GenerateKeyPair", || false), Error::TokenGone { .. }));
    }

    #[test]
    fn other_creation_failures_keep_their_usual_mapping() {
        let removed = CkError::Pkcs11(RvError::DeviceRemoved, Function::CreateObject);
        assert!(matches!(full_or(&removed, "card", "C_CreateObject", || true), Error::TokenGone { .. }));
        let template = CkError::Pkcs11(RvError::TemplateIncomplete, Function::CreateObject);
        match full_or(&template, "card", "C_CreateObject", || panic!("presence is only asked for CKR_DEVICE_ERROR")) {
            Error::Pkcs11 { function: "C_CreateObject", reason } => assert_eq!(reason, "CKR_TEMPLATE_INCOMPLETE"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn maps_set_pin_failures_to_pin_errors() {
        let set_pin = |rv| CkError::Pkcs11(rv, Function::SetPIN);
        let state = || PinState { final_try: true, count_low: true, lengths: Some((4, 8)) };
        match set_pin_failure(&set_pin(RvError::PinIncorrect), "t", state) {
            Error::WrongPin { label, final_try: true, count_low: true } => assert_eq!(label, "t"),
            other => panic!("{other:?}"),
        }
        let locked = set_pin_failure(&set_pin(RvError::PinLocked), "t", state);
        assert!(matches!(locked, Error::PinLocked { .. }), "{locked:?}");
        assert!(locked.to_string().contains("security officer"), "{locked}");
        match set_pin_failure(&set_pin(RvError::PinLenRange), "t", state) {
            Error::NewPinRejected { reason, .. } => assert!(reason.contains("4 to 8"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            set_pin_failure(&set_pin(RvError::PinLenRange), "t", PinState::default),
            Error::NewPinRejected { .. }
        ));
        assert!(matches!(set_pin_failure(&set_pin(RvError::PinInvalid), "t", state), Error::NewPinRejected { .. }));
        assert!(matches!(set_pin_failure(&set_pin(RvError::TokenNotPresent), "t", state), Error::TokenGone { .. }));
        assert!(matches!(
            set_pin_failure(&set_pin(RvError::FunctionFailed), "t", state),
            Error::Pkcs11 { function: "C_SetPIN", .. }
        ));
    }

    #[test]
    fn names_the_algorithm_of_p256_ed25519_and_sm2_keys() {
        assert_eq!(
            algorithm_of(KeyType::EC, Some(super::super::P256_PARAMS)),
            Some(SignatureAlgorithm::EcdsaP256Sha256)
        );
        assert_eq!(
            algorithm_of(KeyType::EC_EDWARDS, Some(super::super::ED25519_PARAMS)),
            Some(SignatureAlgorithm::Ed25519)
        );
        let sm2 = [0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d];
        assert_eq!(algorithm_of(KeyType::EC, Some(&sm2)), Some(SignatureAlgorithm::Sm2Sm3));
        assert_eq!(algorithm_of(KeyType::RSA, None), None);
    }

    #[test]
    fn the_certificate_category_is_attribute_0x87_holding_a_ck_ulong() {
        match certificate_category(CATEGORY_AUTHORITY) {
            Attribute::VendorDefined((AttributeType::VendorDefined(0x87), value)) => {
                assert_eq!(value, c_ulong::from(2u8).to_ne_bytes());
            }
            other => panic!("{other:?}"),
        }
    }
}
