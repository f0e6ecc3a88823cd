//! Names of environment variables that hold secrets, and reading them.

use std::ffi::OsString;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use zeroize::Zeroizing;

use crate::Error;

/// The name of an environment variable (`CA_TOKEN_PIN`): ASCII letters, digits and `_`, not
/// starting with a digit, as POSIX shells accept them. The configuration holds only such names;
/// the secret itself is read when the key is opened.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvVarName(String);

impl EnvVarName {
    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Reads the variable through `env` (for the process environment, `std::env::var_os`).
    /// `field` names the configuration field, for the message.
    ///
    /// # Errors
    /// [`Error::MissingEnv`], [`Error::EmptyEnv`] or [`Error::EnvNotUnicode`], naming the
    /// variable and never its value.
    pub fn read(
        &self,
        field: &'static str,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Zeroizing<String>, Error> {
        let variable = || self.0.clone();
        let value = env(&self.0).ok_or_else(|| Error::MissingEnv { variable: variable(), field })?;
        let value = Zeroizing::new(value.into_string().map_err(|raw| {
            zeroize::Zeroize::zeroize(&mut raw.into_encoded_bytes());
            Error::EnvNotUnicode { variable: variable(), field }
        })?);
        if value.is_empty() {
            return Err(Error::EmptyEnv { variable: variable(), field });
        }
        Ok(value)
    }
}

impl TryFrom<String> for EnvVarName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        let mut chars = name.chars();
        let valid_start = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if valid_start && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            Ok(Self(name))
        } else {
            // The value is not quoted back: someone may have put the secret itself here.
            Err("not an environment variable name (letters, digits and _, not starting with a digit); *_env \
                 fields name the variable holding the secret, not the secret"
                .to_owned())
        }
    }
}

/// Deserializes like `String` through `TryFrom`, except that no error quotes the value: a
/// misplaced PIN (`pin_env = 1234`, `pin_env = "my pin"`) must not reach a log.
impl<'de> Deserialize<'de> for EnvVarName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NameVisitor)
    }
}

struct NameVisitor;

impl NameVisitor {
    fn wrong_type<E: de::Error>() -> E {
        E::custom("expected the name of an environment variable, as a string")
    }
}

impl<'de> Visitor<'de> for NameVisitor {
    type Value = EnvVarName;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the name of an environment variable")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvVarName, E> {
        EnvVarName::try_from(v.to_owned()).map_err(E::custom)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<EnvVarName, E> {
        Err(Self::wrong_type())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<EnvVarName, E> {
        Err(Self::wrong_type())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<EnvVarName, E> {
        Err(Self::wrong_type())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<EnvVarName, E> {
        Err(Self::wrong_type())
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<EnvVarName, E> {
        Err(Self::wrong_type())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<EnvVarName, A::Error> {
        Err(Self::wrong_type())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<EnvVarName, A::Error> {
        Err(Self::wrong_type())
    }
}

impl std::str::FromStr for EnvVarName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

impl fmt::Display for EnvVarName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EnvVarName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_shell_variable_names_only() {
        for good in ["CA_TOKEN_PIN", "_X", "a1"] {
            assert!(good.parse::<EnvVarName>().is_ok(), "{good}");
        }
        for bad in ["", "1ABC", "CA-PIN", "1234", "pin with space", "PIN=1"] {
            assert!(bad.parse::<EnvVarName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn reading_names_the_variable_never_the_value() {
        let name: EnvVarName = "EPORT_TEST_PIN".parse().unwrap();
        let err = name.read("pin_env", &|_| None).unwrap_err();
        assert_eq!(err.to_string(), "environment variable EPORT_TEST_PIN (named by pin_env) is not set");
        let err = name.read("pin_env", &|_| Some(OsString::new())).unwrap_err();
        assert!(matches!(err, Error::EmptyEnv { .. }));
        let value = name.read("pin_env", &|n| (n == "EPORT_TEST_PIN").then(|| "1234".into())).unwrap();
        assert_eq!(value.as_str(), "1234");
    }
}
