//! The pre-signed response cache: DER responses by (issuer, CertID hash, serial), each with
//! the HTTP caching header values computed once when it is signed.
//!
//! The hot path is one read-locked `HashMap` lookup of a fixed-size `Copy` key and a
//! reference-count increment; nothing is allocated or formatted per request except the
//! `Cache-Control` max-age, which depends on the time of the request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use axum::body::Bytes;
use axum::http::HeaderValue;
use time::OffsetDateTime;

use crate::issuer::CertIdHash;
use crate::source::{CertificateStatus, Serial};

/// What a cached response is filed under: which of our issuers (by index), the CertID hash
/// algorithm the response's CertID uses, and the serial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Index of the issuer in the responder's list.
    pub issuer: u16,
    /// The CertID hash algorithm.
    pub hash: CertIdHash,
    /// The serial.
    pub serial: Serial,
}

/// A signed response and what HTTP says about it (RFC 5019 §6.2).
#[derive(Debug)]
pub struct Entry {
    /// The DER OCSPResponse.
    pub der: Bytes,
    /// The status it states.
    pub status: CertificateStatus,
    /// Its thisUpdate (= producedAt).
    pub this_update: OffsetDateTime,
    /// Its nextUpdate.
    pub next_update: OffsetDateTime,
    /// When the refresher re-signs it (before half its validity, spread a little per serial).
    pub refresh_at: OffsetDateTime,
    /// Header values for caches.
    pub headers: CacheHeaders,
    /// The order of the status read it was made from: an entry never replaces one made from a
    /// later read.
    pub status_seq: u64,
}

/// HTTP header values consistent with one response (RFC 5019 §6.2, R47).
#[derive(Clone, Debug)]
pub struct CacheHeaders {
    /// `Last-Modified`: thisUpdate.
    pub last_modified: HeaderValue,
    /// `Expires`: nextUpdate.
    pub expires: HeaderValue,
    /// `ETag`: a strong tag from the SHA-256 of the response.
    pub etag: HeaderValue,
    /// nextUpdate in Unix seconds, for `Cache-Control: max-age`.
    pub next_update_unix: i64,
}

impl CacheHeaders {
    /// The header values for a response with `der`, `this_update` and `next_update`.
    #[must_use]
    pub fn new(der: &[u8], this_update: OffsetDateTime, next_update: OffsetDateTime) -> Self {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(der);
        let etag = format!("\"{}\"", hex::encode(&digest[..16]));
        Self {
            last_modified: header_value(&http_date(this_update)),
            expires: header_value(&http_date(next_update)),
            etag: header_value(&etag),
            next_update_unix: next_update.unix_timestamp(),
        }
    }

    /// `Cache-Control` at `now_unix`: `max-age` strictly below nextUpdate − now (R47), and
    /// `public, no-transform, must-revalidate` (RFC 5019 §6.2).
    #[must_use]
    pub fn cache_control(&self, now_unix: i64) -> HeaderValue {
        let max_age = (self.next_update_unix - now_unix - 1).max(0);
        header_value(&format!("max-age={max_age}, public, no-transform, must-revalidate"))
    }
}

/// A header value from text we formatted ourselves (ASCII digits, letters, quotes, commas).
fn header_value(text: &str) -> HeaderValue {
    // Invariant: every caller passes printable ASCII, which HeaderValue always accepts; the
    // fallback is never taken and would only drop a header's content, not fail a response.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// An IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
#[must_use]
pub fn http_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let weekday = match t.weekday() {
        time::Weekday::Monday => "Mon",
        time::Weekday::Tuesday => "Tue",
        time::Weekday::Wednesday => "Wed",
        time::Weekday::Thursday => "Thu",
        time::Weekday::Friday => "Fri",
        time::Weekday::Saturday => "Sat",
        time::Weekday::Sunday => "Sun",
    };
    let month = match t.month() {
        time::Month::January => "Jan",
        time::Month::February => "Feb",
        time::Month::March => "Mar",
        time::Month::April => "Apr",
        time::Month::May => "May",
        time::Month::June => "Jun",
        time::Month::July => "Jul",
        time::Month::August => "Aug",
        time::Month::September => "Sep",
        time::Month::October => "Oct",
        time::Month::November => "Nov",
        time::Month::December => "Dec",
    };
    format!("{weekday}, {:02} {month} {:04} {:02}:{:02}:{:02} GMT", t.day(), t.year(), t.hour(), t.minute(), t.second())
}

