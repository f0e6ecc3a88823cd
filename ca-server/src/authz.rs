//! The one authorisation layer: every API route goes through [`gate`] with the roles it allows.
//!
//! For each request the gate
//! 1. takes the client certificate the TLS handshake verified (axum-server's rustls acceptor
//!    copies `TlsStream::get_ref().1.peer_certificates()` into an `Arc<TlsInfo>` request
//!    extension for every request on the connection) and the peer address (`ConnectInfo`);
//! 2. for [`Access::Anonymous`] (only `POST /api/v1/enrol`) builds an anonymous [`Caller`];
//!    otherwise refuses a request without a certificate (401), and asks the CA who the
//!    certificate belongs to ([`Ca::identify`]): an unknown, revoked, on-hold, expired or locked
//!    identity is refused (401, or 429 when locked). `identify` itself audits the failure and
//!    counts it towards the lockout; failures it cannot see — a client certificate refused in
//!    the TLS handshake — are counted by [`record_handshake_failure`] through
//!    [`Ca::record_auth_failure`], against the source address;
//! 3. refuses a role not in the endpoint's set (403). Roles are disjoint (三权分立): an identity
//!    has exactly one, so a role set is the whole rule;
//! 4. runs the handler with the [`Caller`] in the request extensions ([`Authorised`]);
//! 5. audits the call with its outcome ([`Ca::audit_call`]) — refusals included.
//!
//! Auditing fails closed: when the audit trail cannot take the record of a refusal, a read, or a
//! failed call, the caller gets 503 instead, and the response waits until the record is
//! committed. A state change that succeeded was already recorded by the service, durably and
//! before its response (in the same transaction as the change, or for an issuance before the
//! certificate is released): its call record is only queued ([`Ca::queue_call_record`]) and
//! committed with the log's next batch while the response goes out. A crash in that window
//! loses the call record, not the record of the change; a record that cannot be queued or
//! committed is logged, and the response is kept.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_server::tls::TlsInfo;

use crate::http::problem::Problem;
use crate::http::{Endpoint, RequestId};
use crate::service::{Ca, Caller, Role};

/// Who may call an endpoint.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    /// Anyone, without a client certificate (enrolment: the one-time code authenticates).
    Anonymous,
    /// A client certificate whose identity holds one of these roles.
    Roles(&'static [Role]),
}

impl Access {
    /// Whether `role` may call.
    #[must_use]
    pub fn allows(self, role: Option<Role>) -> bool {
        match self {
            Self::Anonymous => true,
            Self::Roles(roles) => role.is_some_and(|r| roles.contains(&r)),
        }
    }
}

/// What a handler adds to the audit record's object (a registration id, an issued serial).
#[derive(Clone, Debug)]
pub struct AuditNote(pub String);

/// The state of the gate on one route: the CA and the route's entry in the endpoint table.
#[derive(Clone, Debug)]
pub struct Gate {
    /// The CA.
    pub ca: Ca,
    /// The route.
    pub endpoint: &'static Endpoint,
}

/// The caller the gate admitted. Handlers take it as an argument; it is always present on a
/// route behind the gate (and a 500, not a panic, if a route were ever mounted without it).
#[derive(Clone, Debug)]
pub struct Authorised(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Authorised {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .map(Self)
            .ok_or_else(|| Problem::internal("route mounted without the authorisation gate"))
    }
}

/// The leaf client certificate of the TLS connection, if the client sent one (rustls has
/// already verified it chains to one of our P-256 roots).
fn peer_certificate(req: &Request) -> Option<Vec<u8>> {
    req.extensions().get::<Arc<TlsInfo>>().and_then(|info| info.peer_certificates.first().cloned())
}

/// A caller named by a certificate the CA did not accept: subject and serial as far as they
/// can be read, for the audit record.
fn unidentified(cert_der: &[u8], source: Option<SocketAddr>, request_id: &str) -> Caller {
    use der::Decode;
    let mut caller = Caller::anonymous(source, request_id);
    if let Ok(cert) = x509_cert::Certificate::from_der(cert_der) {
        caller.subject = cert.tbs_certificate.subject.to_string();
        caller.issuer = cert.tbs_certificate.issuer.to_string();
        caller.serial_hex = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
    }
    caller
}

