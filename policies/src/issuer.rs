//! Issuing a certificate from a profile, with pre-issuance linting.
//!
//! [`issue`] does what Boulder does (letsencrypt/boulder PR #4378): it builds the
//! TBSCertificate, signs it with a **throwaway** software key of the issuer's algorithm (one
//! per algorithm, kept for the life of the process: see `lint_key`), lints the result
//! ([`crate::lint()`]), and only when the linter finds no error builds the TBSCertificate
//! again, checks it is byte-for-byte the one that was linted, and has the real issuing key
//! sign it. A certificate the linter refuses is never signed by the issuing key. The
//! signature is then verified under the issuer's public key, which catches a faulty device or
//! a key that is not the issuer's.
//!
//! The TBSCertificate is assembled here directly rather than through
//! `x509_cert::builder::CertificateBuilder`: exact control over every extension and its
//! criticality needs the builder's `Profile::Manual`, behind x509-cert's `hazmat` feature,
//! and turning that feature on for the workspace changes `Profile::Leaf` (it gains a field),
//! which breaks other crates that build with `Profile::Leaf`. What the builder would add —
//! version 3, RFC 5280 time encoding, no unique identifiers — is done here the same way.

use std::sync::OnceLock;
use std::time::Duration;

use der::asn1::{BitString, GeneralizedTime, UtcTime};
use der::{Decode, Encode};
use signer_lib::algorithm::KeyType;
use signer_lib::key::software::SoftwareKey;
use signer_lib::{SignatureAlgorithm, Signer};
use spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::lint::{Finding, lint};
use crate::profile::{KeyAlgorithm, Presence, Profile};
use crate::subject::SubjectData;
use crate::{Error, extension};

/// The first year RFC 5280 §4.1.2.5 writes as GeneralizedTime; earlier years are UTCTime.
pub const FIRST_GENERALIZED_TIME_YEAR: u16 = 2050;

/// Everything the CA has decided about a certificate before it is built.
#[derive(Clone, Debug)]
pub struct IssueRequest<'a> {
    /// The profile it is issued under.
    pub profile: &'a Profile,
    /// The subject, of the profile's subject kind.
    pub subject: SubjectData,
    /// The subject's public key, a DER SubjectPublicKeyInfo (from the checked CSR).
    pub subject_spki_der: Vec<u8>,
    /// notBefore. Sub-second parts are dropped (X.509 times have whole seconds).
    pub not_before: OffsetDateTime,
    /// notAfter, inclusive (RFC 5280 §4.1.2.5).
    pub not_after: OffsetDateTime,
    /// The serial number, normally [`crate::random_serial`]; the caller records it and
    /// refuses a repeat.
    pub serial: SerialNumber,
    /// The URLs for authorityInfoAccess and cRLDistributionPoints; those the profile does not
    /// include are ignored.
    pub urls: IssuerUrls,
}

/// Where relying parties find the issuer's certificate and the subject's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IssuerUrls {
    /// The OCSP responder (authorityInfoAccess id-ad-ocsp), `http://...`.
    pub ocsp: Option<String>,
    /// The issuer's certificate (authorityInfoAccess id-ad-caIssuers), `http://...`.
    pub ca_issuers: Option<String>,
    /// The CRL (cRLDistributionPoints), `http://...`.
    pub crl: Option<String>,
}

