//! The OpenAPI 3.1 document served at `GET /openapi.json`, written by hand.
//!
//! A unit test checks that every route of [`super::ENDPOINTS`] and [`super::PUBLIC_ENDPOINTS`]
//! is documented with its method, and that every documented operation exists, so the document
//! cannot drift from the router.

use serde_json::{Value, json};

use super::BODY_LIMIT;
use super::problem::{CONTENT_TYPE as PROBLEM, TYPE_PREFIX};

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { PROBLEM: { "schema": { "$ref": "#/components/schemas/Problem" } } }
    })
}

fn json_body(schema: &str) -> Value {
    json!({
        "required": true,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

/// The responses every API operation can give besides its own.
fn common_errors(mut responses: Value, anonymous: bool, has_body: bool) -> Value {
    let Some(map) = responses.as_object_mut() else {
        return responses;
    };
    if !anonymous {
        map.insert("401".into(), problem_response("No client certificate, or not a valid identity of this CA."));
        map.insert("403".into(), problem_response("The caller's role may not do this."));
        map.insert(
            "429".into(),
            problem_response("The identity is locked after repeated authentication failures (see Retry-After)."),
        );
    }
    if has_body {
        map.insert("400".into(), problem_response("The body is not well-formed JSON, or a field is not acceptable."));
        map.insert("413".into(), problem_response(&format!("The body is over {BODY_LIMIT} bytes.")));
        map.insert("415".into(), problem_response("The body is not application/json."));
        map.insert(
            "422".into(),
            problem_response("The JSON does not fit the schema, or the certificate failed linting."),
        );
    }
    map.insert("500".into(), problem_response("Internal error (details are logged under the request id)."));
    map.insert(
        "503".into(),
        problem_response("The audit trail cannot be written, so nothing was done (see Retry-After)."),
    );
    responses
}

fn serial_parameter() -> Value {
    json!({
        "name": "serial", "in": "path", "required": true,
        "description": "The certificate serial number in hex, any case, no colons.",
        "schema": { "type": "string", "pattern": "^[0-9A-Fa-f]{1,40}$" }
    })
}

fn schemas() -> Value {
    json!({
        "Problem": {
            "type": "object",
            "description": format!("An RFC 9457 problem document; `type` is a URN under `{TYPE_PREFIX}`."),
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": { "type": "string", "format": "uri", "examples": [format!("{TYPE_PREFIX}forbidden")] },
                "title": { "type": "string" },
                "status": { "type": "integer" },
                "detail": { "type": "string" },
                "request_id": { "type": "string", "description": "Also in the x-request-id header." }
            }
        },
        "EnterpriseRegistration": {
            "type": "object",
            "additionalProperties": false,
            "required": ["kind", "profile", "uscc", "name", "legal_representative"],
            "properties": {
                "kind": { "const": "enterprise" },
                "profile": { "type": "string", "examples": ["enterprise-legal-rep", "enterprise-operator"] },
                "uscc": { "type": "string", "description": "Unified social credit code (统一社会信用代码), 18 characters with a valid check character.", "minLength": 18, "maxLength": 18 },
                "name": { "type": "string" },
                "legal_representative": { "type": "string" },
                "person_name": { "type": "string", "description": "The certificate holder (commonName); the operator for enterprise-operator. Default: the legal representative." },
                "authorisation": { "type": "string", "description": "enterprise-operator only, and required there: the legal representative's authorisation of the operator (eport operator authorise), a CMS SignedData as PEM or base64 DER, signed with an active enterprise-legal-rep certificate of the same USCC and naming person_name." }
            }
        },
        "AgencyRegistration": {
            "type": "object",
            "additionalProperties": false,
            "required": ["kind", "profile", "agency_code", "name"],
            "properties": {
                "kind": { "const": "agency" },
                "profile": { "type": "string", "examples": ["agency"] },
                "agency_code": { "type": "string" },
                "name": { "type": "string" }
            }
        },
        "Registration": {
            "oneOf": [
                { "$ref": "#/components/schemas/EnterpriseRegistration" },
                { "$ref": "#/components/schemas/AgencyRegistration" }
            ],
            "discriminator": { "propertyName": "kind" }
        },
        "RegistrationCreated": {
            "type": "object",
            "required": ["id", "status"],
            "properties": { "id": { "type": "string" }, "status": { "const": "pending" } }
        },
        "Approval": {
            "oneOf": [
                {
                    "type": "object",
                    "description": "Dual control: another, different security officer must approve.",
                    "required": ["status", "approvals_needed"],
                    "properties": { "status": { "const": "pending" }, "approvals_needed": { "type": "integer", "minimum": 1 } }
                },
                {
                    "type": "object",
                    "description": "Approved. The one-time enrolment code is shown once; only its hash is kept.",
                    "required": ["status", "enrolment_code", "expires_at"],
                    "properties": {
                        "status": { "const": "approved" },
                        "enrolment_code": { "type": "string" },
                        "expires_at": { "type": "string", "format": "date-time" }
                    }
                }
            ],
            "discriminator": { "propertyName": "status" }
        },
        "Enrolment": {
            "type": "object",
            "additionalProperties": false,
            "required": ["code", "csr"],
            "properties": {
                "code": { "type": "string", "description": "The enrolment code from the approval." },
                "csr": { "type": "string", "description": "PKCS#10 request, PEM; its signature proves possession of the key. The subject is taken from the registration, never from the CSR." }
            }
        },
        "Renewal": {
            "type": "object",
            "additionalProperties": false,
            "required": ["csr"],
            "properties": { "csr": { "type": "string", "description": "PKCS#10 request for the new key, PEM." } }
        },
        "Issued": {
            "type": "object",
            "required": ["certificate", "chain", "serial"],
            "properties": {
                "certificate": { "type": "string", "description": "The certificate, PEM." },
                "chain": { "type": "array", "items": { "type": "string" }, "description": "PEM: the issuing CA, then the root last." },
                "serial": { "type": "string", "description": "The serial number, hex." }
            }
        },
        "RevocationRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["reason"],
            "properties": {
                "reason": {
                    "type": "string",
                    "description": "An RFC 5280 CRLReason name.",
                    "examples": ["keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation"]
                }
            }
        },
        "Revocation": {
            "type": "object",
            "required": ["serial", "status", "reason", "revoked_at"],
            "properties": {
                "serial": { "type": "string" },
                "status": { "enum": ["revoked", "on_hold"] },
                "reason": { "type": "string" },
                "revoked_at": { "type": "string", "format": "date-time" }
            }
        },
        "Certificate": {
            "type": "object",
            "required": ["serial", "subject", "issuer", "profile", "status", "not_before", "not_after"],
            "properties": {
                "serial": { "type": "string" },
                "subject": { "type": "string" },
                "issuer": { "type": "string", "description": "The issuing CA's id (`p256`, `sm2`)." },
                "profile": { "type": "string" },
                "status": { "type": "string", "examples": ["valid", "revoked", "on_hold", "expired"] },
                "not_before": { "type": "string", "format": "date-time" },
                "not_after": { "type": "string", "format": "date-time" },
                "uscc": { "type": "string" },
                "revocation_reason": { "type": "string" },
                "revoked_at": { "type": "string", "format": "date-time" }
            }
        },
        "CertificateList": {
            "type": "object",
            "required": ["certificates"],
            "properties": { "certificates": { "type": "array", "items": { "$ref": "#/components/schemas/Certificate" } } }
        }
    })
}

fn paths() -> Value {
    let mtls = json!([{ "mutualTLS": [] }]);
    let anonymous = json!([{}]);
    let public_servers =
        json!([{ "url": "http://127.0.0.1:8080", "description": "The public plain-HTTP listener (--http-listen)." }]);
    json!({
        "/api/v1/registrations": {
            "post": {
                "operationId": "register",
                "summary": "Register an enterprise or an agency (security officer).",
                "security": mtls,
                "requestBody": json_body("Registration"),
                "responses": common_errors(json!({
                    "201": json_response("Registered, pending approval.", "RegistrationCreated")
                }), false, true)
            }
        },
        "/api/v1/registrations/{id}/approve": {
            "post": {
                "operationId": "approve",
                "summary": "Approve a registration (security officer; a second, different officer where the profile needs dual control).",
                "security": mtls,
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": common_errors(json!({
                    "200": json_response("Recorded; either more approvals are needed or the enrolment code is returned once.", "Approval"),
                    "404": problem_response("No such registration."),
                    "409": problem_response("The same officer approved already, or the registration is no longer pending.")
                }), false, false)
            }
        },
        "/api/v1/registrations/{id}/code": {
            "post": {
                "operationId": "reissueCode",
                "summary": "Re-issue the enrolment code of an approved registration that has not enrolled (security officer). The old code stops working at once, whether it expired, ran out of attempts or was never used. Single control: a new one-time code, shown once. Dual control: the registration goes back to pending and two different officers approve again; the second approval gives the new code.",
                "security": mtls,
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": common_errors(json!({
                    "200": json_response("A new code (status approved), or back to pending under dual control.", "Approval"),
                    "404": problem_response("No such registration."),
                    "409": problem_response("The registration is pending or enrolled, or an enrolment has claimed its code.")
                }), false, false)
            }
        },
        "/api/v1/enrol": {
            "post": {
                "operationId": "enrol",
                "summary": "Exchange an enrolment code and a CSR for a certificate (no client certificate needed).",
                "security": anonymous,
                "requestBody": json_body("Enrolment"),
                "responses": common_errors(json!({
                    "201": json_response("Issued, stored and audited.", "Issued"),
                    "403": problem_response("The enrolment code is not valid (one answer for wrong, expired, used and exhausted codes).")
                }), true, true)
            }
        },
        "/api/v1/renew": {
            "post": {
                "operationId": "renew",
                "summary": "Renew the caller's own certificate with a new key (subscriber or platform client certificate).",
                "security": mtls,
                "requestBody": json_body("Renewal"),
                "responses": common_errors(json!({
                    "201": json_response("Issued, stored and audited.", "Issued")
                }), false, true)
            }
        },
        "/api/v1/certificates/{serial}/revoke": {
            "post": {
                "operationId": "revoke",
                "summary": "Revoke a certificate (security officer; a subscriber may revoke its own with reason keyCompromise).",
                "security": mtls,
                "parameters": [serial_parameter()],
                "requestBody": json_body("RevocationRequest"),
                "responses": common_errors(json!({
                    "200": json_response("Revoked; the CRL is regenerated.", "Revocation"),
                    "404": problem_response("No such certificate."),
                    "409": problem_response("Already revoked.")
                }), false, true)
            }
        },
        "/api/v1/certificates/{serial}/hold": {
            "post": {
                "operationId": "hold",
                "summary": "Suspend a certificate (certificateHold; security officer).",
                "security": mtls,
                "parameters": [serial_parameter()],
                "responses": common_errors(json!({
                    "200": json_response("On hold.", "Revocation"),
                    "404": problem_response("No such certificate."),
                    "409": problem_response("Already revoked or on hold.")
                }), false, false)
            }
        },
        "/api/v1/certificates/{serial}/release": {
            "post": {
                "operationId": "release",
                "summary": "Release a certificate from hold (security officer).",
                "security": mtls,
                "parameters": [serial_parameter()],
                "responses": common_errors(json!({
                    "200": json_response("Valid again.", "Certificate"),
                    "404": problem_response("No such certificate."),
                    "409": problem_response("Not on hold.")
                }), false, false)
            }
        },
        "/api/v1/certificates": {
            "get": {
                "operationId": "listCertificates",
                "summary": "List certificates (security or audit officer; read-only).",
                "security": mtls,
                "parameters": [
                    { "name": "uscc", "in": "query", "required": false, "schema": { "type": "string" } },
                    { "name": "status", "in": "query", "required": false, "schema": { "type": "string", "examples": ["valid", "revoked", "on_hold", "expired"] } },
                    { "name": "serial", "in": "query", "required": false, "schema": { "type": "string" } }
                ],
                "responses": common_errors(json!({
                    "200": json_response("The matching certificates.", "CertificateList"),
                    "400": problem_response("An unknown query parameter or a bad value.")
                }), false, false)
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document (any identified caller).",
                "security": mtls,
                "responses": common_errors(json!({
                    "200": { "description": "The OpenAPI 3.1 document.", "content": { "application/json": {} } }
                }), false, false)
            }
        },
        "/ca/{issuer}.crt": {
            "servers": public_servers,
            "get": {
                "operationId": "caCertificate",
                "summary": "A CA certificate, DER (the AIA caIssuers URL). Public, plain HTTP.",
                "security": anonymous,
                "parameters": [{ "name": "issuer", "in": "path", "required": true, "schema": { "type": "string", "examples": ["p256", "sm2"] } }],
                "responses": {
                    "200": { "description": "The certificate.", "content": { "application/pkix-cert": {} } },
                    "404": problem_response("No such issuer.")
                }
            }
        },
        "/crl/{issuer}.crl": {
            "servers": public_servers,
            "get": {
                "operationId": "crl",
                "summary": "The current CRL of an issuing CA, DER (the CRL distribution point). Public, plain HTTP.",
                "security": anonymous,
                "parameters": [{ "name": "issuer", "in": "path", "required": true, "schema": { "type": "string", "examples": ["p256", "sm2"] } }],
                "responses": {
                    "200": { "description": "The CRL.", "content": { "application/pkix-crl": {} } },
                    "404": problem_response("No such issuer."),
                    "500": problem_response("Internal error.")
                }
            }
        },
        "/healthz": {
            "servers": public_servers,
            "get": {
                "operationId": "healthz",
                "summary": "Liveness. Public, plain HTTP.",
                "security": anonymous,
                "responses": { "200": { "description": "Up.", "content": { "application/json": {} } } }
            }
        }
    })
}

