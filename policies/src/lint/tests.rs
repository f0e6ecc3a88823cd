//! Each lint fires on a certificate broken on purpose; good certificates of every profile
//! have no findings at all.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use der::asn1::{Any, BitString, Ia5String, OctetString, Utf8StringRef};
use der::{Encode, Tag};
use signer_lib::SignatureAlgorithm;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::certificate::Version;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, certpolicy::PolicyInformation};
use x509_cert::name::{RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;

use super::*;
use crate::issuer::x509_time;
use crate::profile::Profiles;
use crate::testing::{Hierarchy, now};

fn hierarchy() -> &'static Hierarchy {
    static H: OnceLock<Hierarchy> = OnceLock::new();
    H.get_or_init(|| Hierarchy::new(SignatureAlgorithm::EcdsaP256Sha256))
}

/// A case: the profile, the certificate to lint and its issuer, after a mutation.
struct Case {
    profile: Profile,
    cert: Certificate,
    issuer: Option<Certificate>,
}

impl Case {
    /// A fresh end-entity certificate of `profile_id` under the test issuing CA.
    fn leaf(profile_id: &str) -> Self {
        let profile = Profile::by_id(profile_id).unwrap();
        let h = hierarchy();
        let cert = h.leaf(&profile, SignatureAlgorithm::EcdsaP256Sha256);
        Self { profile, cert, issuer: Some(h.ca.clone()) }
    }

    /// The issuing CA certificate, under the root.
    fn issuing_ca() -> Self {
        let h = hierarchy();
        Self { profile: Profile::by_id("issuing-ca").unwrap(), cert: h.ca.clone(), issuer: Some(h.root.clone()) }
    }

    /// The root, self-signed.
    fn root() -> Self {
        Self { profile: Profile::by_id("root-ca").unwrap(), cert: hierarchy().root.clone(), issuer: None }
    }

    fn tbs(&mut self) -> &mut TbsCertificate {
        &mut self.cert.tbs_certificate
    }

    fn exts(&mut self) -> &mut Vec<Extension> {
        self.cert.tbs_certificate.extensions.get_or_insert_with(Vec::new)
    }

    fn ext(&mut self, id: ObjectIdentifier) -> &mut Extension {
        self.exts().iter_mut().find(|e| e.extn_id == id).unwrap_or_else(|| panic!("no extension {id}"))
    }

    fn remove(&mut self, id: ObjectIdentifier) -> &mut Self {
        let before = self.exts().len();
        self.exts().retain(|e| e.extn_id != id);
        assert_eq!(self.exts().len() + 1, before, "extension {id} not removed");
        self
    }

    fn set(&mut self, id: ObjectIdentifier, critical: bool, value: &impl Encode) -> &mut Self {
        let ext = crate::extension::extension(id, critical, value).unwrap();
        match self.exts().iter_mut().find(|e| e.extn_id == id) {
            Some(slot) => *slot = ext,
            None => self.exts().push(ext),
        }
        self
    }

    fn set_raw(&mut self, id: ObjectIdentifier, critical: bool, value_der: &[u8]) -> &mut Self {
        let ext = Extension { extn_id: id, critical, extn_value: OctetString::new(value_der).unwrap() };
        match self.exts().iter_mut().find(|e| e.extn_id == id) {
            Some(slot) => *slot = ext,
            None => self.exts().push(ext),
        }
        self
    }

    fn critical(&mut self, id: ObjectIdentifier, critical: bool) -> &mut Self {
        self.ext(id).critical = critical;
        self
    }

    /// Replaces the value of the first subject attribute `oid` (or appends it).
    fn subject_value(&mut self, attr: ObjectIdentifier, value: Any) -> &mut Self {
        let subject = &mut self.tbs().subject.0;
        let atv = AttributeTypeAndValue { oid: attr, value };
        let rdn = RelativeDistinguishedName::try_from(vec![atv]).unwrap();
        match subject.iter_mut().find(|r| r.0.iter().any(|a| a.oid == attr)) {
            Some(slot) => *slot = rdn,
            None => subject.push(rdn),
        }
        self
    }

