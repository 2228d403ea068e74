//! Admin keys (`[admin] keys`, sent as `x-admin-key`): how long they must be, and how many
//! failed attempts are allowed. Guessing is bounded twice: keys must be at least
//! [`MIN_KEY_CHARS`] long (a configuration problem otherwise, see [`check_keys`]), and failed
//! attempts are limited by [`Failures`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest admin key accepted, in characters.
pub const MIN_KEY_CHARS: usize = 16;
/// Failed attempts allowed per window before the API answers 429 to everyone.
pub const MAX_FAILURES: u32 = 5;
/// The failure window.
const WINDOW: Duration = Duration::from_secs(60);

/// Checks `admin.keys`: each one at least [`MIN_KEY_CHARS`] characters. The key itself is never
/// printed, only its position and length.
pub fn check_keys(keys: &[String], problems: &mut Vec<String>) {
    for (i, key) in keys.iter().enumerate() {
        let n = key.chars().count();
        if n < MIN_KEY_CHARS {
            problems.push(format!(
                "admin.keys[{i}]: an admin key needs at least {MIN_KEY_CHARS} characters, this one has {n}"
            ));
        }
    }
}

/// Failed admin-key attempts, from anyone: one global fixed window. After [`MAX_FAILURES`]
/// failures within [`WINDOW`] of the window's first failure, every request (the right key too)
/// is answered 429 until the window ends. The simplest bound that needs no per-client state: a
/// guesser gets 5 tries a minute, at the price that a guesser can keep the admin API closed to
/// its operator, who still has SIGHUP.
#[derive(Debug, Default)]
pub struct Failures {
    window: Mutex<Window>,
}

/// The current window: when its first failure came (`None`: no failure yet), and how many.
#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    failures: u32,
}

impl Window {
    /// Time left in the window at `now`; zero when it is over or never started.
    fn left(&self, now: Instant) -> Duration {
        self.started.map_or(Duration::ZERO, |t| {
            WINDOW.saturating_sub(now.saturating_duration_since(t))
        })
    }
}

impl Failures {
    /// `None` when a key may be tried at `now`; otherwise how long until the window ends.
    pub fn closed_for(&self, now: Instant) -> Option<Duration> {
        let w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let left = w.left(now);
        (w.failures >= MAX_FAILURES && !left.is_zero()).then_some(left)
    }

    /// Counts a failure at `now`; the first failure after a window ends starts the next one.
    pub fn failed(&self, now: Instant) {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.left(now).is_zero() {
            *w = Window {
                started: Some(now),
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_close_the_api_for_the_rest_of_the_minute() {
        let f = Failures::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        for s in 0..5 {
            assert_eq!(f.closed_for(at(s)), None);
            f.failed(at(s));
        }
        assert_eq!(f.closed_for(at(5)), Some(Duration::from_secs(55)));
        assert_eq!(f.closed_for(at(59)), Some(Duration::from_secs(1)));
        // The window ends a minute after it started; the next failure opens a new one.
        assert_eq!(f.closed_for(at(60)), None);
        f.failed(at(61));
        assert_eq!(f.closed_for(at(62)), None);
    }

    #[test]
    fn short_keys_are_problems_that_do_not_show_the_key() {
        let mut problems = Vec::new();
        let keys = ["0123456789abcdef".to_string(), "hunter2".to_string()];
        check_keys(&keys, &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("admin.keys[1]:"), "{problems:?}");
        assert!(!problems[0].contains("hunter2"));
    }
}
