//! X.509 certificates made with any [`Signer`] (software key, token or HSM), and reading
//! certificates from PEM or DER.
//!
//! These are the small helpers the tests and the `eport` command-line demo need: a root, an
//! intermediate and end-entity certificates with the fixed profiles of
//! [`x509_cert::builder::Profile`]. The CA proper, with configurable profiles, lives elsewhere.
//! Validity periods start at the moment of the call and last for the given duration.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use der::{Decode, DecodePem, EncodePem};
use rand_core::{OsRng, RngCore};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::key::{BuilderSigner, SignatureBytes, check_matches_certificate};
use crate::{Error, Signer};

/// A self-signed CA certificate (`Profile::Root`: basicConstraints cA, keyUsage keyCertSign and
/// cRLSign, subjectKeyIdentifier) for the key of `signer`, valid from now for `validity`.
///
/// # Errors
/// [`Error::Malformed`] for a subject that is not an RFC 4514 name or a validity that ends
/// outside what X.509 can express; the signer's error when signing fails.
pub fn self_signed_ca(signer: &dyn Signer, subject: &str, validity: Duration) -> Result<Certificate, Error> {
    let spki = spki_of(signer.public_key_der())?;
    build(signer, Profile::Root, subject, spki, validity)
}

/// A CA certificate for the key `subject_spki_der` (DER SubjectPublicKeyInfo), issued by
/// `issuer` whose key is `issuer_signer` (`Profile::SubCA`: basicConstraints cA with the
/// optional `path_len_constraint`, keyUsage keyCertSign and cRLSign, SKI and AKI).
///
/// # Errors
/// [`Error::KeyCertificateMismatch`] when `issuer_signer` is not the key of `issuer`;
/// otherwise as [`self_signed_ca`].
pub fn issue_intermediate(
    issuer_signer: &dyn Signer,
    issuer: &Certificate,
    subject: &str,
    subject_spki_der: &[u8],
    validity: Duration,
    path_len_constraint: Option<u8>,
) -> Result<Certificate, Error> {
    check_matches_certificate(issuer_signer, issuer)?;
    let profile = Profile::SubCA { issuer: issuer.tbs_certificate.subject.clone(), path_len_constraint };
    build(issuer_signer, profile, subject, spki_of(subject_spki_der)?, validity)
}

/// An end-entity signing certificate for the key `subject_spki_der` (DER
/// SubjectPublicKeyInfo), issued by `issuer` whose key is `issuer_signer` (`Profile::Leaf`:
/// basicConstraints cA = FALSE, keyUsage digitalSignature and nonRepudiation, SKI and AKI).
///
/// # Errors
/// [`Error::KeyCertificateMismatch`] when `issuer_signer` is not the key of `issuer`;
/// otherwise as [`self_signed_ca`].
pub fn issue_end_entity(
    issuer_signer: &dyn Signer,
    issuer: &Certificate,
    subject: &str,
    subject_spki_der: &[u8],
    validity: Duration,
) -> Result<Certificate, Error> {
    check_matches_certificate(issuer_signer, issuer)?;
    let profile = leaf_profile(issuer.tbs_certificate.subject.clone());
    build(issuer_signer, profile, subject, spki_of(subject_spki_der)?, validity)
}

/// A self-signed end-entity certificate (the profile of [`issue_end_entity`], issuer = subject)
/// for the key of `signer`: enough to carry a public key in a CMS signature without a CA.
///
/// # Errors
/// As [`self_signed_ca`].
pub fn self_signed_end_entity(signer: &dyn Signer, subject: &str, validity: Duration) -> Result<Certificate, Error> {
    let spki = spki_of(signer.public_key_der())?;
    let name = crate::csr::parse_name(subject)?;
    build(signer, leaf_profile(name), subject, spki, validity)
}

/// Parses one certificate from PEM (`-----BEGIN CERTIFICATE-----`) or DER.
///
/// # Errors
/// [`Error::Malformed`] when the bytes are neither.
pub fn parse(bytes: &[u8]) -> Result<Certificate, Error> {
    match pem_text(bytes) {
        Some(text) => Certificate::from_pem(text).map_err(|e| Error::der("PEM certificate", e)),
        None => Certificate::from_der(bytes).map_err(|e| Error::der("DER certificate", e)),
    }
}

