//! The responder core, without HTTP: answers OCSP requests from the pre-signed cache, signs
//! what cannot be pre-signed, and keeps the cache fresh from the status source.
//!
//! # Policies
//!
//! - **One CertID, no nonce** (RFC 5019): the pre-signed response for (issuer, hash, serial).
//!   On a miss (a certificate issued since the last change-feed poll, a never-issued serial, a
//!   CertID hash we do not pre-sign) the status is read from the source and a response is
//!   signed, cached and served; such signatures share the on-demand rate limit, and over it
//!   the answer is `tryLater`, so random serials cannot make the signer work without bound.
//!   At most `max_unknown_entries` responses for never-issued serials are kept.
//! - **A nonce** (RFC 9654): a response signed for this request echoing the nonce, with the
//!   status the cache holds (or the source's, for a serial not cached). Over the rate limit a
//!   single-CertID request gets the pre-signed response without the nonce (RFC 9654 §2.1
//!   lets a responder leave the nonce out), otherwise `tryLater`.
//! - **Several CertIDs**: answered together in one response signed for the request, when all
//!   name the same issuer we serve (one response has one signer, and each issuer has its own
//!   delegated responder); `unauthorized` when they name different issuers; at most
//!   [`crate::request::MAX_CERT_IDS`], more is `malformedRequest`.
//! - **CertID hash algorithms**: SHA-1, SHA-256, and SM3 for SM2 issuers. Any other hash is
//!   `malformedRequest`: the issuer cannot be identified, so no responder key could sign an
//!   `unknown` for it that the client would accept, and an unsigned error costs nothing. A
//!   supported hash whose issuerNameHash/issuerKeyHash match none of our issuers (SM3 for a
//!   P-256 issuer included) is `unauthorized` (RFC 6960 §2.3).
//! - **Never `good` for a serial the CA never issued**: `unknown` (R46). Statuses come only
//!   from the source; absence is [`CertificateStatus::NotIssued`].
//!
//! # Freshness
//!
//! Every response has thisUpdate = producedAt = signing time and nextUpdate = thisUpdate +
//! `validity`. A refresh pass (every `refresh_interval`) re-signs entries older than
//! `refresh_after` (minus up to a tenth of it, spread by serial so that re-signing does not
//! come in one burst), re-reads every issuer's list of unexpired certificates from the source
//! (so a missed change heals there too), and drops due entries for serials not on that list
//! (never issued, or expired: those are answered on demand again). The change feed is polled
//! every `poll_interval`; a changed status is re-signed at once.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use time::OffsetDateTime;

use crate::Error;
use crate::cache::{Cache, CacheHeaders, CacheKey, Entry};
use crate::issuer::{CertIdHash, Issuer};
use crate::metrics::{Metrics, Origin, Outcome};
use crate::request::{self, CertIdRef};
use crate::response::{self, INTERNAL_ERROR, MALFORMED_REQUEST, Single, TRY_LATER, UNAUTHORIZED};
use crate::source::{CertificateStatus, ChangeCursor, IssuerId, Serial, StatusSource};

/// Responses signed per blocking task while refreshing.
const SIGN_BATCH: usize = 256;

