//! Enhanced Security Services signing-certificate attributes (RFC 2634 §5.4, RFC 5035 §3):
//! a signed attribute that names the signer's certificate by hash, so that the certificate
//! cannot be swapped for another one with the same key. CAdES (RFC 5126 §5.7.3) requires it.
//!
//! The `cms` crate has no ESS types; these model exactly the ASN.1 of the RFCs.

use der::asn1::OctetString;
use der::{Encode, Sequence};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_cert::ext::pkix::certpolicy::PolicyInformation;
use x509_cert::ext::pkix::name::{GeneralName, GeneralNames};
use x509_cert::serial_number::SerialNumber;

use crate::Error;
use crate::algorithm::DigestAlgorithm;

/// `SigningCertificateV2` ([RFC 5035 §3]), the value of id-aa-signingCertificateV2.
///
/// ```text
/// SigningCertificateV2 ::=  SEQUENCE {
///     certs        SEQUENCE OF ESSCertIDv2,
///     policies     SEQUENCE OF PolicyInformation OPTIONAL
/// }
/// ```
///
/// [RFC 5035 §3]: https://www.rfc-editor.org/rfc/rfc5035#section-3
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SigningCertificateV2 {
    /// The signer's certificate first (RFC 5035 §5.4), then optionally others.
    pub certs: Vec<EssCertIdV2>,
    /// Policies the certificates are to be used under (not used here).
    #[asn1(optional = "true")]
    pub policies: Option<Vec<PolicyInformation>>,
}

/// `ESSCertIDv2` ([RFC 5035 §4]).
///
/// ```text
/// ESSCertIDv2 ::=  SEQUENCE {
///     hashAlgorithm           AlgorithmIdentifier
///                             DEFAULT {algorithm id-sha256},
///     certHash                Hash,
///     issuerSerial            IssuerSerial OPTIONAL
/// }
/// Hash ::= OCTET STRING
/// ```
///
/// DER omits a DEFAULT value, so `None` means SHA-256; a producer that writes SHA-256
/// explicitly is accepted too.
///
/// [RFC 5035 §4]: https://www.rfc-editor.org/rfc/rfc5035#section-4
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct EssCertIdV2 {
    /// The hash algorithm; `None` is SHA-256.
    #[asn1(optional = "true")]
    pub hash_algorithm: Option<AlgorithmIdentifierOwned>,
    /// The hash of the whole DER certificate.
    pub cert_hash: OctetString,
    /// The certificate's issuer and serial number.
    #[asn1(optional = "true")]
    pub issuer_serial: Option<IssuerSerial>,
}

/// `SigningCertificate` ([RFC 2634 §5.4]), the value of id-aa-signingCertificate (SHA-1 only).
///
/// ```text
/// SigningCertificate ::=  SEQUENCE {
///     certs        SEQUENCE OF ESSCertID,
///     policies     SEQUENCE OF PolicyInformation OPTIONAL
/// }
/// ```
///
/// [RFC 2634 §5.4]: https://www.rfc-editor.org/rfc/rfc2634#section-5.4
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SigningCertificate {
    /// The signer's certificate first, then optionally others.
    pub certs: Vec<EssCertId>,
    /// Policies the certificates are to be used under (not used here).
    #[asn1(optional = "true")]
    pub policies: Option<Vec<PolicyInformation>>,
}

/// `ESSCertID` ([RFC 2634 §5.4.1]).
///
/// ```text
/// ESSCertID ::=  SEQUENCE {
///     certHash                 Hash,  -- SHA-1 hash of entire certificate
///     issuerSerial             IssuerSerial OPTIONAL
/// }
/// ```
///
/// [RFC 2634 §5.4.1]: https://www.rfc-editor.org/rfc/rfc2634#section-5.4.1
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct EssCertId {
    /// The SHA-1 hash of the whole DER certificate.
    pub cert_hash: OctetString,
    /// The certificate's issuer and serial number.
    #[asn1(optional = "true")]
    pub issuer_serial: Option<IssuerSerial>,
}

/// `IssuerSerial` ([RFC 5035 §4], [RFC 2634 §5.4.1]).
///
/// ```text
/// IssuerSerial ::= SEQUENCE {
///     issuer                   GeneralNames,
///     serialNumber             CertificateSerialNumber
/// }
/// ```
///
/// [RFC 5035 §4]: https://www.rfc-editor.org/rfc/rfc5035#section-4
/// [RFC 2634 §5.4.1]: https://www.rfc-editor.org/rfc/rfc2634#section-5.4.1
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct IssuerSerial {
    /// The issuer's name, as a `directoryName`.
    pub issuer: GeneralNames,
    /// The certificate's serial number.
    pub serial_number: SerialNumber,
}

impl IssuerSerial {
    /// The issuer and serial number of `certificate`.
    #[must_use]
    pub fn of(certificate: &Certificate) -> Self {
        Self {
            issuer: vec![GeneralName::DirectoryName(certificate.tbs_certificate.issuer.clone())],
            serial_number: certificate.tbs_certificate.serial_number.clone(),
        }
    }

    /// Whether this names `certificate`: the serial numbers are equal and one of the names is
    /// the certificate's issuer as a `directoryName`.
    #[must_use]
    pub fn names(&self, certificate: &Certificate) -> bool {
        let tbs = &certificate.tbs_certificate;
        self.serial_number == tbs.serial_number
            && self.issuer.iter().any(|n| matches!(n, GeneralName::DirectoryName(name) if *name == tbs.issuer))
    }
}

