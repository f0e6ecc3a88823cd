//! `POST /api/v1/registrations/{id}/code` over HTTPS: a security officer gets a new code shown
//! once; the old code is refused; other roles get 403, an unknown registration 404, a pending
//! one 409, all as problem documents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_support;

use http_support::{AUDIT, SECURITY_1, SECURITY_2, TestServer, csr, expect_problem};
use serde_json::Value;
use signer_lib::SignatureAlgorithm;
use signer_lib::audit::EventType;

#[tokio::test]
async fn a_security_officer_reissues_a_code_and_the_old_one_is_refused() {
    let server = TestServer::start().await;
    let old = server.enterprise_code().await;
    let id = old.split_once('.').unwrap().0.to_owned();
    let path = format!("/api/v1/registrations/{id}/code");

    let response = server.officer(SECURITY_2).post(server.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "approved");
    let new = body["enrolment_code"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(body["expires_at"].is_string());

    let (_key, pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
    expect_problem(server.enrol(&old, &pem).await, 403).await;
    assert_eq!(server.enrol(&new, &pem).await.status(), 201);
    // Enrolled: a conflict now.
    expect_problem(server.officer(SECURITY_1).post(server.url(&path)).send().await.unwrap(), 409).await;

    // Other roles and unknown registrations.
    expect_problem(server.officer(AUDIT).post(server.url(&path)).send().await.unwrap(), 403).await;
    expect_problem(server.anonymous().post(server.url(&path)).send().await.unwrap(), 401).await;
    let unknown = server.url("/api/v1/registrations/00112233445566ff/code");
    expect_problem(server.officer(SECURITY_1).post(unknown).send().await.unwrap(), 404).await;
    let pending = server.register_enterprise().await;
    let pending_path = server.url(&format!("/api/v1/registrations/{pending}/code"));
    expect_problem(server.officer(SECURITY_1).post(pending_path).send().await.unwrap(), 409).await;

    assert!(server.audit_events(EventType::CredentialChanged).await.len() >= 5);
    server.stop().await;
}
