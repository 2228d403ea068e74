//! FjallStore-only behaviour: what survives a close and reopen, and a wiped directory.

mod common;

use std::time::Duration;

use common::*;
use herald_history::{
    FjallOptions, FjallStore, HistoryStore, Position, Retention, Since, SyncPolicy,
    UnrecoverableReason,
};

fn open(dir: &std::path::Path, sync: SyncPolicy) -> FjallStore {
    FjallStore::open_with(
        dir,
        FjallOptions {
            sync,
            ..fjall_options()
        },
    )
    .expect("open")
}

#[tokio::test]
async fn reopen_keeps_events_epochs_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let (a, c, empty_epoch);
    {
        let s = open(dir.path(), SyncPolicy::Always);
        a = s
            .append("ns", "/ns/a", vec![b("1"), b("2")], 5)
            .await
            .unwrap();
        c = s.append("ns", "/ns/c/d", vec![b("x")], 6).await.unwrap();
        empty_epoch = s.top("/ns/never").await.unwrap().epoch;
    }
    let s = open(dir.path(), SyncPolicy::Always);
    assert_eq!(s.top("/ns/a").await.unwrap(), a[1]);
    assert_eq!(s.top("/ns/c/d").await.unwrap(), c[0]);
    let got = events(&s, "/ns/a", Since::Start).await;
    assert_eq!(got.iter().map(|e| e.position).collect::<Vec<_>>(), a);
    assert_eq!(got[1].payload, b("2"));
    assert_eq!(got[1].time_ms, 5);
    // A client that saw the never-used channel's (epoch, 0) can still resume it.
    assert_eq!(s.top("/ns/never").await.unwrap().epoch, empty_epoch);
    // Offsets continue, and the time clamp survives too.
    let next = s.append("ns", "/ns/a", vec![b("3")], 1).await.unwrap();
    assert_eq!(
        next,
        vec![Position {
            epoch: a[0].epoch,
            offset: 3
        }]
    );
    assert_eq!(events(&s, "/ns/a", Since::After(a[1])).await[0].time_ms, 5);
    assert_eq!(s.channels_under("/ns").await.unwrap(), ["/ns/a", "/ns/c/d"]);
}

#[tokio::test]
async fn reopen_keeps_retention_bookkeeping() {
    let dir = tempfile::tempdir().unwrap();
    let top;
    {
        let s = open(dir.path(), SyncPolicy::Always);
        s.set_retention(
            "ns",
            Retention {
                max_age: None,
                max_count: Some(2),
            },
        );
        for i in 1..=5 {
            s.append("ns", "/ns/r", vec![b(&i.to_string())], i)
                .await
                .unwrap();
        }
        // Remove everything from a second channel by age, so only bookkeeping is left of it.
        s.set_retention(
            "gone",
            Retention {
                max_age: Some(Duration::from_secs(1)),
                max_count: None,
            },
        );
        s.append("gone", "/gone/x", vec![b("a"), b("b")], 1)
            .await
            .unwrap();
        s.prune_now().await.unwrap();
        assert!(events(&s, "/gone/x", Since::Start).await.is_empty());
        top = s.top("/ns/r").await.unwrap();
    }
    let s = open(dir.path(), SyncPolicy::Always);
    assert_eq!(s.top("/ns/r").await.unwrap(), top);
    assert_eq!(
        offsets(&events(&s, "/ns/r", Since::Start).await),
        vec![4, 5]
    );
    let at = |offset| {
        Since::After(Position {
            epoch: top.epoch,
            offset,
        })
    };
    assert_eq!(
        unrecoverable(&s, "/ns/r", at(2)).await.0,
        UnrecoverableReason::Expired
    );
    assert_eq!(
        unrecoverable(&s, "/ns/r", Since::TimeMs(3)).await.0,
        UnrecoverableReason::Expired
    );
    let gone = s.top("/gone/x").await.unwrap();
    assert_eq!(
        gone.offset, 2,
        "a fully pruned channel keeps its offsets across restarts"
    );
    assert_eq!(
        s.append("gone", "/gone/x", vec![b("c")], 2).await.unwrap()[0].offset,
        3
    );
    assert_eq!(s.channels_under("/gone").await.unwrap(), ["/gone/x"]);
}

#[tokio::test]
async fn wiped_directory_gets_new_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let s = open(dir.path(), SyncPolicy::Always);
        s.append("ns", "/ns/a", vec![b("1")], 1).await.unwrap()[0]
    };
    std::fs::remove_dir_all(dir.path()).unwrap();
    let s = open(dir.path(), SyncPolicy::Always);
    let after = s.append("ns", "/ns/a", vec![b("1")], 1).await.unwrap()[0];
    assert_eq!(after.offset, 1);
    assert_ne!(after.epoch, before.epoch);
    assert_eq!(
        unrecoverable(&s, "/ns/a", Since::After(before)).await.0,
        UnrecoverableReason::EpochMismatch
    );
}

#[tokio::test]
async fn clean_close_under_interval_policy_keeps_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let p = {
        let s = open(dir.path(), SyncPolicy::IntervalMs(20));
        s.append("ns", "/ns/a", vec![b("1")], 1).await.unwrap()[0]
    };
    let s = open(dir.path(), SyncPolicy::IntervalMs(20));
    assert_eq!(s.top("/ns/a").await.unwrap(), p);
}

#[tokio::test]
async fn second_open_of_a_directory_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let _s = open(dir.path(), SyncPolicy::Always);
    let err = FjallStore::open_with(dir.path(), fjall_options())
        .err()
        .expect("locked");
    assert!(
        matches!(err, herald_history::HistoryError::Storage(_)),
        "{err}"
    );
}
