//! The responder core: statuses, CertID hashes, nonces, several CertIDs, the change feed,
//! refresh, rate limits. No HTTP here.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{basic, cert_id, pki, request, responder, serial_of, status_of, verify};
use const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE;
use ocsp_responder::metrics::{Origin, Outcome};
use ocsp_responder::source::memory::MemorySource;
use ocsp_responder::{CertIdHash, CertificateStatus, Responder, Settings};
use signer_lib::SignatureAlgorithm;
use time::OffsetDateTime;
use x509_cert::ext::pkix::CrlReason;
use x509_ocsp::{CertStatus, OcspResponseStatus, ResponderId};

#[tokio::test]
async fn answers_good_revoked_hold_and_unknown_from_the_cache() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let (r, _) = responder(&[&p], Settings::default()).await;
    assert_eq!(r.cached(), 3, "three certificates, SHA-1 pre-signed");

    let answer = r.respond(&request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], None)).await;
    assert_eq!((answer.outcome, answer.origin), (Outcome::Good, Origin::Cache));
    let b = basic(&answer.body);
    verify(&b, &p.responder_cert);
    let single = &b.tbs_response_data.responses[0];
    assert_eq!(single.cert_status, CertStatus::good());
    assert!(single.next_update.is_some(), "RFC 5019 requires nextUpdate");
    assert_eq!(single.cert_id, cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1));
    assert_eq!(b.tbs_response_data.produced_at, single.this_update);
    assert!(matches!(b.tbs_response_data.responder_id, ResponderId::ByKey(_)));
    let this = single.this_update.0.to_unix_duration().as_secs();
    let next = single.next_update.unwrap().0.to_unix_duration().as_secs();
    assert_eq!(next - this, 24 * 3600);

    let revoked = r.respond(&request(&[cert_id(&p.issuing, &p.leaves[1], CertIdHash::Sha256)], None)).await;
    assert_eq!(revoked.outcome, Outcome::Revoked);
    match basic(&revoked.body).tbs_response_data.responses[0].cert_status {
        CertStatus::Revoked(info) => {
            assert_eq!(info.revocation_reason, Some(CrlReason::KeyCompromise));
            assert_eq!(info.revocation_time.0.to_unix_duration().as_secs(), 1_704_067_200);
        }
        other => panic!("expected revoked, got {other:?}"),
    }

    let held = r.respond(&request(&[cert_id(&p.issuing, &p.leaves[2], CertIdHash::Sha1)], None)).await;
    match basic(&held.body).tbs_response_data.responses[0].cert_status {
        CertStatus::Revoked(info) => assert_eq!(info.revocation_reason, Some(CrlReason::CertificateHold)),
        other => panic!("expected revoked (hold), got {other:?}"),
    }
}

#[tokio::test]
async fn answers_unknown_for_never_issued_serial() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let (r, _) = responder(&[&p], Settings::default()).await;
    // Leaf 3 was signed by the issuing CA but never recorded in the source.
    let req = request(&[cert_id(&p.issuing, &p.leaves[3], CertIdHash::Sha1)], None);
    let first = r.respond(&req).await;
    assert_eq!((first.outcome, first.origin), (Outcome::Unknown, Origin::Signed));
    let b = basic(&first.body);
    verify(&b, &p.responder_cert);
    assert_eq!(b.tbs_response_data.responses[0].cert_status, CertStatus::unknown());
    // Cached afterwards: the same bytes, without another signature.
    let signatures = r.metrics().signatures();
    let second = r.respond(&req).await;
    assert_eq!((second.outcome, second.origin), (Outcome::Unknown, Origin::Cache));
    assert_eq!(second.body, first.body);
    assert_eq!(r.metrics().signatures(), signatures);
}

#[tokio::test]
async fn echoes_nonces_of_1_to_128_octets_and_refuses_others() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let (r, _) = responder(&[&p], Settings::default()).await;
    let id = cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1);
    for len in [1usize, 16, 32, 128] {
        let nonce: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
        let answer = r.respond(&request(std::slice::from_ref(&id), Some(&nonce))).await;
        assert_eq!((answer.outcome, answer.origin), (Outcome::Good, Origin::Signed), "nonce of {len}");
        assert!(answer.cacheable.is_none(), "a nonce response is not for caches");
        let b = basic(&answer.body);
        verify(&b, &p.responder_cert);
        assert_eq!(b.nonce().unwrap().0.as_bytes(), nonce.as_slice());
        let ext = b.tbs_response_data.response_extensions.as_ref().unwrap();
        assert!(ext.iter().all(|e| e.extn_id != ID_PKIX_OCSP_NONCE || !e.critical));
    }
    for len in [0usize, 129, 200] {
        let answer = r.respond(&request(std::slice::from_ref(&id), Some(&vec![7u8; len]))).await;
        assert_eq!(answer.outcome, Outcome::MalformedRequest, "nonce of {len}");
        assert_eq!(status_of(&answer.body), OcspResponseStatus::MalformedRequest);
    }
}