/// How the responder times and bounds its work. [`Settings::default`] is the production
/// default; [`Settings::validate`] says what is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// nextUpdate − thisUpdate of every response. Default 24 h: inside the 8 h – 10 days that
    /// BR §4.9.10 allows (R49), short enough that a response replayed after a revocation the
    /// client missed is stale within a day, long enough that a responder outage of several
    /// hours does not break relying parties.
    pub validity: Duration,
    /// Age at which a response is re-signed. Default 12 h: half the validity, as BR §4.9.10
    /// asks for validity ≥ 16 h, and well inside its "at least every 4 days" (R49).
    pub refresh_after: Duration,
    /// How often the change feed is read, 1 to 60 s. Default 10 s, so a revocation is served
    /// within 10 s + the source's own lag + signing time, well inside the 60 s the project asks.
    pub poll_interval: Duration,
    /// How often a refresh pass runs. Default 5 min.
    pub refresh_interval: Duration,
    /// The CertID hashes pre-signed for every certificate. Default SHA-1 only: RFC 5019 §2.1.1
    /// has clients use it, and OpenSSL, Go and Java do by default. SHA-256 (RFC 9919) and SM3
    /// CertIDs are signed on their first request and then kept fresh like the rest; pre-signing
    /// them too would double the signing work and the memory (about 1.7 KB a response) for
    /// requests few clients send.
    pub presign_hashes: Vec<CertIdHash>,
    /// On-demand signatures per second (cache misses, nonces, several CertIDs); the burst is
    /// the same number. Default 1000.
    pub on_demand_per_second: u32,
    /// The most responses for never-issued serials kept. Default 100 000.
    pub max_unknown_entries: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            validity: Duration::from_secs(24 * 3600),
            refresh_after: Duration::from_secs(12 * 3600),
            poll_interval: Duration::from_secs(10),
            refresh_interval: Duration::from_secs(300),
            presign_hashes: vec![CertIdHash::Sha1],
            on_demand_per_second: 1000,
            max_unknown_entries: 100_000,
        }
    }
}

/// Largest and smallest validity BR §4.9.10 allows.
const MIN_VALIDITY: Duration = Duration::from_secs(8 * 3600);
const MAX_VALIDITY: Duration = Duration::from_secs(10 * 24 * 3600);
/// The revocation visibility bound the change feed must keep (issue: at most 60 s).
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);

impl Settings {
    /// Checks the settings: validity within 8 h – 10 days (BR §4.9.10), refresh at or before
    /// half of it, a poll interval of 1–60 s, a refresh interval from 1 s to `refresh_after`,
    /// at least one pre-signed hash, a non-zero rate.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] naming the first setting out of range.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field, reason: String| Err(Error::InvalidSetting { field, reason });
        if self.validity < MIN_VALIDITY || self.validity > MAX_VALIDITY {
            return bad("validity", format!("{:?} is outside 8 h to 10 days (BR 4.9.10)", self.validity));
        }
        if self.refresh_after.is_zero() || self.refresh_after > self.validity / 2 {
            return bad("refresh_after", format!("{:?} must be > 0 and at most half the validity", self.refresh_after));
        }
        if self.poll_interval < Duration::from_secs(1) || self.poll_interval > MAX_POLL_INTERVAL {
            return bad("poll_interval", format!("{:?} must be 1 to 60 s", self.poll_interval));
        }
        if self.refresh_interval < Duration::from_secs(1) || self.refresh_interval > self.refresh_after {
            return bad("refresh_interval", format!("{:?} must be 1 s to refresh_after", self.refresh_interval));
        }
        if self.presign_hashes.is_empty() {
            return bad("presign_hashes", "at least one hash (sha1) is needed".into());
        }
        if self.on_demand_per_second == 0 {
            return bad("on_demand_per_second", "must be at least 1".into());
        }
        Ok(())
    }
}

/// The time source; tests use a fixed clock.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// What to send back for one request.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The DER OCSPResponse.
    pub body: Bytes,
    /// What it says.
    pub outcome: Outcome,
    /// Where it came from.
    pub origin: Origin,
    /// The cached entry, when the response may be cached by HTTP caches (no nonce, one
    /// CertID, successful); its header values go with it.
    pub cacheable: Option<Arc<Entry>>,
}

impl Answer {
    fn error(outcome: Outcome) -> Self {
        let body = match outcome {
            Outcome::MalformedRequest => MALFORMED_REQUEST,
            Outcome::Unauthorized => UNAUTHORIZED,
            Outcome::TryLater => TRY_LATER,
            _ => INTERNAL_ERROR,
        };
        Self { body: Bytes::from_static(body), outcome, origin: Origin::Unsigned, cacheable: None }
    }

