//! Extractors whose every rejection is a [`Problem`] document.
//!
//! axum's own `Json`, `Path` and `Query` answer bad input with `text/plain`; these wrap them so a
//! malformed body is a 400, a body that does not fit the schema a 422, a body over the limit a
//! 413 and a body that is not JSON a 415, all as `application/problem+json`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;

use super::BODY_LIMIT;
use super::problem::Problem;

/// A JSON request body of type `T`, which should be `#[serde(deny_unknown_fields)]`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(Problem::unsupported_media_type());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::payload_too_large(BODY_LIMIT)
            } else {
                Problem::bad_request("the request body could not be read")
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a JSON body: syntax errors are 400, schema errors (missing or unknown fields, wrong
/// types) are 422. The detail names the line and column, never echoes the input.
///
/// # Errors
/// The problem to send back.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    // Syntax first, over the whole body: a schema error found early must not hide the fact that
    // the body is not JSON at all (`[1, 2` is malformed, not a wrong shape).
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| {
        Problem::bad_request(format!("the body is not well-formed JSON (line {}, column {})", e.line(), e.column()))
    })?;
    serde_json::from_slice(bytes)
        .map_err(|e| Problem::unprocessable(format!("the JSON body does not fit the schema: {e}")))
}

/// `application/json`, with or without parameters (`; charset=utf-8`), any case.
fn is_json(value: Option<&axum::http::HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// The single path parameter of a route (`{id}`, `{serial}`).
#[derive(Debug)]
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|_| Problem::bad_request("the path parameter is not valid"))
    }
}

/// A query string of type `T`, which should be `#[serde(deny_unknown_fields)]`.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state).await.map(|Query(value)| Self(value)).map_err(|rejection| {
            Problem::bad_request(format!("the query string is not valid: {}", rejection.body_text()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[allow(dead_code)]
        code: String,
    }

    #[test]
    fn accepts_json_with_charset_and_refuses_other_types() {
        let json = axum::http::HeaderValue::from_static("Application/JSON; charset=utf-8");
        let text = axum::http::HeaderValue::from_static("text/plain");
        assert!(is_json(Some(&json)));
        assert!(!is_json(Some(&text)));
        assert!(!is_json(None));
    }

    #[test]
    fn malformed_json_is_400_and_schema_mismatch_is_422() {
        let syntax = parse_json::<Sample>(b"{\"code\": ").unwrap_err();
        assert_eq!(syntax.status(), StatusCode::BAD_REQUEST);
        let early_mismatch = parse_json::<Sample>(b"[1, 2").unwrap_err();
        assert_eq!(early_mismatch.status(), StatusCode::BAD_REQUEST);
        let unknown = parse_json::<Sample>(br#"{"code":"a","extra":1}"#).unwrap_err();
        assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let missing = parse_json::<Sample>(b"{}").unwrap_err();
        assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
