//! Counters for Prometheus, written in its text exposition format by hand (format 0.0.4).
//!
//! Lock-free: every counter is an atomic, so the hot path adds two relaxed increments.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// What a request was answered with: the OCSP response status, and for successful responses
/// the certificate status (several CertIDs: `multiple`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Outcome {
    /// successful, `good`.
    Good,
    /// successful, `revoked`.
    Revoked,
    /// successful, `unknown`.
    Unknown,
    /// successful, several CertIDs.
    Multiple,
    /// malformedRequest.
    MalformedRequest,
    /// unauthorized.
    Unauthorized,
    /// tryLater.
    TryLater,
    /// internalError.
    InternalError,
}

impl Outcome {
    const ALL: [Self; 8] = [
        Self::Good,
        Self::Revoked,
        Self::Unknown,
        Self::Multiple,
        Self::MalformedRequest,
        Self::Unauthorized,
        Self::TryLater,
        Self::InternalError,
    ];

    /// The label value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Revoked => "revoked",
            Self::Unknown => "unknown",
            Self::Multiple => "multiple",
            Self::MalformedRequest => "malformed_request",
            Self::Unauthorized => "unauthorized",
            Self::TryLater => "try_later",
            Self::InternalError => "internal_error",
        }
    }
}

/// Where a response came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Origin {
    /// The pre-signed cache.
    Cache,
    /// Signed for this request (nonce, several CertIDs, cache miss).
    Signed,
    /// No signature involved (error statuses).
    Unsigned,
}

impl Origin {
    const ALL: [Self; 3] = [Self::Cache, Self::Signed, Self::Unsigned];

    fn label(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Signed => "signed",
            Self::Unsigned => "unsigned",
        }
    }
}

/// Upper bounds of the signing-latency histogram buckets, in seconds.
const SIGNING_BUCKETS: [f64; 12] =
    [0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// HTTP-level refusals counted apart (the request never reached OCSP parsing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpRefusal {
    /// 413: body over the limit.
    TooLarge,
    /// 415: wrong content type.
    UnsupportedMediaType,
    /// 414: GET path over the limit.
    UriTooLong,
}

