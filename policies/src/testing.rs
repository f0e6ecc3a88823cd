//! Test fixtures: a root and an issuing CA with software keys, and end-entity certificates
//! of every profile, at a fixed time.

use signer_lib::key::software::SoftwareKey;
use signer_lib::{SignatureAlgorithm, Signer};
use time::{Duration, OffsetDateTime};
use x509_cert::Certificate;

use crate::issuer::{IssueRequest, IssuerUrls, issue};
use crate::profile::Profile;
use crate::serial::random_serial;
use crate::subject::{OfficerRole, SubjectData};

/// 2026-12-01T00:00:00Z: the fixed "now" of the tests.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_796_083_200).unwrap()
}

/// The URLs every test certificate gets (those its profile includes).
pub fn urls() -> IssuerUrls {
    IssuerUrls {
        ocsp: Some("http://ocsp.eport.example/".into()),
        ca_issuers: Some("http://pki.eport.example/issuing.cer".into()),
        crl: Some("http://pki.eport.example/issuing.crl".into()),
    }
}

/// Subject data that fits each profile.
pub fn subject_for(profile: &Profile) -> SubjectData {
    match profile.id.as_str() {
        "root-ca" => SubjectData::Authority {
            organization: "电子口岸示例数据中心".into(),
            common_name: "E-Port Example Root CA".into(),
        },
        "issuing-ca" => SubjectData::Authority {
            organization: "电子口岸示例数据中心".into(),
            common_name: "E-Port Example Issuing CA".into(),
        },
        "enterprise-legal-rep" => SubjectData::Enterprise {
            uscc: "91350100M000100Y43".into(),
            name: "福州示例进出口有限公司".into(),
            person_name: "张三".into(),
        },
        "enterprise-operator" => SubjectData::Enterprise {
            uscc: "91350100M000100Y43".into(),
            name: "福州示例进出口有限公司".into(),
            person_name: "李四".into(),
        },
        "agency" => SubjectData::Agency { agency_code: "CUSTOMS-3501".into(), name: "福州海关（示例）".into() },
        "tls-server" => SubjectData::Platform {
            common_name: "swapi.eport.example".into(),
            dns_names: vec!["swapi.eport.example".into(), "swapi2.eport.example".into()],
        },
        "tls-client" => SubjectData::Platform { common_name: "CIQ platform gateway".into(), dns_names: vec![] },
        "officer" => SubjectData::Officer { name: "王五".into(), role: OfficerRole::Security },
        "ocsp-signer" => SubjectData::Authority {
            organization: "电子口岸示例数据中心".into(),
            common_name: "E-Port Example OCSP Responder 1".into(),
        },
        "tsa" => SubjectData::Authority {
            organization: "电子口岸示例数据中心".into(),
            common_name: "E-Port Example TSA 1".into(),
        },
        other => panic!("no test subject for profile {other}"),
    }
}

/// A request for a certificate of `profile` for `spki_der`, valid from `now` for the
/// profile's maximum.
pub fn request<'a>(profile: &'a Profile, spki_der: &[u8]) -> IssueRequest<'a> {
    let not_before = now();
    let not_after = not_before + Duration::days(i64::from(profile.max_validity_days.get())) - Duration::SECOND;
    IssueRequest {
        profile,
        subject: subject_for(profile),
        subject_spki_der: spki_der.to_vec(),
        not_before,
        not_after,
        serial: random_serial(),
        urls: urls(),
    }
}

/// A root and an issuing CA.
pub struct Hierarchy {
    pub root_key: SoftwareKey,
    pub root: Certificate,
    pub ca_key: SoftwareKey,
    pub ca: Certificate,
}

impl Hierarchy {
    /// A root and an issuing CA, both of `algorithm`.
    pub fn new(algorithm: SignatureAlgorithm) -> Self {
        let root_key = SoftwareKey::generate(algorithm).unwrap();
        let root_profile = Profile::by_id("root-ca").unwrap();
        let root = issue(None, &root_key, &request(&root_profile, root_key.public_key_der()), now()).unwrap();
        let ca_key = SoftwareKey::generate(algorithm).unwrap();
        let ca_profile = Profile::by_id("issuing-ca").unwrap();
        let ca = issue(Some(&root), &root_key, &request(&ca_profile, ca_key.public_key_der()), now()).unwrap();
        Self { root_key, root, ca_key, ca }
    }

    /// An end-entity certificate of `profile` for a fresh key of `algorithm`.
    pub fn leaf(&self, profile: &Profile, algorithm: SignatureAlgorithm) -> Certificate {
        let key = SoftwareKey::generate(algorithm).unwrap();
        issue(Some(&self.ca), &self.ca_key, &request(profile, key.public_key_der()), now())
            .unwrap_or_else(|e| panic!("{}: {e}", profile.id))
    }
}
