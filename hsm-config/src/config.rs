//! The configuration file: named keys, each with its backend.
//!
//! ```toml
//! [keys.issuing-p256]
//! backend = "software"
//! path = "keys/issuing-p256.key"
//! passphrase_env = "EPORT_ISSUING_PASS"
//!
//! [keys.ca-token]
//! backend = "pkcs11"
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! uri = "pkcs11:token=ca-token;object=issuing-p256"
//! pin_env = "CA_TOKEN_PIN"
//!
//! [keys.hsm]
//! backend = "yubihsm"
//! connector = "http://127.0.0.1:12345"
//! auth_key_id = 1
//! password_env = "YUBIHSM_AUTH_PASSWORD"
//! key_id = 100
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use signer_lib::key::pkcs11::Pkcs11Uri;

use crate::{EnvVarName, Error};

/// What [`Error::Parse`] and [`Error::InlineSecret`] name when the TOML did not come from a file.
const STRING_ORIGIN: &str = "<string>";

/// A key configuration file: keys by name.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The keys, by the name other configuration and the command line use for them
    /// (`[keys.<name>]`). Default: none.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyBackend>,
}

/// Where a key lives and how to reach it; the TOML field `backend` says which.
///
/// Secrets (passphrase, PIN, password) are never in the configuration: each `*_env` field
/// names the environment variable that holds one, read when the key is opened.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
#[non_exhaustive]
#[expect(
    clippy::large_enum_variant,
    reason = "a handful of these are read once per process; boxing the URI would only make matching clumsier"
)]
pub enum KeyBackend {
    /// `backend = "software"`: a PKCS#8 key file (PEM or DER, encrypted or plain), P-256,
    /// SM2 or Ed25519.
    Software {
        /// The key file. Required. A relative path is relative to the directory of the
        /// configuration file (when loaded with [`KeysConfig::load`]).
        path: PathBuf,
        /// The environment variable holding the passphrase of an encrypted key file.
        /// Default: none, for a key file that is not encrypted.
        #[serde(default)]
        passphrase_env: Option<EnvVarName>,
        /// The SM2 distinguishing ID (GM/T 0009) the key signs with; SM2 keys only (an error
        /// for other keys). Default: `"1234567812345678"`, GM/T 0009's default ID.
        #[serde(default)]
        sm2_distid: Option<String>,
    },
    /// `backend = "pkcs11"`: a key on a PKCS#11 token (SoftHSM2, a smart card, a network HSM).
    Pkcs11 {
        /// The PKCS#11 module (shared library). A path with a directory part that is relative
        /// is relative to the configuration file's directory; a bare file name
        /// (`libsofthsm2.so`) is left to the dynamic loader's search path. Default: the URI's
        /// `?module-path=`, else the environment variable `EPORT_PKCS11_MODULE` (see
        /// [`crate::PKCS11_MODULE_ENV`]). Giving both `module` and a different `module-path`
        /// is an error.
        #[serde(default)]
        module: Option<PathBuf>,
        /// The RFC 7512 URI of the private key (`pkcs11:token=ca-token;object=issuing-p256`),
        /// parsed when the configuration is read. Required. Must carry neither `pin-value` nor
        /// `pin-source` (name the PIN's variable with `pin_env`).
        #[serde(deserialize_with = "pkcs11_uri")]
        uri: Pkcs11Uri,
        /// The environment variable holding the user PIN. Default: none, no login (for tokens
        /// whose keys need none or that authenticate on a protected path such as a PIN pad).
        #[serde(default)]
        pin_env: Option<EnvVarName>,
    },
    /// `backend = "yubihsm"`: an asymmetric key on a YubiHSM 2, over `yubihsm-connector`.
    #[serde(rename = "yubihsm")]
    YubiHsm {
        /// The `yubihsm-connector` URL, `http://host[:port]` (port default 12345; the client
        /// speaks plain HTTP only). Default: `"http://127.0.0.1:12345"`.
        #[serde(default)]
        connector: ConnectorUrl,
        /// The object id of the authentication key the session is opened with. Default: 1,
        /// the factory authentication key (replace it before production).
        #[serde(default = "default_auth_key_id")]
        auth_key_id: u16,
        /// The environment variable holding the authentication key's password. Required.
        password_env: EnvVarName,
        /// The object id of the asymmetric signing key (P-256 or Ed25519). Required.
        key_id: u16,
    },
}

