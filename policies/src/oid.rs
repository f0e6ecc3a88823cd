//! The object identifiers the profiles and the linter name, in one place with their sources.
//!
//! Key and signature algorithm OIDs (id-ecPublicKey, the SM2 curve, SM3withSM2,
//! ecdsa-with-SHA256) live in [`signer_lib::algorithm`].

use const_oid::ObjectIdentifier;

// --- Extensions (RFC 5280 §4.2, RFC 6960 §4.2.2.2.1, GM/T 0015)

/// id-ce-subjectKeyIdentifier (RFC 5280 §4.2.1.2).
pub const SUBJECT_KEY_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
/// id-ce-keyUsage (RFC 5280 §4.2.1.3).
pub const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
/// id-ce-subjectAltName (RFC 5280 §4.2.1.6).
pub const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
/// id-ce-basicConstraints (RFC 5280 §4.2.1.9).
pub const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
/// id-ce-cRLDistributionPoints (RFC 5280 §4.2.1.13).
pub const CRL_DISTRIBUTION_POINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.31");
/// id-ce-certificatePolicies (RFC 5280 §4.2.1.4).
pub const CERTIFICATE_POLICIES: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.32");
/// anyPolicy (RFC 5280 §4.2.1.4).
pub const ANY_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.32.0");
/// id-ce-authorityKeyIdentifier (RFC 5280 §4.2.1.1).
pub const AUTHORITY_KEY_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
/// id-ce-extKeyUsage (RFC 5280 §4.2.1.12).
pub const EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
/// id-pe-authorityInfoAccess (RFC 5280 §4.2.2.1).
pub const AUTHORITY_INFO_ACCESS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
/// id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): the value is NULL.
pub const OCSP_NOCHECK: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.5");
/// The unified social credit code extension of GM/T 0015-2023 (as listed by xipki; to be
/// confirmed against the purchased standard, STANDARDS.md §F and §H). Its value is written
/// here as a PrintableString holding the 18-character code.
pub const GMT0015_USCC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10260.4.4");

// --- Access methods (RFC 5280 §4.2.2.1)

/// id-ad-ocsp.
pub const AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
/// id-ad-caIssuers.
pub const AD_CA_ISSUERS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");

// --- Key purposes (RFC 5280 §4.2.1.12, RFC 9336)

/// anyExtendedKeyUsage.
pub const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");
/// id-kp-serverAuth.
pub const KP_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
/// id-kp-clientAuth.
pub const KP_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");
/// id-kp-codeSigning.
pub const KP_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
/// id-kp-emailProtection.
pub const KP_EMAIL_PROTECTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4");
/// id-kp-timeStamping (RFC 3161 §2.3: the only key purpose of a TSA certificate, critical).
pub const KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
/// id-kp-OCSPSigning (RFC 6960 §4.2.2.2).
pub const KP_OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
/// id-kp-documentSigning (RFC 9336).
pub const KP_DOCUMENT_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.36");

// --- Name attributes (X.520, RFC 5280 Appendix A)

/// id-at-commonName.
pub const AT_COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
/// id-at-serialNumber (PrintableString).
pub const AT_SERIAL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.5");
/// id-at-countryName (PrintableString, two letters).
pub const AT_COUNTRY_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");
/// id-at-organizationName.
pub const AT_ORGANIZATION_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
/// id-at-title.
pub const AT_TITLE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.12");
/// id-at-organizationIdentifier (X.520 2012; semantics of ETSI EN 319 412-1 §5.1.4).
pub const AT_ORGANIZATION_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.97");

/// The name of a key purpose the profiles may use by name, or `None`.
#[must_use]
pub fn key_purpose_name(oid: ObjectIdentifier) -> Option<&'static str> {
    KEY_PURPOSES.iter().find(|(_, o)| *o == oid).map(|(name, _)| *name)
}

/// Key purposes by the name a profile may use for them.
pub const KEY_PURPOSES: [(&str, ObjectIdentifier); 8] = [
    ("server_auth", KP_SERVER_AUTH),
    ("client_auth", KP_CLIENT_AUTH),
    ("code_signing", KP_CODE_SIGNING),
    ("email_protection", KP_EMAIL_PROTECTION),
    ("time_stamping", KP_TIME_STAMPING),
    ("ocsp_signing", KP_OCSP_SIGNING),
    ("document_signing", KP_DOCUMENT_SIGNING),
    ("any", ANY_EXTENDED_KEY_USAGE),
];
