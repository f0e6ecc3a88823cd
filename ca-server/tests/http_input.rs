//! Bad input at `POST /api/v1/enrol` (the one endpoint open without a client certificate) and
//! elsewhere: every refusal is a problem document, nothing is issued, and enrolment codes
//! cannot be reused or guessed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_support;

use ca_server::http::BODY_LIMIT;
use http_support::{SECURITY_1, TestServer, csr, expect_problem, openssl_csr};
use serde_json::{Value, json};
use signer_lib::SignatureAlgorithm;

/// How many certificates the CA has issued to subscribers (status good, enterprise profile).
async fn issued_count(server: &TestServer) -> usize {
    let listed: Value = server
        .officer(SECURITY_1)
        .get(server.url("/api/v1/certificates?status=good"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listed["certificates"].as_array().unwrap().iter().filter(|c| c["profile"] == "enterprise-legal-rep").count()
}

#[tokio::test]
async fn refuses_bad_bodies_with_problem_documents() {
    let server = TestServer::start().await;
    let url = server.url("/api/v1/enrol");
    let client = server.anonymous();

    // Malformed JSON: 400.
    let response =
        client.post(&url).header("content-type", "application/json").body("{\"code\": \"x\", ").send().await.unwrap();
    expect_problem(response, 400).await;
    // Well-formed but not the schema (unknown field, missing field): 422.
    let response = client.post(&url).json(&json!({ "code": "x", "csr": "y", "extra": 1 })).send().await.unwrap();
    expect_problem(response, 422).await;
    let response = client.post(&url).json(&json!({ "code": "x" })).send().await.unwrap();
    expect_problem(response, 422).await;
    // Not JSON at all: 415.
    let response = client.post(&url).header("content-type", "text/plain").body("code=x").send().await.unwrap();
    expect_problem(response, 415).await;
    let response = client.post(&url).body("{}").send().await.unwrap();
    expect_problem(response, 415).await;
    // Over the limit: 413, with or without a Content-Length that says so.
    let huge = json!({ "code": "x", "csr": "A".repeat(BODY_LIMIT) });
    let response = client.post(&url).json(&huge).send().await.unwrap();
    let (problem, _) = expect_problem(response, 413).await;
    assert!(problem["detail"].as_str().unwrap().contains(&BODY_LIMIT.to_string()));
    // The same on an authenticated endpoint.
    let officer = server.officer(SECURITY_1);
    let response = officer
        .post(server.url("/api/v1/registrations"))
        .header("content-type", "application/json")
        .body("[1, 2")
        .send()
        .await
        .unwrap();
    expect_problem(response, 400).await;
    let response = officer
        .post(server.url("/api/v1/registrations"))
        .json(&json!({ "kind": "enterprise", "profile": "no-such-profile", "uscc": http_support::USCC, "name": "A", "legal_representative": "B" }))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400).await;
    let response = officer
        .post(server.url("/api/v1/registrations"))
        .json(&json!({ "kind": "enterprise", "profile": "enterprise-legal-rep", "uscc": "91350100M000100Y44", "name": "A", "legal_representative": "B" }))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400).await;
    let response = officer.get(server.url("/api/v1/certificates?colour=blue")).send().await.unwrap();
    expect_problem(response, 400).await;
    server.stop().await;
}

