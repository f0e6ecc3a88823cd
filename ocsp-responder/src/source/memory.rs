//! An in-memory [`StatusSource`] for tests and demonstrations.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;

use super::{BoxFuture, CertificateStatus, ChangeCursor, Changes, IssuerId, Serial, StatusSource};
use crate::Error;

/// Certificate status held in memory. Every [`Self::set`] is a change in the feed, numbered
/// in order; the feed has no delay (its bound is zero).
#[derive(Debug, Default)]
pub struct MemorySource {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    issuers: HashMap<IssuerId, BTreeMap<Serial, CertificateStatus>>,
    /// (sequence number, issuer, serial), ascending.
    log: Vec<(i64, IssuerId, Serial)>,
    next_seq: i64,
}

impl MemorySource {
    /// An empty source.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `status` for `serial` of `issuer` (issuance, revocation, hold or release).
    /// [`CertificateStatus::NotIssued`] forgets the serial.
    pub fn set(&self, issuer: &IssuerId, serial: Serial, status: CertificateStatus) {
        let mut inner = self.lock();
        let certs = inner.issuers.entry(issuer.clone()).or_default();
        if status == CertificateStatus::NotIssued {
            certs.remove(&serial);
        } else {
            certs.insert(serial, status);
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.log.push((seq, issuer.clone(), serial));
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters to a reader (each update is one insert plus one push), so keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StatusSource for MemorySource {
    fn status<'a>(
        &'a self,
        issuer: &'a IssuerId,
        serial: &'a Serial,
    ) -> BoxFuture<'a, Result<CertificateStatus, Error>> {
        let status = self
            .lock()
            .issuers
            .get(issuer)
            .and_then(|certs| certs.get(serial).copied())
            .unwrap_or(CertificateStatus::NotIssued);
        Box::pin(async move { Ok(status) })
    }

    /// Every certificate set for `issuer` (this source knows no expiry).
    fn all_serials<'a>(
        &'a self,
        issuer: &'a IssuerId,
        _now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Vec<(Serial, CertificateStatus)>, Error>> {
        let all = self
            .lock()
            .issuers
            .get(issuer)
            .map(|certs| certs.iter().map(|(s, st)| (*s, *st)).collect())
            .unwrap_or_default();
        Box::pin(async move { Ok(all) })
    }

    fn current_cursor(&self) -> BoxFuture<'_, Result<ChangeCursor, Error>> {
        let next = self.lock().next_seq;
        Box::pin(async move { Ok(ChangeCursor(next)) })
    }

    fn changed_since(&self, cursor: ChangeCursor) -> BoxFuture<'_, Result<Changes, Error>> {
        let inner = self.lock();
        let start = inner.log.partition_point(|(seq, _, _)| *seq < cursor.0);
        let changed = inner.log[start..].iter().map(|(_, issuer, serial)| (issuer.clone(), *serial)).collect();
        let changes = Changes { changed, next: ChangeCursor(inner.next_seq) };
        drop(inner);
        Box::pin(async move { Ok(changes) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<T>(f: BoxFuture<'_, T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn reports_changes_after_the_cursor_only() {
        let source = MemorySource::new();
        let p256 = IssuerId::from("p256");
        let a = Serial::from_hex("01").unwrap();
        let b = Serial::from_hex("02").unwrap();
        source.set(&p256, a, CertificateStatus::Good);
        let cursor = block(source.current_cursor()).unwrap();
        source.set(&p256, b, CertificateStatus::Good);
        let changes = block(source.changed_since(cursor)).unwrap();
        assert_eq!(changes.changed, vec![(p256.clone(), b)]);
        assert!(block(source.changed_since(changes.next)).unwrap().changed.is_empty());
        assert_eq!(block(source.status(&p256, &a)).unwrap(), CertificateStatus::Good);
        let never = Serial::from_hex("03").unwrap();
        assert_eq!(block(source.status(&p256, &never)).unwrap(), CertificateStatus::NotIssued);
        assert_eq!(block(source.all_serials(&p256, OffsetDateTime::now_utc())).unwrap().len(), 2);
    }
}
