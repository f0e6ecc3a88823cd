//! Verifying a SignedData: every SignerInfo must verify.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::SystemTime;

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedAttributes, SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Any, Decode, Encode, Tagged};
use x509_cert::Certificate;
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::name::Name;
use x509_cert::time::Time;

use super::ess::{SigningCertificate, SigningCertificateV2};
use super::{
    ContentTypeOids, GMT_DATA, GMT_SIGNED_DATA, ID_AA_SIGNING_CERTIFICATE, ID_AA_SIGNING_CERTIFICATE_V2,
    ID_CONTENT_TYPE, ID_DATA, ID_MESSAGE_DIGEST, ID_SIGNED_DATA, ID_SIGNING_TIME, SignerBinding, SignerReport,
    VerifyReport,
};
use crate::Error;
use crate::algorithm::{DigestAlgorithm, ID_EC_PUBLIC_KEY, RSA_ENCRYPTION};
use crate::verify::VerifyOptions;

const WHAT: &str = "CMS SignedData";

/// Verifies a CMS SignedData (DER, or PEM labelled `CMS` or `PKCS7`) over its encapsulated
/// content or, when the content is detached, over `detached_content`.
///
/// Succeeds only when every SignerInfo verifies: its certificate is among the SignedData's
/// certificates (by issuer and serial number or by subject key identifier); with signed
/// attributes, content-type equals the eContentType, message-digest equals the digest of the
/// content, a signing-certificate-v2 (or v1) attribute, if present, names that certificate,
/// and the signature over the DER `SET OF` attributes verifies; without signed attributes, the
/// signature over the content verifies. SM2 signatures are checked under the default
/// distinguishing ID (GM/T 0009; see [`verify_with`]). The certificates themselves are not
/// validated.
///
/// # Errors
/// [`Error::Malformed`] for bytes that are not a SignedData; [`Error::Cms`] for a SignedData
/// that is not acceptable (other content type, no content, no signer, no certificate for a
/// signer, a missing or duplicated attribute, a broken signer binding);
/// [`Error::BadSignature`] when a signature or message digest does not match;
/// [`Error::UnsupportedAlgorithm`] for a digest or signature algorithm we do not know.
pub fn verify(signature: &[u8], detached_content: Option<&[u8]>) -> Result<VerifyReport, Error> {
    verify_with(signature, detached_content, &VerifyOptions::default())
}

/// [`verify`] with explicit options: the SM2 distinguishing ID the signers used, for
/// producers that do not use the GM/T 0009 default (OpenSSL 3.0 signs with an empty ID).
///
/// # Errors
/// As [`verify`].
pub fn verify_with(
    signature: &[u8],
    detached_content: Option<&[u8]>,
    options: &VerifyOptions<'_>,
) -> Result<VerifyReport, Error> {
    let der_bytes = decode_pem_or_der(signature)?;
    let content_info = ContentInfo::from_der(&der_bytes).map_err(|e| Error::der("CMS ContentInfo", e))?;
    let content_type_oids = match content_info.content_type {
        ID_SIGNED_DATA => ContentTypeOids::Rfc5652,
        GMT_SIGNED_DATA => ContentTypeOids::Gmt0010,
        other => return Err(Error::Cms(format!("content type {other} is not signedData"))),
    };
    let signed_data: SignedData = content_info.content.decode_as().map_err(|e| Error::der(WHAT, e))?;

    let encap = &signed_data.encap_content_info;
    if encap.econtent_type != ID_DATA && encap.econtent_type != GMT_DATA {
        return Err(Error::Cms(format!("encapsulated content type {} is not data", encap.econtent_type)));
    }
    let content: &[u8] = match (&encap.econtent, detached_content) {
        (Some(econtent), detached) => {
            let inner = econtent_bytes(econtent)?;
            if detached.is_some_and(|d| d != inner) {
                return Err(Error::Cms("the content given differs from the content inside the SignedData".into()));
            }
            inner
        }
        (None, Some(detached)) => detached,
        (None, None) => return Err(Error::Cms("the signature is detached and no content was given".into())),
    };

    let certificates: Vec<&Certificate> = signed_data
        .certificates
        .as_ref()
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    CertificateChoices::Certificate(cert) => Some(cert),
                    CertificateChoices::Other(_) => None,
                })
                .collect()
        })
        .unwrap_or_default();

    if signed_data.signer_infos.0.is_empty() {
        return Err(Error::Cms("the SignedData has no SignerInfo".into()));
    }
    let signers = signed_data
        .signer_infos
        .0
        .iter()
        .enumerate()
        .map(|(index, info)| {
            verify_signer(info, encap.econtent_type, content, &certificates, options).map_err(|e| in_signer(index, e))
        })
        .collect::<Result<Vec<_>, _>>()?;

    Ok(VerifyReport { content: content.to_vec(), detached: encap.econtent.is_none(), content_type_oids, signers })
}