/// The responder's counters.
#[derive(Debug)]
pub struct Metrics {
    responses: [[AtomicU64; 3]; 8],
    http_refusals: [AtomicU64; 3],
    signing_buckets: [AtomicU64; 12],
    signing_count: AtomicU64,
    signing_nanos: AtomicU64,
    signing_errors: AtomicU64,
    rate_limited: AtomicU64,
    /// Oldest thisUpdate in the cache, Unix seconds (0: none yet), updated by each refresh pass.
    oldest_this_update: AtomicI64,
    /// Last time the change feed was read successfully, Unix seconds (0: never).
    feed_synced: AtomicI64,
    /// Entries in the cache and unknown ones among them, as of the last pass.
    cache_entries: AtomicU64,
    cache_unknown: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            responses: Default::default(),
            http_refusals: Default::default(),
            signing_buckets: Default::default(),
            signing_count: AtomicU64::new(0),
            signing_nanos: AtomicU64::new(0),
            signing_errors: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            oldest_this_update: AtomicI64::new(0),
            feed_synced: AtomicI64::new(0),
            cache_entries: AtomicU64::new(0),
            cache_unknown: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn response(&self, outcome: Outcome, origin: Origin) {
        self.responses[outcome as usize][origin as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one HTTP-level refusal.
    pub fn http_refusal(&self, refusal: HttpRefusal) {
        let i = match refusal {
            HttpRefusal::TooLarge => 0,
            HttpRefusal::UnsupportedMediaType => 1,
            HttpRefusal::UriTooLong => 2,
        };
        self.http_refusals[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Records how long one signature took.
    pub fn signed(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = SIGNING_BUCKETS.iter().position(|b| secs <= *b) {
            self.signing_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.signing_count.fetch_add(1, Ordering::Relaxed);
        self.signing_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counts a failed signature.
    pub fn signing_error(&self) {
        self.signing_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request that the on-demand rate limit turned away or degraded.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the state of the cache after a pass.
    pub fn cache_state(&self, entries: usize, unknown: usize, oldest_this_update: Option<i64>) {
        self.cache_entries.store(u64::try_from(entries).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.cache_unknown.store(u64::try_from(unknown).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.oldest_this_update.store(oldest_this_update.unwrap_or(0), Ordering::Relaxed);
    }

    /// Records a successful read of the change feed at `unix` seconds.
    pub fn feed_synced(&self, unix: i64) {
        self.feed_synced.store(unix, Ordering::Relaxed);
    }

    /// When the change feed was last read successfully (Unix seconds; 0: never).
    #[must_use]
    pub fn last_feed_sync(&self) -> i64 {
        self.feed_synced.load(Ordering::Relaxed)
    }

    /// Number of signatures made.
    #[must_use]
    pub fn signatures(&self) -> u64 {
        self.signing_count.load(Ordering::Relaxed)
    }

    /// Count of answered requests with `outcome` from `origin`.
    #[must_use]
    pub fn responses(&self, outcome: Outcome, origin: Origin) -> u64 {
        self.responses[outcome as usize][origin as usize].load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition at `now_unix`.
    #[must_use]
    pub fn render(&self, now_unix: i64) -> String {
        let mut out = String::with_capacity(4096);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.push_str(
            "# HELP ocsp_responses_total OCSP requests answered, by response (certificate) status and origin.\n",
        );
        out.push_str("# TYPE ocsp_responses_total counter\n");
        for outcome in Outcome::ALL {
            for origin in Origin::ALL {
                let n = load(&self.responses[outcome as usize][origin as usize]);
                let _ = writeln!(
                    out,
                    "ocsp_responses_total{{status=\"{}\",origin=\"{}\"}} {n}",
                    outcome.label(),
                    origin.label()
                );
            }
        }
        out.push_str("# HELP ocsp_http_refused_total HTTP requests refused before OCSP parsing, by HTTP status.\n");
        out.push_str("# TYPE ocsp_http_refused_total counter\n");
        for (code, counter) in ["413", "415", "414"].iter().zip(&self.http_refusals) {
            let _ = writeln!(out, "ocsp_http_refused_total{{code=\"{code}\"}} {}", load(counter));
        }
        out.push_str("# HELP ocsp_signing_seconds Time to sign one OCSP response.\n");
        out.push_str("# TYPE ocsp_signing_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, counter) in SIGNING_BUCKETS.iter().zip(&self.signing_buckets) {
            cumulative += load(counter);
            let _ = writeln!(out, "ocsp_signing_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = load(&self.signing_count);
        let _ = writeln!(out, "ocsp_signing_seconds_bucket{{le=\"+Inf\"}} {count}");
        #[expect(
            clippy::cast_precision_loss,
            reason = "a sum of nanoseconds shown in seconds; f64 is what the format wants"
        )]
        let sum = load(&self.signing_nanos) as f64 / 1e9;
        let _ = writeln!(out, "ocsp_signing_seconds_sum {sum}");
        let _ = writeln!(out, "ocsp_signing_seconds_count {count}");
        out.push_str(
            "# HELP ocsp_signing_errors_total Signatures that failed.\n# TYPE ocsp_signing_errors_total counter\n",
        );
        let _ = writeln!(out, "ocsp_signing_errors_total {}", load(&self.signing_errors));
        out.push_str(
            "# HELP ocsp_rate_limited_total Requests that needed an on-demand signature over the rate limit.\n\
             # TYPE ocsp_rate_limited_total counter\n",
        );
        let _ = writeln!(out, "ocsp_rate_limited_total {}", load(&self.rate_limited));
        out.push_str("# HELP ocsp_cache_entries Pre-signed responses held.\n# TYPE ocsp_cache_entries gauge\n");
        let _ = writeln!(out, "ocsp_cache_entries {}", load(&self.cache_entries));
        out.push_str("# HELP ocsp_cache_unknown_entries Responses held for never-issued serials.\n");
        out.push_str("# TYPE ocsp_cache_unknown_entries gauge\n");
        let _ = writeln!(out, "ocsp_cache_unknown_entries {}", load(&self.cache_unknown));
        let oldest = self.oldest_this_update.load(Ordering::Relaxed);
        out.push_str(
            "# HELP ocsp_cache_oldest_age_seconds Age of the oldest pre-signed response (now - thisUpdate).\n",
        );
        out.push_str("# TYPE ocsp_cache_oldest_age_seconds gauge\n");
        let _ = writeln!(out, "ocsp_cache_oldest_age_seconds {}", if oldest == 0 { 0 } else { now_unix - oldest });
        let synced = self.feed_synced.load(Ordering::Relaxed);
        out.push_str("# HELP ocsp_change_feed_age_seconds Seconds since the change feed was last read successfully.\n");
        out.push_str("# TYPE ocsp_change_feed_age_seconds gauge\n");
        let _ = writeln!(out, "ocsp_change_feed_age_seconds {}", if synced == 0 { -1 } else { now_unix - synced });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.response(Outcome::Good, Origin::Cache);
        m.signed(Duration::from_micros(80));
        m.signed(Duration::from_millis(3));
        let text = m.render(100);
        assert!(text.contains("ocsp_responses_total{status=\"good\",origin=\"cache\"} 1"), "{text}");
        assert!(text.contains("ocsp_signing_seconds_bucket{le=\"0.0001\"} 1"), "{text}");
        assert!(text.contains("ocsp_signing_seconds_bucket{le=\"0.005\"} 2"), "{text}");
        assert!(text.contains("ocsp_signing_seconds_count 2"), "{text}");
    }
}
