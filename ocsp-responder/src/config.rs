//! The configuration of `eport-ocsp serve`: typed, strict TOML (unknown keys are errors).
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! keys = "keys.toml"               # hsm-config file with the OCSP signer keys only
//!
//! [database]
//! url = "postgres://eport_ocsp@127.0.0.1/eport"
//! password_env = "EPORT_OCSP_DB_PASSWORD"
//!
//! [[issuers]]
//! id = "p256"
//! ca_certificate = "certs/issuing-p256.pem"
//! responder_certificate = "certs/ocsp-p256.pem"
//! key = "ocsp-p256"
//! ```
//!
//! The shipped example is `ocsp-responder/examples/ocsp.toml`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hsm_config::{EnvVarName, KeysConfig};
use serde::Deserialize;
use signer_lib::Signer;
use zeroize::Zeroizing;

use crate::Error;
use crate::issuer::{CertIdHash, Issuer};
use crate::responder::{Responder, Settings};
use crate::source::IssuerId;
use crate::source::sql::SqlSource;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The address HTTP is served on. Default `"127.0.0.1:8080"` (loopback: put a load
    /// balancer or `0.0.0.0:80` here deliberately).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The hsm-config key file (see `hsm-config/examples/`) holding the OCSP signer keys named
    /// by `issuers.key`. Required. It should hold no CA key: the responder never needs one.
    /// Relative to this file's directory.
    pub keys: PathBuf,
    /// The CA database. Required.
    pub database: DatabaseConfig,
    /// Response timing. Default: see each field.
    #[serde(default)]
    pub timing: TimingConfig,
    /// Bounds on on-demand work. Default: see each field.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The issuing CAs answered for (`[[issuers]]`). Required: at least one.
    pub issuers: Vec<IssuerConfig>,
}

/// Where the CA's certificate status is read.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:/var/lib/eport/ca.db` (opened read-only) or `postgres://user@host/db` (a
    /// read-only role or a replica). Required. Must not contain a password: use `password_env`.
    pub url: String,
    /// The environment variable holding the database password, inserted into the URL when
    /// connecting. Default: none (peer or certificate authentication, or SQLite).
    #[serde(default)]
    pub password_env: Option<EnvVarName>,
    /// Connections in the pool. Default 4.
    #[serde(default = "default_max_connections")]
    pub max_connections: NonZeroU32,
    /// How far back, in seconds, each change-feed poll re-reads (the CA's commit-lag allowance;
    /// see `source::sql`). Default 60.
    #[serde(default = "default_feed_overlap")]
    pub feed_overlap_seconds: u32,
}

/// Response validity and refresh.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingConfig {
    /// nextUpdate − thisUpdate, in hours; 8 to 240 (BR §4.9.10). Default 24.
    #[serde(default = "default_validity_hours")]
    pub validity_hours: NonZeroU32,
    /// Age in hours at which responses are re-signed; at most half the validity. Default 12.
    #[serde(default = "default_refresh_after_hours")]
    pub refresh_after_hours: NonZeroU32,
    /// Seconds between change-feed polls, 1 to 60: the revocation visibility bound, less
    /// signing time and the database's own lag. Default 10.
    #[serde(default = "default_poll_interval_seconds")]
    pub poll_interval_seconds: NonZeroU32,
    /// Seconds between refresh passes (re-sign due responses, re-read every status). Default 300.
    #[serde(default = "default_refresh_interval_seconds")]
    pub refresh_interval_seconds: NonZeroU32,
    /// CertID hashes pre-signed for every certificate: `"sha1"`, `"sha256"`, `"sm3"` (SM2
    /// issuers only). Others are signed on first request, then kept fresh. Default `["sha1"]`.
    #[serde(default = "default_presign_hashes")]
    pub presign_hashes: Vec<CertIdHash>,
}

impl Default for TimingConfig {
    fn default() -> Self {
        Self {
            validity_hours: default_validity_hours(),
            refresh_after_hours: default_refresh_after_hours(),
            poll_interval_seconds: default_poll_interval_seconds(),
            refresh_interval_seconds: default_refresh_interval_seconds(),
            presign_hashes: default_presign_hashes(),
        }
    }
}

/// Bounds on work a client can cause.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Signatures per second made on demand (nonces, several CertIDs, cache misses such as
    /// never-issued serials); beyond it, `tryLater`. Default 1000.
    #[serde(default = "default_on_demand_per_second")]
    pub on_demand_per_second: NonZeroU32,
    /// Responses for never-issued serials kept in the cache. Default 100000.
    #[serde(default = "default_max_unknown_entries")]
    pub max_unknown_entries: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            on_demand_per_second: default_on_demand_per_second(),
            max_unknown_entries: default_max_unknown_entries(),
        }
    }
}

