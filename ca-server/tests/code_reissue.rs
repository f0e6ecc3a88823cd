//! Re-issuing an enrolment code (`Ca::reissue_code`, `POST /api/v1/registrations/{id}/code`):
//! single control gives a new code and the old one stops working; dual control goes back to
//! pending for two officers; refusals are conflicts, audited.
#![allow(clippy::unwrap_used)]

mod common;

use ca_server::{Approval, Error, RegistrationStatus};
use common::{Fixture, backends, csr};
use signer_lib::SignatureAlgorithm;
use signer_lib::audit::{EventType, Outcome, QueryFilter};
use time::Duration;

/// (successes, failures) audited as `CredentialChanged` for registration `id`.
async fn audited(f: &Fixture, id: &str) -> (usize, usize) {
    let filter =
        QueryFilter { event: Some(EventType::CredentialChanged), object: Some(id.into()), ..QueryFilter::default() };
    let records = f.ca.audit_log().query(&filter).await.unwrap();
    let ok = records.iter().filter(|r| r.record.outcome == Outcome::Success).count();
    (ok, records.len() - ok)
}

fn code_of(approval: Approval) -> String {
    match approval {
        Approval::Code { code, .. } => code,
        other => panic!("expected a code, got {other:?}"),
    }
}

#[tokio::test]
async fn a_new_code_replaces_an_expired_burnt_or_unused_one_under_single_control() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let anonymous = Fixture::anonymous([10, 9, 0, 1]);
        let (_key, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);

        // Unused and still valid: the old code stops working at once.
        let (id, old) = f.approved_enterprise().await;
        let fresh = code_of(f.ca.reissue_code(&f.security2, &id).await.unwrap());
        assert_ne!(fresh, old);
        assert!(matches!(f.ca.enrol(&anonymous, &old, &pem).await, Err(Error::CodeInvalid)));

        // Expired: a new one works.
        f.clock.advance(f.config.code_ttl() + Duration::seconds(1));
        assert!(matches!(f.ca.enrol(&anonymous, &fresh, &pem).await, Err(Error::CodeInvalid)));
        let third = code_of(f.ca.reissue_code(&f.security1, &id).await.unwrap());

        // Burnt by wrong attempts: a new one works, with its attempts counted afresh.
        let secret = third.split_once('.').unwrap().1;
        let wrong = format!("{id}.{}", if secret.starts_with('A') { "B" } else { "A" }.repeat(26));
        for ip in 0..f.config.enrolment.max_attempts.get() {
            let source = Fixture::anonymous([10, 9, 1, u8::try_from(ip).unwrap()]);
            assert!(matches!(f.ca.enrol(&source, &wrong, &pem).await, Err(Error::CodeInvalid)));
        }
        assert!(matches!(f.ca.enrol(&Fixture::anonymous([10, 9, 2, 1]), &third, &pem).await, Err(Error::CodeInvalid)));
        let fourth = code_of(f.ca.reissue_code(&f.security1, &id).await.unwrap());
        let issued = f.ca.enrol(&Fixture::anonymous([10, 9, 3, 1]), &fourth, &pem).await.unwrap();
        assert_eq!(issued.profile, "enterprise-legal-rep");

        // Enrolled: no more codes. Pending: approve instead. Unknown: 404. Wrong roles: 403.
        assert!(matches!(f.ca.reissue_code(&f.security1, &id).await, Err(Error::Conflict { .. })));
        let pending =
            f.ca.register(
                &f.security1,
                ca_server::RegistrationRequest::Agency {
                    agency_code: "TAX-3501".into(),
                    name: "Tax".into(),
                    profile: "agency".into(),
                },
            )
            .await
            .unwrap();
        assert!(matches!(f.ca.reissue_code(&f.security1, &pending.id).await, Err(Error::Conflict { .. })));
        assert!(matches!(f.ca.reissue_code(&f.security1, "00112233445566ff").await, Err(Error::NotFound { .. })));
        for caller in [&f.audit, &f.admin] {
            assert!(matches!(f.ca.reissue_code(caller, &id).await, Err(Error::Forbidden { .. })));
        }
        // Three re-issues succeeded; the refusals on this registration are on record too.
        assert_eq!(audited(&f, &id).await, (3, 3));
        f.close(&backend).await;
    }
}

#[tokio::test]
async fn under_dual_control_a_reissue_goes_back_to_pending_for_two_officers() {
    for backend in backends().await {
        let f = Fixture::new(&backend).await;
        let (id, old) = f.approved_agency().await;
        match f.ca.reissue_code(&f.security1, &id).await.unwrap() {
            Approval::Pending { approvals, needed, .. } => assert_eq!((approvals, needed), (0, 2)),
            other => panic!("dual control must not give a code to one officer: {other:?}"),
        }
        let registration = f.ca.registration(&f.security1, &id).await.unwrap();
        assert_eq!(registration.status, RegistrationStatus::Pending);
        assert!(registration.approvals.is_empty());
        let (_key, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
        assert!(matches!(f.ca.enrol(&Fixture::anonymous([10, 8, 0, 1]), &old, &pem).await, Err(Error::CodeInvalid)));
        // Pending now: re-issuing again is a conflict; two different officers approve again.
        assert!(matches!(f.ca.reissue_code(&f.security2, &id).await, Err(Error::Conflict { .. })));
        assert!(matches!(f.ca.approve(&f.security1, &id).await.unwrap(), Approval::Pending { .. }));
        assert!(matches!(f.ca.approve(&f.security1, &id).await, Err(Error::Conflict { .. })));
        let code = code_of(f.ca.approve(&f.security2, &id).await.unwrap());
        let issued = f.ca.enrol(&Fixture::anonymous([10, 8, 0, 2]), &code, &pem).await.unwrap();
        assert_eq!(issued.profile, "agency");
        f.close(&backend).await;
    }
}
