//! The legal representative's authorisation of an operator (STANDARDS.md R55, R56).
//!
//! An enterprise's legal representative authorises an operator by signing, with the key of
//! their `enterprise-legal-rep` certificate (normally on their USB token), a small JSON
//! document ([`OperatorAuthorisation`]) carried as the content of an attached CMS SignedData
//! (`eport operator authorise`). The CA accepts an `enterprise-operator` registration only with
//! such an authorisation; what it checks is listed in [`OperatorAuthorisation::check`] and in
//! the CA's registration code.
//!
//! The content is JSON with a fixed field set (unknown fields are refused), written by
//! [`OperatorAuthorisation::to_bytes`] with the fields in declaration order and no whitespace.
//! The CA never re-encodes it: the signature covers the bytes as signed, so the exact layout
//! matters only to the signer. The operator's identity-document number is never sent, only a
//! hash of it (`id_number_hash`, 64 lowercase hex digits: SHA-256 or SM3 of the number as
//! written on the document), which the legal representative computes and the registration
//! desk can compare against the document presented in person.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::Error;
use crate::subject::SubjectData;

/// The `format` value of this version of the document.
pub const FORMAT: &str = "eport-operator-authorisation/1";

/// The longest an authorisation may be valid: it authorises one registration, soon.
pub const MAX_VALIDITY: Duration = Duration::days(90);

/// Clock skew tolerated on `issued_at` (an authorisation dated a little in the future).
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// The largest content accepted (the document is a few hundred bytes).
pub const MAX_CONTENT_LEN: usize = 4096;

/// What the legal representative signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorAuthorisation {
    /// Always [`FORMAT`].
    pub format: String,
    /// The enterprise's unified social credit code.
    pub uscc: String,
    /// The operator's name, as it will appear in the certificate's commonName.
    pub operator_name: String,
    /// SHA-256 or SM3 of the operator's identity-document number, 64 lowercase hex digits.
    pub id_number_hash: String,
    /// When the authorisation was signed (RFC 3339, UTC).
    pub issued_at: String,
    /// Until when the CA may accept it (RFC 3339, UTC).
    pub expires_at: String,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidSubject { field: "authorisation", reason: reason.into() }
}

fn timestamp(field: &str, value: &str) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|e| invalid(format!("{field} {value:?} is not RFC 3339: {e}")))
}

impl OperatorAuthorisation {
    /// An authorisation issued at `now` (whole seconds) and valid for `validity`.
    ///
    /// # Errors
    /// [`Error::InvalidSubject`] (field `authorisation`) when the result would not pass
    /// [`Self::check`] at `now`: a bad USCC, name or hash, or a validity over [`MAX_VALIDITY`].
    pub fn new(
        uscc: &str,
        operator_name: &str,
        id_number_hash: &str,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<Self, Error> {
        let now = now.replace_nanosecond(0).map_err(|e| invalid(e.to_string()))?.to_offset(time::UtcOffset::UTC);
        let format = |t: OffsetDateTime| t.format(&Rfc3339).map_err(|e| invalid(e.to_string()));
        let authorisation = Self {
            format: FORMAT.to_owned(),
            uscc: uscc.to_owned(),
            operator_name: operator_name.to_owned(),
            id_number_hash: id_number_hash.to_ascii_lowercase(),
            issued_at: format(now)?,
            expires_at: format(now + validity)?,
        };
        authorisation.check(now)?;
        Ok(authorisation)
    }

    /// The bytes to sign: JSON, fields in declaration order, no whitespace.
    ///
    /// # Errors
    /// Never in practice (the fields are plain strings); [`Error::InvalidSubject`] otherwise.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(self).map_err(|e| invalid(e.to_string()))
    }

    /// Parses signed content. Checks only the shape; call [`Self::check`] for the rules.
    ///
    /// # Errors
    /// [`Error::InvalidSubject`] (field `authorisation`) for content over
    /// [`MAX_CONTENT_LEN`], not JSON, with a missing or unknown field, or another `format`.
    pub fn parse(content: &[u8]) -> Result<Self, Error> {
        if content.len() > MAX_CONTENT_LEN {
            return Err(invalid(format!("content of {} bytes, over {MAX_CONTENT_LEN}", content.len())));
        }
        let parsed: Self =
            serde_json::from_slice(content).map_err(|e| invalid(format!("not an authorisation: {e}")))?;
        if parsed.format != FORMAT {
            return Err(invalid(format!("format {:?}, expected {FORMAT:?}", parsed.format)));
        }
        Ok(parsed)
    }