#[tokio::test]
async fn refuses_bad_certificate_requests_and_issues_nothing() {
    let server = TestServer::start().await;
    let code = server.enterprise_code().await;
    let scratch = tempfile::TempDir::new().unwrap();

    // Garbage.
    expect_problem(
        server.enrol(&code, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n").await,
        400,
    )
    .await;
    expect_problem(server.enrol(&code, "not a csr at all").await, 400).await;
    // A CSR whose signature does not verify (one byte of the signature flipped).
    let (_key, good) = csr(SignatureAlgorithm::EcdsaP256Sha256);
    let (label, mut der) = der::pem::decode_vec(good.as_bytes()).unwrap();
    let last = der.len() - 3;
    der[last] ^= 0x01;
    let tampered = der::pem::encode_string(label, der::pem::LineEnding::LF, &der).unwrap();
    let (problem, _) = expect_problem(server.enrol(&code, &tampered).await, 400).await;
    assert!(problem["detail"].as_str().unwrap().to_lowercase().contains("csr"), "{problem}");
    // An RSA-1024 key, and a curve the profile does not allow.
    let rsa = openssl_csr(scratch.path(), &["-newkey", "rsa:1024"]);
    expect_problem(server.enrol(&code, &rsa).await, 400).await;
    let p384 = openssl_csr(scratch.path(), &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"]);
    expect_problem(server.enrol(&code, &p384).await, 400).await;
    assert_eq!(issued_count(&server).await, 0, "nothing may be issued for bad requests");

    // The code still works afterwards, once.
    let (_key, csr_pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
    assert_eq!(server.enrol(&code, &csr_pem).await.status(), 201);
    let (problem, _) = expect_problem(server.enrol(&code, &csr_pem).await, 403).await;
    assert_eq!(problem["type"], "urn:eport:problem:enrolment-code-invalid");
    assert_eq!(issued_count(&server).await, 1);
    server.stop().await;
}

#[tokio::test]
async fn wrong_and_guessed_codes_get_one_answer_until_the_source_is_locked() {
    // Three wrong secrets burn a code; five refused codes lock the source address.
    let server = TestServer::start_with(|config| {
        config.enrolment.max_attempts = std::num::NonZeroU32::new(3).unwrap();
        config.lockout.max_failures = std::num::NonZeroU32::new(5).unwrap();
    })
    .await;
    let code = server.enterprise_code().await;
    let (_key, csr_pem) = csr(SignatureAlgorithm::EcdsaP256Sha256);
    let (registration, _secret) = code.split_once('.').unwrap();

    // A wrong secret for a real registration, and a made-up code: the same answer.
    let wrong = format!("{registration}.AAAAAAAAAAAAAAAAAAAAAAAAAA");
    let (a, _) = expect_problem(server.enrol(&wrong, &csr_pem).await, 403).await;
    let (b, _) = expect_problem(server.enrol("0000000000000000.BBBBBBBBBBBBBBBBBBBBBBBBBB", &csr_pem).await, 403).await;
    assert_eq!(a["detail"], b["detail"]);
    assert_eq!(a["type"], b["type"]);

    // Guessing on: the attempt limit burns the code and the source gets locked out.
    let mut locked = false;
    for _ in 0..10 {
        let response = server.enrol(&wrong, &csr_pem).await;
        match response.status().as_u16() {
            403 => continue,
            429 => {
                assert!(response.headers().contains_key("retry-after"));
                expect_problem(response, 429).await;
                locked = true;
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(locked, "repeated wrong codes must lock the source out");
    // Even the right code is refused now.
    assert_eq!(server.enrol(&code, &csr_pem).await.status(), 429);
    server.clock.advance(time::Duration::hours(1));
    // After the lock, the code is burnt (attempt limit), still the one answer.
    expect_problem(server.enrol(&code, &csr_pem).await, 403).await;
    assert_eq!(issued_count(&server).await, 0);
    server.stop().await;
}

#[tokio::test]
async fn every_response_has_a_request_id_and_errors_do_not_leak_internals() {
    let server = TestServer::start().await;
    let first = server.anonymous().post(server.url("/api/v1/enrol")).json(&json!({})).send().await.unwrap();
    let second = server.anonymous().post(server.url("/api/v1/enrol")).json(&json!({})).send().await.unwrap();
    let a = first.headers()["x-request-id"].to_str().unwrap().to_owned();
    let b = second.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(a, b);
    assert_eq!(a.len(), 32);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    let body = first.text().await.unwrap();
    for secret in ["sqlite", "database", ".rs:", "panicked"] {
        assert!(!body.contains(secret), "{body}");
    }
    server.stop().await;
}
