//! The authorisation layer over real TLS: no certificate, a stranger's certificate, the wrong
//! role, and lockout after repeated failures — each refused with a problem document and audited.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_support;

use std::time::Duration;

use ca_server::http::{ENDPOINTS, Method};
use http_support::{ADMIN, AUDIT, SECURITY_1, TestServer, csr, expect_problem};
use serde_json::json;
use signer_lib::SignatureAlgorithm;
use signer_lib::audit::{EventType, Outcome};
use signer_lib::key::software::SoftwareKey;

fn concrete(path: &str) -> String {
    path.replace("{id}", "0011223344556677").replace("{serial}", "0a0b0c")
}

#[tokio::test]
async fn every_protected_endpoint_needs_a_client_certificate() {
    let server = TestServer::start().await;
    let anonymous = server.anonymous();
    for endpoint in ENDPOINTS {
        let url = server.url(&concrete(endpoint.path));
        let request = match endpoint.method {
            Method::Get => anonymous.get(&url),
            Method::Post => anonymous.post(&url).json(&json!({})),
        };
        let response = request.send().await.unwrap();
        if endpoint.path == "/api/v1/enrol" {
            // Reaches the handler (and fails on the empty body), no certificate needed.
            assert_eq!(response.status(), 422, "{}", endpoint.path);
            continue;
        }
        let (problem, request_id) = expect_problem(response, 401).await;
        assert_eq!(problem["type"], "urn:eport:problem:unauthenticated");
        let records = server.audit_records(&request_id).await;
        assert!(
            records.iter().any(|r| matches!(r.record.outcome, Outcome::Failure(_))),
            "refusal of {} not audited",
            endpoint.path
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn the_wrong_role_is_refused_and_the_refusal_is_audited() {
    let server = TestServer::start().await;
    let body = json!({ "kind": "agency", "profile": "agency", "agency_code": "CUSTOMS-3501", "name": "Customs" });

    // The audit officer can read but not register.
    let audit = server.officer(AUDIT);
    let (problem, request_id) =
        expect_problem(audit.post(server.url("/api/v1/registrations")).json(&body).send().await.unwrap(), 403).await;
    assert_eq!(problem["type"], "urn:eport:problem:forbidden");
    let records = server.audit_records(&request_id).await;
    let refusal = records.iter().find(|r| r.record.event == EventType::Registration).expect("refusal audited");
    assert!(matches!(&refusal.record.outcome, Outcome::Failure(reason) if reason.contains("403")));
    assert_eq!(refusal.record.role, Some(signer_lib::audit::Role::AuditOfficer));
    assert_eq!(audit.get(server.url("/api/v1/certificates")).send().await.unwrap().status(), 200);

    // The system administrator can do neither.
    let admin = server.officer(ADMIN);
    let (_, request_id) =
        expect_problem(admin.get(server.url("/api/v1/certificates")).send().await.unwrap(), 403).await;
    assert!(!server.audit_records(&request_id).await.is_empty(), "refusal audited");
    expect_problem(admin.post(server.url("/api/v1/registrations")).json(&body).send().await.unwrap(), 403).await;
    expect_problem(admin.post(server.url("/api/v1/certificates/0a/hold")).send().await.unwrap(), 403).await;

    // Successful calls are audited too, with the request id.
    let ok = server.officer(SECURITY_1).post(server.url("/api/v1/registrations")).json(&body).send().await.unwrap();
    assert_eq!(ok.status(), 201);
    let request_id = ok.headers()["x-request-id"].to_str().unwrap().to_owned();
    let records = server.audit_records(&request_id).await;
    assert!(records.iter().any(|r| r.record.event == EventType::Registration && r.record.outcome == Outcome::Success));
    // Both the service's record of the change and the HTTP layer's record of the call, which
    // is queued while the response goes out.
    let call = records
        .iter()
        .find(|r| r.record.object.as_deref().is_some_and(|o| o.starts_with("POST /api/v1/registrations")));
    assert_eq!(call.expect("call record").record.outcome, Outcome::Success);
    assert_eq!(records.len(), 2, "{records:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_stranger_certificate_is_refused_in_the_handshake_and_counted() {
    let server = TestServer::start().await;
    let key = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
    let cert =
        signer_lib::certificate::self_signed_end_entity(&key, "CN=Intruder,C=CN", Duration::from_secs(86_400)).unwrap();
    let stranger = server.client_with(vec![der::Encode::to_der(&cert).unwrap()], key.to_pkcs8_der().unwrap().to_vec());
    let (_k, csr_pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
    match stranger.post(server.url("/api/v1/renew")).json(&json!({ "csr": csr_pem })).send().await {
        Err(_) => {}
        Ok(response) => {
            expect_problem(response, 401).await;
        }
    }
    // The handshake failure is an authentication failure of the source address.
    let mut counted = false;
    for _ in 0..50 {
        let failures = server.audit_events(EventType::LoginFailed).await;
        if failures
            .iter()
            .any(|r| matches!(&r.record.outcome, Outcome::Failure(reason) if reason.contains("TLS handshake")))
        {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(counted, "the refused handshake was not recorded");
    server.stop().await;
}

#[tokio::test]
async fn repeated_failures_lock_an_identity_until_the_lock_expires() {
    let server = TestServer::start_with(|config| {
        config.lockout.max_failures = std::num::NonZeroU32::new(3).unwrap();
        config.lockout.lock_minutes = std::num::NonZeroU32::new(1).unwrap();
    })
    .await;
    let (key, issued) = server.enrolled_subscriber().await;
    let serial = issued["serial"].as_str().unwrap().to_owned();
    let subscriber = server.subscriber(&key, issued["certificate"].as_str().unwrap());
    let officer = server.officer(SECURITY_1);
    let (_k, renew_csr) = csr(SignatureAlgorithm::EcdsaP256Sha256);
    let renew = || subscriber.post(server.url("/api/v1/renew")).json(&json!({ "csr": renew_csr })).send();

    // On hold, each call is an authentication failure; the third locks the identity.
    assert_eq!(
        officer.post(server.url(&format!("/api/v1/certificates/{serial}/hold"))).send().await.unwrap().status(),
        200
    );
    for _ in 0..3 {
        expect_problem(renew().await.unwrap(), 401).await;
    }
    let locked = renew().await.unwrap();
    let retry_after: u64 = locked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let (problem, _) = expect_problem(locked, 429).await;
    assert_eq!(problem["type"], "urn:eport:problem:locked");
    assert!(!server.audit_events(EventType::Lockout).await.is_empty(), "the lockout is audited");

    // Released from hold, the identity is still locked until the lock runs out.
    assert_eq!(
        officer.post(server.url(&format!("/api/v1/certificates/{serial}/release"))).send().await.unwrap().status(),
        200
    );
    expect_problem(renew().await.unwrap(), 429).await;
    server.clock.advance(time::Duration::minutes(2));
    assert_eq!(renew().await.unwrap().status(), 201);
    server.stop().await;
}