    fn ids(&self) -> Vec<&'static str> {
        lint(&self.cert, &self.profile, self.issuer.as_ref(), now()).iter().map(|f| f.id).collect()
    }

    #[track_caller]
    fn fires(&self, id: &'static str) -> &'static str {
        let ids = self.ids();
        assert!(ids.contains(&id), "expected {id}, got {ids:?}");
        id
    }
}

fn utf8(s: &str) -> Any {
    Any::encode_from(&Utf8StringRef::new(s).unwrap()).unwrap()
}

fn printable(s: &str) -> Any {
    Any::encode_from(&der::asn1::PrintableStringRef::new(s).unwrap()).unwrap()
}

fn serial_from_der(der: &[u8]) -> SerialNumber {
    use der::Decode;
    SerialNumber::from_der(der).unwrap()
}

fn uri(s: &str) -> GeneralName {
    GeneralName::UniformResourceIdentifier(Ia5String::new(s).unwrap())
}

fn dns(s: &str) -> GeneralName {
    GeneralName::DnsName(Ia5String::new(s).unwrap())
}

#[test]
fn certificates_of_every_profile_have_no_findings() {
    let h = hierarchy();
    let root_profile = Profile::by_id("root-ca").unwrap();
    assert_eq!(lint(&h.root, &root_profile, None, now()), vec![]);
    let ca_profile = Profile::by_id("issuing-ca").unwrap();
    assert_eq!(lint(&h.ca, &ca_profile, Some(&h.root), now()), vec![]);
    for profile in Profiles::embedded().unwrap().iter().filter(|p| !p.is_ca()) {
        for algorithm in [SignatureAlgorithm::EcdsaP256Sha256, SignatureAlgorithm::Sm2Sm3] {
            let cert = h.leaf(profile, algorithm);
            assert_eq!(lint(&cert, profile, Some(&h.ca), now()), vec![], "{} {algorithm}", profile.id);
        }
    }
}

