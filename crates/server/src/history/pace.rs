//! The replay budget of a namespace (`history.max_replay_events_per_second`): a token bucket that
//! resumes, and pages of `GET /event/history`, draw from before each read of the store. A storm
//! of resumes, each on a new connection (which no per-connection bound sees), then costs the
//! server at most this many replayed events per second in the namespace, and the rest of the
//! server keeps its CPU. A read that finds the bucket empty waits its turn — paced, not refused.
//!
//! Reservations may take the bucket into debt, and each waits until its share is paid back at
//! the rate: readers are served in the order they asked, and the debt is bounded by the
//! namespace's concurrent reads (`history.max_concurrent_reads`) times one store call.
//!
//! Bytes (`history.max_replay_bytes_per_second`) are a second bucket, charged after each read
//! for what it returned (the size is not known before): a read may overdraw it, and later reads
//! wait until the overdraft is paid back.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Longest a waiting read sleeps before looking again whether its client is still there.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// One namespace's replay budget.
pub(super) struct Pace {
    /// Events per second.
    rate: f64,
    /// Most events saved up while idle: one second's worth, so a reconnect wave's first
    /// resumes are not paced at all.
    burst: f64,
    bucket: Mutex<Bucket>,
    /// Bytes per second, and one second's worth saved up at most.
    byte_rate: f64,
    bytes: Mutex<Bucket>,
}

struct Bucket {
    /// Negative while reservations wait.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Refills at `rate` up to `burst` until `now`, takes `n` (into debt if need be), and says
    /// when the debt is paid back (`now` when there is none).
    fn take(&mut self, n: f64, rate: f64, burst: f64, now: Instant) -> Instant {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + earned).min(burst) - n;
        self.at = now;
        if self.tokens >= 0.0 {
            now
        } else {
            now + Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

/// The reader's client left while it waited.
#[derive(Debug)]
pub(super) struct Left;

/// Events reserved for one read; what the read did not use goes back when this is dropped.
pub(super) struct Ticket<'a> {
    pace: &'a Pace,
    reserved: usize,
    used: usize,
}

impl Ticket<'_> {
    /// The read returned `events`: they are spent (the rest goes back), and their bytes are
    /// charged.
    pub fn used(self, events: &[herald_history::StoredEvent]) {
        let bytes = events.iter().map(|e| e.payload.len()).sum();
        self.spend(events.len(), bytes);
    }

    fn spend(mut self, n: usize, bytes: usize) {
        self.used = n.min(self.reserved);
        self.pace.charge_bytes(bytes);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.pace.refund(self.reserved - self.used);
    }
}

impl Pace {
    pub fn new(per_second: u64, bytes_per_second: u64) -> Pace {
        let rate = per_second.max(1) as f64;
        let byte_rate = bytes_per_second.max(1) as f64;
        Pace {
            rate,
            burst: rate,
            bucket: Mutex::new(Bucket {
                tokens: rate,
                at: Instant::now(),
            }),
            byte_rate,
            bytes: Mutex::new(Bucket {
                tokens: byte_rate,
                at: Instant::now(),
            }),
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        // Plain numbers: a panic while holding the lock leaves nothing inconsistent.
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn byte_bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refills the byte bucket to `now` and says until when it is overdrawn.
    fn bytes_due(&self, now: Instant) -> Instant {
        self.byte_bucket()
            .take(0.0, self.byte_rate, self.byte_rate, now)
    }

    fn charge_bytes(&self, n: usize) {
        if n > 0 {
            self.byte_bucket().tokens -= n as f64;
        }
    }

    /// Takes `n` events, into debt if need be; returns when they are paid for.
    fn reserve(&self, n: usize) -> Instant {
        self.bucket()
            .take(n as f64, self.rate, self.burst, Instant::now())
    }

    fn refund(&self, n: usize) {
        if n > 0 {
            let mut b = self.bucket();
            b.tokens = (b.tokens + n as f64).min(self.burst);
        }
    }

    /// Waits until `n` events of the budget are the caller's. Looks every [`LOOK_EVERY`] whether
    /// `left` (its client is gone) and then gives them back; so does dropping the future.
    pub async fn take(&self, n: usize, left: impl Fn() -> bool) -> Result<Ticket<'_>, Left> {
        let ticket = Ticket {
            pace: self,
            reserved: n,
            used: 0,
        };
        let due = self.reserve(n);
        loop {
            let now = Instant::now();
            // The byte overdraft is looked at again after each wait: reads finishing meanwhile
            // may have added to it.
            let due = due.max(self.bytes_due(now));
            if now >= due {
                return Ok(ticket);
            }
            if left() {
                return Err(Left);
            }
            tokio::time::sleep_until(due.min(now + LOOK_EVERY)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_reads_past_the_burst_and_gives_back_what_is_unused() {
        let pace = Pace::new(100, u64::MAX);
        let start = Instant::now();
        // One second's worth is there at once.
        pace.take(100, || false).await.unwrap().spend(100, 0);
        assert_eq!(Instant::now(), start);
        // The next 50 are paid back at the rate.
        pace.take(50, || false).await.unwrap().spend(50, 0);
        assert_eq!(Instant::now() - start, Duration::from_millis(500));
        // Reserved (and waited for) but unused: given back, so the next read does not wait.
        pace.take(50, || false).await.unwrap().spend(0, 0);
        assert_eq!(Instant::now() - start, Duration::from_millis(1000));
        pace.take(50, || false).await.unwrap().spend(50, 0);
        assert_eq!(Instant::now() - start, Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_whose_client_left_stops_waiting_and_gives_its_share_back() {
        let pace = Pace::new(100, u64::MAX);
        pace.take(100, || false).await.unwrap().spend(100, 0);
        let start = Instant::now();
        assert!(pace.take(1000, || true).await.is_err());
        assert_eq!(Instant::now(), start, "gone already: no wait");
        // The 1000 went back: the next 10 wait only for themselves.
        pace.take(10, || false).await.unwrap().spend(10, 0);
        assert_eq!(Instant::now() - start, Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_read_are_charged_and_later_reads_wait_for_the_overdraft() {
        let pace = Pace::new(1_000_000, 1000);
        let start = Instant::now();
        // The first read is not refused for its size: it overdraws by 2000 bytes.
        pace.take(1, || false).await.unwrap().spend(1, 3000);
        assert_eq!(Instant::now(), start);
        pace.take(1, || false).await.unwrap().spend(1, 0);
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }
}
