//! The audit record: what happened, who did it, to what, with what outcome — and its canonical
//! DER encoding, whose hash is the record's Merkle leaf forever.
//!
//! ```asn1
//! EportAuditRecord-2026 DEFINITIONS IMPLICIT TAGS ::= BEGIN
//!
//! AuditRecord ::= SEQUENCE {
//!     version    INTEGER { v1(1) },        -- decoders reject any other value
//!     time       INTEGER,                  -- milliseconds since 1970-01-01T00:00:00Z (UTC, POSIX)
//!     actor      Actor,
//!     role       [0] Role OPTIONAL,
//!     event      EventType,
//!     object     [1] UTF8String OPTIONAL,  -- certificate serial, request hash, message digest, ...
//!     outcome    Outcome,
//!     source     [2] UTF8String OPTIONAL,  -- source address
//!     requestId  [3] UTF8String OPTIONAL }
//!
//! Actor ::= CHOICE {
//!     account      UTF8String,             -- an account name
//!     certificate  CertificateActor }
//!
//! CertificateActor ::= SEQUENCE {
//!     subject  UTF8String,                 -- RFC 4514 string of the certificate subject
//!     serial   OCTET STRING }              -- the serialNumber INTEGER's content octets
//!
//! Role ::= ENUMERATED {
//!     systemAdministrator(1), securityOfficer(2), auditOfficer(3), subscriber(4),
//!     platform(5), system(6) }
//!
//! EventType ::= ENUMERATED {              -- see [`EventType`]; numbers are never reused
//!     loginOk(1), loginFailed(2), lockout(3), logout(4), sessionExpired(5),
//!     roleChange(10), accountCreated(11), accountDisabled(12), credentialChanged(13),
//!     registration(20), approval(21), rejection(22), enrolment(23), dataRead(24),
//!     issue(30), revoke(31), suspend(32), resume(33), lintFailed(34),
//!     keyGenerate(40), keyUse(41), keyRecover(42), keyDestroy(43),
//!     crlIssued(50), ocspSignerChanged(51), timestampIssued(52),
//!     configurationChanged(60), timeSourceFailure(61), hsmFailure(62), serviceStart(63),
//!     serviceStop(64),
//!     auditInit(70), auditExport(71), treeHeadSigned(72), purge(73), auditVerify(74),
//!     auditWriterStart(75),
//!     messageSigned(80), messageVerified(81), receiptIssued(82) }
//!
//! Outcome ::= CHOICE {
//!     success  NULL,
//!     failure  UTF8String }                -- the reason
//!
//! END
//! ```
//!
//! The encoding is DER (X.690 §10), so it is unique: [`AuditRecord::from_der`] rejects anything
//! that does not re-encode to the same bytes, and any version other than 1. Event and role numbers
//! are assigned once and never renumbered or reused; new ones are added with new numbers (an old
//! decoder then rejects a record carrying them, but the leaf hash is over the stored bytes and is
//! unaffected).

use std::fmt;
use std::str::FromStr;

use der::asn1::{Null, OctetString};
use der::{Decode, Encode};

use crate::Error;

/// The only record version this code writes and reads.
pub const RECORD_VERSION: u32 = 1;

/// What an actor was acting as (三权分立: the three administrator roles are distinct).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, der::Enumerated)]
#[repr(u32)]
#[non_exhaustive]
pub enum Role {
    /// System administrator: runs services, keys, backups; cannot touch audit records or issue.
    SystemAdministrator = 1,
    /// Security officer (RA): approves registrations, revokes certificates.
    SecurityOfficer = 2,
    /// Audit officer: reads, verifies and exports the audit trail.
    AuditOfficer = 3,
    /// A certificate subscriber (enterprise operator, legal representative).
    Subscriber = 4,
    /// A relying platform (customs, inspection, tax, banks).
    Platform = 5,
    /// The software itself (schedulers, automatic jobs).
    System = 6,
}

impl Role {
    /// Every role, in number order.
    pub const ALL: [Self; 6] = [
        Self::SystemAdministrator,
        Self::SecurityOfficer,
        Self::AuditOfficer,
        Self::Subscriber,
        Self::Platform,
        Self::System,
    ];

