//! Software keys: generated here, or loaded from PKCS#8 (PEM or DER, encrypted with PBES2 or
//! plain). Keys made by `openssl genpkey` load as they are. Secrets are zeroised on drop, with
//! one exception: see [`P256Secret`].

use std::fmt;
use std::path::Path;

use der::Decode;
use pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rand_core::{OsRng, RngCore};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use sm3::Digest as _;
use zeroize::{Zeroize, Zeroizing};

use crate::algorithm::{ED25519, ID_EC_PUBLIC_KEY, SECP256R1, SM2_CURVE};
use crate::{Error, SignatureAlgorithm, Signer, sm2 as sm2_util};

/// The PEM label of a plain PKCS#8 key.
const PEM_PLAIN: &str = "PRIVATE KEY";
/// The PEM label of an encrypted PKCS#8 key.
const PEM_ENCRYPTED: &str = "ENCRYPTED PRIVATE KEY";

/// How a key file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFormat {
    /// PEM (`-----BEGIN [ENCRYPTED] PRIVATE KEY-----`).
    Pem,
    /// Raw DER.
    Der,
}

/// A private key held in memory.
pub struct SoftwareKey {
    secret: Secret,
    spki: Vec<u8>,
}

enum Secret {
    P256(P256Secret),
    Sm2(Sm2Secret),
    Ed25519(ed25519_dalek::SigningKey),
}

/// A P-256 private key, held twice: as the `p256` crate's key (PKCS#8 export, the public key;
/// zeroised on drop) and as `ring`'s key pair, which signs. ring's constant-time assembly
/// signs in about a tenth of the time of the pure-Rust `p256` arithmetic (≈22 µs against
/// 220–300 µs on the 2-core test machine; the latter made per-request OCSP signing the
/// responder's main cost).
///
/// Zeroisation: the scalar bytes handed to ring are ours and are cleared; but ring keeps its
/// own copy of the scalar (in Montgomery form) and a nonce key derived from it inside
/// [`EcdsaKeyPair`], and ring 0.17 does not clear them on drop (it has no zeroize support).
/// Those bytes stay in freed heap memory until it is reused.
struct P256Secret {
    key: p256::ecdsa::SigningKey,
    ring: EcdsaKeyPair,
}

impl P256Secret {
    fn new(key: p256::ecdsa::SigningKey) -> Result<Self, Error> {
        let scalar = Zeroizing::new(key.to_bytes());
        let point = key.verifying_key().to_encoded_point(false);
        let ring = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            scalar.as_slice(),
            point.as_bytes(),
            &SystemRandom::new(),
        )
        .map_err(|e| Error::InvalidPublicKey(format!("P-256 key refused by ring: {e}")))?;
        Ok(Self { key, ring })
    }

    /// ECDSA with SHA-256 over `message`; the signature as a DER `Ecdsa-Sig-Value`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let signature = self
            .ring
            .sign(&SystemRandom::new(), message)
            .map_err(|_| Error::SigningFailed("ECDSA P-256 (ring) failed".into()))?;
        Ok(signature.as_ref().to_vec())
    }
}

/// An SM2 private key. The `sm2` crate's `SigningKey` does not zeroise its scalar on drop
/// (GB/T 22239 8.1.4.10 asks that it be cleared), so the key and the signing equation of
/// GM/T 0003.2 §6.1 are held here; the crate still does the field arithmetic and its
/// verifier checks every signature in the tests.
struct Sm2Secret {
    d: ::sm2::NonZeroScalar,
    /// (1 + d)⁻¹ mod n, also secret.
    d_plus_1_inv: ::sm2::Scalar,
    /// Z_A for the configured distinguishing ID.
    z: [u8; 32],
    distid: String,
    public: ::sm2::PublicKey,
}

impl Drop for Sm2Secret {
    fn drop(&mut self) {
        self.d.zeroize();
        self.d_plus_1_inv.zeroize();
    }
}