    fn from_entry(entry: Arc<Entry>, origin: Origin) -> Self {
        Self { body: entry.der.clone(), outcome: outcome_of(entry.status), origin, cacheable: Some(entry) }
    }
}

fn outcome_of(status: CertificateStatus) -> Outcome {
    match status {
        CertificateStatus::Good => Outcome::Good,
        CertificateStatus::Revoked { .. } | CertificateStatus::Hold { .. } => Outcome::Revoked,
        CertificateStatus::NotIssued => Outcome::Unknown,
    }
}

/// What a refresh pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// Responses signed.
    pub signed: usize,
    /// Due responses dropped (never-issued or expired serials).
    pub evicted: usize,
    /// Responses held afterwards.
    pub entries: usize,
}

/// An OCSP responder for a set of issuers, over one status source. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Responder {
    inner: Arc<Inner>,
}

struct Inner {
    issuers: Vec<Issuer>,
    source: Arc<dyn StatusSource>,
    settings: Settings,
    cache: Cache,
    metrics: Metrics,
    limiter: RateLimiter,
    /// The change-feed cursor; `None` until [`Responder::start`] has run. Held across a poll,
    /// so polls do not overlap.
    cursor: tokio::sync::Mutex<Option<ChangeCursor>>,
    /// Held across a refresh pass, so passes do not overlap.
    refreshing: tokio::sync::Mutex<()>,
    /// Orders status reads: an entry made from a later read replaces one from an earlier read,
    /// never the other way round (a refresh pass that read its snapshot before a revocation
    /// must not overwrite the revoked response the change feed signed meanwhile).
    read_seq: AtomicU64,
    /// The first refresh pass has completed.
    ready: AtomicBool,
    clock: Clock,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("issuers", &self.inner.issuers)
            .field("source", &self.inner.source)
            .field("settings", &self.inner.settings)
            .field("cached", &self.inner.cache.len())
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// A responder for `issuers` reading `source`, on the system clock. Nothing is signed
    /// until [`Self::start`] (or [`Self::spawn_background`]) runs.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for bad settings or no issuer; [`Error::DuplicateIssuer`].
    pub fn new(issuers: Vec<Issuer>, source: Arc<dyn StatusSource>, settings: Settings) -> Result<Self, Error> {
        Self::with_clock(issuers, source, settings, Arc::new(OffsetDateTime::now_utc))
    }

    /// [`Self::new`] with a clock of the caller's.
    ///
    /// # Errors
    /// As [`Self::new`].
    pub fn with_clock(
        issuers: Vec<Issuer>,
        source: Arc<dyn StatusSource>,
        settings: Settings,
        clock: Clock,
    ) -> Result<Self, Error> {
        settings.validate()?;
        if issuers.is_empty() || issuers.len() > usize::from(u16::MAX) {
            return Err(Error::InvalidSetting { field: "issuers", reason: format!("{} issuers", issuers.len()) });
        }
        for (i, a) in issuers.iter().enumerate() {
            if issuers[..i].iter().any(|b| b.id() == a.id() || b.ca_certificate() == a.ca_certificate()) {
                return Err(Error::DuplicateIssuer { issuer: a.id().to_string() });
            }
        }
        let limiter = RateLimiter::new(settings.on_demand_per_second);
        Ok(Self {
            inner: Arc::new(Inner {
                cache: Cache::new(settings.max_unknown_entries),
                issuers,
                source,
                settings,
                metrics: Metrics::default(),
                limiter,
                cursor: tokio::sync::Mutex::new(None),
                refreshing: tokio::sync::Mutex::new(()),
                read_seq: AtomicU64::new(1),
                ready: AtomicBool::new(false),
                clock,
            }),
        })
    }

    /// The current time by the responder's clock.
    #[must_use]
    pub fn now(&self) -> OffsetDateTime {
        (self.inner.clock)()
    }

