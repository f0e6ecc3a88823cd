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
use time::OffsetDateTime;
use x509_cert::ext::pkix::CrlReason;
use x509_ocsp::OcspGeneralizedTime;

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
    /// The contents octets of the CertID SEQUENCE as it goes into the response: the client's
    /// own for responses signed for a request, ours ([`Issuer::cert_id`]) when pre-signed.
    pub cert_id: Vec<u8>,
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
/// The DER is written directly ([`response_data`], [`assemble`]) from the issuer's pre-encoded
/// ResponderID, responder certificate and signature AlgorithmIdentifier: no certificate is
/// cloned or re-encoded per response. The integration test `response_encoding` checks the
/// octets against the x509-ocsp builder's.
///
/// # Errors
/// [`Error::Der`] for a time outside 1970–9999, [`Error::Signer`] when the key fails.
pub fn sign(
    issuer: &Issuer,
    singles: &[Single],
    nonce: Option<&[u8]>,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    produced_at: OffsetDateTime,
) -> Result<Vec<u8>, Error> {
    let tbs = response_data(issuer.responder_id_der(), singles, nonce, this_update, next_update, produced_at)?;
    let signature = issuer
        .signer()
        .sign(&tbs)
        .map_err(|source| Error::Signer { context: "signing the response".into(), source })?;
    Ok(assemble(&tbs, issuer.signature_algorithm_der(), &signature, issuer.responder_certificate_der()))
}

/// The contents octets of `cert_id`'s DER, as [`Single::cert_id`] holds them.
///
/// # Errors
/// [`Error::Der`] should the CertID not encode.
pub fn cert_id_value(cert_id: &x509_ocsp::CertId) -> Result<Vec<u8>, Error> {
    use der::EncodeValue as _;
    let mut out = Vec::new();
    cert_id.encode_value(&mut out).map_err(|e| Error::der("CertID", e))?;
    Ok(out)
}

/// The octets of a GeneralizedTime TLV (`YYYYMMDDHHMMSSZ`).
const GENERALIZED_TIME_LEN: usize = 17;
/// The nonce extension's OID, DER with tag and length.
const ID_PKIX_OCSP_NONCE_DER: [u8; 11] = [0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];

/// The DER of a ResponseData (version v1, so omitted).
///
/// ```text
/// SingleResponse ::= SEQUENCE {
///    certID                       CertID,
///    certStatus                   CertStatus,
///    thisUpdate                   GeneralizedTime,
///    nextUpdate         [0]       EXPLICIT GeneralizedTime OPTIONAL,
///    singleExtensions   [1]       EXPLICIT Extensions OPTIONAL }
/// CertStatus ::= CHOICE {
///    good        [0]     IMPLICIT NULL,
///    revoked     [1]     IMPLICIT RevokedInfo,
///    unknown     [2]     IMPLICIT UnknownInfo }
/// RevokedInfo ::= SEQUENCE {
///    revocationTime              GeneralizedTime,
///    revocationReason    [0]     EXPLICIT CRLReason OPTIONAL }
/// ```
///
/// # Errors
/// [`Error::Der`] for a time outside 1970–9999.
pub fn response_data(
    responder_id: &[u8],
    singles: &[Single],
    nonce: Option<&[u8]>,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    produced_at: OffsetDateTime,
) -> Result<Vec<u8>, Error> {
    let this = generalized_der(this_update)?;
    let next = generalized_der(next_update)?;
    let produced = generalized_der(produced_at)?;
    let mut statuses = Vec::with_capacity(singles.len());
    let mut responses_len = 0;
    for single in singles {
        let status = status_der(single.status)?;
        let content = tlv_len(single.cert_id.len()) + status.len() + 2 * GENERALIZED_TIME_LEN + 2;
        responses_len += tlv_len(content);
        statuses.push((status, content));
    }
    // [1] EXPLICIT SEQUENCE { SEQUENCE { extnID, extnValue OCTET STRING { OCTET STRING nonce } } }
    let nonce_extension = nonce.map(|n| ID_PKIX_OCSP_NONCE_DER.len() + tlv_len(tlv_len(n.len())));
    let extensions_len = nonce_extension.map_or(0, |e| tlv_len(tlv_len(tlv_len(e))));
    let content = responder_id.len() + GENERALIZED_TIME_LEN + tlv_len(responses_len) + extensions_len;

    let mut out = Vec::with_capacity(tlv_len(content));
    push_header(&mut out, 0x30, content);
    out.extend_from_slice(responder_id);
    out.extend_from_slice(&produced);
    push_header(&mut out, 0x30, responses_len);
    for (single, (status, content)) in singles.iter().zip(&statuses) {
        push_header(&mut out, 0x30, *content);
        push_header(&mut out, 0x30, single.cert_id.len());
        out.extend_from_slice(&single.cert_id);
        out.extend_from_slice(status);
        out.extend_from_slice(&this);
        push_header(&mut out, 0xa0, GENERALIZED_TIME_LEN);
        out.extend_from_slice(&next);
    }
    if let (Some(nonce), Some(extension)) = (nonce, nonce_extension) {
        push_header(&mut out, 0xa1, tlv_len(tlv_len(extension)));
        push_header(&mut out, 0x30, tlv_len(extension));
        push_header(&mut out, 0x30, extension);
        out.extend_from_slice(&ID_PKIX_OCSP_NONCE_DER);
        push_header(&mut out, 0x04, tlv_len(nonce.len()));
        push_header(&mut out, 0x04, nonce.len());
        out.extend_from_slice(nonce);
    }
    debug_assert_eq!(out.len(), out.capacity());
    Ok(out)
}