/// Every lint, with a certificate broken so that it fires. Returns the ids exercised.
fn run_all_cases() -> BTreeSet<&'static str> {
    let mut fired = BTreeSet::new();
    let mut check = |case: &Case, id: &'static str| {
        fired.insert(case.fires(id));
    };

    // Serial numbers.
    let mut c = Case::leaf("tls-client");
    c.tbs().serial_number = serial_from_der(&[0x02, 0x01, 0xff]);
    check(&c, "e_serial_negative");
    c.tbs().serial_number = serial_from_der(&[0x02, 0x01, 0x00]);
    check(&c, "e_serial_zero");
    let mut long = vec![0x02, 21, 0x00, 0x80];
    long.extend([0x01; 19]);
    c.tbs().serial_number = serial_from_der(&long);
    check(&c, "e_serial_too_long");
    c.tbs().serial_number = SerialNumber::new(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
    check(&c, "e_serial_low_entropy");

    // Structure.
    let mut c = Case::leaf("tls-client");
    c.tbs().version = Version::V2;
    check(&c, "e_version_not_v3");
    let mut c = Case::leaf("tls-client");
    c.tbs().subject_unique_id = Some(BitString::from_bytes(&[1]).unwrap());
    check(&c, "e_unique_identifiers_present");
    let mut c = Case::leaf("tls-client");
    c.tbs().subject = RdnSequence(vec![]);
    check(&c, "e_esl_art21_field_missing");

    // Signature algorithm.
    let mut c = Case::leaf("tls-client");
    c.cert.signature_algorithm.oid = SM2_WITH_SM3;
    check(&c, "e_signature_algorithm_mismatch");
    let mut c = Case::leaf("tls-client");
    c.tbs().signature.oid = signer_lib::algorithm::SHA256_WITH_RSA;
    check(&c, "e_signature_algorithm_unsupported");
    let mut c = Case::leaf("tls-client");
    c.tbs().signature.parameters = Some(Any::null());
    check(&c, "e_signature_algorithm_parameters_present");
    let mut c = Case::leaf("tls-client");
    c.tbs().signature.oid = SM2_WITH_SM3; // the issuing CA's key is P-256
    check(&c, "e_signature_algorithm_not_issuer_key");

    // Subject public key.
    let mut c = Case::leaf("tls-client");
    c.tbs().subject_public_key_info.algorithm = spki::AlgorithmIdentifierOwned { oid: SM2_CURVE, parameters: None };
    check(&c, "e_spki_sm2_algorithm_oid");
    let mut c = Case::leaf("tls-client");
    let secp384r1 = ObjectIdentifier::new_unwrap("1.3.132.0.34");
    c.tbs().subject_public_key_info.algorithm.parameters = Some(Any::from(&secp384r1));
    check(&c, "e_spki_unsupported");
    let mut c = Case::leaf("tls-client");
    c.profile.key_algorithms = vec![KeyAlgorithm::Sm2];
    check(&c, "e_spki_key_algorithm_not_allowed");
    let mut c = Case::leaf("tls-client");
    c.tbs().subject_public_key_info.subject_public_key = BitString::from_bytes(&[0x02; 33]).unwrap();
    check(&c, "e_spki_point_malformed");

    // Validity.
    let mut c = Case::leaf("tls-client");
    let v = c.tbs().validity;
    c.tbs().validity.not_before = v.not_after;
    c.tbs().validity.not_after = v.not_before;
    check(&c, "e_validity_reversed");
    let mut c = Case::leaf("tls-client");
    c.profile.max_validity_days = std::num::NonZeroU32::new(30).unwrap();
    check(&c, "e_validity_too_long");
    let mut c = Case::leaf("tls-client");
    c.tbs().validity.not_before = x509_time(now() - Duration::minutes(6)).unwrap();
    check(&c, "e_validity_backdated");
    let mut c = Case::leaf("tls-client");
    let not_after = c.tbs().validity.not_after.to_date_time();
    c.tbs().validity.not_after = Time::GeneralTime(der::asn1::GeneralizedTime::from_date_time(not_after));
    check(&c, "e_validity_time_encoding");
    let mut c = Case::leaf("tls-client");
    let ca_not_after = offset_date_time(hierarchy().ca.tbs_certificate.validity.not_after).unwrap();
    c.tbs().validity.not_after = x509_time(ca_not_after + Duration::days(1)).unwrap();
    check(&c, "e_validity_outside_issuer");

    // Issuer.
    let mut c = Case::leaf("tls-client");
    let subject = c.cert.tbs_certificate.subject.clone();
    c.tbs().issuer = subject;
    check(&c, "e_issuer_name_mismatch");
    let mut c = Case::root();
    c.tbs().issuer = hierarchy().ca.tbs_certificate.subject.clone();
    check(&c, "e_issuer_name_mismatch");
    let mut c = Case::leaf("tls-client");
    c.issuer = Some(Case::leaf("tls-server").cert);
    check(&c, "e_issuer_not_ca");
    let mut c = Case::issuing_ca();
    c.issuer = Some(hierarchy().ca.clone()); // pathLen 0
    check(&c, "e_issuer_path_length_exceeded");
    let mut c = Case::root();
    c.issuer = Some(hierarchy().root.clone());
    check(&c, "e_issuer_given_for_self_signed");
    let mut c = Case::leaf("tls-client");
    c.issuer = None;
    check(&c, "w_issuer_not_given");

    // Extensions in general.
    let mut c = Case::leaf("tls-client");
    let ski = c.ext(oid::SUBJECT_KEY_IDENTIFIER).clone();
    c.exts().push(ski);
    check(&c, "e_ext_duplicate");
    let mut c = Case::leaf("tls-client");
    c.set_raw(oid::KEY_USAGE, true, &[0x05, 0x00]);
    check(&c, "e_ext_malformed");
    let mut c = Case::leaf("tls-client");
    c.set_raw(ObjectIdentifier::new_unwrap("1.2.3.4"), false, &[0x05, 0x00]);
    check(&c, "e_ext_not_in_profile");
    let mut c = Case::leaf("tls-client");
    c.critical(oid::SUBJECT_KEY_IDENTIFIER, true);
    check(&c, "e_ext_must_not_be_critical");

    // Key identifiers.
    let mut c = Case::leaf("tls-client");
    c.remove(oid::AUTHORITY_KEY_IDENTIFIER);
    check(&c, "e_aki_missing");
    let mut c = Case::leaf("tls-client");
    let aki =
        AuthorityKeyIdentifier { key_identifier: Some(OctetString::new([0u8; 20]).unwrap()), ..Default::default() };
    c.set(oid::AUTHORITY_KEY_IDENTIFIER, false, &aki);
    check(&c, "e_aki_mismatch");
    let mut c = Case::issuing_ca();
    c.remove(oid::SUBJECT_KEY_IDENTIFIER);
    check(&c, "e_ski_missing_ca");
    let mut c = Case::leaf("tls-client");
    c.remove(oid::SUBJECT_KEY_IDENTIFIER);
    check(&c, "w_ski_missing");
    let mut c = Case::leaf("tls-client");
    c.set(oid::SUBJECT_KEY_IDENTIFIER, false, &OctetString::new([7u8; 20]).unwrap());
    check(&c, "w_ski_method");

    // Key usage and basic constraints.
    let mut c = Case::leaf("tls-server");
    c.remove(oid::KEY_USAGE);
    check(&c, "e_key_usage_missing");
    let mut c = Case::leaf("tls-server");
    c.set(oid::KEY_USAGE, true, &KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment));
    check(&c, "e_key_usage_mismatch");
    let mut c = Case::leaf("tls-server");
    c.critical(oid::KEY_USAGE, false);
    check(&c, "e_key_usage_criticality");
    let mut c = Case::leaf("tls-server");
    c.set(oid::KEY_USAGE, true, &KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyCertSign));
    check(&c, "e_ee_key_cert_sign");
    let mut c = Case::issuing_ca();
    c.set(oid::KEY_USAGE, true, &KeyUsage(KeyUsages::KeyCertSign.into()));
    check(&c, "e_ca_key_usage");
    let mut c = Case::leaf("tls-server");
    c.remove(oid::BASIC_CONSTRAINTS);
    check(&c, "e_basic_constraints_missing");
    let mut c = Case::leaf("tls-server");
    c.critical(oid::BASIC_CONSTRAINTS, false);
    check(&c, "e_basic_constraints_mismatch");
    let mut c = Case::issuing_ca();
    c.critical(oid::BASIC_CONSTRAINTS, false);
    check(&c, "e_ca_basic_constraints");

    // Extended key usage, OCSP signer, TSA.
    let mut c = Case::leaf("tls-server");
    c.remove(oid::EXTENDED_KEY_USAGE);
    check(&c, "e_eku_missing");
    let mut c = Case::leaf("tls-client");
    c.set(oid::EXTENDED_KEY_USAGE, false, &ExtendedKeyUsage(vec![oid::KP_CLIENT_AUTH, oid::KP_SERVER_AUTH]));
    check(&c, "e_eku_mismatch");
    let mut c = Case::leaf("tls-client");
    c.critical(oid::EXTENDED_KEY_USAGE, true);
    check(&c, "e_eku_criticality");
    let mut c = Case::leaf("tls-client");
    c.set(oid::EXTENDED_KEY_USAGE, true, &ExtendedKeyUsage(vec![oid::ANY_EXTENDED_KEY_USAGE]));
    check(&c, "w_eku_any_critical");
    let mut c = Case::leaf("tsa");
    c.critical(oid::EXTENDED_KEY_USAGE, false);
    check(&c, "e_tsa_eku");
    let mut c = Case::leaf("tsa");
    c.set(oid::EXTENDED_KEY_USAGE, true, &ExtendedKeyUsage(vec![oid::KP_TIME_STAMPING, oid::KP_CLIENT_AUTH]));
    check(&c, "e_tsa_eku");
    let mut c = Case::leaf("ocsp-signer");
    c.remove(oid::OCSP_NOCHECK);
    check(&c, "e_ocsp_signer_without_nocheck");
    check(&c, "e_ocsp_nocheck_missing");
    let mut c = Case::leaf("tls-server");
    c.set(oid::OCSP_NOCHECK, false, &der::asn1::Null);
    check(&c, "e_ocsp_nocheck_without_ocsp_signing");
    let mut c = Case::leaf("ocsp-signer");
    c.set_raw(oid::OCSP_NOCHECK, false, &[0x04, 0x00]);
    check(&c, "e_ocsp_nocheck_not_null");

    // Policies, AIA, CRL DP.
    let mut c = Case::leaf("agency");
    c.remove(oid::CERTIFICATE_POLICIES);
    check(&c, "e_policy_missing");
    let mut c = Case::leaf("agency");
    let any = PolicyInformation { policy_identifier: oid::ANY_POLICY, policy_qualifiers: None };
    c.set(oid::CERTIFICATE_POLICIES, false, &CertificatePolicies(vec![any]));
    check(&c, "e_policy_mismatch");
    let mut c = Case::leaf("agency");
    c.remove(oid::AUTHORITY_INFO_ACCESS);
    check(&c, "e_aia_missing");
    let mut c = Case::leaf("agency");
    c.set(oid::AUTHORITY_INFO_ACCESS, false, &AuthorityInfoAccessSyntax(vec![]));
    check(&c, "e_aia_empty");
    let mut c = Case::leaf("agency");
    let issuers =
        AccessDescription { access_method: oid::AD_CA_ISSUERS, access_location: uri("http://pki.example/ca.cer") };
    c.set(oid::AUTHORITY_INFO_ACCESS, false, &AuthorityInfoAccessSyntax(vec![issuers]));
    check(&c, "w_aia_no_ocsp");
    let mut c = Case::leaf("agency");
    let ocsp = AccessDescription { access_method: oid::AD_OCSP, access_location: uri("https://ocsp.example/") };
    c.set(oid::AUTHORITY_INFO_ACCESS, false, &AuthorityInfoAccessSyntax(vec![ocsp]));
    check(&c, "e_url_not_http");
    let mut c = Case::leaf("agency");
    c.remove(oid::CRL_DISTRIBUTION_POINTS);
    check(&c, "e_crl_dp_missing");
    let mut c = Case::leaf("agency");
    let empty = DistributionPoint { distribution_point: None, reasons: None, crl_issuer: None };
    c.set(oid::CRL_DISTRIBUTION_POINTS, false, &CrlDistributionPoints(vec![empty]));
    check(&c, "e_crl_dp_malformed");

    // Subject alternative names.
    let mut c = Case::leaf("tls-server");
    c.remove(oid::SUBJECT_ALT_NAME);
    check(&c, "e_san_missing");
    let mut c = Case::leaf("tls-server");
    let mail = GeneralName::Rfc822Name(Ia5String::new("ops@eport.example").unwrap());
    c.set(oid::SUBJECT_ALT_NAME, false, &SubjectAltName(vec![dns("swapi.eport.example"), mail]));
    check(&c, "e_san_not_dns");
    let mut c = Case::leaf("tls-server");
    c.set(oid::SUBJECT_ALT_NAME, false, &SubjectAltName(vec![dns("swapi.eport.example"), dns("Bad_Name.example")]));
    check(&c, "e_san_dns_invalid");
    let mut c = Case::leaf("tls-server");
    c.set(oid::SUBJECT_ALT_NAME, false, &SubjectAltName(vec![dns("other.eport.example")]));
    check(&c, "e_subject_cn_not_in_san");

    // Subject names.
    let mut c = Case::leaf("officer");
    c.subject_value(ObjectIdentifier::new_unwrap("2.5.4.7"), utf8("福州"));
    check(&c, "e_subject_attribute_not_in_profile");
    let mut c = Case::leaf("officer");
    c.tbs().subject.0.retain(|rdn| rdn.0.iter().all(|a| a.oid != oid::AT_TITLE));
    check(&c, "e_subject_attribute_missing");
    let mut c = Case::leaf("officer");
    let cn = c.tbs().subject.0.last().unwrap().clone();
    c.tbs().subject.0.push(cn);
    check(&c, "e_subject_attribute_repeated");
    let mut c = Case::leaf("officer");
    c.subject_value(oid::AT_COMMON_NAME, printable("Wang Wu"));
    check(&c, "e_subject_attribute_encoding");
    let mut c = Case::leaf("officer");
    c.subject_value(oid::AT_COMMON_NAME, utf8(&"王".repeat(65)));
    check(&c, "e_subject_value_length");
    let mut c = Case::leaf("officer");
    c.subject_value(oid::AT_COUNTRY_NAME, printable("US"));
    check(&c, "e_subject_country_not_cn");
    let mut c = Case::leaf("officer");
    c.subject_value(oid::AT_TITLE, utf8("root"));
    check(&c, "e_subject_officer_role_invalid");
    let mut c = Case::leaf("agency");
    c.subject_value(oid::AT_SERIAL_NUMBER, printable("bad code"));
    check(&c, "e_subject_agency_code_invalid");
    let mut c = Case::leaf("enterprise-operator");
    c.subject_value(oid::AT_ORGANIZATION_IDENTIFIER, printable("NTRCN-91350100M000100Y44"));
    check(&c, "e_subject_uscc_invalid");
    let mut c = Case::leaf("enterprise-operator");
    c.subject_value(oid::AT_ORGANIZATION_IDENTIFIER, printable("USCC-91350100M000100Y43"));
    check(&c, "e_subject_uscc_invalid");
    let mut c = Case::leaf("enterprise-legal-rep");
    c.remove(oid::GMT0015_USCC);
    check(&c, "e_uscc_extension_missing");
    let mut c = Case::leaf("enterprise-legal-rep");
    c.set(oid::GMT0015_USCC, false, &der::asn1::PrintableStringRef::new("91110000600037341L").unwrap());
    check(&c, "e_uscc_extension_mismatch");

    fired
}