#[tokio::test]
async fn answers_several_cert_ids_of_one_issuer_together_and_refuses_a_mix() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let s = pki(SignatureAlgorithm::Sm2Sm3, "sm2");
    let (r, _) = responder(&[&p, &s], Settings::default()).await;
    let ids: Vec<_> = p.leaves.iter().map(|l| cert_id(&p.issuing, l, CertIdHash::Sha1)).collect();
    let answer = r.respond(&request(&ids, None)).await;
    assert_eq!((answer.outcome, answer.origin), (Outcome::Multiple, Origin::Signed));
    let b = basic(&answer.body);
    verify(&b, &p.responder_cert);
    let statuses: Vec<_> = b.tbs_response_data.responses.iter().map(|s| s.cert_status).collect();
    assert_eq!(statuses[0], CertStatus::good());
    assert!(matches!(statuses[1], CertStatus::Revoked(_)));
    assert!(matches!(statuses[2], CertStatus::Revoked(_)));
    assert_eq!(statuses[3], CertStatus::unknown());
    for (single, id) in b.tbs_response_data.responses.iter().zip(&ids) {
        assert_eq!(&single.cert_id, id);
    }

    let mixed =
        [cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1), cert_id(&s.issuing, &s.leaves[0], CertIdHash::Sha1)];
    assert_eq!(r.respond(&request(&mixed, None)).await.outcome, Outcome::Unauthorized);

    let too_many: Vec<_> = (0..17).map(|_| ids[0].clone()).collect();
    assert_eq!(r.respond(&request(&too_many, None)).await.outcome, Outcome::MalformedRequest);
}

#[tokio::test]
async fn refuses_issuers_not_served_and_hashes_not_supported() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let other = pki(SignatureAlgorithm::EcdsaP256Sha256, "other");
    let (r, _) = responder(&[&p], Settings::default()).await;
    let foreign = r.respond(&request(&[cert_id(&other.issuing, &other.leaves[0], CertIdHash::Sha1)], None)).await;
    assert_eq!(foreign.outcome, Outcome::Unauthorized);
    assert_eq!(status_of(&foreign.body), OcspResponseStatus::Unauthorized);

    // SM3 names only SM2 issuers.
    let sm3 = r.respond(&request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sm3)], None)).await;
    assert_eq!(sm3.outcome, Outcome::Unauthorized);

    // SHA-512: not a CertID hash we support.
    let mut id = cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha256);
    id.hash_algorithm.oid = const_oid::db::rfc5912::ID_SHA_512;
    let sha512 = r.respond(&request(&[id], None)).await;
    assert_eq!(sha512.outcome, Outcome::MalformedRequest);
}

#[tokio::test]
async fn sm2_issuers_answer_sm3_cert_ids_signed_with_sm3_with_sm2() {
    let s = pki(SignatureAlgorithm::Sm2Sm3, "sm2");
    let (r, _) = responder(&[&s], Settings::default()).await;
    for hash in CertIdHash::ALL {
        let answer = r.respond(&request(&[cert_id(&s.issuing, &s.leaves[1], hash)], None)).await;
        assert_eq!(answer.outcome, Outcome::Revoked, "{hash}");
        let b = basic(&answer.body);
        assert_eq!(b.signature_algorithm.oid, signer_lib::algorithm::SM2_WITH_SM3);
        assert!(b.signature_algorithm.parameters.is_none());
        verify(&b, &s.responder_cert);
        assert_eq!(b.tbs_response_data.responses[0].cert_id, cert_id(&s.issuing, &s.leaves[1], hash));
    }
}

#[tokio::test]
async fn a_revocation_is_served_after_the_next_poll() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let (r, source) = responder(&[&p], Settings::default()).await;
    let req = request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], None);
    let sha256 = request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha256)], None);
    assert_eq!(r.respond(&req).await.outcome, Outcome::Good);
    let first = r.respond(&sha256).await;
    assert_eq!((first.outcome, first.origin), (Outcome::Good, Origin::Signed), "SHA-256: signed on first request");
    assert_eq!(r.respond(&sha256).await.origin, Origin::Cache, "then cached");
    source.set(
        &p.id,
        serial_of(&p.leaves[0]),
        CertificateStatus::Revoked { time: OffsetDateTime::now_utc(), reason: Some(CrlReason::Superseded) },
    );
    assert_eq!(r.respond(&req).await.outcome, Outcome::Good, "not before the poll");
    assert_eq!(r.poll_changes().await.unwrap(), 2, "the SHA-1 and the cached SHA-256 responses re-signed");
    assert_eq!(r.respond(&req).await.outcome, Outcome::Revoked);
    assert_eq!(r.respond(&sha256).await.outcome, Outcome::Revoked);
    assert_eq!(r.poll_changes().await.unwrap(), 0, "nothing new");

    // A certificate issued after start is pre-signed by the poll too.
    source.set(&p.id, serial_of(&p.leaves[3]), CertificateStatus::Good);
    assert_eq!(r.poll_changes().await.unwrap(), 1);
    let answer = r.respond(&request(&[cert_id(&p.issuing, &p.leaves[3], CertIdHash::Sha1)], None)).await;
    assert_eq!((answer.outcome, answer.origin), (Outcome::Good, Origin::Cache));
}