impl Sm2Secret {
    fn new(d: ::sm2::NonZeroScalar, distid: &str) -> Result<Self, Error> {
        use ::sm2::elliptic_curve::sec1::ToEncodedPoint;
        // GM/T 0003.2 §6.1: d ∈ [1, n−2]; for d = n−1 the inverse of 1 + d does not exist.
        let d_plus_1_inv = Option::<::sm2::Scalar>::from((*d + ::sm2::Scalar::ONE).invert())
            .ok_or_else(|| Error::InvalidPublicKey("SM2 private key d = n−1 is not allowed".into()))?;
        let public = ::sm2::PublicKey::from_secret_scalar(&d);
        let z = sm2_util::z_value(distid.as_bytes(), public.to_encoded_point(false).as_bytes())?;
        Ok(Self { d, d_plus_1_inv, z, distid: distid.to_owned(), public })
    }

    /// e = SM3(Z_A ‖ M).
    fn e(&self, message: &[u8]) -> [u8; 32] {
        let mut h = sm3::Sm3::new();
        h.update(self.z);
        h.update(message);
        h.finalize().into()
    }

    /// Signs with a fresh random k (GM/T 0003.2 §6.1 A3–A7), returning raw r‖s.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], Error> {
        let e = self.e(message);
        // A3: retry with a new k in the (negligibly rare) cases the standard says to.
        for _ in 0..16 {
            let k = ::sm2::NonZeroScalar::random(&mut OsRng);
            if let Some(sig) = self.sign_with_k(&e, &k) {
                return Ok(sig);
            }
        }
        Err(Error::SigningFailed("SM2: no valid k found".into()))
    }

    /// A4–A7 for a given k; `None` when r = 0, r + k = n or s = 0.
    fn sign_with_k(&self, e: &[u8; 32], k: &::sm2::NonZeroScalar) -> Option<[u8; 64]> {
        use ::sm2::elliptic_curve::ff::PrimeField;
        use ::sm2::elliptic_curve::ops::Reduce;
        use ::sm2::elliptic_curve::point::AffineCoordinates;
        type Scalar = ::sm2::Scalar;

        let e = <Scalar as Reduce<::sm2::U256>>::reduce_bytes(::sm2::FieldBytes::from_slice(e));
        let point = (::sm2::ProjectivePoint::GENERATOR * **k).to_affine();
        let r = e + <Scalar as Reduce<::sm2::U256>>::reduce_bytes(&point.x());
        if bool::from(r.is_zero()) || bool::from((r + **k).is_zero()) {
            return None;
        }
        let mut kd = **k - r * *self.d;
        let s = self.d_plus_1_inv * kd;
        kd.zeroize();
        if bool::from(s.is_zero()) {
            return None;
        }
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&r.to_repr());
        out[32..].copy_from_slice(&s.to_repr());
        Some(out)
    }
}

impl SoftwareKey {
    /// Generates a key with the operating system's CSPRNG. SM2 keys use the default ID of
    /// GM/T 0009 ([`crate::sm2::DEFAULT_DISTID`]); see [`Self::with_sm2_distid`].
    ///
    /// # Errors
    /// Only if encoding the public key fails, or ring refuses a P-256 key; neither happens for
    /// valid keys.
    pub fn generate(algorithm: SignatureAlgorithm) -> Result<Self, Error> {
        let secret = match algorithm {
            SignatureAlgorithm::EcdsaP256Sha256 => {
                Secret::P256(P256Secret::new(p256::ecdsa::SigningKey::random(&mut OsRng))?)
            }
            SignatureAlgorithm::Sm2Sm3 => loop {
                // d = n−1 is refused by Sm2Secret::new; draw again in that (2⁻²⁵⁶) case.
                if let Ok(s) = Sm2Secret::new(::sm2::NonZeroScalar::random(&mut OsRng), sm2_util::DEFAULT_DISTID) {
                    break Secret::Sm2(s);
                }
            },
            SignatureAlgorithm::Ed25519 => Secret::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
        };
        Self::from_secret(secret)
    }