/// The DER of a CertStatus: hold is `revoked` with reason certificateHold (RFC 6960 §2.2);
/// never-issued is `unknown`.
fn status_der(status: CertificateStatus) -> Result<Vec<u8>, Error> {
    let (time, reason) = match status {
        CertificateStatus::Good => return Ok(vec![0x80, 0x00]),
        CertificateStatus::NotIssued => return Ok(vec![0x82, 0x00]),
        CertificateStatus::Revoked { time, reason } => (time, reason),
        CertificateStatus::Hold { time } => (time, Some(CrlReason::CertificateHold)),
    };
    let reason = reason.map(|r| r.to_der()).transpose().map_err(|e| Error::der("revocation reason", e))?;
    let content = GENERALIZED_TIME_LEN + reason.as_ref().map_or(0, |r| tlv_len(r.len()));
    let mut out = Vec::with_capacity(tlv_len(content));
    push_header(&mut out, 0xa1, content);
    out.extend_from_slice(&generalized_der(time)?);
    if let Some(reason) = reason {
        push_header(&mut out, 0xa0, reason.len());
        out.extend_from_slice(&reason);
    }
    Ok(out)
}

/// The DER of a GeneralizedTime for `t` in whole seconds (RFC 5280 §4.1.2.5.2).
fn generalized_der(t: OffsetDateTime) -> Result<[u8; GENERALIZED_TIME_LEN], Error> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let year = u16::try_from(t.year())
        .ok()
        .filter(|y| (1970..=9999).contains(y))
        .ok_or_else(|| Error::der("time outside 1970-9999", der::ErrorKind::DateTime.into()))?;
    let mut out = [0u8; GENERALIZED_TIME_LEN];
    out[0] = 0x18;
    out[1] = 15;
    let digits = |out: &mut [u8], value: u16| {
        let mut v = value;
        for d in out.iter_mut().rev() {
            *d = b'0' + u8::try_from(v % 10).unwrap_or(0);
            v /= 10;
        }
    };
    digits(&mut out[2..6], year);
    digits(&mut out[6..8], u16::from(u8::from(t.month())));
    digits(&mut out[8..10], u16::from(t.day()));
    digits(&mut out[10..12], u16::from(t.hour()));
    digits(&mut out[12..14], u16::from(t.minute()));
    digits(&mut out[14..16], u16::from(t.second()));
    out[16] = b'Z';
    Ok(out)
}

/// id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1), DER with tag and length.
const ID_PKIX_OCSP_BASIC_DER: [u8; 11] = [0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];
/// `responseStatus successful`, DER.
const SUCCESSFUL_DER: [u8; 3] = [0x0a, 0x01, 0x00];

