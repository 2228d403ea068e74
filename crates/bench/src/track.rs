//! Per-subscriber delivery bookkeeping (missing, duplicated, out-of-order events) and the shared
//! latency histograms.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::marker::Marker;

/// Order state of one (publisher, channel) stream as seen by one subscriber.
#[derive(Default)]
struct Stream {
    /// Every sequence below `next` has arrived.
    next: u64,
    /// Highest sequence seen plus one; an arrival below it (and not a duplicate) came late.
    max_seen: u64,
    /// Sequences that arrived ahead of a gap.
    ahead: BTreeSet<u64>,
}

/// What one subscriber saw.
#[derive(Default)]
pub struct SubTracker {
    streams: HashMap<u64, Stream>,
    pub received: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Events whose `channel` member was not the subscribed channel (checked only when events
    /// carry it).
    pub wrong_channel: u64,
}

impl SubTracker {
    pub fn record(&mut self, m: &Marker) {
        self.received += 1;
        let key = (u64::from(m.publisher) << 32) | u64::from(m.channel);
        let s = self.streams.entry(key).or_default();
        if m.seq < s.next || s.ahead.contains(&m.seq) {
            self.duplicated += 1;
            return;
        }
        if m.seq < s.max_seen {
            self.out_of_order += 1;
        }
        s.max_seen = s.max_seen.max(m.seq + 1);
        if m.seq == s.next {
            s.next += 1;
            while s.ahead.remove(&s.next) {
                s.next += 1;
            }
        } else {
            s.ahead.insert(m.seq);
        }
    }

    /// Distinct events received.
    pub fn unique(&self) -> u64 {
        self.streams
            .values()
            .map(|s| s.next + s.ahead.len() as u64)
            .sum()
    }
}

/// Completeness over all subscribers, given how many events each should have received.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Completeness {
    pub subscribers: u64,
    pub incomplete_subscribers: u64,
    pub expected: u64,
    pub received: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Events received beyond what was acknowledged to publishers (e.g. a publish that timed out
    /// client-side but was delivered).
    pub unexpected: u64,
    /// Events whose `channel` member was missing or not the subscribed channel.
    pub wrong_channel: u64,
    /// The first incomplete subscribers, individually (at most [`LISTED_SUBSCRIBERS`]).
    pub incomplete: Vec<SubscriberIssue>,
}

/// How many incomplete subscribers a report lists one by one.
pub const LISTED_SUBSCRIBERS: usize = 20;

/// Completeness of one subscriber that did not get exactly what it should have.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SubscriberIssue {
    pub subscriber: u64,
    pub channel: String,
    pub expected: u64,
    pub received: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub unexpected: u64,
    pub wrong_channel: u64,
}

impl Completeness {
    pub fn add(&mut self, subscriber: u64, channel: &str, t: &SubTracker, expected: u64) {
        let unique = t.unique();
        let missing = expected.saturating_sub(unique);
        let unexpected = unique.saturating_sub(expected);
        let bad = missing > 0
            || unexpected > 0
            || t.duplicated > 0
            || t.out_of_order > 0
            || t.wrong_channel > 0;
        if bad && self.incomplete.len() < LISTED_SUBSCRIBERS {
            self.incomplete.push(SubscriberIssue {
                subscriber,
                channel: channel.to_owned(),
                expected,
                received: t.received,
                missing,
                duplicated: t.duplicated,
                out_of_order: t.out_of_order,
                unexpected,
                wrong_channel: t.wrong_channel,
            });
        }
        self.subscribers += 1;
        self.expected += expected;
        self.received += t.received;
        self.missing += missing;
        self.duplicated += t.duplicated;
        self.out_of_order += t.out_of_order;
        self.unexpected += unexpected;
        self.wrong_channel += t.wrong_channel;
        if bad {
            self.incomplete_subscribers += 1;
        }
    }

    pub fn is_complete(&self) -> bool {
        self.missing == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.unexpected == 0
            && self.wrong_channel == 0
    }
}

const SHARDS: usize = 8;