    /// The stable snake_case name used on the command line and in JSON.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::SystemAdministrator => "system_administrator",
            Self::SecurityOfficer => "security_officer",
            Self::AuditOfficer => "audit_officer",
            Self::Subscriber => "subscriber",
            Self::Platform => "platform",
            Self::System => "system",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL.into_iter().find(|r| r.name() == s).ok_or_else(|| Error::Audit(format!("unknown role {s:?}")))
    }
}

/// Declares the closed event catalogue once: variant, ASN.1 number, stable name, description.
macro_rules! event_catalogue {
    ($($(#[$doc:meta])* $variant:ident = $number:tt, $name:literal;)+) => {
        /// The kind of event a record reports: a closed catalogue (GB/T 22239 8.1.4.3 a; R9).
        ///
        /// Each event has a fixed ASN.1 number (the `EventType` ENUMERATED) and a fixed
        /// snake_case name (command line, JSON, the store's `event` column). Neither changes.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, der::Enumerated)]
        #[repr(u32)]
        #[non_exhaustive]
        pub enum EventType {
            $($(#[$doc])* $variant = $number,)+
        }

        impl EventType {
            /// Every event type, in number order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The stable snake_case name.
            #[must_use]
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }
        }
    };
}

event_catalogue! {
    /// A successful login.
    LoginOk = 1, "login_ok";
    /// A failed login (wrong password, PIN, challenge response or certificate).
    LoginFailed = 2, "login_failed";
    /// An account locked after too many failures.
    Lockout = 3, "lockout";
    /// A logout.
    Logout = 4, "logout";
    /// A session ended by the idle timeout.
    SessionExpired = 5, "session_expired";
    /// A role granted to or taken from an account.
    RoleChange = 10, "role_change";
    /// An account created.
    AccountCreated = 11, "account_created";
    /// An account disabled (inactivity, departure).
    AccountDisabled = 12, "account_disabled";
    /// A password or PIN changed or reset.
    CredentialChanged = 13, "credential_changed";
    /// An enterprise or agency registered by a security officer.
    Registration = 20, "registration";
    /// A registration or request approved (dual control).
    Approval = 21, "approval";
    /// A registration or certificate request rejected.
    Rejection = 22, "rejection";
    /// A certificate request received with its enrolment code.
    Enrolment = 23, "enrolment";
    /// Certificates, registrations or other records read through a read-only interface (who
    /// looked at what, as level 3 asks for access to personal data).
    DataRead = 24, "data_read";
    /// A certificate issued.
    Issue = 30, "issue";
    /// A certificate revoked.
    Revoke = 31, "revoke";
    /// A certificate suspended (certificateHold).
    Suspend = 32, "suspend";
    /// A suspended certificate resumed.
    Resume = 33, "resume";
    /// A certificate failed pre-issuance linting.
    LintFailed = 34, "lint_failed";
    /// A key generated (CA, OCSP, TSA or audit key).
    KeyGenerate = 40, "key_generate";
    /// A CA or service key used outside routine issuance (e.g. a ceremony signature).
    KeyUse = 41, "key_use";
    /// An escrowed encryption key recovered.
    KeyRecover = 42, "key_recover";
    /// A key destroyed.
    KeyDestroy = 43, "key_destroy";
    /// A CRL issued.
    CrlIssued = 50, "crl_issued";
    /// The OCSP signing certificate or key changed.
    OcspSignerChanged = 51, "ocsp_signer_changed";
    /// A timestamp token issued.
    TimestampIssued = 52, "timestamp_issued";
    /// Configuration or policy changed.
    ConfigurationChanged = 60, "configuration_changed";
    /// The time source failed or jumped.
    TimeSourceFailure = 61, "time_source_failure";
    /// An HSM or token failed.
    HsmFailure = 62, "hsm_failure";
    /// A service started.
    ServiceStart = 63, "service_start";
    /// A service stopped.
    ServiceStop = 64, "service_stop";
    /// An audit log created.
    AuditInit = 70, "audit_init";
    /// Audit records exported.
    AuditExport = 71, "audit_export";
    /// A tree head signed and published (e.g. to a witness).
    TreeHeadSigned = 72, "tree_head_signed";
    /// Audit records purged after archiving (retention).
    Purge = 73, "purge";
    /// The audit log verified by an audit officer.
    AuditVerify = 74, "audit_verify";
    /// The audit writer (re)started; the gap since it stopped is on record.
    AuditWriterStart = 75, "audit_writer_start";
    /// A message signed.
    MessageSigned = 80, "message_signed";
    /// A message verified (pass or fail: see the outcome).
    MessageVerified = 81, "message_verified";
    /// A signed receipt issued for a message.
    ReceiptIssued = 82, "receipt_issued";
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EventType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .iter()
            .copied()
            .find(|e| e.name() == s)
            .ok_or_else(|| Error::Audit(format!("unknown audit event type {s:?}")))
    }
}

/// Who acted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    /// An account, by name (console login, service account).
    Account(String),
    /// The holder of a certificate.
    Certificate {
        /// The subject as an RFC 4514 string.
        subject: String,
        /// The serial number's content octets (big-endian, as in the certificate).
        serial: Vec<u8>,
    },
}

impl Actor {
    /// An account actor.
    #[must_use]
    pub fn account(name: impl Into<String>) -> Self {
        Self::Account(name.into())
    }

    /// The string kept in the store's `actor` column and matched by [`QueryFilter::actor`]:
    /// `account:NAME` or `cert:HEXSERIAL:SUBJECT`.
    ///
    /// [`QueryFilter::actor`]: crate::audit::QueryFilter::actor
    #[must_use]
    pub fn key(&self) -> String {
        match self {
            Self::Account(name) => format!("account:{name}"),
            Self::Certificate { subject, serial } => format!("cert:{}:{subject}", hex::encode(serial)),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Account(name) => f.write_str(name),
            Self::Certificate { subject, serial } => write!(f, "{subject} (serial {})", hex::encode(serial)),
        }
    }
}

/// Whether the action succeeded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It succeeded.
    Success,
    /// It failed, for this reason.
    Failure(String),
}