/// One issuing CA answered for, and its delegated OCSP signer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The CA database's id of the issuer (`issuers.id`, e.g. `"p256"`, `"sm2"`). Required.
    pub id: String,
    /// The issuing CA certificate, PEM or DER, relative to this file. Default: the one the key
    /// ceremony recorded in the CA database (`issuers.issuing_der`).
    #[serde(default)]
    pub ca_certificate: Option<PathBuf>,
    /// The delegated OCSP signer's certificate (id-kp-OCSPSigning, id-pkix-ocsp-nocheck,
    /// issued by the CA above), PEM or DER. Default: the CA database's `issuers.ocsp_der`.
    #[serde(default)]
    pub responder_certificate: Option<PathBuf>,
    /// The name of the signer's key in the `keys` file. Default: the CA database's
    /// `issuers.ocsp_key`.
    #[serde(default)]
    pub key: Option<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_connections() -> NonZeroU32 {
    NonZeroU32::MIN.saturating_add(3)
}
fn default_feed_overlap() -> u32 {
    60
}
fn default_validity_hours() -> NonZeroU32 {
    NonZeroU32::MIN.saturating_add(23)
}
fn default_refresh_after_hours() -> NonZeroU32 {
    NonZeroU32::MIN.saturating_add(11)
}
fn default_poll_interval_seconds() -> NonZeroU32 {
    NonZeroU32::MIN.saturating_add(9)
}
fn default_refresh_interval_seconds() -> NonZeroU32 {
    NonZeroU32::MIN.saturating_add(299)
}
fn default_presign_hashes() -> Vec<CertIdHash> {
    vec![CertIdHash::Sha1]
}
fn default_on_demand_per_second() -> NonZeroU32 {
    NonZeroU32::MIN.saturating_add(999)
}
fn default_max_unknown_entries() -> usize {
    100_000
}

impl Config {
    /// Parses a configuration; relative paths stay as written.
    ///
    /// # Errors
    /// [`Error::Config`] for malformed TOML, unknown or misspelt keys, missing required keys,
    /// a password in the database URL, or settings out of range.
    pub fn from_toml_str(text: &str) -> Result<Self, Error> {
        Self::parse(text, Path::new("<string>"))
    }

    /// Reads a configuration file, resolving relative paths against its directory.
    ///
    /// # Errors
    /// [`Error::Read`]; otherwise as [`Self::from_toml_str`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        let mut config = Self::parse(&text, path)?;
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        config.keys = base.join(&config.keys);
        for issuer in &mut config.issuers {
            for file in [&mut issuer.ca_certificate, &mut issuer.responder_certificate].into_iter().flatten() {
                *file = base.join(&*file);
            }
        }
        Ok(config)
    }

    fn parse(text: &str, origin: &Path) -> Result<Self, Error> {
        let config: Self =
            toml::from_str(text).map_err(|e| Error::Config { path: origin.to_owned(), message: e.to_string() })?;
        let refuse = |message: String| Error::Config { path: origin.to_owned(), message };
        if config.issuers.is_empty() {
            return Err(refuse("at least one [[issuers]] is needed".into()));
        }
        if url_has_password(&config.database.url) {
            return Err(refuse(
                "database.url must not contain a password: name the variable holding it with database.password_env"
                    .into(),
            ));
        }
        config.settings().validate().map_err(|e| refuse(e.to_string()))?;
        Ok(config)
    }

    /// The responder settings this configuration asks for.
    #[must_use]
    pub fn settings(&self) -> Settings {
        let t = &self.timing;
        Settings {
            validity: Duration::from_secs(u64::from(t.validity_hours.get()) * 3600),
            refresh_after: Duration::from_secs(u64::from(t.refresh_after_hours.get()) * 3600),
            poll_interval: Duration::from_secs(u64::from(t.poll_interval_seconds.get())),
            refresh_interval: Duration::from_secs(u64::from(t.refresh_interval_seconds.get())),
            presign_hashes: t.presign_hashes.clone(),
            on_demand_per_second: self.limits.on_demand_per_second.get(),
            max_unknown_entries: self.limits.max_unknown_entries,
        }
    }

    /// The database URL with the password from `password_env` inserted, read through `env`.
    ///
    /// # Errors
    /// [`Error::Key`] when the variable is missing or empty; [`Error::Config`] when the URL has
    /// no user to attach it to.
    pub fn database_url(&self, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Zeroizing<String>, Error> {
        let url = &self.database.url;
        let Some(variable) = &self.database.password_env else {
            return Ok(Zeroizing::new(url.clone()));
        };
        let password = variable
            .read("database.password_env", env)
            .map_err(|source| Error::Key { name: "database password".into(), source })?;
        let no_user = || Error::Config {
            path: PathBuf::from("<database>"),
            message: "database.password_env needs a user in database.url (postgres://user@host/db)".into(),
        };
        let scheme_end = url.find("://").ok_or_else(no_user)? + 3;
        let at = url[scheme_end..].find('@').ok_or_else(no_user)? + scheme_end;
        let mut out = Zeroizing::new(String::with_capacity(url.len() + password.len() * 3 + 1));
        out.push_str(&url[..at]);
        out.push(':');
        for byte in password.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(char::from(byte));
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
        out.push_str(&url[at..]);
        Ok(out)
    }
}

