//! Shared by the integration tests: a root → issuing CA → end-entity chain for every profile,
//! with software keys, at a fixed time.

#![allow(dead_code)] // each test file uses part of this
#![allow(clippy::unwrap_used)] // test helpers

use policies::{IssueRequest, IssuerUrls, OfficerRole, Profile, Profiles, SubjectData, issue, random_serial};
use signer_lib::key::software::SoftwareKey;
use signer_lib::{SignatureAlgorithm, Signer};
use time::{Duration, OffsetDateTime};
use x509_cert::Certificate;

/// 2026-12-01T00:00:00Z: the fixed time of issuance.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_796_083_200).unwrap()
}

/// The URLs the certificates get (those their profile includes).
pub fn urls() -> IssuerUrls {
    IssuerUrls {
        ocsp: Some("http://ocsp.eport.example/".into()),
        ca_issuers: Some("http://pki.eport.example/issuing.cer".into()),
        crl: Some("http://pki.eport.example/issuing.crl".into()),
    }
}

/// Subject data that fits each shipped profile.
pub fn subject_for(profile: &Profile) -> SubjectData {
    let org = "电子口岸示例数据中心".to_owned();
    match profile.id.as_str() {
        "root-ca" => SubjectData::Authority { organization: org, common_name: "E-Port Example Root CA".into() },
        "issuing-ca" => SubjectData::Authority { organization: org, common_name: "E-Port Example Issuing CA".into() },
        "enterprise-legal-rep" | "enterprise-operator" => SubjectData::Enterprise {
            uscc: "91350100M000100Y43".into(),
            name: "福州示例进出口有限公司".into(),
            person_name: "张三".into(),
        },
        "agency" => SubjectData::Agency { agency_code: "CUSTOMS-3501".into(), name: "福州海关（示例）".into() },
        "tls-server" => SubjectData::Platform {
            common_name: "swapi.eport.example".into(),
            dns_names: vec!["swapi.eport.example".into(), "swapi2.eport.example".into()],
        },
        "tls-client" => SubjectData::Platform { common_name: "CIQ platform gateway".into(), dns_names: vec![] },
        "officer" => SubjectData::Officer { name: "王五".into(), role: OfficerRole::Security },
        "ocsp-signer" => {
            SubjectData::Authority { organization: org, common_name: "E-Port Example OCSP Responder 1".into() }
        }
        "tsa" => SubjectData::Authority { organization: org, common_name: "E-Port Example TSA 1".into() },
        other => panic!("no test subject for profile {other}"),
    }
}

/// A request valid from [`now`] for the profile's maximum.
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

/// A root, an issuing CA and one end-entity certificate per end-entity profile, all keys of
/// one algorithm.
pub struct Chain {
    pub algorithm: SignatureAlgorithm,
    pub root: Certificate,
    pub issuing: Certificate,
    /// (profile id, certificate) for every end-entity profile.
    pub leaves: Vec<(String, Certificate)>,
}

pub fn chain(algorithm: SignatureAlgorithm) -> Chain {
    let profiles = Profiles::embedded().unwrap();
    let root_key = SoftwareKey::generate(algorithm).unwrap();
    let root_profile = profiles.get("root-ca").unwrap();
    let root = issue(None, &root_key, &request(root_profile, root_key.public_key_der()), now()).unwrap();
    let ca_key = SoftwareKey::generate(algorithm).unwrap();
    let ca_profile = profiles.get("issuing-ca").unwrap();
    let issuing = issue(Some(&root), &root_key, &request(ca_profile, ca_key.public_key_der()), now()).unwrap();
    let mut leaves = Vec::new();
    for profile in profiles.iter().filter(|p| !p.is_ca()) {
        let key_algorithm = match algorithm {
            SignatureAlgorithm::Sm2Sm3 => policies::profile::KeyAlgorithm::Sm2,
            _ => policies::profile::KeyAlgorithm::P256,
        };
        if !profile.allows(key_algorithm) {
            continue;
        }
        let key = SoftwareKey::generate(algorithm).unwrap();
        let cert = issue(Some(&issuing), &ca_key, &request(profile, key.public_key_der()), now())
            .unwrap_or_else(|e| panic!("{}: {e}", profile.id));
        leaves.push((profile.id.clone(), cert));
    }
    Chain { algorithm, root, issuing, leaves }
}

/// PEM of a certificate.
pub fn pem(cert: &Certificate) -> String {
    use der::EncodePem;
    cert.to_pem(der::pem::LineEnding::LF).unwrap()
}