    /// The issuers answered for.
    #[must_use]
    pub fn issuers(&self) -> &[Issuer] {
        &self.inner.issuers
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The counters.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Number of responses held.
    #[must_use]
    pub fn cached(&self) -> usize {
        self.inner.cache.len()
    }

    /// Whether the first refresh pass has completed and the change feed was read within three
    /// poll intervals: what `/healthz` reports.
    ///
    /// # Errors
    /// A sentence saying what is not ready.
    pub fn health(&self) -> Result<(), String> {
        if !self.inner.ready.load(Ordering::Acquire) {
            return Err("pre-signing has not completed".into());
        }
        let synced = self.inner.metrics.last_feed_sync();
        let age = self.now().unix_timestamp() - synced;
        let limit = i64::try_from(self.inner.settings.poll_interval.as_secs().saturating_mul(3)).unwrap_or(i64::MAX);
        if age > limit.max(30) {
            return Err(format!("change feed last read {age} s ago"));
        }
        Ok(())
    }

    /// Answers the DER OCSPRequest `der` at the responder's current time.
    pub async fn respond(&self, der: &[u8]) -> Answer {
        let answer = self.respond_at(der, self.now()).await;
        self.inner.metrics.response(answer.outcome, answer.origin);
        answer
    }

    async fn respond_at(&self, der: &[u8], now: OffsetDateTime) -> Answer {
        let Ok(req) = request::parse(der) else {
            return Answer::error(Outcome::MalformedRequest);
        };
        let mut issuer = None;
        let mut targets = Vec::with_capacity(req.cert_ids.len());
        for cert_id in &req.cert_ids {
            let Some(hash) = CertIdHash::from_oid(&cert_id.hash_algorithm) else {
                return Answer::error(Outcome::MalformedRequest);
            };
            let Some(idx) = self.find_issuer(hash, cert_id) else {
                return Answer::error(Outcome::Unauthorized);
            };
            if issuer.is_some_and(|i| i != idx) {
                return Answer::error(Outcome::Unauthorized);
            }
            issuer = Some(idx);
            // A serial we cannot hold (over 21 octets) is not one we issued.
            targets.push((hash, Serial::from_der_content(cert_id.serial_number).ok()));
        }
        let Some(idx) = issuer else {
            return Answer::error(Outcome::MalformedRequest);
        };
        match (&targets[..], &req.nonce) {
            ([(hash, Some(serial))], None) => {
                let key = CacheKey { issuer: idx, hash: *hash, serial: *serial };
                match self.inner.cache.get(&key) {
                    Some(entry) if entry.next_update > now => Answer::from_entry(entry, Origin::Cache),
                    _ => self.sign_missing(key, now).await,
                }
            }
            _ => self.sign_for_request(idx, &req.cert_ids, &targets, req.nonce, now).await,
        }
    }

    /// The index of the issuer a CertID names.
    fn find_issuer(&self, hash: CertIdHash, cert_id: &CertIdRef<'_>) -> Option<u16> {
        let (name, key) = (cert_id.issuer_name_hash, cert_id.issuer_key_hash);
        let idx = self.inner.issuers.iter().position(|i| i.matches(hash, name, key))?;
        u16::try_from(idx).ok()
    }

    /// A cache miss for one CertID without a nonce: read, sign, cache, serve.
    async fn sign_missing(&self, key: CacheKey, now: OffsetDateTime) -> Answer {
        if !self.inner.limiter.try_take() {
            self.inner.metrics.rate_limited();
            return Answer::error(Outcome::TryLater);
        }
        let issuer = &self.inner.issuers[usize::from(key.issuer)];
        let seq = self.next_read_seq();
        let status = match self.inner.source.status(issuer.id(), &key.serial).await {
            Ok(status) => status,
            Err(e) => {
                tracing::error!(issuer = %issuer.id(), serial = %key.serial, "status lookup failed: {e}");
                return Answer::error(Outcome::InternalError);
            }
        };
        match self.sign_entries(vec![(key, status, seq)], now).await {
            Ok(mut entries) => match entries.pop() {
                Some((key, entry)) => {
                    self.inner.cache.insert([(key, Arc::clone(&entry))]);
                    Answer::from_entry(entry, Origin::Signed)
                }
                None => Answer::error(Outcome::InternalError),
            },
            Err(e) => {
                tracing::error!(issuer = %issuer.id(), "signing failed: {e}");
                Answer::error(Outcome::InternalError)
            }
        }
    }

    /// A response signed for this request: it has a nonce, several CertIDs, or a serial too
    /// long to cache.
    async fn sign_for_request(
        &self,
        idx: u16,
        cert_ids: &[CertIdRef<'_>],
        targets: &[(CertIdHash, Option<Serial>)],
        nonce: Option<&[u8]>,
        now: OffsetDateTime,
    ) -> Answer {
        if !self.inner.limiter.try_take() {
            self.inner.metrics.rate_limited();
            // RFC 9654 §2.1: a responder may answer without the nonce; better a pre-signed
            // answer than none while the signer is saturated.
            if let [(hash, Some(serial))] = targets
                && let Some(entry) = self.inner.cache.get(&CacheKey { issuer: idx, hash: *hash, serial: *serial })
                && entry.next_update > now
            {
                return Answer::from_entry(entry, Origin::Cache);
            }
            return Answer::error(Outcome::TryLater);
        }
        let issuer = &self.inner.issuers[usize::from(idx)];
        let mut singles = Vec::with_capacity(targets.len());
        for (cert_id, (_, serial)) in cert_ids.iter().zip(targets) {
            let status = match serial {
                None => CertificateStatus::NotIssued,
                Some(serial) => match self.cached_status(idx, serial) {
                    Some(status) => status,
                    None => match self.inner.source.status(issuer.id(), serial).await {
                        Ok(status) => status,
                        Err(e) => {
                            tracing::error!(issuer = %issuer.id(), %serial, "status lookup failed: {e}");
                            return Answer::error(Outcome::InternalError);
                        }
                    },
                },
            };
            // The client's CertID is echoed as it sent it (parameters and all).
            singles.push(Single { cert_id: cert_id.der_value.to_vec(), status });
        }
        let outcome = match &singles[..] {
            [one] => outcome_of(one.status),
            _ => Outcome::Multiple,
        };
        let validity = self.validity();
        // A quick signer (a software key) signs in place; see `blocking`.
        let signed = if issuer.signs_quickly() {
            self.sign_timed(issuer, &singles, nonce, now, now + validity)
        } else {
            let nonce = nonce.map(<[u8]>::to_vec);
            self.blocking(move |r| {
                let issuer = &r.inner.issuers[usize::from(idx)];
                r.sign_timed(issuer, &singles, nonce.as_deref(), now, now + validity)
            })
            .await
        };
        match signed {
            Ok(der) => Answer { body: Bytes::from(der), outcome, origin: Origin::Signed, cacheable: None },
            Err(e) => {
                tracing::error!(issuer = %issuer.id(), "signing failed: {e}");
                Answer::error(Outcome::InternalError)
            }
        }
    }

    /// The status the cache holds for `serial` of issuer `idx`, under any hash.
    fn cached_status(&self, idx: u16, serial: &Serial) -> Option<CertificateStatus> {
        CertIdHash::ALL
            .into_iter()
            .find_map(|hash| self.inner.cache.get(&CacheKey { issuer: idx, hash, serial: *serial }))
            .map(|e| e.status)
    }

    fn validity(&self) -> time::Duration {
        time::Duration::try_from(self.inner.settings.validity).unwrap_or(time::Duration::DAY)
    }

    fn next_read_seq(&self) -> u64 {
        self.inner.read_seq.fetch_add(1, Ordering::AcqRel)
    }

    /// Signs and times one response.
    fn sign_timed(
        &self,
        issuer: &Issuer,
        singles: &[Single],
        nonce: Option<&[u8]>,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, Error> {
        let started = Instant::now();
        let result = response::sign(issuer, singles, nonce, this_update, next_update, this_update);
        match &result {
            Ok(_) => {
                let elapsed = started.elapsed();
                issuer.record_signing_time(elapsed);
                self.inner.metrics.signed(elapsed);
            }
            Err(_) => self.inner.metrics.signing_error(),
        }
        result
    }

    /// Runs signing work on tokio's blocking pool (a signer may be a device round-trip), or in
    /// place outside a runtime. Not `block_in_place`: it panics on a current-thread runtime or
    /// inside a `LocalSet`. Callers skip this for one signature by a quick signer
    /// ([`Issuer::signs_quickly`]: a software key): the pool's hand-off costs two thread
    /// wake-ups, more CPU than a software P-256 signature (≈25 µs with ring).
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Self) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return work(self);
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || work(&this)).await.map_err(|e| Error::Task(e.to_string()))?
    }