    fn from_secret(secret: Secret) -> Result<Self, Error> {
        let spki = match &secret {
            Secret::P256(k) => k.key.verifying_key().to_public_key_der(),
            Secret::Sm2(k) => k.public.to_public_key_der(),
            Secret::Ed25519(k) => k.verifying_key().to_public_key_der(),
        }
        .map_err(|e| Error::der("public key", e))?
        .into_vec();
        Ok(Self { secret, spki })
    }

    /// Sets the SM2 distinguishing ID used for signing (no effect on other algorithms).
    ///
    /// # Errors
    /// [`Error::InvalidPublicKey`] for an ID of 8192 bytes or more.
    pub fn with_sm2_distid(self, distid: &str) -> Result<Self, Error> {
        match &self.secret {
            Secret::Sm2(s) => {
                let secret = Secret::Sm2(Sm2Secret::new(s.d, distid)?);
                Self::from_secret(secret)
            }
            _ => Ok(self),
        }
    }

    /// The SM2 distinguishing ID, for SM2 keys.
    #[must_use]
    pub fn sm2_distid(&self) -> Option<&str> {
        match &self.secret {
            Secret::Sm2(s) => Some(&s.distid),
            _ => None,
        }
    }

    /// Parses a PKCS#8 key from DER; `passphrase` is needed when it is an
    /// `EncryptedPrivateKeyInfo` (PBES2 with PBKDF2 or scrypt, as OpenSSL writes them).
    ///
    /// # Errors
    /// [`Error::PassphraseRequired`], [`Error::WrongPassphrase`], [`Error::Malformed`] or
    /// [`Error::UnsupportedAlgorithm`].
    pub fn from_pkcs8_der(der_bytes: &[u8], passphrase: Option<&[u8]>) -> Result<Self, Error> {
        if pkcs8::PrivateKeyInfo::from_der(der_bytes).is_ok() {
            return Self::from_plain_pkcs8(der_bytes);
        }
        let encrypted =
            pkcs8::EncryptedPrivateKeyInfo::from_der(der_bytes).map_err(|e| Error::der("PKCS#8 private key", e))?;
        let passphrase = passphrase.ok_or(Error::PassphraseRequired)?;
        let plain = encrypted.decrypt(passphrase).map_err(|_| Error::WrongPassphrase)?;
        Self::from_plain_pkcs8(plain.as_bytes())
    }

    /// Parses a PEM `PRIVATE KEY` or `ENCRYPTED PRIVATE KEY`.
    ///
    /// # Errors
    /// As [`Self::from_pkcs8_der`], and [`Error::Malformed`] for other PEM labels.
    pub fn from_pkcs8_pem(pem: &str, passphrase: Option<&[u8]>) -> Result<Self, Error> {
        let (label, der_bytes) = der::pem::decode_vec(pem.as_bytes()).map_err(|e| Error::der("PEM private key", e))?;
        let der_bytes = Zeroizing::new(der_bytes);
        if label != PEM_PLAIN && label != PEM_ENCRYPTED {
            return Err(Error::Malformed {
                what: "PEM private key",
                reason: format!("label {label:?}; expected PRIVATE KEY or ENCRYPTED PRIVATE KEY (PKCS#8)"),
            });
        }
        Self::from_pkcs8_der(&der_bytes, passphrase)
    }

