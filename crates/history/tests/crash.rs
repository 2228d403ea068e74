//! Crash safety: a child process appends and prints every acknowledged position; the parent
//! SIGKILLs it mid-way, reopens the directory and checks every acknowledged event is there.
//!
//! The child is this same test binary re-executed with `HERALD_CRASH_DIR` set, running only
//! `crash_child`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use herald_history::{FjallOptions, FjallStore, HistoryStore, Since, UnrecoverableReason};

const DIR_VAR: &str = "HERALD_CRASH_DIR";
const POLICY_VAR: &str = "HERALD_CRASH_POLICY";
const WRITERS: usize = 4;

/// Child side: a no-op unless started by `run_and_kill`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let policy = policy_from_name(&std::env::var(POLICY_VAR).unwrap_or_default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = std::sync::Arc::new(
            FjallStore::open_with(
                &dir,
                FjallOptions {
                    sync: policy,
                    ..fjall_options()
                },
            )
            .unwrap(),
        );
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let channel = format!("/crash/c{w}");
                    for i in 0u64.. {
                        let p = store
                            .append("crash", &channel, vec![b(&format!("{w}:{i}"))], i)
                            .await
                            .unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {channel} {} {} {w}:{i}", p[0].epoch, p[0].offset)
                            .unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

struct Ack {
    epoch: u64,
    offset: u64,
    payload: String,
}

/// Runs the child under `policy` until it has acknowledged `kill_after` appends, SIGKILLs it,
/// and returns every acknowledgement it printed, per channel.
fn run_and_kill(
    dir: &std::path::Path,
    policy: &str,
    kill_after: usize,
) -> BTreeMap<String, Vec<Ack>> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, dir)
        .env(POLICY_VAR, policy)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acks: BTreeMap<String, Vec<Ack>> = BTreeMap::new();
    let mut count = 0;
    let mut killed = false;
    // Lines printed before the kill are still read after it: they were acknowledged too.
    for line in stdout.lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("ACK ") else {
            continue;
        };
        let parts: Vec<&str> = rest.split(' ').collect();
        let [channel, epoch, offset, payload] = parts[..] else {
            panic!("bad line {line:?}")
        };
        acks.entry(channel.to_owned()).or_default().push(Ack {
            epoch: epoch.parse().unwrap(),
            offset: offset.parse().unwrap(),
            payload: payload.to_owned(),
        });
        count += 1;
        if count >= kill_after && !killed {
            child.kill().unwrap(); // SIGKILL on Unix
            killed = true;
        }
    }
    assert!(killed, "child exited before {kill_after} acknowledgements");
    let status = child.wait().unwrap();
    assert!(!status.success(), "child was killed, not finished");
    acks
}

#[tokio::test]
async fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let acks = run_and_kill(dir.path(), "always", 2000);
    let store = FjallStore::open_with(dir.path(), fjall_options()).unwrap();
    for (channel, acks) in &acks {
        let stored = events(&store, channel, Since::Start).await;
        let top = store.top(channel).await.unwrap();
        let last = acks.last().unwrap();
        assert!(
            top.offset >= last.offset,
            "{channel}: top {top:?} below acknowledged {}",
            last.offset
        );
        for ack in acks {
            assert_eq!(
                ack.epoch, top.epoch,
                "{channel}: epoch kept under SyncPolicy::Always"
            );
            let e = &stored[(ack.offset - 1) as usize];
            assert_eq!(e.position.offset, ack.offset);
            assert_eq!(
                e.payload,
                b(&ack.payload),
                "{channel} offset {}",
                ack.offset
            );
        }
        // Offsets are dense and continue after recovery.
        assert_eq!(offsets(&stored), (1..=top.offset).collect::<Vec<_>>());
        let next = store
            .append("crash", channel, vec![b("after")], 0)
            .await
            .unwrap();
        assert_eq!(next[0].offset, top.offset + 1);
    }
}

#[tokio::test]
async fn unclean_shutdown_without_fsync_changes_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let acks = run_and_kill(dir.path(), "interval", 100);
    let store = FjallStore::open_with(dir.path(), fjall_options()).unwrap();
    for (channel, acks) in &acks {
        let ack = acks.last().unwrap();
        let top = store.top(channel).await.unwrap();
        assert_ne!(
            top.epoch, ack.epoch,
            "{channel}: positions from before the crash must not match"
        );
        let before = herald_history::Position {
            epoch: ack.epoch,
            offset: ack.offset,
        };
        assert_eq!(
            unrecoverable(&store, channel, Since::After(before)).await.0,
            UnrecoverableReason::EpochMismatch
        );
    }
}
