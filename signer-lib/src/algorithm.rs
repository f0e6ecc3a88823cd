//! Signature algorithms and the object identifiers that name them.

use std::fmt;
use std::str::FromStr;

use const_oid::ObjectIdentifier;
use spki::AlgorithmIdentifierOwned;

use crate::Error;

/// id-ecPublicKey (RFC 5480).
pub const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / prime256v1 (RFC 5480).
pub const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// The SM2 curve (GM/T 0006): the SPKI parameter of an SM2 key under id-ecPublicKey.
pub const SM2_CURVE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.301");
/// sm2-1, the SM2 signature scheme (GM/T 0006); some GM/T 0010 producers use it in SignerInfo.
pub const SM2_SIGN: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.301.1");
/// SM3withSM2 (GM/T 0006), used in certificates, CRLs and OCSP.
pub const SM2_WITH_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.501");
/// SM3 (GM/T 0004).
pub const SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.401");
/// ecdsa-with-SHA256 (RFC 5758).
pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// id-Ed25519 (RFC 8410).
pub const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// rsaEncryption (RFC 8017).
pub const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// sha256WithRSAEncryption (RFC 8017).
pub const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
/// id-RSASSA-PSS (RFC 8017).
pub const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// SHA-256 (NIST).
pub const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// SHA-384 (NIST).
pub const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
/// SHA-512 (NIST).
pub const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// An algorithm one of our keys signs with. Verification knows more (see [`VerifyAlgorithm`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// ECDSA over P-256 with SHA-256 (FIPS 186-4); signatures are DER `Ecdsa-Sig-Value`.
    EcdsaP256Sha256,
    /// SM2 with SM3 (GM/T 0003.2), e = SM3(Z_A ‖ M); signatures are DER `SEQUENCE { r, s }`.
    Sm2Sm3,
    /// Ed25519 (RFC 8032), pure; signatures are the 64-byte R ‖ S.
    Ed25519,
}

impl SignatureAlgorithm {
    /// All algorithms our keys can sign with.
    pub const ALL: [Self; 3] = [Self::EcdsaP256Sha256, Self::Sm2Sm3, Self::Ed25519];

    /// The AlgorithmIdentifier for the signature, as it goes into a certificate, CSR or CMS.
    /// Parameters are absent for all three (RFC 5758 §3.2, RFC 8410 §3, GM/T 0006).
    #[must_use]
    pub fn identifier(self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned { oid: self.oid(), parameters: None }
    }

    /// The signature algorithm OID.
    #[must_use]
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::EcdsaP256Sha256 => ECDSA_WITH_SHA256,
            Self::Sm2Sm3 => SM2_WITH_SM3,
            Self::Ed25519 => ED25519,
        }
    }

    /// The digest that goes with the algorithm in CMS (`digestAlgorithm`); Ed25519 uses
    /// SHA-512 as RFC 8419 §3.1 requires when signed attributes are present.
    #[must_use]
    pub fn cms_digest(self) -> DigestAlgorithm {
        match self {
            Self::EcdsaP256Sha256 => DigestAlgorithm::Sha256,
            Self::Sm2Sm3 => DigestAlgorithm::Sm3,
            Self::Ed25519 => DigestAlgorithm::Sha512,
        }
    }

    /// The short name used on the command line and in configuration.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => "p256",
            Self::Sm2Sm3 => "sm2",
            Self::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EcdsaP256Sha256 => "ECDSA P-256 with SHA-256",
            Self::Sm2Sm3 => "SM2 with SM3",
            Self::Ed25519 => "Ed25519",
        })
    }
}

impl FromStr for SignatureAlgorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "ecdsa-p256" | "prime256v1" | "secp256r1" => Ok(Self::EcdsaP256Sha256),
            "sm2" => Ok(Self::Sm2Sm3),
            "ed25519" => Ok(Self::Ed25519),
            _ => Err(Error::UnknownAlgorithmName(s.to_owned())),
        }
    }
}

/// An algorithm we can verify: everything we sign with, plus RSA for legacy counterparties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VerifyAlgorithm {
    /// One of our signing algorithms.
    Ours(SignatureAlgorithm),
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, salt length 32.
    RsaPssSha256,
}