/// The whole document.
#[must_use]
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "eport-pki certification authority",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Registration, approval (dual control where the profile asks), enrolment, renewal, revocation and suspension. Officers and platforms authenticate with TLS client certificates (P-256: rustls has no SM2); roles are disjoint (三权分立) and every call is audited. Errors are RFC 9457 problem documents (application/problem+json). Every response carries x-request-id."
        },
        "servers": [{ "url": "https://127.0.0.1:8443", "description": "The HTTPS API listener (--listen)." }],
        "paths": paths(),
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "mutualTLS": { "type": "mutualTLS", "description": "A client certificate issued by this CA under the P-256 root." }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::{ENDPOINTS, PUBLIC_ENDPOINTS};
    use super::*;

    #[test]
    fn documents_every_route_of_the_router_and_nothing_else() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        for endpoint in ENDPOINTS {
            let operation = &paths[endpoint.path][endpoint.method.openapi_key()];
            assert!(operation.is_object(), "{} {} is not documented", endpoint.method.as_str(), endpoint.path);
            assert_eq!(operation["operationId"], endpoint.operation_id);
            assert!(operation["responses"].is_object());
        }
        for endpoint in PUBLIC_ENDPOINTS {
            assert!(paths[endpoint.documented]["get"].is_object(), "{} is not documented", endpoint.documented);
        }
        let routed = ENDPOINTS.len() + PUBLIC_ENDPOINTS.len();
        let documented: usize =
            paths.values().map(|item| ["get", "post"].iter().filter(|m| item.get(*m).is_some()).count()).sum();
        assert_eq!(documented, routed, "the document has operations the router does not");
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {name}");
        }
    }
}
