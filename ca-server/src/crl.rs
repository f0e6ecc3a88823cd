//! Certificate revocation lists (RFC 5280 §5), one per issuing CA, signed through [`Signer`].
//!
//! ```asn1
//! CertificateList  ::=  SEQUENCE  {
//!      tbsCertList          TBSCertList,
//!      signatureAlgorithm   AlgorithmIdentifier,
//!      signatureValue       BIT STRING  }
//!
//! TBSCertList  ::=  SEQUENCE  {
//!      version                 Version OPTIONAL,   -- v2
//!      signature               AlgorithmIdentifier,
//!      issuer                  Name,
//!      thisUpdate              Time,
//!      nextUpdate              Time OPTIONAL,
//!      revokedCertificates     SEQUENCE OF SEQUENCE  {
//!           userCertificate         CertificateSerialNumber,
//!           revocationDate          Time,
//!           crlEntryExtensions      Extensions OPTIONAL  -- reasonCode
//!                                }  OPTIONAL,
//!      crlExtensions           [0]  EXPLICIT Extensions OPTIONAL  -- AKI, cRLNumber
//!                                }
//! ```
//!
//! What we write: version v2; nextUpdate always (RFC 5280 §5.1.2.5 MUST); the
//! authorityKeyIdentifier (the issuing CA's subjectKeyIdentifier, §5.2.1 MUST) and a
//! monotonic cRLNumber (§5.2.3 MUST), both non-critical; `revokedCertificates` left out when
//! there are none (§5.1.2.6); a reasonCode entry extension for every reason except
//! `unspecified`, which §5.3.1 says SHOULD be absent; held certificates with
//! `certificateHold`. The TBSCertList's DER is signed by the issuing key through the
//! [`Signer`] trait and the signature is verified before the CRL is returned.

use std::fmt;
use std::str::FromStr;

use const_oid::db::rfc5280::{
    ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_CRL_NUMBER, ID_CE_CRL_REASONS, ID_CE_SUBJECT_KEY_IDENTIFIER,
};
use der::asn1::{BitString, OctetString, Uint};
use der::{Decode, Encode};
use signer_lib::Signer;
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::Version;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::AuthorityKeyIdentifier;
use x509_cert::ext::pkix::crl::CrlReason;
use x509_cert::serial_number::SerialNumber;

use crate::Error;

/// A revocation reason (RFC 5280 §5.3.1 CRLReason), named as in the RFC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RevocationReason {
    /// unspecified (0).
    Unspecified,
    /// keyCompromise (1).
    KeyCompromise,
    /// cACompromise (2).
    CaCompromise,
    /// affiliationChanged (3).
    AffiliationChanged,
    /// superseded (4).
    Superseded,
    /// cessationOfOperation (5).
    CessationOfOperation,
    /// certificateHold (6): suspension, the one reversible state.
    CertificateHold,
    /// removeFromCRL (8): delta CRLs only.
    RemoveFromCrl,
    /// privilegeWithdrawn (9).
    PrivilegeWithdrawn,
    /// aACompromise (10).
    AaCompromise,
}

