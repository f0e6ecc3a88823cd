//! The HTTP face of the responder (RFC 6960 Appendix A, RFC 5019 §5–6), as an axum router
//! that runs standalone (`eport-ocsp serve`) or nested in another server
//! (`Router::nest("/ocsp", router(responder))`).
//!
//! | route | |
//! |---|---|
//! | `POST /`, `POST /ocsp` | body: DER OCSPRequest, `Content-Type: application/ocsp-request` |
//! | `GET /{base64}`, `GET /ocsp/{base64}` | the DER request, base64 then URL-encoded (RFC 5019 §5) |
//! | `GET /healthz` | 200 when pre-signed and following the change feed, else 503 |
//! | `GET /metrics` | Prometheus text format |
//!
//! Decisions:
//! - Every OCSP answer, errors included, is HTTP 200 with `application/ocsp-response`: the
//!   OCSP status (malformedRequest, unauthorized, tryLater, internalError) is the protocol's
//!   own error channel, and clients read it. Bad base64 in a GET path is a malformed request,
//!   so it is `malformedRequest`, like bad DER in a POST body.
//! - HTTP status codes are for what never reaches OCSP: 413 for a body over
//!   [`MAX_REQUEST_LEN`], 414 for a GET path that could not decode to less, 415 for a POST
//!   without `Content-Type: application/ocsp-request` (checked before the body is read),
//!   405 for other methods.
//! - The same request gets the same bytes over GET and POST. Pre-signed answers carry
//!   `Last-Modified` (thisUpdate), `Expires` (nextUpdate), `ETag` and `Cache-Control:
//!   max-age=<below nextUpdate − now>, public, no-transform, must-revalidate`; a GET with a
//!   matching `If-None-Match` gets 304. Answers signed for a nonce or for several CertIDs
//!   carry no caching headers; error answers carry `Cache-Control: no-store`.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, EXPIRES, IF_NONE_MATCH, LAST_MODIFIED};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::Responder;
use crate::metrics::{HttpRefusal, Origin};
use crate::request::MAX_REQUEST_LEN;
use crate::responder::Answer;

/// The request media type (RFC 6960 Appendix A.1).
pub const OCSP_REQUEST: &str = "application/ocsp-request";
/// The response media type (RFC 6960 Appendix A.2).
pub const OCSP_RESPONSE: &str = "application/ocsp-response";

/// The longest GET path segment decoded: base64 of [`MAX_REQUEST_LEN`] octets with every
/// character percent-encoded.
const MAX_GET_LEN: usize = MAX_REQUEST_LEN.div_ceil(3) * 4 * 3;

/// Standard base64 with or without padding (clients differ).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// All the routes above, over `responder`: what `eport-ocsp serve` serves. Another axum
/// server can nest it (`Router::nest("/ocsp", router(responder))`), or merge
/// [`ocsp_routes`] instead. Call [`Responder::spawn_background`] to keep the responses fresh.
pub fn router(responder: Responder) -> Router {
    ocsp_routes(responder.clone())
        .route("/", post(post_request))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/{*request}", get(get_request))
        .with_state(responder)
}

/// Only `POST /ocsp` and `GET /ocsp/{base64}`, for merging into a server that has its own
/// `/healthz` and fallback (ca-server's public listener: `Router::merge`). Its health and
/// counters are [`Responder::health`] and [`crate::metrics::Metrics::render`].
pub fn ocsp_routes<S: Clone + Send + Sync + 'static>(responder: Responder) -> Router<S> {
    Router::new().route("/ocsp", post(post_request)).route("/ocsp/{*request}", get(get_request)).with_state(responder)
}

async fn post_request(State(responder): State<Responder>, request: Request) -> Response {
    let headers = request.headers();
    if !is_ocsp_request(headers) {
        responder.metrics().http_refusal(HttpRefusal::UnsupportedMediaType);
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("Content-Type must be {OCSP_REQUEST}\n")).into_response();
    }
    let declared_too_long = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > MAX_REQUEST_LEN as u64);
    let body =
        if declared_too_long { None } else { axum::body::to_bytes(request.into_body(), MAX_REQUEST_LEN).await.ok() };
    let Some(body) = body else {
        responder.metrics().http_refusal(HttpRefusal::TooLarge);
        return (StatusCode::PAYLOAD_TOO_LARGE, format!("OCSP requests are limited to {MAX_REQUEST_LEN} octets\n"))
            .into_response();
    };
    let answer = responder.respond(&body).await;
    ocsp_response(&responder, answer, None)
}

async fn get_request(State(responder): State<Responder>, Path(encoded): Path<String>, headers: HeaderMap) -> Response {
    if encoded.len() > MAX_GET_LEN {
        responder.metrics().http_refusal(HttpRefusal::UriTooLong);
        return (StatusCode::URI_TOO_LONG, "request too long; use POST\n").into_response();
    }
    // axum has already percent-decoded the path (RFC 5019 §5: base64, then URL-encoded).
    let answer = match BASE64.decode(encoded.as_bytes()) {
        Ok(der) => responder.respond(&der).await,
        Err(_) => responder.respond(&[]).await,
    };
    ocsp_response(&responder, answer, headers.get(IF_NONE_MATCH))
}

/// `Content-Type: application/ocsp-request`, parameters and case aside.
fn is_ocsp_request(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(OCSP_REQUEST))
}

fn ocsp_response(responder: &Responder, answer: Answer, if_none_match: Option<&HeaderValue>) -> Response {
    let mut response = Response::new(Body::from(answer.body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(OCSP_RESPONSE));
    if let Some(entry) = &answer.cacheable {
        let cache = &entry.headers;
        headers.insert(LAST_MODIFIED, cache.last_modified.clone());
        headers.insert(EXPIRES, cache.expires.clone());
        headers.insert(ETAG, cache.etag.clone());
        headers.insert(CACHE_CONTROL, cache.cache_control(responder.now().unix_timestamp()));
        if if_none_match.is_some_and(|tags| etag_matches(tags, &cache.etag)) {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            *response.body_mut() = Body::empty();
        }
    } else if answer.origin == Origin::Unsigned {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `If-None-Match` (a list of tags, or `*`) against our strong tag (RFC 9110 §13.1.2).
fn etag_matches(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(tags) = if_none_match.to_str() else {
        return false;
    };
    let ours = etag.as_bytes();
    tags.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == ours)
}

async fn healthz(State(responder): State<Responder>) -> Response {
    match responder.health() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

async fn metrics(State(responder): State<Responder>) -> Response {
    let text = responder.metrics().render(responder.now().unix_timestamp());
    ([(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], Bytes::from(text)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_check_ignores_case_and_parameters() {
        let mut headers = HeaderMap::new();
        assert!(!is_ocsp_request(&headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("Application/OCSP-Request; charset=binary"));
        assert!(is_ocsp_request(&headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        assert!(!is_ocsp_request(&headers));
    }

    #[test]
    fn if_none_match_accepts_lists_and_star() {
        let ours = HeaderValue::from_static("\"abc\"");
        assert!(etag_matches(&HeaderValue::from_static("\"x\", \"abc\""), &ours));
        assert!(etag_matches(&HeaderValue::from_static("*"), &ours));
        assert!(!etag_matches(&HeaderValue::from_static("\"abd\""), &ours));
    }
}
