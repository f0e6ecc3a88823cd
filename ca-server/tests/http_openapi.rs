//! `GET /openapi.json` over HTTPS documents every route the router has, and every documented
//! API operation is routed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_support;

use ca_server::http::{ENDPOINTS, Method, PUBLIC_ENDPOINTS};
use http_support::{AUDIT, TestServer, expect_problem};
use serde_json::Value;

#[tokio::test]
async fn the_served_document_covers_every_route_and_every_documented_route_exists() {
    let server = TestServer::start().await;
    let officer = server.officer(AUDIT);
    let response = officer.get(server.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();

    for endpoint in ENDPOINTS {
        let operation = &paths[endpoint.path][endpoint.method.openapi_key()];
        assert_eq!(operation["operationId"], endpoint.operation_id, "{}", endpoint.path);
        // Every error response is a problem document.
        for (status, answer) in operation["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                assert!(answer["content"]["application/problem+json"].is_object(), "{} {status}", endpoint.path);
            }
        }
    }
    for endpoint in PUBLIC_ENDPOINTS {
        assert!(paths[endpoint.documented]["get"].is_object(), "{}", endpoint.documented);
    }

    // The other way round: every documented API path is routed (a wrong method is 405, an
    // unknown path 404, so anything but 404 means the route exists).
    for (path, item) in paths {
        if item.get("servers").is_some() {
            continue; // the public listener, checked in http_flow
        }
        let url = server.url(&path.replace("{id}", "0011223344556677").replace("{serial}", "0a"));
        for method in ["get", "post"] {
            if item.get(method).is_none() {
                continue;
            }
            let response = match method {
                "get" => officer.get(&url).send().await.unwrap(),
                _ => officer.post(&url).send().await.unwrap(),
            };
            assert_ne!(response.status(), 404, "{method} {path} is documented but not routed");
        }
    }
    assert!(ENDPOINTS.iter().any(|e| e.method == Method::Get));

    // Without a client certificate, even the document is refused.
    expect_problem(server.anonymous().get(server.url("/openapi.json")).send().await.unwrap(), 401).await;
    server.stop().await;
}