    /// Signs pre-signable responses, with their canonical CertIDs, for `items`: (key, status,
    /// the read sequence number of that status).
    async fn sign_entries(
        &self,
        items: Vec<(CacheKey, CertificateStatus, u64)>,
        now: OffsetDateTime,
    ) -> Result<Vec<(CacheKey, Arc<Entry>)>, Error> {
        let validity = self.validity();
        let refresh_after = time::Duration::try_from(self.inner.settings.refresh_after).unwrap_or(time::Duration::HOUR);
        // A single entry (a cache miss being answered) from a quick signer is signed in place.
        let quick = match &items[..] {
            [(key, _, _)] => self.inner.issuers[usize::from(key.issuer)].signs_quickly(),
            _ => false,
        };
        let work = move |r: &Self| {
            let mut out = Vec::with_capacity(items.len());
            for (key, status, seq) in items {
                let issuer = &r.inner.issuers[usize::from(key.issuer)];
                let cert_id = response::cert_id_value(&issuer.cert_id(key.hash, &key.serial)?)?;
                let next_update = now + validity;
                let der = r.sign_timed(issuer, &[Single { cert_id, status }], None, now, next_update)?;
                let headers = CacheHeaders::new(&der, now, next_update);
                let entry = Entry {
                    der: Bytes::from(der),
                    status,
                    this_update: now,
                    next_update,
                    refresh_at: now + refresh_after - jitter(&key.serial, refresh_after),
                    headers,
                    status_seq: seq,
                };
                out.push((key, Arc::new(entry)));
            }
            Ok(out)
        };
        if quick { work(self) } else { self.blocking(work).await }
    }