/// Says which SignerInfo failed when there are several.
fn in_signer(index: usize, error: Error) -> Error {
    match error {
        Error::BadSignature(m) => Error::BadSignature(format!("SignerInfo #{index}: {m}")),
        Error::Cms(m) => Error::Cms(format!("SignerInfo #{index}: {m}")),
        other => other,
    }
}

fn verify_signer(
    info: &SignerInfo,
    econtent_type: ObjectIdentifier,
    content: &[u8],
    certificates: &[&Certificate],
    options: &VerifyOptions<'_>,
) -> Result<SignerReport, Error> {
    let digest = DigestAlgorithm::from_oid(info.digest_alg.oid)?;
    // rsaEncryption and id-ecPublicKey as signature algorithms leave the hash to the
    // digestAlgorithm, and `verify_signature` applies SHA-256 for them.
    let signature_oid = info.signature_algorithm.oid;
    if (signature_oid == RSA_ENCRYPTION || signature_oid == ID_EC_PUBLIC_KEY) && digest != DigestAlgorithm::Sha256 {
        return Err(Error::UnsupportedAlgorithm { oid: format!("{signature_oid} with digest {digest}") });
    }
    let certificate = find_certificate(&info.sid, certificates)?;
    let certificate_der = certificate.to_der().map_err(|e| Error::der("certificate", e))?;
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| Error::der("certificate public key", e))?;

    let (signed_bytes, attributes): (Cow<'_, [u8]>, _) = match &info.signed_attrs {
        // RFC 5652 §5.4: over the DER of the attributes as a SET OF (tag 0x31). The decoder
        // puts the attributes in DER order, so a producer that signed another order fails.
        Some(attrs) => (Cow::Owned(attrs.to_der().map_err(|e| Error::der(WHAT, e))?), Some(attrs)),
        // RFC 5652 §5.4: without signed attributes the signature is over the content itself.
        None => (Cow::Borrowed(content), None),
    };
    // The signature first: a tampered attribute is reported as a bad signature, not as
    // whatever the tampered value would imply.
    let algorithm =
        crate::verify::verify_signature_with(&spki, signature_oid, &signed_bytes, info.signature.as_bytes(), options)?;

    let (signing_time, binding) = match attributes {
        Some(attrs) => check_attributes(attrs, econtent_type, digest, content, certificate, &certificate_der)?,
        None => (None, SignerBinding::NotPresent),
    };
    let tbs = &certificate.tbs_certificate;
    Ok(SignerReport {
        subject: name_string(&tbs.subject),
        issuer: name_string(&tbs.issuer),
        serial_hex: serial_hex(tbs.serial_number.as_bytes()),
        certificate: certificate.clone(),
        algorithm,
        digest,
        signing_time,
        binding,
    })
}

fn check_attributes(
    attrs: &SignedAttributes,
    econtent_type: ObjectIdentifier,
    digest: DigestAlgorithm,
    content: &[u8],
    certificate: &Certificate,
    certificate_der: &[u8],
) -> Result<(Option<SystemTime>, SignerBinding), Error> {
    // RFC 5652 §5.3: with signed attributes, content-type and message-digest MUST be present.
    let content_type: ObjectIdentifier = decode_value(
        single_value(attrs, ID_CONTENT_TYPE, "content-type")?
            .ok_or_else(|| Error::Cms("the content-type signed attribute is missing".into()))?,
        "content-type attribute",
    )?;
    if content_type != econtent_type {
        return Err(Error::Cms(format!(
            "the content-type attribute {content_type} differs from the eContentType {econtent_type}"
        )));
    }
    let message_digest: OctetString = decode_value(
        single_value(attrs, ID_MESSAGE_DIGEST, "message-digest")?
            .ok_or_else(|| Error::Cms("the message-digest signed attribute is missing".into()))?,
        "message-digest attribute",
    )?;
    let computed = digest.digest(content);
    if message_digest.as_bytes() != computed.as_slice() {
        return Err(Error::BadSignature(format!(
            "the content does not match the message-digest attribute ({digest} {} signed, {} computed)",
            hex::encode(message_digest.as_bytes()),
            hex::encode(&computed)
        )));
    }

    let signing_time = single_value(attrs, ID_SIGNING_TIME, "signing-time")?
        .map(|v| decode_value::<Time>(v, "signing-time attribute").map(|t| t.to_system_time()))
        .transpose()?;

    let mut binding = SignerBinding::NotPresent;
    if let Some(v) = single_value(attrs, ID_AA_SIGNING_CERTIFICATE_V2, "signing-certificate-v2")? {
        decode_value::<SigningCertificateV2>(v, "signing-certificate-v2 attribute")?
            .check(certificate, certificate_der)?;
        binding = SignerBinding::Verified;
    }
    if let Some(v) = single_value(attrs, ID_AA_SIGNING_CERTIFICATE, "signing-certificate")? {
        decode_value::<SigningCertificate>(v, "signing-certificate attribute")?.check(certificate, certificate_der)?;
        binding = SignerBinding::Verified;
    }
    Ok((signing_time, binding))
}

