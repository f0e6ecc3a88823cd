//! What the administrator's offline commands share: `eport-ca rotate …` ([`crate::rotation`])
//! and `eport-ca officer add` ([`crate::officer`]).
//!
//! They are run by the system administrator on the CA host, with the data directory and the
//! configured key backends at hand, like `init`, while `serve` is stopped (they take the data
//! directory's lock, [`crate::lock`]). They do not open a [`Ca`]: that records a
//! service start and marks serials another process is issuing `abandoned`, which is right for
//! the one `serve` process and wrong beside it. Instead they open the key store, the CA
//! database and the audit log (appending with the audit key, as `serve` does; a second writer
//! waits for the first), change what they change in one database transaction with their audit
//! records appended before it commits, and sign an audit head when done. What they make is
//! used by the next `serve` start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use der::Encode;
use policies::{IssueRequest, IssuerUrls, Profiles, SubjectData};
use signer_lib::Signer;
use signer_lib::audit::{Actor, AuditLog, AuditRecord, EventType};
use time::OffsetDateTime;
use x509_cert::Certificate;

use crate::clock::{Clock, unix_millis, whole_seconds};
use crate::config::Config;
use crate::keys::KeyStore;
use crate::lock::DataLock;
use crate::service::validity;
use crate::store::{IssuerRow, NewCertificate, Store};
use crate::{Ca, Error};

/// The audit actor of the offline administrator commands.
pub const ADMIN_ACTOR: &str = "eport-ca-admin";

/// An open administrator session on a data directory.
#[derive(Debug)]
pub(crate) struct Admin {
    pub(crate) data_dir: PathBuf,
    pub(crate) config: Config,
    pub(crate) keys: KeyStore,
    pub(crate) store: Store,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    profiles: Profiles,
    /// Held until the command ends: no `serve` beside it (see [`crate::lock`]).
    _lock: DataLock,
}

impl Admin {
    /// Opens `data_dir` (which must hold a CA) for an administrator command.
    pub(crate) async fn open(data_dir: &Path, config: &Config, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        if !Ca::is_initialised(data_dir) {
            return Err(Error::NotInitialised { data_dir: data_dir.to_owned() });
        }
        let lock = DataLock::acquire(data_dir, "an administrator command")?;
        let keys = KeyStore::new(data_dir, config)?;
        let store =
            Store::connect(&config.database_url(data_dir), config.database.max_connections.get(), false).await?;
        let audit = AuditLog::open_writer(&config.audit_url(data_dir), keys.open("audit")?)
            .await
            .map_err(|e| Error::AuditUnavailable(format!("cannot open the audit log: {e}")))?;
        let profiles = Profiles::embedded().map_err(|e| Error::internal("profiles", e))?;
        Ok(Self {
            data_dir: data_dir.to_owned(),
            config: config.clone(),
            keys,
            store,
            audit,
            clock,
            profiles,
            _lock: lock,
        })
    }

    /// Signs an audit head over what was appended, and closes the log and the database.
    pub(crate) async fn close(self) -> Result<(), Error> {
        let signed = self.audit.sign_head().await.map(|_| ()).map_err(|e| Error::AuditUnavailable(e.to_string()));
        self.audit.close().await;
        self.store.close().await;
        signed
    }

    /// Now, in whole seconds.
    pub(crate) fn now(&self) -> OffsetDateTime {
        whole_seconds(self.clock.now())
    }

    /// Appends a record of this command; a failure stops it (fail closed).
    pub(crate) async fn record(&self, event: EventType, object: &str) -> Result<(), Error> {
        let record = AuditRecord::new(unix_millis(self.clock.now()), Actor::account(ADMIN_ACTOR), event)
            .role(signer_lib::audit::Role::System)
            .object(object);
        self.audit.append(&record).await.map(|_| ()).map_err(|e| Error::AuditUnavailable(e.to_string()))
    }

    /// The issuer hierarchy `id`.
    pub(crate) async fn issuer_row(&self, id: &str) -> Result<IssuerRow, Error> {
        self.store
            .issuers()
            .await?
            .into_iter()
            .find(|row| row.id == id)
            .ok_or_else(|| Error::NotFound { what: format!("issuer {id}") })
    }