/// Latency samples in microseconds, sharded so subscriber tasks on different threads rarely
/// contend; samples are batched per task before taking a lock.
pub struct LatencySink {
    shards: Vec<Mutex<Histogram<u64>>>,
    /// Slowest sample and samples of 1 ms or more since the last [`LatencySink::take_window`]:
    /// when in a run the slow ones came.
    window_max: AtomicU64,
    window_slow: AtomicU64,
}

/// A sample at least this slow (µs) counts as slow in the window counts.
const SLOW_US: u64 = 1_000;

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl Default for LatencySink {
    fn default() -> Self {
        LatencySink {
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
            window_max: AtomicU64::new(0),
            window_slow: AtomicU64::new(0),
        }
    }
}

impl LatencySink {
    pub fn record_batch(&self, shard: usize, samples: &[u64]) {
        let mut h = self.shards[shard % SHARDS].lock().expect("latency lock");
        let (mut max, mut slow) = (0, 0);
        for &s in samples {
            h.saturating_record(s.max(1));
            max = max.max(s);
            slow += u64::from(s >= SLOW_US);
        }
        drop(h);
        self.window_max.fetch_max(max, Ordering::Relaxed);
        if slow > 0 {
            self.window_slow.fetch_add(slow, Ordering::Relaxed);
        }
    }

    /// The slowest sample (µs) and the number of samples of 1 ms or more since the last call.
    pub fn take_window(&self) -> (u64, u64) {
        (
            self.window_max.swap(0, Ordering::Relaxed),
            self.window_slow.swap(0, Ordering::Relaxed),
        )
    }

    /// Merges all shards into one histogram and empties them (used between sweep steps).
    pub fn take(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for s in &self.shards {
            let mut h = s.lock().expect("latency lock");
            all.add(&*h).expect("same bounds");
            h.reset();
        }
        all
    }
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    pub fn from_hist(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// Process-wide clock origin; event timestamps are microseconds since it, so publisher and
/// subscriber tasks in this process compare them without wall-clock skew.
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Self {
        Clock(Instant::now())
    }

    pub fn micros_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.0).as_micros() as u64
    }

    pub fn now_us(&self) -> u64 {
        self.micros_at(Instant::now())
    }
}

/// Counters shown by the progress line and used to detect that draining is over.
#[derive(Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    pub published: AtomicU64,
    pub publish_errors: AtomicU64,
}

impl Counters {
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
    pub fn publish_errors(&self) -> u64 {
        self.publish_errors.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(seq: u64) -> Marker {
        Marker {
            publisher: 1,
            channel: 2,
            seq,
            sent_us: 0,
        }
    }

    #[test]
    fn in_order_is_complete() {
        let mut t = SubTracker::default();
        (0..100).for_each(|s| t.record(&m(s)));
        let mut c = Completeness::default();
        c.add(0, "/default/c", &t, 100);
        assert!(c.is_complete(), "{c:?}");
    }

    #[test]
    fn gaps_duplicates_and_reordering() {
        let mut t = SubTracker::default();
        for s in [0, 1, 3, 2, 2, 5, 0] {
            t.record(&m(s));
        }
        assert_eq!(t.duplicated, 2);
        assert_eq!(t.out_of_order, 1);
        let mut c = Completeness::default();
        c.add(3, "/default/c", &t, 7); // 0..=6 expected: 4 and 6 missing
        assert_eq!(c.missing, 2);
        assert_eq!(c.incomplete_subscribers, 1);
        assert_eq!(c.incomplete[0].subscriber, 3);
        assert_eq!(c.incomplete[0].missing, 2);
        assert!(!c.is_complete());
    }

    #[test]
    fn streams_are_independent() {
        let mut t = SubTracker::default();
        t.record(&Marker {
            publisher: 0,
            channel: 0,
            seq: 0,
            sent_us: 0,
        });
        t.record(&Marker {
            publisher: 1,
            channel: 0,
            seq: 0,
            sent_us: 0,
        });
        t.record(&Marker {
            publisher: 0,
            channel: 1,
            seq: 0,
            sent_us: 0,
        });
        assert_eq!(t.duplicated, 0);
        assert_eq!(t.unique(), 3);
    }
}
