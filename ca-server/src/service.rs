//! The CA service ([`Ca`]): registration → approval → enrolment → issuance, renewal,
//! revocation and suspension, listing, CRLs — everything the HTTP layer calls, with roles
//! checked here as well as there (defence in depth) and every state change and every refusal
//! audited.
//!
//! # Roles (三权分立)
//!
//! | call | allowed |
//! |---|---|
//! | `register`, `approve`, `hold`, `release` | security officer |
//! | `revoke` | security officer; the subscriber itself, for `keyCompromise` only |
//! | `list_certificates` | security officer, audit officer (read-only) |
//! | `enrol` | anyone holding a valid enrolment code (no client certificate) |
//! | `renew` | a subscriber or platform with a currently valid certificate of ours |
//!
//! The system administrator can do none of these: it runs the service and its keys. The audit
//! officer can only read. An identity has exactly one role (the `identities` table keys the
//! role by subject, with a single role column).
//!
//! # Enrolment codes
//!
//! A code is `<registration id>.<secret>`: the 16-hex-digit registration id, a dot, and 128 bits
//! from the operating system's CSPRNG in RFC 4648 base32 (26 characters). Only SHA-256 of the
//! secret is stored. It expires after `enrolment.code_ttl_hours` and is used once.
//!
//! Attempts are counted in two places, because a code cannot be looked up by a guess:
//! - **per registration**: a request whose id part names a registration with a code, but whose
//!   secret is wrong, counts one attempt against that code; after `enrolment.max_attempts` the
//!   code is burnt (a new approval cycle is needed). Guessing a 128-bit secret is hopeless;
//!   this bounds even that.
//! - **per source address**: every refused code (malformed, unknown id, wrong, expired, used,
//!   burnt) is an authentication failure of the source address; after `lockout.max_failures`
//!   within `lockout.window_minutes` the source is locked for `lockout.lock_minutes`.
//!
//! The caller learns only [`Error::CodeInvalid`], whatever the reason; the audit record of the
//! refusal says which.
//!
//! # Issuance durability
//!
//! Issuing a certificate goes through these steps, in this order:
//! 1. **Reserve.** In one transaction: claim the enrolment code (enrolment only) and insert
//!    the certificate row with a fresh random serial and status `issuing`. The serial is the
//!    primary key, so it can never be used twice — a collision (never seen with 126 random
//!    bits) just draws another. Committed before anything is signed.
//! 2. **Lint, then sign.** [`policies::issue`] builds the certificate, lints it signed by a
//!    throwaway key, and only then has the issuing key sign it.
//! 3. **Audit and mark issued, side by side.** The `Issue` record is appended to the audit log
//!    while, in one transaction of the CA database, the row becomes `good` with its DER and
//!    `audit_pending` set, the code gets its serial and the registration is `enrolled`. Each
//!    returns only once committed.
//! 4. **Return** the certificate once both are committed, and clear `audit_pending` in a later
//!    batch that nobody waits for.
//!
//! So a certificate is returned only when its row says `good` and the audit log has its
//! record. A crash (kill -9) at any point leaves at worst
//! - a row in `issuing` (with or without its `Issue` record): its certificate was never
//!   released; or
//! - a `good` row with `audit_pending` set: released only if its `Issue` record is committed.
//!
//! When the CA starts ([`Ca::open`]) it marks `issuing` rows `abandoned` and gives back the
//! enrolment code such a reservation claimed; for each `audit_pending` row it looks up the
//! serial's `Issue` record in the audit log (an indexed lookup by object): if the record is
//! there the flag is cleared (the certificate may have been released), otherwise the
//! certificate was never released and the row is taken back — `abandoned`, its code given back,
//! its registration `approved` again. Each abandonment is audited; abandoned serials stay in
//! the table for ever and are never reused. The CA runs as a single writer process
//! (active/passive for high availability), which is what makes "still `issuing` or pending at
//! start-up" mean "crashed". Step 3 used to audit first and mark after; doing both at once
//! takes one commit time off every issuance, and the start-up lookup is what pays for it.
//!
//! ## Group commit
//!
//! Steps 1 and 3 (and 4's clearing) are jobs for the issuance writer ([`store::IssuanceWriter`]).
//! On SQLite they are not transactions of their own: one thread runs every job waiting at that
//! moment — the reservations and the mark-issued steps of all issuances in flight — in one
//! transaction, and answers each job only after the commit. A job runs the statements its own
//! transaction used to and decides its outcome from them alone, so every guarantee above holds
//! per issuance; what a batch shares is the sync of its commit (and the write lock, for which
//! concurrent issuances no longer queue). If a batch fails, it fails every issuance in it: no
//! reservation of it was made, no mark-issued recorded (such a serial is abandoned, as for any
//! failure of step 3). On PostgreSQL each job keeps its own transaction: the server runs them
//! in parallel and shares one WAL flush among concurrent commits itself. The audit record
//! shares a commit through the audit log's own group commit.
//!
//! Each issuance waits for two rounds of durable commits — the reservation, then the audit
//! record and the mark-issued step at once. With `synchronous=FULL` or `fsync=on` a commit is
//! a disk sync, so with W concurrent callers at most W certificates are issued per two commit
//! times, whatever the CPU does; batching makes each sync serve all W instead of queueing them
//! one by one. Over HTTPS the call's own audit record ([`crate::authz`]) is queued, not waited
//! for: the `Issue` record is already durable when the certificate is released.
//!
//! Fail closed: if the audit append fails, the operation fails with
//! [`Error::AuditUnavailable`], the row is marked `abandoned` (taken back if it was already
//! marked issued), the code is given back, and nothing is returned. State changes other than issuance (registration, approval,
//! revocation, hold, release, CRLs) append their audit record inside the database
//! transaction, before it commits: a failed append rolls the change back.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use der::{Decode, Encode};
use policies::{IssuerUrls, Profile, Profiles, SubjectData};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use signer_lib::Signer;
use signer_lib::algorithm::KeyType;
pub use signer_lib::audit::EventType;
use signer_lib::audit::{Actor, AuditLog, AuditRecord, Outcome, PendingAppend, QueryFilter};
use time::OffsetDateTime;
use x509_cert::Certificate;
use zeroize::Zeroizing;

use crate::Error;
use crate::clock::{Clock, SystemClock, unix_millis, whole_seconds};
use crate::config::Config;
use crate::crl::{self, CrlEntry, RevocationReason};
use crate::keys::KeyStore;
use crate::store::{
    self, CertificateRow, CodeRow, CrlRow, IssuanceWriter, ListFilter, NewCertificate, RegistrationRow, Reservation,
    Store,
};

mod reissue;

/// The most certificates one list call returns.
pub const MAX_LIST: u32 = 1000;

/// The account name audit records use for the CA's own actions (CRLs, recovery).
pub const SYSTEM_ACTOR: &str = "eport-ca";

/// Who is calling, as established by the HTTP layer ([`Ca::identify`] or [`Caller::anonymous`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The client certificate's subject (RFC 4514), empty when anonymous.
    pub subject: String,
    /// The client certificate's serial, lowercase hex, empty when anonymous.
    pub serial_hex: String,
    /// The issuer id of the client certificate (`p256`), empty when anonymous.
    pub issuer: String,
    /// The role, `None` when anonymous.
    pub role: Option<Role>,
    /// The source address.
    pub source: Option<SocketAddr>,
    /// The request id, for joining audit records with service logs.
    pub request_id: String,
}

impl Caller {
    /// A caller without a client certificate (enrolment, public endpoints).
    #[must_use]
    pub fn anonymous(source: Option<SocketAddr>, request_id: impl Into<String>) -> Self {
        Self {
            subject: String::new(),
            serial_hex: String::new(),
            issuer: String::new(),
            role: None,
            source,
            request_id: request_id.into(),
        }
    }

    /// The audit actor.
    #[must_use]
    pub fn actor(&self) -> Actor {
        if self.serial_hex.is_empty() {
            Actor::account("anonymous")
        } else {
            Actor::Certificate {
                subject: self.subject.clone(),
                serial: hex::decode(&self.serial_hex).unwrap_or_default(),
            }
        }
    }

    /// The key failures are counted under: the certificate serial, else the source address.
    fn identity_key(&self) -> String {
        if self.serial_hex.is_empty() { source_key(self.source) } else { serial_key(&self.serial_hex) }
    }
}

fn source_key(source: Option<SocketAddr>) -> String {
    source.map_or_else(|| "source:unknown".to_owned(), |s| format!("source:{}", s.ip()))
}

fn serial_key(serial_hex: &str) -> String {
    format!("serial:{}", serial_hex.to_ascii_lowercase())
}

/// What a caller acts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the service, keys and backups; no RA or audit powers.
    SystemAdministrator,
    /// The RA: registers, approves, revokes, suspends.
    SecurityOfficer,
    /// Reads (certificates here; the audit trail elsewhere).
    AuditOfficer,
    /// The holder of an enterprise or agency certificate.
    Subscriber,
    /// A platform system with a TLS client certificate.
    Platform,
}

