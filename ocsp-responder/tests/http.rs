//! The HTTP layer: POST and GET give the same bytes, caching headers match the response,
//! HTTP-level refusals, health and metrics, nesting under `/ocsp`.

#![allow(clippy::unwrap_used)]

mod common;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use common::{basic, cert_id, pki, request, responder, status_of};
use ocsp_responder::{CertIdHash, Settings, router};
use signer_lib::SignatureAlgorithm;
use tower::ServiceExt as _;
use x509_ocsp::OcspResponseStatus;

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Bytes) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, headers, body)
}

fn post(path: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(path).header(header::CONTENT_TYPE, "application/ocsp-request").body(Body::from(body)).unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// RFC 5019 §5: base64, then URL-encoded.
fn get_path(prefix: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let encoded: String = b64
        .chars()
        .map(|c| match c {
            '+' => "%2B".to_owned(),
            '/' => "%2F".to_owned(),
            '=' => "%3D".to_owned(),
            c => c.to_string(),
        })
        .collect();
    format!("{prefix}/{encoded}")
}

#[tokio::test]
async fn get_and_post_give_the_same_bytes_with_consistent_caching_headers() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let (r, _) = responder(&[&p], Settings::default()).await;
    let app = router(r.clone());
    let der = request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], None);

    let (status, headers, posted) = call(&app, post("/ocsp", der.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/ocsp-response");
    let (_, _, posted_root) = call(&app, post("/", der.clone())).await;
    let (status, get_headers, got) = call(&app, get(&get_path("/ocsp", &der))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, got_root) = call(&app, get(&get_path("", &der))).await;
    // Unencoded base64 in the path works too ('/' is then a path separator inside the wildcard).
    let raw = format!("/ocsp/{}", base64::engine::general_purpose::STANDARD.encode(&der));
    let (_, _, got_raw) = call(&app, get(&raw)).await;
    assert_eq!(posted, got);
    assert_eq!(posted, posted_root);
    assert_eq!(posted, got_root);
    assert_eq!(posted, got_raw);

    let single = &basic(&got).tbs_response_data.responses[0];
    let this = time::OffsetDateTime::from_unix_timestamp(
        i64::try_from(single.this_update.0.to_unix_duration().as_secs()).unwrap(),
    )
    .unwrap();
    let next = time::OffsetDateTime::from_unix_timestamp(
        i64::try_from(single.next_update.unwrap().0.to_unix_duration().as_secs()).unwrap(),
    )
    .unwrap();
    assert_eq!(get_headers[header::LAST_MODIFIED], ocsp_responder::cache::http_date(this));
    assert_eq!(get_headers[header::EXPIRES], ocsp_responder::cache::http_date(next));
    assert!(get_headers[header::ETAG].to_str().unwrap().starts_with('"'));
    let cache_control = get_headers[header::CACHE_CONTROL].to_str().unwrap();
    assert!(cache_control.ends_with(", public, no-transform, must-revalidate"), "{cache_control}");
    let max_age: i64 = cache_control.strip_prefix("max-age=").unwrap().split(',').next().unwrap().parse().unwrap();
    let until_next = next.unix_timestamp() - time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(max_age < until_next && max_age > until_next - 60, "max-age {max_age}, nextUpdate in {until_next}");

    // A conditional GET with the tag: 304, no body.
    let conditional = Request::get(get_path("/ocsp", &der))
        .header(header::IF_NONE_MATCH, get_headers[header::ETAG].clone())
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = call(&app, conditional).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers[header::ETAG], get_headers[header::ETAG]);
}

#[tokio::test]
async fn nonce_responses_carry_no_caching_headers() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let (r, _) = responder(&[&p], Settings::default()).await;
    let app = router(r);
    let der = request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], Some(&[9; 32]));
    let (status, headers, body) = call(&app, post("/ocsp", der)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_of(&body), OcspResponseStatus::Successful);
    for name in [header::CACHE_CONTROL, header::EXPIRES, header::LAST_MODIFIED, header::ETAG] {
        assert!(!headers.contains_key(&name), "{name} on a nonce response");
    }
}

