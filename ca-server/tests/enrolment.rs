//! Registration → approval → enrolment → issuance, renewal, and every kind of bad input
//! (a typed error, nothing stored, audited).
#![allow(clippy::unwrap_used)]

mod common;

use ca_server::{Approval, CertificateFilter, Error, RegistrationRequest, RegistrationStatus};
use common::{Fixture, USCC, backends, cert, csr, der_of, openssl, openssl_csr};
use der::{Decode, Encode};
use signer_lib::SignatureAlgorithm;
use signer_lib::audit::{EventType, Outcome, QueryFilter};

/// The number of certificates in any state (issued, reserved, abandoned).
async fn rows(f: &Fixture) -> usize {
    let mut n = 0;
    for status in ["good", "issuing", "abandoned", "revoked", "hold"] {
        let filter = CertificateFilter { status: Some(status.into()), ..CertificateFilter::default() };
        n += f.ca.list_certificates(&f.security1, filter).await.unwrap().len();
    }
    n
}

/// The failures audited for `event`.
async fn audited_failures(f: &Fixture, event: EventType) -> Vec<String> {
    let filter = QueryFilter { event: Some(event), ..QueryFilter::default() };
    f.ca.audit_log()
        .query(&filter)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.record.outcome {
            Outcome::Failure(reason) => Some(reason),
            Outcome::Success => None,
        })
        .collect()
}