/// The one value of the attribute `oid`, or `None` when absent; an error when the attribute
/// appears twice or has other than one value (RFC 5652 §11, RFC 5035 §5.4).
fn single_value<'a>(attrs: &'a SignedAttributes, oid: ObjectIdentifier, name: &str) -> Result<Option<&'a Any>, Error> {
    let mut found = attrs.iter().filter(|a| a.oid == oid);
    let Some(attr) = found.next() else { return Ok(None) };
    if found.next().is_some() {
        return Err(Error::Cms(format!("the {name} attribute appears more than once")));
    }
    match attr.values.as_slice() {
        [value] => Ok(Some(value)),
        values => Err(Error::Cms(format!("the {name} attribute has {} values, not one", values.len()))),
    }
}

fn decode_value<T: der::DecodeOwned>(value: &Any, what: &'static str) -> Result<T, Error> {
    value.to_der().and_then(|d| T::from_der(&d)).map_err(|e| Error::der(what, e))
}

fn econtent_bytes(econtent: &Any) -> Result<&[u8], Error> {
    if econtent.tag() == der::Tag::OctetString {
        Ok(econtent.value())
    } else {
        Err(Error::Malformed { what: WHAT, reason: format!("eContent is {}, not an OCTET STRING", econtent.tag()) })
    }
}

fn find_certificate<'c>(sid: &SignerIdentifier, certificates: &[&'c Certificate]) -> Result<&'c Certificate, Error> {
    let found = match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => certificates.iter().find(|c| {
            c.tbs_certificate.serial_number == ias.serial_number && same_name(&c.tbs_certificate.issuer, &ias.issuer)
        }),
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            certificates.iter().find(|c| subject_key_identifier(c).is_some_and(|own| own == *ski))
        }
    };
    found.copied().ok_or_else(|| {
        let who = match sid {
            SignerIdentifier::IssuerAndSerialNumber(ias) => {
                format!("issuer {} serial {}", name_string(&ias.issuer), serial_hex(ias.serial_number.as_bytes()))
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => {
                format!("subject key identifier {}", hex::encode(ski.0.as_bytes()))
            }
        };
        Error::Cms(format!("no certificate in the SignedData for the signer with {who}"))
    })
}

/// Names compare by their DER, which is what the issuer of a certificate and the
/// IssuerAndSerialNumber copied from it share.
fn same_name(a: &Name, b: &Name) -> bool {
    a == b || matches!((a.to_der(), b.to_der()), (Ok(x), Ok(y)) if x == y)
}

fn subject_key_identifier(certificate: &Certificate) -> Option<SubjectKeyIdentifier> {
    use const_oid::AssociatedOid as _;
    let extensions = certificate.tbs_certificate.extensions.as_ref()?;
    let ext = extensions.iter().find(|e| e.extn_id == SubjectKeyIdentifier::OID)?;
    SubjectKeyIdentifier::from_der(ext.extn_value.as_bytes()).ok()
}

/// RFC 4514 string of a name; never panics, unlike `to_string` on a Display that errs.
fn name_string(name: &Name) -> String {
    let mut out = String::new();
    if write!(out, "{name}").is_err() {
        out = match name.to_der() {
            Ok(der_bytes) => format!("#{}", hex::encode(der_bytes)),
            Err(_) => "(unprintable name)".into(),
        };
    }
    out
}

/// Hex of a serial number without the sign padding of its DER (as `openssl x509 -serial`).
fn serial_hex(bytes: &[u8]) -> String {
    let stripped = match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => bytes,
    };
    hex::encode(stripped)
}

/// The DER inside PEM (`CMS` or `PKCS7`), or the bytes themselves.
fn decode_pem_or_der(bytes: &[u8]) -> Result<Cow<'_, [u8]>, Error> {
    let text = bytes.trim_ascii();
    if !text.starts_with(b"-----BEGIN ") {
        return Ok(Cow::Borrowed(bytes));
    }
    let (label, der_bytes) = der::pem::decode_vec(text).map_err(|e| Error::der("PEM CMS", e))?;
    match label {
        super::PEM_LABEL | "PKCS7" => Ok(Cow::Owned(der_bytes)),
        other => Err(Error::Malformed { what: "PEM CMS", reason: format!("label {other:?} is not CMS or PKCS7") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_the_sign_padding_of_serials() {
        assert_eq!(serial_hex(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex(&[0x7f, 0x01]), "7f01");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "");
    }

    #[test]
    fn refuses_pem_with_another_label() {
        let pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &[0x30, 0x00]).unwrap();
        assert!(matches!(verify(pem.as_bytes(), None), Err(Error::Malformed { what: "PEM CMS", .. })));
    }
}
