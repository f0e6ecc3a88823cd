//! Subject data: what the registration authority knows about a subject, checked and turned
//! into the subject name (and subjectAltName) of its certificate.
//!
//! | kind | name attributes (most significant first) |
//! |---|---|
//! | authority | C=CN, O=organisation, CN=common name |
//! | enterprise | C=CN, O=enterprise name, organizationIdentifier=`NTRCN-<USCC>`, CN=person's name |
//! | agency | C=CN, O=agency name, serialNumber=agency code, CN=agency name |
//! | platform | C=CN, CN=common name (+ subjectAltName dNSName) |
//! | officer | C=CN, title=role, CN=officer's name |
//!
//! The unified social credit code goes into organizationIdentifier in the form of ETSI EN
//! 319 412-1 §5.1.4 (`NTR` = national trade register, `CN` = China, `-`, the code), which
//! international software knows how to read, and — where the profile says so — also into the
//! GM/T 0015 extension 1.2.156.10260.4.4 for Chinese relying parties. countryName,
//! serialNumber and organizationIdentifier are PrintableString (ASCII by construction); the
//! other values are UTF8String, which carries Chinese names.

use std::fmt;
use std::str::FromStr;

use der::asn1::{Any, PrintableStringRef, Utf8StringRef};
use der::{Tag, Tagged};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

use crate::Error;
use crate::profile::{SubjectAttribute, SubjectKind};
use crate::uscc::validate_uscc;

/// The prefix of an organizationIdentifier holding a unified social credit code.
pub const USCC_IDENTIFIER_PREFIX: &str = "NTRCN-";

/// The country of every subject.
pub const COUNTRY: &str = "CN";

/// The upper bound of name values (X.520 ub-common-name, ub-organization-name, ub-title: 64).
pub const MAX_VALUE_CHARS: usize = 64;

/// What the RA knows about a subject, by kind (see the module documentation for where each
/// field goes).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectData {
    /// A CA, OCSP responder or TSA.
    Authority {
        /// The operator's name (organizationName).
        organization: String,
        /// The CA's or service's name (commonName).
        common_name: String,
    },
    /// A person acting for an enterprise (legal representative or operator).
    Enterprise {
        /// The enterprise's unified social credit code (统一社会信用代码), GB 32100-2015.
        uscc: String,
        /// The enterprise's registered name (organizationName).
        name: String,
        /// The legal representative's or operator's name (commonName).
        person_name: String,
    },
    /// A government agency or bank.
    Agency {
        /// The agency code (serialNumber): 2-32 characters A-Z, 0-9 and `-`.
        agency_code: String,
        /// The agency's name (organizationName and commonName).
        name: String,
    },
    /// A platform system (TLS server or client).
    Platform {
        /// The system's name (commonName); for a TLS server, one of `dns_names`.
        common_name: String,
        /// Host names for subjectAltName (lower case, no wildcards).
        dns_names: Vec<String>,
    },
    /// A CA administrator.
    Officer {
        /// The officer's name (commonName).
        name: String,
        /// The officer's role (title).
        role: OfficerRole,
    },
}

/// The three administrator roles kept apart by GB/T 22239 (三权分立, R6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OfficerRole {
    /// Security officer: registers and approves subjects, revokes (the RA).
    Security,
    /// Audit officer: reads and verifies the audit trail.
    Audit,
    /// System administrator: runs services, keys and backups.
    System,
}

impl OfficerRole {
    /// All roles.
    pub const ALL: [Self; 3] = [Self::Security, Self::Audit, Self::System];

    /// The value of the title attribute.
    #[must_use]
    pub fn title(self) -> &'static str {
        match self {
            Self::Security => "security-officer",
            Self::Audit => "audit-officer",
            Self::System => "system-administrator",
        }
    }
}

impl fmt::Display for OfficerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

impl FromStr for OfficerRole {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL.into_iter().find(|r| r.title() == s).ok_or_else(|| Error::InvalidSubject {
            field: "role",
            reason: format!("{s:?} is not security-officer, audit-officer or system-administrator"),
        })
    }
}

impl SubjectData {
    /// The kind of subject.
    #[must_use]
    pub fn kind(&self) -> SubjectKind {
        match self {
            Self::Authority { .. } => SubjectKind::Authority,
            Self::Enterprise { .. } => SubjectKind::Enterprise,
            Self::Agency { .. } => SubjectKind::Agency,
            Self::Platform { .. } => SubjectKind::Platform,
            Self::Officer { .. } => SubjectKind::Officer,
        }
    }

