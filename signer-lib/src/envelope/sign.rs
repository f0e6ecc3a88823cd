//! Making a SignedData.
//!
//! The SignedData is assembled from the `cms` crate's ASN.1 types rather than with its
//! `SignedDataBuilder`/`SignerInfoBuilder`: the builder computes the message digest itself with
//! SHA-1/SHA-2/SHA-3 only, so it cannot make the SM3 digest that SM2 signatures need, and it
//! cannot put the GM/T 0010 content types in. Doing it by hand is short and keeps every
//! algorithm on one path.

use std::time::SystemTime;

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{OctetString, SetOfVec, UtcTime};
use der::{Any, Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::time::Time;

use super::ess::SigningCertificateV2;
use super::{
    ContentTypeOids, ID_AA_SIGNING_CERTIFICATE_V2, ID_CONTENT_TYPE, ID_MESSAGE_DIGEST, ID_SIGNING_TIME, SignOptions,
    SignerEntry,
};
use crate::Error;
use crate::key::check_matches_certificate;

const WHAT: &str = "CMS SignedData";

/// Signs the exact bytes of `content` with every signer in `signers`, giving a DER
/// `ContentInfo` holding a SignedData with CAdES-BES signed attributes (content-type,
/// message-digest, signing-time, signing-certificate-v2), each signer's certificate and chain.
///
/// Each SignerInfo names its certificate by issuer and serial number (version 1). SM2 signers
/// get the GM/T 0010 content types unless [`SignOptions::oids`] says otherwise.
///
/// # Errors
/// [`Error::Cms`] for an empty signer list; [`Error::KeyCertificateMismatch`] when a key is not
/// its certificate's; [`Error::Malformed`] for a signing time outside 1970–9999 or a
/// certificate that cannot be encoded; the signer's error when signing fails.
pub fn sign(content: &[u8], signers: &[SignerEntry<'_>], options: &SignOptions) -> Result<Vec<u8>, Error> {
    if signers.is_empty() {
        return Err(Error::Cms("a SignedData needs at least one signer".into()));
    }
    let oids =
        options.oids.unwrap_or_else(|| ContentTypeOids::default_for(signers.iter().map(|s| s.signer.algorithm())));
    let signing_time = signing_time_value(options.signing_time)?;

    let mut digest_algorithms: Vec<AlgorithmIdentifierOwned> = Vec::new();
    let mut certificates: Vec<Certificate> = Vec::new();
    let mut signer_infos = Vec::with_capacity(signers.len());
    for entry in signers {
        check_matches_certificate(entry.signer, entry.certificate)?;
        let algorithm = entry.signer.algorithm();
        let digest = algorithm.cms_digest();

        let attributes = SetOfVec::try_from(vec![
            attribute(ID_CONTENT_TYPE, &oids.data())?,
            attribute(ID_MESSAGE_DIGEST, &octets(digest.digest(content))?)?,
            attribute(ID_SIGNING_TIME, &signing_time)?,
            attribute(ID_AA_SIGNING_CERTIFICATE_V2, &SigningCertificateV2::for_certificate(entry.certificate)?)?,
        ])
        .map_err(|e| Error::der(WHAT, e))?;
        // RFC 5652 §5.4: the signature is over the DER of the attributes as a SET OF (tag
        // 0x31), which is what encoding the SetOfVec gives, not over the [0] IMPLICIT form.
        let to_be_signed = attributes.to_der().map_err(|e| Error::der(WHAT, e))?;
        let signature = entry.signer.sign(&to_be_signed)?;

        let tbs = &entry.certificate.tbs_certificate;
        signer_infos.push(SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: tbs.issuer.clone(),
                serial_number: tbs.serial_number.clone(),
            }),
            digest_alg: digest.identifier(),
            signed_attrs: Some(attributes),
            signature_algorithm: algorithm.identifier(),
            signature: octets(signature)?,
            unsigned_attrs: None,
        });

        let digest_id = digest.identifier();
        if !digest_algorithms.contains(&digest_id) {
            digest_algorithms.push(digest_id);
        }
        for cert in std::iter::once(entry.certificate).chain(entry.chain) {
            // A SET OF refuses duplicates; two signers may share a chain.
            if !certificates.contains(cert) {
                certificates.push(cert.clone());
            }
        }
    }

    let econtent = if options.detached {
        None
    } else {
        Some(Any::new(der::Tag::OctetString, content).map_err(|e| Error::der(WHAT, e))?)
    };
    let certificate_set = certificates.into_iter().map(cms::cert::CertificateChoices::Certificate).collect::<Vec<_>>();
    let signed_data = SignedData {
        // RFC 5652 §5.1: version 1, as every SignerInfo is version 1, all certificates are
        // X.509 and the content is id-data. GM/T 0010 data is not id-data, but GM/T 0010 keeps
        // PKCS#7's version 1 and its producers expect it.
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(digest_algorithms).map_err(|e| Error::der(WHAT, e))?,
        encap_content_info: EncapsulatedContentInfo { econtent_type: oids.data(), econtent },
        certificates: Some(CertificateSet::try_from(certificate_set).map_err(|e| Error::der(WHAT, e))?),
        crls: None,
        signer_infos: SignerInfos::try_from(signer_infos).map_err(|e| Error::der(WHAT, e))?,
    };
    let content_info = ContentInfo {
        content_type: oids.signed_data(),
        content: Any::encode_from(&signed_data).map_err(|e| Error::der(WHAT, e))?,
    };
    content_info.to_der().map_err(|e| Error::der(WHAT, e))
}

/// An attribute with one value.
fn attribute(oid: der::asn1::ObjectIdentifier, value: &impl Encode) -> Result<Attribute, Error> {
    let value = value.to_der().and_then(|d| Any::from_der(&d)).map_err(|e| Error::der(WHAT, e))?;
    let values = SetOfVec::try_from(vec![value]).map_err(|e| Error::der(WHAT, e))?;
    Ok(Attribute { oid, values })
}

fn octets(bytes: Vec<u8>) -> Result<OctetString, Error> {
    OctetString::new(bytes).map_err(|e| Error::der(WHAT, e))
}

/// `SigningTime ::= Time`, UTCTime for 1950 through 2049 and GeneralizedTime otherwise
/// (RFC 5652 §11.3), to the second.
fn signing_time_value(time: SystemTime) -> Result<Time, Error> {
    let generalized = Time::try_from(time).map_err(|e| Error::der("signing time", e))?;
    let date = generalized.to_date_time();
    if date.year() <= 2049 {
        Ok(Time::UtcTime(UtcTime::from_date_time(date).map_err(|e| Error::der("signing time", e))?))
    } else {
        Ok(generalized)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn encodes_signing_time_as_utctime_before_2050_and_generalizedtime_after() {
        let t = UNIX_EPOCH + Duration::from_secs(1_764_201_600) + Duration::from_millis(999);
        let v = signing_time_value(t).unwrap();
        assert!(matches!(v, Time::UtcTime(_)));
        assert_eq!(v.to_unix_duration(), Duration::from_secs(1_764_201_600));
        let v = signing_time_value(UNIX_EPOCH + Duration::from_secs(2_556_144_000)).unwrap(); // 2051
        assert!(matches!(v, Time::GeneralTime(_)));
        assert!(signing_time_value(UNIX_EPOCH - Duration::from_secs(1)).is_err());
    }
}
