//! The certificate extensions a profile calls for, built with their criticality from the
//! profile, and the key identifier method.
//!
//! x509-cert's `AsExtension` fixes criticality per type (keyUsage always critical,
//! extendedKeyUsage critical unless anyExtendedKeyUsage, ...), so extensions are assembled
//! here as [`Extension`] values directly: the profile, not the library, decides.

use der::Encode;
use der::asn1::{Ia5String, Null, OctetString, PrintableStringRef};
use sha2::{Digest, Sha256};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints, CertificatePolicies,
    CrlDistributionPoints, ExtendedKeyUsage, KeyUsage, SubjectAltName, SubjectKeyIdentifier,
    certpolicy::PolicyInformation,
};

use crate::issuer::IssueRequest;
use crate::{Error, oid};

/// The length of our key identifiers (RFC 7093 §2 method 1: 160 bits).
pub const KEY_IDENTIFIER_LEN: usize = 20;

/// The key identifier of a public key: the leftmost 160 bits of the SHA-256 hash of the
/// subjectPublicKey BIT STRING value (RFC 7093 §2, method 1). SHA-1 (RFC 5280 §4.2.1.2 method
/// 1) is not used, so that the CA needs no SHA-1 at all.
#[must_use]
pub fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    let digest = Sha256::digest(spki.subject_public_key.raw_bytes());
    digest.iter().take(KEY_IDENTIFIER_LEN).copied().collect()
}

/// The key identifier a certificate's subjects carry in their authorityKeyIdentifier: the
/// issuer's own subjectKeyIdentifier when it has one (whatever method made it), else ours.
///
/// # Errors
/// [`Error::Der`] when the issuer's subjectKeyIdentifier does not decode.
pub fn authority_key_id_of(issuer: &Certificate) -> Result<Vec<u8>, Error> {
    let tbs = &issuer.tbs_certificate;
    let ski = tbs.extensions.iter().flatten().find(|e| e.extn_id == oid::SUBJECT_KEY_IDENTIFIER);
    match ski {
        Some(ext) => {
            use der::Decode;
            let ski = SubjectKeyIdentifier::from_der(ext.extn_value.as_bytes())
                .map_err(|e| Error::der("issuer subjectKeyIdentifier", e))?;
            Ok(ski.0.as_bytes().to_vec())
        }
        None => Ok(key_identifier(&tbs.subject_public_key_info)),
    }
}

/// An extension with the DER of `value` as extnValue.
///
/// # Errors
/// [`Error::Der`] when the value does not encode.
pub fn extension(
    extn_id: der::asn1::ObjectIdentifier,
    critical: bool,
    value: &impl Encode,
) -> Result<Extension, Error> {
    let der = value.to_der().map_err(|e| Error::der("extension value", e))?;
    let extn_value = OctetString::new(der).map_err(|e| Error::der("extension value", e))?;
    Ok(Extension { extn_id, critical, extn_value })
}