impl SigningCertificateV2 {
    /// The attribute value for a signer certificate: SHA-256 hash (hashAlgorithm omitted, as
    /// DER requires for the DEFAULT) and issuerSerial.
    ///
    /// # Errors
    /// [`Error::Malformed`] when the certificate cannot be encoded.
    pub fn for_certificate(certificate: &Certificate) -> Result<Self, Error> {
        let der = certificate.to_der().map_err(|e| Error::der("certificate", e))?;
        let hash = DigestAlgorithm::Sha256.digest(&der);
        Ok(Self {
            certs: vec![EssCertIdV2 {
                hash_algorithm: None,
                cert_hash: OctetString::new(hash).map_err(|e| Error::der("ESSCertIDv2", e))?,
                issuer_serial: Some(IssuerSerial::of(certificate)),
            }],
            policies: None,
        })
    }

    /// Checks that the first ESSCertIDv2 names `certificate` (DER `certificate_der`).
    ///
    /// # Errors
    /// [`Error::Cms`] when it names another certificate (the signer binding is broken) or the
    /// list is empty; [`Error::UnsupportedAlgorithm`] for a hash we do not know.
    pub fn check(&self, certificate: &Certificate, certificate_der: &[u8]) -> Result<(), Error> {
        let first =
            self.certs.first().ok_or_else(|| Error::Cms("signing-certificate-v2 lists no certificate".into()))?;
        let digest = match &first.hash_algorithm {
            None => DigestAlgorithm::Sha256,
            Some(alg) => DigestAlgorithm::from_oid(alg.oid)?,
        };
        check_id(
            "signing-certificate-v2",
            &digest.digest(certificate_der),
            first.cert_hash.as_bytes(),
            first.issuer_serial.as_ref(),
            certificate,
        )
    }
}

impl SigningCertificate {
    /// Checks that the first ESSCertID names `certificate` (DER `certificate_der`).
    ///
    /// # Errors
    /// [`Error::Cms`] when it names another certificate (the signer binding is broken) or the
    /// list is empty.
    pub fn check(&self, certificate: &Certificate, certificate_der: &[u8]) -> Result<(), Error> {
        use sha1::Digest as _;
        let first = self.certs.first().ok_or_else(|| Error::Cms("signing-certificate lists no certificate".into()))?;
        let hash = sha1::Sha1::digest(certificate_der);
        check_id("signing-certificate", &hash, first.cert_hash.as_bytes(), first.issuer_serial.as_ref(), certificate)
    }
}

fn check_id(
    attribute: &str,
    computed: &[u8],
    claimed: &[u8],
    issuer_serial: Option<&IssuerSerial>,
    certificate: &Certificate,
) -> Result<(), Error> {
    if computed != claimed {
        return Err(Error::Cms(format!(
            "the signer binding is broken: {attribute} names a certificate with hash {}, the signer certificate's is {}",
            hex::encode(claimed),
            hex::encode(computed)
        )));
    }
    if let Some(is) = issuer_serial
        && !is.names(certificate)
    {
        return Err(Error::Cms(format!(
            "the signer binding is broken: {attribute} names issuer and serial {}, not the signer certificate's",
            hex::encode(is.serial_number.as_bytes())
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use der::{Decode, Encode};

    use super::*;
    use crate::SignatureAlgorithm;
    use crate::key::software::SoftwareKey;

    fn cert(subject: &str) -> Certificate {
        let key = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
        crate::certificate::self_signed_ca(&key, subject, Duration::from_secs(3600)).unwrap()
    }

    #[test]
    fn omits_the_default_hash_algorithm_and_round_trips() {
        let c = cert("CN=Signer");
        let v2 = SigningCertificateV2::for_certificate(&c).unwrap();
        let der_bytes = v2.to_der().unwrap();
        // SEQUENCE { SEQUENCE { SEQUENCE { OCTET STRING (32) ...: no AlgorithmIdentifier first.
        let decoded = SigningCertificateV2::from_der(&der_bytes).unwrap();
        assert_eq!(decoded, v2);
        assert!(decoded.certs[0].hash_algorithm.is_none());
        assert_eq!(decoded.certs[0].cert_hash.as_bytes().len(), 32);
        decoded.check(&c, &c.to_der().unwrap()).unwrap();
    }

    #[test]
    fn detects_a_signing_certificate_naming_another_certificate() {
        let (a, b) = (cert("CN=A"), cert("CN=B"));
        let v2 = SigningCertificateV2::for_certificate(&a).unwrap();
        let err = v2.check(&b, &b.to_der().unwrap()).unwrap_err();
        assert!(err.to_string().contains("signer binding is broken"), "{err}");

        // Right hash, wrong issuerSerial.
        let mut wrong = v2.clone();
        wrong.certs[0].issuer_serial = Some(IssuerSerial::of(&b));
        assert!(wrong.check(&a, &a.to_der().unwrap()).is_err());

        let empty = SigningCertificateV2 { certs: vec![], policies: None };
        assert!(matches!(empty.check(&a, &a.to_der().unwrap()), Err(Error::Cms(_))));
    }

    #[test]
    fn checks_version_1_with_sha1() {
        use sha1::Digest as _;
        let a = cert("CN=A");
        let der_a = a.to_der().unwrap();
        let v1 = SigningCertificate {
            certs: vec![EssCertId {
                cert_hash: OctetString::new(sha1::Sha1::digest(&der_a).to_vec()).unwrap(),
                issuer_serial: Some(IssuerSerial::of(&a)),
            }],
            policies: None,
        };
        let v1 = SigningCertificate::from_der(&v1.to_der().unwrap()).unwrap();
        v1.check(&a, &der_a).unwrap();
        let b = cert("CN=B");
        assert!(v1.check(&b, &b.to_der().unwrap()).is_err());
    }
}