/// One audit record (GB/T 22239 8.1.4.3 b: date and time, user, event type, success or failure,
/// and what else is relevant).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AuditRecord {
    /// When, in milliseconds since the Unix epoch (UTC).
    pub time: i64,
    /// Who.
    pub actor: Actor,
    /// As what.
    pub role: Option<Role>,
    /// What happened.
    pub event: EventType,
    /// To what: a certificate serial, a request hash, a message digest, ...
    pub object: Option<String>,
    /// With what result.
    pub outcome: Outcome,
    /// From where (an IP address and port, a host name).
    pub source: Option<String>,
    /// The request or correlation id, to join with service logs.
    pub request_id: Option<String>,
}

impl AuditRecord {
    /// A successful `event` by `actor` at `time` (Unix milliseconds); the optional fields are
    /// set with the builder methods.
    #[must_use]
    pub fn new(time: i64, actor: Actor, event: EventType) -> Self {
        Self { time, actor, role: None, event, object: None, outcome: Outcome::Success, source: None, request_id: None }
    }

    /// Sets the role.
    #[must_use]
    pub fn role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    /// Sets the object.
    #[must_use]
    pub fn object(mut self, object: impl Into<String>) -> Self {
        self.object = Some(object.into());
        self
    }

    /// Marks the record as a failure with `reason`.
    #[must_use]
    pub fn failure(mut self, reason: impl Into<String>) -> Self {
        self.outcome = Outcome::Failure(reason.into());
        self
    }

