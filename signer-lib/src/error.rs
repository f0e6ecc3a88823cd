//! The one error type of signer-lib.

/// Everything that can go wrong in signer-lib. Variants carry the values that explain the
/// failure; none carries a PIN, passphrase or key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An algorithm name on the command line or in configuration is not one we know.
    #[error("unknown algorithm name {0:?} (expected p256, sm2 or ed25519)")]
    UnknownAlgorithmName(String),
    /// An algorithm, curve or digest identified by OID that we do not support.
    #[error("unsupported algorithm {oid}")]
    UnsupportedAlgorithm {
        /// The OID (or a description of what was found).
        oid: String,
    },
    /// Bytes that should be ASN.1 DER (or PEM around it) are not.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being parsed ("PKCS#8 private key", "CMS SignedData", ...).
        what: &'static str,
        /// The parser's complaint.
        reason: String,
    },
    /// An encrypted private key needs a passphrase and none was given.
    #[error("the private key is encrypted and no passphrase was given")]
    PassphraseRequired,
    /// Decrypting a private key failed: almost always a wrong passphrase.
    #[error("cannot decrypt the private key: wrong passphrase or corrupt file")]
    WrongPassphrase,
    /// A key does not belong with the certificate it is loaded for.
    #[error("the private key does not match the certificate (subject {subject})")]
    KeyCertificateMismatch {
        /// The certificate's subject.
        subject: String,
    },
    /// A public key is not valid for its algorithm (off the curve, wrong length, ...).
    #[error("invalid public key: {0}")]
    InvalidPublicKey(String),
    /// A signature did not verify.
    #[error("signature verification failed: {0}")]
    BadSignature(String),
    /// The signing operation itself failed (software or device).
    #[error("signing failed: {0}")]
    SigningFailed(String),
    /// A `pkcs11:` URI that RFC 7512 does not allow or that lacks what we need.
    #[error("invalid PKCS#11 URI {uri:?}: {reason}")]
    InvalidPkcs11Uri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("cannot load PKCS#11 module {module}: {reason}")]
    Pkcs11Module {
        /// The module path.
        module: String,
        /// The loader's or C_Initialize's complaint.
        reason: String,
    },
    /// No token with the label is present.
    #[error("no token labelled {label:?} is present")]
    TokenNotFound {
        /// The token label looked for.
        label: String,
    },
    /// The token went away (removed, module reloaded, device closed the session).
    #[error("token {label:?} is not available: {reason}")]
    TokenGone {
        /// The token label.
        label: String,
        /// The PKCS#11 return value.
        reason: String,
    },
    /// The PIN was refused.
    #[error("wrong PIN for token {label:?}{}", tries_hint(*.final_try, *.count_low))]
    WrongPin {
        /// The token label.
        label: String,
        /// The token says one more wrong PIN locks it.
        final_try: bool,
        /// The token says the retry counter is low.
        count_low: bool,
    },
    /// The user PIN is locked.
    #[error("the PIN of token {label:?} is locked; a security officer must unblock it")]
    PinLocked {
        /// The token label.
        label: String,
    },
    /// The token has no room for another object (CKR_DEVICE_MEMORY, or CKR_DEVICE_ERROR from
    /// creating an object on a token that is still present, as some smart cards report a full
    /// file system).
    #[error(
        "token {token:?} is full: remove objects it no longer needs (old keys and certificates, \
         see `eport token show`) and try again"
    )]
    TokenFull {
        /// The token label.
        token: String,
    },
    /// The token refused a new PIN (CKR_PIN_LEN_RANGE, CKR_PIN_INVALID); the old PIN is unchanged.
    #[error("token {label:?} refused the new PIN: {reason}")]
    NewPinRejected {
        /// The token label.
        label: String,
        /// Why, with the token's PIN length limits where they apply.
        reason: String,
    },
    /// No key (or certificate) with the label or id exists on the token or HSM.
    #[error("no {what} {name} on {place}")]
    KeyNotFound {
        /// "private key", "public key", "certificate".
        what: &'static str,
        /// The label or id looked for.
        name: String,
        /// The token or device.
        place: String,
    },
    /// An object with the label or id already exists where a new key was to be generated.
    #[error("a key {name} already exists on {place}")]
    KeyExists {
        /// The label or id ("labelled \"sign-key\"", "with id 0102").
        name: String,
        /// The token or device.
        place: String,
    },
    /// Any other PKCS#11 failure, with the function and return value.
    #[error("PKCS#11 {function} failed: {reason}")]
    Pkcs11 {
        /// The PKCS#11 function.
        function: &'static str,
        /// The return value or wrapper error.
        reason: String,
    },
    /// A YubiHSM 2 failure.
    #[error("YubiHSM: {0}")]
    YubiHsm(String),
    /// An environment variable that should hold a secret is not set.
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A CMS structure is well-formed but not acceptable (missing attribute, no signer, ...).
    #[error("CMS: {0}")]
    Cms(String),
    /// An audit-log operation was refused or is impossible: a bad argument (retention below the
    /// floor, an index past the end), the wrong mode (appending to a log opened read-only), or a
    /// writer that has stopped.
    #[error("audit log: {0}")]
    Audit(String),
    /// The audit store (SQLite or PostgreSQL) failed. Nothing in the failed operation was
    /// acknowledged.
    #[error("audit store: {0}")]
    Store(String),
    /// The audit log has been altered: `index` is the first record at which it fails verification
    /// (for a signed tree head, the last record the head covers).
    #[error("audit log tampered at record {index}: {what}")]
    Tampered {
        /// The first record index at which verification fails.
        index: u64,
        /// What is wrong there.
        what: String,
    },
    /// A Merkle inclusion or consistency proof, a checkpoint or an archive does not verify.
    #[error("proof does not verify: {0}")]
    BadProof(String),
}

fn tries_hint(final_try: bool, count_low: bool) -> &'static str {
    if final_try {
        " (one try left before the PIN locks)"
    } else if count_low {
        " (few tries left)"
    } else {
        ""
    }
}

impl Error {
    /// A [`Error::Malformed`] from a DER error.
    pub(crate) fn der(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Malformed { what, reason: e.to_string() }
    }

    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io { path: path.display().to_string(), source }
    }
}