    /// Checks every field: names non-empty, at most 64 characters, no control characters;
    /// the USCC against GB 32100-2015; the agency code's characters; DNS names' syntax.
    ///
    /// # Errors
    /// [`Error::InvalidUscc`] or [`Error::InvalidSubject`] naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Self::Authority { organization, common_name } => {
                check_text("organization", organization)?;
                check_text("common_name", common_name)
            }
            Self::Enterprise { uscc, name, person_name } => {
                validate_uscc(uscc)?;
                check_text("name", name)?;
                check_text("person_name", person_name)
            }
            Self::Agency { agency_code, name } => {
                check_agency_code(agency_code)
                    .map_err(|reason| Error::InvalidSubject { field: "agency_code", reason })?;
                check_text("name", name)
            }
            Self::Platform { common_name, dns_names } => {
                check_text("common_name", common_name)?;
                for name in dns_names {
                    check_dns_name(name).map_err(|reason| Error::InvalidSubject { field: "dns_names", reason })?;
                }
                if let Some(dup) = dns_names.iter().enumerate().find(|(i, n)| dns_names[..*i].contains(n)) {
                    return Err(Error::InvalidSubject { field: "dns_names", reason: format!("{:?} twice", dup.1) });
                }
                Ok(())
            }
            Self::Officer { name, .. } => check_text("name", name),
        }
    }

    /// The attribute values of the subject name, most significant first.
    #[must_use]
    pub fn attributes(&self) -> Vec<(SubjectAttribute, String)> {
        use SubjectAttribute::{CommonName, Country, Organization, OrganizationIdentifier, SerialNumber, Title};
        let country = (Country, COUNTRY.to_owned());
        match self {
            Self::Authority { organization, common_name } => {
                vec![country, (Organization, organization.clone()), (CommonName, common_name.clone())]
            }
            Self::Enterprise { uscc, name, person_name } => vec![
                country,
                (Organization, name.clone()),
                (OrganizationIdentifier, format!("{USCC_IDENTIFIER_PREFIX}{uscc}")),
                (CommonName, person_name.clone()),
            ],
            Self::Agency { agency_code, name } => vec![
                country,
                (Organization, name.clone()),
                (SerialNumber, agency_code.clone()),
                (CommonName, name.clone()),
            ],
            Self::Platform { common_name, .. } => vec![country, (CommonName, common_name.clone())],
            Self::Officer { name, role } => vec![country, (Title, role.title().to_owned()), (CommonName, name.clone())],
        }
    }

    /// The subject name: one attribute per RDN, most significant first.
    ///
    /// # Errors
    /// [`Error::Der`] if a value cannot be encoded (a character PrintableString cannot hold).
    pub fn to_name(&self) -> Result<Name, Error> {
        let mut rdns = Vec::new();
        for (attribute, value) in self.attributes() {
            let atv = AttributeTypeAndValue { oid: attribute.oid(), value: encode_value(attribute, &value)? };
            let rdn = RelativeDistinguishedName::try_from(vec![atv]).map_err(|e| Error::der("subject name", e))?;
            rdns.push(rdn);
        }
        Ok(RdnSequence(rdns))
    }

    /// The DNS names for subjectAltName (platform subjects only; empty otherwise).
    #[must_use]
    pub fn dns_names(&self) -> &[String] {
        match self {
            Self::Platform { dns_names, .. } => dns_names,
            _ => &[],
        }
    }

    /// The unified social credit code (enterprise subjects only).
    #[must_use]
    pub fn uscc(&self) -> Option<&str> {
        match self {
            Self::Enterprise { uscc, .. } => Some(uscc),
            _ => None,
        }
    }
}

/// The string type each attribute is written with.
#[must_use]
pub fn string_tag(attribute: SubjectAttribute) -> Tag {
    match attribute {
        SubjectAttribute::Country | SubjectAttribute::SerialNumber | SubjectAttribute::OrganizationIdentifier => {
            Tag::PrintableString
        }
        SubjectAttribute::Organization | SubjectAttribute::Title | SubjectAttribute::CommonName => Tag::Utf8String,
    }
}

/// Encodes an attribute value with the attribute's string type.
fn encode_value(attribute: SubjectAttribute, value: &str) -> Result<Any, Error> {
    let any = match string_tag(attribute) {
        Tag::PrintableString => {
            Any::encode_from(&PrintableStringRef::new(value).map_err(|e| Error::der("PrintableString value", e))?)
        }
        _ => Any::encode_from(&Utf8StringRef::new(value).map_err(|e| Error::der("UTF8String value", e))?),
    };
    any.map_err(|e| Error::der("subject name", e))
}

/// The text of a DirectoryString-like attribute value (PrintableString, UTF8String, IA5String),
/// or `None` for other types.
#[must_use]
pub fn value_text(value: &Any) -> Option<String> {
    match value.tag() {
        Tag::PrintableString => value.decode_as::<PrintableStringRef<'_>>().ok().map(|s| s.as_str().to_owned()),
        Tag::Utf8String => value.decode_as::<Utf8StringRef<'_>>().ok().map(|s| s.as_str().to_owned()),
        Tag::Ia5String => value.decode_as::<der::asn1::Ia5StringRef<'_>>().ok().map(|s| s.as_str().to_owned()),
        _ => None,
    }
}

