//! Certificate profiles: what a certificate of each kind contains, as TOML data.
//!
//! One file per profile under `policies/profiles/<id>.toml`; the same files are compiled into
//! the library ([`EMBEDDED`]) so a binary works without the directory. The schema is strict:
//! an unknown or misspelt key is an error, and [`Profile::from_toml`] also refuses profiles
//! that contradict themselves or RFC 5280 (a CA without keyCertSign, a TSA with a second key
//! purpose, an OCSP signer without id-pkix-ocsp-nocheck, ...).
//!
//! ```toml
//! id = "tls-server"
//! description = "TLS server certificates of the single-window platforms"
//! key_algorithms = ["p256", "sm2"]
//! max_validity_days = 398
//! dual_control = false
//! policy_oids = ["1.3.6.1.4.1.32473.1.4"]
//! authority_info_access = true
//! crl_distribution_point = true
//!
//! [key_usage]
//! critical = true
//! bits = ["digital_signature"]
//!
//! [extended_key_usage]
//! critical = false
//! purposes = ["server_auth"]
//!
//! [basic_constraints]
//! ca = false
//! critical = true
//!
//! [subject]
//! kind = "platform"
//! dns_names = "required"
//! attributes = [
//!     { attribute = "country", justification = "..." },
//!     { attribute = "common_name", justification = "..." },
//! ]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;

use const_oid::ObjectIdentifier;
use serde::{Deserialize, Deserializer};
use signer_lib::algorithm::KeyType;
use x509_cert::ext::pkix::KeyUsages;

use crate::Error;
use crate::oid;

/// The profiles shipped in `policies/profiles/`, compiled in: (id, TOML text).
pub const EMBEDDED: [(&str, &str); 10] = [
    ("root-ca", include_str!("../profiles/root-ca.toml")),
    ("issuing-ca", include_str!("../profiles/issuing-ca.toml")),
    ("enterprise-legal-rep", include_str!("../profiles/enterprise-legal-rep.toml")),
    ("enterprise-operator", include_str!("../profiles/enterprise-operator.toml")),
    ("agency", include_str!("../profiles/agency.toml")),
    ("tls-server", include_str!("../profiles/tls-server.toml")),
    ("tls-client", include_str!("../profiles/tls-client.toml")),
    ("officer", include_str!("../profiles/officer.toml")),
    ("ocsp-signer", include_str!("../profiles/ocsp-signer.toml")),
    ("tsa", include_str!("../profiles/tsa.toml")),
];

/// A certificate profile: everything the CA puts into a certificate of one kind, and what the
/// linter holds it to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The profile's id (`tls-server`), equal to the file name without `.toml`. Lower-case
    /// letters, digits and `-`. Required.
    pub id: String,
    /// One line for humans: who gets certificates of this profile and for what. Required.
    pub description: String,
    /// The subject key algorithms the profile accepts (`"p256"`, `"sm2"`). Required, at
    /// least one.
    pub key_algorithms: Vec<KeyAlgorithm>,
    /// The longest validity, in days, counted as RFC 5280 does (notBefore and notAfter both
    /// inclusive): notAfter − notBefore + 1 s ≤ days × 86 400 s. Required.
    pub max_validity_days: NonZeroU32,
    /// Whether issuing needs the approval of two different security officers (RA dual
    /// control); enforced by the CA's registration flow, recorded here per profile. Required.
    pub dual_control: bool,
    /// Whether certificates of this profile are self-signed (the root): no issuer
    /// certificate, no authorityKeyIdentifier. Default: `false`.
    #[serde(default)]
    pub self_signed: bool,
    /// The certificatePolicies OIDs (dotted), in order; empty for no certificatePolicies
    /// extension. Required (write `[]` for none).
    #[serde(deserialize_with = "oids")]
    pub policy_oids: Vec<ObjectIdentifier>,
    /// Whether certificates carry authorityInfoAccess (an OCSP URL, and a CA-issuers URL
    /// when the request gives one). Required.
    pub authority_info_access: bool,
    /// Whether certificates carry a cRLDistributionPoints extension with the CRL URL.
    /// Required.
    pub crl_distribution_point: bool,
    /// Whether certificates carry id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1); required for,
    /// and allowed only with, the id-kp-OCSPSigning key purpose. Default: `false`.
    #[serde(default)]
    pub ocsp_nocheck: bool,
    /// The keyUsage extension (always present).
    pub key_usage: KeyUsageRule,
    /// The extendedKeyUsage extension; leave the table out for none (CAs). Default: none.
    #[serde(default)]
    pub extended_key_usage: Option<ExtendedKeyUsageRule>,
    /// The basicConstraints extension (always present).
    pub basic_constraints: BasicConstraintsRule,
    /// What the subject name holds, and why (R22: every personal-data field is justified).
    pub subject: SubjectRule,
}