/// The responses, shared by all request handlers and the refresher.
#[derive(Debug)]
pub struct Cache {
    map: RwLock<HashMap<CacheKey, Arc<Entry>>>,
    /// How many entries state `unknown` (never-issued serials asked for).
    unknown: AtomicUsize,
    /// The most `unknown` entries kept; beyond it they are signed and served but not kept.
    max_unknown: usize,
}

impl Cache {
    /// An empty cache keeping at most `max_unknown` responses for never-issued serials.
    #[must_use]
    pub fn new(max_unknown: usize) -> Self {
        Self { map: RwLock::new(HashMap::new()), unknown: AtomicUsize::new(0), max_unknown }
    }

    /// The response filed under `key`.
    #[must_use]
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.map.read().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    /// Files responses, replacing what was there; an `unknown` one is dropped instead when the
    /// cache already holds its maximum of those.
    pub fn insert(&self, items: impl IntoIterator<Item = (CacheKey, Arc<Entry>)>) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        for (key, entry) in items {
            let old = map.get(&key);
            if old.is_some_and(|old| old.status_seq > entry.status_seq) {
                continue;
            }
            let new_unknown = entry.status == CertificateStatus::NotIssued;
            let old_unknown = old.map(|e| e.status == CertificateStatus::NotIssued);
            if new_unknown && old_unknown != Some(true) && self.unknown.load(Ordering::Relaxed) >= self.max_unknown {
                continue;
            }
            map.insert(key, entry);
            match (old_unknown == Some(true), new_unknown) {
                (false, true) => {
                    self.unknown.fetch_add(1, Ordering::Relaxed);
                }
                (true, false) => {
                    self.unknown.fetch_sub(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }

    /// Removes the responses filed under `keys` that were made from a status read before
    /// `read_seq` (an entry made from a later read stays: it is newer than the decision to
    /// remove).
    pub fn remove(&self, keys: &[CacheKey], read_seq: u64) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            if map.get(key).is_some_and(|e| e.status_seq < read_seq)
                && let Some(old) = map.remove(key)
                && old.status == CertificateStatus::NotIssued
            {
                self.unknown.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Calls `f` on every entry, under the read lock (keep `f` short).
    pub fn for_each(&self, mut f: impl FnMut(&CacheKey, &Entry)) {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        for (key, entry) in map.iter() {
            f(key, entry);
        }
    }

    /// Number of responses held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no response is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of `unknown` responses held.
    #[must_use]
    pub fn unknown_len(&self) -> usize {
        self.unknown.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_http_dates() {
        let t = OffsetDateTime::from_unix_timestamp(784_111_777).unwrap();
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn max_age_stays_below_next_update() {
        let this = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let next = this + time::Duration::hours(24);
        let headers = CacheHeaders::new(b"x", this, next);
        assert_eq!(headers.cache_control(1_000_000), "max-age=86399, public, no-transform, must-revalidate");
        assert_eq!(
            headers.cache_control(next.unix_timestamp() + 5),
            "max-age=0, public, no-transform, must-revalidate"
        );
    }

    #[test]
    fn keeps_at_most_the_configured_unknown_entries() {
        let cache = Cache::new(1);
        let t = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let entry = |status| {
            Arc::new(Entry {
                der: Bytes::from_static(b"r"),
                status,
                this_update: t,
                next_update: t,
                refresh_at: t,
                headers: CacheHeaders::new(b"r", t, t),
                status_seq: 1,
            })
        };
        let key =
            |n: u8| CacheKey { issuer: 0, hash: CertIdHash::Sha1, serial: Serial::from_der_content(&[n]).unwrap() };
        cache.insert([(key(1), entry(CertificateStatus::NotIssued)), (key(2), entry(CertificateStatus::NotIssued))]);
        assert_eq!((cache.len(), cache.unknown_len()), (1, 1));
        cache.insert([(key(1), entry(CertificateStatus::Good)), (key(2), entry(CertificateStatus::NotIssued))]);
        assert_eq!((cache.len(), cache.unknown_len()), (2, 1));
        cache.remove(&[key(2)], 1);
        assert_eq!(cache.len(), 2, "made from a read at or after the removal's");
        cache.remove(&[key(2)], 2);
        assert_eq!((cache.len(), cache.unknown_len()), (1, 0));
    }
}
