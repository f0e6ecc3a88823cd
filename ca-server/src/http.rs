//! The HTTP edge: the HTTPS API (mTLS, JSON, RFC 9457 problems) and the public plain-HTTP
//! endpoints (CA certificates, CRLs, health; OCSP is mounted there by the responder).
//!
//! Every API route is an entry of [`ENDPOINTS`]: the router is built from the table, each route
//! behind the one authorisation layer ([`crate::authz::gate`]) with the entry's [`Access`], and
//! the OpenAPI document ([`openapi`]) is checked against the same table, so a route cannot exist
//! without a role set, an audit event type and documentation.
//!
//! | method | path | who |
//! |---|---|---|
//! | POST | `/api/v1/registrations` | security officer |
//! | POST | `/api/v1/registrations/{id}/approve` | security officer (a second, different one for dual control) |
//! | POST | `/api/v1/registrations/{id}/code` | security officer: a new enrolment code (dual control: back to pending) |
//! | POST | `/api/v1/enrol` | anyone with an enrolment code (no client certificate) |
//! | POST | `/api/v1/renew` | subscriber or platform (its own certificate) |
//! | POST | `/api/v1/certificates/{serial}/revoke` | security officer; the subscriber itself for keyCompromise |
//! | POST | `/api/v1/certificates/{serial}/hold` | security officer |
//! | POST | `/api/v1/certificates/{serial}/release` | security officer |
//! | GET | `/api/v1/certificates?uscc=&status=&serial=` | security or audit officer |
//! | GET | `/openapi.json` | any identified caller |
//!
//! Public, plain HTTP (separate listener): `GET /ca/{issuer}.crt`, `GET /crl/{issuer}.crl`,
//! `GET /healthz`, and `/ocsp` when an OCSP router is given to [`public_router`].

pub mod extract;
pub mod openapi;
pub mod problem;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use self::extract::{JsonBody, PathParam, QueryParams};
use self::problem::Problem;
use crate::authz::{Access, AuditNote, Authorised, Gate};
use crate::service::{
    Approval, Ca, CertificateFilter, CertificateInfo, CertificateStatus, EventType, Issued, RegistrationRequest, Role,
};

/// The largest request body accepted, in bytes (a CSR in PEM is a few KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The response header carrying the request id (also in problem documents and audit records).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of one request: 128 random bits in hex, made by the server (a client-chosen id is
/// never trusted into the audit trail).
#[derive(Clone, Debug)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    fn random() -> Self {
        use rand_core::RngCore;
        let mut bytes = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut bytes);
        Self(hex::encode(bytes).into())
    }
}

/// The HTTP methods the API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET: reads.
    Get,
    /// POST: everything that changes state.
    Post,
}

impl Method {
    /// The method's name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }

    /// The lower-case name, as OpenAPI path items key operations.
    #[must_use]
    pub fn openapi_key(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
        }
    }
}

/// One API route: what it is, who may call it, how it is audited.
#[derive(Debug)]
pub struct Endpoint {
    /// The method.
    pub method: Method,
    /// The path in axum 0.8 syntax, which is also the OpenAPI syntax (`{id}`).
    pub path: &'static str,
    /// The OpenAPI operationId, also named in refusals.
    pub operation_id: &'static str,
    /// Who may call it.
    pub access: Access,
    /// The audit event type of a call.
    pub event: EventType,
    /// The handler, on `method`.
    handler: fn(MethodFilter) -> MethodRouter<Ca>,
}

impl Endpoint {
    /// Whether a successful call changes the CA's state (everything but GET).
    #[must_use]
    pub fn changes_state(&self) -> bool {
        self.method != Method::Get
    }
}

const SECURITY_OFFICER: &[Role] = &[Role::SecurityOfficer];
const OFFICERS_WHO_READ: &[Role] = &[Role::SecurityOfficer, Role::AuditOfficer];
const CERTIFICATE_HOLDERS: &[Role] = &[Role::Subscriber, Role::Platform];
const REVOKERS: &[Role] = &[Role::SecurityOfficer, Role::Subscriber];
const ANY_IDENTITY: &[Role] =
    &[Role::SystemAdministrator, Role::SecurityOfficer, Role::AuditOfficer, Role::Subscriber, Role::Platform];