    /// Sets the source address.
    #[must_use]
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Sets the request id.
    #[must_use]
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// The canonical DER encoding (see the module documentation).
    ///
    /// # Errors
    /// [`Error::Malformed`] if a field is too long for DER (over 256 MiB).
    pub fn to_der(&self) -> Result<Vec<u8>, Error> {
        let wire = RecordDer {
            version: RECORD_VERSION,
            time: self.time,
            actor: match &self.actor {
                Actor::Account(name) => ActorDer::Account(name.clone()),
                Actor::Certificate { subject, serial } => ActorDer::Certificate(CertificateActorDer {
                    subject: subject.clone(),
                    serial: OctetString::new(serial.clone()).map_err(|e| Error::der("audit record", e))?,
                }),
            },
            role: self.role,
            event: self.event,
            object: self.object.clone(),
            outcome: match &self.outcome {
                Outcome::Success => OutcomeDer::Success(Null),
                Outcome::Failure(reason) => OutcomeDer::Failure(reason.clone()),
            },
            source: self.source.clone(),
            request_id: self.request_id.clone(),
        };
        wire.to_der().map_err(|e| Error::der("audit record", e))
    }

    /// Decodes a record, accepting only version 1 in canonical DER.
    ///
    /// # Errors
    /// [`Error::Malformed`] for anything else.
    pub fn from_der(bytes: &[u8]) -> Result<Self, Error> {
        let wire = RecordDer::from_der(bytes).map_err(|e| Error::der("audit record", e))?;
        if wire.version != RECORD_VERSION {
            return Err(Error::Malformed {
                what: "audit record",
                reason: format!("version {} is not supported (expected {RECORD_VERSION})", wire.version),
            });
        }
        // The der crate rejects BER length forms and non-minimal integers; re-encoding catches
        // whatever else could make two encodings of one record (and so two leaf hashes).
        if wire.to_der().map_err(|e| Error::der("audit record", e))? != bytes {
            return Err(Error::Malformed { what: "audit record", reason: "not in canonical DER".into() });
        }
        Ok(Self {
            time: wire.time,
            actor: match wire.actor {
                ActorDer::Account(name) => Actor::Account(name),
                ActorDer::Certificate(c) => Actor::Certificate { subject: c.subject, serial: c.serial.into_bytes() },
            },
            role: wire.role,
            event: wire.event,
            object: wire.object,
            outcome: match wire.outcome {
                OutcomeDer::Success(Null) => Outcome::Success,
                OutcomeDer::Failure(reason) => Outcome::Failure(reason),
            },
            source: wire.source,
            request_id: wire.request_id,
        })
    }
}

/// `AuditRecord` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, der::Sequence)]
#[asn1(tag_mode = "IMPLICIT")]
struct RecordDer {
    version: u32,
    time: i64,
    actor: ActorDer,
    #[asn1(context_specific = "0", optional = "true")]
    role: Option<Role>,
    event: EventType,
    #[asn1(context_specific = "1", optional = "true")]
    object: Option<String>,
    outcome: OutcomeDer,
    #[asn1(context_specific = "2", optional = "true")]
    source: Option<String>,
    #[asn1(context_specific = "3", optional = "true")]
    request_id: Option<String>,
}

/// `Actor` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, der::Choice)]
enum ActorDer {
    Account(String),
    Certificate(CertificateActorDer),
}

/// `CertificateActor` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, der::Sequence)]
struct CertificateActorDer {
    subject: String,
    serial: OctetString,
}