impl Role {
    /// The snake_case name (as in the `identities` table and JSON).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::SystemAdministrator => "system_administrator",
            Self::SecurityOfficer => "security_officer",
            Self::AuditOfficer => "audit_officer",
            Self::Subscriber => "subscriber",
            Self::Platform => "platform",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::SystemAdministrator, Self::SecurityOfficer, Self::AuditOfficer, Self::Subscriber, Self::Platform]
            .into_iter()
            .find(|r| r.name() == name)
    }

    fn audit_role(self) -> signer_lib::audit::Role {
        use signer_lib::audit::Role as A;
        match self {
            Self::SystemAdministrator => A::SystemAdministrator,
            Self::SecurityOfficer => A::SecurityOfficer,
            Self::AuditOfficer => A::AuditOfficer,
            Self::Subscriber => A::Subscriber,
            Self::Platform => A::Platform,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The body of a registration: an enterprise or an agency (`{"kind": "enterprise", ...}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RegistrationRequest {
    /// An enterprise (legal representative or operator certificate).
    Enterprise {
        /// The unified social credit code (18 characters, check digit validated).
        uscc: String,
        /// The enterprise's registered name.
        name: String,
        /// The legal representative's name.
        legal_representative: String,
        /// The certificate holder (commonName): the operator for `enterprise-operator`.
        /// Default: the legal representative.
        #[serde(default)]
        person_name: Option<String>,
        /// `enterprise-legal-rep` or `enterprise-operator`.
        profile: String,
        /// `enterprise-operator` only, and required there: the legal representative's signed
        /// authorisation of this operator (`eport operator authorise`), the PEM of the CMS or
        /// the base64 of its DER. See [`crate::authorisation`].
        #[serde(default)]
        authorisation: Option<String>,
    },
    /// A government agency or bank.
    Agency {
        /// The agency code (2-32 characters A-Z, 0-9, `-`).
        agency_code: String,
        /// The agency's name.
        name: String,
        /// `agency` (the default).
        #[serde(default = "agency_profile")]
        profile: String,
    },
}

fn agency_profile() -> String {
    "agency".to_owned()
}

/// Where a registration stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationStatus {
    /// Waiting for approval(s).
    Pending,
    /// Approved; its enrolment code is out.
    Approved,
    /// A certificate was issued with its code.
    Enrolled,
}

impl RegistrationStatus {
    fn from_name(name: &str) -> Self {
        match name {
            "approved" => Self::Approved,
            "enrolled" => Self::Enrolled,
            _ => Self::Pending,
        }
    }
}

/// A registration as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Registration {
    /// 16 lowercase hex digits.
    pub id: String,
    /// `enterprise` or `agency`.
    pub kind: String,
    /// The USCC or the agency code.
    pub identifier: String,
    /// The enterprise's or agency's name.
    pub name: String,
    /// The legal representative (enterprises).
    pub legal_representative: Option<String>,
    /// The certificate holder's name (commonName).
    pub person_name: String,
    /// The certificate profile.
    pub profile: String,
    /// Where it stands.
    pub status: RegistrationStatus,
    /// The registering officer (subject).
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The approving officers (subjects), in order.
    pub approvals: Vec<String>,
    /// How many different officers must approve.
    pub approvals_needed: u32,
}

/// The result of an approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Approval {
    /// Dual control: another, different officer must approve.
    Pending {
        /// The registration.
        registration_id: String,
        /// Approvals so far.
        approvals: u32,
        /// Approvals needed.
        needed: u32,
    },
    /// Approved: the one-time enrolment code, shown once and stored only as a hash.
    Code {
        /// The registration.
        registration_id: String,
        /// The code (`<registration id>.<26 base32 characters>`).
        code: String,
        /// When it expires, Unix seconds.
        expires_at: i64,
        /// Wrong codes tolerated before it is burnt.
        max_attempts: u32,
    },
}

/// An issued certificate, as returned by `enrol` and `renew`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Issued {
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The issuing CA, then the root (last), PEM.
    pub chain_pem: Vec<String>,
    /// The serial, lowercase hex.
    pub serial_hex: String,
    /// The profile.
    pub profile: String,
    /// The issuer id (`p256`, `sm2`).
    pub issuer: String,
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

/// Which certificates to list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFilter {
    /// By the enterprise's USCC.
    #[serde(default)]
    pub uscc: Option<String>,
    /// By status (`good`, `revoked`, `hold`, `issuing`, `abandoned`).
    #[serde(default)]
    pub status: Option<String>,
    /// By serial (hex, any case, no colons).
    #[serde(default)]
    pub serial: Option<String>,
    /// At most this many (default and maximum 1000).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// A certificate's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateStatus {
    /// Serial reserved, not (yet) released.
    Issuing,
    /// Valid.
    Good,
    /// Revoked for good.
    Revoked,
    /// Suspended (certificateHold).
    Hold,
    /// Reserved but never released (crash or refusal); never reused.
    Abandoned,
}

impl CertificateStatus {
    const NAMES: [(&'static str, Self); 5] = [
        ("issuing", Self::Issuing),
        ("good", Self::Good),
        ("revoked", Self::Revoked),
        ("hold", Self::Hold),
        ("abandoned", Self::Abandoned),
    ];

    fn from_name(name: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }
}

/// A certificate as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    /// Lowercase hex.
    pub serial_hex: String,
    /// The issuer id.
    pub issuer: String,
    /// RFC 4514 subject.
    pub subject: String,
    /// The profile.
    pub profile: String,
    /// The registration it was issued for.
    pub registration_id: Option<String>,
    /// The enterprise's USCC.
    pub uscc: Option<String>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// The status.
    pub status: CertificateStatus,
    /// When revoked or put on hold, Unix seconds.
    pub revoked_at: Option<i64>,
    /// The RFC 5280 reason name.
    pub revocation_reason: Option<String>,
}

impl CertificateInfo {
    fn from_row(row: &CertificateRow) -> Self {
        Self {
            serial_hex: row.serial.clone(),
            issuer: row.issuer.clone(),
            subject: row.subject.clone(),
            profile: row.profile.clone(),
            registration_id: row.registration_id.clone(),
            uscc: row.uscc.clone(),
            not_before: row.not_before,
            not_after: row.not_after,
            status: CertificateStatus::from_name(&row.status).unwrap_or(CertificateStatus::Abandoned),
            revoked_at: row.revoked_at,
            revocation_reason: row.revocation_reason.and_then(RevocationReason::from_code).map(|r| r.name().to_owned()),
        }
    }
}

/// What the HTTPS listener needs.
#[derive(Clone)]
pub struct TlsMaterial {
    /// The server certificate chain, DER: the tls-server certificate, the P-256 issuing CA,
    /// the P-256 root.
    pub server_chain_der: Vec<Vec<u8>>,
    /// The server key as plain PKCS#8 DER when it is a software key (for rustls); `None`
    /// when it is on a token (use `server_signer`).
    pub server_key_pkcs8_der: Option<Zeroizing<Vec<u8>>>,
    /// The server key.
    pub server_signer: Arc<dyn Signer>,
    /// The CA certificates client certificates chain to (DER): the P-256 issuing CA and root.
    /// rustls has no SM2, so SM2 certificates cannot be used as TLS client certificates.
    pub client_ca_der: Vec<Vec<u8>>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("server_chain_der", &self.server_chain_der.len())
            .field("server_key_pkcs8_der", &self.server_key_pkcs8_der.as_ref().map(|_| "<redacted>"))
            .field("server_signer", &self.server_signer)
            .field("client_ca_der", &self.client_ca_der.len())
            .finish()
    }
}

/// One issuing hierarchy, loaded.
#[derive(Debug)]
pub(crate) struct Issuer {
    pub(crate) id: String,
    pub(crate) key_type: KeyType,
    pub(crate) root_der: Vec<u8>,
    pub(crate) ca: Arc<Certificate>,
    pub(crate) ca_der: Vec<u8>,
    pub(crate) signer: Arc<dyn Signer>,
    pub(crate) chain_pem: Vec<String>,
    pub(crate) urls: IssuerUrls,
}

/// The URLs certificates of issuer `id` carry, under `base` (no trailing `/`).
pub(crate) fn urls_for(base: &str, id: &str) -> IssuerUrls {
    IssuerUrls {
        ocsp: Some(format!("{base}/ocsp")),
        ca_issuers: Some(format!("{base}/ca/{id}.crt")),
        crl: Some(format!("{base}/crl/{id}.crl")),
    }
}

/// The validity of a new certificate: from `now` (whole seconds) for the profile's maximum,
/// cut at the issuer's notAfter.
pub(crate) fn validity(
    now: OffsetDateTime,
    profile: &Profile,
    issuer: Option<&Certificate>,
) -> (OffsetDateTime, OffsetDateTime) {
    let not_before = whole_seconds(now);
    let mut not_after =
        not_before + time::Duration::days(i64::from(profile.max_validity_days.get())) - time::Duration::SECOND;
    if let Some(end) = issuer.and_then(|c| policies::issuer::offset_date_time(c.tbs_certificate.validity.not_after)) {
        not_after = not_after.min(end);
    }
    (not_before, not_after)
}

/// The certification authority. Cheap to clone (an `Arc` inside).
#[derive(Clone, Debug)]
pub struct Ca {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    data_dir: PathBuf,
    config: Config,
    store: Store,
    /// The group-commit writer of issuance's two transactions (see the module documentation).
    issuance: IssuanceWriter,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    profiles: Profiles,
    issuers: BTreeMap<String, Issuer>,
    tls: TlsMaterial,
}

/// The marker file `init` writes last; its presence means "initialised".
pub(crate) const MARKER: &str = "initialised";

impl Ca {
    /// Whether `data_dir` holds an initialised CA.
    #[must_use]
    pub fn is_initialised(data_dir: &Path) -> bool {
        data_dir.join(MARKER).exists()
    }

    /// Opens the CA in `data_dir` with the system clock.
    ///
    /// # Errors
    /// As [`Self::open_with_clock`].
    pub async fn open(data_dir: &Path, config: &Config) -> Result<Self, Error> {
        Self::open_with_clock(data_dir, config, Arc::new(SystemClock)).await
    }

    /// Opens the CA in `data_dir`: connects to the database (migrating it), opens the audit log
    /// for writing and the issuing keys, marks serials left `issuing` by a crash `abandoned`
    /// (audited), and records the start.
    ///
    /// # Errors
    /// [`Error::NotInitialised`]; [`Error::Store`]; [`Error::AuditUnavailable`] when the audit
    /// log cannot be opened for writing; [`Error::Key`] when a key cannot be opened or does not
    /// match its certificate; [`Error::Io`] for missing files.
    pub async fn open_with_clock(data_dir: &Path, config: &Config, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        if !Self::is_initialised(data_dir) {
            return Err(Error::NotInitialised { data_dir: data_dir.to_owned() });
        }
        let keys = KeyStore::new(data_dir, config)?;
        let store =
            Store::connect(&config.database_url(data_dir), config.database.max_connections.get(), false).await?;
        let audit_key = keys.open("audit")?;
        let audit = AuditLog::open_writer(&config.audit_url(data_dir), audit_key)
            .await
            .map_err(|e| Error::AuditUnavailable(format!("cannot open the audit log: {e}")))?;
        let profiles = Profiles::embedded().map_err(|e| Error::internal("profiles", e))?;
        let base = config.public_base_url();

        let mut issuers = BTreeMap::new();
        for row in store.issuers().await? {
            let ca = signer_lib::certificate::parse(&row.issuing_der).map_err(|e| Error::internal("issuing CA", e))?;
            let root = signer_lib::certificate::parse(&row.root_der).map_err(|e| Error::internal("root CA", e))?;
            let signer = keys.open(&row.issuing_key)?;
            signer_lib::key::check_matches_certificate(&*signer, &ca)
                .map_err(|e| Error::Key { name: row.issuing_key.clone(), reason: e.to_string() })?;
            let spki = ca.tbs_certificate.subject_public_key_info.to_der().map_err(|e| Error::internal("CA key", e))?;
            let spki = spki::SubjectPublicKeyInfoRef::from_der(&spki).map_err(|e| Error::internal("CA key", e))?;
            let key_type = KeyType::of_spki(&spki).map_err(|e| Error::internal("CA key", e))?;
            let chain_pem = vec![pem(&ca)?, pem(&root)?];
            issuers.insert(
                row.id.clone(),
                Issuer {
                    urls: urls_for(&base, &row.id),
                    id: row.id,
                    key_type,
                    root_der: row.root_der,
                    ca: Arc::new(ca),
                    ca_der: row.issuing_der,
                    signer,
                    chain_pem,
                },
            );
        }
        let tls = tls_material(data_dir, &keys, &issuers, &crate::rotation::current_tls(&store).await?)?;
        let ca = Self {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_owned(),
                config: config.clone(),
                issuance: IssuanceWriter::start(store.clone())?,
                store,
                audit,
                clock,
                profiles,
                issuers,
                tls,
            }),
        };
        ca.recover().await?;
        ca.system_audit(EventType::ServiceStart, None, Ok(())).await?;
        Ok(ca)
    }

    /// Resolves what a crash can leave of issuances (see "Issuance durability"): serials left
    /// `issuing` are marked `abandoned`; rows marked issued with their `Issue` record pending are
    /// cleared when the audit log has that record, and taken back (abandoned, code given back)
    /// when it has not. Each abandonment is audited.
    async fn recover(&self) -> Result<(), Error> {
        for serial in self.inner.store.audit_pending_serials().await? {
            let filter = QueryFilter {
                object: Some(serial.clone()),
                event: Some(EventType::Issue),
                limit: QueryFilter::DEFAULT_LIMIT,
                ..QueryFilter::default()
            };
            let records = self.inner.audit.query(&filter).await.map_err(|e| Error::AuditUnavailable(e.to_string()))?;
            if records.iter().any(|r| r.record.outcome == Outcome::Success) {
                self.inner.store.clear_audit_pending(std::slice::from_ref(&serial)).await?;
            } else if self.inner.store.unissue(&serial, self.now().unix_timestamp()).await? {
                self.system_audit(
                    EventType::Issue,
                    Some(&serial),
                    Err("marked issued but its Issue record was never committed (crash), so never released; marked abandoned"),
                )
                .await?;
            }
        }
        for serial in self.inner.store.issuing_serials().await? {
            let now = self.now().unix_timestamp();
            if self.inner.store.mark_abandoned(&serial, now).await? {
                self.system_audit(
                    EventType::Issue,
                    Some(&serial),
                    Err("serial reserved but the certificate was never released (crash); marked abandoned"),
                )
                .await?;
                // The enrolment code it claimed produced nothing: give it back (a no-op for
                // renewals, whose registration's code already names its certificate).
                if let Some(registration_id) =
                    self.inner.store.certificate(&serial).await?.and_then(|row| row.registration_id)
                {
                    self.inner.store.release_code(&registration_id).await?;
                }
            }
        }
        Ok(())
    }

    /// Graceful shutdown: records the stop, signs a final audit head, drains and closes the
    /// audit writer and closes the database pool. Later calls on any clone fail.
    pub async fn close(&self) {
        let _ = self.system_audit(EventType::ServiceStop, None, Ok(())).await;
        let _ = self.inner.audit.sign_head().await;
        self.inner.audit.close().await;
        self.inner.issuance.close().await;
        self.inner.store.close().await;
    }

    /// The configuration the CA was opened with.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The data directory the CA was opened from.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The database (for tests and the OCSP feed).
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The audit log (read side for tests and the audit API; appends go through the service).
    #[must_use]
    pub fn audit_log(&self) -> &AuditLog {
        &self.inner.audit
    }

    /// Signs an audit tree head if the log grew; `serve` calls this periodically.
    ///
    /// # Errors
    /// [`Error::AuditUnavailable`].
    pub async fn sign_audit_head(&self) -> Result<(), Error> {
        self.inner.audit.sign_head().await.map(|_| ()).map_err(|e| Error::AuditUnavailable(e.to_string()))
    }

    /// The issuer ids (`p256`, `sm2`).
    #[must_use]
    pub fn issuer_ids(&self) -> Vec<String> {
        self.inner.issuers.keys().cloned().collect()
    }

    /// The CA certificate `issuer_id` names, DER: the issuing CA for `p256` / `sm2`, the root
    /// for `p256-root` / `sm2-root` (the names in the AIA caIssuers URLs).
    #[must_use]
    pub fn ca_certificate_der(&self, issuer_id: &str) -> Option<Vec<u8>> {
        match issuer_id.strip_suffix("-root") {
            Some(id) => self.root_certificate_der(id),
            None => self.inner.issuers.get(issuer_id).map(|i| i.ca_der.clone()),
        }
    }

    /// The root certificate of `issuer_id`, DER.
    #[must_use]
    pub fn root_certificate_der(&self, issuer_id: &str) -> Option<Vec<u8>> {
        self.inner.issuers.get(issuer_id).map(|i| i.root_der.clone())
    }

    /// The TLS material for the HTTPS listener.
    #[must_use]
    pub fn tls_material(&self) -> TlsMaterial {
        self.inner.tls.clone()
    }

    /// The issuers of the in-process OCSP responder, one per issuing CA: its certificate, its
    /// delegated OCSP signer's certificate and the OCSP signer key, opened through the CA's key
    /// store (never the CA key). Each delegation is checked at `now`.
    ///
    /// # Errors
    /// [`Error::Store`] when the issuers cannot be read; [`Error::Key`] when an OCSP key cannot
    /// be opened or is the CA key; [`Error::Internal`] when a certificate does not parse or the
    /// responder refuses the delegation.
    pub async fn ocsp_issuers(&self, now: OffsetDateTime) -> Result<Vec<ocsp_responder::Issuer>, Error> {
        let keys = KeyStore::new(&self.inner.data_dir, &self.inner.config)?;
        let mut issuers = Vec::new();
        for row in self.inner.store.issuers().await? {
            if row.ocsp_key == row.issuing_key {
                return Err(Error::Key { name: row.ocsp_key, reason: "the OCSP signer must not be the CA key".into() });
            }
            let ca = signer_lib::certificate::parse(&row.issuing_der).map_err(|e| Error::internal("issuing CA", e))?;
            let ocsp = signer_lib::certificate::parse(&row.ocsp_der).map_err(|e| Error::internal("OCSP signer", e))?;
            let signer = keys.open(&row.ocsp_key)?;
            let issuer = ocsp_responder::Issuer::new(ocsp_responder::IssuerId(row.id), ca, ocsp, signer, now)
                .map_err(|e| Error::internal("OCSP issuer", e))?;
            issuers.push(issuer);
        }
        Ok(issuers)
    }

    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    fn issuer(&self, id: &str) -> Result<&Issuer, Error> {
        self.inner.issuers.get(id).ok_or_else(|| Error::NotFound { what: format!("issuer {id}") })
    }

    // ---- audit -----------------------------------------------------------------------------

    /// Appends a record for `caller`; an append that fails is [`Error::AuditUnavailable`].
    async fn audit(
        &self,
        caller: &Caller,
        event: EventType,
        object: Option<&str>,
        outcome: Result<(), &str>,
    ) -> Result<(), Error> {
        self.append(&self.caller_record(caller, event, object, outcome)).await
    }

    /// The record of `event` by `caller`.
    fn caller_record(
        &self,
        caller: &Caller,
        event: EventType,
        object: Option<&str>,
        outcome: Result<(), &str>,
    ) -> AuditRecord {
        let mut record = AuditRecord::new(unix_millis(self.now()), caller.actor(), event);
        if let Some(role) = caller.role {
            record = record.role(role.audit_role());
        }
        if let Some(object) = object {
            record = record.object(object);
        }
        if let Some(source) = caller.source {
            record = record.source(source.to_string());
        }
        if !caller.request_id.is_empty() {
            record = record.request_id(caller.request_id.clone());
        }
        if let Err(reason) = outcome {
            record = record.failure(reason);
        }
        record
    }

    /// Appends a record of the CA's own doing.
    async fn system_audit(
        &self,
        event: EventType,
        object: Option<&str>,
        outcome: Result<(), &str>,
    ) -> Result<(), Error> {
        let mut record = AuditRecord::new(unix_millis(self.now()), Actor::account(SYSTEM_ACTOR), event)
            .role(signer_lib::audit::Role::System);
        if let Some(object) = object {
            record = record.object(object);
        }
        if let Err(reason) = outcome {
            record = record.failure(reason);
        }
        self.append(&record).await
    }

    async fn append(&self, record: &AuditRecord) -> Result<(), Error> {
        self.inner.audit.append(record).await.map(|_| ()).map_err(|e| Error::AuditUnavailable(e.to_string()))
    }

    /// Audits the failure of a call (unless it was audited where it arose) and passes the
    /// result on. If the failure cannot be audited, the caller gets
    /// [`Error::AuditUnavailable`].
    async fn finish<T>(
        &self,
        caller: &Caller,
        event: EventType,
        object: Option<&str>,
        result: Result<T, Error>,
    ) -> Result<T, Error> {
        match result {
            Ok(value) => Ok(value),
            Err(e @ (Error::AuditUnavailable(_) | Error::CodeInvalid)) => Err(e),
            Err(e) => {
                self.audit(caller, event, object, Err(&e.to_string())).await?;
                Err(e)
            }
        }
    }

    /// Audits `event` (Audit call by the HTTP layer): one completed API call with its outcome.
    ///
    /// # Errors
    /// [`Error::AuditUnavailable`].
    pub async fn audit_call(
        &self,
        caller: &Caller,
        event: EventType,
        object: Option<String>,
        outcome: Result<(), String>,
    ) -> Result<(), Error> {
        self.audit(caller, event, object.as_deref(), outcome.as_ref().map(|_| ()).map_err(String::as_str)).await
    }

    /// As [`Self::audit_call`] for a call that succeeded in changing state, which the service
    /// has already recorded durably: returns once the record is queued, in order, without
    /// waiting for its commit (which [`PendingAppend::committed`] awaits). A crash in between
    /// loses only this call record, never the record of the change.
    ///
    /// # Errors
    /// [`Error::AuditUnavailable`] when the record cannot be queued.
    pub async fn queue_call_record(
        &self,
        caller: &Caller,
        event: EventType,
        object: Option<String>,
    ) -> Result<PendingAppend, Error> {
        let record = self.caller_record(caller, event, object.as_deref(), Ok(()));
        self.inner.audit.enqueue(&record).await.map_err(|e| Error::AuditUnavailable(e.to_string()))
    }

    // ---- authentication ------------------------------------------------------------------

    /// Maps a TLS client certificate (DER, chain already verified by the TLS layer) to a
    /// [`Caller`]. The certificate must be one of ours (byte-identical to the stored one),
    /// `good`, within its validity, and its identity not locked. Officers get their role
    /// from the identities table; end-entity certificates of the enterprise and agency
    /// profiles are subscribers, `tls-client` ones platforms. A refusal is recorded as an
    /// authentication failure (audited `LoginFailed`, counted towards a lockout) here.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`], [`Error::Locked`], [`Error::AuditUnavailable`],
    /// [`Error::Store`].
    pub async fn identify(
        &self,
        client_cert_der: &[u8],
        source: Option<SocketAddr>,
        request_id: &str,
    ) -> Result<Caller, Error> {
        let Ok(cert) = Certificate::from_der(client_cert_der) else {
            let caller = Caller::anonymous(source, request_id);
            self.auth_failure(&caller, &source_key(source), "client certificate does not parse").await?;
            return Err(Error::Unauthenticated { reason: "the client certificate does not parse".into() });
        };
        let serial_hex = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
        let mut caller = Caller::anonymous(source, request_id);
        caller.subject = cert.tbs_certificate.subject.to_string();
        caller.serial_hex.clone_from(&serial_hex);
        let key = serial_key(&serial_hex);
        let now = self.now().unix_timestamp();
        if let Some(until) = self.inner.store.locked_until(&key, now).await? {
            self.audit(&caller, EventType::LoginFailed, Some(&serial_hex), Err("identity locked")).await?;
            return Err(Error::Locked { until });
        }
        let refuse = |reason: &str| Error::Unauthenticated { reason: reason.to_owned() };
        let row = self.inner.store.certificate(&serial_hex).await?;
        let verdict = match &row {
            None => Err("not a certificate of this CA"),
            Some(row) if row.der.as_deref() != Some(client_cert_der) => Err("does not match the certificate on record"),
            Some(row) if row.status != "good" => Err("revoked, on hold or not issued"),
            Some(row) if now < row.not_before || now > row.not_after => Err("outside its validity period"),
            Some(row) => Ok(row),
        };
        let row = match verdict {
            Ok(row) => row,
            Err(reason) => {
                self.auth_failure(&caller, &key, reason).await?;
                return Err(refuse(reason));
            }
        };
        let role = match self.inner.store.identity_by_serial(&serial_hex).await? {
            Some(identity) => Role::from_name(&identity.role),
            None => match row.profile.as_str() {
                "enterprise-legal-rep" | "enterprise-operator" | "agency" => Some(Role::Subscriber),
                "tls-client" => Some(Role::Platform),
                _ => None,
            },
        };
        let Some(role) = role else {
            self.auth_failure(&caller, &key, "certificate grants no role").await?;
            return Err(refuse("the certificate grants no role"));
        };
        caller.issuer.clone_from(&row.issuer);
        caller.role = Some(role);
        Ok(caller)
    }

    /// Records an authentication failure the service did not see itself (a TLS handshake
    /// failure): `identity` is the lowercase hex serial of the presented certificate, or ""
    /// (the failure then counts against the source address).
    ///
    /// # Errors
    /// [`Error::AuditUnavailable`], [`Error::Store`].
    pub async fn record_auth_failure(
        &self,
        identity: &str,
        source: Option<SocketAddr>,
        reason: &str,
    ) -> Result<(), Error> {
        let mut caller = Caller::anonymous(source, "");
        caller.serial_hex = identity.trim().to_ascii_lowercase();
        let key = caller.identity_key();
        self.auth_failure(&caller, &key, reason).await
    }

    /// Counts a failure under `key`, audits it (`LoginFailed`), and locks `key` (audited
    /// `Lockout`) when it reaches the limit.
    async fn auth_failure(&self, caller: &Caller, key: &str, reason: &str) -> Result<(), Error> {
        self.audit(caller, EventType::LoginFailed, Some(key), Err(reason)).await?;
        self.count_failure(caller, key, reason).await
    }

    async fn count_failure(&self, caller: &Caller, key: &str, reason: &str) -> Result<(), Error> {
        let config = &self.inner.config;
        let now = self.now();
        let since = (now - config.lockout_window()).unix_timestamp();
        let count = self.inner.store.add_auth_failure(key, now.unix_timestamp(), since, reason).await?;
        if count >= i64::from(config.lockout.max_failures.get()) {
            let until = (now + config.lockout_duration()).unix_timestamp();
            self.inner.store.lock(key, until).await?;
            self.audit(
                caller,
                EventType::Lockout,
                Some(key),
                Err(&format!("{count} authentication failures; locked until {until}")),
            )
            .await?;
        }
        Ok(())
    }

    // ---- registration and approval -------------------------------------------------------

    /// Registers an enterprise or agency (security officer).
    ///
    /// # Errors
    /// [`Error::Forbidden`]; [`Error::BadRequest`] for an unknown profile, a profile of the
    /// other kind, an invalid USCC or agency code or name; [`Error::AuditUnavailable`];
    /// [`Error::Store`].
    pub async fn register(&self, caller: &Caller, req: RegistrationRequest) -> Result<Registration, Error> {
        let result = self.register_inner(caller, req).await;
        self.finish(caller, EventType::Registration, None, result).await
    }

    async fn register_inner(&self, caller: &Caller, req: RegistrationRequest) -> Result<Registration, Error> {
        require(caller, &[Role::SecurityOfficer], "register", "security_officer")?;
        let (kind, identifier, name, legal_representative, person_name, profile_id, subject, authorisation) = match req
        {
            RegistrationRequest::Enterprise {
                uscc,
                name,
                legal_representative,
                person_name,
                profile,
                authorisation,
            } => {
                let person = person_name.unwrap_or_else(|| legal_representative.clone());
                let subject =
                    SubjectData::Enterprise { uscc: uscc.clone(), name: name.clone(), person_name: person.clone() };
                ("enterprise", uscc, name, Some(legal_representative), person, profile, subject, authorisation)
            }
            RegistrationRequest::Agency { agency_code, name, profile } => {
                let subject = SubjectData::Agency { agency_code: agency_code.clone(), name: name.clone() };
                ("agency", agency_code, name.clone(), None, name, profile, subject, None)
            }
        };
        let profile = self.registrable_profile(&profile_id, &subject)?;
        subject.validate().map_err(subject_error)?;
        if let Some(rep) = &legal_representative {
            SubjectData::Enterprise { uscc: identifier.clone(), name: name.clone(), person_name: rep.clone() }
                .validate()
                .map_err(subject_error)?;
        }
        // Operators only with their legal representative's authorisation (R55, R56).
        let authorisation = match (profile.id.as_str(), authorisation) {
            ("enterprise-operator", Some(encoded)) => Some(
                crate::authorisation::verify(&self.inner.store, &encoded, &identifier, &person_name, self.now())
                    .await?,
            ),
            ("enterprise-operator", None) => {
                return Err(Error::bad(
                    "authorisation",
                    "an enterprise-operator registration needs the legal representative's signed authorisation \
                     (eport operator authorise)",
                ));
            }
            (_, Some(_)) => {
                return Err(Error::bad("authorisation", "only enterprise-operator registrations carry one"));
            }
            (_, None) => None,
        };
        let now = self.now().unix_timestamp();
        let row = RegistrationRow {
            id: random_hex(8),
            kind: kind.to_owned(),
            identifier,
            name,
            legal_representative,
            person_name,
            profile: profile.id.clone(),
            status: "pending".to_owned(),
            approvals_needed: if profile.dual_control { 2 } else { 1 },
            created_by: caller.subject.clone(),
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.inner.store.begin().await?;
        self.inner.store.insert_registration(&mut tx, &row).await?;
        if let Some(verified) = authorisation {
            let stored = store::OperatorAuthorisationRow { registration_id: row.id.clone(), ..verified.row };
            if let Err(e) = self.inner.store.insert_operator_authorisation(&mut tx, &stored).await {
                return Err(if store::is_unique_violation(&e) {
                    Error::bad("authorisation", "this authorisation was already used")
                } else {
                    e.into()
                });
            }
        }
        self.audit(caller, EventType::Registration, Some(&row.id), Ok(())).await?;
        tx.commit().await?;
        Ok(registration(&row, Vec::new()))
    }

    /// The profile `id` if registrations may name it and it takes `subject`'s kind.
    fn registrable_profile(&self, id: &str, subject: &SubjectData) -> Result<&Profile, Error> {
        const REGISTRABLE: [&str; 3] = ["enterprise-legal-rep", "enterprise-operator", "agency"];
        let profile = self
            .inner
            .profiles
            .get(id)
            .ok()
            .filter(|p| REGISTRABLE.contains(&p.id.as_str()))
            .ok_or_else(|| Error::bad("profile", format!("{id:?} is not one of {}", REGISTRABLE.join(", "))))?;
        if profile.subject.kind != subject.kind() {
            return Err(Error::bad(
                "profile",
                format!(
                    "profile {id} is for {} subjects, the registration is {}",
                    profile.subject.kind,
                    subject.kind()
                ),
            ));
        }
        Ok(profile)
    }

    /// A registration with its approvals (security or audit officer).
    ///
    /// # Errors
    /// [`Error::Forbidden`], [`Error::NotFound`], [`Error::Store`].
    pub async fn registration(&self, caller: &Caller, id: &str) -> Result<Registration, Error> {
        let result = async {
            require(
                caller,
                &[Role::SecurityOfficer, Role::AuditOfficer],
                "read registrations",
                "security_officer, audit_officer",
            )?;
            let id = registration_id(id)?;
            let mut conn = self.inner.store.pool().acquire().await?;
            let row = self
                .inner
                .store
                .registration(&mut conn, &id)
                .await?
                .ok_or_else(|| Error::NotFound { what: format!("registration {id}") })?;
            let approvals = self.inner.store.approvals(&mut conn, &id).await?;
            Ok(registration(&row, approvals))
        }
        .await;
        self.finish(caller, EventType::Rejection, Some("read_registration"), result).await
    }

    /// Approves a registration (security officer). Under dual control the first approval
    /// returns [`Approval::Pending`] and a second, different officer's returns the code.
    ///
    /// # Errors
    /// [`Error::Forbidden`]; [`Error::NotFound`]; [`Error::Conflict`] when this officer already
    /// approved or the registration is no longer pending; [`Error::AuditUnavailable`];
    /// [`Error::Store`].
    pub async fn approve(&self, caller: &Caller, registration_id: &str) -> Result<Approval, Error> {
        let object = registration_id.trim().to_ascii_lowercase();
        let result = self.approve_inner(caller, registration_id).await;
        self.finish(caller, EventType::Approval, Some(&object), result).await
    }

    async fn approve_inner(&self, caller: &Caller, id: &str) -> Result<Approval, Error> {
        require(caller, &[Role::SecurityOfficer], "approve", "security_officer")?;
        let id = registration_id(id)?;
        let store = &self.inner.store;
        let now = self.now();
        let mut tx = store.begin().await?;
        // Locks the row (PostgreSQL) so concurrent approvals of one registration are serialised.
        if !store.touch_registration(&mut tx, &id, now.unix_timestamp()).await? {
            return Err(Error::NotFound { what: format!("registration {id}") });
        }
        let row = store
            .registration(&mut tx, &id)
            .await?
            .ok_or_else(|| Error::NotFound { what: format!("registration {id}") })?;
        let approvals = store.approvals(&mut tx, &id).await?;
        if approvals.contains(&caller.subject) {
            return Err(Error::Conflict {
                what: format!(
                    "{} already approved registration {id}; a different officer must approve",
                    caller.subject
                ),
            });
        }
        if row.status != "pending" {
            return Err(Error::Conflict { what: format!("registration {id} is already {}", row.status) });
        }
        store.insert_approval(&mut tx, &id, &caller.subject, now.unix_timestamp()).await.map_err(|e| {
            if store::is_unique_violation(&e) {
                Error::Conflict { what: format!("{} already approved registration {id}", caller.subject) }
            } else {
                Error::from(e)
            }
        })?;
        let count = u32::try_from(approvals.len() + 1).unwrap_or(u32::MAX);
        let needed = u32::try_from(row.approvals_needed).unwrap_or(u32::MAX);
        let outcome = if count >= needed {
            let (code_row, approval) = self.fresh_code(&id, now);
            store.insert_code(&mut tx, &code_row).await?;
            store.set_registration_status(&mut tx, &id, "approved", now.unix_timestamp()).await?;
            approval
        } else {
            Approval::Pending { registration_id: id.clone(), approvals: count, needed }
        };
        self.audit(caller, EventType::Approval, Some(&id), Ok(())).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// A new one-time code for registration `id` made at `now`: the row to store (hash only,
    /// fresh expiry, no attempts) and the approval that shows the code once.
    fn fresh_code(&self, id: &str, now: OffsetDateTime) -> (CodeRow, Approval) {
        let (code, hash) = new_code(id);
        let expires_at = (now + self.inner.config.code_ttl()).unix_timestamp();
        let row = CodeRow {
            registration_id: id.to_owned(),
            code_hash: hash.to_vec(),
            created_at: now.unix_timestamp(),
            expires_at,
            attempts: 0,
            used_at: None,
            serial: None,
        };
        let approval = Approval::Code {
            registration_id: id.to_owned(),
            code: code.to_string(),
            expires_at,
            max_attempts: self.inner.config.enrolment.max_attempts.get(),
        };
        (row, approval)
    }

    // ---- enrolment and renewal -----------------------------------------------------------

    /// Enrols: exchanges a valid enrolment code and a certificate request (PEM) for a
    /// certificate. The subject comes from the registration, never from the request; the
    /// issuer is the one of the request's key algorithm (P-256 or SM2).
    ///
    /// # Errors
    /// [`Error::Locked`] for a locked source; [`Error::CodeInvalid`]; [`Error::BadRequest`] for
    /// an oversized, garbage or badly signed request or a key the profile does not allow;
    /// [`Error::Lint`]; [`Error::AuditUnavailable`]; [`Error::Store`]; [`Error::Internal`].
    pub async fn enrol(&self, caller: &Caller, code: &str, csr_pem: &str) -> Result<Issued, Error> {
        let object = code.split('.').next().map(|id| id.trim().to_ascii_lowercase());
        let result = self.enrol_inner(caller, code, csr_pem).await;
        self.finish(caller, EventType::Enrolment, object.as_deref(), result).await
    }

    async fn enrol_inner(&self, caller: &Caller, code: &str, csr_pem: &str) -> Result<Issued, Error> {
        let source = source_key(caller.source);
        let registration = self.check_code(caller, &source, code, self.now()).await?;
        let profile = self.inner.profiles.get(&registration.profile).map_err(|e| Error::internal("profile", e))?;
        let (spki_der, key_type) = self.check_csr(csr_pem, profile)?;
        let issuer = self.issuer_for(key_type)?;
        self.issue(caller, issuer, profile, &registration, spki_der, true).await
    }

    /// Checks that `source` is not locked out, then the enrolment code, and returns its
    /// (approved) registration; refusals of the code are audited here with their real reason
    /// and counted (see the module documentation).
    async fn check_code(
        &self,
        caller: &Caller,
        source: &str,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<RegistrationRow, Error> {
        let store = &self.inner.store;
        let refuse = async |object: Option<&str>, reason: &str| -> Result<RegistrationRow, Error> {
            self.audit(caller, EventType::Enrolment, object, Err(reason)).await?;
            self.count_failure(caller, source, reason).await?;
            Err(Error::CodeInvalid)
        };
        let now_secs = now.unix_timestamp();
        let parsed = parse_code(code);
        // One read for the lock, the code and its registration (no code for a malformed one:
        // no registration id is empty); the registration is only looked at once the code is right.
        let id_or_none = parsed.as_ref().map_or("", |(id, _)| id.as_str());
        let (locked, found) = store.code_with_registration(id_or_none, source, now_secs).await?;
        if let Some(until) = locked {
            return Err(Error::Locked { until });
        }
        let Some((id, secret)) = parsed else {
            return refuse(None, "malformed enrolment code").await;
        };
        let Some((row, registration)) = found else {
            return refuse(Some(&id), "no enrolment code for this registration").await;
        };
        if row.used_at.is_some() {
            return refuse(Some(&id), "enrolment code already used").await;
        }
        if row.expires_at <= now_secs {
            return refuse(Some(&id), "enrolment code expired").await;
        }
        let max_attempts = i64::from(self.inner.config.enrolment.max_attempts.get());
        if row.attempts >= max_attempts {
            return refuse(Some(&id), "enrolment code burnt after too many wrong attempts").await;
        }
        if !constant_time_eq(&Sha256::digest(secret.as_bytes()), &row.code_hash) {
            store.add_code_attempt(&id).await?;
            return refuse(
                Some(&id),
                &format!("wrong enrolment code (attempt {} of {max_attempts})", row.attempts + 1),
            )
            .await;
        }
        match registration {
            Some(registration) if registration.status == "approved" => Ok(registration),
            _ => refuse(Some(&id), "registration not in the approved state").await,
        }
    }

    /// Parses and checks a certificate request: size, PEM/DER, proof of possession, and a key
    /// the profile allows. Returns the SubjectPublicKeyInfo (DER) and the key type.
    fn check_csr(&self, csr_pem: &str, profile: &Profile) -> Result<(Vec<u8>, KeyType), Error> {
        let limit = self.inner.config.enrolment.max_csr_bytes.get();
        if csr_pem.len() > limit {
            return Err(Error::bad("csr", format!("{} bytes, more than the limit of {limit}", csr_pem.len())));
        }
        let req = signer_lib::csr::parse_and_verify(csr_pem.as_bytes()).map_err(|e| match e {
            signer_lib::Error::BadSignature(reason) => {
                Error::bad("csr", format!("the signature does not verify (no proof of possession): {reason}"))
            }
            signer_lib::Error::UnsupportedAlgorithm { oid } => {
                Error::bad("key", format!("unsupported algorithm {oid}"))
            }
            signer_lib::Error::InvalidPublicKey(reason) => Error::bad("key", reason),
            other => Error::bad("csr", other.to_string()),
        })?;
        let spki_der = req.info.public_key.to_der().map_err(|e| Error::bad("csr", e.to_string()))?;
        let spki = spki::SubjectPublicKeyInfoRef::from_der(&spki_der).map_err(|e| Error::bad("csr", e.to_string()))?;
        let key_type = KeyType::of_spki(&spki).map_err(|e| Error::bad("key", e.to_string()))?;
        let allowed = policies::profile::KeyAlgorithm::of_key_type(key_type).is_some_and(|a| profile.allows(a));
        if !allowed {
            return Err(Error::bad(
                "key",
                format!(
                    "profile {} does not allow {key_type:?} keys (allowed: {})",
                    profile.id,
                    profile.key_algorithms.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        Ok((spki_der, key_type))
    }

    /// The issuer whose key algorithm matches a subject key of `key_type`.
    fn issuer_for(&self, key_type: KeyType) -> Result<&Issuer, Error> {
        self.inner
            .issuers
            .values()
            .find(|i| i.key_type == key_type)
            .ok_or_else(|| Error::bad("key", format!("no issuing CA for {key_type:?} keys")))
    }

    /// Renews: a subscriber or platform, identified by a currently valid certificate of
    /// ours, gets a new certificate for a new request, with the same subject and profile.
    /// The old certificate stays valid (revoke it with reason `superseded` if wanted).
    ///
    /// # Errors
    /// [`Error::Forbidden`]; [`Error::Unauthenticated`] when the caller's certificate is not
    /// (or no longer) valid; [`Error::BadRequest`]; [`Error::Lint`];
    /// [`Error::AuditUnavailable`]; [`Error::Store`].
    pub async fn renew(&self, caller: &Caller, csr_pem: &str) -> Result<Issued, Error> {
        let result = self.renew_inner(caller, csr_pem).await;
        self.finish(caller, EventType::Enrolment, Some(&caller.serial_hex), result).await
    }

    async fn renew_inner(&self, caller: &Caller, csr_pem: &str) -> Result<Issued, Error> {
        require(caller, &[Role::Subscriber, Role::Platform], "renew", "subscriber, platform")?;
        let now = self.now().unix_timestamp();
        let current = self
            .inner
            .store
            .certificate(&caller.serial_hex.to_ascii_lowercase())
            .await?
            .filter(|row| row.status == "good" && row.not_before <= now && now <= row.not_after)
            .ok_or_else(|| Error::Unauthenticated { reason: "the client certificate is not currently valid".into() })?;
        let registration_id = current
            .registration_id
            .ok_or_else(|| Error::bad("certificate", "this certificate was not issued for a registration"))?;
        let mut conn = self.inner.store.pool().acquire().await?;
        let registration = self
            .inner
            .store
            .registration(&mut conn, &registration_id)
            .await?
            .ok_or_else(|| Error::NotFound { what: format!("registration {registration_id}") })?;
        drop(conn);
        let profile = self.inner.profiles.get(&registration.profile).map_err(|e| Error::internal("profile", e))?;
        let (spki_der, key_type) = self.check_csr(csr_pem, profile)?;
        let issuer = self.issuer_for(key_type)?;
        self.issue(caller, issuer, profile, &registration, spki_der, false).await
    }

    /// Issues a certificate for `registration` durably (see the module documentation).
    async fn issue(
        &self,
        caller: &Caller,
        issuer: &Issuer,
        profile: &Profile,
        registration: &RegistrationRow,
        spki_der: Vec<u8>,
        claim_code: bool,
    ) -> Result<Issued, Error> {
        let store = &self.inner.store;
        let subject = subject_of(registration);
        let subject_name = subject.to_name().map_err(subject_error)?.to_string();
        let now = self.now();
        let (not_before, not_after) = validity(now, profile, Some(&issuer.ca));
        let uscc = (registration.kind == "enterprise").then(|| registration.identifier.clone());

        // 1. Reserve the serial (and claim the code), committed before anything is signed.
        let claim = claim_code.then(|| store::Claim {
            registration_id: registration.id.clone(),
            max_attempts: i64::from(self.inner.config.enrolment.max_attempts.get()),
        });
        let mut attempts = 0;
        let (serial, serial_hex) = loop {
            attempts += 1;
            let serial = policies::random_serial();
            let serial_hex = hex::encode(serial.as_bytes());
            let row = NewCertificate {
                serial: serial_hex.clone(),
                issuer: issuer.id.clone(),
                subject: subject_name.clone(),
                profile: profile.id.clone(),
                registration_id: Some(registration.id.clone()),
                uscc: uscc.clone(),
                not_before: not_before.unix_timestamp(),
                not_after: not_after.unix_timestamp(),
            };
            match self.inner.issuance.reserve(row, claim.clone(), now.unix_timestamp()).await? {
                Reservation::Reserved => break (serial, serial_hex),
                Reservation::CodeGone => {
                    self.audit(
                        caller,
                        EventType::Enrolment,
                        Some(&registration.id),
                        Err("enrolment code claimed meanwhile"),
                    )
                    .await?;
                    return Err(Error::CodeInvalid);
                }
                Reservation::SerialTaken if attempts < 3 => {}
                Reservation::SerialTaken => {
                    return Err(Error::Internal("three random serials in a row were taken".into()));
                }
            }
        };

        // 2. Lint, then sign with the issuing key (off the async threads: it may be a device).
        let request_profile = Arc::new(profile.clone());
        let (ca, signer) = (Arc::clone(&issuer.ca), Arc::clone(&issuer.signer));
        let urls = issuer.urls.clone();
        let signed = tokio::task::spawn_blocking(move || {
            let request = policies::IssueRequest {
                profile: &request_profile,
                subject,
                subject_spki_der: spki_der,
                not_before,
                not_after,
                serial,
                urls,
            };
            policies::issue_with_warnings(Some(&ca), &*signer, &request, not_before)
        })
        .await
        .map_err(|e| Error::internal("issuing task", e));
        let certificate = match signed {
            Ok(Ok((certificate, _warnings))) => certificate,
            Ok(Err(e)) => {
                self.abandon(&serial_hex, claim_code.then_some(registration.id.as_str())).await;
                return Err(match e {
                    policies::Error::Lint(findings) => {
                        let text = Error::Lint(findings.clone()).to_string();
                        self.audit(caller, EventType::LintFailed, Some(&serial_hex), Err(&text)).await?;
                        Error::Lint(findings)
                    }
                    other => subject_error(other),
                });
            }
            Err(e) => {
                self.abandon(&serial_hex, claim_code.then_some(registration.id.as_str())).await;
                return Err(e);
            }
        };
        let der = certificate.to_der().map_err(|e| Error::internal("certificate", e))?;
        let certificate_pem = pem(&certificate)?;

        // 3. Audit and mark issued (`audit_pending`), both at once; fail closed.
        let enrolled = claim_code.then(|| registration.id.clone());
        let (audited, marked) = tokio::join!(
            self.audit(caller, EventType::Issue, Some(&serial_hex), Ok(())),
            self.inner.issuance.issued(serial_hex.clone(), der, enrolled, self.now().unix_timestamp()),
        );
        let marked = match marked {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Internal(format!("serial {serial_hex} is no longer reserved"))),
            Err(e) => Err(e),
        };
        match (audited, marked) {
            (Ok(()), Ok(())) => {}
            (Err(e), Ok(())) => {
                // Marked issued, never audited, never released: take it back (if that fails
                // too, the next start finds the row pending without its record and does it).
                let _ = store.unissue(&serial_hex, self.now().unix_timestamp()).await;
                return Err(e);
            }
            (Ok(()), Err(e)) => {
                // Not released; the audit log shows the Issue record followed by this failure.
                let _ = store.mark_abandoned(&serial_hex, self.now().unix_timestamp()).await;
                let _ = self
                    .audit(caller, EventType::Issue, Some(&serial_hex), Err("not recorded as issued; abandoned"))
                    .await;
                return Err(e);
            }
            (Err(e), Err(_)) => {
                self.abandon(&serial_hex, claim_code.then_some(registration.id.as_str())).await;
                return Err(e);
            }
        }

        // 4. Release, and clear `audit_pending` in a later batch (nobody waits for that).
        self.inner.issuance.audited(serial_hex.clone());
        Ok(Issued {
            certificate_pem,
            chain_pem: issuer.chain_pem.clone(),
            serial_hex,
            profile: profile.id.clone(),
            issuer: issuer.id.clone(),
            not_after: not_after.unix_timestamp(),
        })
    }

    /// Marks a reserved serial abandoned and gives the code back (best effort: if the
    /// database is down, recovery at the next start abandons it).
    async fn abandon(&self, serial_hex: &str, code_of: Option<&str>) {
        let store = &self.inner.store;
        let _ = store.mark_abandoned(serial_hex, self.now().unix_timestamp()).await;
        if let Some(registration_id) = code_of {
            let _ = store.release_code(registration_id).await;
        }
    }

    // ---- revocation ----------------------------------------------------------------------

    /// Revokes a certificate (security officer; or the subscriber itself, for
    /// `keyCompromise`, for certificates of its own registration). `reason` is an RFC 5280
    /// name. The issuer's CRL is regenerated.
    ///
    /// # Errors
    /// [`Error::Forbidden`]; [`Error::BadRequest`] for a bad serial or reason;
    /// [`Error::NotFound`]; [`Error::Conflict`] when already revoked or never issued;
    /// [`Error::AuditUnavailable`]; [`Error::Store`].
    pub async fn revoke(&self, caller: &Caller, serial_hex: &str, reason: &str) -> Result<CertificateInfo, Error> {
        let object = serial_hex.trim().to_ascii_lowercase();
        let result = self.revoke_inner(caller, serial_hex, reason).await;
        self.finish(caller, EventType::Revoke, Some(&object), result).await
    }

    async fn revoke_inner(&self, caller: &Caller, serial_hex: &str, reason: &str) -> Result<CertificateInfo, Error> {
        let serial = parse_serial(serial_hex)?;
        let reason: RevocationReason = reason.trim().parse()?;
        if !RevocationReason::FOR_END_ENTITIES.contains(&reason) {
            return Err(Error::bad(
                "reason",
                format!("{reason} cannot be used here (certificateHold: use hold; removeFromCRL: delta CRLs only)"),
            ));
        }
        match caller.role {
            Some(Role::SecurityOfficer) => {}
            Some(Role::Subscriber) if reason == RevocationReason::KeyCompromise => {
                let own = self.inner.store.certificate(&caller.serial_hex.to_ascii_lowercase()).await?;
                let target = self.inner.store.certificate(&serial).await?;
                let same_registration = matches!((&own, &target), (Some(o), Some(t))
                    if o.registration_id.is_some() && o.registration_id == t.registration_id);
                if !same_registration {
                    return Err(Error::Forbidden {
                        action: "revoke another subscriber's certificate",
                        allowed: "security_officer",
                    });
                }
            }
            Some(Role::Subscriber) => {
                return Err(Error::Forbidden {
                    action: "revoke for a reason other than keyCompromise",
                    allowed: "security_officer",
                });
            }
            _ => {
                return Err(Error::Forbidden {
                    action: "revoke",
                    allowed: "security_officer, subscriber (keyCompromise)",
                });
            }
        }
        let now = self.now().unix_timestamp();
        self.transition(caller, &serial, &["good", "hold"], "revoked", Some((now, reason.code())), EventType::Revoke)
            .await
    }

    /// Suspends a certificate (certificateHold; security officer). Only a good certificate
    /// can be put on hold.
    ///
    /// # Errors
    /// As [`Self::revoke`].
    pub async fn hold(&self, caller: &Caller, serial_hex: &str) -> Result<CertificateInfo, Error> {
        let object = serial_hex.trim().to_ascii_lowercase();
        let result = async {
            require(caller, &[Role::SecurityOfficer], "hold", "security_officer")?;
            let serial = parse_serial(serial_hex)?;
            let now = self.now().unix_timestamp();
            let hold = Some((now, RevocationReason::CertificateHold.code()));
            self.transition(caller, &serial, &["good"], "hold", hold, EventType::Suspend).await
        }
        .await;
        self.finish(caller, EventType::Suspend, Some(&object), result).await
    }

    /// Releases a certificate from hold (security officer); only from hold.
    ///
    /// # Errors
    /// As [`Self::revoke`].
    pub async fn release(&self, caller: &Caller, serial_hex: &str) -> Result<CertificateInfo, Error> {
        let object = serial_hex.trim().to_ascii_lowercase();
        let result = async {
            require(caller, &[Role::SecurityOfficer], "release", "security_officer")?;
            let serial = parse_serial(serial_hex)?;
            self.transition(caller, &serial, &["hold"], "good", None, EventType::Resume).await
        }
        .await;
        self.finish(caller, EventType::Resume, Some(&object), result).await
    }

    /// Moves a certificate between statuses, audited inside the transaction, then
    /// regenerates its issuer's CRL.
    async fn transition(
        &self,
        caller: &Caller,
        serial: &str,
        from: &[&'static str],
        to: &'static str,
        revocation: Option<(i64, i64)>,
        event: EventType,
    ) -> Result<CertificateInfo, Error> {
        let store = &self.inner.store;
        let now = self.now().unix_timestamp();
        let mut tx = store.begin().await?;
        if !store.change_status(&mut tx, serial, from, to, revocation, now).await? {
            drop(tx);
            return Err(match store.certificate(serial).await? {
                None => Error::NotFound { what: format!("certificate {serial}") },
                Some(row) => Error::Conflict {
                    what: format!("certificate {serial} is {}; {} needs {}", row.status, event, from.join(" or ")),
                },
            });
        }
        self.audit(caller, event, Some(serial), Ok(())).await?;
        tx.commit().await?;
        let row = store
            .certificate(serial)
            .await?
            .ok_or_else(|| Error::NotFound { what: format!("certificate {serial}") })?;
        if let Err(e) = self.regenerate_crl(&row.issuer).await {
            // The change is committed and audited; the scheduled regeneration catches up.
            tracing::warn!(issuer = %row.issuer, error = %e, "CRL regeneration after a status change failed");
        }
        Ok(CertificateInfo::from_row(&row))
    }

    // ---- listing -------------------------------------------------------------------------

    /// Lists certificates (security or audit officer; read-only).
    ///
    /// # Errors
    /// [`Error::Forbidden`]; [`Error::BadRequest`] for a bad serial or status;
    /// [`Error::Store`].
    pub async fn list_certificates(
        &self,
        caller: &Caller,
        filter: CertificateFilter,
    ) -> Result<Vec<CertificateInfo>, Error> {
        let result = async {
            require(
                caller,
                &[Role::SecurityOfficer, Role::AuditOfficer],
                "list certificates",
                "security_officer, audit_officer",
            )?;
            let serial = filter.serial.as_deref().map(parse_serial).transpose()?;
            let status = match filter.status.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(s) => Some(
                    CertificateStatus::from_name(&s.to_ascii_lowercase()).map(|_| s.to_ascii_lowercase()).ok_or_else(
                        || Error::bad("status", format!("{s:?} is not good, revoked, hold, issuing or abandoned")),
                    )?,
                ),
            };
            let uscc = filter.uscc.as_deref().map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned);
            let limit = i64::from(filter.limit.unwrap_or(MAX_LIST).clamp(1, MAX_LIST));
            let rows = self.inner.store.list_certificates(&ListFilter { uscc, status, serial, limit }).await?;
            Ok(rows.iter().map(CertificateInfo::from_row).collect())
        }
        .await;
        self.finish(caller, EventType::Rejection, Some("list_certificates"), result).await
    }

    // ---- CRLs ----------------------------------------------------------------------------

    /// The latest CRL of `issuer_id` (DER), generated first if there is none or it is past
    /// its nextUpdate; `p256-root` / `sm2-root` give the root's CRL (ARL).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown issuer; as [`Self::regenerate_crl`].
    pub async fn crl_der(&self, issuer_id: &str) -> Result<Vec<u8>, Error> {
        if let Some(id) = issuer_id.strip_suffix("-root") {
            // The root's CRL, signed by the (offline) root key in the ceremony and re-signed by
            // `eport-ca root-crl` (crate::root_crl); read per request, so a new one is served at once.
            self.issuer(id)?;
            let path = self.inner.data_dir.join("crl").join(format!("{id}-root.crl"));
            return std::fs::read(&path).map_err(|e| Error::io(path, e));
        }
        self.issuer(issuer_id)?;
        let now = self.now().unix_timestamp();
        match self.inner.store.latest_crl(issuer_id).await? {
            Some(crl) if crl.next_update > now => Ok(crl.der),
            _ => Ok(self.regenerate_crl(issuer_id).await?.der),
        }
    }

    /// Regenerates every issuer's CRL; `serve` calls this every
    /// [`Config::crl_regeneration_interval`].
    ///
    /// # Errors
    /// The first failure, after trying every issuer.
    pub async fn regenerate_crls(&self) -> Result<(), Error> {
        let mut first_error = None;
        for id in self.issuer_ids() {
            if let Err(e) = self.regenerate_crl(&id).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Generates, signs and stores a new CRL for `issuer_id`, with the next cRLNumber, in one
    /// transaction (the number is used only if the CRL is stored), audited before commit.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Store`]; [`Error::Internal`] when signing fails;
    /// [`Error::AuditUnavailable`].
    pub async fn regenerate_crl(&self, issuer_id: &str) -> Result<CrlRow, Error> {
        let issuer = self.issuer(issuer_id)?;
        let store = &self.inner.store;
        let this_update = whole_seconds(self.now());
        let next_update = this_update + self.inner.config.crl_validity();
        let mut tx = store.begin().await?;
        let number = store.next_crl_number(&mut tx, issuer_id).await?;
        let rows = store.revoked_entries(&mut tx, issuer_id, this_update.unix_timestamp()).await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            entries.push(CrlEntry {
                serial: hex::decode(&row.serial).map_err(|e| Error::internal("stored serial", e))?,
                revoked_at: OffsetDateTime::from_unix_timestamp(row.revoked_at)
                    .map_err(|e| Error::internal("stored revocation time", e))?,
                reason: RevocationReason::from_code(row.reason).unwrap_or(RevocationReason::Unspecified),
            });
        }
        let (ca, signer) = (Arc::clone(&issuer.ca), Arc::clone(&issuer.signer));
        let crl_number = u64::try_from(number).map_err(|e| Error::internal("cRLNumber", e))?;
        let crl = tokio::task::spawn_blocking(move || {
            crl::build(&ca, &*signer, crl_number, this_update, next_update, &entries)
        })
        .await
        .map_err(|e| Error::internal("CRL task", e))??;
        let der = crl.to_der().map_err(|e| Error::internal("CRL", e))?;
        let row = CrlRow {
            number,
            this_update: this_update.unix_timestamp(),
            next_update: next_update.unix_timestamp(),
            der,
        };
        store.store_crl(&mut tx, issuer_id, &row).await?;
        self.system_audit(EventType::CrlIssued, Some(&format!("{issuer_id} crl {number}")), Ok(())).await?;
        tx.commit().await?;
        Ok(row)
    }
}

/// Refuses a caller whose role is not in `roles`.
fn require(caller: &Caller, roles: &[Role], action: &'static str, allowed: &'static str) -> Result<(), Error> {
    match caller.role {
        Some(role) if roles.contains(&role) => Ok(()),
        _ => Err(Error::Forbidden { action, allowed }),
    }
}

/// Maps a policies error about the request to a client error, others to internal ones.
fn subject_error(e: policies::Error) -> Error {
    match e {
        policies::Error::InvalidUscc { .. } => Error::bad("uscc", e.to_string()),
        policies::Error::InvalidSubject { .. } | policies::Error::SubjectKindMismatch { .. } => {
            Error::bad("subject", e.to_string())
        }
        policies::Error::KeyAlgorithmNotAllowed { .. } => Error::bad("key", e.to_string()),
        policies::Error::Lint(findings) => Error::Lint(findings),
        other => Error::internal("issuing", other),
    }
}

fn subject_of(row: &RegistrationRow) -> SubjectData {
    if row.kind == "agency" {
        SubjectData::Agency { agency_code: row.identifier.clone(), name: row.name.clone() }
    } else {
        SubjectData::Enterprise {
            uscc: row.identifier.clone(),
            name: row.name.clone(),
            person_name: row.person_name.clone(),
        }
    }
}

fn registration(row: &RegistrationRow, approvals: Vec<String>) -> Registration {
    Registration {
        id: row.id.clone(),
        kind: row.kind.clone(),
        identifier: row.identifier.clone(),
        name: row.name.clone(),
        legal_representative: row.legal_representative.clone(),
        person_name: row.person_name.clone(),
        profile: row.profile.clone(),
        status: RegistrationStatus::from_name(&row.status),
        created_by: row.created_by.clone(),
        created_at: row.created_at,
        approvals,
        approvals_needed: u32::try_from(row.approvals_needed).unwrap_or(u32::MAX),
    }
}

/// A serial from the API: hex, any case, no colons, at most 20 octets; returned lowercase.
fn parse_serial(serial: &str) -> Result<String, Error> {
    let serial = serial.trim();
    if serial.is_empty() || serial.len() > 40 || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::bad("serial", "expected 1-40 hexadecimal digits without colons"));
    }
    let serial = serial.to_ascii_lowercase();
    // Serials are stored as the DER content octets: an even number of digits.
    Ok(if serial.len() % 2 == 1 { format!("0{serial}") } else { serial })
}

/// A registration id from the API: 16 hex digits; returned lowercase.
fn registration_id(id: &str) -> Result<String, Error> {
    let id = id.trim();
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(Error::NotFound { what: format!("registration {id:?}") })
    }
}

/// `n` random bytes as lowercase hex.
fn random_hex(n: usize) -> String {
    use rand_core::RngCore as _;
    let mut bytes = vec![0u8; n];
    rand_core::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A new enrolment code for registration `id` and the SHA-256 of its secret part.
fn new_code(id: &str) -> (Zeroizing<String>, [u8; 32]) {
    use rand_core::RngCore as _;
    let mut secret = Zeroizing::new([0u8; 16]);
    rand_core::OsRng.fill_bytes(secret.as_mut());
    let secret = Zeroizing::new(base32(secret.as_ref()));
    let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    (Zeroizing::new(format!("{id}.{}", secret.as_str())), hash)
}

/// Splits a code into (registration id, secret), normalising case; `None` when malformed.
fn parse_code(code: &str) -> Option<(String, String)> {
    let (id, secret) = code.trim().split_once('.')?;
    let id = registration_id(id).ok()?;
    let secret = secret.trim().to_ascii_uppercase();
    (secret.len() == 26 && secret.bytes().all(|b| BASE32.contains(&b))).then_some((id, secret))
}

/// RFC 4648 base32 alphabet.
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u16, 0u32);
    let mut push = |index: u16| out.push(char::from(BASE32[usize::from(index & 31)]));
    for &byte in bytes {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            push(buffer >> bits);
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        push(buffer << (5 - bits));
    }
    out
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn pem(cert: &Certificate) -> Result<String, Error> {
    signer_lib::certificate::to_pem(cert).map_err(|e| Error::internal("PEM", e))
}

/// The HTTPS listener's material: `<data>/certs/<file>` (leaf, issuing CA, root) and key
/// `key_name` — `tls-server.pem` and `tls-server` from the ceremony, or the latest
/// `eport-ca rotate tls` generation ([`crate::rotation::current_tls`]).
fn tls_material(
    data_dir: &Path,
    keys: &KeyStore,
    issuers: &BTreeMap<String, Issuer>,
    (file, key_name): &(String, String),
) -> Result<TlsMaterial, Error> {
    let path: PathBuf = data_dir.join("certs").join(file);
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let chain = signer_lib::certificate::parse_chain(&text).map_err(|e| Error::internal("TLS server chain", e))?;
    let server_chain_der =
        chain.iter().map(Encode::to_der).collect::<Result<Vec<_>, _>>().map_err(|e| Error::internal("TLS chain", e))?;
    let server_signer = keys.open(key_name)?;
    if let Some(leaf) = chain.first() {
        signer_lib::key::check_matches_certificate(&*server_signer, leaf)
            .map_err(|e| Error::Key { name: key_name.clone(), reason: e.to_string() })?;
    }
    let client_ca_der = issuers.get("p256").map(|i| vec![i.ca_der.clone(), i.root_der.clone()]).unwrap_or_default();
    Ok(TlsMaterial {
        server_chain_der,
        server_key_pkcs8_der: keys.software_pkcs8(key_name)?,
        server_signer,
        client_ca_der,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_base32_as_rfc_4648() {
        // RFC 4648 §10 test vectors (without padding).
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fo"), "MZXQ");
        assert_eq!(base32(b"foo"), "MZXW6");
        assert_eq!(base32(b"foob"), "MZXW6YQ");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(&[0xff; 16]).len(), 26);
    }

    #[test]
    fn codes_carry_their_registration_and_128_bits() {
        let (code, hash) = new_code("0123456789abcdef");
        let (id, secret) = parse_code(&code).unwrap();
        assert_eq!(id, "0123456789abcdef");
        assert_eq!(secret.len(), 26);
        assert_eq!(<[u8; 32]>::from(Sha256::digest(secret.as_bytes())), hash);
        assert_eq!(parse_code(&code.to_lowercase()).unwrap().1, secret);
        assert!(parse_code("0123456789abcdef").is_none());
        assert!(parse_code("xyz.ABC").is_none());
        assert!(parse_code("0123456789abcdef.AAAA").is_none());
        assert_ne!(new_code("0123456789abcdef").0.as_str(), code.as_str());
    }

    #[test]
    fn parses_serials_in_any_case_without_colons() {
        assert_eq!(parse_serial("4F0A").unwrap(), "4f0a");
        assert_eq!(parse_serial("f0a").unwrap(), "0f0a");
        assert!(parse_serial("4f:0a").is_err());
        assert!(parse_serial("").is_err());
        assert!(parse_serial(&"a".repeat(41)).is_err());
    }

    #[test]
    fn compares_in_constant_time_but_correctly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