    /// Reads the change feed's starting point and runs the first refresh pass, which signs a
    /// response for every certificate of every issuer. Until it completes, requests are
    /// answered on demand (rate-limited) and [`Self::health`] reports not ready.
    ///
    /// # Errors
    /// [`Error::Store`] when the source cannot be read; signing errors.
    pub async fn start(&self) -> Result<RefreshReport, Error> {
        {
            let mut cursor = self.inner.cursor.lock().await;
            if cursor.is_none() {
                *cursor = Some(self.inner.source.current_cursor().await?);
                self.inner.metrics.feed_synced(self.now().unix_timestamp());
            }
        }
        let report = self.refresh().await?;
        self.inner.ready.store(true, Ordering::Release);
        Ok(report)
    }

    /// One refresh pass: signs every unexpired certificate's missing or due responses and those
    /// whose status changed, and drops due responses for serials not on the source's list.
    ///
    /// # Errors
    /// [`Error::Store`] when the source cannot be read; signing errors (responses signed
    /// before the error are kept).
    pub async fn refresh(&self) -> Result<RefreshReport, Error> {
        let _pass = self.inner.refreshing.lock().await;
        let mut report = RefreshReport::default();
        for (idx, issuer) in self.inner.issuers.iter().enumerate() {
            // Invariant: `with_clock` refuses more than u16::MAX issuers.
            let idx = u16::try_from(idx).unwrap_or(u16::MAX);
            let seq = self.next_read_seq();
            let statuses: HashMap<Serial, CertificateStatus> =
                self.inner.source.all_serials(issuer.id(), self.now()).await?.into_iter().collect();
            let now = self.now();
            let mut todo = Vec::new();
            let mut evict = Vec::new();
            self.inner.cache.for_each(|key, entry| {
                if key.issuer != idx {
                    return;
                }
                let due = now >= entry.refresh_at || now >= entry.next_update;
                match statuses.get(&key.serial) {
                    // Not in the list (never issued, or expired): kept until due, then dropped;
                    // a later request reads its status again.
                    None if due => evict.push(*key),
                    None => {}
                    Some(current) if due || *current != entry.status => todo.push((*key, *current, seq)),
                    Some(_) => {}
                }
            });
            for (serial, status) in &statuses {
                for hash in self.inner.settings.presign_hashes.iter().copied().filter(|h| issuer.supports(*h)) {
                    let key = CacheKey { issuer: idx, hash, serial: *serial };
                    if self.inner.cache.get(&key).is_none() {
                        todo.push((key, *status, seq));
                    }
                }
            }
            drop(statuses);
            self.inner.cache.remove(&evict, seq);
            report.evicted += evict.len();
            for chunk in todo.chunks(SIGN_BATCH) {
                let entries = self.sign_entries(chunk.to_vec(), self.now()).await?;
                report.signed += entries.len();
                self.inner.cache.insert(entries);
            }
            if report.signed > 0 {
                tracing::info!(issuer = %issuer.id(), signed = report.signed, "refreshed pre-signed responses");
            }
        }
        report.entries = self.inner.cache.len();
        self.record_cache_state();
        Ok(report)
    }