/// Every API route. The router and the OpenAPI document are both checked against this table.
pub static ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: Method::Post,
        path: "/api/v1/registrations",
        operation_id: "register",
        access: Access::Roles(SECURITY_OFFICER),
        event: EventType::Registration,
        handler: |m| on(m, register),
    },
    Endpoint {
        method: Method::Post,
        path: "/api/v1/registrations/{id}/approve",
        operation_id: "approve",
        access: Access::Roles(SECURITY_OFFICER),
        event: EventType::Approval,
        handler: |m| on(m, approve),
    },
    Endpoint {
        method: Method::Post,
        path: "/api/v1/registrations/{id}/code",
        operation_id: "reissueCode",
        access: Access::Roles(SECURITY_OFFICER),
        event: EventType::CredentialChanged,
        handler: |m| on(m, reissue_code),
    },
    Endpoint {
        method: Method::Post,
        path: "/api/v1/enrol",
        operation_id: "enrol",
        access: Access::Anonymous,
        event: EventType::Enrolment,
        handler: |m| on(m, enrol),
    },
    Endpoint {
        method: Method::Post,
        path: "/api/v1/renew",
        operation_id: "renew",
        access: Access::Roles(CERTIFICATE_HOLDERS),
        event: EventType::Enrolment,
        handler: |m| on(m, renew),
    },
    Endpoint {
        method: Method::Post,
        path: "/api/v1/certificates/{serial}/revoke",
        operation_id: "revoke",
        access: Access::Roles(REVOKERS),
        event: EventType::Revoke,
        handler: |m| on(m, revoke),
    },
    Endpoint {
        method: Method::Post,
        path: "/api/v1/certificates/{serial}/hold",
        operation_id: "hold",
        access: Access::Roles(SECURITY_OFFICER),
        event: EventType::Suspend,
        handler: |m| on(m, hold),
    },
    Endpoint {
        method: Method::Post,
        path: "/api/v1/certificates/{serial}/release",
        operation_id: "release",
        access: Access::Roles(SECURITY_OFFICER),
        event: EventType::Resume,
        handler: |m| on(m, release),
    },
    Endpoint {
        method: Method::Get,
        path: "/api/v1/certificates",
        operation_id: "listCertificates",
        access: Access::Roles(OFFICERS_WHO_READ),
        event: EventType::DataRead,
        handler: |m| on(m, list_certificates),
    },
    Endpoint {
        method: Method::Get,
        path: "/openapi.json",
        operation_id: "openapi",
        access: Access::Roles(ANY_IDENTITY),
        event: EventType::DataRead,
        handler: |m| on(m, openapi_document),
    },
];

/// One public route (plain HTTP, no identity, not audited: these serve public data).
#[derive(Debug)]
pub struct PublicEndpoint {
    /// The path as routed (axum cannot route `{issuer}.crt`, so the suffix is checked in the
    /// handler).
    pub path: &'static str,
    /// The path as documented.
    pub documented: &'static str,
}

/// Every public route.
pub static PUBLIC_ENDPOINTS: &[PublicEndpoint] = &[
    PublicEndpoint { path: "/ca/{file}", documented: "/ca/{issuer}.crt" },
    PublicEndpoint { path: "/crl/{file}", documented: "/crl/{issuer}.crl" },
    PublicEndpoint { path: "/healthz", documented: "/healthz" },
];

/// The HTTPS API router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`
/// behind axum-server's rustls acceptor, so the gate sees the peer address and certificate.
pub fn api_router(ca: Ca) -> Router {
    let mut router = Router::new();
    for endpoint in ENDPOINTS {
        let gate = Gate { ca: ca.clone(), endpoint };
        let route = (endpoint.handler)(endpoint.method.filter())
            .route_layer(middleware::from_fn_with_state(gate, crate::authz::gate));
        router = router.route(endpoint.path, route);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(request_id))
        .with_state(ca)
}