/// The DER of a successful OCSPResponse around a BasicOCSPResponse made of its parts, each
/// already DER: `tbs` (ResponseData), `algorithm` (AlgorithmIdentifier), the signature value
/// (the BIT STRING's contents) and the one certificate of `certs`.
///
/// ```text
/// OCSPResponse  ::= SEQUENCE { responseStatus ENUMERATED, responseBytes [0] EXPLICIT ResponseBytes }
/// ResponseBytes ::= SEQUENCE { responseType OBJECT IDENTIFIER, response OCTET STRING }
/// ```
#[must_use]
pub fn assemble(tbs: &[u8], algorithm: &[u8], signature: &[u8], certificate: &[u8]) -> Vec<u8> {
    let bit_string = tlv_len(signature.len() + 1);
    let certs = tlv_len(tlv_len(certificate.len()));
    let basic_content = tbs.len() + algorithm.len() + bit_string + certs;
    let response_bytes_content = ID_PKIX_OCSP_BASIC_DER.len() + tlv_len(tlv_len(basic_content));
    let outer_content = SUCCESSFUL_DER.len() + tlv_len(tlv_len(response_bytes_content));

    let mut out = Vec::with_capacity(tlv_len(outer_content));
    push_header(&mut out, 0x30, outer_content);
    out.extend_from_slice(&SUCCESSFUL_DER);
    push_header(&mut out, 0xa0, tlv_len(response_bytes_content));
    push_header(&mut out, 0x30, response_bytes_content);
    out.extend_from_slice(&ID_PKIX_OCSP_BASIC_DER);
    push_header(&mut out, 0x04, tlv_len(basic_content));
    push_header(&mut out, 0x30, basic_content);
    out.extend_from_slice(tbs);
    out.extend_from_slice(algorithm);
    push_header(&mut out, 0x03, signature.len() + 1);
    out.push(0); // no unused bits
    out.extend_from_slice(signature);
    push_header(&mut out, 0xa0, tlv_len(certificate.len()));
    push_header(&mut out, 0x30, certificate.len());
    out.extend_from_slice(certificate);
    debug_assert_eq!(out.len(), out.capacity());
    out
}

/// The length of a DER TLV with `content` octets (one-octet tag).
fn tlv_len(content: usize) -> usize {
    1 + length_len(content) + content
}

/// Octets of a DER definite length for `len`.
fn length_len(len: usize) -> usize {
    match len {
        0..0x80 => 1,
        0x80..0x100 => 2,
        0x100..0x1_0000 => 3,
        0x1_0000..0x100_0000 => 4,
        _ => 5,
    }
}

/// Appends a DER tag and definite length (short form below 128, else the shortest long form).
fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    let n = length_len(len) - 1;
    if n == 0 {
        // Invariant: len < 0x80 here.
        out.push(len.to_be_bytes()[size_of::<usize>() - 1]);
    } else {
        out.push(0x80 | u8::try_from(n).unwrap_or(4));
        out.extend_from_slice(&len.to_be_bytes()[size_of::<usize>() - n..]);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_same_headers_as_the_der_crate() {
        for len in [0usize, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, 0xff_ffff, 0x100_0000, 0xfff_ffff] {
            let header = der::Header::new(der::Tag::Sequence, der::Length::try_from(len).unwrap()).unwrap();
            let mut ours = Vec::new();
            push_header(&mut ours, 0x30, len);
            assert_eq!(ours, header.to_der().unwrap(), "length {len}");
            assert_eq!(tlv_len(len), ours.len() + len);
        }
    }

    #[test]
    fn assembles_with_long_form_lengths() {
        // A certificate of 300 octets and a signature of 130 need two-octet lengths.
        let out = assemble(&[0x30, 0x00], &[0x30, 0x00], &[0xaa; 130], &[0xbb; 300]);
        assert_eq!((&out[..4], out.len()), (&[0x30, 0x82, 0x01, 0xdc][..], 480));
        let response = <x509_ocsp::OcspResponse as der::Decode>::from_der(&out).unwrap();
        let basic = response.response_bytes.unwrap().response;
        // SEQUENCE { tbs, algorithm, BIT STRING (3 + 131), [0] { SEQUENCE (4 + 300) } }
        assert_eq!(basic.as_bytes().len(), 4 + 2 + 2 + 134 + 308);
    }
}