/// A subject key algorithm a profile may accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 (id-ecPublicKey with secp256r1), signing with ecdsa-with-SHA256.
    P256,
    /// SM2 (id-ecPublicKey with the SM2 curve 1.2.156.10197.1.301), signing with SM3withSM2.
    Sm2,
}

impl KeyAlgorithm {
    /// The key algorithm of a signer-lib key type, if a profile can name it.
    #[must_use]
    pub fn of_key_type(key_type: KeyType) -> Option<Self> {
        match key_type {
            KeyType::P256 => Some(Self::P256),
            KeyType::Sm2 => Some(Self::Sm2),
            _ => None,
        }
    }

    /// The name used in profiles.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "p256",
            Self::Sm2 => "sm2",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The keyUsage extension of a profile (RFC 5280 §4.2.1.3).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUsageRule {
    /// Whether the extension is marked critical. Required (RFC 5280 says it SHOULD be).
    pub critical: bool,
    /// The bits that are set, exactly; no others may be. Required, at least one.
    pub bits: Vec<KeyUsageBit>,
}

impl KeyUsageRule {
    /// The bits as the flag set x509-cert encodes.
    #[must_use]
    pub fn flags(&self) -> der::flagset::FlagSet<KeyUsages> {
        self.bits.iter().fold(der::flagset::FlagSet::default(), |acc, bit| acc | bit.flag())
    }
}

/// One keyUsage bit (RFC 5280 §4.2.1.3), named in snake case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyUsageBit {
    /// digitalSignature (0).
    DigitalSignature,
    /// nonRepudiation (1), also called contentCommitment.
    #[serde(alias = "content_commitment")]
    NonRepudiation,
    /// keyEncipherment (2).
    KeyEncipherment,
    /// dataEncipherment (3).
    DataEncipherment,
    /// keyAgreement (4).
    KeyAgreement,
    /// keyCertSign (5).
    KeyCertSign,
    /// cRLSign (6).
    CrlSign,
    /// encipherOnly (7).
    EncipherOnly,
    /// decipherOnly (8).
    DecipherOnly,
}

impl KeyUsageBit {
    /// The flag of this bit.
    #[must_use]
    pub fn flag(self) -> KeyUsages {
        match self {
            Self::DigitalSignature => KeyUsages::DigitalSignature,
            Self::NonRepudiation => KeyUsages::NonRepudiation,
            Self::KeyEncipherment => KeyUsages::KeyEncipherment,
            Self::DataEncipherment => KeyUsages::DataEncipherment,
            Self::KeyAgreement => KeyUsages::KeyAgreement,
            Self::KeyCertSign => KeyUsages::KeyCertSign,
            Self::CrlSign => KeyUsages::CRLSign,
            Self::EncipherOnly => KeyUsages::EncipherOnly,
            Self::DecipherOnly => KeyUsages::DecipherOnly,
        }
    }
}

/// The extendedKeyUsage extension of a profile (RFC 5280 §4.2.1.12).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendedKeyUsageRule {
    /// Whether the extension is marked critical. Required.
    pub critical: bool,
    /// The key purposes, exactly and in order: a name (`server_auth`, `client_auth`,
    /// `code_signing`, `email_protection`, `time_stamping`, `ocsp_signing`,
    /// `document_signing`, `any`) or a dotted OID. Required, at least one.
    #[serde(deserialize_with = "key_purposes")]
    pub purposes: Vec<ObjectIdentifier>,
}

/// The basicConstraints extension of a profile (RFC 5280 §4.2.1.9).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicConstraintsRule {
    /// cA: whether the subject is a CA. Required.
    pub ca: bool,
    /// pathLenConstraint, CAs only: how many intermediate CAs may follow. Default: absent
    /// (no limit).
    #[serde(default)]
    pub path_len: Option<u8>,
    /// Whether the extension is marked critical (RFC 5280: MUST for CAs). Required.
    pub critical: bool,
}

