//! `eport-ca serve` runs the OCSP responder in-process at `/ocsp` on its public listener, the
//! URL its certificates' AIA carries: `openssl ocsp` sees an enrolled certificate `good`, and
//! `revoked` once the change feed has picked up its revocation through the API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_support;

use std::path::Path;
use std::time::{Duration, Instant};

use http_support::{SECURITY_1, TestServer, openssl};
use ocsp_responder::Settings;
use serde_json::{Value, json};

/// How long the change feed may take to show a revocation (poll interval 1 s here).
const FEED_BOUND: Duration = Duration::from_secs(20);
/// How often the test asks again while waiting.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// `openssl ocsp` for `leaf.pem` in `dir` against `url`: (verified, status line).
fn ocsp_status(dir: &Path, url: &str) -> (bool, String) {
    let (ok, text) =
        openssl(dir, &["ocsp", "-issuer", "issuing.pem", "-cert", "leaf.pem", "-url", url, "-CAfile", "root.pem"]);
    let line = text.lines().find(|l| l.starts_with("leaf.pem:")).unwrap_or_default().trim().to_owned();
    (ok && text.contains("Response verify OK"), if line.is_empty() { text } else { line })
}

/// [`ocsp_status`] off the runtime's threads (the server answers on them).
async fn blocking_ocsp_status(dir: &Path, url: &str) -> (bool, String) {
    let (dir, url) = (dir.to_owned(), url.to_owned());
    tokio::task::spawn_blocking(move || ocsp_status(&dir, &url)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_ocsp_sees_good_then_revoked_from_the_embedded_responder() {
    let settings = Settings { poll_interval: Duration::from_secs(1), ..Settings::default() };
    let server = TestServer::start_with_ocsp(settings).await;
    let responder = server.ocsp.as_ref().unwrap().responder();
    let ids: Vec<String> = responder.issuers().iter().map(|i| i.id().to_string()).collect();
    assert_eq!(ids, ["p256", "sm2"], "one delegated responder per issuing CA");

    let (_key, issued) = server.enrolled_subscriber().await;
    let serial = issued["serial"].as_str().unwrap().to_owned();
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::write(dir.path().join("leaf.pem"), issued["certificate"].as_str().unwrap()).unwrap();
    std::fs::write(dir.path().join("issuing.pem"), issued["chain"][0].as_str().unwrap()).unwrap();
    std::fs::write(dir.path().join("root.pem"), issued["chain"][1].as_str().unwrap()).unwrap();

    // The AIA names the listener's /ocsp.
    let url = server.public_url("/ocsp");
    let (ok, aia) = openssl(dir.path(), &["x509", "-in", "leaf.pem", "-noout", "-ocsp_uri"]);
    assert!(ok, "{aia}");
    assert_eq!(aia.trim(), url, "the AIA OCSP URL is the embedded responder's");

    let (verified, status) = blocking_ocsp_status(dir.path(), &url).await;
    assert!(verified && status == "leaf.pem: good", "{status}");

    let response = server
        .officer(SECURITY_1)
        .post(server.url(&format!("/api/v1/certificates/{serial}/revoke")))
        .json(&json!({ "reason": "keyCompromise" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let revoked: Value = response.json().await.unwrap();
    assert_eq!(revoked["status"], "revoked");

    // The change feed re-signs it within its poll interval; wait for it, bounded.
    let started = Instant::now();
    let last = loop {
        let (verified, status) = blocking_ocsp_status(dir.path(), &url).await;
        assert!(verified, "{status}");
        if status.starts_with("leaf.pem: revoked") || started.elapsed() > FEED_BOUND {
            break status;
        }
        tokio::time::sleep(RETRY_EVERY).await;
    };
    assert_eq!(last, "leaf.pem: revoked", "not revoked after {FEED_BOUND:?}");
    server.stop().await;
}
