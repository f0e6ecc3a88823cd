//! The certificate linter: checks a certificate against its profile, RFC 5280, CA/B-style
//! rules for a private CA (R45), GM/T 0015 encoding of SM2 (R36) and the fields the Electronic
//! Signature Law requires (R27), in the manner of zlint.
//!
//! Each check has an id; `e_` ids are errors (the CA refuses to sign), `w_` ids are warnings.
//! [`LINTS`] lists them all with what they check. The linter never verifies the signature:
//! it runs on a certificate signed by a throwaway key before the real signature exists.

use std::collections::BTreeSet;
use std::fmt;

use der::asn1::{Null, ObjectIdentifier, PrintableStringRef};
use der::{Decode, Tagged};
use signer_lib::algorithm::{ECDSA_WITH_SHA256, KeyType, SM2_CURVE, SM2_WITH_SM3};
use spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use time::{Duration, OffsetDateTime};
use x509_cert::Certificate;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints, CertificatePolicies, CrlDistributionPoints,
    ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::time::Time;

use crate::extension::{authority_key_id_of, key_identifier};
use crate::issuer::{FIRST_GENERALIZED_TIME_YEAR, check_url, offset_date_time};
use crate::profile::{KeyAlgorithm, Presence, Profile, SubjectAttribute, SubjectKind};
use crate::subject::{self, COUNTRY, MAX_VALUE_CHARS, OfficerRole};
use crate::{oid, uscc};

/// How far before `now` notBefore may lie (clock skew between CA nodes and relying parties);
/// earlier is backdating.
pub const BACKDATE_WINDOW: Duration = Duration::minutes(5);

/// The minimum serial number length, in octets without a sign pad: 64 bits (CA/B BR §7.1).
pub const MIN_SERIAL_OCTETS: usize = 8;

/// The maximum serial number length, in DER content octets (RFC 5280 §4.1.2.2).
pub const MAX_SERIAL_OCTETS: usize = 20;

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Worth recording; the certificate may still be issued.
    Warning,
    /// The certificate must not be issued.
    Error,
}

/// One thing the linter found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The lint id (`e_serial_too_long`); see [`LINTS`].
    pub id: &'static str,
    /// Error or warning, from the id's prefix.
    pub level: Level,
    /// What exactly was found, with the values.
    pub message: String,
}

impl Finding {
    fn new(id: &'static str, message: String) -> Self {
        debug_assert!(LINTS.iter().any(|(known, _)| *known == id), "lint id {id} is not in LINTS");
        let level = if id.starts_with("w_") { Level::Warning } else { Level::Error };
        Self { id, level, message }
    }

    /// Whether the finding is an error.
    #[must_use]
    pub fn is_error(&self) -> bool {
        self.level == Level::Error
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.id, self.message)
    }
}