/// Every extension the request's profile calls for, in a fixed order: subjectKeyIdentifier,
/// authorityKeyIdentifier (not for self-signed), keyUsage, extendedKeyUsage, basicConstraints,
/// certificatePolicies, subjectAltName, authorityInfoAccess, cRLDistributionPoints,
/// id-pkix-ocsp-nocheck, GM/T 0015 USCC.
///
/// # Errors
/// [`Error::Der`] when something does not encode (a URL or DNS name that is not ASCII;
/// [`crate::build_tbs`] checks them before).
pub fn for_request(
    request: &IssueRequest<'_>,
    subject_spki: &SubjectPublicKeyInfoOwned,
    issuer: Option<&Certificate>,
) -> Result<Vec<Extension>, Error> {
    let profile = request.profile;
    let mut exts = Vec::new();

    let ski = SubjectKeyIdentifier(
        OctetString::new(key_identifier(subject_spki)).map_err(|e| Error::der("subjectKeyIdentifier", e))?,
    );
    exts.push(extension(oid::SUBJECT_KEY_IDENTIFIER, false, &ski)?);

    if let Some(issuer) = issuer {
        let key_id =
            OctetString::new(authority_key_id_of(issuer)?).map_err(|e| Error::der("authorityKeyIdentifier", e))?;
        let aki = AuthorityKeyIdentifier { key_identifier: Some(key_id), ..Default::default() };
        exts.push(extension(oid::AUTHORITY_KEY_IDENTIFIER, false, &aki)?);
    }

    exts.push(extension(oid::KEY_USAGE, profile.key_usage.critical, &KeyUsage(profile.key_usage.flags()))?);

    if let Some(eku) = &profile.extended_key_usage {
        exts.push(extension(oid::EXTENDED_KEY_USAGE, eku.critical, &ExtendedKeyUsage(eku.purposes.clone()))?);
    }

    let bc = &profile.basic_constraints;
    let basic = BasicConstraints { ca: bc.ca, path_len_constraint: bc.path_len };
    exts.push(extension(oid::BASIC_CONSTRAINTS, bc.critical, &basic)?);

    if !profile.policy_oids.is_empty() {
        let policies = profile
            .policy_oids
            .iter()
            .map(|&policy_identifier| PolicyInformation { policy_identifier, policy_qualifiers: None })
            .collect();
        exts.push(extension(oid::CERTIFICATE_POLICIES, false, &CertificatePolicies(policies))?);
    }

    let dns_names = request.subject.dns_names();
    if !dns_names.is_empty() {
        let names = dns_names.iter().map(|n| ia5("DNS name", n).map(GeneralName::DnsName)).collect::<Result<_, _>>()?;
        exts.push(extension(oid::SUBJECT_ALT_NAME, false, &SubjectAltName(names))?);
    }

    if profile.authority_info_access {
        let mut access = Vec::new();
        if let Some(url) = &request.urls.ocsp {
            access.push(AccessDescription {
                access_method: oid::AD_OCSP,
                access_location: GeneralName::UniformResourceIdentifier(ia5("OCSP URL", url)?),
            });
        }
        if let Some(url) = &request.urls.ca_issuers {
            access.push(AccessDescription {
                access_method: oid::AD_CA_ISSUERS,
                access_location: GeneralName::UniformResourceIdentifier(ia5("CA issuers URL", url)?),
            });
        }
        exts.push(extension(oid::AUTHORITY_INFO_ACCESS, false, &AuthorityInfoAccessSyntax(access))?);
    }

    if profile.crl_distribution_point
        && let Some(url) = &request.urls.crl
    {
        let point = DistributionPoint {
            distribution_point: Some(DistributionPointName::FullName(vec![GeneralName::UniformResourceIdentifier(
                ia5("CRL URL", url)?,
            )])),
            reasons: None,
            crl_issuer: None,
        };
        exts.push(extension(oid::CRL_DISTRIBUTION_POINTS, false, &CrlDistributionPoints(vec![point]))?);
    }

    if profile.ocsp_nocheck {
        exts.push(extension(oid::OCSP_NOCHECK, false, &Null)?);
    }

    if profile.subject.uscc_extension
        && let Some(uscc) = request.subject.uscc()
    {
        let value = PrintableStringRef::new(uscc).map_err(|e| Error::der("USCC extension", e))?;
        exts.push(extension(oid::GMT0015_USCC, false, &value)?);
    }
    Ok(exts)
}

/// An IA5String, or [`Error::Der`] naming `what`.
fn ia5(what: &'static str, text: &str) -> Result<Ia5String, Error> {
    Ia5String::new(text).map_err(|e| Error::der(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_identifier_is_the_truncated_sha256_of_the_key_bits() {
        use der::Decode;
        let key =
            signer_lib::key::software::SoftwareKey::generate(signer_lib::SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        let spki = SubjectPublicKeyInfoOwned::from_der(signer_lib::Signer::public_key_der(&key)).unwrap();
        let id = key_identifier(&spki);
        assert_eq!(id.len(), 20);
        let full = Sha256::digest(spki.subject_public_key.raw_bytes());
        assert_eq!(id, full[..20]);
    }
}
