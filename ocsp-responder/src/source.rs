//! Where certificate status comes from: the [`StatusSource`] trait, the [`Serial`] and
//! [`IssuerId`] that name a certificate, and the [`CertificateStatus`] a source reports.
//!
//! Implementations: [`memory::MemorySource`] (tests, demos) and [`sql::SqlSource`] (the CA
//! database, read-only).

pub mod memory;
pub mod sql;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use time::OffsetDateTime;
use x509_cert::ext::pkix::CrlReason;

use crate::Error;

/// A boxed, sendable future: keeps [`StatusSource`] usable as `dyn StatusSource`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The CA's name for one of its issuing CAs, as stored in its database (e.g. `"p256"`, `"sm2"`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IssuerId(pub String);

impl fmt::Display for IssuerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for IssuerId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// A certificate serial number, held as the content octets of its DER INTEGER (RFC 5280
/// §4.1.2.2): big-endian, minimal, with a 0x00 in front when the top bit would otherwise be set.
///
/// At most 21 octets: the 20 octets RFC 5280 allows, plus that sign octet. A `Copy` value of
/// fixed size, so it serves as a hash-map key without an allocation per lookup.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial {
    len: u8,
    bytes: [u8; Self::MAX_LEN],
}

impl Serial {
    /// The longest serial we hold, in content octets.
    pub const MAX_LEN: usize = 21;

    /// From the content octets of a DER INTEGER, as `x509_cert::serial_number::SerialNumber::as_bytes`
    /// gives them. Octets that are not minimal are normalised.
    ///
    /// # Errors
    /// [`Error::BadSerial`] when empty or longer than [`Self::MAX_LEN`] once normalised.
    pub fn from_der_content(content: &[u8]) -> Result<Self, Error> {
        // Minimal two's complement: drop a 0x00 that is followed by an octet with the top bit clear.
        let mut start = 0;
        while start + 1 < content.len() && content[start] == 0 && content[start + 1] & 0x80 == 0 {
            start += 1;
        }
        let content = &content[start..];
        if content.is_empty() || content.len() > Self::MAX_LEN {
            return Err(Error::BadSerial { serial: hex::encode(content) });
        }
        let mut bytes = [0u8; Self::MAX_LEN];
        bytes[..content.len()].copy_from_slice(content);
        // Invariant: 1 ≤ len ≤ 21, so it fits a u8.
        Ok(Self { len: u8::try_from(content.len()).unwrap_or(0), bytes })
    }

    /// From the serial as unsigned big-endian hex (upper or lower case, an optional `0x` and a
    /// leading `00` allowed), the way the CA database stores it.
    ///
    /// # Errors
    /// [`Error::BadSerial`] for anything that is not such hex.
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        let bad = || Error::BadSerial { serial: text.chars().take(64).collect() };
        let digits = text.trim().trim_start_matches("0x");
        let digits = if digits.len() % 2 == 1 { format!("0{digits}") } else { digits.to_owned() };
        let magnitude = hex::decode(&digits).map_err(|_| bad())?;
        let first = magnitude.iter().position(|b| *b != 0).unwrap_or(magnitude.len().saturating_sub(1));
        let magnitude = magnitude.get(first..).filter(|m| !m.is_empty()).ok_or_else(bad)?;
        let mut content = Vec::with_capacity(magnitude.len() + 1);
        if magnitude[0] & 0x80 != 0 {
            content.push(0);
        }
        content.extend_from_slice(magnitude);
        Self::from_der_content(&content).map_err(|_| bad())
    }

    /// The content octets of the DER INTEGER.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Lowercase hex of the unsigned value, without the sign octet: `"4f0c…"`.
    #[must_use]
    pub fn to_hex(&self) -> String {
        let bytes = self.as_bytes();
        let bytes = if bytes.len() > 1 && bytes[0] == 0 { &bytes[1..] } else { bytes };
        hex::encode(bytes)
    }

    /// Lowercase hex of the DER content octets, with the sign octet when there is one.
    #[must_use]
    pub fn to_der_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_hex())
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What the CA says about one serial of one issuer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateStatus {
    /// Issued and neither revoked nor on hold.
    Good,
    /// Revoked at `time`, for `reason` (`None`: no reason given, which RFC 5280 §5.3.1 prefers
    /// to `unspecified`).
    Revoked {
        /// When it was revoked.
        time: OffsetDateTime,
        /// Why, if the CA recorded a reason.
        reason: Option<CrlReason>,
    },
    /// Suspended since `time`: answered as revoked with reason certificateHold (RFC 6960 §2.2,
    /// RFC 5280 §5.3.1).
    Hold {
        /// When it was put on hold.
        time: OffsetDateTime,
    },
    /// The CA has no certificate with this serial from this issuer: answered `unknown`, never
    /// `good` (STANDARDS R46).
    NotIssued,
}