/// What goes into the subject of a certificate of a profile.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectRule {
    /// The kind of subject data the CA takes for this profile (see
    /// [`crate::SubjectData`]). Required.
    pub kind: SubjectKind,
    /// The name attributes, exactly those the subject kind writes, each with why it is
    /// needed (GB/T 22239 8.1.4.11, R22). Required.
    pub attributes: Vec<AttributeRule>,
    /// Enterprise subjects only: also write the unified social credit code into the
    /// GM/T 0015 extension 1.2.156.10260.4.4 (non-critical) for Chinese relying parties.
    /// Default: `false`.
    #[serde(default)]
    pub uscc_extension: bool,
    /// Whether subjectAltName dNSName entries are required, optional or forbidden
    /// (`"required"`, `"optional"`, `"forbidden"`); only platform subjects may have them.
    /// Default: `"forbidden"`.
    #[serde(default)]
    pub dns_names: Presence,
}

/// Whether something must, may or must not be present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    /// Must be present.
    Required,
    /// May be present.
    Optional,
    /// Must not be present.
    #[default]
    Forbidden,
}

/// One subject name attribute and the reason it is in the certificate.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeRule {
    /// The attribute.
    pub attribute: SubjectAttribute,
    /// Why relying parties need it (R22: collect only necessary personal information).
    /// Required, not empty.
    pub justification: String,
}

/// A name attribute the profiles use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectAttribute {
    /// countryName (2.5.4.6), PrintableString, always `CN`.
    Country,
    /// organizationName (2.5.4.10), UTF8String.
    Organization,
    /// organizationIdentifier (2.5.4.97): `NTRCN-` + the unified social credit code, in the
    /// form of ETSI EN 319 412-1 §5.1.4 (NTR = national trade register, CN = China).
    OrganizationIdentifier,
    /// serialNumber (2.5.4.5), PrintableString: the agency code.
    SerialNumber,
    /// title (2.5.4.12), UTF8String: the officer role.
    Title,
    /// commonName (2.5.4.3), UTF8String.
    CommonName,
}

impl SubjectAttribute {
    /// The attribute type OID.
    #[must_use]
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Country => oid::AT_COUNTRY_NAME,
            Self::Organization => oid::AT_ORGANIZATION_NAME,
            Self::OrganizationIdentifier => oid::AT_ORGANIZATION_IDENTIFIER,
            Self::SerialNumber => oid::AT_SERIAL_NUMBER,
            Self::Title => oid::AT_TITLE,
            Self::CommonName => oid::AT_COMMON_NAME,
        }
    }

    /// The attribute with this OID, if a profile can name it.
    #[must_use]
    pub fn of_oid(oid: ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.oid() == oid)
    }

    /// All attributes, in the order they appear in a name (most significant first).
    pub const ALL: [Self; 6] = [
        Self::Country,
        Self::Organization,
        Self::OrganizationIdentifier,
        Self::SerialNumber,
        Self::Title,
        Self::CommonName,
    ];
}

impl fmt::Display for SubjectAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Country => "countryName",
            Self::Organization => "organizationName",
            Self::OrganizationIdentifier => "organizationIdentifier",
            Self::SerialNumber => "serialNumber",
            Self::Title => "title",
            Self::CommonName => "commonName",
        })
    }
}

/// The kind of subject a profile certifies; each kind has its own [`crate::SubjectData`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A CA or a CA service (OCSP responder, TSA): organisation and common name.
    Authority,
    /// A person acting for an enterprise: unified social credit code, enterprise name,
    /// person's name.
    Enterprise,
    /// A government agency or bank: agency code and name.
    Agency,
    /// A platform system (TLS server or client): common name and DNS names.
    Platform,
    /// A CA administrator (security, audit or system officer): name and role.
    Officer,
}

impl SubjectKind {
    /// The name used in profiles.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Authority => "authority",
            Self::Enterprise => "enterprise",
            Self::Agency => "agency",
            Self::Platform => "platform",
            Self::Officer => "officer",
        }
    }

    /// The name attributes a subject of this kind gets, most significant first.
    #[must_use]
    pub fn attributes(self) -> &'static [SubjectAttribute] {
        use SubjectAttribute::{CommonName, Country, Organization, OrganizationIdentifier, SerialNumber, Title};
        match self {
            Self::Authority => &[Country, Organization, CommonName],
            Self::Enterprise => &[Country, Organization, OrganizationIdentifier, CommonName],
            Self::Agency => &[Country, Organization, SerialNumber, CommonName],
            Self::Platform => &[Country, CommonName],
            Self::Officer => &[Country, Title, CommonName],
        }
    }
}