/// `scheme://user:password@host`: a colon in the user-info part.
fn url_has_password(url: &str) -> bool {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return false;
    };
    let authority = url[start..].split(['/', '?']).next().unwrap_or_default();
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Builds the responder a configuration describes: connects to the CA database, loads each
/// issuer's certificates (from files or the database), opens each signer key through
/// hsm-config, and checks every delegation. Reads secrets from the process environment.
/// Does not start the background work ([`Responder::spawn_background`]).
///
/// # Errors
/// [`Error::Store`] when the database cannot be read or lacks an issuer; [`Error::Key`] when a
/// key cannot be opened; [`Error::NotDelegated`] when a certificate does not qualify;
/// [`Error::Read`] and [`Error::Signer`] for unreadable certificate files.
pub async fn build(config: &Config) -> Result<Responder, Error> {
    let url = config.database_url(&|name| std::env::var_os(name))?;
    let source = SqlSource::connect(&url, config.database.max_connections.get())
        .await?
        .with_overlap(Duration::from_secs(u64::from(config.database.feed_overlap_seconds)));
    drop(url);
    let keys = KeysConfig::load(&config.keys)
        .map_err(|source| Error::Key { name: config.keys.display().to_string(), source })?;
    let now = time::OffsetDateTime::now_utc();
    let mut issuers = Vec::with_capacity(config.issuers.len());
    for issuer in &config.issuers {
        let id = IssuerId(issuer.id.clone());
        let record = if issuer.ca_certificate.is_none()
            || issuer.responder_certificate.is_none()
            || issuer.key.is_none()
        {
            Some(source.issuer_record(&id).await?.ok_or_else(|| {
                Error::Store(format!("issuer {id} is not in the CA database (and not fully configured in the file)"))
            })?)
        } else {
            None
        };
        let certificate = |file: &Option<PathBuf>, recorded: Option<&Vec<u8>>, what: &str| {
            let bytes = match (file, recorded) {
                (Some(path), _) => std::fs::read(path).map_err(|source| Error::Read { path: path.clone(), source })?,
                (None, Some(der)) => der.clone(),
                (None, None) => return Err(Error::Store(format!("issuer {id}: no {what}"))),
            };
            signer_lib::certificate::parse(&bytes)
                .map_err(|source| Error::Signer { context: format!("issuer {id}: {what}"), source })
        };
        let ca = certificate(&issuer.ca_certificate, record.as_ref().map(|r| &r.issuing_der), "CA certificate")?;
        let responder =
            certificate(&issuer.responder_certificate, record.as_ref().map(|r| &r.ocsp_der), "responder certificate")?;
        let key_name = match (&issuer.key, &record) {
            (Some(name), _) => name.clone(),
            (None, Some(record)) => record.ocsp_key.clone(),
            (None, None) => return Err(Error::Store(format!("issuer {id}: no key name"))),
        };
        let signer: Arc<dyn Signer> =
            Arc::from(keys.open(&key_name).map_err(|source| Error::Key { name: key_name.clone(), source })?);
        issuers.push(Issuer::new(id, ca, responder, signer, now)?);
    }
    Responder::new(issuers, Arc::new(source), config.settings())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        keys = "keys.toml"
        [database]
        url = "sqlite:ca.db"
        [[issuers]]
        id = "p256"
    "#;

    #[test]
    fn minimal_config_takes_the_defaults() {
        let config = Config::from_toml_str(MINIMAL).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.settings(), Settings::default());
    }

    #[test]
    fn refuses_a_password_in_the_url_and_inserts_one_from_the_environment() {
        let with_password = MINIMAL.replace("sqlite:ca.db", "postgres://ocsp:secret@db/eport");
        assert!(Config::from_toml_str(&with_password).unwrap_err().to_string().contains("password_env"));
        let text = MINIMAL
            .replace("sqlite:ca.db", "postgres://ocsp@db:5432/eport")
            .replace("[database]", "[database]\npassword_env = \"OCSP_DB_PW\"");
        let config = Config::from_toml_str(&text).unwrap();
        let url = config.database_url(&|_| Some("p@ss word".into())).unwrap();
        assert_eq!(url.as_str(), "postgres://ocsp:p%40ss%20word@db:5432/eport");
        assert!(config.database_url(&|_| None).is_err());
    }

    #[test]
    fn refuses_settings_out_of_range() {
        let text = format!("{MINIMAL}\n[timing]\nvalidity_hours = 4\n");
        // [timing] after [[issuers]] would belong to the array entry; put it first.
        let text = text.replace("[[issuers]]\n        id = \"p256\"\n", "") + "[[issuers]]\nid = \"p256\"\n";
        let err = Config::from_toml_str(&text).unwrap_err().to_string();
        assert!(err.contains("validity"), "{err}");
    }
}