/// Every lint: id and what it checks.
pub const LINTS: &[(&str, &str)] = &[
    // Serial number (RFC 5280 §4.1.2.2, CA/B BR §7.1, R45)
    ("e_serial_negative", "the serial number is negative"),
    ("e_serial_zero", "the serial number is zero"),
    ("e_serial_too_long", "the serial number has more than 20 DER content octets"),
    ("e_serial_low_entropy", "the serial number has fewer than 8 octets (64 bits)"),
    // Structure (RFC 5280 §4.1)
    ("e_version_not_v3", "the certificate is not version 3"),
    ("e_unique_identifiers_present", "issuerUniqueID or subjectUniqueID is present (RFC 5280 §4.1.2.8)"),
    (
        "e_esl_art21_field_missing",
        "a field the Electronic Signature Law Art. 21 requires is empty: issuer name, subject name, public key",
    ),
    // Signature algorithm (GM/T 0015, RFC 5758)
    ("e_signature_algorithm_mismatch", "signatureAlgorithm differs from the TBSCertificate's signature field"),
    ("e_signature_algorithm_unsupported", "the signature algorithm is neither ecdsa-with-SHA256 nor SM3withSM2"),
    ("e_signature_algorithm_parameters_present", "signature algorithm parameters are present (must be absent)"),
    ("e_signature_algorithm_not_issuer_key", "the signature algorithm does not fit the issuer's key type"),
    // Subject public key (GM/T 0015, R36, RFC 5480)
    (
        "e_spki_sm2_algorithm_oid",
        "an SM2 key uses 1.2.156.10197.1.301 as algorithm; it must be id-ecPublicKey with the SM2 curve",
    ),
    ("e_spki_unsupported", "the key is not id-ecPublicKey on P-256 or on the SM2 curve"),
    ("e_spki_key_algorithm_not_allowed", "the key algorithm is not one the profile allows"),
    ("e_spki_point_malformed", "the EC public key is not a 65-octet uncompressed point"),
    // Validity (RFC 5280 §4.1.2.5, R45)
    ("e_validity_reversed", "notAfter is before notBefore"),
    ("e_validity_too_long", "the validity is longer than the profile's maximum"),
    ("e_validity_backdated", "notBefore is more than 5 minutes before the time of issuance"),
    ("e_validity_time_encoding", "a time before 2050 is not UTCTime, or one from 2050 is not GeneralizedTime"),
    ("e_validity_outside_issuer", "the validity is not inside the issuer's validity"),
    // Issuer
    ("e_issuer_name_mismatch", "the issuer name is not the issuer's subject (or, self-signed, the subject)"),
    ("e_issuer_not_ca", "the issuer certificate is not a CA with keyCertSign"),
    ("e_issuer_path_length_exceeded", "a CA certificate under an issuer with pathLenConstraint 0"),
    ("e_issuer_given_for_self_signed", "the profile is self-signed but an issuer certificate was given"),
    ("w_issuer_not_given", "no issuer certificate was given: issuer checks were skipped"),
    // Extensions in general
    ("e_ext_duplicate", "an extension appears twice (RFC 5280 §4.2)"),
    ("e_ext_malformed", "an extension value does not decode"),
    ("e_ext_not_in_profile", "an extension the profile does not include is present"),
    ("e_ext_must_not_be_critical", "SKI, AKI, AIA, CRL DP, policies, SAN, nocheck or USCC is marked critical"),
    // Key identifiers (RFC 5280 §4.2.1.1-2, R45)
    ("e_aki_missing", "authorityKeyIdentifier (with keyIdentifier) is missing on a certificate that is not a root"),
    ("e_aki_mismatch", "the authorityKeyIdentifier is not the issuer's subjectKeyIdentifier"),
    ("e_ski_missing_ca", "a CA certificate has no subjectKeyIdentifier"),
    ("w_ski_missing", "an end-entity certificate has no subjectKeyIdentifier"),
    ("w_ski_method", "the subjectKeyIdentifier is not SHA-256(key)[0..20] (RFC 7093 method 1)"),
    // Key usage, basic constraints (RFC 5280 §4.2.1.3, §4.2.1.9, R45)
    ("e_key_usage_missing", "keyUsage is missing"),
    ("e_key_usage_mismatch", "the keyUsage bits are not exactly the profile's"),
    ("e_key_usage_criticality", "keyUsage criticality differs from the profile"),
    ("e_ee_key_cert_sign", "an end-entity certificate has keyCertSign or cRLSign"),
    ("e_ca_key_usage", "a CA certificate's keyUsage is not critical with keyCertSign and cRLSign"),
    ("e_basic_constraints_missing", "basicConstraints is missing"),
    ("e_basic_constraints_mismatch", "basicConstraints (cA, pathLenConstraint, criticality) differs from the profile"),
    ("e_ca_basic_constraints", "a CA certificate's basicConstraints is not critical with cA TRUE"),
    // Extended key usage (RFC 5280 §4.2.1.12, RFC 3161 §2.3, RFC 6960 §4.2.2.2)
    ("e_eku_missing", "extendedKeyUsage is missing"),
    ("e_eku_mismatch", "the key purposes are not exactly the profile's"),
    ("e_eku_criticality", "extendedKeyUsage criticality differs from the profile"),
    ("w_eku_any_critical", "a critical extendedKeyUsage includes anyExtendedKeyUsage"),
    ("e_tsa_eku", "id-kp-timeStamping is present but not the only key purpose, or not critical"),
    ("e_ocsp_signer_without_nocheck", "id-kp-OCSPSigning without id-pkix-ocsp-nocheck"),
    ("e_ocsp_nocheck_missing", "the profile's id-pkix-ocsp-nocheck is missing"),
    ("e_ocsp_nocheck_without_ocsp_signing", "id-pkix-ocsp-nocheck without id-kp-OCSPSigning"),
    ("e_ocsp_nocheck_not_null", "the id-pkix-ocsp-nocheck value is not NULL"),
    // Policies, AIA, CRL DP
    ("e_policy_missing", "certificatePolicies is missing"),
    ("e_policy_mismatch", "the policy OIDs are not exactly the profile's"),
    ("e_aia_missing", "authorityInfoAccess is missing"),
    ("e_aia_empty", "authorityInfoAccess has no OCSP or CA issuers URI"),
    ("w_aia_no_ocsp", "an end-entity certificate's authorityInfoAccess has no OCSP URI"),
    ("e_crl_dp_missing", "cRLDistributionPoints is missing"),
    ("e_crl_dp_malformed", "a distribution point is not a full name with a URI"),
    ("e_url_not_http", "an AIA or CRL URL is not a plain http:// URL"),
    // Subject alternative name
    ("e_san_missing", "subjectAltName with DNS names is missing where the profile requires it"),
    ("e_san_not_dns", "subjectAltName holds something other than DNS names"),
    ("e_san_dns_invalid", "a DNS name is not a lower-case fully qualified host name"),
    ("e_subject_cn_not_in_san", "the TLS server's common name is not one of its DNS names"),
    // Subject (R22, R27)
    ("e_subject_attribute_not_in_profile", "the subject has an attribute the profile does not list"),
    ("e_subject_attribute_missing", "the subject lacks an attribute the profile lists"),
    ("e_subject_attribute_repeated", "an attribute appears twice, or an RDN has several attributes"),
    ("e_subject_attribute_encoding", "an attribute value is not of its string type"),
    ("e_subject_value_length", "an attribute value is empty or longer than 64 characters"),
    ("e_subject_country_not_cn", "countryName is not CN"),
    ("e_subject_uscc_invalid", "organizationIdentifier is not NTRCN- and a valid unified social credit code"),
    ("e_subject_agency_code_invalid", "the agency code (serialNumber) is not 2-32 characters A-Z, 0-9, -"),
    ("e_subject_officer_role_invalid", "title is not an officer role"),
    ("e_uscc_extension_missing", "the profile's GM/T 0015 USCC extension is missing"),
    ("e_uscc_extension_mismatch", "the GM/T 0015 USCC extension does not hold the subject's code"),
];

