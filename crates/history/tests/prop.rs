//! Property test: random interleavings of appends and reads over a few channels, checked against
//! a plain model, on both stores. Offsets must stay gapless and every read must return exactly
//! what the model says (events, or the right unrecoverable reason).

mod common;

use common::*;
use herald_history::{HistoryStore, Position, ReadOutcome, Retention, Since, UnrecoverableReason};
use proptest::prelude::*;

const CHANNELS: [&str; 3] = ["/p/a", "/p/a/b", "/p/c"];

#[derive(Debug, Clone)]
enum Op {
    Append {
        ch: usize,
        n: usize,
    },
    ReadStart {
        ch: usize,
        limit: usize,
    },
    /// `back` steps below the top (may go below 0 → clamps, or above top by `ahead`).
    ReadAfter {
        ch: usize,
        back: u64,
        ahead: bool,
        wrong_epoch: bool,
        limit: usize,
    },
    ReadTime {
        ch: usize,
        t: u64,
        limit: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let ch = 0..CHANNELS.len();
    prop_oneof![
        3 => (ch.clone(), 0..4usize).prop_map(|(ch, n)| Op::Append { ch, n }),
        1 => (ch.clone(), 0..6usize).prop_map(|(ch, limit)| Op::ReadStart { ch, limit }),
        2 => (ch.clone(), 0..8u64, any::<bool>(), prop::bool::weighted(0.1), 0..6usize)
            .prop_map(|(ch, back, ahead, wrong_epoch, limit)| Op::ReadAfter { ch, back, ahead, wrong_epoch, limit }),
        1 => (ch, 0..40u64, 0..6usize).prop_map(|(ch, t, limit)| Op::ReadTime { ch, t, limit }),
    ]
}

/// Everything ever appended to one channel: `(payload, time)` at index `offset - 1`.
#[derive(Default)]
struct ModelChannel {
    all: Vec<(String, u64)>,
    first: u64,
}

impl ModelChannel {
    fn top(&self) -> u64 {
        self.all.len() as u64
    }
    fn events(&self, start: u64, limit: usize) -> Vec<Ev> {
        (start..=self.top())
            .take(limit)
            .map(|o| {
                let (p, t) = &self.all[(o - 1) as usize];
                (o, p.clone(), *t)
            })
            .collect()
    }
}

/// `(offset, payload, time_ms)` of one event.
type Ev = (u64, String, u64);

fn got(outcome: ReadOutcome) -> Result<(Vec<Ev>, u64), UnrecoverableReason> {
    match outcome {
        ReadOutcome::Events { events, top } => Ok((
            events
                .into_iter()
                .map(|e| {
                    (
                        e.position.offset,
                        String::from_utf8(e.payload.to_vec()).unwrap(),
                        e.time_ms,
                    )
                })
                .collect(),
            top.offset,
        )),
        ReadOutcome::Unrecoverable { reason, .. } => Err(reason),
    }
}

async fn run(
    store: &impl HistoryStore,
    max_count: Option<u64>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    store.set_retention(
        "p",
        Retention {
            max_age: None,
            max_count,
        },
    );
    let mut model: Vec<ModelChannel> = (0..CHANNELS.len())
        .map(|_| ModelChannel {
            all: vec![],
            first: 1,
        })
        .collect();
    let epoch = store.top(CHANNELS[0]).await.unwrap().epoch;
    for (step, op) in ops.into_iter().enumerate() {
        let time = step as u64;
        match op {
            Op::Append { ch, n } => {
                let m = &mut model[ch];
                let payloads: Vec<String> = (0..n).map(|k| format!("{step}.{k}")).collect();
                let positions = store
                    .append(
                        "p",
                        CHANNELS[ch],
                        payloads.iter().map(|p| b(p)).collect(),
                        time,
                    )
                    .await
                    .unwrap();
                let want: Vec<Position> = (m.top() + 1..=m.top() + n as u64)
                    .map(|offset| Position { epoch, offset })
                    .collect();
                prop_assert_eq!(positions, want);
                m.all.extend(payloads.into_iter().map(|p| (p, time)));
                if let Some(max) = max_count {
                    m.first = m.first.max((m.top() + 1).saturating_sub(max));
                }
            }
            Op::ReadStart { ch, limit } => {
                let m = &model[ch];
                let r = got(store.read(CHANNELS[ch], Since::Start, limit).await.unwrap());
                prop_assert_eq!(r, Ok((m.events(m.first, limit), m.top())));
            }
            Op::ReadAfter {
                ch,
                back,
                ahead,
                wrong_epoch,
                limit,
            } => {
                let m = &model[ch];
                let offset = if ahead {
                    m.top() + back.min(1)
                } else {
                    m.top().saturating_sub(back)
                };
                let pos = Position {
                    epoch: if wrong_epoch { epoch ^ 1 } else { epoch },
                    offset,
                };
                let want = if wrong_epoch {
                    Err(UnrecoverableReason::EpochMismatch)
                } else if offset > m.top() {
                    Err(UnrecoverableReason::AheadOfTop)
                } else if offset + 1 < m.first {
                    Err(UnrecoverableReason::Expired)
                } else {
                    Ok((m.events(offset + 1, limit), m.top()))
                };
                let r = got(store
                    .read(CHANNELS[ch], Since::After(pos), limit)
                    .await
                    .unwrap());
                prop_assert_eq!(r, want);
            }
            Op::ReadTime { ch, t, limit } => {
                let m = &model[ch];
                let removed_at_or_after = m.all[..(m.first - 1) as usize]
                    .iter()
                    .any(|(_, time)| *time >= t);
                let want = if removed_at_or_after {
                    Err(UnrecoverableReason::Expired)
                } else {
                    let start = m
                        .all
                        .iter()
                        .position(|(_, time)| *time >= t)
                        .map_or(m.top() + 1, |i| i as u64 + 1);
                    Ok((m.events(start.max(m.first), limit), m.top()))
                };
                let r = got(store
                    .read(CHANNELS[ch], Since::TimeMs(t), limit)
                    .await
                    .unwrap());
                prop_assert_eq!(r, want);
            }
        }
    }
    // Offsets are gapless: everything retained reads back in one piece.
    for (ch, m) in model.iter().enumerate() {
        let r = got(store
            .read(CHANNELS[ch], Since::Start, usize::MAX)
            .await
            .unwrap());
        prop_assert_eq!(r, Ok((m.events(m.first, usize::MAX), m.top())));
    }
    Ok(())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn retention() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![Just(None), (0..6u64).prop_map(Some)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn memory_matches_model(max_count in retention(), ops in prop::collection::vec(op(), 1..60)) {
        rt().block_on(run(&*memory().store, max_count, ops))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn fjall_matches_model(max_count in retention(), ops in prop::collection::vec(op(), 1..60)) {
        let fixture = fjall();
        rt().block_on(run(&*fixture.store, max_count, ops))?;
    }
}