/// The public plain-HTTP router: CA certificates, CRLs and `/healthz`, plus `ocsp` (a router
/// with its own `/ocsp` routes, merged as is) when the OCSP responder runs in-process.
pub fn public_router(ca: Ca, ocsp: Option<Router>) -> Router {
    let router = Router::new()
        .route(PUBLIC_ENDPOINTS[0].path, axum::routing::get(ca_certificate))
        .route(PUBLIC_ENDPOINTS[1].path, axum::routing::get(crl))
        .route(PUBLIC_ENDPOINTS[2].path, axum::routing::get(healthz))
        .with_state(ca);
    let router = match ocsp {
        Some(ocsp) => router.merge(ocsp),
        None => router,
    };
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(request_id))
}

/// Gives every request an id, returns it in `x-request-id`, writes it into problem documents
/// and logs server-side failures under it.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = RequestId::random();
    req.extensions_mut().insert(id.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut response = next.run(req).await;
    if let Some(problem) = response.extensions().get::<Problem>().cloned() {
        if let Some(internal) = problem.internal_detail() {
            if problem.status().is_server_error() {
                tracing::error!(request_id = %id.0, %method, path, status = problem.status().as_u16(), internal);
            } else {
                tracing::info!(request_id = %id.0, %method, path, status = problem.status().as_u16(), internal);
            }
        }
        response = problem.with_request_id(&id.0).into_response();
    }
    if let Ok(value) = HeaderValue::from_str(&id.0) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

async fn not_found() -> Problem {
    Problem::not_found("no such endpoint")
}

async fn method_not_allowed() -> Problem {
    Problem::method_not_allowed()
}

/// Unix seconds as RFC 3339 (UTC), or the number itself if it is out of range.
fn rfc3339(unix_seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix_seconds.to_string())
}

/// A certificate status as the API names it (as the `status` filter takes it).
fn status_name(status: CertificateStatus) -> &'static str {
    match status {
        CertificateStatus::Issuing => "issuing",
        CertificateStatus::Good => "good",
        CertificateStatus::Revoked => "revoked",
        CertificateStatus::Hold => "hold",
        CertificateStatus::Abandoned => "abandoned",
    }
}

/// A JSON response with a status and an audit note.
fn json_response<T: Serialize>(status: StatusCode, body: &T, note: Option<String>) -> Response {
    let mut response = match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => return Problem::internal(format!("encoding the response: {e}")).into_response(),
    };
    if let Some(note) = note {
        response.extensions_mut().insert(AuditNote(note));
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Bodies

/// `POST /api/v1/enrol`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolBody {
    /// The one-time enrolment code from the approval.
    pub code: String,
    /// The PKCS#10 request, PEM.
    pub csr: String,
}

/// `POST /api/v1/renew`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    /// The PKCS#10 request for the new key, PEM.
    pub csr: String,
}

/// `POST /api/v1/certificates/{serial}/revoke`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// An RFC 5280 reason name (`keyCompromise`, `superseded`, ...).
    pub reason: String,
}

#[derive(Serialize)]
struct RegistrationCreated {
    id: String,
    status: &'static str,
}

#[derive(Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum ApprovalResponse {
    /// `approvals_needed` is how many more different officers must approve.
    Pending {
        registration_id: String,
        approvals: u32,
        approvals_needed: u32,
    },
    Approved {
        registration_id: String,
        enrolment_code: String,
        expires_at: String,
        max_attempts: u32,
    },
}

impl From<Approval> for ApprovalResponse {
    fn from(approval: Approval) -> Self {
        match approval {
            Approval::Pending { registration_id, approvals, needed } => {
                Self::Pending { registration_id, approvals, approvals_needed: needed.saturating_sub(approvals) }
            }
            Approval::Code { registration_id, code, expires_at, max_attempts } => {
                Self::Approved { registration_id, enrolment_code: code, expires_at: rfc3339(expires_at), max_attempts }
            }
        }
    }
}