    /// The issuing CA certificate of `row` and its key, checked to match.
    pub(crate) fn issuing(&self, row: &IssuerRow) -> Result<(Certificate, Arc<dyn Signer>), Error> {
        let ca = signer_lib::certificate::parse(&row.issuing_der).map_err(|e| Error::internal("issuing CA", e))?;
        let signer = self.keys.open(&row.issuing_key)?;
        signer_lib::key::check_matches_certificate(&*signer, &ca)
            .map_err(|e| Error::Key { name: row.issuing_key.clone(), reason: e.to_string() })?;
        Ok((ca, signer))
    }

    /// Issues a certificate of `profile_id` for `subject_key` under `issuer` (linted first,
    /// signed off the async threads), audited (`Issue`) after signing.
    pub(crate) async fn issue(
        &self,
        profile_id: &str,
        subject: SubjectData,
        subject_spki_der: Vec<u8>,
        issuer: (&Certificate, &Arc<dyn Signer>),
        urls: IssuerUrls,
    ) -> Result<Certificate, Error> {
        let profile = self.profiles.get(profile_id).map_err(|e| Error::internal("profile", e))?.clone();
        let now = self.now();
        let (not_before, not_after) = validity(now, &profile, Some(issuer.0));
        let (ca, signer) = (issuer.0.clone(), Arc::clone(issuer.1));
        let signed = tokio::task::spawn_blocking(move || {
            let request = IssueRequest {
                profile: &profile,
                subject,
                subject_spki_der,
                not_before,
                not_after,
                serial: policies::random_serial(),
                urls,
            };
            policies::issue(Some(&ca), &*signer, &request, now)
        })
        .await
        .map_err(|e| Error::internal("issuing task", e))?;
        let certificate = match signed {
            Ok(certificate) => certificate,
            Err(policies::Error::Lint(findings)) => {
                let text = Error::Lint(findings.clone()).to_string();
                self.record(EventType::LintFailed, &text).await?;
                return Err(Error::Lint(findings));
            }
            Err(policies::Error::InvalidSubject { .. } | policies::Error::SubjectKindMismatch { .. }) => {
                return Err(Error::bad("name", "not acceptable in a certificate subject"));
            }
            Err(other) => return Err(Error::internal(profile_id, other)),
        };
        self.record(EventType::Issue, &serial_hex(&certificate)).await?;
        Ok(certificate)
    }
}

/// The database row of a certificate the ceremony or an administrator command issued (status
/// `good`), with its DER.
pub(crate) fn certificate_row(
    issuer: &str,
    profile: &str,
    cert: &Certificate,
) -> Result<(NewCertificate, Vec<u8>), Error> {
    let validity = &cert.tbs_certificate.validity;
    let seconds = |t| policies::issuer::offset_date_time(t).map_or(0, OffsetDateTime::unix_timestamp);
    Ok((
        NewCertificate {
            serial: serial_hex(cert),
            issuer: issuer.to_owned(),
            subject: cert.tbs_certificate.subject.to_string(),
            profile: profile.to_owned(),
            registration_id: None,
            uscc: None,
            not_before: seconds(validity.not_before),
            not_after: seconds(validity.not_after),
        },
        cert.to_der().map_err(|e| Error::internal("certificate", e))?,
    ))
}

/// A certificate's notAfter.
pub(crate) fn not_after(cert: &Certificate) -> OffsetDateTime {
    policies::issuer::offset_date_time(cert.tbs_certificate.validity.not_after).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A certificate's serial, lowercase hex.
pub(crate) fn serial_hex(cert: &Certificate) -> String {
    hex::encode(cert.tbs_certificate.serial_number.as_bytes())
}

/// A certificate as PEM.
pub(crate) fn pem(cert: &Certificate) -> Result<String, Error> {
    signer_lib::certificate::to_pem(cert).map_err(|e| Error::internal("PEM", e))
}

/// A time as RFC 3339, for reports.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string())
}
