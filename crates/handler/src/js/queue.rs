//! The JavaScript workers' queue: one bounded FIFO per namespace (a *lane*), served in turn by
//! the shared worker threads, with a cap on how many workers one lane may occupy at once.
//!
//! Why not one FIFO: a namespace whose handler runs into its time limit filled it, and every
//! other namespace waited behind that backlog (issue 20: 29.6 s for an unrelated publish). Here
//! a lane with waiting calls gets the next free worker in its turn, however long the other lanes
//! are; a lane at its worker cap is passed over, so with the cap below the worker count a free
//! worker is always left to the others. Overflow is answered at once, never queued:
//! - a full lane refuses its new call;
//! - when all lanes together are full, the newest call of the longest lane makes room (or the new
//!   call is refused if its own lane is the longest), so one lane's backlog never refuses another's.
//!
//! A lane whose last [`STRIKES`] calls all ran into a limit (time or heap; each also costs a
//! runtime rebuild) gets one worker at a time until one of its calls finishes within them.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Calls in a row that hit a limit before a lane is held to one worker.
pub(crate) const STRIKES: u32 = 3;

/// Sizes of the queue (see `EngineConfig` for the keys they come from).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Calls one lane may hold waiting.
    pub lane_waiting: usize,
    /// Calls all lanes together may hold waiting.
    pub total_waiting: usize,
    /// Workers one lane may occupy at once.
    pub lane_workers: usize,
}

/// Why a call was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its lane holds `Bounds::lane_waiting` calls.
    LaneFull,
    /// All lanes hold `Bounds::total_waiting` calls and its lane is the longest.
    TotalFull,
    /// The queue is closed (the pool is shutting down), or the lane does not exist.
    Closed,
}

/// A queued call: its ticket number, and the call it displaced, if any (to be answered).
pub(crate) struct Queued<J> {
    pub seq: u64,
    pub displaced: Option<J>,
}

/// How a call ended, as far as the lane's penalty is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ran {
    /// Finished (or failed) within the limits: the lane's strikes are cleared.
    Within,
    /// Hit the time or heap limit: one strike.
    OverLimit,
    /// Not run (the caller had gone): no change.
    Skipped,
}

struct Lane<J> {
    waiting: VecDeque<(u64, J)>,
    running: usize,
    strikes: u32,
    /// Whether the lane is in `State::turns`.
    has_turn: bool,
}

struct State<J> {
    lanes: Vec<Lane<J>>,
    /// Lanes that may have a call to start, in the order they get a worker. A lane is in it at
    /// most once; whether it can really start one is checked when its turn comes.
    turns: VecDeque<usize>,
    waiting: usize,
    next_seq: u64,
    closed: bool,
}

/// The queue, shared by the callers (async tasks) and the worker threads.
pub(crate) struct FairQueue<J> {
    state: Mutex<State<J>>,
    /// Signalled when a lane is given a turn, and at close.
    wake: Condvar,
    bounds: Bounds,
}

impl<J> FairQueue<J> {
    pub(crate) fn new(lanes: usize, bounds: Bounds) -> Self {
        let lanes = (0..lanes)
            .map(|_| Lane {
                waiting: VecDeque::new(),
                running: 0,
                strikes: 0,
                has_turn: false,
            })
            .collect();
        Self {
            state: Mutex::new(State {
                lanes,
                turns: VecDeque::new(),
                waiting: 0,
                next_seq: 0,
                closed: false,
            }),
            wake: Condvar::new(),
            bounds,
        }
    }