    /// The rules that need no certificate: a valid USCC, an operator name that can be a
    /// commonName, a 64-hex-digit hash, `issued_at` not in the future (beyond
    /// [`CLOCK_SKEW`]), `expires_at` after `now` and at most [`MAX_VALIDITY`] after
    /// `issued_at`.
    ///
    /// # Errors
    /// [`Error::InvalidUscc`], or [`Error::InvalidSubject`] naming the rule broken.
    pub fn check(&self, now: OffsetDateTime) -> Result<(), Error> {
        SubjectData::Enterprise {
            uscc: self.uscc.clone(),
            name: "authorisation".to_owned(),
            person_name: self.operator_name.clone(),
        }
        .validate()?;
        let hash_ok = self.id_number_hash.len() == 64
            && self.id_number_hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hash_ok {
            return Err(invalid("id_number_hash must be 64 lowercase hex digits (SHA-256 or SM3)"));
        }
        let issued = timestamp("issued_at", &self.issued_at)?;
        let expires = timestamp("expires_at", &self.expires_at)?;
        if issued > now + CLOCK_SKEW {
            return Err(invalid(format!("issued_at {} is in the future", self.issued_at)));
        }
        if expires <= now {
            return Err(invalid(format!("expired at {}", self.expires_at)));
        }
        if expires <= issued || expires - issued > MAX_VALIDITY {
            return Err(invalid(format!(
                "validity from {} to {} is not within 0 and {} days",
                self.issued_at,
                self.expires_at,
                MAX_VALIDITY.whole_days()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USCC: &str = "91350100M000100Y43";
    const HASH: &str = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn round_trips_and_checks() {
        let a = OperatorAuthorisation::new(USCC, "李四", HASH, now(), Duration::days(30)).unwrap();
        let bytes = a.to_bytes().unwrap();
        assert!(bytes.starts_with(br#"{"format":"eport-operator-authorisation/1","uscc":"#));
        let parsed = OperatorAuthorisation::parse(&bytes).unwrap();
        assert_eq!(parsed, a);
        parsed.check(now() + Duration::days(29)).unwrap();
    }

    #[test]
    fn refuses_what_breaks_a_rule() {
        let a = OperatorAuthorisation::new(USCC, "李四", HASH, now(), Duration::days(30)).unwrap();
        assert!(a.check(now() + Duration::days(31)).unwrap_err().to_string().contains("expired"));
        assert!(a.check(now() - Duration::hours(1)).unwrap_err().to_string().contains("future"));
        assert!(OperatorAuthorisation::new(USCC, "李四", HASH, now(), Duration::days(91)).is_err());
        assert!(OperatorAuthorisation::new(USCC, "李四", "abc", now(), Duration::days(1)).is_err());
        assert!(OperatorAuthorisation::new("91350100M000100Y44", "李四", HASH, now(), Duration::days(1)).is_err());
        assert!(OperatorAuthorisation::new(USCC, "", HASH, now(), Duration::days(1)).is_err());
    }

    #[test]
    fn parse_refuses_other_shapes() {
        assert!(OperatorAuthorisation::parse(b"not json").is_err());
        let mut value =
            serde_json::to_value(OperatorAuthorisation::new(USCC, "李四", HASH, now(), Duration::days(1)).unwrap())
                .unwrap();
        value["extra"] = serde_json::Value::Bool(true);
        assert!(OperatorAuthorisation::parse(&serde_json::to_vec(&value).unwrap()).is_err());
        value.as_object_mut().unwrap().remove("extra");
        value["format"] = serde_json::Value::String("eport-operator-authorisation/2".into());
        assert!(OperatorAuthorisation::parse(&serde_json::to_vec(&value).unwrap()).is_err());
        assert!(OperatorAuthorisation::parse(&vec![b' '; MAX_CONTENT_LEN + 1]).is_err());
    }
}
