//! Adding an administrator: `eport-ca officer add --data DIR [--config FILE] --role ROLE
//! --name NAME`.
//!
//! Issues an officer certificate (profile `officer`, P-256, under the P-256 issuing CA, the
//! only one rustls accepts client certificates from) for a new key, and registers the identity
//! with its one role. The key is written as the bootstrap identities are:
//! `<data>/officers/<name>.crt`, `<name>.key` (PKCS#8 encrypted with a generated passphrase)
//! and `<name>.pass`, all mode 0600; hand them to the officer, move the key onto a token and
//! delete the `.pass` file.
//!
//! Roles stay disjoint (三权分立): one identity holds one role, so a name that exists (any
//! role, bootstrap or added) is refused; giving someone a second role is not possible, and
//! giving them a different one means a new identity. The name is the identity's login name,
//! the certificate's commonName and the file name: 1-64 characters `A-Z a-z 0-9 . _ -`, not
//! starting with `.` or `-`.
//!
//! This is an offline command of the system administrator, like the ceremony that made the
//! bootstrap identities: whoever runs it holds the data directory and the CA keys. The
//! `officer` profile's dual control applies to approvals through the API, which has no
//! officer enrolment.
//!
//! Audited: `KeyGenerate` (the officer's key), `Issue` (the certificate), then
//! `AccountCreated` and `RoleChange` (the role granted) inside the transaction that registers
//! the identity.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use policies::{OfficerRole, SubjectData};
use signer_lib::audit::EventType;
use signer_lib::key::software::{KeyFormat, SoftwareKey};
use signer_lib::{SignatureAlgorithm, Signer as _};
use time::OffsetDateTime;

use crate::admin::{self, Admin};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::keys::{create_private_dir, random_passphrase, write_private_file};
use crate::service::{Role, urls_for};
use crate::store::IdentityRow;
use crate::{Ca, Error};

/// The directory under the data directory that added officers' files go to.
pub const OFFICERS_DIR: &str = "officers";

/// The longest officer name.
pub const MAX_NAME_CHARS: usize = 64;

/// What `eport-ca officer add` made; `Display` is what it prints.
#[derive(Clone, Debug)]
pub struct OfficerReport {
    /// The identity's name.
    pub name: String,
    /// Its one role.
    pub role: Role,
    /// The certificate subject.
    pub subject: String,
    /// The certificate serial, hex.
    pub serial_hex: String,
    /// The certificate's notAfter.
    pub not_after: OffsetDateTime,
    /// `<data>/officers/<name>.crt`.
    pub certificate: PathBuf,
    /// `<data>/officers/<name>.key` (encrypted PKCS#8).
    pub key: PathBuf,
    /// `<data>/officers/<name>.pass`.
    pub passphrase_file: PathBuf,
}

impl fmt::Display for OfficerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "officer {} added with role {}", self.name, self.role.name())?;
        writeln!(f, "  subject     {}", self.subject)?;
        writeln!(f, "  serial      {}", self.serial_hex)?;
        writeln!(f, "  notAfter    {}", admin::rfc3339(self.not_after))?;
        writeln!(f, "  certificate {}", self.certificate.display())?;
        writeln!(f, "  key         {} (encrypted PKCS#8, mode 0600)", self.key.display())?;
        writeln!(f, "  passphrase  {} (mode 0600)", self.passphrase_file.display())?;
        write!(f, "Hand the identity to its holder (move the key onto a token), then delete the .pass file.")
    }
}

/// The role an officer may be given, as the command line names it.
#[must_use]
pub fn role_of(officer_role: OfficerRole) -> Role {
    match officer_role {
        OfficerRole::System => Role::SystemAdministrator,
        OfficerRole::Security => Role::SecurityOfficer,
        OfficerRole::Audit => Role::AuditOfficer,
    }
}

/// Checks an officer name (see the module documentation).
///
/// # Errors
/// [`Error::BadRequest`].
pub fn check_name(name: &str) -> Result<(), Error> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let valid = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name.chars().all(allowed)
        && !name.starts_with(['.', '-']);
    if valid {
        Ok(())
    } else {
        Err(Error::bad(
            "name",
            format!("{name:?}: 1-{MAX_NAME_CHARS} characters A-Z a-z 0-9 . _ -, not starting with . or -"),
        ))
    }
}

impl Ca {
    /// Adds an administrator identity (see the module documentation), with the system clock.
    ///
    /// # Errors
    /// As [`Self::add_officer_with_clock`].
    pub async fn add_officer(
        data_dir: &Path,
        config: &Config,
        name: &str,
        role: OfficerRole,
    ) -> Result<OfficerReport, Error> {
        Self::add_officer_with_clock(data_dir, config, name, role, Arc::new(SystemClock)).await
    }