#[derive(Serialize)]
struct IssuedResponse {
    certificate: String,
    chain: Vec<String>,
    serial: String,
    issuer: String,
    profile: String,
    not_after: String,
}

impl From<Issued> for IssuedResponse {
    fn from(issued: Issued) -> Self {
        Self {
            certificate: issued.certificate_pem,
            chain: issued.chain_pem,
            serial: issued.serial_hex,
            issuer: issued.issuer,
            profile: issued.profile,
            not_after: rfc3339(issued.not_after),
        }
    }
}

#[derive(Serialize)]
struct CertificateDto {
    serial: String,
    subject: String,
    issuer: String,
    profile: String,
    status: &'static str,
    not_before: String,
    not_after: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    registration_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uscc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revocation_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
}

impl From<CertificateInfo> for CertificateDto {
    fn from(info: CertificateInfo) -> Self {
        Self {
            serial: info.serial_hex,
            subject: info.subject,
            issuer: info.issuer,
            profile: info.profile,
            status: status_name(info.status),
            not_before: rfc3339(info.not_before),
            not_after: rfc3339(info.not_after),
            registration_id: info.registration_id,
            uscc: info.uscc,
            revocation_reason: info.revocation_reason,
            revoked_at: info.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Serialize)]
struct CertificateList {
    certificates: Vec<CertificateDto>,
}

// ---------------------------------------------------------------------------------------------
// API handlers (behind the gate)

async fn register(
    State(ca): State<Ca>,
    Authorised(caller): Authorised,
    JsonBody(body): JsonBody<RegistrationRequest>,
) -> Result<Response, Problem> {
    let registration = ca.register(&caller, body).await?;
    let note = format!("registration {}", registration.id);
    Ok(json_response(StatusCode::CREATED, &RegistrationCreated { id: registration.id, status: "pending" }, Some(note)))
}

async fn approve(
    State(ca): State<Ca>,
    Authorised(caller): Authorised,
    PathParam(id): PathParam,
) -> Result<Response, Problem> {
    let body = ApprovalResponse::from(ca.approve(&caller, &id).await?);
    Ok(json_response(StatusCode::OK, &body, Some(format!("registration {id}"))))
}

/// A new enrolment code for an approved registration (the old one stops working); under dual
/// control the registration goes back to pending instead (see `service::reissue`).
async fn reissue_code(
    State(ca): State<Ca>,
    Authorised(caller): Authorised,
    PathParam(id): PathParam,
) -> Result<Response, Problem> {
    let body = ApprovalResponse::from(ca.reissue_code(&caller, &id).await?);
    Ok(json_response(StatusCode::OK, &body, Some(format!("registration {id}"))))
}

async fn enrol(
    State(ca): State<Ca>,
    Authorised(caller): Authorised,
    JsonBody(body): JsonBody<EnrolBody>,
) -> Result<Response, Problem> {
    let issued = ca.enrol(&caller, &body.code, &body.csr).await?;
    let note = format!("certificate {}", issued.serial_hex);
    Ok(json_response(StatusCode::CREATED, &IssuedResponse::from(issued), Some(note)))
}

async fn renew(
    State(ca): State<Ca>,
    Authorised(caller): Authorised,
    JsonBody(body): JsonBody<RenewBody>,
) -> Result<Response, Problem> {
    let issued = ca.renew(&caller, &body.csr).await?;
    let note = format!("certificate {} replaces {}", issued.serial_hex, caller.serial_hex);
    Ok(json_response(StatusCode::CREATED, &IssuedResponse::from(issued), Some(note)))
}

async fn revoke(
    State(ca): State<Ca>,
    Authorised(caller): Authorised,
    PathParam(serial): PathParam,
    JsonBody(body): JsonBody<RevokeBody>,
) -> Result<Response, Problem> {
    // A subscriber may only report its own key compromised: the service checks that.
    let info = ca.revoke(&caller, &serial, &body.reason).await?;
    Ok(json_response(StatusCode::OK, &CertificateDto::from(info), Some(format!("certificate {serial}"))))
}

async fn hold(
    State(ca): State<Ca>,
    Authorised(caller): Authorised,
    PathParam(serial): PathParam,
) -> Result<Response, Problem> {
    let info = ca.hold(&caller, &serial).await?;
    Ok(json_response(StatusCode::OK, &CertificateDto::from(info), Some(format!("certificate {serial}"))))
}

async fn release(
    State(ca): State<Ca>,
    Authorised(caller): Authorised,
    PathParam(serial): PathParam,
) -> Result<Response, Problem> {
    let info = ca.release(&caller, &serial).await?;
    Ok(json_response(StatusCode::OK, &CertificateDto::from(info), Some(format!("certificate {serial}"))))
}

async fn list_certificates(
    State(ca): State<Ca>,
    Authorised(caller): Authorised,
    QueryParams(filter): QueryParams<CertificateFilter>,
) -> Result<Response, Problem> {
    let certificates = ca.list_certificates(&caller, filter).await?;
    let note = format!("{} certificates", certificates.len());
    let body = CertificateList { certificates: certificates.into_iter().map(CertificateDto::from).collect() };
    Ok(json_response(StatusCode::OK, &body, Some(note)))
}

async fn openapi_document() -> Response {
    json_response(StatusCode::OK, &openapi::document(), None)
}

// ---------------------------------------------------------------------------------------------
// Public handlers

/// `file` without `suffix`, if it has it and something before it.
fn strip<'a>(file: &'a str, suffix: &str) -> Option<&'a str> {
    file.strip_suffix(suffix).filter(|stem| !stem.is_empty())
}