/// Builds the TBSCertificate for `request`, to be signed with `signature_algorithm` by the
/// key of `issuer` (`None`: self-signed, the profile must be a self-signed one).
///
/// Building is deterministic: the same inputs give the same DER, which [`issue`] relies on.
///
/// # Errors
/// [`Error::IssuerMismatch`], [`Error::SubjectKindMismatch`], [`Error::InvalidUscc`],
/// [`Error::InvalidSubject`], [`Error::KeyAlgorithmNotAllowed`], [`Error::InvalidValidity`],
/// [`Error::Urls`] when the request does not fit the profile; [`Error::Der`] when something
/// does not encode.
pub fn build_tbs(
    request: &IssueRequest<'_>,
    issuer: Option<&Certificate>,
    signature_algorithm: SignatureAlgorithm,
) -> Result<TbsCertificate, Error> {
    let profile = request.profile;
    match (profile.self_signed, issuer) {
        (true, Some(_)) => return Err(issuer_mismatch(profile, "is self-signed, but an issuer certificate was given")),
        (false, None) => return Err(issuer_mismatch(profile, "needs an issuer certificate")),
        _ => {}
    }
    if request.subject.kind() != profile.subject.kind {
        return Err(Error::SubjectKindMismatch {
            profile: profile.id.clone(),
            expected: profile.subject.kind.name(),
            found: request.subject.kind().name(),
        });
    }
    request.subject.validate()?;
    check_dns_names(profile, &request.subject)?;
    check_urls(profile, &request.urls)?;

    let spki = SubjectPublicKeyInfoOwned::from_der(&request.subject_spki_der)
        .map_err(|e| Error::der("subject public key", e))?;
    check_key_algorithm(profile, &request.subject_spki_der)?;

    if request.not_after < request.not_before {
        return Err(Error::InvalidValidity(format!(
            "notAfter {} is before notBefore {}",
            request.not_after, request.not_before
        )));
    }
    let validity = Validity { not_before: x509_time(request.not_before)?, not_after: x509_time(request.not_after)? };

    let subject = request.subject.to_name()?;
    let issuer_name = issuer.map_or_else(|| subject.clone(), |c| c.tbs_certificate.subject.clone());
    let extensions = extension::for_request(request, &spki, issuer)?;

    Ok(TbsCertificate {
        version: Version::V3,
        serial_number: request.serial.clone(),
        signature: signature_algorithm.identifier(),
        issuer: issuer_name,
        validity,
        subject,
        subject_public_key_info: spki,
        // RFC 5280 §4.1.2.8: conforming CAs MUST NOT generate unique identifiers.
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    })
}

/// Issues a certificate: builds it, lints it signed by a throwaway key, and only if the
/// linter finds no error has `issuer_signer` sign it (see the module documentation).
/// `issuer` is the issuing CA's certificate, `None` for a self-signed root (then
/// `issuer_signer` must be the key of `request.subject_spki_der`). `now` is the time the
/// linter checks notBefore against. Lint warnings are dropped; see [`issue_with_warnings`].
///
/// # Errors
/// As [`build_tbs`]; [`Error::Signer`] when `issuer_signer` is not the key of `issuer` or a
/// signer fails; [`Error::Lint`] with the findings when the linter finds an error (nothing
/// signed); [`Error::TbsChanged`]; [`Error::BadIssuerSignature`].
pub fn issue(
    issuer: Option<&Certificate>,
    issuer_signer: &dyn Signer,
    request: &IssueRequest<'_>,
    now: OffsetDateTime,
) -> Result<Certificate, Error> {
    issue_with_warnings(issuer, issuer_signer, request, now).map(|(certificate, _)| certificate)
}

/// [`issue`], also returning the linter's warnings (for the audit record).
///
/// # Errors
/// As [`issue`].
pub fn issue_with_warnings(
    issuer: Option<&Certificate>,
    issuer_signer: &dyn Signer,
    request: &IssueRequest<'_>,
    now: OffsetDateTime,
) -> Result<(Certificate, Vec<Finding>), Error> {
    let issuer_spki_der = match issuer {
        Some(cert) => {
            signer_lib::key::check_matches_certificate(issuer_signer, cert)?;
            cert.tbs_certificate.subject_public_key_info.to_der().map_err(|e| Error::der("issuer public key", e))?
        }
        None => {
            if !same_key(issuer_signer.public_key_der(), &request.subject_spki_der)? {
                return Err(issuer_mismatch(request.profile, "a self-signed certificate must be for the signing key"));
            }
            request.subject_spki_der.clone()
        }
    };
    let algorithm = issuer_signer.algorithm();

    // Pre-issuance linting: the same TBSCertificate, signed by a key nobody trusts.
    let linted = build_tbs(request, issuer, algorithm)?;
    let linted_der = linted.to_der().map_err(|e| Error::der("TBSCertificate", e))?;
    let precertificate = sign(linted, &linted_der, lint_key(algorithm)?)?;
    let findings = lint(&precertificate, request.profile, issuer, now);
    if findings.iter().any(Finding::is_error) {
        return Err(Error::Lint(findings));
    }

    // Build again for the real key; it must be exactly what the linter saw.
    let tbs = build_tbs(request, issuer, algorithm)?;
    let tbs_der = tbs.to_der().map_err(|e| Error::der("TBSCertificate", e))?;
    if tbs_der != linted_der {
        return Err(Error::TbsChanged);
    }
    let certificate = sign(tbs, &tbs_der, issuer_signer)?;
    signer_lib::verify::verify_signature(
        &issuer_spki_der,
        certificate.signature_algorithm.oid,
        &tbs_der,
        certificate.signature.raw_bytes(),
    )
    .map_err(|e| Error::BadIssuerSignature(e.to_string()))?;
    Ok((certificate, findings))
}