/// Lints a certificate (signed by the real key or a throwaway one) against its profile.
/// `issuer` is the issuing CA's certificate (`None` for a self-signed root); `now` is the
/// time of issuance, for the backdating check.
#[must_use]
pub fn lint(cert: &Certificate, profile: &Profile, issuer: Option<&Certificate>, now: OffsetDateTime) -> Vec<Finding> {
    let mut findings = Vec::new();
    if cert.signature_algorithm != cert.tbs_certificate.signature {
        findings.push(Finding::new(
            "e_signature_algorithm_mismatch",
            format!(
                "signatureAlgorithm {} but TBSCertificate.signature {}",
                cert.signature_algorithm.oid, cert.tbs_certificate.signature.oid
            ),
        ));
    }
    findings.extend(lint_tbs(&cert.tbs_certificate, profile, issuer, now));
    findings
}

/// Lints a TBSCertificate; see [`lint`].
#[must_use]
pub fn lint_tbs(
    tbs: &TbsCertificate,
    profile: &Profile,
    issuer: Option<&Certificate>,
    now: OffsetDateTime,
) -> Vec<Finding> {
    let mut linter = Linter { tbs, profile, issuer, now, findings: Vec::new() };
    linter.serial();
    linter.structure();
    linter.issuer();
    linter.signature_algorithm();
    linter.public_key();
    linter.validity();
    linter.extensions();
    linter.subject();
    linter.findings
}

struct Linter<'a> {
    tbs: &'a TbsCertificate,
    profile: &'a Profile,
    issuer: Option<&'a Certificate>,
    now: OffsetDateTime,
    findings: Vec<Finding>,
}

/// The extensions of a certificate, decoded as far as the linter needs.
#[derive(Default)]
struct Decoded {
    ski: Option<(bool, SubjectKeyIdentifier)>,
    aki: Option<(bool, AuthorityKeyIdentifier)>,
    key_usage: Option<(bool, KeyUsage)>,
    eku: Option<(bool, ExtendedKeyUsage)>,
    basic: Option<(bool, BasicConstraints)>,
    policies: Option<(bool, CertificatePolicies)>,
    san: Option<(bool, SubjectAltName)>,
    aia: Option<(bool, AuthorityInfoAccessSyntax)>,
    crl_dp: Option<(bool, CrlDistributionPoints)>,
    nocheck: Option<(bool, Result<Null, der::Error>)>,
    uscc: Option<(bool, String)>,
}