    pub(crate) fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// Queues `job` in `lane` without blocking, or says why not (handing the job back).
    pub(crate) fn push(&self, lane: usize, job: J) -> Result<Queued<J>, (Refused, J)> {
        let mut state = self.lock();
        if state.closed || lane >= state.lanes.len() {
            return Err((Refused::Closed, job));
        }
        let own = state.lanes[lane].waiting.len();
        if own >= self.bounds.lane_waiting {
            return Err((Refused::LaneFull, job));
        }
        let mut displaced = None;
        if state.waiting >= self.bounds.total_waiting {
            // Longest-queue drop: the lane holding the most pays for the overflow.
            let longest = (0..state.lanes.len())
                .max_by_key(|&i| state.lanes[i].waiting.len())
                .filter(|&i| state.lanes[i].waiting.len() > own + 1);
            let Some(longest) = longest else {
                return Err((Refused::TotalFull, job));
            };
            displaced = state.lanes[longest].waiting.pop_back().map(|(_, j)| j);
            state.waiting -= 1;
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.lanes[lane].waiting.push_back((seq, job));
        state.waiting += 1;
        self.offer(&mut state, lane);
        Ok(Queued { seq, displaced })
    }

    /// Takes call `seq` out of `lane` if it is still waiting; false if a worker already took it.
    pub(crate) fn cancel(&self, lane: usize, seq: u64) -> bool {
        let mut state = self.lock();
        let Some(waiting) = state.lanes.get_mut(lane).map(|l| &mut l.waiting) else {
            return false;
        };
        let Some(at) = waiting.iter().position(|(s, _)| *s == seq) else {
            return false;
        };
        let removed = waiting.remove(at);
        state.waiting -= 1;
        drop(state);
        drop(removed); // after unlocking: dropping a job may wake its caller
        true
    }

    /// For a worker: reports the call it finished (if any), then blocks until a lane's turn
    /// gives it the next call. `None` once the queue is closed.
    pub(crate) fn next(&self, finished: Option<(usize, Ran)>) -> Option<(usize, J)> {
        let mut state = self.lock();
        if let Some((lane, ran)) = finished {
            self.finish(&mut state, lane, ran);
        }
        loop {
            if state.closed {
                return None;
            }
            if let Some(next) = self.take(&mut state) {
                return Some(next);
            }
            state = self
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn finish(&self, state: &mut State<J>, lane: usize, ran: Ran) {
        let Some(l) = state.lanes.get_mut(lane) else {
            return;
        };
        l.running = l.running.saturating_sub(1);
        match ran {
            Ran::Within => l.strikes = 0,
            Ran::OverLimit => l.strikes = l.strikes.saturating_add(1),
            Ran::Skipped => {}
        }
        self.offer(state, lane);
    }

    /// The next call of the first lane in turn that may start one.
    fn take(&self, state: &mut State<J>) -> Option<(usize, J)> {
        while let Some(lane) = state.turns.pop_front() {
            let cap = self.cap(&state.lanes[lane]);
            let l = &mut state.lanes[lane];
            l.has_turn = false;
            if l.running >= cap {
                continue; // given a turn again when one of its calls finishes
            }
            let Some((_, job)) = l.waiting.pop_front() else {
                continue; // cancelled or displaced since
            };
            l.running += 1;
            state.waiting -= 1;
            // Back of the line: every other lane waiting gets a worker before its next call.
            self.offer(state, lane);
            return Some((lane, job));
        }
        None
    }

    /// Stops the workers (after their current call) and drops every waiting call, whose callers
    /// then see their reply channel closed.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let dropped: Vec<_> = state
            .lanes
            .iter_mut()
            .map(|l| std::mem::take(&mut l.waiting))
            .collect();
        state.waiting = 0;
        drop(state);
        self.wake.notify_all();
        drop(dropped);
    }

    /// Gives `lane` a turn if it has a call it may start and has no turn yet.
    fn offer(&self, state: &mut State<J>, lane: usize) {
        let cap = self.cap(&state.lanes[lane]);
        let l = &mut state.lanes[lane];
        if l.has_turn || l.waiting.is_empty() || l.running >= cap {
            return;
        }
        l.has_turn = true;
        state.turns.push_back(lane);
        self.wake.notify_one();
    }

    fn cap(&self, lane: &Lane<J>) -> usize {
        if lane.strikes >= STRIKES {
            1
        } else {
            self.bounds.lane_workers
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        // A panic while holding the lock leaves the state consistent (no multi-step updates
        // straddle a panic point), so carry on with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(lanes: usize, bounds: (usize, usize, usize)) -> FairQueue<&'static str> {
        let (lane_waiting, total_waiting, lane_workers) = bounds;
        FairQueue::new(
            lanes,
            Bounds {
                lane_waiting,
                total_waiting,
                lane_workers,
            },
        )
    }

    impl<J> FairQueue<J> {
        /// `next` without blocking: `None` when no lane may start a call.
        fn try_next(&self, finished: Option<(usize, Ran)>) -> Option<(usize, J)> {
            let mut state = self.lock();
            if let Some((lane, ran)) = finished {
                self.finish(&mut state, lane, ran);
            }
            self.take(&mut state)
        }
    }

    #[test]
    fn lanes_take_turns_whatever_their_length() {
        let q = queue(2, (10, 100, 10));
        for job in ["a1", "a2", "a3"] {
            q.push(0, job).unwrap();
        }
        q.push(1, "b1").unwrap();
        let order: Vec<_> = (0..4).map(|_| q.try_next(None).unwrap().1).collect();
        assert_eq!(order, ["a1", "b1", "a2", "a3"]);
        assert_eq!(q.try_next(None), None);
    }

    #[test]
    fn a_lane_at_its_cap_is_passed_over_until_a_call_finishes() {
        let q = queue(2, (10, 100, 1));
        q.push(0, "a1").unwrap();
        q.push(0, "a2").unwrap();
        assert_eq!(q.try_next(None), Some((0, "a1")));
        assert_eq!(q.try_next(None), None, "a2 waits for a1");
        q.push(1, "b1").unwrap();
        assert_eq!(q.try_next(None), Some((1, "b1")));
        assert_eq!(q.try_next(Some((0, Ran::Within))), Some((0, "a2")));
    }

    #[test]
    fn repeated_limit_failures_hold_a_lane_to_one_worker() {
        let q = queue(1, (10, 100, 2));
        for job in ["1", "2", "3", "4", "5", "6"] {
            q.push(0, job).unwrap();
        }
        assert_eq!(q.try_next(None), Some((0, "1")));
        assert_eq!(q.try_next(None), Some((0, "2")));
        assert_eq!(q.try_next(Some((0, Ran::OverLimit))), Some((0, "3")));
        assert_eq!(q.try_next(Some((0, Ran::OverLimit))), Some((0, "4")));
        // The third strike: one call still running, and the lane may now have only one.
        assert_eq!(q.try_next(Some((0, Ran::OverLimit))), None);
        assert_eq!(q.try_next(Some((0, Ran::OverLimit))), Some((0, "5")));
        assert_eq!(q.try_next(None), None);
        // A call within the limits lifts the penalty.
        assert_eq!(q.try_next(Some((0, Ran::Within))), Some((0, "6")));
        q.push(0, "7").unwrap();
        assert_eq!(q.try_next(None), Some((0, "7")));
    }

    #[test]
    fn overflow_refuses_the_longest_lane() {
        let q = queue(2, (3, 4, 1));
        for job in ["a1", "a2", "a3"] {
            q.push(0, job).unwrap();
        }
        assert_eq!(q.push(0, "a4").err(), Some((Refused::LaneFull, "a4")));
        q.push(1, "b1").unwrap();
        // Full in total: b's second call displaces a's newest, a's next call is refused.
        let queued = q.push(1, "b2").unwrap();
        assert_eq!(queued.displaced, Some("a3"));
        assert_eq!(q.push(0, "a5").err(), Some((Refused::TotalFull, "a5")));
        // Equal lengths: the newcomer is refused rather than displacing.
        assert_eq!(q.push(1, "b3").err(), Some((Refused::TotalFull, "b3")));
    }

    #[test]
    fn cancelled_calls_leave_the_queue() {
        let q = queue(1, (2, 2, 1));
        let first = q.push(0, "1").unwrap().seq;
        q.push(0, "2").unwrap();
        assert!(q.cancel(0, first));
        assert!(!q.cancel(0, first));
        q.push(0, "3").unwrap();
        assert_eq!(q.try_next(None), Some((0, "2")));
        assert!(!q.cancel(0, first + 1), "already taken by a worker");
    }

    #[test]
    fn close_wakes_idle_workers_and_refuses_calls() {
        let q = std::sync::Arc::new(queue(1, (2, 2, 1)));
        let worker = {
            let q = std::sync::Arc::clone(&q);
            std::thread::spawn(move || q.next(None))
        };
        q.close();
        assert_eq!(worker.join().unwrap(), None);
        assert_eq!(q.push(0, "late").err(), Some((Refused::Closed, "late")));
    }
}