/// The throwaway key that signs what the linter checks: one software key per algorithm for the
/// life of the process, generated at first use.
///
/// Its only purpose is that the certificate is first signed by a key that is not the issuer's
/// (see the module documentation); what it signs is linted and dropped, and nothing trusts its
/// public key, so one key serves every issuance, as Boulder keeps one lint signer per issuer.
/// A fresh key per certificate cost a P-256 key generation in the pure-Rust `p256` crate on every
/// issuance (about a tenth of the CA's CPU per enrolment); the signatures themselves go through
/// [`SoftwareKey`], which signs P-256 with ring. It stays a software key, zeroised on drop like
/// every [`SoftwareKey`]; being held in a static it is dropped only with the process, which is
/// acceptable for a key that certifies nothing.
///
/// # Errors
/// As [`SoftwareKey::generate`].
fn lint_key(algorithm: SignatureAlgorithm) -> Result<&'static SoftwareKey, Error> {
    const N: usize = SignatureAlgorithm::ALL.len();
    static KEYS: [OnceLock<SoftwareKey>; N] = [const { OnceLock::new() }; N];
    // Every algorithm is in ALL; one that is not would have no key to sign with.
    let slot = SignatureAlgorithm::ALL
        .iter()
        .position(|&a| a == algorithm)
        .and_then(|i| KEYS.get(i))
        .ok_or_else(|| signer_lib::Error::UnsupportedAlgorithm { oid: algorithm.to_string() })?;
    if let Some(key) = slot.get() {
        return Ok(key);
    }
    // Threads that get here at once each generate one; the first stored is kept for good and
    // the others are dropped (and zeroised) at once.
    let key = SoftwareKey::generate(algorithm)?;
    Ok(slot.get_or_init(|| key))
}

/// Signs DER `tbs_der` (the encoding of `tbs`) and assembles the certificate.
fn sign(tbs: TbsCertificate, tbs_der: &[u8], signer: &dyn Signer) -> Result<Certificate, Error> {
    let signature = signer.sign(tbs_der)?;
    let signature = BitString::from_bytes(&signature).map_err(|e| Error::der("signature", e))?;
    Ok(Certificate { signature_algorithm: tbs.signature.clone(), tbs_certificate: tbs, signature })
}

/// An X.509 time: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5).
///
/// # Errors
/// [`Error::InvalidValidity`] for a time before 1970 or after 9999.
pub fn x509_time(t: OffsetDateTime) -> Result<Time, Error> {
    let secs = u64::try_from(t.unix_timestamp())
        .map_err(|_| Error::InvalidValidity(format!("{t} is before 1970, which X.509 times here cannot express")))?;
    let date = der::DateTime::from_unix_duration(Duration::from_secs(secs))
        .map_err(|e| Error::InvalidValidity(format!("{t}: {e}")))?;
    if date.year() < FIRST_GENERALIZED_TIME_YEAR {
        UtcTime::from_date_time(date).map(Time::UtcTime)
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(date)))
    }
    .map_err(|e| Error::InvalidValidity(format!("{t}: {e}")))
}