impl fmt::Display for VerifyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ours(a) => a.fmt(f),
            Self::RsaPkcs1Sha256 => f.write_str("RSA PKCS#1 v1.5 with SHA-256"),
            Self::RsaPssSha256 => f.write_str("RSA-PSS with SHA-256"),
        }
    }
}

/// A message digest used in CMS and certificate identifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DigestAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
    /// SM3 (GM/T 0004).
    Sm3,
}

impl DigestAlgorithm {
    /// The digest's OID.
    #[must_use]
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha256 => SHA256,
            Self::Sha384 => SHA384,
            Self::Sha512 => SHA512,
            Self::Sm3 => SM3,
        }
    }

    /// The digest by OID.
    ///
    /// # Errors
    /// [`Error::UnsupportedAlgorithm`] for any other OID.
    pub fn from_oid(oid: ObjectIdentifier) -> Result<Self, Error> {
        match oid {
            SHA256 => Ok(Self::Sha256),
            SHA384 => Ok(Self::Sha384),
            SHA512 => Ok(Self::Sha512),
            SM3 => Ok(Self::Sm3),
            _ => Err(Error::UnsupportedAlgorithm { oid: oid.to_string() }),
        }
    }

    /// The AlgorithmIdentifier, parameters absent (RFC 5754 §2).
    #[must_use]
    pub fn identifier(self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned { oid: self.oid(), parameters: None }
    }

    /// Hashes `data`.
    #[must_use]
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest as _;
        match self {
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(data).to_vec(),
            Self::Sm3 => sm3::Sm3::digest(data).to_vec(),
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
            Self::Sm3 => "SM3",
        })
    }
}

/// The public-key algorithm of a SubjectPublicKeyInfo, as far as we know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyType {
    /// id-ecPublicKey on P-256.
    P256,
    /// id-ecPublicKey on the SM2 curve.
    Sm2,
    /// id-Ed25519.
    Ed25519,
    /// rsaEncryption.
    Rsa,
}

impl KeyType {
    /// Classifies a SubjectPublicKeyInfo.
    ///
    /// # Errors
    /// [`Error::UnsupportedAlgorithm`] for any other key algorithm or curve.
    pub fn of_spki(spki: &spki::SubjectPublicKeyInfoRef<'_>) -> Result<Self, Error> {
        match spki.algorithm.oid {
            ID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters_oid()
                    .map_err(|_| Error::UnsupportedAlgorithm { oid: "id-ecPublicKey without a named curve".into() })?;
                match curve {
                    SECP256R1 => Ok(Self::P256),
                    SM2_CURVE => Ok(Self::Sm2),
                    other => Err(Error::UnsupportedAlgorithm { oid: format!("curve {other}") }),
                }
            }
            ED25519 => Ok(Self::Ed25519),
            RSA_ENCRYPTION => Ok(Self::Rsa),
            other => Err(Error::UnsupportedAlgorithm { oid: other.to_string() }),
        }
    }

    /// The signature algorithm our keys of this type sign with.
    #[must_use]
    pub fn signature_algorithm(self) -> Option<SignatureAlgorithm> {
        match self {
            Self::P256 => Some(SignatureAlgorithm::EcdsaP256Sha256),
            Self::Sm2 => Some(SignatureAlgorithm::Sm2Sm3),
            Self::Ed25519 => Some(SignatureAlgorithm::Ed25519),
            Self::Rsa => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_algorithm_names_case_insensitively() {
        assert_eq!("P256".parse::<SignatureAlgorithm>().unwrap(), SignatureAlgorithm::EcdsaP256Sha256);
        assert_eq!("sm2".parse::<SignatureAlgorithm>().unwrap(), SignatureAlgorithm::Sm2Sm3);
        assert!("rsa1024".parse::<SignatureAlgorithm>().is_err());
    }

    #[test]
    fn sm3_digest_matches_the_standard_vector() {
        let d = DigestAlgorithm::Sm3.digest(b"abc");
        assert_eq!(hex::encode(d), "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0");
        let d = DigestAlgorithm::Sm3.digest("abcd".repeat(16).as_bytes());
        assert_eq!(hex::encode(d), "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732");
    }
}
