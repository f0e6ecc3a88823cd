//! Building and signing OCSP responses, and the unsigned error responses.
//!
//! ```text
//! OCSPResponse ::= SEQUENCE {
//!    responseStatus         OCSPResponseStatus,
//!    responseBytes          [0] EXPLICIT ResponseBytes OPTIONAL }
//! BasicOCSPResponse ::= SEQUENCE {
//!    tbsResponseData      ResponseData,
//!    signatureAlgorithm   AlgorithmIdentifier,
//!    signature            BIT STRING,
//!    certs            [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
//! ResponseData ::= SEQUENCE {
//!    version              [0] EXPLICIT Version DEFAULT v1,
//!    responderID              ResponderID,
//!    producedAt               GeneralizedTime,
//!    responses                SEQUENCE OF SingleResponse,
//!    responseExtensions   [1] EXPLICIT Extensions OPTIONAL }
//! ```
//! ([RFC 6960 §4.2.1](https://www.rfc-editor.org/rfc/rfc6960#section-4.2.1))

use std::time::Duration;

use der::Encode;
use der::asn1::GeneralizedTime;
use signer_lib::key::{BuilderSigner, SignatureBytes};
use time::OffsetDateTime;
use x509_cert::ext::pkix::CrlReason;
use x509_ocsp::builder::OcspResponseBuilder;
use x509_ocsp::ext::Nonce;
use x509_ocsp::{CertId, CertStatus, OcspGeneralizedTime, RevokedInfo, SingleResponse};

use crate::Error;
use crate::issuer::Issuer;
use crate::source::CertificateStatus;

/// `OCSPResponse { responseStatus malformedRequest }`: the request is not a valid OCSPRequest.
pub const MALFORMED_REQUEST: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x01];
/// `OCSPResponse { responseStatus internalError }`.
pub const INTERNAL_ERROR: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x02];
/// `OCSPResponse { responseStatus tryLater }`: on-demand signing is over its rate limit.
pub const TRY_LATER: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x03];
/// `OCSPResponse { responseStatus unauthorized }`: not an issuer we answer for.
pub const UNAUTHORIZED: &[u8] = &[0x30, 0x03, 0x0a, 0x01, 0x06];

/// One SingleResponse to sign.
#[derive(Clone, Debug)]
pub struct Single {
    /// The CertID as it goes into the response.
    pub cert_id: CertId,
    /// The status.
    pub status: CertificateStatus,
}

/// Signs a BasicOCSPResponse for `issuer` with its delegated responder key, wrapped in a
/// successful OCSPResponse, and returns its DER.
///
/// Every SingleResponse gets `thisUpdate` and `nextUpdate` (RFC 5019 §2.2.4 requires the
/// latter); `producedAt` is `produced_at`. The responder certificate is included so that
/// clients that know only the issuing CA can check the signature (RFC 6960 §4.2.2.2). The nonce,
/// when given, is echoed in a non-critical nonce extension (RFC 9654 §2.1).
///
/// # Errors
/// [`Error::Der`] when a time cannot be encoded, [`Error::Signer`] when the key fails.
pub fn sign(
    issuer: &Issuer,
    singles: &[Single],
    nonce: Option<&[u8]>,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    produced_at: OffsetDateTime,
) -> Result<Vec<u8>, Error> {
    let this = generalized(this_update)?;
    let next = generalized(next_update)?;
    let mut builder = OcspResponseBuilder::new(issuer.responder_id().clone());
    for single in singles {
        builder = builder.with_single_response(
            SingleResponse::new(single.cert_id.clone(), cert_status(single.status)?, this).with_next_update(next),
        );
    }
    if let Some(nonce) = nonce {
        let nonce = Nonce::new(nonce).map_err(|e| Error::der("nonce", e))?;
        builder = builder.with_extension(nonce).map_err(|e| builder_error("nonce extension", e))?;
    }
    let mut signer = BuilderSigner(issuer.signer());
    let response = builder
        .sign::<_, SignatureBytes>(
            &mut signer,
            Some(vec![issuer.responder_certificate().clone()]),
            generalized(produced_at)?,
        )
        .map_err(|e| builder_error("signing the response", e))?;
    response.to_der().map_err(|e| Error::der("OCSP response", e))
}

fn builder_error(context: &str, e: x509_ocsp::builder::Error) -> Error {
    let source = match e {
        x509_ocsp::builder::Error::Signature(s) => signer_lib::Error::SigningFailed(s.to_string()),
        other => signer_lib::Error::SigningFailed(other.to_string()),
    };
    Error::Signer { context: context.to_owned(), source }
}

/// The RFC 6960 CertStatus for a source status: hold is `revoked` with reason certificateHold
/// (RFC 6960 §2.2); never-issued is `unknown`.
fn cert_status(status: CertificateStatus) -> Result<CertStatus, Error> {
    Ok(match status {
        CertificateStatus::Good => CertStatus::good(),
        CertificateStatus::Revoked { time, reason } => {
            CertStatus::Revoked(RevokedInfo { revocation_time: generalized(time)?, revocation_reason: reason })
        }
        CertificateStatus::Hold { time } => CertStatus::Revoked(RevokedInfo {
            revocation_time: generalized(time)?,
            revocation_reason: Some(CrlReason::CertificateHold),
        }),
        CertificateStatus::NotIssued => CertStatus::unknown(),
    })
}

/// An OCSP GeneralizedTime (whole seconds, `Z`) for `t`, which must not be before 1970.
///
/// # Errors
/// [`Error::Der`] for times before 1970 or after 9999.
pub fn generalized(t: OffsetDateTime) -> Result<OcspGeneralizedTime, Error> {
    let secs = u64::try_from(t.unix_timestamp())
        .map_err(|_| Error::der("time before 1970", der::ErrorKind::DateTime.into()))?;
    GeneralizedTime::from_unix_duration(Duration::from_secs(secs))
        .map(OcspGeneralizedTime)
        .map_err(|e| Error::der("time", e))
}
