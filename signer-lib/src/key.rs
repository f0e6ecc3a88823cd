//! Keys that sign, wherever they live, behind one small trait.
//!
//! Backends: [`software`] (PKCS#8 files, encrypted or plain), [`pkcs11`] (tokens and HSMs,
//! named by RFC 7512 URIs) and [`yubihsm`] (YubiHSM 2 over its connector).

pub mod pkcs11;
pub mod software;
pub mod yubihsm;

use std::fmt;

use der::{Decode, Encode};
use spki::{DynSignatureAlgorithmIdentifier, EncodePublicKey, SignatureBitStringEncoding};
use x509_cert::Certificate;

use crate::{Error, SignatureAlgorithm};

/// A private key that signs, wherever it lives: a file, a PKCS#11 token, an HSM.
/// Signing may block (a device round-trip); async callers use `spawn_blocking`.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The algorithm this key signs with.
    fn algorithm(&self) -> SignatureAlgorithm;

    /// The DER SubjectPublicKeyInfo of the key.
    fn public_key_der(&self) -> &[u8];

    /// Signs `message`, which is not pre-hashed: the signer applies the algorithm's digest
    /// (SHA-256, or SM3 over Z_A ‖ M for SM2). ECDSA and SM2 signatures are returned DER-encoded
    /// (`SEQUENCE { r, s }`), Ed25519 as the raw 64 bytes.
    ///
    /// # Errors
    /// [`Error::SigningFailed`] or a backend error (token gone, session closed, ...).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error>;
}

impl<T: Signer + ?Sized> Signer for Box<T> {
    fn algorithm(&self) -> SignatureAlgorithm {
        (**self).algorithm()
    }
    fn public_key_der(&self) -> &[u8] {
        (**self).public_key_der()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        (**self).sign(message)
    }
}

impl<T: Signer + ?Sized> Signer for std::sync::Arc<T> {
    fn algorithm(&self) -> SignatureAlgorithm {
        (**self).algorithm()
    }
    fn public_key_der(&self) -> &[u8] {
        (**self).public_key_der()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        (**self).sign(message)
    }
}

/// Refuses a key whose public half is not the one in `certificate` (as rustls
/// `Credentials::new` and Boulder's `LoadIssuer` do).
///
/// # Errors
/// [`Error::KeyCertificateMismatch`] when the SubjectPublicKeyInfos differ.
pub fn check_matches_certificate(signer: &dyn Signer, certificate: &Certificate) -> Result<(), Error> {
    let cert_spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| Error::der("certificate public key", e))?;
    if same_public_key(&cert_spki, signer.public_key_der())? {
        Ok(())
    } else {
        Err(Error::KeyCertificateMismatch { subject: certificate.tbs_certificate.subject.to_string() })
    }
}

/// Compares two SubjectPublicKeyInfos by algorithm, curve and key bits, so that an encoding
/// difference in the parameters (absent vs NULL) does not matter but a different key does.
fn same_public_key(a: &[u8], b: &[u8]) -> Result<bool, Error> {
    let a = spki::SubjectPublicKeyInfoRef::from_der(a).map_err(|e| Error::der("public key", e))?;
    let b = spki::SubjectPublicKeyInfoRef::from_der(b).map_err(|e| Error::der("public key", e))?;
    Ok(a.algorithm.oid == b.algorithm.oid
        && a.algorithm.parameters_oid().ok() == b.algorithm.parameters_oid().ok()
        && a.subject_public_key == b.subject_public_key)
}

/// A DER SubjectPublicKeyInfo as a verifying key, for the RustCrypto builders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKeyDer(pub Vec<u8>);

impl EncodePublicKey for PublicKeyDer {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::try_from(self.0.as_slice())?)
    }
}

/// A signature as it goes into a BIT STRING (certificate, CSR) or OCTET STRING (CMS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureBytes(pub Vec<u8>);

impl SignatureBitStringEncoding for SignatureBytes {
    fn to_bitstring(&self) -> der::Result<der::asn1::BitString> {
        der::asn1::BitString::from_bytes(&self.0)
    }
}

/// Adapts any [`Signer`] to the traits the `x509-cert` and `cms` builders ask for
/// (`Keypair`, `DynSignatureAlgorithmIdentifier`, `signature::Signer`).
#[derive(Debug)]
pub struct BuilderSigner<'a>(pub &'a dyn Signer);

impl signature::Keypair for BuilderSigner<'_> {
    type VerifyingKey = PublicKeyDer;
    fn verifying_key(&self) -> PublicKeyDer {
        PublicKeyDer(self.0.public_key_der().to_vec())
    }
}

impl DynSignatureAlgorithmIdentifier for BuilderSigner<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<spki::AlgorithmIdentifierOwned> {
        Ok(self.0.algorithm().identifier())
    }
}

impl signature::Signer<SignatureBytes> for BuilderSigner<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<SignatureBytes, signature::Error> {
        self.0.sign(msg).map(SignatureBytes).map_err(signature::Error::from_source)
    }
}
