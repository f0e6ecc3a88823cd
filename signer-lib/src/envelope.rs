//! CMS SignedData (RFC 5652) over the exact bytes of a message: CAdES-BES signed attributes
//! (content-type, message-digest, signing-time, signing-certificate-v2), detached or attached,
//! one or more signers, and the GM/T 0010 content types for SM2.
//!
//! - [`sign`] makes a DER `ContentInfo`; [`to_pem`] wraps it as OpenSSL writes it.
//! - [`verify`] checks every SignerInfo of a SignedData (ours, OpenSSL's, other producers')
//!   and reports who signed what, when. It checks the cryptography and the binding of each
//!   signature to its certificate, not the certificate path: path validation and revocation
//!   are the caller's next step, with [`SignerReport::certificate`].
//! - [`ess`]: the RFC 5035 / RFC 2634 signing-certificate attributes.
//!
//! Algorithms per signer: P-256 signs with digest SHA-256 and ecdsa-with-SHA256; Ed25519 with
//! SHA-512 and id-Ed25519 (RFC 8419); SM2 with SM3 and SM2-with-SM3 (GM/T 0010). The signature
//! is over the DER of the signed attributes as a `SET OF` (tag 0x31, RFC 5652 §5.4).

pub mod ess;
mod sign;
mod verify;

use std::time::SystemTime;

use const_oid::ObjectIdentifier;
use x509_cert::Certificate;

use crate::Signer;
use crate::algorithm::{DigestAlgorithm, SignatureAlgorithm, VerifyAlgorithm};

pub use sign::sign;
pub use verify::{verify, verify_with};

/// id-data (RFC 5652 §4).
pub const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// id-signedData (RFC 5652 §5.1).
pub const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// data of GM/T 0010-2012 (SM2 cryptographic message syntax).
pub const GMT_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.6.1.4.2.1");
/// signedData of GM/T 0010-2012.
pub const GMT_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.6.1.4.2.2");
/// id-contentType signed attribute (RFC 5652 §11.1).
pub const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// id-messageDigest signed attribute (RFC 5652 §11.2).
pub const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// id-signingTime signed attribute (RFC 5652 §11.3).
pub const ID_SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
/// id-aa-signingCertificate (RFC 2634 §5.4, SHA-1 certificate hash).
pub const ID_AA_SIGNING_CERTIFICATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.12");
/// id-aa-signingCertificateV2 (RFC 5035 §3).
pub const ID_AA_SIGNING_CERTIFICATE_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");

/// The PEM label OpenSSL writes for CMS (`openssl cms -outform PEM`).
pub const PEM_LABEL: &str = "CMS";

/// Which object identifiers name the `ContentInfo` content type (signedData) and the
/// encapsulated content type (data). All signers of one SignedData share one choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentTypeOids {
    /// GM/T 0010: signedData 1.2.156.10197.6.1.4.2.2, data 1.2.156.10197.6.1.4.2.1. The default
    /// when every signer is SM2, as the Chinese SM2 toolkits expect.
    Gmt0010,
    /// RFC 5652: id-signedData 1.2.840.113549.1.7.2, id-data 1.2.840.113549.1.7.1. The default
    /// otherwise, and what OpenSSL understands.
    Rfc5652,
}

impl ContentTypeOids {
    /// The default for a set of signers: [`Self::Gmt0010`] when all are SM2, else [`Self::Rfc5652`].
    #[must_use]
    pub fn default_for(algorithms: impl IntoIterator<Item = SignatureAlgorithm>) -> Self {
        let mut any = false;
        for alg in algorithms {
            if alg != SignatureAlgorithm::Sm2Sm3 {
                return Self::Rfc5652;
            }
            any = true;
        }
        if any { Self::Gmt0010 } else { Self::Rfc5652 }
    }

    /// The `ContentInfo` content type of a SignedData.
    #[must_use]
    pub fn signed_data(self) -> ObjectIdentifier {
        match self {
            Self::Gmt0010 => GMT_SIGNED_DATA,
            Self::Rfc5652 => ID_SIGNED_DATA,
        }
    }

    /// The encapsulated content type (`eContentType`) of arbitrary message bytes.
    #[must_use]
    pub fn data(self) -> ObjectIdentifier {
        match self {
            Self::Gmt0010 => GMT_DATA,
            Self::Rfc5652 => ID_DATA,
        }
    }
}