async fn ca_certificate(State(ca): State<Ca>, PathParam(file): PathParam) -> Result<Response, Problem> {
    let der = strip(&file, ".crt")
        .and_then(|issuer| ca.ca_certificate_der(issuer))
        .ok_or_else(|| Problem::not_found("no such CA certificate"))?;
    Ok(([(header::CONTENT_TYPE, "application/pkix-cert"), (header::CACHE_CONTROL, "public, max-age=86400")], der)
        .into_response())
}

async fn crl(State(ca): State<Ca>, PathParam(file): PathParam) -> Result<Response, Problem> {
    let issuer = strip(&file, ".crl").ok_or_else(|| Problem::not_found("no such CRL"))?;
    let der = ca.crl_der(issuer).await?;
    Ok(([(header::CONTENT_TYPE, "application/pkix-crl"), (header::CACHE_CONTROL, "public, max-age=300")], der)
        .into_response())
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" }), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_bodies_are_tagged_and_strict() {
        let enterprise: RegistrationRequest = extract::parse_json(
            br#"{"kind":"enterprise","profile":"enterprise-operator","uscc":"91350100M000100Y43","name":"Acme","legal_representative":"Li Lei"}"#,
        )
        .unwrap();
        assert!(matches!(enterprise, RegistrationRequest::Enterprise { .. }));
        let agency: RegistrationRequest =
            extract::parse_json(br#"{"kind":"agency","profile":"agency","agency_code":"CUSTOMS-01","name":"Customs"}"#)
                .unwrap();
        assert!(matches!(agency, RegistrationRequest::Agency { .. }));
        let unknown = extract::parse_json::<RegistrationRequest>(
            br#"{"kind":"agency","profile":"agency","agency_code":"C","name":"C","extra":true}"#,
        )
        .unwrap_err();
        assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let no_kind = extract::parse_json::<RegistrationRequest>(br#"{"profile":"agency","name":"C"}"#).unwrap_err();
        assert_eq!(no_kind.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn every_route_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for endpoint in ENDPOINTS {
            assert!(seen.insert((endpoint.method, endpoint.path)), "{} twice", endpoint.path);
            assert!(seen.len() <= ENDPOINTS.len());
        }
    }
}