/// Establishes who is calling, or the problem to answer with.
async fn admit(
    ca: &Ca,
    endpoint: &Endpoint,
    source: Option<SocketAddr>,
    peer_certificate: Option<Vec<u8>>,
    request_id: &str,
) -> Result<Caller, (Caller, Problem)> {
    let Access::Roles(_) = endpoint.access else {
        return Ok(Caller::anonymous(source, request_id));
    };
    let Some(cert_der) = peer_certificate else {
        return Err((
            Caller::anonymous(source, request_id),
            Problem::unauthenticated("this endpoint needs a client certificate"),
        ));
    };
    // `identify` audits and counts its own refusals (do not count them twice).
    let caller = match ca.identify(&cert_der, source, request_id).await {
        Ok(caller) => caller,
        Err(error) => return Err((unidentified(&cert_der, source, request_id), Problem::from(error))),
    };
    let caller = Caller { source, request_id: request_id.to_owned(), ..caller };
    if !endpoint.access.allows(caller.role) {
        let role = caller.role.map_or("none", Role::name);
        let problem = Problem::forbidden(format!("{} is not allowed for the role {role}", endpoint.operation_id));
        return Err((caller, problem));
    }
    Ok(caller)
}

/// The authorisation middleware (see the module documentation). Mounted on every API route by
/// [`crate::http::api_router`] with that route's [`Gate`].
pub async fn gate(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.to_string()).unwrap_or_default();
    let object = format!("{} {}", gate.endpoint.method.as_str(), req.uri().path());
    let event = gate.endpoint.event;

    let source = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let certificate = peer_certificate(&req);
    let (caller, response) = match admit(&gate.ca, gate.endpoint, source, certificate, &request_id).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller.clone());
            (caller, next.run(req).await)
        }
        Err((caller, problem)) => (caller, problem.into_response()),
    };

    let status = response.status();
    let outcome = match response.extensions().get::<Problem>() {
        _ if status.is_success() => Ok(()),
        Some(problem) => Err(problem.audit_reason()),
        None => Err(format!("{}", status.as_u16())),
    };
    let object = match response.extensions().get::<AuditNote>() {
        Some(AuditNote(note)) => format!("{object} ({note})"),
        None => object,
    };
    if outcome.is_ok() && gate.endpoint.changes_state() {
        // The change is on the audit trail already; the call record does not hold up the answer.
        match gate.ca.queue_call_record(&caller, event, Some(object)).await {
            Ok(pending) => {
                tokio::spawn(async move {
                    if let Err(e) = pending.committed().await {
                        tracing::error!(request_id, error = %e, "call succeeded but its audit record was not committed");
                    }
                });
            }
            Err(e) => {
                tracing::error!(request_id, error = %e, "call succeeded but its audit record could not be queued")
            }
        }
        return response;
    }
    match gate.ca.audit_call(&caller, event, Some(object), outcome).await {
        Ok(()) => response,
        Err(e) => Problem::audit_unavailable(e.to_string()).into_response(),
    }
}

/// Counts a client certificate refused during the TLS handshake (unknown issuer, expired, bad
/// signature) as an authentication failure of the source address: `identify` never sees such a
/// connection. Other handshake errors (a scanner, a client that hung up, a timeout) are not
/// authentication failures and are ignored. Meant for axum-server's `accept_error_handler`,
/// which is synchronous, so the record is written by a spawned task.
pub fn record_handshake_failure(ca: &Ca, source: Option<SocketAddr>, error: &std::io::Error) {
    let Some(rustls::Error::InvalidCertificate(reason)) =
        error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return;
    };
    let reason = format!("client certificate refused in the TLS handshake: {reason:?}");
    let ca = ca.clone();
    tokio::spawn(async move {
        if let Err(e) = ca.record_auth_failure("", source, &reason).await {
            tracing::error!(error = %e, "could not record a TLS authentication failure");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_set_admits_exactly_its_roles() {
        let officers = Access::Roles(&[Role::SecurityOfficer]);
        assert!(officers.allows(Some(Role::SecurityOfficer)));
        assert!(!officers.allows(Some(Role::AuditOfficer)));
        assert!(!officers.allows(Some(Role::SystemAdministrator)));
        assert!(!officers.allows(None));
        assert!(Access::Anonymous.allows(None));
    }

    #[test]
    fn every_endpoint_but_enrolment_needs_an_identity() {
        for endpoint in crate::http::ENDPOINTS {
            let anonymous = matches!(endpoint.access, Access::Anonymous);
            assert_eq!(anonymous, endpoint.path == "/api/v1/enrol", "{}", endpoint.path);
        }
    }

    #[test]
    fn names_an_unidentified_certificate_for_the_audit_record() {
        let key =
            signer_lib::key::software::SoftwareKey::generate(signer_lib::SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        let cert = signer_lib::certificate::self_signed_end_entity(
            &key,
            "CN=Stranger,C=CN",
            std::time::Duration::from_secs(60),
        )
        .unwrap();
        let caller = unidentified(&der::Encode::to_der(&cert).unwrap(), None, "r1");
        assert!(caller.subject.contains("Stranger"));
        assert!(!caller.serial_hex.is_empty());
        assert_eq!(caller.role, None);
        assert_eq!(unidentified(b"junk", None, "r2").subject, "");
    }
}