impl fmt::Display for SubjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of profiles by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profiles {
    by_id: BTreeMap<String, Profile>,
}

impl Profiles {
    /// The profiles compiled into the library ([`EMBEDDED`]).
    ///
    /// # Errors
    /// As [`Profile::from_toml`]; cannot happen for the shipped files, which the tests load.
    pub fn embedded() -> Result<Self, Error> {
        let mut set = Self::default();
        for (id, text) in EMBEDDED {
            let profile = Profile::from_toml(text, &format!("<embedded:{id}>"))?;
            if profile.id != id {
                return Err(Error::ProfileInvalid { id: profile.id, reason: format!("embedded under id {id:?}") });
            }
            set.insert(profile)?;
        }
        Ok(set)
    }

    /// Every `*.toml` file in `dir`, each named after its profile's id.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory or a file cannot be read; as [`Profile::load`] for
    /// each file; [`Error::DuplicateProfile`] cannot happen (ids are file names) but is
    /// checked.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            if path.extension().is_some_and(|ext| ext == "toml") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut set = Self::default();
        for path in paths {
            set.insert(Profile::load(&path)?)?;
        }
        Ok(set)
    }

    /// Adds a profile.
    ///
    /// # Errors
    /// [`Error::DuplicateProfile`] when a profile with its id is already in the set.
    pub fn insert(&mut self, profile: Profile) -> Result<(), Error> {
        if self.by_id.contains_key(&profile.id) {
            return Err(Error::DuplicateProfile(profile.id));
        }
        self.by_id.insert(profile.id.clone(), profile);
        Ok(())
    }

    /// The profile with this id.
    ///
    /// # Errors
    /// [`Error::UnknownProfile`].
    pub fn get(&self, id: &str) -> Result<&Profile, Error> {
        self.by_id.get(id).ok_or_else(|| Error::UnknownProfile(id.to_owned()))
    }

    /// The profiles, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.by_id.values()
    }

    /// The ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(String::as_str)
    }

    /// How many profiles there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