#[test]
fn every_lint_fires_on_a_certificate_broken_for_it() {
    let fired = run_all_cases();
    let all: BTreeSet<&str> = LINTS.iter().map(|(id, _)| *id).collect();
    let untested: Vec<_> = all.difference(&fired).collect();
    assert!(untested.is_empty(), "lints without a firing test: {untested:?}");
}

#[test]
fn lint_ids_are_unique_and_prefixed_by_level() {
    let mut seen = BTreeSet::new();
    for (id, description) in LINTS {
        assert!(seen.insert(*id), "{id} twice");
        assert!(id.starts_with("e_") || id.starts_with("w_"), "{id}");
        assert!(!description.is_empty());
    }
}

#[test]
fn warnings_are_warnings_and_errors_errors() {
    let mut c = Case::leaf("tls-client");
    c.issuer = None;
    let findings = lint(&c.cert, &c.profile, None, now());
    assert!(findings.iter().all(|f| f.level == Level::Warning && !f.is_error()), "{findings:?}");
    let mut c = Case::leaf("tls-client");
    c.tbs().version = Version::V1;
    let findings = lint(&c.cert, &c.profile, c.issuer.as_ref(), now());
    assert!(findings.iter().any(Finding::is_error));
}

#[test]
fn a_subject_value_of_another_string_type_is_reported_not_ignored() {
    let mut c = Case::leaf("officer");
    let ia5 = Any::new(Tag::Ia5String, "Wang Wu".as_bytes()).unwrap();
    c.subject_value(oid::AT_COMMON_NAME, ia5);
    c.fires("e_subject_attribute_encoding");
}