/// A name value: not blank, at most [`MAX_VALUE_CHARS`] characters, no control characters,
/// no leading or trailing spaces.
fn check_text(field: &'static str, value: &str) -> Result<(), Error> {
    let reason = if value.trim().is_empty() {
        "is empty".to_owned()
    } else if value.trim() != value {
        "has leading or trailing spaces".to_owned()
    } else if value.chars().count() > MAX_VALUE_CHARS {
        format!("has {} characters, at most {MAX_VALUE_CHARS} are allowed", value.chars().count())
    } else if value.chars().any(char::is_control) {
        "contains control characters".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::InvalidSubject { field, reason })
}

/// An agency code: 2-32 characters `A-Z`, `0-9` and `-`, not starting or ending with `-`.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn check_agency_code(code: &str) -> Result<(), String> {
    if !(2..=32).contains(&code.len()) {
        return Err(format!("{code:?} must be 2-32 characters long"));
    }
    if !code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-') {
        return Err(format!("{code:?} may hold only A-Z, 0-9 and '-'"));
    }
    if code.starts_with('-') || code.ends_with('-') {
        return Err(format!("{code:?} must not start or end with '-'"));
    }
    Ok(())
}

/// A host name for subjectAltName: lower-case LDH labels of 1-63 characters, not starting or
/// ending with `-`, at least two labels, at most 253 characters; no wildcard, no trailing dot.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} must be 1-253 characters long"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(format!("{name:?} is not a fully qualified host name"));
    }
    for label in labels {
        let ldh = label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if label.is_empty() || label.len() > 63 || !ldh || label.starts_with('-') || label.ends_with('-') {
            return Err(format!("{name:?}: label {label:?} is not a lower-case LDH label of 1-63 characters"));
        }
    }
    Ok(())
}

/// The unified social credit code inside an organizationIdentifier value, if it has the
/// `NTRCN-` form.
#[must_use]
pub fn uscc_of_identifier(value: &str) -> Option<&str> {
    value.strip_prefix(USCC_IDENTIFIER_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oid;

    fn enterprise(uscc: &str) -> SubjectData {
        SubjectData::Enterprise {
            uscc: uscc.into(), name: "福州某某进出口有限公司".into(), person_name: "张三".into()
        }
    }

    #[test]
    fn builds_an_enterprise_name_with_the_uscc_as_organization_identifier() {
        let name = enterprise("91350100M000100Y43").to_name().unwrap();
        let text = name.to_string();
        assert!(text.contains("2.5.4.97=#"), "{text}");
        assert_eq!(name.0.len(), 4);
        let oi = &name.0[2].0.as_slice()[0];
        assert_eq!(oi.oid, oid::AT_ORGANIZATION_IDENTIFIER);
        assert_eq!(value_text(&oi.value).as_deref(), Some("NTRCN-91350100M000100Y43"));
        let cn = &name.0[3].0.as_slice()[0];
        assert_eq!(cn.value.tag(), Tag::Utf8String);
        assert_eq!(value_text(&cn.value).as_deref(), Some("张三"));
    }

    #[test]
    fn refuses_an_enterprise_with_a_bad_uscc() {
        assert!(matches!(enterprise("91350100M000100Y44").validate(), Err(Error::InvalidUscc { .. })));
    }

    #[test]
    fn refuses_blank_long_or_control_character_names() {
        let officer = |name: &str| SubjectData::Officer { name: name.into(), role: OfficerRole::Audit };
        assert!(officer("李四").validate().is_ok());
        assert!(officer(" ").validate().is_err());
        assert!(officer(" 李四").validate().is_err());
        assert!(officer(&"李".repeat(65)).validate().is_err());
        assert!(officer("李\u{0}四").validate().is_err());
    }

    #[test]
    fn checks_agency_codes() {
        assert!(check_agency_code("CUSTOMS-2200").is_ok());
        assert!(check_agency_code("C").is_err());
        assert!(check_agency_code("customs").is_err());
        assert!(check_agency_code("-2200").is_err());
    }

    #[test]
    fn checks_dns_names() {
        assert!(check_dns_name("ocsp.eport.example").is_ok());
        assert!(check_dns_name("localhost").is_err());
        assert!(check_dns_name("*.eport.example").is_err());
        assert!(check_dns_name("Upper.example").is_err());
        assert!(check_dns_name("a..example").is_err());
        assert!(check_dns_name("-a.example").is_err());
        let platform = SubjectData::Platform {
            common_name: "a.example".into(),
            dns_names: vec!["a.example".into(), "a.example".into()],
        };
        assert!(platform.validate().is_err());
    }

    #[test]
    fn parses_officer_roles() {
        for role in OfficerRole::ALL {
            assert_eq!(role.title().parse::<OfficerRole>().unwrap(), role);
        }
        assert!("admin".parse::<OfficerRole>().is_err());
    }
}
