//! Parsing an OCSPRequest from outside bytes, with bounds, into what the responder needs.
//!
//! ```text
//! OCSPRequest ::= SEQUENCE {
//!    tbsRequest              TBSRequest,
//!    optionalSignature   [0] EXPLICIT Signature OPTIONAL }
//! TBSRequest ::= SEQUENCE {
//!    version             [0] EXPLICIT Version DEFAULT v1,
//!    requestorName       [1] EXPLICIT GeneralName OPTIONAL,
//!    requestList             SEQUENCE OF Request,
//!    requestExtensions   [2] EXPLICIT Extensions OPTIONAL }
//! ```
//! ([RFC 6960 §4.1.1](https://www.rfc-editor.org/rfc/rfc6960#section-4.1.1))
//!
//! Only the CertIDs and the nonce are used. A request signature (`optionalSignature`) is not
//! checked: we answer unsigned requests (RFC 5019 §2.1.2) and a signature gives no rights.
//! Other request and single-request extensions are ignored (RFC 6960 §4.4: a responder
//! ignores extensions it does not recognise).

use std::fmt;

use const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE;
use der::Decode;
use der::asn1::OctetString;
use x509_ocsp::{CertId, OcspRequest};

/// The largest request we parse, in octets. An RFC 5019 request is about 80 octets with a
/// SHA-1 CertID and a 16-octet nonce; 8 KiB leaves room for 16 CertIDs and a signed request
/// with a certificate, and caps the work one request can cause. The HTTP layer refuses larger
/// bodies with 413 before they are read in full.
pub const MAX_REQUEST_LEN: usize = 8 * 1024;

/// The most CertIDs we answer in one request (RFC 5019 clients send one).
pub const MAX_CERT_IDS: usize = 16;

/// The longest nonce RFC 9654 §2.1 lets a responder accept, in octets.
pub const MAX_NONCE_LEN: usize = 128;

/// The parts of an OCSPRequest the responder answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The CertIDs of `requestList`, in order (1..=[`MAX_CERT_IDS`] of them).
    pub cert_ids: Vec<CertId>,
    /// The nonce's value (the octets inside the inner OCTET STRING), 1..=128 octets, to be
    /// echoed in the response.
    pub nonce: Option<Vec<u8>>,
}

/// Why a request is refused as `malformedRequest` (RFC 6960 §2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// Longer than [`MAX_REQUEST_LEN`].
    TooLong {
        /// Its length in octets.
        len: usize,
    },
    /// Not a DER OCSPRequest.
    NotOcspRequest {
        /// The decoder's complaint.
        reason: String,
    },
    /// `requestList` is empty.
    NoCertIds,
    /// More than [`MAX_CERT_IDS`] CertIDs.
    TooManyCertIds {
        /// How many there were.
        count: usize,
    },
    /// A nonce whose value is empty or longer than 128 octets (RFC 9654 §2.1), not an OCTET
    /// STRING, or given twice.
    BadNonce {
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { len } => write!(f, "request of {len} octets exceeds {MAX_REQUEST_LEN}"),
            Self::NotOcspRequest { reason } => write!(f, "not an OCSPRequest: {reason}"),
            Self::NoCertIds => f.write_str("empty requestList"),
            Self::TooManyCertIds { count } => write!(f, "{count} CertIDs, at most {MAX_CERT_IDS} answered"),
            Self::BadNonce { reason } => write!(f, "bad nonce: {reason}"),
        }
    }
}

/// Parses a DER OCSPRequest (RFC 6960 §4.1.1) of at most [`MAX_REQUEST_LEN`] octets.
///
/// # Errors
/// A [`Rejection`], answered with `malformedRequest`.
pub fn parse(der: &[u8]) -> Result<Request, Rejection> {
    if der.len() > MAX_REQUEST_LEN {
        return Err(Rejection::TooLong { len: der.len() });
    }
    let request = OcspRequest::from_der(der).map_err(|e| Rejection::NotOcspRequest { reason: e.to_string() })?;
    let tbs = request.tbs_request;
    match tbs.request_list.len() {
        0 => return Err(Rejection::NoCertIds),
        count if count > MAX_CERT_IDS => return Err(Rejection::TooManyCertIds { count }),
        _ => {}
    }
    let mut nonce = None;
    for extension in tbs.request_extensions.iter().flatten().filter(|e| e.extn_id == ID_PKIX_OCSP_NONCE) {
        if nonce.is_some() {
            return Err(Rejection::BadNonce { reason: "two nonce extensions".into() });
        }
        // RFC 9654 §2.1: extnValue holds the DER of `Nonce ::= OCTET STRING (SIZE(1..128))`.
        let value = OctetString::from_der(extension.extn_value.as_bytes())
            .map_err(|e| Rejection::BadNonce { reason: format!("not an OCTET STRING: {e}") })?;
        let len = value.as_bytes().len();
        if len == 0 || len > MAX_NONCE_LEN {
            return Err(Rejection::BadNonce { reason: format!("{len} octets, not 1 to {MAX_NONCE_LEN}") });
        }
        nonce = Some(value.into_bytes());
    }
    Ok(Request { cert_ids: tbs.request_list.into_iter().map(|r| r.req_cert).collect(), nonce })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_and_empty_input() {
        assert!(matches!(parse(b""), Err(Rejection::NotOcspRequest { .. })));
        assert!(matches!(parse(b"hello"), Err(Rejection::NotOcspRequest { .. })));
        assert!(matches!(parse(&[0x30, 0x80, 0x00, 0x00]), Err(Rejection::NotOcspRequest { .. })));
        assert!(matches!(parse(&vec![0x30; MAX_REQUEST_LEN + 1]), Err(Rejection::TooLong { .. })));
    }

    #[test]
    fn rejects_an_empty_request_list() {
        // OCSPRequest { TBSRequest { requestList: SEQUENCE {} } }
        assert_eq!(parse(&[0x30, 0x04, 0x30, 0x02, 0x30, 0x00]), Err(Rejection::NoCertIds));
    }
}