fn default_auth_key_id() -> u16 {
    1
}

/// Parses a PKCS#11 URI with signer-lib's parser (which also refuses `pin-value`).
fn pkcs11_uri<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Pkcs11Uri, D::Error> {
    let text = String::deserialize(deserializer)?;
    let uri = text.parse::<Pkcs11Uri>().map_err(serde::de::Error::custom)?;
    if uri.pin_source.is_some() {
        return Err(serde::de::Error::custom(
            "the URI's pin-source is not used: name the environment variable holding the PIN with pin_env",
        ));
    }
    Ok(uri)
}

/// A `yubihsm-connector` URL, checked when the configuration is read.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ConnectorUrl(String);

impl ConnectorUrl {
    /// The URL as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ConnectorUrl {
    /// The address `yubihsm-connector` listens on by default.
    fn default() -> Self {
        Self("http://127.0.0.1:12345".to_owned())
    }
}

impl TryFrom<String> for ConnectorUrl {
    type Error = signer_lib::Error;

    fn try_from(url: String) -> Result<Self, signer_lib::Error> {
        signer_lib::key::yubihsm::parse_connector_url(&url)?;
        Ok(Self(url))
    }
}

impl fmt::Display for ConnectorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ConnectorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl KeysConfig {
    /// Parses a configuration. Relative paths stay as written (relative to the working
    /// directory); [`Self::load`] resolves them against the file's directory.
    ///
    /// # Errors
    /// [`Error::InlineSecret`] when a field would hold a PIN, password or passphrase (or a
    /// PKCS#11 URI carries `pin-value`); [`Error::Parse`] for malformed TOML or anything the
    /// schema does not allow, misspelt fields included.
    pub fn from_toml_str(text: &str) -> Result<Self, Error> {
        Self::parse(text, Path::new(STRING_ORIGIN))
    }

    /// Reads and parses a configuration file, resolving relative key and module paths
    /// against the file's directory.
    ///
    /// # Errors
    /// [`Error::Read`] when the file cannot be read; otherwise as [`Self::from_toml_str`],
    /// with the file's path in the error.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        let mut config = Self::parse(&text, path)?;
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        for backend in config.keys.values_mut() {
            backend.resolve_paths(base);
        }
        Ok(config)
    }

    /// The backend of key `name`.
    ///
    /// # Errors
    /// [`Error::UnknownKey`], listing the names the configuration has.
    pub fn key(&self, name: &str) -> Result<&KeyBackend, Error> {
        self.keys.get(name).ok_or_else(|| Error::UnknownKey {
            name: name.to_owned(),
            known: self.keys.keys().map(String::as_str).collect::<Vec<_>>().join(", "),
        })
    }

    fn parse(text: &str, origin: &Path) -> Result<Self, Error> {
        let parse_error = |e: &toml::de::Error| {
            let (line, column) = e.span().map_or((None, None), |span| position(text, span.start));
            Error::Parse { origin: origin.to_owned(), line, column, message: e.message().to_owned() }
        };
        // First as an untyped table, to refuse inline secrets by name before the schema's
        // generic "unknown field" error (and without ever quoting their values).
        let table: toml::Table = toml::from_str(text).map_err(|e| parse_error(&e))?;
        reject_inline_secrets(&table, origin)?;
        let config: Self = toml::from_str(text).map_err(|e| parse_error(&e))?;
        for (name, backend) in &config.keys {
            if let KeyBackend::Pkcs11 { module: Some(module), uri, .. } = backend
                && let Some(module_path) = &uri.module_path
                && Path::new(module_path) != module
            {
                return Err(Error::Parse {
                    origin: origin.to_owned(),
                    line: None,
                    column: None,
                    message: format!(
                        "keys.{name}: module {} and the URI's module-path {module_path} disagree; give one",
                        module.display()
                    ),
                });
            }
        }
        Ok(config)
    }
}