#[tokio::test]
async fn enrols_p256_and_sm2_keys_with_the_subject_of_the_registration() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let (id, code) = f.approved_enterprise().await;
        let (_key, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
        let issued = f.ca.enrol(&Fixture::anonymous([10, 0, 0, 1]), &code, &pem).await.unwrap();
        assert_eq!((issued.issuer.as_str(), issued.profile.as_str()), ("p256", "enterprise-legal-rep"));
        assert_eq!(issued.chain_pem.len(), 2);
        let leaf = cert(&issued.certificate_pem);
        let subject = leaf.tbs_certificate.subject.to_string();
        let subject_der = leaf.tbs_certificate.subject.to_der().unwrap();
        assert!(subject_der.windows(24).any(|w| w == b"NTRCN-91350100M000100Y43"), "{subject}");
        assert!(subject.contains("张三") && subject.contains("福州示例进出口有限公司"), "{subject}");
        assert!(!subject.contains("Ignored Subject"), "the CSR's subject leaked: {subject}");
        assert_eq!(hex::encode(leaf.tbs_certificate.serial_number.as_bytes()), issued.serial_hex);
        // OpenSSL verifies it with the returned chain.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("leaf.pem"), &issued.certificate_pem).unwrap();
        std::fs::write(dir.path().join("issuing.pem"), &issued.chain_pem[0]).unwrap();
        std::fs::write(dir.path().join("root.pem"), &issued.chain_pem[1]).unwrap();
        let (ok, out) =
            openssl(dir.path(), &["verify", "-CAfile", "root.pem", "-untrusted", "issuing.pem", "leaf.pem"]);
        assert!(ok, "{out}");
        let registration = f.ca.registration(&f.audit, &id).await.unwrap();
        assert_eq!(registration.status, RegistrationStatus::Enrolled);

        // An agency (dual control) with an SM2 key goes to the SM2 issuer.
        let (_, code) = f.approved_agency().await;
        let (_key, pem) = csr(SignatureAlgorithm::Sm2Sm3);
        let issued = f.ca.enrol(&Fixture::anonymous([10, 0, 0, 2]), &code, &pem).await.unwrap();
        assert_eq!((issued.issuer.as_str(), issued.profile.as_str()), ("sm2", "agency"));
        std::fs::write(dir.path().join("sm2.pem"), &issued.certificate_pem).unwrap();
        std::fs::write(dir.path().join("sm2-issuing.pem"), &issued.chain_pem[0]).unwrap();
        std::fs::write(dir.path().join("sm2-root.pem"), &issued.chain_pem[1]).unwrap();
        // OpenSSL 3 applies -vfyopt to one signature only: check each link.
        for (issuer, cert) in [("sm2-root.pem", "sm2-issuing.pem"), ("sm2-issuing.pem", "sm2.pem")] {
            let (ok, out) = openssl(
                dir.path(),
                &["verify", "-vfyopt", "distid:1234567812345678", "-partial_chain", "-CAfile", issuer, cert],
            );
            assert!(ok, "{cert}: {out}");
        }

        // Listed, by USCC, for both officer roles.
        let filter = CertificateFilter { uscc: Some(USCC.into()), ..CertificateFilter::default() };
        let listed = f.ca.list_certificates(&f.audit, filter).await.unwrap();
        assert_eq!(listed.len(), 1);
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn dual_control_needs_two_different_officers() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let reg =
            f.ca.register(
                &f.security1,
                RegistrationRequest::Agency {
                    agency_code: "TAX-3501".into(),
                    name: "税务局".into(),
                    profile: "agency".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(reg.approvals_needed, 2);
        let first = f.ca.approve(&f.security1, &reg.id).await.unwrap();
        assert!(matches!(first, Approval::Pending { approvals: 1, needed: 2, .. }), "{first:?}");
        let again = f.ca.approve(&f.security1, &reg.id).await.unwrap_err();
        assert!(matches!(again, Error::Conflict { .. }), "{again}");
        let second = f.ca.approve(&f.security2, &reg.id).await.unwrap();
        let Approval::Code { code, expires_at, max_attempts, .. } = second else { panic!("{second:?}") };
        assert!(code.starts_with(&format!("{}.", reg.id)) && code.len() == 16 + 1 + 26, "{code}");
        assert_eq!(max_attempts, 5);
        assert!(expires_at > time::OffsetDateTime::now_utc().unix_timestamp() + 71 * 3600);
        // Approved is final.
        let third = f.ca.approve(&f.security2, &reg.id).await.unwrap_err();
        assert!(matches!(third, Error::Conflict { .. }), "{third}");
        assert!(audited_failures(&f, EventType::Approval).await.len() >= 2);
        let reg = f.ca.registration(&f.security1, &reg.id).await.unwrap();
        assert_eq!(reg.approvals.len(), 2);
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn refuses_bad_registrations() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let enterprise = |uscc: &str, profile: &str| RegistrationRequest::Enterprise {
            uscc: uscc.into(),
            name: "某公司".into(),
            legal_representative: "张三".into(),
            person_name: None,
            profile: profile.into(),
            authorisation: None,
        };
        for (req, what) in [
            (enterprise(USCC, "no-such-profile"), "profile"),
            (enterprise(USCC, "agency"), "profile"),
            (enterprise(USCC, "tls-server"), "profile"),
            (enterprise(USCC, "root-ca"), "profile"),
            (enterprise("91350100M000100Y44", "enterprise-legal-rep"), "uscc"),
            (enterprise("123", "enterprise-operator"), "uscc"),
            (
                RegistrationRequest::Agency {
                    agency_code: "bad code!".into(),
                    name: "x".into(),
                    profile: "agency".into(),
                },
                "subject",
            ),
        ] {
            let err = f.ca.register(&f.security1, req).await.unwrap_err();
            assert!(matches!(err, Error::BadRequest { what: w, .. } if w == what), "expected {what}: {err}");
        }
        assert_eq!(audited_failures(&f, EventType::Registration).await.len(), 7);
        // The JSON form: unknown fields are refused, the agency profile defaults.
        let json: Result<RegistrationRequest, _> =
            serde_json::from_str(r#"{"kind":"agency","agency_code":"CIQ-1","name":"x","extra":1}"#);
        assert!(json.is_err());
        let json: RegistrationRequest =
            serde_json::from_str(r#"{"kind":"agency","agency_code":"CIQ-1","name":"x"}"#).unwrap();
        assert!(matches!(json, RegistrationRequest::Agency { ref profile, .. } if profile == "agency"));
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn refuses_bad_requests_and_keeps_the_code() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let (_, code) = f.approved_enterprise().await;
        let before = rows(&f).await;
        let anon = Fixture::anonymous([10, 0, 0, 3]);
        let tmp = tempfile::tempdir().unwrap();

        // Garbage and oversized.
        let err =
            f.ca.enrol(&anon, &code, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
                .await;
        assert!(matches!(err, Err(Error::BadRequest { what: "csr", .. })), "{err:?}");
        let err = f.ca.enrol(&anon, &code, "not a request at all").await;
        assert!(matches!(err, Err(Error::BadRequest { what: "csr", .. })), "{err:?}");
        let (_, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
        let huge = format!("{pem}{}", " ".repeat(20_000));
        let err = f.ca.enrol(&anon, &code, &huge).await;
        assert!(
            matches!(err, Err(Error::BadRequest { what: "csr", ref reason }) if reason.contains("limit")),
            "{err:?}"
        );

        // A request whose signature does not verify (no proof of possession).
        let key = signer_lib::key::software::SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        let mut req = signer_lib::csr::build(&key, "CN=x").unwrap();
        req.info.subject = signer_lib::csr::parse_name("CN=y").unwrap();
        let tampered = signer_lib::csr::to_pem(&req).unwrap();
        let err = f.ca.enrol(&anon, &code, &tampered).await;
        assert!(
            matches!(err, Err(Error::BadRequest { what: "csr", ref reason }) if reason.contains("proof of possession")),
            "{err:?}"
        );

        // Keys the profile does not allow: RSA-1024, P-384, Ed25519.
        for args in [
            &["-newkey", "rsa:1024"][..],
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
            &["-newkey", "ed25519"][..],
        ] {
            let pem = openssl_csr(tmp.path(), args);
            let err = f.ca.enrol(&anon, &code, &pem).await;
            assert!(matches!(err, Err(Error::BadRequest { what: "key", .. })), "{args:?}: {err:?}");
        }
        // Nothing was stored, every refusal was audited, and the code still works.
        assert_eq!(rows(&f).await, before);
        assert!(audited_failures(&f, EventType::Enrolment).await.len() >= 7);
        let (_, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
        f.ca.enrol(&anon, &code, &pem).await.unwrap();
        assert_eq!(rows(&f).await, before + 1);
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn refuses_wrong_expired_reused_and_guessed_codes_alike() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let (_, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
        let before = rows(&f).await;

        // Reused.
        let (_, code) = f.approved_enterprise().await;
        f.ca.enrol(&Fixture::anonymous([10, 1, 0, 1]), &code, &pem).await.unwrap();
        let reused = f.ca.enrol(&Fixture::anonymous([10, 1, 0, 2]), &code, &pem).await.unwrap_err();
        // Wrong secret for a real registration; malformed; unknown registration.
        let (id, code) = f.approved_enterprise().await;
        let wrong =
            f.ca.enrol(&Fixture::anonymous([10, 1, 0, 3]), &format!("{id}.{}", "A".repeat(26)), &pem)
                .await
                .unwrap_err();
        let malformed = f.ca.enrol(&Fixture::anonymous([10, 1, 0, 4]), "letmein", &pem).await.unwrap_err();
        let unknown =
            f.ca.enrol(&Fixture::anonymous([10, 1, 0, 5]), &format!("0000000000000000.{}", "A".repeat(26)), &pem)
                .await
                .unwrap_err();
        // Expired: 72 hours later.
        f.clock.advance(time::Duration::hours(72));
        let expired = f.ca.enrol(&Fixture::anonymous([10, 1, 0, 6]), &code, &pem).await.unwrap_err();
        for err in [&reused, &wrong, &malformed, &unknown, &expired] {
            assert!(matches!(err, Error::CodeInvalid), "{err}");
            assert_eq!(err.to_string(), "the enrolment code is not valid");
        }
        // The audit log says which.
        let reasons = audited_failures(&f, EventType::Enrolment).await.join("\n");
        for reason in ["already used", "wrong enrolment code", "malformed", "no enrolment code", "expired"] {
            assert!(reasons.contains(reason), "{reason} not in:\n{reasons}");
        }
        assert_eq!(rows(&f).await, before + 1);
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn burns_a_code_after_too_many_wrong_attempts() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let (id, code) = f.approved_enterprise().await;
        let (_, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
        // From different addresses, so that no source lockout interferes.
        for i in 0..5u8 {
            let guess = format!("{id}.{}", "B".repeat(26));
            let err = f.ca.enrol(&Fixture::anonymous([10, 2, 0, i]), &guess, &pem).await.unwrap_err();
            assert!(matches!(err, Error::CodeInvalid));
        }
        // The right code is refused now, indistinguishably.
        let err = f.ca.enrol(&Fixture::anonymous([10, 2, 1, 1]), &code, &pem).await.unwrap_err();
        assert!(matches!(err, Error::CodeInvalid), "{err}");
        let reasons = audited_failures(&f, EventType::Enrolment).await.join("\n");
        assert!(reasons.contains("burnt"), "{reasons}");
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn locks_out_a_source_that_keeps_guessing() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let (_, code) = f.approved_enterprise().await;
        let (_, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
        let guesser = Fixture::anonymous([192, 0, 2, 7]);
        for _ in 0..5 {
            let err = f.ca.enrol(&guesser, "0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAA", &pem).await.unwrap_err();
            assert!(matches!(err, Error::CodeInvalid), "{err}");
        }
        // Locked: even the right code is refused from there, for 30 minutes.
        let err = f.ca.enrol(&guesser, &code, &pem).await.unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        let filter = QueryFilter { event: Some(EventType::Lockout), ..QueryFilter::default() };
        assert_eq!(f.ca.audit_log().query(&filter).await.unwrap().len(), 1);
        f.clock.advance(time::Duration::minutes(31));
        f.ca.enrol(&guesser, &code, &pem).await.unwrap();
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn renews_with_the_same_subject_and_profile() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let (_, code) = f.approved_enterprise().await;
        let (_, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
        let first = f.ca.enrol(&Fixture::anonymous([10, 3, 0, 1]), &code, &pem).await.unwrap();
        let subscriber = f.ca.identify(&der_of(&first.certificate_pem), None, "t-sub").await.unwrap();
        assert_eq!(subscriber.role, Some(ca_server::Role::Subscriber));
        let (_, pem) = csr(SignatureAlgorithm::Sm2Sm3);
        let second = f.ca.renew(&subscriber, &pem).await.unwrap();
        assert_ne!(second.serial_hex, first.serial_hex);
        assert_eq!(second.profile, first.profile);
        assert_eq!(second.issuer, "sm2");
        assert_eq!(
            cert(&second.certificate_pem).tbs_certificate.subject.to_der().unwrap(),
            cert(&first.certificate_pem).tbs_certificate.subject.to_der().unwrap()
        );
        // An officer cannot renew through this path; nor can an anonymous caller.
        let err = f.ca.renew(&f.security1, &pem).await.unwrap_err();
        assert!(matches!(err, Error::Forbidden { .. }), "{err}");
        let err = f.ca.renew(&Fixture::anonymous([10, 3, 0, 2]), &pem).await.unwrap_err();
        assert!(matches!(err, Error::Forbidden { .. }), "{err}");
        // After revocation the old certificate no longer identifies anyone.
        f.ca.revoke(&f.security1, &first.serial_hex, "superseded").await.unwrap();
        let err = f.ca.identify(&der_of(&first.certificate_pem), None, "t-sub").await.unwrap_err();
        assert!(matches!(err, Error::Unauthenticated { .. }), "{err}");
        let err = f.ca.renew(&subscriber, &pem).await.unwrap_err();
        assert!(matches!(err, Error::Unauthenticated { .. }), "{err}");
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn certificates_pass_pkilint() {
    if std::process::Command::new("lint_pkix_cert").arg("--help").output().is_err() {
        eprintln!("notice: pkilint (lint_pkix_cert) is not installed; skipping");
        return;
    }
    let backend = common::sqlite();
    let f = Fixture::new(&backend).await;
    let (_, code) = f.approved_enterprise().await;
    let (_, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
    let issued = f.ca.enrol(&Fixture::anonymous([10, 4, 0, 1]), &code, &pem).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("leaf.pem"), &issued.certificate_pem).unwrap();
    let out = std::process::Command::new("lint_pkix_cert")
        .current_dir(dir.path())
        .args(["lint", "-s", "ERROR", "leaf.pem"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.trim().is_empty(), "pkilint found errors:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    // The certificate decodes back from what we returned.
    x509_cert::Certificate::from_der(&der_of(&issued.certificate_pem)).unwrap();
    f.close(&backend).await;
}