impl Linter<'_> {
    fn report(&mut self, id: &'static str, message: impl Into<String>) {
        self.findings.push(Finding::new(id, message.into()));
    }

    /// The issuer's public key: the issuer certificate's, or the certificate's own for a
    /// self-signed profile; `None` when unknown.
    fn issuer_spki(&self) -> Option<&SubjectPublicKeyInfoOwned> {
        match self.issuer {
            Some(issuer) => Some(&issuer.tbs_certificate.subject_public_key_info),
            None if self.profile.self_signed => Some(&self.tbs.subject_public_key_info),
            None => None,
        }
    }

    fn serial(&mut self) {
        let bytes = self.tbs.serial_number.as_bytes();
        let hex = hex::encode(bytes);
        let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
        let zero = bytes.iter().all(|&b| b == 0);
        if negative {
            self.report("e_serial_negative", format!("serial {hex} is negative"));
        }
        if zero {
            self.report("e_serial_zero", "serial is zero");
        }
        if bytes.len() > MAX_SERIAL_OCTETS {
            self.report("e_serial_too_long", format!("serial has {} content octets: {hex}", bytes.len()));
        }
        let magnitude = bytes.strip_prefix(&[0]).unwrap_or(bytes);
        if !negative && !zero && magnitude.len() < MIN_SERIAL_OCTETS {
            self.report("e_serial_low_entropy", format!("serial {hex} has {} octets", magnitude.len()));
        }
    }

    fn structure(&mut self) {
        let tbs = self.tbs;
        if tbs.version != Version::V3 {
            self.report("e_version_not_v3", format!("version is {:?}", tbs.version));
        }
        if tbs.issuer_unique_id.is_some() || tbs.subject_unique_id.is_some() {
            self.report("e_unique_identifiers_present", "issuerUniqueID or subjectUniqueID present");
        }
        let mut missing = Vec::new();
        if tbs.issuer.0.is_empty() {
            missing.push("issuer name");
        }
        if tbs.subject.0.is_empty() {
            missing.push("subject name");
        }
        if tbs.subject_public_key_info.subject_public_key.raw_bytes().is_empty() {
            missing.push("public key");
        }
        if !missing.is_empty() {
            self.report("e_esl_art21_field_missing", format!("empty: {}", missing.join(", ")));
        }
    }

    fn issuer(&mut self) {
        let tbs = self.tbs;
        match (self.profile.self_signed, self.issuer) {
            (true, None) => {
                if tbs.issuer != tbs.subject {
                    self.report(
                        "e_issuer_name_mismatch",
                        format!("self-signed, but issuer {} is not subject {}", tbs.issuer, tbs.subject),
                    );
                }
            }
            (true, Some(_)) => self.report(
                "e_issuer_given_for_self_signed",
                format!("profile {} is self-signed but an issuer certificate was given", self.profile.id),
            ),
            (false, None) => self.report("w_issuer_not_given", "issuer checks skipped"),
            (false, Some(issuer)) => {
                let itbs = &issuer.tbs_certificate;
                if tbs.issuer != itbs.subject {
                    self.report(
                        "e_issuer_name_mismatch",
                        format!("issuer {} is not the issuer certificate's subject {}", tbs.issuer, itbs.subject),
                    );
                }
                let basic = find(itbs, oid::BASIC_CONSTRAINTS)
                    .and_then(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).ok());
                let ku = find(itbs, oid::KEY_USAGE).and_then(|e| KeyUsage::from_der(e.extn_value.as_bytes()).ok());
                let is_ca = basic.as_ref().is_some_and(|b| b.ca);
                if !is_ca || !ku.is_some_and(|k| k.0.contains(KeyUsages::KeyCertSign)) {
                    self.report("e_issuer_not_ca", format!("issuer {} is not a CA with keyCertSign", itbs.subject));
                }
                let subject_is_ca = self.profile.is_ca()
                    || find(tbs, oid::BASIC_CONSTRAINTS)
                        .and_then(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).ok())
                        .is_some_and(|b| b.ca);
                if subject_is_ca && basic.is_some_and(|b| b.path_len_constraint == Some(0)) {
                    self.report("e_issuer_path_length_exceeded", "a CA certificate under an issuer with pathLen 0");
                }
            }
        }
    }

    fn signature_algorithm(&mut self) {
        let sig = &self.tbs.signature;
        if sig.oid != ECDSA_WITH_SHA256 && sig.oid != SM2_WITH_SM3 {
            self.report("e_signature_algorithm_unsupported", format!("signature algorithm {}", sig.oid));
        }
        if sig.parameters.is_some() {
            self.report("e_signature_algorithm_parameters_present", format!("{} has parameters", sig.oid));
        }
        let Some(issuer_spki) = self.issuer_spki() else { return };
        let expected = KeyType::of_spki(&spki_ref(issuer_spki))
            .ok()
            .and_then(KeyType::signature_algorithm)
            .map(signer_lib::SignatureAlgorithm::oid);
        if expected != Some(sig.oid) {
            let expected = expected.map_or_else(|| "(unsupported issuer key)".to_owned(), |o| o.to_string());
            self.report(
                "e_signature_algorithm_not_issuer_key",
                format!("signature algorithm {} but the issuer key calls for {expected}", sig.oid),
            );
        }
    }

    fn public_key(&mut self) {
        let spki = &self.tbs.subject_public_key_info;
        if spki.algorithm.oid == SM2_CURVE {
            self.report("e_spki_sm2_algorithm_oid", "algorithm 1.2.156.10197.1.301 instead of id-ecPublicKey");
            return;
        }
        match KeyType::of_spki(&spki_ref(spki)) {
            Ok(key_type) => match KeyAlgorithm::of_key_type(key_type) {
                Some(algorithm) if self.profile.allows(algorithm) => {}
                other => {
                    let name = other.map_or_else(|| format!("{key_type:?}"), |a| a.to_string());
                    self.report(
                        "e_spki_key_algorithm_not_allowed",
                        format!("{name} keys are not allowed by profile {}", self.profile.id),
                    );
                    return;
                }
            },
            Err(e) => {
                self.report("e_spki_unsupported", e.to_string());
                return;
            }
        }
        let point = spki.subject_public_key.as_bytes();
        if !point.is_some_and(|p| p.len() == 65 && p.first() == Some(&0x04)) {
            self.report("e_spki_point_malformed", format!("{} octets", spki.subject_public_key.raw_bytes().len()));
        }
    }

    fn validity(&mut self) {
        let validity = &self.tbs.validity;
        for (name, time) in [("notBefore", validity.not_before), ("notAfter", validity.not_after)] {
            let year = time.to_date_time().year();
            let utc = matches!(time, Time::UtcTime(_));
            if utc != (year < FIRST_GENERALIZED_TIME_YEAR) {
                self.report(
                    "e_validity_time_encoding",
                    format!("{name} in {year} is {}", if utc { "UTCTime" } else { "GeneralizedTime" }),
                );
            }
        }
        let (Some(not_before), Some(not_after)) =
            (offset_date_time(validity.not_before), offset_date_time(validity.not_after))
        else {
            self.report("e_validity_reversed", "validity times out of range");
            return;
        };
        if not_after < not_before {
            self.report("e_validity_reversed", format!("notAfter {not_after} is before notBefore {not_before}"));
        }
        let max = Duration::days(i64::from(self.profile.max_validity_days.get()));
        // RFC 5280 §4.1.2.5: both ends inclusive, so the period is one second longer.
        let period = not_after - not_before + Duration::SECOND;
        if period > max {
            self.report(
                "e_validity_too_long",
                format!("{} days, profile {} allows {}", period.whole_days(), self.profile.id, max.whole_days()),
            );
        }
        if not_before < self.now - BACKDATE_WINDOW {
            self.report("e_validity_backdated", format!("notBefore {not_before} is before issuance at {}", self.now));
        }
        if let Some(issuer) = self.issuer {
            let ivalidity = &issuer.tbs_certificate.validity;
            let inside = offset_date_time(ivalidity.not_before).is_some_and(|nb| nb <= not_before)
                && offset_date_time(ivalidity.not_after).is_some_and(|na| not_after <= na);
            if !inside {
                self.report(
                    "e_validity_outside_issuer",
                    format!(
                        "{not_before}..{not_after} is not inside the issuer's {}..{}",
                        ivalidity.not_before, ivalidity.not_after
                    ),
                );
            }
        }
    }

    fn extensions(&mut self) {
        let exts: &[Extension] = self.tbs.extensions.as_deref().unwrap_or_default();
        let mut seen = BTreeSet::new();
        for ext in exts {
            if !seen.insert(ext.extn_id) {
                self.report("e_ext_duplicate", format!("extension {} appears more than once", ext.extn_id));
            }
        }
        let allowed = self.allowed_extensions();
        for ext in exts {
            if !allowed.contains(&ext.extn_id) {
                self.report(
                    "e_ext_not_in_profile",
                    format!("extension {} is not in profile {}", ext.extn_id, self.profile.id),
                );
            }
        }
        let decoded = self.decode(exts);
        self.missing_extensions(&decoded);
        self.criticality(&decoded);
        self.key_identifiers(&decoded);
        self.key_usage(&decoded);
        self.basic_constraints(&decoded);
        self.extended_key_usage(&decoded);
        self.policies(&decoded);
        self.access(&decoded);
        self.alt_names(&decoded);
        self.uscc_extension(&decoded);
    }

    /// The extensions a certificate of the profile may carry.
    fn allowed_extensions(&self) -> BTreeSet<ObjectIdentifier> {
        let p = self.profile;
        let mut allowed: BTreeSet<ObjectIdentifier> =
            [oid::SUBJECT_KEY_IDENTIFIER, oid::KEY_USAGE, oid::BASIC_CONSTRAINTS].into_iter().collect();
        let optional = [
            (!p.self_signed, oid::AUTHORITY_KEY_IDENTIFIER),
            (p.extended_key_usage.is_some(), oid::EXTENDED_KEY_USAGE),
            (!p.policy_oids.is_empty(), oid::CERTIFICATE_POLICIES),
            (p.authority_info_access, oid::AUTHORITY_INFO_ACCESS),
            (p.crl_distribution_point, oid::CRL_DISTRIBUTION_POINTS),
            (p.ocsp_nocheck, oid::OCSP_NOCHECK),
            (p.subject.dns_names != Presence::Forbidden, oid::SUBJECT_ALT_NAME),
            (p.subject.uscc_extension, oid::GMT0015_USCC),
        ];
        allowed.extend(optional.into_iter().filter(|(on, _)| *on).map(|(_, o)| o));
        allowed
    }

    fn decode(&mut self, exts: &[Extension]) -> Decoded {
        let mut d = Decoded::default();
        let mut failures = Vec::new();
        for ext in exts {
            let value = ext.extn_value.as_bytes();
            let c = ext.critical;
            let ok = match ext.extn_id {
                oid::SUBJECT_KEY_IDENTIFIER => set(&mut d.ski, c, SubjectKeyIdentifier::from_der(value)),
                oid::AUTHORITY_KEY_IDENTIFIER => set(&mut d.aki, c, AuthorityKeyIdentifier::from_der(value)),
                oid::KEY_USAGE => set(&mut d.key_usage, c, KeyUsage::from_der(value)),
                oid::EXTENDED_KEY_USAGE => set(&mut d.eku, c, ExtendedKeyUsage::from_der(value)),
                oid::BASIC_CONSTRAINTS => set(&mut d.basic, c, BasicConstraints::from_der(value)),
                oid::CERTIFICATE_POLICIES => set(&mut d.policies, c, CertificatePolicies::from_der(value)),
                oid::SUBJECT_ALT_NAME => set(&mut d.san, c, SubjectAltName::from_der(value)),
                oid::AUTHORITY_INFO_ACCESS => set(&mut d.aia, c, AuthorityInfoAccessSyntax::from_der(value)),
                oid::CRL_DISTRIBUTION_POINTS => set(&mut d.crl_dp, c, CrlDistributionPoints::from_der(value)),
                oid::OCSP_NOCHECK => {
                    // Kept even when malformed: e_ocsp_nocheck_not_null says more than "malformed".
                    d.nocheck.get_or_insert((c, Null::from_der(value)));
                    Ok(())
                }
                oid::GMT0015_USCC => {
                    set(&mut d.uscc, c, PrintableStringRef::from_der(value).map(|s| s.as_str().to_owned()))
                }
                _ => Ok(()),
            };
            if let Err(e) = ok {
                failures.push(format!("{}: {e}", ext.extn_id));
            }
        }
        for failure in failures {
            self.report("e_ext_malformed", failure);
        }
        d
    }

    fn missing_extensions(&mut self, d: &Decoded) {
        let p = self.profile;
        let is_ca = p.is_ca();
        if d.ski.is_none() {
            if is_ca {
                self.report("e_ski_missing_ca", "no subjectKeyIdentifier");
            } else {
                self.report("w_ski_missing", "no subjectKeyIdentifier");
            }
        }
        if !p.self_signed && d.aki.as_ref().is_none_or(|(_, aki)| aki.key_identifier.is_none()) {
            self.report("e_aki_missing", "no authorityKeyIdentifier keyIdentifier");
        }
        let required = [
            (true, d.key_usage.is_some(), "e_key_usage_missing"),
            (true, d.basic.is_some(), "e_basic_constraints_missing"),
            (p.extended_key_usage.is_some(), d.eku.is_some(), "e_eku_missing"),
            (!p.policy_oids.is_empty(), d.policies.is_some(), "e_policy_missing"),
            (p.authority_info_access, d.aia.is_some(), "e_aia_missing"),
            (p.crl_distribution_point, d.crl_dp.is_some(), "e_crl_dp_missing"),
            (p.ocsp_nocheck, d.nocheck.is_some(), "e_ocsp_nocheck_missing"),
            (p.subject.dns_names == Presence::Required, d.san.is_some(), "e_san_missing"),
            (p.subject.uscc_extension, d.uscc.is_some(), "e_uscc_extension_missing"),
        ];
        for (wanted, present, id) in required {
            if wanted && !present {
                self.report(id, format!("profile {} requires it", p.id));
            }
        }
    }

    fn criticality(&mut self, d: &Decoded) {
        let flags = [
            ("subjectKeyIdentifier", d.ski.as_ref().map(|x| x.0)),
            ("authorityKeyIdentifier", d.aki.as_ref().map(|x| x.0)),
            ("certificatePolicies", d.policies.as_ref().map(|x| x.0)),
            ("subjectAltName", d.san.as_ref().map(|x| x.0)),
            ("authorityInfoAccess", d.aia.as_ref().map(|x| x.0)),
            ("cRLDistributionPoints", d.crl_dp.as_ref().map(|x| x.0)),
            ("id-pkix-ocsp-nocheck", d.nocheck.as_ref().map(|x| x.0)),
            ("GM/T 0015 USCC", d.uscc.as_ref().map(|x| x.0)),
        ];
        for (name, critical) in flags {
            if critical == Some(true) {
                self.report("e_ext_must_not_be_critical", format!("{name} is critical"));
            }
        }
    }

    fn key_identifiers(&mut self, d: &Decoded) {
        if let Some((_, ski)) = &d.ski {
            let expected = key_identifier(&self.tbs.subject_public_key_info);
            if ski.0.as_bytes() != expected.as_slice() {
                self.report(
                    "w_ski_method",
                    format!("SKI {} is not {}", hex::encode(ski.0.as_bytes()), hex::encode(&expected)),
                );
            }
        }
        let (Some((_, aki)), Some(issuer)) = (&d.aki, self.issuer) else { return };
        let Some(key_id) = &aki.key_identifier else { return };
        match authority_key_id_of(issuer) {
            Ok(expected) if expected.as_slice() == key_id.as_bytes() => {}
            Ok(expected) => self.report(
                "e_aki_mismatch",
                format!("AKI {} but the issuer's key id is {}", hex::encode(key_id.as_bytes()), hex::encode(expected)),
            ),
            Err(e) => self.report("e_aki_mismatch", format!("issuer key id unreadable: {e}")),
        }
    }

    /// Whether the certificate is a CA: by its profile, or by what it claims.
    fn is_ca(&self, d: &Decoded) -> bool {
        self.profile.is_ca() || d.basic.as_ref().is_some_and(|(_, b)| b.ca)
    }

    fn key_usage(&mut self, d: &Decoded) {
        let is_ca = self.is_ca(d);
        let Some((critical, ku)) = &d.key_usage else { return };
        let rule = &self.profile.key_usage;
        if ku.0 != rule.flags() {
            self.report("e_key_usage_mismatch", format!("keyUsage {:?}, profile {:?}", ku.0, rule.flags()));
        }
        if *critical != rule.critical {
            self.report("e_key_usage_criticality", format!("critical = {critical}, profile says {}", rule.critical));
        }
        let signs_certs = ku.0.contains(KeyUsages::KeyCertSign) || ku.0.contains(KeyUsages::CRLSign);
        if !is_ca && signs_certs {
            self.report("e_ee_key_cert_sign", format!("end entity with keyUsage {:?}", ku.0));
        }
        if is_ca && !(*critical && ku.0.contains(KeyUsages::KeyCertSign) && ku.0.contains(KeyUsages::CRLSign)) {
            self.report("e_ca_key_usage", format!("CA keyUsage {:?}, critical = {critical}", ku.0));
        }
    }

    fn basic_constraints(&mut self, d: &Decoded) {
        let Some((critical, bc)) = &d.basic else { return };
        let rule = &self.profile.basic_constraints;
        if bc.ca != rule.ca || bc.path_len_constraint != rule.path_len || *critical != rule.critical {
            self.report(
                "e_basic_constraints_mismatch",
                format!(
                    "cA {} pathLen {:?} critical {critical}; profile: cA {} pathLen {:?} critical {}",
                    bc.ca, bc.path_len_constraint, rule.ca, rule.path_len, rule.critical
                ),
            );
        }
        if self.is_ca(d) && !(bc.ca && *critical) {
            self.report("e_ca_basic_constraints", format!("CA with cA {} critical {critical}", bc.ca));
        }
    }

    fn extended_key_usage(&mut self, d: &Decoded) {
        let purposes: &[ObjectIdentifier] = d.eku.as_ref().map_or(&[], |(_, e)| e.0.as_slice());
        if let Some((critical, eku)) = &d.eku {
            let found: BTreeSet<_> = eku.0.iter().collect();
            let wanted: BTreeSet<_> = self.profile.key_purposes().iter().collect();
            if found != wanted || eku.0.len() != found.len() {
                self.report("e_eku_mismatch", format!("key purposes {}", oid_list(&eku.0)));
            }
            if let Some(rule) = &self.profile.extended_key_usage
                && *critical != rule.critical
            {
                self.report("e_eku_criticality", format!("critical = {critical}, profile says {}", rule.critical));
            }
            if *critical && eku.0.contains(&oid::ANY_EXTENDED_KEY_USAGE) {
                self.report("w_eku_any_critical", "anyExtendedKeyUsage in a critical extension");
            }
            if eku.0.contains(&oid::KP_TIME_STAMPING) && (eku.0.len() != 1 || !critical) {
                self.report("e_tsa_eku", format!("key purposes {} critical = {critical}", oid_list(&eku.0)));
            }
        }
        let ocsp_signing = purposes.contains(&oid::KP_OCSP_SIGNING);
        match &d.nocheck {
            None if ocsp_signing => self.report("e_ocsp_signer_without_nocheck", "id-kp-OCSPSigning without nocheck"),
            Some(_) if !ocsp_signing => {
                self.report("e_ocsp_nocheck_without_ocsp_signing", "nocheck without id-kp-OCSPSigning");
            }
            _ => {}
        }
        if let Some((_, Err(e))) = &d.nocheck {
            self.report("e_ocsp_nocheck_not_null", format!("value is not NULL: {e}"));
        }
    }

    fn policies(&mut self, d: &Decoded) {
        let Some((_, policies)) = &d.policies else { return };
        let found: Vec<ObjectIdentifier> = policies.0.iter().map(|p| p.policy_identifier).collect();
        let found_set: BTreeSet<_> = found.iter().collect();
        let wanted: BTreeSet<_> = self.profile.policy_oids.iter().collect();
        if found_set != wanted || found.len() != found_set.len() {
            self.report(
                "e_policy_mismatch",
                format!("policies {}, profile {}", oid_list(&found), oid_list(&self.profile.policy_oids)),
            );
        }
    }

    fn access(&mut self, d: &Decoded) {
        let mut urls = Vec::new();
        if let Some((_, aia)) = &d.aia {
            let mut has_ocsp = false;
            let mut uris = 0;
            for access in &aia.0 {
                if let GeneralName::UniformResourceIdentifier(uri) = &access.access_location
                    && (access.access_method == oid::AD_OCSP || access.access_method == oid::AD_CA_ISSUERS)
                {
                    uris += 1;
                    has_ocsp |= access.access_method == oid::AD_OCSP;
                    urls.push(uri.as_str().to_owned());
                }
            }
            if uris == 0 {
                self.report("e_aia_empty", "no OCSP or CA issuers URI");
            } else if !has_ocsp && !self.is_ca(d) {
                self.report("w_aia_no_ocsp", "no OCSP URI");
            }
        }
        if let Some((_, dps)) = &d.crl_dp {
            if dps.0.is_empty() {
                self.report("e_crl_dp_malformed", "no distribution point");
            }
            for dp in &dps.0 {
                let uris: Vec<&str> = match &dp.distribution_point {
                    Some(DistributionPointName::FullName(names)) => names
                        .iter()
                        .filter_map(|n| match n {
                            GeneralName::UniformResourceIdentifier(u) => Some(u.as_str()),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                if uris.is_empty() {
                    self.report("e_crl_dp_malformed", "a distribution point without a full-name URI");
                }
                urls.extend(uris.into_iter().map(str::to_owned));
            }
        }
        for url in urls {
            if let Err(reason) = check_url(&url) {
                self.report("e_url_not_http", reason);
            }
        }
    }

    fn alt_names(&mut self, d: &Decoded) {
        let Some((_, san)) = &d.san else { return };
        let mut dns = Vec::new();
        for name in &san.0 {
            match name {
                GeneralName::DnsName(n) => dns.push(n.as_str()),
                other => self.report("e_san_not_dns", format!("{other:?}")),
            }
        }
        if san.0.is_empty() {
            self.report("e_san_dns_invalid", "empty subjectAltName");
        }
        for name in &dns {
            if let Err(reason) = subject::check_dns_name(name) {
                self.report("e_san_dns_invalid", reason);
            }
        }
        if self.profile.subject.dns_names == Presence::Required {
            let cns = self.values(SubjectAttribute::CommonName);
            if let Some(cn) = cns.iter().find(|cn| !dns.contains(&cn.as_str())) {
                self.report("e_subject_cn_not_in_san", format!("CN {cn:?} is not among {dns:?}"));
            }
        }
    }

    fn uscc_extension(&mut self, d: &Decoded) {
        let Some((_, code)) = &d.uscc else { return };
        let subject_code = self.values(SubjectAttribute::OrganizationIdentifier);
        let subject_code = subject_code.first().and_then(|v| subject::uscc_of_identifier(v));
        if subject_code != Some(code.as_str()) {
            self.report("e_uscc_extension_mismatch", format!("extension {code:?}, subject {subject_code:?}"));
        }
        if let Err(e) = uscc::validate_uscc(code) {
            self.report("e_uscc_extension_mismatch", e.to_string());
        }
    }

    /// The text values of one subject attribute.
    fn values(&self, attribute: SubjectAttribute) -> Vec<String> {
        self.tbs
            .subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .filter(|atv| atv.oid == attribute.oid())
            .filter_map(|atv| subject::value_text(&atv.value))
            .collect()
    }

    fn subject(&mut self) {
        let rule = &self.profile.subject;
        let listed: Vec<SubjectAttribute> = rule.attributes.iter().map(|a| a.attribute).collect();
        let mut seen = Vec::new();
        for rdn in &self.tbs.subject.0 {
            if rdn.0.len() != 1 {
                self.report("e_subject_attribute_repeated", format!("an RDN with {} attributes", rdn.0.len()));
            }
            for atv in rdn.0.iter() {
                let Some(attribute) = SubjectAttribute::of_oid(atv.oid).filter(|a| listed.contains(a)) else {
                    self.report(
                        "e_subject_attribute_not_in_profile",
                        format!("attribute {} is not in profile {}", atv.oid, self.profile.id),
                    );
                    continue;
                };
                if seen.contains(&attribute) {
                    self.report("e_subject_attribute_repeated", format!("{attribute} appears twice"));
                }
                seen.push(attribute);
                let tag = atv.value.tag();
                if tag != subject::string_tag(attribute) {
                    self.report("e_subject_attribute_encoding", format!("{attribute} is {tag}"));
                }
                let Some(text) = subject::value_text(&atv.value) else { continue };
                let chars = text.chars().count();
                if text.trim().is_empty() || chars > MAX_VALUE_CHARS {
                    self.report("e_subject_value_length", format!("{attribute} has {chars} characters"));
                }
                self.subject_value(attribute, &text);
            }
        }
        for attribute in listed {
            if !seen.contains(&attribute) {
                self.report("e_subject_attribute_missing", format!("no {attribute}"));
            }
        }
    }

    fn subject_value(&mut self, attribute: SubjectAttribute, text: &str) {
        let kind = self.profile.subject.kind;
        match attribute {
            SubjectAttribute::Country if text != COUNTRY => {
                self.report("e_subject_country_not_cn", format!("countryName {text:?}"));
            }
            SubjectAttribute::OrganizationIdentifier => match subject::uscc_of_identifier(text) {
                Some(code) => {
                    if let Err(e) = uscc::validate_uscc(code) {
                        self.report("e_subject_uscc_invalid", e.to_string());
                    }
                }
                None => self.report("e_subject_uscc_invalid", format!("{text:?} does not start with NTRCN-")),
            },
            SubjectAttribute::SerialNumber if kind == SubjectKind::Agency => {
                if let Err(reason) = subject::check_agency_code(text) {
                    self.report("e_subject_agency_code_invalid", reason);
                }
            }
            SubjectAttribute::Title if kind == SubjectKind::Officer && text.parse::<OfficerRole>().is_err() => {
                self.report("e_subject_officer_role_invalid", format!("title {text:?}"));
            }
            _ => {}
        }
    }
}

/// Stores the first decoded value of an extension (duplicates are reported separately).
fn set<T>(slot: &mut Option<(bool, T)>, critical: bool, value: Result<T, der::Error>) -> Result<(), der::Error> {
    let value = value?;
    if slot.is_none() {
        *slot = Some((critical, value));
    }
    Ok(())
}

fn find(tbs: &TbsCertificate, extn_id: ObjectIdentifier) -> Option<&Extension> {
    tbs.extensions.iter().flatten().find(|e| e.extn_id == extn_id)
}

fn spki_ref(spki: &SubjectPublicKeyInfoOwned) -> SubjectPublicKeyInfoRef<'_> {
    use der::referenced::OwnedToRef;
    spki.owned_to_ref()
}

fn oid_list(oids: &[ObjectIdentifier]) -> String {
    let names: Vec<String> =
        oids.iter().map(|o| oid::key_purpose_name(*o).map_or_else(|| o.to_string(), str::to_owned)).collect();
    format!("[{}]", names.join(", "))
}

#[cfg(test)]
mod tests;