#[tokio::test]
async fn refuses_what_is_not_an_ocsp_request_at_the_right_layer() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let (r, _) = responder(&[&p], Settings::default()).await;
    let app = router(r.clone());
    let der = request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], None);

    // Wrong or missing content type: 415, before the body is looked at.
    let wrong =
        Request::post("/ocsp").header(header::CONTENT_TYPE, "text/plain").body(Body::from(der.clone())).unwrap();
    assert_eq!(call(&app, wrong).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let missing = Request::post("/ocsp").body(Body::from(der.clone())).unwrap();
    assert_eq!(call(&app, missing).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Oversized: 413 (a chunked body without a length is in tests/bad_input.rs).
    assert_eq!(call(&app, post("/ocsp", vec![0x30; 8 * 1024 + 1])).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Bad DER over POST and bad base64 over GET: malformedRequest, not cacheable.
    let (status, headers, body) = call(&app, post("/ocsp", b"not DER".to_vec())).await;
    assert_eq!((status, status_of(&body)), (StatusCode::OK, OcspResponseStatus::MalformedRequest));
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let (status, _, body) = call(&app, get("/ocsp/%%%not-base64!!")).await;
    assert!(status == StatusCode::OK || status == StatusCode::BAD_REQUEST, "{status}");
    if status == StatusCode::OK {
        assert_eq!(status_of(&body), OcspResponseStatus::MalformedRequest);
    }
    let (status, _, body) = call(&app, get("/ocsp/not*base64")).await;
    assert_eq!((status, status_of(&body)), (StatusCode::OK, OcspResponseStatus::MalformedRequest));
    let (status, _, body) = call(&app, get(&get_path("/ocsp", b"valid base64, not DER"))).await;
    assert_eq!((status, status_of(&body)), (StatusCode::OK, OcspResponseStatus::MalformedRequest));

    // A GET path that cannot decode to an acceptable request: 414.
    let long = format!("/ocsp/{}", "A".repeat(40_000));
    assert_eq!(call(&app, get(&long)).await.0, StatusCode::URI_TOO_LONG);

    // Other methods: 405.
    let put = Request::put("/ocsp").body(Body::from(der)).unwrap();
    assert_eq!(call(&app, put).await.0, StatusCode::METHOD_NOT_ALLOWED);

    let metrics = String::from_utf8(call(&app, get("/metrics")).await.2.to_vec()).unwrap();
    assert!(metrics.contains("ocsp_http_refused_total{code=\"415\"} 2"), "{metrics}");
    assert!(metrics.contains("ocsp_http_refused_total{code=\"413\"} 1"), "{metrics}");
}

#[tokio::test]
async fn health_and_metrics() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let source = std::sync::Arc::new(ocsp_responder::source::memory::MemorySource::new());
    common::record(&p, &source);
    let r = ocsp_responder::Responder::new(vec![common::issuer(&p)], source as _, Settings::default()).unwrap();
    let app = router(r.clone());
    assert_eq!(call(&app, get("/healthz")).await.0, StatusCode::SERVICE_UNAVAILABLE, "before pre-signing");
    r.start().await.unwrap();
    assert_eq!(call(&app, get("/healthz")).await.0, StatusCode::OK);

    let der = request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], None);
    call(&app, post("/ocsp", der)).await;
    let (status, headers, body) = call(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    let text = String::from_utf8(body.to_vec()).unwrap();
    for needle in [
        "ocsp_responses_total{status=\"good\",origin=\"cache\"} 1",
        "ocsp_signing_seconds_count 3",
        "ocsp_cache_entries 3",
        "ocsp_cache_oldest_age_seconds ",
        "# TYPE ocsp_signing_seconds histogram",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[tokio::test]
async fn can_be_nested_under_ocsp_in_another_server() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let (r, _) = responder(&[&p], Settings::default()).await;
    let app = Router::new().route("/other", axum::routing::get(|| async { "ca" })).nest("/ocsp", router(r));
    let der = request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], None);
    let (status, _, posted) = call(&app, post("/ocsp", der.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, got) = call(&app, get(&get_path("/ocsp", &der))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(posted, got);
    assert_eq!(status_of(&got), OcspResponseStatus::Successful);
    assert_eq!(call(&app, get("/ocsp/healthz")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn ocsp_routes_merge_into_a_server_with_its_own_health_check() {
    let p = pki(SignatureAlgorithm::EcdsaP256Sha256, "p256");
    let (r, _) = responder(&[&p], Settings::default()).await;
    let app = Router::new()
        .route("/healthz", axum::routing::get(|| async { "ca ok" }))
        .route("/ca/{file}", axum::routing::get(|| async { "cert" }))
        .merge(ocsp_responder::ocsp_routes(r));
    let der = request(&[cert_id(&p.issuing, &p.leaves[0], CertIdHash::Sha1)], None);
    let (status, _, posted) = call(&app, post("/ocsp", der.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, got) = call(&app, get(&get_path("/ocsp", &der))).await;
    assert_eq!(posted, got);
    assert_eq!(call(&app, get("/healthz")).await.2, "ca ok");
    assert_eq!(call(&app, get("/ca/p256.crt")).await.2, "cert");
}