/// How to sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignOptions {
    /// Leave the content out of the SignedData (the verifier is given it separately).
    pub detached: bool,
    /// The signing-time attribute; the caller's clock, never read here.
    pub signing_time: SystemTime,
    /// The content-type OIDs; `None` picks [`ContentTypeOids::default_for`] the signers.
    pub oids: Option<ContentTypeOids>,
}

impl SignOptions {
    /// Attached content, default OIDs, signed at `signing_time`.
    #[must_use]
    pub fn new(signing_time: SystemTime) -> Self {
        Self { detached: false, signing_time, oids: None }
    }
}

/// One signer of a SignedData: its key, its certificate, and the certificates to include with
/// it so a verifier can build the path (intermediates; the root is optional).
#[derive(Clone, Copy, Debug)]
pub struct SignerEntry<'a> {
    /// The private key; must be the key of `certificate`.
    pub signer: &'a dyn Signer,
    /// The signer's certificate (named by issuer and serial number in the SignerInfo).
    pub certificate: &'a Certificate,
    /// Further certificates to include (may be empty).
    pub chain: &'a [Certificate],
}

/// What [`verify`] found: the signed content and every signer, all of whose signatures verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The signed content (from the SignedData, or the detached bytes given).
    pub content: Vec<u8>,
    /// Whether the content was detached (absent from the SignedData).
    pub detached: bool,
    /// Which OIDs the `ContentInfo` used for signedData.
    pub content_type_oids: ContentTypeOids,
    /// The signers, in the order of the SignerInfos.
    pub signers: Vec<SignerReport>,
}

/// One verified SignerInfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerReport {
    /// The signer certificate's subject (RFC 4514).
    pub subject: String,
    /// The signer certificate's issuer (RFC 4514).
    pub issuer: String,
    /// The signer certificate's serial number, lowercase hex without sign padding.
    pub serial_hex: String,
    /// The signer certificate, as found in the SignedData.
    pub certificate: Certificate,
    /// The signature algorithm that verified.
    pub algorithm: VerifyAlgorithm,
    /// The digest of the content (SignerInfo `digestAlgorithm`).
    pub digest: DigestAlgorithm,
    /// The signing-time attribute, if present (the signer's claim, not a timestamp).
    pub signing_time: Option<SystemTime>,
    /// Whether a signing-certificate(-v2) attribute bound the signature to the certificate.
    pub binding: SignerBinding,
}

/// The ESS signing-certificate binding of a signature to its certificate (RFC 5035 §5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignerBinding {
    /// A signing-certificate-v2 (or v1) attribute names the certificate that verified.
    Verified,
    /// Neither attribute is present: the certificate could be swapped for another with the
    /// same key (CAdES-BES requires the attribute; plain CMS does not).
    NotPresent,
}

/// PEM (`-----BEGIN CMS-----`, LF line endings, 64 columns) of a DER `ContentInfo`.
#[must_use]
pub fn to_pem(der: &[u8]) -> String {
    // pem-rfc7468 fails only for an invalid label (ours is the constant "CMS") or when the
    // encoded length overflows usize; base64 with line breaks needs < 1.4 × the input, and an
    // input slice is at most isize::MAX bytes, so the length always fits.
    der::pem::encode_string(PEM_LABEL, der::pem::LineEnding::LF, der).expect("PEM of an in-memory slice")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_gmt_0010_only_when_every_signer_is_sm2() {
        use SignatureAlgorithm::{EcdsaP256Sha256, Ed25519, Sm2Sm3};
        assert_eq!(ContentTypeOids::default_for([Sm2Sm3]), ContentTypeOids::Gmt0010);
        assert_eq!(ContentTypeOids::default_for([Sm2Sm3, Sm2Sm3]), ContentTypeOids::Gmt0010);
        assert_eq!(ContentTypeOids::default_for([Sm2Sm3, EcdsaP256Sha256]), ContentTypeOids::Rfc5652);
        assert_eq!(ContentTypeOids::default_for([Ed25519]), ContentTypeOids::Rfc5652);
        assert_eq!(ContentTypeOids::default_for([]), ContentTypeOids::Rfc5652);
    }

    #[test]
    fn writes_pem_with_the_openssl_label() {
        let pem = to_pem(&[0x30, 0x00]);
        assert_eq!(pem, "-----BEGIN CMS-----\nMAA=\n-----END CMS-----\n");
    }
}
