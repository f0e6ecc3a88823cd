//! Operator registrations need the legal representative's signed authorisation (R55, R56):
//! accepted only when it verifies, was signed by an active legal-representative certificate
//! of the same USCC that this CA issued, names the registered operator, who is not the legal
//! representative, and was not used before.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::SystemTime;

use ca_server::{Error, RegistrationRequest};
use common::{Fixture, USCC, backends, cert, csr};
use policies::authorisation::OperatorAuthorisation;
use signer_lib::SignatureAlgorithm;
use signer_lib::audit::{EventType, Outcome, QueryFilter};
use signer_lib::envelope::{self, SignOptions, SignerEntry};
use signer_lib::key::software::SoftwareKey;
use time::Duration;

const HASH: &str = "5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5";

fn operator(name: &str, authorisation: Option<String>) -> RegistrationRequest {
    RegistrationRequest::Enterprise {
        uscc: USCC.into(),
        name: "福州示例进出口有限公司".into(),
        legal_representative: "张三".into(),
        person_name: Some(name.into()),
        profile: "enterprise-operator".into(),
        authorisation,
    }
}

/// The PEM of an attached CMS over `document`, signed by `key` with `certificate`.
fn sign(document: &OperatorAuthorisation, key: &SoftwareKey, certificate: &x509_cert::Certificate) -> String {
    let options = SignOptions { detached: false, signing_time: SystemTime::now(), oids: None };
    let der = envelope::sign(
        &document.to_bytes().unwrap(),
        &[SignerEntry { signer: key, certificate, chain: &[] }],
        &options,
    )
    .unwrap();
    envelope::to_pem(&der)
}

fn bad_authorisation(result: Result<ca_server::Registration, Error>, needle: &str) {
    match result {
        Err(Error::BadRequest { what: "authorisation", reason }) => {
            assert!(reason.contains(needle), "expected {needle:?} in {reason:?}");
        }
        other => panic!("expected a bad authorisation ({needle}), got {other:?}"),
    }
}

#[tokio::test]
async fn operator_registrations_need_a_valid_authorisation() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        // The legal representative enrols (張三, enterprise-legal-rep).
        let (_, code) = f.approved_enterprise().await;
        let (rep_key, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
        let issued = f.ca.enrol(&Fixture::anonymous([10, 6, 0, 1]), &code, &pem).await.unwrap();
        let rep_cert = cert(&issued.certificate_pem);
        let now = time::OffsetDateTime::now_utc();
        let document = |name: &str| OperatorAuthorisation::new(USCC, name, HASH, now, Duration::days(30)).unwrap();

        // Accepted: signed by the legal representative, naming the operator.
        let good = sign(&document("李四"), &rep_key, &rep_cert);
        let reg = f.ca.register(&f.security1, operator("李四", Some(good.clone()))).await.unwrap();
        assert_eq!(reg.person_name, "李四");
        assert_eq!(reg.profile, "enterprise-operator");
        // The same authorisation again (even re-encoded as base64 DER) is a replay.
        bad_authorisation(f.ca.register(&f.security1, operator("李四", Some(good.clone()))).await, "already used");
        let b64: String = good.lines().filter(|l| !l.starts_with("-----")).collect();
        bad_authorisation(f.ca.register(&f.security1, operator("李四", Some(b64))).await, "already used");

        // Refused: no authorisation at all.
        bad_authorisation(f.ca.register(&f.security1, operator("王五", None)).await, "needs the legal representative");
        // Refused: naming someone other than the registered operator.
        let other = sign(&document("赵六"), &rep_key, &rep_cert);
        bad_authorisation(f.ca.register(&f.security1, operator("王五", Some(other))).await, "authorises");
        // Refused: naming the legal representative themself.
        let himself = sign(&document("张三"), &rep_key, &rep_cert);
        bad_authorisation(f.ca.register(&f.security1, operator("张三", Some(himself))).await, "different person");
        // Refused: a look-alike certificate this CA did not issue (self-signed, same subject).
        let stranger = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        let fake = signer_lib::certificate::self_signed_end_entity(
            &stranger,
            &rep_cert.tbs_certificate.subject.to_string(),
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let forged = sign(&document("王五"), &stranger, &fake);
        bad_authorisation(f.ca.register(&f.security1, operator("王五", Some(forged))).await, "did not issue");
        // Refused: a tampered document (one byte of the content changed).
        let tampered = {
            let pem = sign(&document("王五"), &rep_key, &rep_cert);
            let der = envelope_der(&pem);
            let at = der.windows(6).position(|w| w == "王五".as_bytes()).unwrap();
            let mut der = der;
            der[at + 5] ^= 1;
            base64_of(&der)
        };
        bad_authorisation(f.ca.register(&f.security1, operator("王五", Some(tampered))).await, "does not verify");
        // Refused: garbage.
        bad_authorisation(f.ca.register(&f.security1, operator("王五", Some("%%%".into()))).await, "base64");
        // Refused: signed with an operator's (not a legal representative's) certificate.
        let approval = f.ca.approve(&f.security1, &reg.id).await.unwrap();
        let ca_server::Approval::Code { code: op_code, .. } = approval else { panic!("{approval:?}") };
        let (op_key, op_csr) = csr(SignatureAlgorithm::EcdsaP256Sha256);
        let op_issued = f.ca.enrol(&Fixture::anonymous([10, 6, 0, 2]), &op_code, &op_csr).await.unwrap();
        let by_operator = sign(&document("王五"), &op_key, &cert(&op_issued.certificate_pem));
        bad_authorisation(f.ca.register(&f.security1, operator("王五", Some(by_operator))).await, "only the legal");
        // Refused: an authorisation on a legal-rep profile registration.
        let mut rep_again = operator("张三", Some(sign(&document("王五"), &rep_key, &rep_cert)));
        if let RegistrationRequest::Enterprise { profile, .. } = &mut rep_again {
            *profile = "enterprise-legal-rep".into();
        }
        bad_authorisation(f.ca.register(&f.security1, rep_again).await, "only enterprise-operator");
        // Refused: once the legal representative's certificate is revoked.
        let valid_before = sign(&document("王五"), &rep_key, &rep_cert);
        f.ca.revoke(&f.security1, &issued.serial_hex, "superseded").await.unwrap();
        bad_authorisation(f.ca.register(&f.security1, operator("王五", Some(valid_before))).await, "revoked");

        // Every refusal is audited as a failed registration.
        let failures =
            f.ca.audit_log()
                .query(&QueryFilter { event: Some(EventType::Registration), ..QueryFilter::default() })
                .await
                .unwrap()
                .into_iter()
                .filter(|r| matches!(r.record.outcome, Outcome::Failure(_)))
                .count();
        assert_eq!(failures, 11);
        f.close(&backend).await;
    }
}

fn envelope_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

fn base64_of(der: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(der)
}
