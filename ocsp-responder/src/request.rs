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
//!
//! The parse borrows from the request bytes (one allocation, the list of CertIDs): it runs for
//! every request, pre-signed answers included. It is as strict as x509-ocsp's `OcspRequest`
//! decoder, which it mirrors field by field with borrowed types; the parts it does not look
//! into (`version`, `requestorName`, `optionalSignature`), rare in practice, are checked by
//! that decoder when present.

use std::fmt;

use const_oid::ObjectIdentifier;
use const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE;
use der::asn1::{AnyRef, IntRef, OctetStringRef};
use der::{Decode, DecodeValue, FixedTag, Header, Reader, Sequence, SliceReader, Tag};
use spki::AlgorithmIdentifierRef;
use x509_ocsp::OcspRequest;

/// The largest request we parse, in octets. An RFC 5019 request is about 80 octets with a
/// SHA-1 CertID and a 16-octet nonce; 8 KiB leaves room for 16 CertIDs and a signed request
/// with a certificate, and caps the work one request can cause. The HTTP layer refuses larger
/// bodies with 413 before they are read in full.
pub const MAX_REQUEST_LEN: usize = 8 * 1024;

/// The most CertIDs we answer in one request (RFC 5019 clients send one).
pub const MAX_CERT_IDS: usize = 16;

/// The longest nonce RFC 9654 §2.1 lets a responder accept, in octets.
pub const MAX_NONCE_LEN: usize = 128;

/// The longest serial number content accepted, as x509-cert's `SerialNumber` decoder (20
/// octets, plus one for a sign octet some encoders count outside the limit).
const MAX_SERIAL_LEN: usize = 21;

/// The parts of an OCSPRequest the responder answers, borrowed from its DER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The CertIDs of `requestList`, in order (1..=[`MAX_CERT_IDS`] of them).
    pub cert_ids: Vec<CertIdRef<'a>>,
    /// The nonce's value (the octets inside the inner OCTET STRING), 1..=128 octets, to be
    /// echoed in the response.
    pub nonce: Option<&'a [u8]>,
}

/// A CertID (RFC 6960 §4.1.1), borrowed from the request.
///
/// ```text
/// CertID ::= SEQUENCE {
///    hashAlgorithm       AlgorithmIdentifier,
///    issuerNameHash      OCTET STRING,
///    issuerKeyHash       OCTET STRING,
///    serialNumber        CertificateSerialNumber }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertIdRef<'a> {
    /// The contents octets of the CertID SEQUENCE as the client sent them (echoed in responses
    /// signed for the request).
    pub der_value: &'a [u8],
    /// The hash algorithm's OID (parameters are not looked at).
    pub hash_algorithm: ObjectIdentifier,
    /// issuerNameHash.
    pub issuer_name_hash: &'a [u8],
    /// issuerKeyHash.
    pub issuer_key_hash: &'a [u8],
    /// The contents octets of serialNumber (canonical two's complement, at most 21 octets).
    pub serial_number: &'a [u8],
}

impl FixedTag for CertIdRef<'_> {
    const TAG: Tag = Tag::Sequence;
}

impl<'a> DecodeValue<'a> for CertIdRef<'a> {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        let der_value = reader.read_slice(header.length)?;
        let mut fields = SliceReader::new(der_value)?;
        let hash_algorithm = AlgorithmIdentifierRef::decode(&mut fields)?.oid;
        let issuer_name_hash = OctetStringRef::decode(&mut fields)?.as_bytes();
        let issuer_key_hash = OctetStringRef::decode(&mut fields)?.as_bytes();
        let serial_number = IntRef::decode(&mut fields)?.as_bytes();
        if serial_number.len() > MAX_SERIAL_LEN {
            return Err(Tag::Integer.value_error());
        }
        fields.finish(Self { der_value, hash_algorithm, issuer_name_hash, issuer_key_hash, serial_number })
    }
}

/// Encodes the CertID as it was received (the `Sequence` derives below need it).
impl der::EncodeValue for CertIdRef<'_> {
    fn value_len(&self) -> der::Result<der::Length> {
        der::Length::try_from(self.der_value.len())
    }

    fn encode_value(&self, writer: &mut impl der::Writer) -> der::Result<()> {
        writer.write(self.der_value)
    }
}

/// `OCSPRequest`, borrowed (`Signature` is only checked for form).
#[derive(Sequence)]
struct OcspRequestRef<'a> {
    tbs_request: TbsRequestRef<'a>,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    optional_signature: Option<AnyRef<'a>>,
}

/// `TBSRequest`, borrowed.
#[derive(Sequence)]
struct TbsRequestRef<'a> {
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    version: Option<AnyRef<'a>>,
    #[asn1(context_specific = "1", optional = "true", tag_mode = "EXPLICIT")]
    requestor_name: Option<AnyRef<'a>>,
    request_list: Vec<RequestRef<'a>>,
    #[asn1(context_specific = "2", optional = "true", tag_mode = "EXPLICIT")]
    request_extensions: Option<Vec<ExtensionRef<'a>>>,
}

