//! RFC 9457 problem documents: the only shape an error takes on the wire.
//!
//! ```text
//! HTTP/1.1 403 Forbidden
//! Content-Type: application/problem+json
//! x-request-id: 5f0c…
//!
//! {"type":"urn:eport:problem:forbidden","title":"Forbidden","status":403,
//!  "detail":"this operation needs the role security_officer","request_id":"5f0c…"}
//! ```
//!
//! Every service [`Error`] maps to one status code and one problem type here, and nowhere else.
//! Details that could help an attacker or leak internals (database errors, key backend errors,
//! which check an enrolment code failed) never reach the body: they are logged server-side under
//! the request id, and the body carries a generic sentence.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;

/// The media type of a problem document (RFC 9457 §3).
pub const CONTENT_TYPE: &str = "application/problem+json";

/// The prefix of our problem type URIs. They are URNs: they name a kind of problem and are not
/// meant to be dereferenced.
pub const TYPE_PREFIX: &str = "urn:eport:problem:";

/// A problem document plus what the server keeps to itself.
///
/// A `Problem` is also left in the response's extensions, where the request-id layer adds the
/// request id to the body and logs [`Problem::internal`], and the authorisation layer reads the
/// outcome it audits.
///
/// Boxed inside, so that `Result<_, Problem>` stays one pointer wide on the happy path.
#[derive(Clone, Debug)]
pub struct Problem(Box<Inner>);

#[derive(Clone, Debug)]
struct Inner {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    retry_after_seconds: Option<u64>,
    request_id: Option<String>,
    /// What went wrong inside, for the server log only.
    internal: Option<String>,
}

/// The JSON body (RFC 9457 §3.1 members, plus the request id as an extension member).
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl Problem {
    /// A problem with `status`, a type slug (`urn:eport:problem:<kind>`), a short constant title
    /// and a detail sentence safe to show the caller.
    #[must_use]
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            status,
            kind,
            title,
            detail: detail.into(),
            retry_after_seconds: None,
            request_id: None,
            internal: None,
        }))
    }

    /// 400: the request is not what the endpoint takes (syntax).
    #[must_use]
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request", detail)
    }

    /// 401: a client certificate is needed and there was none, or it is not one of ours.
    #[must_use]
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Authentication required", detail)
    }

    /// 403: the caller is known but its role may not do this.
    #[must_use]
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 404: no such resource.
    #[must_use]
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 405: the path exists, the method does not.
    #[must_use]
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this path does not accept this method",
        )
    }

    /// 413: the body is over the limit.
    #[must_use]
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("request bodies are limited to {limit} bytes"),
        )
    }

    /// 415: the body is not JSON.
    #[must_use]
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "the request body must be application/json",
        )
    }

    /// 422: well-formed JSON that does not fit the endpoint's schema.
    #[must_use]
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", "Invalid request", detail)
    }

    /// 500 with a generic detail; `internal` goes to the server log with the request id.
    #[must_use]
    pub fn internal(internal: impl Into<String>) -> Self {
        let mut problem = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server could not complete the request; quote the request id to the operator",
        );
        problem.0.internal = Some(internal.into());
        problem
    }

    /// 503: the audit trail cannot be written, so nothing is done (fail closed).
    #[must_use]
    pub fn audit_unavailable(internal: impl Into<String>) -> Self {
        let mut problem = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit-unavailable",
            "Service unavailable",
            "the audit trail cannot be written, so the request was not processed; try again later",
        );
        problem.0.internal = Some(internal.into());
        problem.0.retry_after_seconds = Some(30);
        problem
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The full type URI.
    #[must_use]
    pub fn type_uri(&self) -> String {
        format!("{TYPE_PREFIX}{}", self.0.kind)
    }

    /// The type slug (after [`TYPE_PREFIX`]).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        self.0.kind
    }

    /// The detail shown to the caller.
    #[must_use]
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// What went wrong inside (server log only).
    #[must_use]
    pub fn internal_detail(&self) -> Option<&str> {
        self.0.internal.as_deref()
    }

    /// The outcome as the audit trail records it: the type and the detail (never the internal
    /// detail, which may hold secrets such as a database URL).
    #[must_use]
    pub fn audit_reason(&self) -> String {
        format!("{} {}: {}", self.0.status.as_u16(), self.0.kind, self.0.detail)
    }

    /// The same problem, tagged with the request id.
    #[must_use]
    pub fn with_request_id(mut self, request_id: &str) -> Self {
        self.0.request_id = Some(request_id.to_owned());
        self
    }

    fn body(&self) -> Vec<u8> {
        let body = Body {
            kind: self.type_uri(),
            title: self.0.title,
            status: self.0.status.as_u16(),
            detail: &self.0.detail,
            request_id: self.0.request_id.as_deref(),
        };
        // Serialising a struct of strings and an integer cannot fail; fall back to a fixed
        // document rather than panic if it ever did.
        serde_json::to_vec(&body)
            .unwrap_or_else(|_| br#"{"type":"about:blank","title":"Internal error","status":500}"#.to_vec())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.0.status, self.body()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(seconds) = self.0.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(self);
        response
    }
}

impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        Self::from(&error)
    }
}

impl From<&Error> for Problem {
    /// The one place service errors become status codes.
    ///
    /// | service error | status | type |
    /// |---|---|---|
    /// | `Unauthenticated` | 401 | `unauthenticated` |
    /// | `Forbidden` | 403 | `forbidden` |
    /// | `Locked` | 429 + `Retry-After` | `locked` |
    /// | `NotFound` | 404 | `not-found` |
    /// | `BadRequest` | 400 | `bad-request` |
    /// | `Conflict` | 409 | `conflict` |
    /// | `CodeInvalid` | 403 | `enrolment-code-invalid` (one message for every reason) |
    /// | `Lint` | 422 | `lint-failed` |
    /// | `AuditUnavailable` | 503 + `Retry-After` | `audit-unavailable` |
    /// | `Store`, `Internal`, anything else | 500 | `internal` (generic detail; logged) |
    fn from(error: &Error) -> Self {
        match error {
            Error::Unauthenticated { .. } => {
                let mut problem =
                    Self::unauthenticated("the client certificate is not a valid, current identity of this CA");
                problem.0.internal = Some(error.to_string());
                problem
            }
            Error::Forbidden { .. } => Self::forbidden(error.to_string()),
            Error::Locked { until } => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let seconds = u64::try_from(until.saturating_sub(now)).unwrap_or(0).max(1);
                let mut problem = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "locked",
                    "Identity locked",
                    "this identity is locked after repeated authentication failures; try again later",
                );
                problem.0.retry_after_seconds = Some(seconds);
                problem
            }
            Error::NotFound { .. } => Self::not_found(error.to_string()),
            Error::BadRequest { .. } => Self::bad_request(error.to_string()),
            Error::Conflict { .. } => Self::new(StatusCode::CONFLICT, "conflict", "Conflict", error.to_string()),
            Error::CodeInvalid => {
                let mut problem = Self::new(
                    StatusCode::FORBIDDEN,
                    "enrolment-code-invalid",
                    "Enrolment code not accepted",
                    "the enrolment code is not valid",
                );
                // Which check failed (unknown, expired, used, attempts exhausted) stays in the log.
                problem.0.internal = Some(error.to_string());
                problem
            }
            Error::Lint { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "lint-failed", "Certificate refused", error.to_string())
            }
            Error::AuditUnavailable { .. } => Self::audit_unavailable(error.to_string()),
            other => Self::internal(other.to_string()),
        }
    }
}