/// An X.509 time as an [`OffsetDateTime`].
#[must_use]
pub fn offset_date_time(t: Time) -> Option<OffsetDateTime> {
    let secs = i64::try_from(t.to_unix_duration().as_secs()).ok()?;
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

fn issuer_mismatch(profile: &Profile, what: &str) -> Error {
    Error::IssuerMismatch { profile: profile.id.clone(), reason: format!("the profile {what}") }
}

/// Whether two DER SubjectPublicKeyInfos hold the same key (algorithm, curve, key bits).
fn same_key(a: &[u8], b: &[u8]) -> Result<bool, Error> {
    let a = SubjectPublicKeyInfoRef::from_der(a).map_err(|e| Error::der("public key", e))?;
    let b = SubjectPublicKeyInfoRef::from_der(b).map_err(|e| Error::der("public key", e))?;
    Ok(a.algorithm.oid == b.algorithm.oid
        && a.algorithm.parameters_oid().ok() == b.algorithm.parameters_oid().ok()
        && a.subject_public_key == b.subject_public_key)
}

fn check_key_algorithm(profile: &Profile, spki_der: &[u8]) -> Result<(), Error> {
    let not_allowed = |algorithm: String| Error::KeyAlgorithmNotAllowed { profile: profile.id.clone(), algorithm };
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|e| Error::der("subject public key", e))?;
    let key_type = KeyType::of_spki(&spki).map_err(|e| not_allowed(e.to_string()))?;
    match KeyAlgorithm::of_key_type(key_type) {
        Some(algorithm) if profile.allows(algorithm) => Ok(()),
        Some(algorithm) => Err(not_allowed(algorithm.to_string())),
        None => Err(not_allowed(format!("{key_type:?}"))),
    }
}