    /// Reads the change feed once and re-signs every response whose status changed.
    /// Returns the number of responses signed. Does nothing before [`Self::start`].
    ///
    /// # Errors
    /// [`Error::Store`] when the source cannot be read; signing errors. The cursor only
    /// advances when everything succeeded, so a failed poll is retried in full.
    pub async fn poll_changes(&self) -> Result<usize, Error> {
        let mut cursor = self.inner.cursor.lock().await;
        let Some(from) = *cursor else {
            return Ok(0);
        };
        let started = self.now();
        let changes = self.inner.source.changed_since(from).await?;
        let changed: BTreeSet<(u16, Serial)> =
            changes.changed.iter().filter_map(|(issuer, serial)| Some((self.issuer_index(issuer)?, *serial))).collect();
        let mut todo = Vec::new();
        for (idx, serial) in changed {
            let issuer = &self.inner.issuers[usize::from(idx)];
            // One sequence number per read: a later read of this serial (by anyone) wins.
            let seq = self.next_read_seq();
            let status = self.inner.source.status(issuer.id(), &serial).await?;
            for hash in issuer.hash_algorithms() {
                let key = CacheKey { issuer: idx, hash, serial };
                let existing = self.inner.cache.get(&key).map(|e| e.status);
                let wanted = existing.is_some()
                    || (status != CertificateStatus::NotIssued && self.inner.settings.presign_hashes.contains(&hash));
                if wanted && existing != Some(status) {
                    todo.push((key, status, seq));
                }
            }
        }
        let mut signed = 0;
        for chunk in todo.chunks(SIGN_BATCH) {
            let entries = self.sign_entries(chunk.to_vec(), self.now()).await?;
            signed += entries.len();
            self.inner.cache.insert(entries);
        }
        if signed > 0 {
            tracing::info!(signed, "re-signed responses for changed certificates");
            self.record_cache_state();
        }
        *cursor = Some(changes.next);
        self.inner.metrics.feed_synced(started.unix_timestamp());
        Ok(signed)
    }

    fn issuer_index(&self, id: &IssuerId) -> Option<u16> {
        self.inner.issuers.iter().position(|i| i.id() == id).and_then(|i| u16::try_from(i).ok())
    }