/// Parses a bundle of PEM certificates (any number, in order), or a concatenation of DER
/// certificates.
///
/// # Errors
/// [`Error::Malformed`] when any certificate in the bundle does not parse, or the bundle holds
/// no certificate at all.
pub fn parse_chain(bytes: &[u8]) -> Result<Vec<Certificate>, Error> {
    let certs = match pem_text(bytes) {
        // `load_pem_chain` underflows on empty input; `pem_text` only returns non-empty text.
        Some(text) => Certificate::load_pem_chain(text).map_err(|e| Error::der("PEM certificate bundle", e))?,
        None => {
            let mut reader = der::SliceReader::new(bytes).map_err(|e| Error::der("DER certificates", e))?;
            let mut certs = Vec::new();
            while !der::Reader::is_finished(&reader) {
                certs.push(Certificate::decode(&mut reader).map_err(|e| Error::der("DER certificates", e))?);
            }
            certs
        }
    };
    if certs.is_empty() {
        return Err(Error::Malformed { what: "certificate bundle", reason: "no certificate found".into() });
    }
    Ok(certs)
}

/// PEM (`CERTIFICATE`) of a certificate, with LF line endings.
///
/// # Errors
/// [`Error::Malformed`] when the certificate cannot be encoded (only for a structure built by
/// hand with invalid values).
pub fn to_pem(certificate: &Certificate) -> Result<String, Error> {
    certificate.to_pem(der::pem::LineEnding::LF).map_err(|e| Error::der("certificate", e))
}

/// The PEM text in `bytes` (trimmed), or `None` when the bytes are not PEM (hence DER).
fn pem_text(bytes: &[u8]) -> Option<&[u8]> {
    let text = bytes.trim_ascii();
    text.starts_with(b"-----BEGIN ").then_some(text)
}

fn spki_of(der_bytes: &[u8]) -> Result<SubjectPublicKeyInfoOwned, Error> {
    SubjectPublicKeyInfoOwned::from_der(der_bytes).map_err(|e| Error::der("subject public key", e))
}

fn leaf_profile(issuer: Name) -> Profile {
    Profile::Leaf { issuer, enable_key_agreement: false, enable_key_encipherment: false }
}

fn build(
    signer: &dyn Signer,
    profile: Profile,
    subject: &str,
    spki: SubjectPublicKeyInfoOwned,
    validity: Duration,
) -> Result<Certificate, Error> {
    let subject = Name::from_str(subject).map_err(|e| Error::der("subject name", e))?;
    let validity = validity_from(SystemTime::now(), validity)?;
    let adapter = BuilderSigner(signer);
    let builder = CertificateBuilder::new(profile, random_serial()?, validity, subject, spki, &adapter)
        .map_err(|e| Error::der("certificate", e))?;
    builder.build::<SignatureBytes>().map_err(|e| match e {
        x509_cert::builder::Error::Signature(s) => Error::SigningFailed(s.to_string()),
        other => Error::der("certificate", other),
    })
}

/// `[not_before, not_before + validity]`, refusing a period X.509 cannot express (the builder
/// turns GeneralizedTime into UTCTime up to 2049, as RFC 5280 §4.1.2.5 asks).
fn validity_from(not_before: SystemTime, validity: Duration) -> Result<Validity, Error> {
    let out_of_range = || Error::Malformed { what: "validity", reason: format!("{validity:?} from now is too far") };
    let not_after = not_before.checked_add(validity).ok_or_else(out_of_range)?;
    Ok(Validity {
        not_before: Time::try_from(not_before).map_err(|e| Error::der("validity", e))?,
        not_after: Time::try_from(not_after).map_err(|_| out_of_range())?,
    })
}