impl RevocationReason {
    /// Every reason, in code order.
    pub const ALL: [Self; 10] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::CaCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::CertificateHold,
        Self::RemoveFromCrl,
        Self::PrivilegeWithdrawn,
        Self::AaCompromise,
    ];

    /// The reasons an end-entity certificate may be revoked for through the API: not
    /// certificateHold (that is `hold`), not removeFromCRL (delta CRLs), not the CA and AA
    /// compromise reasons (for CA certificates).
    pub const FOR_END_ENTITIES: [Self; 6] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::PrivilegeWithdrawn,
    ];

    /// The RFC 5280 name (`keyCompromise`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::CaCompromise => "cACompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::CertificateHold => "certificateHold",
            Self::RemoveFromCrl => "removeFromCRL",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
            Self::AaCompromise => "aACompromise",
        }
    }

    /// The CRLReason code.
    #[must_use]
    pub fn code(self) -> i64 {
        i64::from(self.crl_reason() as u32)
    }

    /// The reason with this code.
    #[must_use]
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    fn crl_reason(self) -> CrlReason {
        match self {
            Self::Unspecified => CrlReason::Unspecified,
            Self::KeyCompromise => CrlReason::KeyCompromise,
            Self::CaCompromise => CrlReason::CaCompromise,
            Self::AffiliationChanged => CrlReason::AffiliationChanged,
            Self::Superseded => CrlReason::Superseded,
            Self::CessationOfOperation => CrlReason::CessationOfOperation,
            Self::CertificateHold => CrlReason::CertificateHold,
            Self::RemoveFromCrl => CrlReason::RemoveFromCRL,
            Self::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
            Self::AaCompromise => CrlReason::AaCompromise,
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RevocationReason {
    type Err = Error;

    /// Parses an RFC 5280 name, ignoring case (`keyCompromise`, `KEYCOMPROMISE`).
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL.into_iter().find(|r| r.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            Error::bad(
                "reason",
                format!(
                    "{s:?} is not an RFC 5280 reason name ({})",
                    Self::ALL.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }
}

/// One revoked (or held) certificate on a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlEntry {
    /// The serial number's content octets.
    pub serial: Vec<u8>,
    /// When it was revoked or put on hold.
    pub revoked_at: OffsetDateTime,
    /// Why (certificateHold for a hold).
    pub reason: RevocationReason,
}

/// Builds and signs the CRL of `issuer` (the issuing CA certificate) with `signer` (its key).
///
/// # Errors
/// [`Error::Internal`] when the signer is not the issuer's key, a value does not encode, the
/// issuer certificate has no subjectKeyIdentifier, or the signature does not verify.
pub fn build(
    issuer: &Certificate,
    signer: &dyn Signer,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    entries: &[CrlEntry],
) -> Result<CertificateList, Error> {
    signer_lib::key::check_matches_certificate(signer, issuer).map_err(|e| Error::internal("CRL signer", e))?;
    let time = |t: OffsetDateTime| policies::issuer::x509_time(t).map_err(|e| Error::internal("CRL time", e));

    let mut revoked = Vec::with_capacity(entries.len());
    for entry in entries {
        let serial = SerialNumber::new(&entry.serial).map_err(|e| Error::internal("CRL entry serial", e))?;
        let extensions = if entry.reason == RevocationReason::Unspecified {
            None
        } else {
            Some(vec![extension(ID_CE_CRL_REASONS, &entry.reason.crl_reason())?])
        };
        revoked.push(RevokedCert {
            serial_number: serial,
            revocation_date: time(entry.revoked_at)?,
            crl_entry_extensions: extensions,
        });
    }

    let aki = AuthorityKeyIdentifier {
        key_identifier: Some(subject_key_identifier(issuer)?),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    let number = Uint::new(&number.to_be_bytes()).map_err(|e| Error::internal("cRLNumber", e))?;
    let tbs = TbsCertList {
        version: Version::V2,
        signature: signer.algorithm().identifier(),
        issuer: issuer.tbs_certificate.subject.clone(),
        this_update: time(this_update)?,
        next_update: Some(time(next_update)?),
        revoked_certificates: if revoked.is_empty() { None } else { Some(revoked) },
        crl_extensions: Some(vec![
            extension(ID_CE_AUTHORITY_KEY_IDENTIFIER, &aki)?,
            extension(ID_CE_CRL_NUMBER, &number)?,
        ]),
    };
    let tbs_der = tbs.to_der().map_err(|e| Error::internal("TBSCertList", e))?;
    let signature = signer.sign(&tbs_der).map_err(|e| Error::internal("signing the CRL", e))?;
    let issuer_spki =
        issuer.tbs_certificate.subject_public_key_info.to_der().map_err(|e| Error::internal("issuer public key", e))?;
    signer_lib::verify::verify_signature(&issuer_spki, tbs.signature.oid, &tbs_der, &signature)
        .map_err(|e| Error::internal("the CRL signature does not verify", e))?;
    Ok(CertificateList {
        signature_algorithm: tbs.signature.clone(),
        tbs_cert_list: tbs,
        signature: BitString::from_bytes(&signature).map_err(|e| Error::internal("CRL signature", e))?,
    })
}

/// The subjectKeyIdentifier of a CA certificate.
fn subject_key_identifier(cert: &Certificate) -> Result<OctetString, Error> {
    let ext = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == ID_CE_SUBJECT_KEY_IDENTIFIER)
        .ok_or_else(|| Error::Internal("the issuing CA certificate has no subjectKeyIdentifier".into()))?;
    OctetString::from_der(ext.extn_value.as_bytes()).map_err(|e| Error::internal("subjectKeyIdentifier", e))
}

/// A non-critical extension holding `value`.
fn extension(oid: const_oid::ObjectIdentifier, value: &impl Encode) -> Result<Extension, Error> {
    let der = value.to_der().map_err(|e| Error::internal("CRL extension", e))?;
    Ok(Extension {
        extn_id: oid,
        critical: false,
        extn_value: OctetString::new(der).map_err(|e| Error::internal("CRL extension", e))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc_5280_reason_names_in_any_case() {
        assert_eq!("keyCompromise".parse::<RevocationReason>().unwrap(), RevocationReason::KeyCompromise);
        assert_eq!("KEYCOMPROMISE".parse::<RevocationReason>().unwrap(), RevocationReason::KeyCompromise);
        assert_eq!("removeFromCRL".parse::<RevocationReason>().unwrap().code(), 8);
        assert!("key_compromise".parse::<RevocationReason>().is_err());
        for reason in RevocationReason::ALL {
            assert_eq!(RevocationReason::from_code(reason.code()), Some(reason));
        }
        assert_eq!(RevocationReason::from_code(7), None);
    }
}