impl Profile {
    /// Parses and checks a profile. `origin` names the source in errors (a path, or
    /// `<embedded:id>`).
    ///
    /// # Errors
    /// [`Error::ProfileParse`] for TOML that does not fit the schema (including unknown
    /// keys); [`Error::ProfileInvalid`] for a profile that contradicts itself.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, Error> {
        let profile: Self = toml::from_str(text)
            .map_err(|e| Error::ProfileParse { origin: origin.to_owned(), reason: e.to_string() })?;
        profile.check()?;
        Ok(profile)
    }

    /// Reads one profile file, whose name must be `<id>.toml`.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read; as [`Self::from_toml`]; [`Error::ProfileInvalid`]
    /// when the file name is not the id.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let profile = Self::from_toml(&text, &path.display().to_string())?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if stem != profile.id {
            return Err(Error::ProfileInvalid {
                id: profile.id,
                reason: format!("file {} must be named after the id", path.display()),
            });
        }
        Ok(profile)
    }

    /// All profiles in a directory; see [`Profiles::load_dir`].
    ///
    /// # Errors
    /// As [`Profiles::load_dir`].
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Profiles, Error> {
        Profiles::load_dir(dir)
    }

    /// The compiled-in profile with this id.
    ///
    /// # Errors
    /// [`Error::UnknownProfile`] for an id that is not shipped.
    pub fn by_id(id: &str) -> Result<Self, Error> {
        let (_, text) = EMBEDDED.iter().find(|(i, _)| *i == id).ok_or_else(|| Error::UnknownProfile(id.to_owned()))?;
        Self::from_toml(text, &format!("<embedded:{id}>"))
    }

    /// Whether certificates of this profile are CA certificates.
    #[must_use]
    pub fn is_ca(&self) -> bool {
        self.basic_constraints.ca
    }

    /// Whether the profile allows subject keys of this algorithm.
    #[must_use]
    pub fn allows(&self, algorithm: KeyAlgorithm) -> bool {
        self.key_algorithms.contains(&algorithm)
    }

    /// The key purposes of the extendedKeyUsage extension (empty when there is none).
    #[must_use]
    pub fn key_purposes(&self) -> &[ObjectIdentifier] {
        self.extended_key_usage.as_ref().map_or(&[], |e| e.purposes.as_slice())
    }

    /// Refuses a profile that contradicts itself or RFC 5280 / RFC 3161 / RFC 6960.
    fn check(&self) -> Result<(), Error> {
        let invalid = |reason: String| Error::ProfileInvalid { id: self.id.clone(), reason };
        if self.id.is_empty() || !self.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(invalid("id must be lower-case letters, digits and '-'".into()));
        }
        if self.description.trim().is_empty() {
            return Err(invalid("description is empty".into()));
        }
        no_duplicates(&self.key_algorithms, "key_algorithms").map_err(invalid)?;
        no_duplicates(&self.key_usage.bits, "key_usage.bits").map_err(invalid)?;
        no_duplicates(&self.policy_oids, "policy_oids").map_err(invalid)?;
        if self.key_usage.bits.is_empty() {
            return Err(invalid("key_usage.bits is empty".into()));
        }
        let ku = self.key_usage.flags();
        let bc = &self.basic_constraints;
        if bc.ca {
            if !(ku.contains(KeyUsages::KeyCertSign) && ku.contains(KeyUsages::CRLSign) && self.key_usage.critical) {
                return Err(invalid("a CA needs a critical keyUsage with key_cert_sign and crl_sign".into()));
            }
            if !bc.critical {
                return Err(invalid("a CA's basicConstraints must be critical (RFC 5280 §4.2.1.9)".into()));
            }
        } else {
            if ku.contains(KeyUsages::KeyCertSign) || ku.contains(KeyUsages::CRLSign) {
                return Err(invalid("an end entity must not have key_cert_sign or crl_sign".into()));
            }
            if bc.path_len.is_some() {
                return Err(invalid("path_len is for CAs only".into()));
            }
        }
        if self.self_signed && (!bc.ca || self.authority_info_access || self.crl_distribution_point) {
            return Err(invalid("a self-signed profile must be a CA without AIA and CRL distribution point".into()));
        }
        if let Some(eku) = &self.extended_key_usage {
            no_duplicates(&eku.purposes, "extended_key_usage.purposes").map_err(invalid)?;
            if eku.purposes.is_empty() {
                return Err(invalid("extended_key_usage.purposes is empty (leave the table out instead)".into()));
            }
            if eku.purposes.contains(&oid::KP_TIME_STAMPING) && (eku.purposes.len() != 1 || !eku.critical) {
                return Err(invalid("time_stamping must be the only key purpose, critical (RFC 3161 §2.3)".into()));
            }
            if eku.purposes.contains(&oid::ANY_EXTENDED_KEY_USAGE) && eku.critical {
                return Err(invalid("an extendedKeyUsage with `any` must not be critical (RFC 5280 §4.2.1.12)".into()));
            }
        }
        if self.ocsp_nocheck != self.key_purposes().contains(&oid::KP_OCSP_SIGNING) {
            return Err(invalid("ocsp_nocheck goes with, and only with, the ocsp_signing key purpose".into()));
        }
        self.check_subject().map_err(invalid)
    }

    fn check_subject(&self) -> Result<(), String> {
        let subject = &self.subject;
        let listed: Vec<SubjectAttribute> = subject.attributes.iter().map(|a| a.attribute).collect();
        no_duplicates(&listed, "subject.attributes")?;
        if let Some(a) = subject.attributes.iter().find(|a| a.justification.trim().is_empty()) {
            return Err(format!("subject attribute {} has no justification", a.attribute));
        }
        let written: BTreeSet<_> = subject.kind.attributes().iter().copied().collect();
        if listed.iter().copied().collect::<BTreeSet<_>>() != written {
            let names: Vec<String> = subject.kind.attributes().iter().map(ToString::to_string).collect();
            return Err(format!(
                "subject.attributes must list exactly what a {} subject gets: {}",
                subject.kind,
                names.join(", ")
            ));
        }
        if subject.uscc_extension && subject.kind != SubjectKind::Enterprise {
            return Err("uscc_extension is for enterprise subjects only".into());
        }
        if subject.dns_names != Presence::Forbidden && subject.kind != SubjectKind::Platform {
            return Err("dns_names is for platform subjects only".into());
        }
        Ok(())
    }
}