/// `Outcome` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, der::Choice)]
enum OutcomeDer {
    Success(Null),
    Failure(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL_DER: &str = "30640201010206019ab697e87b301c0c16434e3de5bca0e4b8892c4f3d50726f62652c433d434e04020a1b\
        8001020a011f810b73657269616c3a306131620c0f616c7265616479207265766f6b6564820d3139322e302e322e37\
        3a34343383067265712d3432";
    const FULL_LEAF_SHA256: &str = "de64246684f80ca93f8c2d45691dbdbca285ce598bb3bd96c85970ef4a578e58";

    fn full() -> AuditRecord {
        AuditRecord::new(
            1_764_000_000_123,
            Actor::Certificate { subject: "CN=张三,O=Probe,C=CN".into(), serial: vec![0x0a, 0x1b] },
            EventType::Revoke,
        )
        .role(Role::SecurityOfficer)
        .object("serial:0a1b")
        .failure("already revoked")
        .source("192.0.2.7:443")
        .request_id("req-42")
    }

    #[test]
    fn round_trips_full_and_minimal_records() {
        for r in [full(), AuditRecord::new(0, Actor::account("root"), EventType::LoginOk)] {
            let der = r.to_der().unwrap();
            assert_eq!(AuditRecord::from_der(&der).unwrap(), r);
        }
    }

    #[test]
    fn encodes_a_minimal_record_exactly() {
        let r = AuditRecord::new(1000, Actor::account("a"), EventType::LoginOk);
        // SEQUENCE { INTEGER 1, INTEGER 1000, UTF8String "a", ENUMERATED 1, NULL }
        assert_eq!(hex::encode(r.to_der().unwrap()), "300f020101020203e80c01610a01010500");
    }

    #[test]
    fn encodes_optional_fields_with_context_tags() {
        let der = full().to_der().unwrap();
        let hex = hex::encode(&der);
        assert!(hex.contains("800102"), "role [0] IMPLICIT ENUMERATED 2: {hex}");
        assert!(hex.contains("810b"), "object [1] IMPLICIT UTF8String: {hex}");
    }

    #[test]
    fn rejects_unknown_version() {
        let r = AuditRecord::new(1000, Actor::account("a"), EventType::LoginOk);
        let mut der = r.to_der().unwrap();
        der[4] = 2;
        let err = AuditRecord::from_der(&der).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn rejects_non_der_encodings() {
        // Long-form length where the short form is required.
        let r = AuditRecord::new(1000, Actor::account("a"), EventType::LoginOk);
        let der = r.to_der().unwrap();
        let mut ber = vec![0x30, 0x81, der[1]];
        ber.extend_from_slice(&der[2..]);
        assert!(AuditRecord::from_der(&ber).is_err());
        // Trailing bytes.
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(AuditRecord::from_der(&trailing).is_err());
        // Unknown event number.
        let mut unknown = der;
        let pos = unknown.windows(3).position(|w| w == [0x0a, 0x01, 0x01]).unwrap();
        unknown[pos + 2] = 0x63;
        assert!(AuditRecord::from_der(&unknown).is_err());
    }

    #[test]
    fn the_asn1_module_lists_every_event_with_its_number() {
        let src = include_str!("record.rs");
        let start = src.find("EventType ::= ENUMERATED").unwrap();
        let block = &src[start..start + src[start..].find('}').unwrap()];
        let listed: Vec<(String, u32)> = block
            .lines()
            .map(|l| l.trim_start_matches("//!").split("--").next().unwrap())
            .flat_map(|l| l.split(','))
            .filter_map(|item| {
                let (name, rest) = item.split_once('(')?;
                Some((name.split_whitespace().last()?.to_owned(), rest.trim().trim_end_matches(')').parse().ok()?))
            })
            .collect();
        let expected: Vec<(String, u32)> = EventType::ALL
            .iter()
            .map(|e| {
                let mut parts = e.name().split('_');
                let first = parts.next().unwrap().to_owned();
                let camel = parts.fold(first, |acc, p| acc + &p[..1].to_uppercase() + &p[1..]);
                (camel, *e as u32)
            })
            .collect();
        assert_eq!(listed, expected);
    }

    #[test]
    fn encodes_a_full_record_as_it_always_has() {
        // Frozen: a change here changes leaf hashes of existing logs.
        let der = full().to_der().unwrap();
        assert_eq!(hex::encode(&der), FULL_DER);
        assert_eq!(hex::encode(crate::audit::HashAlgorithm::Sha256.leaf(&der)), FULL_LEAF_SHA256);
    }

    #[test]
    fn event_and_role_names_are_unique_and_parse_back() {
        let mut names = std::collections::HashSet::new();
        for e in EventType::ALL {
            assert!(names.insert(e.name()), "duplicate {}", e.name());
            assert_eq!(e.name().parse::<EventType>().unwrap(), *e);
            assert!(e.name().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
        for r in Role::ALL {
            assert_eq!(r.name().parse::<Role>().unwrap(), r);
        }
        assert!("login".parse::<EventType>().is_err());
    }
}