fn check_dns_names(profile: &Profile, subject: &SubjectData) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidSubject { field: "dns_names", reason };
    let names = subject.dns_names();
    match profile.subject.dns_names {
        Presence::Required if names.is_empty() => {
            Err(invalid(format!("profile {} requires at least one DNS name", profile.id)))
        }
        Presence::Forbidden if !names.is_empty() => Err(invalid(format!("profile {} takes no DNS names", profile.id))),
        Presence::Required => {
            if let SubjectData::Platform { common_name, dns_names } = subject
                && !dns_names.contains(common_name)
            {
                return Err(Error::InvalidSubject {
                    field: "common_name",
                    reason: format!("{common_name:?} must be one of the DNS names"),
                });
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_urls(profile: &Profile, urls: &IssuerUrls) -> Result<(), Error> {
    let problem = |reason: String| Error::Urls { profile: profile.id.clone(), reason };
    let mut used = Vec::new();
    if profile.authority_info_access {
        if urls.ocsp.is_none() && urls.ca_issuers.is_none() {
            return Err(problem("authorityInfoAccess needs an OCSP or a CA issuers URL".into()));
        }
        used.extend(urls.ocsp.iter().chain(&urls.ca_issuers));
    }
    if profile.crl_distribution_point {
        let crl = urls.crl.as_ref().ok_or_else(|| problem("cRLDistributionPoints needs a CRL URL".into()))?;
        used.push(crl);
    }
    for url in used {
        check_url(url).map_err(problem)?;
    }
    Ok(())
}

/// A URL for AIA or CRL DP: `http://` (RFC 5280 §4.2.1.13 and RFC 6960 use HTTP; https
/// would need the status of the server's own certificate first), printable ASCII, no spaces.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!("{url:?} is not an http:// URL"));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("{url:?} has spaces or characters outside printable ASCII"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::testing::{Hierarchy, now, request};

    /// A signer that counts its signatures.
    #[derive(Debug)]
    struct Counting<'a> {
        inner: &'a dyn Signer,
        count: AtomicUsize,
    }

    impl Signer for Counting<'_> {
        fn algorithm(&self) -> SignatureAlgorithm {
            self.inner.algorithm()
        }
        fn public_key_der(&self) -> &[u8] {
            self.inner.public_key_der()
        }
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, signer_lib::Error> {
            self.count.fetch_add(1, Ordering::SeqCst);
            self.inner.sign(message)
        }
    }

    fn key(algorithm: SignatureAlgorithm) -> SoftwareKey {
        SoftwareKey::generate(algorithm).unwrap()
    }

    #[test]
    fn never_signs_with_the_issuing_key_when_the_linter_refuses() {
        let h = Hierarchy::new(SignatureAlgorithm::EcdsaP256Sha256);
        let profile = Profile::by_id("tls-server").unwrap();
        let subject_key = key(SignatureAlgorithm::EcdsaP256Sha256);
        let mut req = request(&profile, subject_key.public_key_der());
        req.not_after = req.not_before + time::Duration::days(400); // profile allows 398
        let signer = Counting { inner: &h.ca_key, count: AtomicUsize::new(0) };
        let err = issue(Some(&h.ca), &signer, &req, now()).unwrap_err();
        let Error::Lint(findings) = err else { panic!("expected Error::Lint, got {err}") };
        assert!(findings.iter().any(|f| f.id == "e_validity_too_long"), "{findings:?}");
        assert_eq!(signer.count.load(Ordering::SeqCst), 0, "the issuing key signed");

        let req = request(&profile, subject_key.public_key_der());
        issue(Some(&h.ca), &signer, &req, now()).unwrap();
        assert_eq!(signer.count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn refuses_a_backdated_certificate() {
        let h = Hierarchy::new(SignatureAlgorithm::EcdsaP256Sha256);
        let profile = Profile::by_id("officer").unwrap();
        let subject_key = key(SignatureAlgorithm::EcdsaP256Sha256);
        let mut req = request(&profile, subject_key.public_key_der());
        req.not_before -= time::Duration::hours(1);
        req.not_after -= time::Duration::hours(1);
        let err = issue(Some(&h.ca), &h.ca_key, &req, now()).unwrap_err();
        assert!(err.to_string().contains("e_validity_backdated"), "{err}");
    }

    #[test]
    fn refuses_an_issuing_key_that_is_not_the_issuers() {
        let h = Hierarchy::new(SignatureAlgorithm::EcdsaP256Sha256);
        let profile = Profile::by_id("officer").unwrap();
        let subject_key = key(SignatureAlgorithm::EcdsaP256Sha256);
        let req = request(&profile, subject_key.public_key_der());
        let err = issue(Some(&h.ca), &h.root_key, &req, now()).unwrap_err();
        assert!(matches!(err, Error::Signer(signer_lib::Error::KeyCertificateMismatch { .. })), "{err}");
    }

    #[test]
    fn refuses_a_self_signed_root_for_another_key() {
        let profile = Profile::by_id("root-ca").unwrap();
        let (a, b) = (key(SignatureAlgorithm::Sm2Sm3), key(SignatureAlgorithm::Sm2Sm3));
        let err = issue(None, &a, &request(&profile, b.public_key_der()), now()).unwrap_err();
        assert!(matches!(err, Error::IssuerMismatch { .. }), "{err}");
    }

    #[test]
    fn refuses_a_root_profile_with_an_issuer_and_a_leaf_profile_without() {
        let h = Hierarchy::new(SignatureAlgorithm::EcdsaP256Sha256);
        let root_profile = Profile::by_id("root-ca").unwrap();
        let k = key(SignatureAlgorithm::EcdsaP256Sha256);
        let err =
            build_tbs(&request(&root_profile, k.public_key_der()), Some(&h.root), SignatureAlgorithm::EcdsaP256Sha256);
        assert!(matches!(err, Err(Error::IssuerMismatch { .. })));
        let leaf_profile = Profile::by_id("agency").unwrap();
        let err = build_tbs(&request(&leaf_profile, k.public_key_der()), None, SignatureAlgorithm::EcdsaP256Sha256);
        assert!(matches!(err, Err(Error::IssuerMismatch { .. })));
    }

    #[test]
    fn refuses_subject_data_of_the_wrong_kind_or_with_a_bad_uscc() {
        let h = Hierarchy::new(SignatureAlgorithm::EcdsaP256Sha256);
        let profile = Profile::by_id("enterprise-operator").unwrap();
        let k = key(SignatureAlgorithm::EcdsaP256Sha256);
        let mut req = request(&profile, k.public_key_der());
        req.subject = SubjectData::Agency { agency_code: "CUSTOMS-3501".into(), name: "海关".into() };
        let err = issue(Some(&h.ca), &h.ca_key, &req, now()).unwrap_err();
        assert!(matches!(err, Error::SubjectKindMismatch { .. }), "{err}");
        req.subject = SubjectData::Enterprise {
            uscc: "91350100M000100Y44".into(),
            name: "某公司".into(),
            person_name: "张三".into(),
        };
        let err = issue(Some(&h.ca), &h.ca_key, &req, now()).unwrap_err();
        assert!(matches!(err, Error::InvalidUscc { .. }), "{err}");
    }

    #[test]
    fn refuses_a_key_algorithm_the_profile_does_not_allow() {
        let h = Hierarchy::new(SignatureAlgorithm::EcdsaP256Sha256);
        let profile = Profile::by_id("tls-client").unwrap();
        let k = key(SignatureAlgorithm::Ed25519);
        let err = issue(Some(&h.ca), &h.ca_key, &request(&profile, k.public_key_der()), now()).unwrap_err();
        assert!(matches!(err, Error::KeyAlgorithmNotAllowed { .. }), "{err}");
    }

    #[test]
    fn refuses_missing_urls_and_a_tls_server_without_dns_names() {
        let h = Hierarchy::new(SignatureAlgorithm::EcdsaP256Sha256);
        let profile = Profile::by_id("tls-server").unwrap();
        let k = key(SignatureAlgorithm::EcdsaP256Sha256);
        let mut req = request(&profile, k.public_key_der());
        req.urls.crl = None;
        assert!(matches!(issue(Some(&h.ca), &h.ca_key, &req, now()), Err(Error::Urls { .. })));
        let mut req = request(&profile, k.public_key_der());
        req.urls.ocsp = Some("https://ocsp.example/".into());
        assert!(matches!(issue(Some(&h.ca), &h.ca_key, &req, now()), Err(Error::Urls { .. })));
        let mut req = request(&profile, k.public_key_der());
        req.subject = SubjectData::Platform { common_name: "a.example".into(), dns_names: vec![] };
        assert!(matches!(issue(Some(&h.ca), &h.ca_key, &req, now()), Err(Error::InvalidSubject { .. })));
    }

    #[test]
    fn keeps_one_lint_key_per_algorithm() {
        for algorithm in SignatureAlgorithm::ALL {
            let key = lint_key(algorithm).unwrap();
            assert_eq!(key.algorithm(), algorithm);
            assert!(std::ptr::eq(key, lint_key(algorithm).unwrap()), "{algorithm}: a second key");
        }
    }

    #[test]
    fn builds_the_same_tbs_twice() {
        let h = Hierarchy::new(SignatureAlgorithm::Sm2Sm3);
        let profile = Profile::by_id("enterprise-legal-rep").unwrap();
        let k = key(SignatureAlgorithm::Sm2Sm3);
        let req = request(&profile, k.public_key_der());
        let a = build_tbs(&req, Some(&h.ca), SignatureAlgorithm::Sm2Sm3).unwrap().to_der().unwrap();
        let b = build_tbs(&req, Some(&h.ca), SignatureAlgorithm::Sm2Sm3).unwrap().to_der().unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn issued_certificates_verify_under_the_issuer_key() {
        for algorithm in [SignatureAlgorithm::EcdsaP256Sha256, SignatureAlgorithm::Sm2Sm3] {
            let h = Hierarchy::new(algorithm);
            for (cert, issuer) in [(&h.root, &h.root), (&h.ca, &h.root)] {
                let tbs = cert.tbs_certificate.to_der().unwrap();
                let spki = issuer.tbs_certificate.subject_public_key_info.to_der().unwrap();
                signer_lib::verify::verify_signature(
                    &spki,
                    cert.signature_algorithm.oid,
                    &tbs,
                    cert.signature.raw_bytes(),
                )
                .unwrap();
            }
        }
    }

    #[test]
    fn writes_utc_time_before_2050_and_generalized_time_after() {
        let t = OffsetDateTime::from_unix_timestamp(2_524_607_999).unwrap(); // 2049-12-31T23:59:59Z
        assert!(matches!(x509_time(t).unwrap(), Time::UtcTime(_)));
        let t = OffsetDateTime::from_unix_timestamp(2_524_608_000).unwrap(); // 2050-01-01T00:00:00Z
        assert!(matches!(x509_time(t).unwrap(), Time::GeneralTime(_)));
        assert!(x509_time(OffsetDateTime::from_unix_timestamp(-1).unwrap()).is_err());
    }

    #[test]
    fn round_trips_times() {
        let t = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        assert_eq!(offset_date_time(x509_time(t).unwrap()), Some(t));
    }

    #[test]
    fn accepts_only_http_urls() {
        assert!(check_url("http://ocsp.eport.example/").is_ok());
        assert!(check_url("https://ocsp.eport.example/").is_err());
        assert!(check_url("ldap://ldap.example/cn=crl").is_err());
        assert!(check_url("http://").is_err());
        assert!(check_url("http://a b/").is_err());
    }
}