/// A position in a source's change feed. Opaque: only the source that made it interprets it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangeCursor(pub i64);

/// What changed since a cursor, and the cursor to ask from next time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Certificates whose status may have changed (issued, revoked, held, released). May repeat
    /// entries already reported: the caller compares with what it has.
    pub changed: Vec<(IssuerId, Serial)>,
    /// The cursor for the next call.
    pub next: ChangeCursor,
}

/// A read-only view of the CA's certificate status.
///
/// Several responders may read one source at once: nothing here writes, and nothing a
/// responder keeps is needed by another.
pub trait StatusSource: Send + Sync + fmt::Debug {
    /// The status of one certificate.
    ///
    /// # Errors
    /// [`Error::Store`] when the source cannot be read.
    fn status<'a>(
        &'a self,
        issuer: &'a IssuerId,
        serial: &'a Serial,
    ) -> BoxFuture<'a, Result<CertificateStatus, Error>>;

    /// Every certificate the issuer has issued that has not expired at `now`, with its status,
    /// for pre-signing. Never contains [`CertificateStatus::NotIssued`]. (Expired certificates
    /// are still answered, on demand, through [`Self::status`].)
    ///
    /// # Errors
    /// [`Error::Store`] when the source cannot be read.
    fn all_serials<'a>(
        &'a self,
        issuer: &'a IssuerId,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Vec<(Serial, CertificateStatus)>, Error>>;

    /// The cursor that [`Self::changed_since`] should start from to see every change after now.
    ///
    /// # Errors
    /// [`Error::Store`] when the source cannot be read.
    fn current_cursor(&self) -> BoxFuture<'_, Result<ChangeCursor, Error>>;

    /// The certificates that changed since `cursor`. Each implementation documents how late a
    /// change can show up (its bound); the responder's revocation visibility is that bound plus
    /// its poll interval.
    ///
    /// # Errors
    /// [`Error::Store`] when the source cannot be read.
    fn changed_since(&self, cursor: ChangeCursor) -> BoxFuture<'_, Result<Changes, Error>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_from_hex_adds_the_sign_octet_and_drops_padding() {
        let s = Serial::from_hex("80ff").unwrap();
        assert_eq!(s.as_bytes(), [0x00, 0x80, 0xff]);
        assert_eq!(s.to_hex(), "80ff");
        assert_eq!(s.to_der_hex(), "0080ff");
        assert_eq!(Serial::from_hex("0080FF").unwrap(), s);
        assert_eq!(Serial::from_hex("000001").unwrap().as_bytes(), [1]);
        assert_eq!(Serial::from_hex("abc").unwrap().as_bytes(), [0x0a, 0xbc]);
        assert_eq!(Serial::from_hex("00").unwrap().as_bytes(), [0]);
    }

    #[test]
    fn serial_rejects_non_hex_empty_and_overlong() {
        assert!(Serial::from_hex("xyz").is_err());
        assert!(Serial::from_hex("").is_err());
        assert!(Serial::from_hex(&"7f".repeat(22)).is_err());
        assert!(Serial::from_hex(&"ff".repeat(20)).is_ok(), "20 octets with the top bit set take 21");
        assert!(Serial::from_der_content(&[]).is_err());
    }

    #[test]
    fn serial_from_der_content_normalises() {
        assert_eq!(Serial::from_der_content(&[0, 0, 5]).unwrap().as_bytes(), [5]);
        assert_eq!(Serial::from_der_content(&[0, 0x90]).unwrap().as_bytes(), [0, 0x90]);
    }
}