/// `Request`, borrowed.
#[derive(Sequence)]
struct RequestRef<'a> {
    req_cert: CertIdRef<'a>,
    #[asn1(context_specific = "0", optional = "true", tag_mode = "EXPLICIT")]
    single_request_extensions: Option<Vec<ExtensionRef<'a>>>,
}

/// `Extension` (RFC 5280 §4.1), borrowed; as x509-cert's `Extension`.
#[derive(Sequence)]
struct ExtensionRef<'a> {
    extn_id: ObjectIdentifier,
    #[asn1(default = "Default::default")]
    critical: bool,
    extn_value: OctetStringRef<'a>,
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
pub fn parse(der: &[u8]) -> Result<Request<'_>, Rejection> {
    if der.len() > MAX_REQUEST_LEN {
        return Err(Rejection::TooLong { len: der.len() });
    }
    let not_ocsp = |e: der::Error| Rejection::NotOcspRequest { reason: e.to_string() };
    let request = OcspRequestRef::from_der(der).map_err(not_ocsp)?;
    let tbs = request.tbs_request;
    if tbs.version.is_some() || tbs.requestor_name.is_some() || request.optional_signature.is_some() {
        // Parts only skipped over above: the full decoder checks their form.
        OcspRequest::from_der(der).map_err(not_ocsp)?;
    }
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
        let value = OctetStringRef::from_der(extension.extn_value.as_bytes())
            .map_err(|e| Rejection::BadNonce { reason: format!("not an OCTET STRING: {e}") })?;
        let len = value.as_bytes().len();
        if len == 0 || len > MAX_NONCE_LEN {
            return Err(Rejection::BadNonce { reason: format!("{len} octets, not 1 to {MAX_NONCE_LEN}") });
        }
        nonce = Some(value.as_bytes());
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

    /// The request `openssl ocsp` sends: one SHA-1 CertID and a 16-octet nonce.
    const OPENSSL_REQUEST: &str = "3051304f304d304b3049300906052b0e03021a05000414f4a4c5a4f2d2b5b0b4c6f7f0d7c0e0f7a4a4b5b604\
        14a4b4c4d4e4f4a4b4c4d4e4f4a4b4c4d4e4f4a4b402101a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d";

    #[test]
    fn borrowed_parse_agrees_with_x509_ocsp() {
        use der::Encode as _;
        use x509_ocsp::builder::OcspRequestBuilder;
        use x509_ocsp::ext::Nonce;
        let plain = hex::decode(OPENSSL_REQUEST).unwrap();
        let full = OcspRequest::from_der(&plain).unwrap();
        let cert_id = full.tbs_request.request_list[0].req_cert.clone();
        let with_nonce = OcspRequestBuilder::default()
            .with_request(x509_ocsp::Request::new(cert_id.clone()))
            .with_request(x509_ocsp::Request::new(cert_id.clone()))
            .with_extension(Nonce::new(vec![9; 16]).unwrap())
            .unwrap()
            .build()
            .to_der()
            .unwrap();
        for (der, count, nonce) in [(&plain, 1, None), (&with_nonce, 2, Some(&[9u8; 16][..]))] {
            let ours = parse(der).unwrap();
            assert_eq!((ours.cert_ids.len(), ours.nonce), (count, nonce));
            for ours in ours.cert_ids {
                assert_eq!(ours.hash_algorithm, cert_id.hash_algorithm.oid);
                assert_eq!(ours.issuer_name_hash, cert_id.issuer_name_hash.as_bytes());
                assert_eq!(ours.issuer_key_hash, cert_id.issuer_key_hash.as_bytes());
                assert_eq!(ours.serial_number, cert_id.serial_number.as_bytes());
                let mut value = Vec::new();
                der::EncodeValue::encode_value(&cert_id, &mut value).unwrap();
                assert_eq!(ours.der_value, value.as_slice());
            }
        }
        // Trailing octets, inside or after the request, are refused as by x509-ocsp.
        let mut trailing = plain.clone();
        trailing.push(0);
        assert!(matches!(parse(&trailing), Err(Rejection::NotOcspRequest { .. })));
        assert!(OcspRequest::from_der(&trailing).is_err());
    }

    #[test]
    fn rejects_serials_longer_than_21_octets_as_x509_cert_does() {
        let mut der = hex::decode(OPENSSL_REQUEST).unwrap();
        // Lengthen the serial (0x02 0x10 ...) to 22 octets, fixing up every enclosing length.
        let serial_at = der.len() - 18;
        assert_eq!(&der[serial_at..serial_at + 2], &[0x02, 0x10]);
        der[serial_at + 1] = 22;
        der.extend_from_slice(&[0x11; 6]);
        for at in [1, 3, 5, 7, 9] {
            der[at] += 6;
        }
        assert!(OcspRequest::from_der(&der).is_err());
        assert!(matches!(parse(&der), Err(Rejection::NotOcspRequest { .. })));
    }

    #[test]
    fn rejects_an_empty_request_list() {
        // OCSPRequest { TBSRequest { requestList: SEQUENCE {} } }
        assert_eq!(parse(&[0x30, 0x04, 0x30, 0x02, 0x30, 0x00]), Err(Rejection::NoCertIds));
    }
}