/// 16 bytes from the operating system's CSPRNG with the top bit cleared (a positive INTEGER,
/// R45) and the next bit set, so the serial is never zero and always encodes in 16 octets;
/// that leaves 126 random bits (≥ 64 as CA/B BR 7.1 asks).
fn random_serial() -> Result<SerialNumber, Error> {
    let mut bytes = [0u8; 16];
    OsRng.try_fill_bytes(&mut bytes).map_err(|e| Error::SigningFailed(format!("no randomness for a serial: {e}")))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::new(&bytes).map_err(|e| Error::der("serial number", e))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use der::Encode;
    use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};

    use super::*;
    use crate::SignatureAlgorithm;
    use crate::key::software::SoftwareKey;
    use crate::verify::verify_signature;

    const DAY: Duration = Duration::from_secs(86_400);

    fn check_signed_by(cert: &Certificate, issuer: &Certificate) {
        let tbs = cert.tbs_certificate.to_der().unwrap();
        let spki = issuer.tbs_certificate.subject_public_key_info.to_der().unwrap();
        verify_signature(&spki, cert.signature_algorithm.oid, &tbs, cert.signature.raw_bytes()).unwrap();
        assert_eq!(cert.tbs_certificate.issuer, issuer.tbs_certificate.subject);
    }

    fn extension<T: der::DecodeOwned + const_oid::AssociatedOid>(cert: &Certificate) -> Option<T> {
        cert.tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| e.extn_id == T::OID)
            .map(|e| T::from_der(e.extn_value.as_bytes()).unwrap())
    }

    #[test]
    fn builds_a_root_intermediate_leaf_chain_for_every_algorithm() {
        for alg in SignatureAlgorithm::ALL {
            let root_key = SoftwareKey::generate(alg).unwrap();
            let inter_key = SoftwareKey::generate(alg).unwrap();
            let leaf_key = SoftwareKey::generate(alg).unwrap();
            let root = self_signed_ca(&root_key, "CN=Test Root,O=Example,C=CN", 10 * DAY).unwrap();
            let inter = issue_intermediate(
                &root_key,
                &root,
                "CN=Test Intermediate,O=Example,C=CN",
                inter_key.public_key_der(),
                5 * DAY,
                Some(0),
            )
            .unwrap();
            let leaf =
                issue_end_entity(&inter_key, &inter, "CN=Zhang San,O=Example,C=CN", leaf_key.public_key_der(), DAY)
                    .unwrap();

            check_signed_by(&root, &root);
            check_signed_by(&inter, &root);
            check_signed_by(&leaf, &inter);
            assert_eq!(root.signature_algorithm.oid, alg.oid());

            let bc: BasicConstraints = extension(&inter).unwrap();
            assert!(bc.ca);
            assert_eq!(bc.path_len_constraint, Some(0));
            let bc: BasicConstraints = extension(&leaf).unwrap();
            assert!(!bc.ca);
            let ku: KeyUsage = extension(&leaf).unwrap();
            assert_eq!(ku.0, KeyUsages::DigitalSignature | KeyUsages::NonRepudiation);
            check_matches_certificate(&leaf_key, &leaf).unwrap();
        }
    }

    #[test]
    fn refuses_an_issuer_key_that_is_not_the_issuer_certificates() {
        let root_key = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        let other = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        let root = self_signed_ca(&root_key, "CN=Root", DAY).unwrap();
        let err = issue_end_entity(&other, &root, "CN=Leaf", other.public_key_der(), DAY).unwrap_err();
        assert!(matches!(err, Error::KeyCertificateMismatch { .. }), "{err}");
    }

    #[test]
    fn serials_are_positive_sixteen_octets_and_distinct() {
        let a = random_serial().unwrap();
        let b = random_serial().unwrap();
        assert_eq!(a.as_bytes().len(), 16);
        assert!(a.as_bytes()[0] & 0x80 == 0 && a.as_bytes()[0] != 0);
        assert_ne!(a, b);
    }

    #[test]
    fn self_signed_end_entity_is_its_own_issuer() {
        let key = SoftwareKey::generate(SignatureAlgorithm::Ed25519).unwrap();
        let cert = self_signed_end_entity(&key, "CN=Li Si,C=CN", DAY).unwrap();
        check_signed_by(&cert, &cert);
        let bc: BasicConstraints = extension(&cert).unwrap();
        assert!(!bc.ca);
    }

    #[test]
    fn parses_pem_der_and_bundles() {
        let key = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        let a = self_signed_ca(&key, "CN=A", DAY).unwrap();
        let b = self_signed_ca(&key, "CN=B", DAY).unwrap();
        let pem_a = to_pem(&a).unwrap();
        assert_eq!(parse(pem_a.as_bytes()).unwrap(), a);
        assert_eq!(parse(&a.to_der().unwrap()).unwrap(), a);
        let bundle = format!("\n{pem_a}{}\n\n", to_pem(&b).unwrap());
        assert_eq!(parse_chain(bundle.as_bytes()).unwrap(), vec![a.clone(), b.clone()]);
        let mut ders = a.to_der().unwrap();
        ders.extend(b.to_der().unwrap());
        assert_eq!(parse_chain(&ders).unwrap(), vec![a, b]);
    }

    #[test]
    fn rejects_garbage_and_empty_input() {
        assert!(matches!(parse(b""), Err(Error::Malformed { .. })));
        assert!(matches!(parse(b"\x30\x03\x02\x01\x01"), Err(Error::Malformed { .. })));
        assert!(matches!(
            parse(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----"),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(parse_chain(b""), Err(Error::Malformed { .. })));
        assert!(matches!(parse_chain(b"  \n"), Err(Error::Malformed { .. })));
        assert!(matches!(parse_chain(b"-----BEGIN CERTIFICATE-----\n"), Err(Error::Malformed { .. })));
    }

    #[test]
    fn refuses_a_validity_beyond_what_x509_expresses() {
        let key = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        let err = self_signed_ca(&key, "CN=Forever", Duration::from_secs(u64::MAX)).unwrap_err();
        assert!(matches!(err, Error::Malformed { what: "validity", .. }), "{err}");
    }
}