    /// Adds an administrator identity with `clock`.
    ///
    /// # Errors
    /// [`Error::BadRequest`] for a bad name; [`Error::Conflict`] for a name that exists;
    /// [`Error::NotInitialised`]; [`Error::Key`], [`Error::Io`] (a file of that name exists),
    /// [`Error::Lint`], [`Error::Store`], [`Error::AuditUnavailable`].
    pub async fn add_officer_with_clock(
        data_dir: &Path,
        config: &Config,
        name: &str,
        role: OfficerRole,
        clock: Arc<dyn Clock>,
    ) -> Result<OfficerReport, Error> {
        check_name(name)?;
        let admin = Admin::open(data_dir, config, clock).await?;
        let result = add(&admin, name, role).await;
        let closed = admin.close().await;
        let report = result?;
        closed?;
        Ok(report)
    }
}

async fn add(admin: &Admin, name: &str, officer_role: OfficerRole) -> Result<OfficerReport, Error> {
    let exists = || Error::Conflict {
        what: format!("an identity named {name} exists; one identity holds one role (choose another name)"),
    };
    if admin.store.identity_by_name(name).await?.is_some() {
        return Err(exists());
    }
    let role = role_of(officer_role);
    let issuer = admin.issuer_row("p256").await?;
    let (ca, ca_key) = admin.issuing(&issuer)?;
    let key_label = format!("{OFFICERS_DIR}/{name}");
    let key = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256)
        .map_err(|e| Error::Key { name: key_label.clone(), reason: e.to_string() })?;
    admin.record(EventType::KeyGenerate, &key_label).await?;
    let subject = SubjectData::Officer { name: name.to_owned(), role: officer_role };
    let urls = urls_for(&admin.config.public_base_url(), "p256");
    let cert = admin.issue("officer", subject, key.public_key_der().to_vec(), (&ca, &ca_key), urls).await?;

    // The files first (each created exclusively, never over an existing one), then the
    // identity; if the identity cannot be registered, the files go again.
    let dir = admin.data_dir.join(OFFICERS_DIR);
    create_private_dir(&dir)?;
    let (crt_path, key_path, pass_path) =
        (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")), dir.join(format!("{name}.pass")));
    let mut written = Vec::new();
    let files = async {
        let passphrase = random_passphrase();
        write_private_file(&pass_path, passphrase.as_bytes())?;
        written.push(pass_path.clone());
        // `save` creates the file exclusively, mode 0600, as `write_private_file` does.
        key.save(&key_path, Some(passphrase.as_bytes()), KeyFormat::Pem)
            .map_err(|e| Error::Key { name: key_label.clone(), reason: e.to_string() })?;
        written.push(key_path.clone());
        write_private_file(&crt_path, admin::pem(&cert)?.as_bytes())?;
        written.push(crt_path.clone());
        Ok(())
    }
    .await;
    let registered = match files {
        Ok(()) => register(admin, name, role, &cert).await,
        Err(e) => Err(e),
    };
    if let Err(e) = registered {
        for path in &written {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    Ok(OfficerReport {
        name: name.to_owned(),
        role,
        subject: cert.tbs_certificate.subject.to_string(),
        serial_hex: admin::serial_hex(&cert),
        not_after: admin::not_after(&cert),
        certificate: crt_path,
        key: key_path,
        passphrase_file: pass_path,
    })
}

/// Records the certificate and the identity with its role in one transaction, audited before
/// it commits.
async fn register(admin: &Admin, name: &str, role: Role, cert: &x509_cert::Certificate) -> Result<(), Error> {
    let now = admin.now().unix_timestamp();
    let (row, der) = admin::certificate_row("p256", "officer", cert)?;
    let identity = IdentityRow {
        name: name.to_owned(),
        subject: row.subject.clone(),
        serial: row.serial.clone(),
        role: role.name().to_owned(),
        created_at: now,
    };
    let mut tx = admin.store.begin().await?;
    admin.store.insert_ceremony_certificate(&mut tx, &row, &der, now).await?;
    if let Err(e) = admin.store.insert_identity(&mut tx, &identity).await {
        drop(tx);
        // A UNIQUE name or subject: another `officer add` won the race.
        return Err(match admin.store.identity_by_name(name).await {
            Ok(Some(_)) => Error::Conflict { what: format!("an identity named {name} exists") },
            _ => e,
        });
    }
    admin.record(EventType::AccountCreated, &format!("{name} ({})", identity.subject)).await?;
    admin.record(EventType::RoleChange, &format!("{name}: granted {}", role.name())).await?;
    tx.commit().await?;
    Ok(())
}