#[tokio::test]
async fn a_never_issued_serial_that_gets_issued_stops_being_unknown() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let (r, source) = responder(&[&p], Settings::default()).await;
    let req = request(&[cert_id(&p.issuing, &p.leaves[3], CertIdHash::Sha1)], None);
    assert_eq!(r.respond(&req).await.outcome, Outcome::Unknown);
    source.set(&p.id, serial_of(&p.leaves[3]), CertificateStatus::Good);
    r.poll_changes().await.unwrap();
    assert_eq!(r.respond(&req).await.outcome, Outcome::Good);
}

#[tokio::test]
async fn refresh_resigns_responses_once_half_their_validity_has_passed() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let source = Arc::new(MemorySource::new());
    common::record(&p, &source);
    let now = Arc::new(Mutex::new(OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()));
    let clock = Arc::clone(&now);
    let r = Responder::with_clock(
        vec![common::issuer(&p)],
        source as _,
        Settings::default(),
        Arc::new(move || *clock.lock().unwrap()),
    )
    .unwrap();
    assert_eq!(r.start().await.unwrap().signed, 3);
    let req = request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], None);
    let before = r.respond(&req).await.body;
    assert_eq!(r.refresh().await.unwrap().signed, 0, "nothing due yet");
    *now.lock().unwrap() += time::Duration::hours(10);
    assert_eq!(r.refresh().await.unwrap().signed, 0, "not due before 12 h less jitter (at most 1.2 h)");
    *now.lock().unwrap() += time::Duration::hours(2);
    assert_eq!(r.refresh().await.unwrap().signed, 3);
    let after = r.respond(&req).await.body;
    assert_ne!(before, after);
    let this = basic(&after).tbs_response_data.responses[0].this_update.0.to_unix_duration().as_secs();
    assert_eq!(i64::try_from(this).unwrap(), now.lock().unwrap().unix_timestamp());
    // A response past its nextUpdate is never served: it is signed again on demand.
    *now.lock().unwrap() += time::Duration::hours(25);
    let answer = r.respond(&req).await;
    assert_eq!(answer.origin, Origin::Signed);
}

#[tokio::test]
async fn on_demand_signing_is_rate_limited() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let settings = Settings { on_demand_per_second: 2, ..Settings::default() };
    let (r, _) = responder(&[&p], settings).await;
    // Random serials of our issuer: each needs a signature.
    let mut outcomes = Vec::new();
    for n in 0..5u8 {
        let mut id = cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1);
        id.serial_number = x509_cert::serial_number::SerialNumber::new(&[0x51, n, 0x33]).unwrap();
        outcomes.push(r.respond(&request(&[id], None)).await.outcome);
    }
    assert_eq!(outcomes[..2], [Outcome::Unknown, Outcome::Unknown]);
    assert!(outcomes[2..].iter().all(|o| *o == Outcome::TryLater), "{outcomes:?}");
    // Pre-signed answers are not limited, and a nonce request over the limit gets one without
    // the nonce rather than tryLater.
    let id = cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1);
    let plain = r.respond(&request(std::slice::from_ref(&id), None)).await;
    assert_eq!((plain.outcome, plain.origin), (Outcome::Good, Origin::Cache));
    let nonce = r.respond(&request(&[id], Some(&[1; 16]))).await;
    assert_eq!((nonce.outcome, nonce.origin), (Outcome::Good, Origin::Cache));
    assert!(basic(&nonce.body).nonce().is_none());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut id = cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1);
    id.serial_number = x509_cert::serial_number::SerialNumber::new(&[0x52]).unwrap();
    assert_eq!(r.respond(&request(&[id], None)).await.outcome, Outcome::Unknown, "refilled");
}