    fn record_cache_state(&self) {
        let mut oldest: Option<i64> = None;
        self.inner.cache.for_each(|_, entry| {
            let t = entry.this_update.unix_timestamp();
            oldest = Some(oldest.map_or(t, |o| o.min(t)));
        });
        self.inner.metrics.cache_state(self.inner.cache.len(), self.inner.cache.unknown_len(), oldest);
    }

    /// Starts the background work on the current tokio runtime: [`Self::start`] (retried
    /// every poll interval until it succeeds), then the change-feed poll loop and the refresh
    /// loop. The tasks stop when the returned handle is dropped.
    #[must_use = "the background tasks stop when the handle is dropped"]
    pub fn spawn_background(&self) -> Background {
        let poll = self.clone();
        let started = Arc::new(tokio::sync::Notify::new());
        let notify = Arc::clone(&started);
        let poller = tokio::spawn(async move {
            let interval = poll.inner.settings.poll_interval;
            loop {
                match poll.start().await {
                    Ok(report) => {
                        tracing::info!(signed = report.signed, entries = report.entries, "OCSP responder ready");
                        break;
                    }
                    Err(e) => tracing::error!("initial pre-signing failed, retrying: {e}"),
                }
                tokio::time::sleep(interval).await;
            }
            notify.notify_one();
            loop {
                tokio::time::sleep(interval).await;
                if let Err(e) = poll.poll_changes().await {
                    tracing::error!("change feed poll failed: {e}");
                }
            }
        });
        let refresh = self.clone();
        let refresher = tokio::spawn(async move {
            started.notified().await;
            loop {
                tokio::time::sleep(refresh.inner.settings.refresh_interval).await;
                if let Err(e) = refresh.refresh().await {
                    tracing::error!("refresh pass failed: {e}");
                }
            }
        });
        Background { tasks: vec![poller, refresher] }
    }
}

/// Up to a tenth of `window`, fixed per serial: spreads re-signing over time. Serials are
/// random, so their last octets are a fair spread.
fn jitter(serial: &Serial, window: time::Duration) -> time::Duration {
    let bytes = serial.as_bytes();
    let tail = bytes.iter().rev().take(4).fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let span = u64::try_from(window.whole_seconds() / 10).unwrap_or(0);
    if span == 0 {
        return time::Duration::ZERO;
    }
    time::Duration::seconds(i64::try_from(tail % span).unwrap_or(0))
}

/// The responder's background tasks; dropping it stops them.
#[derive(Debug)]
pub struct Background {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` banked.
#[derive(Debug)]
struct RateLimiter {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second);
        Self { rate, state: Mutex::new((rate, Instant::now())) }
    }

    fn try_take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.rate);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            true
        } else {
            *state = (tokens, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_valid_and_bounds_are_enforced() {
        Settings::default().validate().unwrap();
        let short = Settings { validity: Duration::from_secs(3600), ..Settings::default() };
        assert!(matches!(short.validate(), Err(Error::InvalidSetting { field: "validity", .. })));
        let late = Settings { refresh_after: Duration::from_secs(13 * 3600), ..Settings::default() };
        assert!(matches!(late.validate(), Err(Error::InvalidSetting { field: "refresh_after", .. })));
        let slow = Settings { poll_interval: Duration::from_secs(61), ..Settings::default() };
        assert!(matches!(slow.validate(), Err(Error::InvalidSetting { field: "poll_interval", .. })));
    }

    #[test]
    fn rate_limiter_allows_a_burst_then_refuses() {
        let limiter = RateLimiter::new(3);
        assert!((0..3).all(|_| limiter.try_take()));
        assert!(!limiter.try_take());
    }

    #[test]
    fn jitter_stays_within_a_tenth() {
        let window = time::Duration::hours(12);
        for n in 0..=255u8 {
            let serial = Serial::from_der_content(&[0x40, n, n.wrapping_mul(7)]).unwrap();
            let j = jitter(&serial, window);
            assert!(j >= time::Duration::ZERO && j < window / 10);
        }
    }
}
