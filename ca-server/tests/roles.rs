//! Separation of the three administrator roles (三权分立), identification from client
//! certificates, and lockout after repeated authentication failures.
#![allow(clippy::unwrap_used)]

mod common;

use ca_server::{Caller, CertificateFilter, Error, RegistrationRequest, Role};
use common::{Fixture, USCC, backends, csr, der_of};
use signer_lib::SignatureAlgorithm;
use signer_lib::audit::{Actor, EventType, Outcome, QueryFilter};

fn enterprise() -> RegistrationRequest {
    RegistrationRequest::Enterprise {
        uscc: USCC.into(),
        name: "某公司".into(),
        legal_representative: "张三".into(),
        person_name: None,
        profile: "enterprise-legal-rep".into(),
        authorisation: None,
    }
}

/// Every RA call `caller` makes is refused with Forbidden.
async fn refused_everything(f: &Fixture, caller: &Caller, registration_id: &str, serial: &str) {
    let forbidden =
        |r: Result<(), Error>, what: &str| assert!(matches!(r, Err(Error::Forbidden { .. })), "{what}: {r:?}");
    forbidden(f.ca.register(caller, enterprise()).await.map(drop), "register");
    forbidden(f.ca.approve(caller, registration_id).await.map(drop), "approve");
    forbidden(f.ca.revoke(caller, serial, "keyCompromise").await.map(drop), "revoke");
    forbidden(f.ca.hold(caller, serial).await.map(drop), "hold");
    forbidden(f.ca.release(caller, serial).await.map(drop), "release");
}

#[tokio::test]
async fn roles_are_disjoint_and_checked_in_the_service() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let reg = f.ca.register(&f.security1, enterprise()).await.unwrap();
        let (_, code) = f.approved_enterprise().await;
        let (_, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
        let issued = f.ca.enrol(&Fixture::anonymous([10, 5, 0, 1]), &code, &pem).await.unwrap();
        let subscriber = f.ca.identify(&der_of(&issued.certificate_pem), None, "t").await.unwrap();
        let anonymous = Fixture::anonymous([10, 5, 0, 2]);

        // The system administrator runs the service: no RA powers, and cannot read certificates.
        refused_everything(&f, &f.admin, &reg.id, &issued.serial_hex).await;
        let err = f.ca.list_certificates(&f.admin, CertificateFilter::default()).await.unwrap_err();
        assert!(matches!(err, Error::Forbidden { .. }), "{err}");
        // The audit officer reads only.
        refused_everything(&f, &f.audit, &reg.id, &issued.serial_hex).await;
        assert!(!f.ca.list_certificates(&f.audit, CertificateFilter::default()).await.unwrap().is_empty());
        f.ca.registration(&f.audit, &reg.id).await.unwrap();
        // Subscribers and anonymous callers have no RA or read powers.
        for caller in [&subscriber, &anonymous] {
            let err = f.ca.register(caller, enterprise()).await.unwrap_err();
            assert!(matches!(err, Error::Forbidden { .. }), "{err}");
            let err = f.ca.list_certificates(caller, CertificateFilter::default()).await.unwrap_err();
            assert!(matches!(err, Error::Forbidden { .. }), "{err}");
            let err = f.ca.approve(caller, &reg.id).await.unwrap_err();
            assert!(matches!(err, Error::Forbidden { .. }), "{err}");
        }
        // A forged caller claiming a role is not trusted beyond that claim, but the registration
        // still exists only once: nothing the refused calls did was stored.
        let listed = f.ca.list_certificates(&f.security1, CertificateFilter::default()).await.unwrap();
        assert!(listed.iter().all(|c| c.status == ca_server::CertificateStatus::Good));

        // Every refusal is on record, with the actor and the reason.
        let filter = QueryFilter { event: Some(EventType::Registration), ..QueryFilter::default() };
        let refusals: Vec<_> =
            f.ca.audit_log()
                .query(&filter)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| matches!(r.record.outcome, Outcome::Failure(_)))
                .collect();
        assert_eq!(refusals.len(), 4, "{refusals:?}");
        assert!(refusals.iter().any(
            |r| matches!(&r.record.actor, Actor::Certificate { subject, .. } if subject.contains("system-admin"))
        ));
        assert!(refusals.iter().any(|r| r.record.role == Some(signer_lib::audit::Role::AuditOfficer)));
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn identifies_only_current_certificates_of_this_ca() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        assert_eq!(f.security1.role, Some(Role::SecurityOfficer));
        assert_eq!(f.security1.issuer, "p256");
        // Garbage, and a self-signed certificate that is not ours.
        let err = f.ca.identify(b"garbage", None, "t").await.unwrap_err();
        assert!(matches!(err, Error::Unauthenticated { .. }), "{err}");
        let key = signer_lib::key::software::SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        let stranger =
            signer_lib::certificate::self_signed_end_entity(&key, "CN=stranger", std::time::Duration::from_secs(3600))
                .unwrap();
        let err = f.ca.identify(&der::Encode::to_der(&stranger).unwrap(), None, "t").await.unwrap_err();
        assert!(matches!(err, Error::Unauthenticated { .. }), "{err}");
        // The TLS server certificate is ours but grants no role.
        let tls = f.ca.tls_material();
        let err = f.ca.identify(&tls.server_chain_der[0], None, "t").await.unwrap_err();
        assert!(matches!(err, Error::Unauthenticated { .. }), "{err}");
        // Expired: officer certificates last a year.
        f.clock.advance(time::Duration::days(366));
        let officer = std::fs::read_to_string(f.data().join("bootstrap/security-officer-2.crt")).unwrap();
        let err = f.ca.identify(&der_of(&officer), None, "t").await.unwrap_err();
        assert!(matches!(err, Error::Unauthenticated { .. }), "{err}");
        let filter = QueryFilter { event: Some(EventType::LoginFailed), ..QueryFilter::default() };
        assert_eq!(f.ca.audit_log().query(&filter).await.unwrap().len(), 4);
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn locks_an_identity_after_repeated_failures_for_the_configured_time() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let officer = std::fs::read_to_string(f.data().join("bootstrap/security-officer-2.crt")).unwrap();
        for _ in 0..5 {
            f.ca.record_auth_failure(&f.security2.serial_hex.to_uppercase(), None, "bad TLS handshake").await.unwrap();
        }
        let err = f.ca.identify(&der_of(&officer), None, "t").await.unwrap_err();
        let Error::Locked { until } = err else { panic!("expected Locked, got {err}") };
        assert!(until > time::OffsetDateTime::now_utc().unix_timestamp() + 29 * 60);
        let filter = QueryFilter { event: Some(EventType::Lockout), ..QueryFilter::default() };
        assert_eq!(f.ca.audit_log().query(&filter).await.unwrap().len(), 1);
        // Other identities are unaffected; the lock ends after 30 minutes.
        f.ca.identify(
            &der_of(&std::fs::read_to_string(f.data().join("bootstrap/security-officer-1.crt")).unwrap()),
            None,
            "t",
        )
        .await
        .unwrap();
        f.clock.advance(time::Duration::minutes(31));
        let again = f.ca.identify(&der_of(&officer), None, "t").await.unwrap();
        assert_eq!(again.role, Some(Role::SecurityOfficer));
        f.close(&backend).await;
    }
}
