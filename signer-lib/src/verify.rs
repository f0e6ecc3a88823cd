//! Verification of a raw signature against a SubjectPublicKeyInfo.
//!
//! Path validation and revocation checking build on this in a later stage; here only the
//! cryptography is checked.

use der::Decode;
use signature::Verifier as _;
use spki::SubjectPublicKeyInfoRef;

use crate::algorithm::{
    ECDSA_WITH_SHA256, ED25519, ID_EC_PUBLIC_KEY, KeyType, RSA_ENCRYPTION, RSASSA_PSS, SHA256_WITH_RSA, SM2_SIGN,
    SM2_WITH_SM3, SignatureAlgorithm, VerifyAlgorithm,
};
use crate::{Error, sm2};

/// What a verification may depend on beyond the key and the bytes.
#[derive(Clone, Debug)]
pub struct VerifyOptions<'a> {
    /// The SM2 distinguishing ID of the signer (GM/T 0009 default unless a profile says otherwise).
    pub sm2_distid: &'a [u8],
}

impl Default for VerifyOptions<'_> {
    fn default() -> Self {
        Self { sm2_distid: sm2::DEFAULT_DISTID.as_bytes() }
    }
}

/// Maps a signature algorithm OID (as found in a certificate, CSR or SignerInfo) to what we verify.
///
/// rsaEncryption and id-ecPublicKey appear as CMS signature algorithms from some producers; they
/// are taken with SHA-256, the only digest we accept for them.
///
/// # Errors
/// [`Error::UnsupportedAlgorithm`] for anything else.
pub fn algorithm_of(oid: der::asn1::ObjectIdentifier, key: KeyType) -> Result<VerifyAlgorithm, Error> {
    let alg = match (oid, key) {
        (ECDSA_WITH_SHA256 | ID_EC_PUBLIC_KEY, KeyType::P256) => {
            VerifyAlgorithm::Ours(SignatureAlgorithm::EcdsaP256Sha256)
        }
        (SM2_WITH_SM3 | SM2_SIGN | ID_EC_PUBLIC_KEY, KeyType::Sm2) => VerifyAlgorithm::Ours(SignatureAlgorithm::Sm2Sm3),
        (ED25519, KeyType::Ed25519) => VerifyAlgorithm::Ours(SignatureAlgorithm::Ed25519),
        (SHA256_WITH_RSA | RSA_ENCRYPTION, KeyType::Rsa) => VerifyAlgorithm::RsaPkcs1Sha256,
        (RSASSA_PSS, KeyType::Rsa) => VerifyAlgorithm::RsaPssSha256,
        _ => return Err(Error::UnsupportedAlgorithm { oid: format!("{oid} with a {key:?} key") }),
    };
    Ok(alg)
}

/// Verifies `signature` over `message` (not pre-hashed) with the key in `spki_der`, for the
/// signature algorithm `oid`, with default options.
///
/// # Errors
/// [`Error::BadSignature`] when it does not verify; [`Error::UnsupportedAlgorithm`],
/// [`Error::InvalidPublicKey`] or [`Error::Malformed`] when it cannot be checked at all.
pub fn verify_signature(
    spki_der: &[u8],
    oid: der::asn1::ObjectIdentifier,
    message: &[u8],
    signature: &[u8],
) -> Result<VerifyAlgorithm, Error> {
    verify_signature_with(spki_der, oid, message, signature, &VerifyOptions::default())
}

/// [`verify_signature`] with explicit options (SM2 distinguishing ID).
///
/// # Errors
/// As [`verify_signature`].
pub fn verify_signature_with(
    spki_der: &[u8],
    oid: der::asn1::ObjectIdentifier,
    message: &[u8],
    signature: &[u8],
    options: &VerifyOptions<'_>,
) -> Result<VerifyAlgorithm, Error> {
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|e| Error::der("public key", e))?;
    let key_type = KeyType::of_spki(&spki)?;
    let alg = algorithm_of(oid, key_type)?;
    let key_bits =
        spki.subject_public_key.as_bytes().ok_or_else(|| Error::InvalidPublicKey("unused bits in key".into()))?;
    let bad = |e: signature::Error| Error::BadSignature(e.to_string());
    match alg {
        VerifyAlgorithm::Ours(SignatureAlgorithm::EcdsaP256Sha256) => {
            // The point is checked with p256 (a clear error for a bad key), the signature with
            // ring, whose assembly verifies several times faster than the pure-Rust crate: the CA
            // checks a CSR per enrolment and verifiers check every message.
            p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bits)
                .map_err(|_| Error::InvalidPublicKey("not a P-256 point".into()))?;
            p256::ecdsa::DerSignature::from_bytes(signature).map_err(bad)?;
            ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, key_bits)
                .verify(message, signature)
                .map_err(|_| Error::BadSignature("ECDSA P-256 signature does not verify".into()))?;
        }
        VerifyAlgorithm::Ours(SignatureAlgorithm::Sm2Sm3) => {
            let vk = sm2::verifying_key(options.sm2_distid, key_bits)?;
            let raw = sm2::der_to_raw(signature, 32).map_err(|e| Error::BadSignature(e.to_string()))?;
            // from_slice rejects r or s outside [1, n−1] (GM/T 0003.2 §7.1 B1, B2).
            let sig = ::sm2::dsa::Signature::from_slice(&raw).map_err(bad)?;
            vk.verify(message, &sig).map_err(bad)?;
        }
        VerifyAlgorithm::Ours(SignatureAlgorithm::Ed25519) => {
            let bytes: [u8; 32] =
                key_bits.try_into().map_err(|_| Error::InvalidPublicKey("Ed25519 key must be 32 bytes".into()))?;
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| Error::InvalidPublicKey("not an Ed25519 point".into()))?;
            let sig = ed25519_dalek::Signature::from_slice(signature).map_err(bad)?;
            vk.verify_strict(message, &sig).map_err(bad)?;
        }
        VerifyAlgorithm::RsaPkcs1Sha256 | VerifyAlgorithm::RsaPssSha256 => {
            use rsa::pkcs1::DecodeRsaPublicKey as _;
            use rsa::traits::PublicKeyParts as _;
            let pk = rsa::RsaPublicKey::from_pkcs1_der(key_bits).map_err(|e| Error::InvalidPublicKey(e.to_string()))?;
            if pk.size() < 256 {
                return Err(Error::InvalidPublicKey(format!(
                    "RSA key of {} bits is too short (minimum 2048)",
                    pk.size() * 8
                )));
            }
            if alg == VerifyAlgorithm::RsaPkcs1Sha256 {
                let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(pk);
                let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(bad)?;
                vk.verify(message, &sig).map_err(bad)?;
            } else {
                let vk = rsa::pss::VerifyingKey::<sha2::Sha256>::new(pk);
                let sig = rsa::pss::Signature::try_from(signature).map_err(bad)?;
                vk.verify(message, &sig).map_err(bad)?;
            }
        }
    }
    Ok(alg)
}