impl KeyBackend {
    /// Makes relative paths relative to `base` (the configuration file's directory).
    fn resolve_paths(&mut self, base: &Path) {
        match self {
            Self::Software { path, .. } => {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
            Self::Pkcs11 { module: Some(module), .. } => {
                // A bare file name is for the dynamic loader to find; only a path with a
                // directory part is anchored at the configuration file.
                if module.is_relative() && module.components().count() > 1 {
                    *module = base.join(&*module);
                }
            }
            Self::Pkcs11 { module: None, .. } | Self::YubiHsm { .. } => {}
        }
    }

    /// The backend's name as written in `backend = "..."`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Software { .. } => "software",
            Self::Pkcs11 { .. } => "pkcs11",
            Self::YubiHsm { .. } => "yubihsm",
        }
    }
}

/// 1-based line and column (in characters) of byte offset `offset` in `text`.
fn position(text: &str, offset: usize) -> (Option<usize>, Option<usize>) {
    let Some(before) = text.get(..offset) else {
        return (None, None);
    };
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (Some(line), Some(column))
}

/// Refuses fields whose name says they hold a secret (`pin`, `so_pin`, `password`,
/// `passphrase`, `secret`, ...) and PKCS#11 URIs with `pin-value`.
fn reject_inline_secrets(table: &toml::Table, origin: &Path) -> Result<(), Error> {
    let Some(toml::Value::Table(keys)) = table.get("keys") else {
        return Ok(());
    };
    for (key, value) in keys {
        let toml::Value::Table(fields) = value else { continue };
        let hint = match fields.get("backend").and_then(toml::Value::as_str) {
            Some("software") => "passphrase_env",
            Some("pkcs11") => "pin_env",
            Some("yubihsm") => "password_env",
            _ => "the backend's *_env field",
        };
        let inline = |field: &str| Error::InlineSecret {
            origin: origin.to_owned(),
            key: key.clone(),
            field: field.to_owned(),
            hint: hint.to_owned(),
        };
        if let Some(field) = fields.keys().find(|f| names_a_secret(f)) {
            return Err(inline(field));
        }
        if let Some(uri) = fields.get("uri").and_then(toml::Value::as_str)
            && uri_has_pin_value(uri)
        {
            return Err(inline("uri (pin-value)"));
        }
    }
    Ok(())
}

/// Whether a field name says it holds a secret value rather than the name of a variable.
fn names_a_secret(field: &str) -> bool {
    const SECRET_WORDS: [&str; 6] = ["pin", "password", "passwd", "passphrase", "secret", "pass"];
    let field = field.to_ascii_lowercase();
    let words: Vec<&str> = field.split(['_', '-']).collect();
    words.last() != Some(&"env") && words.iter().any(|w| SECRET_WORDS.contains(w))
}

/// Whether an RFC 7512 URI carries `pin-value` in its query (`?pin-value=1234`).
fn uri_has_pin_value(uri: &str) -> bool {
    uri.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|attr| attr.split('=').next().is_some_and(|name| name.trim().eq_ignore_ascii_case("pin-value")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_secret_field_names() {
        for secret in ["pin", "PIN", "so_pin", "user-pin", "password", "auth_password", "passphrase", "secret", "pass"]
        {
            assert!(names_a_secret(secret), "{secret}");
        }
        for fine in ["pin_env", "password_env", "passphrase_env", "path", "module", "uri", "spinner", "passes"] {
            assert!(!names_a_secret(fine), "{fine}");
        }
    }

    #[test]
    fn finds_pin_value_in_pkcs11_uris() {
        assert!(uri_has_pin_value("pkcs11:token=a;object=b?pin-value=1234"));
        assert!(uri_has_pin_value("pkcs11:token=a?module-name=softhsm2&PIN-VALUE=1"));
        assert!(!uri_has_pin_value("pkcs11:token=a;object=b?pin-source=file:/run/pin"));
        assert!(!uri_has_pin_value("pkcs11:token=pin-value;object=b"));
    }

    #[test]
    fn reports_line_and_column() {
        assert_eq!(position("a\nbc\ndéf", 8), (Some(3), Some(3)));
        assert_eq!(position("x", 0), (Some(1), Some(1)));
    }
}