    /// Loads a key file, PEM or DER, encrypted or plain.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, otherwise as [`Self::from_pkcs8_der`].
    pub fn load(path: &Path, passphrase: Option<&[u8]>) -> Result<Self, Error> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
        match std::str::from_utf8(&bytes) {
            Ok(text) if text.trim_start().starts_with("-----BEGIN") => Self::from_pkcs8_pem(text, passphrase),
            _ => Self::from_pkcs8_der(&bytes, passphrase),
        }
    }

    fn from_plain_pkcs8(der_bytes: &[u8]) -> Result<Self, Error> {
        let info = pkcs8::PrivateKeyInfo::from_der(der_bytes).map_err(|e| Error::der("PKCS#8 private key", e))?;
        let bad = |e: pkcs8::Error| Error::der("PKCS#8 private key", e);
        let secret = match info.algorithm.oid {
            ID_EC_PUBLIC_KEY => match info.algorithm.parameters_oid().map_err(|e| Error::der("EC parameters", e))? {
                SECP256R1 => {
                    Secret::P256(P256Secret::new(p256::ecdsa::SigningKey::from_pkcs8_der(der_bytes).map_err(bad)?)?)
                }
                SM2_CURVE => {
                    let sk = ::sm2::SecretKey::from_pkcs8_der(der_bytes).map_err(bad)?;
                    Secret::Sm2(Sm2Secret::new(sk.to_nonzero_scalar(), sm2_util::DEFAULT_DISTID)?)
                }
                other => return Err(Error::UnsupportedAlgorithm { oid: format!("curve {other}") }),
            },
            ED25519 => Secret::Ed25519(ed25519_dalek::SigningKey::from_pkcs8_der(der_bytes).map_err(bad)?),
            other => return Err(Error::UnsupportedAlgorithm { oid: other.to_string() }),
        };
        Self::from_secret(secret)
    }

    /// The plain PKCS#8 DER of the key.
    ///
    /// # Errors
    /// Only if encoding fails.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let doc = match &self.secret {
            Secret::P256(k) => k.key.to_pkcs8_der(),
            Secret::Sm2(k) => ::sm2::SecretKey::from(k.d).to_pkcs8_der(),
            Secret::Ed25519(k) => k.to_pkcs8_der(),
        }
        .map_err(|e| Error::der("PKCS#8 private key", e))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// The PKCS#8 DER encrypted under `passphrase` with PBES2: scrypt (N = 2¹⁴, r = 8, p = 1,
    /// OpenSSL's `-scrypt` defaults, within OpenSSL's default 32 MiB scrypt memory limit) and
    /// AES-256-CBC.
    ///
    /// # Errors
    /// Only if encoding or encryption fails.
    pub fn to_pkcs8_encrypted_der(&self, passphrase: &[u8]) -> Result<Vec<u8>, Error> {
        let plain = self.to_pkcs8_der()?;
        let info = pkcs8::PrivateKeyInfo::from_der(&plain).map_err(|e| Error::der("PKCS#8 private key", e))?;
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut iv);
        let scrypt = pkcs8::pkcs5::scrypt::Params::new(14, 8, 1, 32)
            .map_err(|e| Error::SigningFailed(format!("scrypt parameters: {e}")))?;
        let params = pkcs8::pkcs5::pbes2::Parameters::scrypt_aes256cbc(scrypt, &salt, &iv)
            .map_err(|e| Error::der("PBES2 parameters", e))?;
        let doc = info.encrypt_with_params(params, passphrase).map_err(|e| Error::der("PKCS#8 encryption", e))?;
        Ok(doc.as_bytes().to_vec())
    }

    /// Writes the key to `path` (mode 0600 on Unix), encrypted when `passphrase` is given.
    /// Refuses to overwrite an existing file: a key is never lost by a mistyped path.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists or cannot be written.
    pub fn save(&self, path: &Path, passphrase: Option<&[u8]>, format: KeyFormat) -> Result<(), Error> {
        let (der_bytes, label) = match passphrase {
            Some(p) => (Zeroizing::new(self.to_pkcs8_encrypted_der(p)?), PEM_ENCRYPTED),
            None => (self.to_pkcs8_der()?, PEM_PLAIN),
        };
        let bytes = match format {
            KeyFormat::Der => der_bytes,
            KeyFormat::Pem => Zeroizing::new(
                der::pem::encode_string(label, der::pem::LineEnding::LF, &der_bytes)
                    .map_err(|e| Error::der("PEM", e))?
                    .into_bytes(),
            ),
        };
        write_private_file(path, &bytes)
    }
}

/// Creates `path` exclusively with owner-only permissions and writes `bytes`.
fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| Error::io(path, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| Error::io(path, e))
}

impl fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareKey").field("algorithm", &self.algorithm()).finish_non_exhaustive()
    }
}