/// `Err` naming the first value that appears twice.
fn no_duplicates<T: PartialEq + fmt::Debug>(values: &[T], what: &str) -> Result<(), String> {
    for (i, v) in values.iter().enumerate() {
        if values.iter().skip(i + 1).any(|w| w == v) {
            return Err(format!("{what} lists {v:?} twice"));
        }
    }
    Ok(())
}

/// Deserialises a list of dotted OIDs.
fn oids<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ObjectIdentifier>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|t| ObjectIdentifier::new(t).map_err(|e| serde::de::Error::custom(format!("{t:?} is not an OID: {e}"))))
        .collect()
}

/// Deserialises a list of key purposes, each a name from [`oid::KEY_PURPOSES`] or a dotted
/// OID.
fn key_purposes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ObjectIdentifier>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|t| {
            if let Some((_, oid)) = oid::KEY_PURPOSES.iter().find(|(name, _)| name == t) {
                return Ok(*oid);
            }
            if t.starts_with(|c: char| c.is_ascii_digit()) {
                return ObjectIdentifier::new(t)
                    .map_err(|e| serde::de::Error::custom(format!("{t:?} is not an OID: {e}")));
            }
            let names: Vec<&str> = oid::KEY_PURPOSES.iter().map(|(n, _)| *n).collect();
            Err(serde::de::Error::custom(format!(
                "unknown key purpose {t:?} (expected a dotted OID or one of {})",
                names.join(", ")
            )))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_profiles_load_and_match_their_ids() {
        let set = Profiles::embedded().unwrap();
        let ids: Vec<&str> = set.ids().collect();
        let mut expected: Vec<&str> = EMBEDDED.iter().map(|(id, _)| *id).collect();
        expected.sort_unstable();
        assert_eq!(ids, expected);
        assert_eq!(Profile::by_id("tsa").unwrap().id, "tsa");
        assert!(matches!(Profile::by_id("nope"), Err(Error::UnknownProfile(_))));
    }

    #[test]
    fn dual_control_is_set_for_agencies_and_not_for_enterprises() {
        assert!(Profile::by_id("agency").unwrap().dual_control);
        assert!(!Profile::by_id("enterprise-legal-rep").unwrap().dual_control);
        assert!(!Profile::by_id("enterprise-operator").unwrap().dual_control);
    }

    fn tweak(id: &str, from: &str, to: &str) -> Result<Profile, Error> {
        let text = EMBEDDED.iter().find(|(i, _)| *i == id).map(|(_, t)| *t).unwrap();
        assert!(text.contains(from), "{id} has no {from:?}");
        Profile::from_toml(&text.replacen(from, to, 1), "<test>")
    }

    #[test]
    fn refuses_a_ca_profile_without_key_cert_sign() {
        let err = tweak("issuing-ca", "bits = [\"key_cert_sign\", \"crl_sign\"]", "bits = [\"crl_sign\"]").unwrap_err();
        assert!(matches!(err, Error::ProfileInvalid { .. }), "{err}");
    }

    #[test]
    fn refuses_a_tsa_with_a_second_key_purpose() {
        let err = tweak("tsa", "purposes = [\"time_stamping\"]", "purposes = [\"time_stamping\", \"client_auth\"]")
            .unwrap_err();
        assert!(err.to_string().contains("RFC 3161"), "{err}");
    }

    #[test]
    fn refuses_an_ocsp_signer_without_nocheck() {
        let err = tweak("ocsp-signer", "ocsp_nocheck = true", "ocsp_nocheck = false").unwrap_err();
        assert!(err.to_string().contains("ocsp_nocheck"), "{err}");
    }

    #[test]
    fn refuses_a_subject_attribute_list_that_does_not_match_the_kind() {
        let err = tweak("officer", "attribute = \"title\"", "attribute = \"organization\"").unwrap_err();
        assert!(err.to_string().contains("exactly"), "{err}");
    }

    #[test]
    fn refuses_an_unknown_key_purpose_name() {
        let err = tweak("tls-server", "\"server_auth\"", "\"server_authentication\"").unwrap_err();
        assert!(matches!(err, Error::ProfileParse { .. }), "{err}");
    }

    #[test]
    fn accepts_a_key_purpose_as_a_dotted_oid() {
        let p = tweak("tls-server", "\"server_auth\"", "\"1.3.6.1.5.5.7.3.1\"").unwrap();
        assert_eq!(p.key_purposes(), [oid::KP_SERVER_AUTH]);
    }
}