#[tokio::test]
async fn two_responders_over_one_source_agree() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let source = Arc::new(MemorySource::new());
    common::record(&p, &source);
    let a = Responder::new(vec![common::issuer(&p)], Arc::clone(&source) as _, Settings::default()).unwrap();
    let b = Responder::new(vec![common::issuer(&p)], Arc::clone(&source) as _, Settings::default()).unwrap();
    a.start().await.unwrap();
    b.start().await.unwrap();
    source.set(&p.id, serial_of(&p.leaves[0]), CertificateStatus::Hold { time: OffsetDateTime::now_utc() });
    a.poll_changes().await.unwrap();
    b.poll_changes().await.unwrap();
    let req = request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], None);
    assert_eq!(a.respond(&req).await.outcome, Outcome::Revoked);
    assert_eq!(b.respond(&req).await.outcome, Outcome::Revoked);
}

#[tokio::test]
async fn refuses_a_responder_certificate_that_is_not_a_delegated_signer() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let now = OffsetDateTime::now_utc();
    // A leaf without id-kp-OCSPSigning.
    let err = ocsp_responder::Issuer::new(
        p.id.clone(),
        p.issuing.clone(),
        p.leaves[0].clone(),
        Arc::clone(&p.responder_key) as _,
        now,
    )
    .unwrap_err();
    assert!(err.to_string().contains("OCSPSigning") || err.to_string().contains("extendedKeyUsage"), "{err}");
    // The right certificate with the wrong key.
    let err = ocsp_responder::Issuer::new(
        p.id.clone(),
        p.issuing.clone(),
        p.responder_cert.clone(),
        Arc::clone(&p.issuing_key) as _,
        now,
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    // Another CA's signer (same names in these tests, so the signature is what tells).
    let q = pki(SignatureAlgorithm::EcdsaP256Sha256, "q");
    let err = ocsp_responder::Issuer::new(
        p.id.clone(),
        p.issuing.clone(),
        q.responder_cert.clone(),
        Arc::clone(&q.responder_key) as _,
        now,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not signed by the CA"), "{err}");
}

/// A source whose `all_serials` takes its snapshot at once but returns only when released:
/// lets a test put a change between a refresh pass's read and its writes.
#[derive(Debug)]
struct Gated {
    inner: Arc<MemorySource>,
    armed: std::sync::atomic::AtomicBool,
    gate: tokio::sync::Semaphore,
}

impl ocsp_responder::StatusSource for Gated {
    fn status<'a>(
        &'a self,
        issuer: &'a ocsp_responder::IssuerId,
        serial: &'a ocsp_responder::Serial,
    ) -> ocsp_responder::source::BoxFuture<'a, Result<CertificateStatus, ocsp_responder::Error>> {
        self.inner.status(issuer, serial)
    }
    fn all_serials<'a>(
        &'a self,
        issuer: &'a ocsp_responder::IssuerId,
        now: OffsetDateTime,
    ) -> ocsp_responder::source::BoxFuture<
        'a,
        Result<Vec<(ocsp_responder::Serial, CertificateStatus)>, ocsp_responder::Error>,
    > {
        let snapshot = self.inner.all_serials(issuer, now);
        Box::pin(async move {
            let snapshot = snapshot.await;
            if self.armed.load(std::sync::atomic::Ordering::SeqCst) {
                self.gate.acquire().await.unwrap().forget();
            }
            snapshot
        })
    }
    fn current_cursor(
        &self,
    ) -> ocsp_responder::source::BoxFuture<'_, Result<ocsp_responder::source::ChangeCursor, ocsp_responder::Error>>
    {
        self.inner.current_cursor()
    }
    fn changed_since(
        &self,
        cursor: ocsp_responder::source::ChangeCursor,
    ) -> ocsp_responder::source::BoxFuture<'_, Result<ocsp_responder::source::Changes, ocsp_responder::Error>> {
        self.inner.changed_since(cursor)
    }
}

#[tokio::test]
async fn a_refresh_pass_that_read_before_a_revocation_does_not_undo_it() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let memory = Arc::new(MemorySource::new());
    common::record(&p, &memory);
    let gated = Arc::new(Gated {
        inner: Arc::clone(&memory),
        armed: std::sync::atomic::AtomicBool::new(false),
        gate: tokio::sync::Semaphore::new(0),
    });
    let r = Responder::new(vec![common::issuer(&p)], Arc::clone(&gated) as _, Settings::default()).unwrap();
    r.start().await.unwrap();
    gated.armed.store(true, std::sync::atomic::Ordering::SeqCst);

    // The refresh pass reads its snapshot (leaf 0 good) and waits at the gate.
    let pass = tokio::spawn({
        let r = r.clone();
        async move { r.refresh().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    memory.set(
        &p.id,
        serial_of(&p.leaves[0]),
        CertificateStatus::Revoked { time: OffsetDateTime::now_utc(), reason: None },
    );
    assert_eq!(r.poll_changes().await.unwrap(), 1);
    gated.gate.add_permits(1);
    pass.await.unwrap();

    let req = request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], None);
    assert_eq!(r.respond(&req).await.outcome, Outcome::Revoked, "the older snapshot must not win");
}