impl Signer for SoftwareKey {
    fn algorithm(&self) -> SignatureAlgorithm {
        match self.secret {
            Secret::P256(_) => SignatureAlgorithm::EcdsaP256Sha256,
            Secret::Sm2(_) => SignatureAlgorithm::Sm2Sm3,
            Secret::Ed25519(_) => SignatureAlgorithm::Ed25519,
        }
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        match &self.secret {
            Secret::P256(k) => k.sign(message),
            Secret::Sm2(k) => sm2_util::raw_to_der(&k.sign(message)?),
            Secret::Ed25519(k) => Ok(ed25519_dalek::Signer::sign(k, message).to_bytes().to_vec()),
        }
    }
}

impl SoftwareKey {
    /// Signs the SM2 vector of GM/T 0003.5 annex A with its fixed k (test support only).
    #[cfg(test)]
    fn sm2_sign_with_k(&self, message: &[u8], k: &::sm2::NonZeroScalar) -> Option<[u8; 64]> {
        match &self.secret {
            Secret::Sm2(s) => s.sign_with_k(&s.e(message), k),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::verify_signature;
    use ::sm2::elliptic_curve::ff::PrimeField;

    #[test]
    fn signs_and_verifies_with_every_algorithm() {
        for alg in SignatureAlgorithm::ALL {
            let key = SoftwareKey::generate(alg).unwrap();
            assert_eq!(key.algorithm(), alg);
            let sig = key.sign(b"declaration").unwrap();
            verify_signature(key.public_key_der(), alg.oid(), b"declaration", &sig).unwrap();
            assert!(verify_signature(key.public_key_der(), alg.oid(), b"declaratioN", &sig).is_err());
        }
    }

    #[test]
    fn ring_p256_signatures_verify_with_the_p256_crate_and_signer_lib() {
        use p256::pkcs8::DecodePublicKey as _;
        let generated = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        // A key loaded from PKCS#8 goes through the same ring key pair construction.
        let loaded = SoftwareKey::from_pkcs8_der(&generated.to_pkcs8_der().unwrap(), None).unwrap();
        let verifying_key = p256::ecdsa::VerifyingKey::from_public_key_der(generated.public_key_der()).unwrap();
        for key in [&generated, &loaded] {
            let message = b"tbsResponseData";
            let der_signature = key.sign(message).unwrap();
            // DER Ecdsa-Sig-Value, canonical: the p256 crate parses and re-encodes it identically.
            let parsed = p256::ecdsa::Signature::from_der(&der_signature).unwrap();
            assert_eq!(parsed.to_der().as_bytes(), der_signature.as_slice());
            signature::Verifier::verify(&verifying_key, message, &parsed).unwrap();
            assert!(signature::Verifier::verify(&verifying_key, b"tbsResponseDatA", &parsed).is_err());
            let oid = SignatureAlgorithm::EcdsaP256Sha256.oid();
            verify_signature(key.public_key_der(), oid, message, &der_signature).unwrap();
            assert!(verify_signature(key.public_key_der(), oid, b"tbsResponseDatA", &der_signature).is_err());
            // Randomised nonces: two signatures of one message differ.
            assert_ne!(key.sign(message).unwrap(), der_signature);
        }
    }

    #[test]
    fn round_trips_plain_and_encrypted_pkcs8_in_pem_and_der() {
        let dir = tempfile::tempdir().unwrap();
        for alg in SignatureAlgorithm::ALL {
            let key = SoftwareKey::generate(alg).unwrap();
            for (i, format) in [KeyFormat::Pem, KeyFormat::Der].into_iter().enumerate() {
                let plain = dir.path().join(format!("{}-{i}-plain", alg.name()));
                key.save(&plain, None, format).unwrap();
                assert_eq!(SoftwareKey::load(&plain, None).unwrap().public_key_der(), key.public_key_der());

                let enc = dir.path().join(format!("{}-{i}-enc", alg.name()));
                key.save(&enc, Some(b"correct horse"), format).unwrap();
                assert!(matches!(SoftwareKey::load(&enc, None), Err(Error::PassphraseRequired)));
                assert!(matches!(SoftwareKey::load(&enc, Some(b"wrong")), Err(Error::WrongPassphrase)));
                let back = SoftwareKey::load(&enc, Some(b"correct horse")).unwrap();
                assert_eq!(back.public_key_der(), key.public_key_der());
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn saves_keys_owner_only_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        key.save(&path, None, KeyFormat::Pem).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(key.save(&path, None, KeyFormat::Pem), Err(Error::Io { .. })));
    }

    #[test]
    fn rejects_garbage_and_unsupported_keys() {
        assert!(matches!(SoftwareKey::from_pkcs8_der(b"not a key", None), Err(Error::Malformed { .. })));
        assert!(matches!(
            SoftwareKey::from_pkcs8_pem("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", None),
            Err(Error::Malformed { .. })
        ));
        // A P-384 key: id-ecPublicKey with secp384r1.
        let p384 = "-----BEGIN PRIVATE KEY-----\nMIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDDCw5NqB0q+Cc4ouzZ+\nl5L6Wd8CoG0p5o2FXt8o1aa1ebr1JOUKkFmK1ShXDmcYQ3yhZANiAAQ3wnqF9Rfw\nHJSYT2xDSkfjnSlH4NRDwkCLyR8aNpMnVeHCkQJq0IB6fPnNHdCyTcTbGNUb8Csq\nwvDuNYYVm2jHcGC5Iw47HhRSNP1TvUM7WO8ETr9TmLJ0qBkdwGF4r04=\n-----END PRIVATE KEY-----\n";
        assert!(SoftwareKey::from_pkcs8_pem(p384, None).is_err());
    }

    #[test]
    fn sm2_signing_equation_reproduces_the_annex_a_vector() {
        let d = hex::decode("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8").unwrap();
        let d = ::sm2::NonZeroScalar::try_from(d.as_slice()).unwrap();
        let key = SoftwareKey::from_secret(Secret::Sm2(Sm2Secret::new(d, sm2_util::DEFAULT_DISTID).unwrap())).unwrap();
        let k = hex::decode("59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21").unwrap();
        let k = ::sm2::NonZeroScalar::try_from(k.as_slice()).unwrap();
        let sig = key.sm2_sign_with_k(b"message digest", &k).unwrap();
        assert_eq!(
            hex::encode_upper(sig),
            "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3\
             B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
        );
        let _ = ::sm2::Scalar::from_repr(Default::default());
    }

    #[test]
    fn refuses_the_sm2_key_n_minus_one() {
        let n_minus_1 = -::sm2::Scalar::ONE;
        let d = Option::<::sm2::NonZeroScalar>::from(::sm2::NonZeroScalar::new(n_minus_1)).unwrap();
        assert!(Sm2Secret::new(d, sm2_util::DEFAULT_DISTID).is_err());
    }

    #[test]
    fn sm2_distid_changes_the_signature_domain() {
        let key =
            SoftwareKey::generate(SignatureAlgorithm::Sm2Sm3).unwrap().with_sm2_distid("ALICE123@YAHOO.COM").unwrap();
        assert_eq!(key.sm2_distid(), Some("ALICE123@YAHOO.COM"));
        let sig = key.sign(b"m").unwrap();
        let raw = sm2_util::der_to_raw(&sig, 32).unwrap();
        let spki = spki::SubjectPublicKeyInfoRef::from_der(key.public_key_der()).unwrap();
        let point = spki.subject_public_key.raw_bytes();
        let s = ::sm2::dsa::Signature::from_slice(&raw).unwrap();
        signature::Verifier::verify(&sm2_util::verifying_key(b"ALICE123@YAHOO.COM", point).unwrap(), b"m", &s).unwrap();
        assert!(
            signature::Verifier::verify(
                &sm2_util::verifying_key(sm2_util::DEFAULT_DISTID.as_bytes(), point).unwrap(),
                b"m",
                &s
            )
            .is_err()
        );
    }
}
