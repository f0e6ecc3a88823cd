//! The whole life of a certificate over HTTPS: register → approve → enrol → renew → hold →
//! release → revoke, with the results checked by OpenSSL and the CRL fetched from the public
//! listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_support;

use http_support::{SECURITY_1, SECURITY_2, TestServer, csr, expect_problem, openssl};
use serde_json::{Value, json};
use signer_lib::SignatureAlgorithm;

#[tokio::test]
async fn registers_approves_and_enrols_a_certificate_that_chains_to_the_root() {
    let server = TestServer::start().await;
    let code = server.enterprise_code().await;
    let (_key, csr_pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);

    let response = server.enrol(&code, &csr_pem).await;
    assert_eq!(response.status(), 201);
    assert!(response.headers().contains_key("x-request-id"));
    let issued: Value = response.json().await.unwrap();
    let chain = issued["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 2, "issuing CA, then root");
    let leaf = issued["certificate"].as_str().unwrap();
    assert!(leaf.starts_with("-----BEGIN CERTIFICATE-----"));

    let dir = tempfile::TempDir::new().unwrap();
    std::fs::write(dir.path().join("leaf.pem"), leaf).unwrap();
    std::fs::write(dir.path().join("issuing.pem"), chain[0].as_str().unwrap()).unwrap();
    std::fs::write(dir.path().join("root.pem"), chain[1].as_str().unwrap()).unwrap();
    let (ok, text) = openssl(dir.path(), &["verify", "-CAfile", "root.pem", "-untrusted", "issuing.pem", "leaf.pem"]);
    assert!(ok, "openssl verify: {text}");
    // The root in the chain is the one on disk, and the subject came from the registration.
    assert_eq!(std::fs::read_to_string(server.root_pem()).unwrap().trim(), chain[1].as_str().unwrap().trim());
    let (_, subject) = openssl(dir.path(), &["x509", "-in", "leaf.pem", "-noout", "-subject", "-nameopt", "utf8"]);
    assert!(subject.contains("张三") && !subject.contains("Ignored"), "{subject}");

    // The enrolment is on the audit trail under its request id (the HTTP layer's call record).
    let listed = server
        .officer(SECURITY_1)
        .get(server.url(&format!("/api/v1/certificates?serial={}", issued["serial"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed["certificates"][0]["status"], "good");
    assert_eq!(listed["certificates"][0]["uscc"], http_support::USCC);
    // Reads are audited as reads (who looked at which certificates), not as logins.
    let reads = server.audit_events(signer_lib::audit::EventType::DataRead).await;
    assert!(reads.iter().any(|r| r.record.actor.to_string().contains("security-officer-1")), "{reads:?}");
    server.stop().await;
}

#[tokio::test]
async fn an_agency_needs_two_different_security_officers() {
    let server = TestServer::start().await;
    let body =
        json!({ "kind": "agency", "profile": "agency", "agency_code": "CUSTOMS-3501", "name": "福州海关（示例）" });
    let response =
        server.officer(SECURITY_1).post(server.url("/api/v1/registrations")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let first: Value = server.approve(SECURITY_1, &id).await.json().await.unwrap();
    assert_eq!(first["status"], "pending");
    assert_eq!(first["approvals_needed"], 1);
    assert!(first.get("enrolment_code").is_none());

    // The same officer again: refused as a conflict, and no code comes out.
    let (problem, _) = expect_problem(server.approve(SECURITY_1, &id).await, 409).await;
    assert!(problem.get("enrolment_code").is_none());

    let second: Value = server.approve(SECURITY_2, &id).await.json().await.unwrap();
    assert_eq!(second["status"], "approved");
    assert!(second["enrolment_code"].as_str().unwrap().len() > 20);
    assert!(second["expires_at"].as_str().unwrap().ends_with('Z'));

    let (key, csr_pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
    let response = server.enrol(second["enrolment_code"].as_str().unwrap(), &csr_pem).await;
    assert_eq!(response.status(), 201);

    // The agency's certificate carries clientAuth, so the agency renews over mTLS with it.
    let issued: Value = response.json().await.unwrap();
    let agency = server.subscriber(&key, issued["certificate"].as_str().unwrap());
    let (_new_key, new_csr) = csr(SignatureAlgorithm::EcdsaP256Sha256);
    let response = agency.post(server.url("/api/v1/renew")).json(&json!({ "csr": new_csr })).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let renewed: Value = response.json().await.unwrap();
    assert_eq!(renewed["profile"], "agency");
    assert_ne!(renewed["serial"], issued["serial"]);
    server.stop().await;
}

#[tokio::test]
async fn renews_with_the_subscribers_own_client_certificate() {
    let server = TestServer::start().await;
    let (key, issued) = server.enrolled_subscriber().await;
    let subscriber = server.subscriber(&key, issued["certificate"].as_str().unwrap());

    let (_new_key, new_csr) = csr(SignatureAlgorithm::EcdsaP256Sha256);
    let response = subscriber.post(server.url("/api/v1/renew")).json(&json!({ "csr": new_csr })).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let renewed: Value = response.json().await.unwrap();
    assert_ne!(renewed["serial"], issued["serial"]);
    assert_eq!(renewed["profile"], "enterprise-legal-rep");

    // A subscriber cannot use officer endpoints.
    let body = json!({ "kind": "agency", "profile": "agency", "agency_code": "X-1", "name": "X" });
    let refused = subscriber.post(server.url("/api/v1/registrations")).json(&body).send().await.unwrap();
    expect_problem(refused, 403).await;
    server.stop().await;
}

#[tokio::test]
async fn revocation_shows_in_the_public_crl_and_fails_openssl_crl_check() {
    let server = TestServer::start().await;
    let (_key, issued) = server.enrolled_subscriber().await;
    let serial = issued["serial"].as_str().unwrap().to_owned();
    let officer = server.officer(SECURITY_1);

    let response = officer
        .post(server.url(&format!("/api/v1/certificates/{}/revoke", serial.to_uppercase())))
        .json(&json!({ "reason": "affiliationChanged" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let revoked: Value = response.json().await.unwrap();
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revocation_reason"], "affiliationChanged");

    // Twice is a conflict.
    let again = officer
        .post(server.url(&format!("/api/v1/certificates/{serial}/revoke")))
        .json(&json!({ "reason": "affiliationChanged" }))
        .send()
        .await
        .unwrap();
    expect_problem(again, 409).await;

    // The CRL from the public listener (plain HTTP) lists the serial.
    let crl = reqwest::get(server.public_url("/crl/p256.crl")).await.unwrap();
    assert_eq!(crl.status(), 200);
    assert_eq!(crl.headers()["content-type"], "application/pkix-crl");
    let crl = crl.bytes().await.unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::write(dir.path().join("crl.der"), &crl).unwrap();
    std::fs::write(dir.path().join("leaf.pem"), issued["certificate"].as_str().unwrap()).unwrap();
    std::fs::write(dir.path().join("issuing.pem"), issued["chain"][0].as_str().unwrap()).unwrap();
    std::fs::write(dir.path().join("root.pem"), issued["chain"][1].as_str().unwrap()).unwrap();
    let (ok, text) = openssl(dir.path(), &["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"]);
    assert!(ok, "{text}");
    let (_, listing) = openssl(dir.path(), &["crl", "-in", "crl.pem", "-noout", "-text"]);
    assert!(listing.to_ascii_lowercase().contains(&serial.to_ascii_lowercase()), "serial {serial} not in\n{listing}");
    // The root's CRL (the ARL) for the full-chain check.
    let arl = reqwest::get(server.public_url("/crl/p256-root.crl")).await.unwrap();
    assert_eq!(arl.status(), 200);
    std::fs::write(dir.path().join("arl.der"), arl.bytes().await.unwrap()).unwrap();
    let (ok, text) = openssl(dir.path(), &["crl", "-inform", "DER", "-in", "arl.der", "-out", "arl.pem"]);
    assert!(ok, "{text}");
    let (ok, text) = openssl(
        dir.path(),
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issuing.pem",
            "-CRLfile",
            "crl.pem",
            "leaf.pem",
        ],
    );
    assert!(!ok && text.contains("revoked"), "a revoked certificate must fail -crl_check: {text}");
    // And with the whole chain checked against both CRLs.
    let both = [
        std::fs::read_to_string(dir.path().join("crl.pem")).unwrap(),
        std::fs::read_to_string(dir.path().join("arl.pem")).unwrap(),
    ];
    std::fs::write(dir.path().join("crls.pem"), both.concat()).unwrap();
    let (ok, text) = openssl(
        dir.path(),
        &[
            "verify",
            "-crl_check_all",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issuing.pem",
            "-CRLfile",
            "crls.pem",
            "leaf.pem",
        ],
    );
    assert!(!ok && text.contains("revoked"), "-crl_check_all: {text}");

    // The CA certificates are served too, DER.
    let ca = reqwest::get(server.public_url("/ca/p256.crt")).await.unwrap();
    assert_eq!(ca.status(), 200);
    assert_eq!(ca.headers()["content-type"], "application/pkix-cert");
    assert_eq!(ca.bytes().await.unwrap().to_vec(), server.issuing_der());
    server.stop().await;
}

#[tokio::test]
async fn hold_and_release_suspend_and_restore_a_certificate() {
    let server = TestServer::start().await;
    let (key, issued) = server.enrolled_subscriber().await;
    let serial = issued["serial"].as_str().unwrap().to_owned();
    let officer = server.officer(SECURITY_1);
    let subscriber = server.subscriber(&key, issued["certificate"].as_str().unwrap());
    let (_k, renew_csr) = csr(SignatureAlgorithm::EcdsaP256Sha256);

    let held = officer.post(server.url(&format!("/api/v1/certificates/{serial}/hold"))).send().await.unwrap();
    assert_eq!(held.status(), 200);
    assert_eq!(held.json::<Value>().await.unwrap()["status"], "hold");
    let listed: Value =
        officer.get(server.url("/api/v1/certificates?status=hold")).send().await.unwrap().json().await.unwrap();
    assert!(listed["certificates"].as_array().unwrap().iter().any(|c| c["serial"] == serial.as_str()));
    // On hold, the certificate no longer authenticates.
    let refused = subscriber.post(server.url("/api/v1/renew")).json(&json!({ "csr": renew_csr })).send().await.unwrap();
    expect_problem(refused, 401).await;

    let released = officer.post(server.url(&format!("/api/v1/certificates/{serial}/release"))).send().await.unwrap();
    assert_eq!(released.status(), 200);
    assert_eq!(released.json::<Value>().await.unwrap()["status"], "good");
    let again = officer.post(server.url(&format!("/api/v1/certificates/{serial}/release"))).send().await.unwrap();
    expect_problem(again, 409).await;
    let renewed = subscriber.post(server.url("/api/v1/renew")).json(&json!({ "csr": renew_csr })).send().await.unwrap();
    assert_eq!(renewed.status(), 201);
    server.stop().await;
}

#[tokio::test]
async fn a_subscriber_may_revoke_its_own_certificate_only_for_key_compromise() {
    let server = TestServer::start().await;
    let (key, issued) = server.enrolled_subscriber().await;
    let serial = issued["serial"].as_str().unwrap().to_owned();
    let subscriber = server.subscriber(&key, issued["certificate"].as_str().unwrap());
    let url = server.url(&format!("/api/v1/certificates/{serial}/revoke"));

    let refused = subscriber.post(&url).json(&json!({ "reason": "superseded" })).send().await.unwrap();
    expect_problem(refused, 403).await;
    let revoked = subscriber.post(&url).json(&json!({ "reason": "keyCompromise" })).send().await.unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(revoked.json::<Value>().await.unwrap()["revocation_reason"], "keyCompromise");
    server.stop().await;
}

#[tokio::test]
async fn public_endpoints_answer_without_tls_and_unknown_paths_are_problems() {
    let server = TestServer::start().await;
    let health = reqwest::get(server.public_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    expect_problem(reqwest::get(server.public_url("/ca/nope.crt")).await.unwrap(), 404).await;
    expect_problem(reqwest::get(server.public_url("/ca/p256.pem")).await.unwrap(), 404).await;
    expect_problem(reqwest::get(server.public_url("/crl/nope.crl")).await.unwrap(), 404).await;
    expect_problem(reqwest::get(server.public_url("/elsewhere")).await.unwrap(), 404).await;
    let post = reqwest::Client::new().post(server.public_url("/healthz")).send().await.unwrap();
    expect_problem(post, 405).await;
    let api_unknown = server.officer(SECURITY_1).get(server.url("/api/v1/nothing")).send().await.unwrap();
    expect_problem(api_unknown, 404).await;
    let wrong_method = server.officer(SECURITY_1).get(server.url("/api/v1/enrol")).send().await.unwrap();
    expect_problem(wrong_method, 405).await;
    server.stop().await;
}
