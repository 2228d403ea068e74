//! Presence in a cluster (issue 15), over a real `nats-server` started by each test on a free
//! port: members and join/leave events cross nodes; counts stay exact while members come and go
//! on three nodes, through a reconnect storm; a node killed with SIGKILL (a child process running
//! this test binary's `node_process`) loses its members on the survivor within the TTL, with
//! leave events to a watcher there, and exactly one survivor sends its leave and disconnect
//! notices; a node that stops gracefully sends its members' leaves before it goes. A node played
//! by the test over NATS checks the wire protocol: a gap in a node's changes healed from its
//! chunked snapshot, malformed input ignored.

mod common;
#[path = "../../history/tests/support/nats.rs"]
mod nats;

use std::collections::HashSet;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Client, KEY, TestServer, config, http, start};
use herald_server::Config;
use herald_server::config::NamespaceConfig;
use herald_server::presence::PresenceConfig;
use nats::{Nats, free_port};
use serde_json::{Value, json};

/// Bound on waiting for the cluster to agree.
const AGREE: Duration = Duration::from_secs(15);

fn node_config(nats_url: &str, prefix: &str) -> Config {
    let mut c = config();
    c.cluster.nats_url = nats_url.to_owned();
    c.cluster.subject_prefix = prefix.to_owned();
    c.namespaces.push(NamespaceConfig {
        presence: Some(PresenceConfig {
            channel: Some(NOTICES.into()),
            ..PresenceConfig::default()
        }),
        ..NamespaceConfig::named("room")
    });
    c
}

/// Where every node publishes its lifecycle notices.
const NOTICES: &str = "/default/notices";

fn node(nats: &Nats) -> Config {
    node_config(&nats.url(), &format!("herald-pc-{}", nats.port))
}

async fn join(c: &mut Client, id: &str, channel: &str, presence: Value) {
    c.send(json!({
        "type": "subscribe", "id": id, "channel": channel,
        "authorization": {"x-api-key": KEY, "host": "localhost"},
        "presence": presence,
    }))
    .await;
    let ok = c.recv().await;
    assert_eq!(ok["type"], "subscribe_success", "{ok}");
}

/// The next presence event a watcher receives: (join|leave, member).
async fn next_event(c: &mut Client) -> (String, Value) {
    let frame = c.recv().await;
    assert_eq!(frame["type"], "data", "{frame}");
    let marker = frame["presence"].as_str().unwrap_or_default().to_owned();
    let event: Value =
        serde_json::from_str(frame["event"].as_str().unwrap_or_default()).unwrap_or(Value::Null);
    (marker, event["member"].clone())
}

/// A channel's count and members (all pages) as a node's HTTP read gives them.
async fn read(server: &TestServer, channel: &str) -> (u64, Vec<Value>) {
    let mut members = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/event/presence?channel={channel}&limit=1000");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let (status, _, body) = http(server, "GET", &path, &[("x-api-key", KEY)], b"").await;
        let page: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(status, 200, "{page}");
        members.extend(page["members"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => return (page["count"].as_u64().unwrap_or(u64::MAX), members),
        }
    }
}

/// Waits (bounded) until every node lists exactly the members whose `info.i` are `expect`, each
/// once, with a matching count.
async fn agree(nodes: &[&TestServer], channel: &str, expect: &[i64]) {
    let deadline = Instant::now() + AGREE;
    loop {
        let mut last = Vec::new();
        let mut all = true;
        for n in nodes {
            let (count, members) = read(n, channel).await;
            let mut got: Vec<i64> = members
                .iter()
                .map(|m| m["info"]["i"].as_i64().unwrap_or(-1))
                .collect();
            got.sort();
            let ids: HashSet<&str> = members
                .iter()
                .filter_map(|m| m["connectionId"].as_str())
                .collect();
            let ok = count as usize == expect.len() && got == expect && ids.len() == got.len();
            all &= ok;
            last.push((n.addr, count, got));
        }
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not agree on {expect:?}: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn members_and_their_events_cross_nodes() {
    let nats = Nats::start(free_port());
    let a = start(node(&nats)).await;
    let b = start(node(&nats)).await;

    let mut watcher = Client::ready(&b).await;
    join(
        &mut watcher,
        "w",
        "/room/x",
        json!({"events": true, "info": {"i": 0}}),
    )
    .await;
    let (marker, own) = next_event(&mut watcher).await;
    assert_eq!(
        (marker.as_str(), own["info"]["i"].as_i64()),
        ("join", Some(0))
    );

    // A member on node A: node B's watcher hears of it, node B's read lists and counts it.
    let mut ann = Client::ready(&a).await;
    join(&mut ann, "s", "/room/x", json!({"info": {"i": 1}})).await;
    let (marker, joined) = next_event(&mut watcher).await;
    assert_eq!(marker, "join");
    assert_eq!(joined["info"]["i"], 1);
    assert_eq!(joined["identity"], "test");
    agree(&[&a, &b], "/room/x", &[0, 1]).await;

    // Unsubscribing on A is a leave on B.
    ann.send(json!({"type": "unsubscribe", "id": "s"})).await;
    assert_eq!(ann.recv().await["type"], "unsubscribe_success");
    let (marker, left) = next_event(&mut watcher).await;
    assert_eq!(marker, "leave");
    assert_eq!(left["connectionId"], joined["connectionId"]);
    agree(&[&a, &b], "/room/x", &[0]).await;

    // So is closing the socket.
    let mut bob = Client::ready(&a).await;
    join(&mut bob, "s", "/room/x", json!({"info": {"i": 2}})).await;
    let (marker, joined) = next_event(&mut watcher).await;
    assert_eq!(
        (marker.as_str(), joined["info"]["i"].as_i64()),
        ("join", Some(2))
    );
    drop(bob);
    let (marker, left) = next_event(&mut watcher).await;
    assert_eq!(marker, "leave");
    assert_eq!(left["connectionId"], joined["connectionId"]);
    agree(&[&a, &b], "/room/x", &[0]).await;

    // A node that stops gracefully sends its members' leaves before it goes: they are gone from
    // the other node's reads well before the TTL would remove them.
    let mut carl = Client::ready(&a).await;
    join(&mut carl, "s", "/room/x", json!({"info": {"i": 3}})).await;
    assert_eq!(next_event(&mut watcher).await.0, "join");
    agree(&[&b], "/room/x", &[0, 3]).await;
    let stopping = Instant::now();
    a.stop().await;
    agree(&[&b], "/room/x", &[0]).await;
    let (marker, left) = next_event(&mut watcher).await;
    assert_eq!(
        (marker.as_str(), left["info"]["i"].as_i64()),
        ("leave", Some(3))
    );
    let ttl = herald_server::config::ClusterConfig::default().presence_ttl_ms;
    assert!(
        stopping.elapsed() < Duration::from_millis(ttl / 2),
        "{:?}: removed by the TTL, not by leaves",
        stopping.elapsed()
    );
    drop(carl);
    b.stop().await;
}

#[tokio::test]
async fn counts_stay_exact_on_three_nodes_through_a_reconnect_storm() {
    let nats = Nats::start(free_port());
    let nodes = [
        start(node(&nats)).await,
        start(node(&nats)).await,
        start(node(&nats)).await,
    ];
    let all: Vec<&TestServer> = nodes.iter().collect();
    const N: usize = 20;
    let connect = |i: usize, on: usize| {
        let server = &nodes[on % 3];
        async move {
            let mut c = Client::ready(server).await;
            join(&mut c, "s", "/room/storm", json!({"info": {"i": i}})).await;
            c
        }
    };
    // Members join on all three nodes.
    let mut clients = Vec::new();
    for i in 0..N {
        clients.push(Some(connect(i, i).await));
    }
    let everyone: Vec<i64> = (0..N as i64).collect();
    agree(&all, "/room/storm", &everyone).await;

    // Half of them leave.
    for (i, c) in clients.iter_mut().enumerate() {
        if i % 2 == 0 {
            *c = None;
        }
    }
    let odd: Vec<i64> = (0..N as i64).filter(|i| i % 2 == 1).collect();
    agree(&all, "/room/storm", &odd).await;

    // The storm: every client closes and reconnects on another node, all at once, twice.
    for round in 1..=2 {
        clients.clear();
        let again = futures_util::future::join_all((0..N).map(|i| connect(i, i + round))).await;
        clients.extend(again.into_iter().map(Some));
    }
    agree(&all, "/room/storm", &everyone).await;

    clients.clear();
    agree(&all, "/room/storm", &[]).await;
    for n in nodes {
        n.stop().await;
    }
}

/// The node process, killed with SIGKILL when the test ends however it ends.
struct NodeProcess(std::process::Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a node in a child process (this binary's `node_process`) on `nats`.
async fn spawn_node(nats: &Nats) -> (NodeProcess, TestServer) {
    let prefix = format!("herald-pc-{}", nats.port);
    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["node_process", "--exact", "--nocapture", "--test-threads=1"])
        .env("PRESENCE_CLUSTER_NODE", format!("{} {prefix}", nats.url()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the node process starts");
    let stdout = child.stdout.take().expect("its stdout");
    let child = NodeProcess(child);
    let addr: SocketAddr = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest prints "test node_process ... " on the same line, before it.
            .find_map(|l| {
                l.split_once("NODE-ADDR ")
                    .and_then(|(_, a)| a.trim().parse().ok())
            })
    })
    .await
    .expect("reading its address")
    .expect("the node printed its address");
    (child, TestServer::elsewhere(addr))
}

/// Not a test on its own: when `PRESENCE_CLUSTER_NODE` is set (by `a_killed_node_s_members_…`),
/// runs one node in this process, prints its address and serves until killed.
#[tokio::test]
async fn node_process() {
    let Ok(spec) = std::env::var("PRESENCE_CLUSTER_NODE") else {
        return;
    };
    let (url, prefix) = spec.split_once(' ').expect("`<nats url> <prefix>`");
    let server = start(node_config(url, prefix)).await;
    println!("NODE-ADDR {}", server.addr);
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn a_killed_node_s_members_leave_within_the_ttl() {
    let nats = Nats::start(free_port());
    let survivor = start(node(&nats)).await;
    let defaults = herald_server::config::ClusterConfig::default();
    let (beat, ttl) = (
        Duration::from_millis(defaults.presence_heartbeat_ms),
        Duration::from_millis(defaults.presence_ttl_ms),
    );

    let (mut child, doomed) = spawn_node(&nats).await;

    let mut watcher = Client::ready(&survivor).await;
    join(
        &mut watcher,
        "w",
        "/room/k",
        json!({"events": true, "info": {"i": 0}}),
    )
    .await;
    assert_eq!(next_event(&mut watcher).await.0, "join");
    let mut members = Vec::new();
    for i in 1..=3 {
        let mut c = Client::ready(&doomed).await;
        join(&mut c, "s", "/room/k", json!({"info": {"i": i}})).await;
        members.push(c);
    }
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let (marker, m) = next_event(&mut watcher).await;
        assert_eq!(marker, "join");
        ids.insert(m["connectionId"].as_str().unwrap_or_default().to_owned());
    }
    agree(&[&survivor, &doomed], "/room/k", &[0, 1, 2, 3]).await;

    child.0.kill().expect("SIGKILL"); // No shutdown code runs: its members stay until the TTL.
    child.0.wait().expect("reaped");
    let killed = Instant::now();
    let deadline = killed + ttl + beat;
    loop {
        let (count, _) = read(&survivor, "/room/k").await;
        if count == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed node's members are still listed {:?} after the kill",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cleanup = killed.elapsed();
    println!(
        "kill -9 cleanup: {} ms (heartbeat {} ms, ttl {} ms)",
        cleanup.as_millis(),
        beat.as_millis(),
        ttl.as_millis()
    );
    // The last beat came at most one beat before the kill; death is checked every quarter beat.
    assert!(
        // (Plus slack for a loaded machine running tests in parallel.)
        cleanup <= ttl + beat / 4 + Duration::from_millis(750),
        "{cleanup:?}"
    );
    let mut left = HashSet::new();
    for _ in 0..3 {
        let (marker, m) = next_event(&mut watcher).await;
        assert_eq!(marker, "leave");
        left.insert(m["connectionId"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(left, ids, "a leave for each of its members, once");
    agree(&[&survivor], "/room/k", &[0]).await;
    drop(members);
    survivor.stop().await;
}

#[tokio::test]
async fn one_survivor_sends_a_dead_node_s_notices() {
    let nats = Nats::start(free_port());
    let survivors = [start(node(&nats)).await, start(node(&nats)).await];
    let mut backend = Client::ready(&survivors[0]).await;
    assert_eq!(
        backend.subscribe("n", NOTICES).await["type"],
        "subscribe_success"
    );
    let (mut child, doomed) = spawn_node(&nats).await;
    let mut members = Vec::new();
    for (i, channel) in ["/room/n1", "/room/n2"].into_iter().enumerate() {
        let mut c = Client::ready(&doomed).await;
        join(&mut c, "s", channel, json!({"info": {"i": i}})).await;
        members.push(c);
    }
    agree(&[&survivors[0], &survivors[1]], "/room/n1", &[0]).await;
    agree(&[&survivors[0], &survivors[1]], "/room/n2", &[1]).await;
    child.0.kill().expect("SIGKILL");
    child.0.wait().expect("reaped");
    for s in &survivors {
        agree(&[s], "/room/n1", &[]).await;
        agree(&[s], "/room/n2", &[]).await;
    }
    // The dead node's own connect and join notices came first; then one leave and one
    // disconnect per member, from one survivor only.
    let mut after_death = Vec::new();
    let deadline = Instant::now() + AGREE;
    while after_death.len() < 4 {
        assert!(Instant::now() < deadline, "{after_death:?}");
        let frame = backend.recv().await;
        let notice: Value =
            serde_json::from_str(frame["event"].as_str().unwrap_or_default()).unwrap_or_default();
        let kind = notice["type"].as_str().unwrap_or_default().to_owned();
        if kind == "leave" || kind == "disconnect" {
            after_death.push((kind, notice["member"]["info"]["i"].as_i64()));
        }
    }
    after_death.sort();
    assert_eq!(
        after_death,
        [
            ("disconnect".to_owned(), Some(0)),
            ("disconnect".to_owned(), Some(1)),
            ("leave".to_owned(), Some(0)),
            ("leave".to_owned(), Some(1)),
        ]
    );
    // Nothing more: a second survivor speaking would have sent its copies by now (both removed
    // the members before this point, and notices follow removal at once).
    let quiet = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(frame) = tokio::time::timeout_at(quiet, backend.recv_any()).await {
        assert_eq!(frame["type"], "ka", "a second copy of a notice: {frame}");
    }
    drop(members);
    for s in survivors {
        s.stop().await;
    }
}

/// A node played by the test over NATS, speaking the wire format of `presence/cluster.rs`: its
/// members (channel, connection, `info.i`) and the last change it numbered.
#[derive(Default)]
struct FakeNode {
    seq: u64,
    members: Vec<(String, String, i64)>,
}

const FAKE: &str = "fa4e0001";

fn member_json(connection: &str, i: i64) -> String {
    json!({"connectionId": connection, "identity": "fake", "joinedAt": 1, "info": {"i": i}})
        .to_string()
}

#[tokio::test]
async fn a_gap_in_a_node_s_changes_is_healed_from_its_snapshot_and_bad_input_is_ignored() {
    use std::sync::{Arc, Mutex};
    let nats = Nats::start(free_port());
    let prefix = format!("herald-pc-{}", nats.port);
    let a = start(node(&nats)).await;
    let mut watcher = Client::ready(&a).await;
    join(
        &mut watcher,
        "w",
        "/room/f",
        json!({"events": true, "info": {"i": 0}}),
    )
    .await;
    assert_eq!(next_event(&mut watcher).await.0, "join");

    let client = async_nats::connect(nats.url()).await.expect("NATS");
    let fake = Arc::new(Mutex::new(FakeNode {
        seq: 2,
        members: vec![("/room/f".into(), format!("{FAKE}-1"), 1)],
    }));
    // Its snapshots, in one chunk per member (so several chunks), the last marked.
    let mut requests = client
        .subscribe(format!("{prefix}._presence.sync.{FAKE}"))
        .await
        .expect("subscribed");
    let (server_client, server_fake) = (client.clone(), fake.clone());
    let snapshots = tokio::spawn(async move {
        while let Some(request) = futures_util::StreamExt::next(&mut requests).await {
            let Some(reply) = request.reply else { continue };
            let (seq, members) = {
                let f = server_fake.lock().unwrap();
                (f.seq, f.members.clone())
            };
            let n = members.len().max(1);
            for part in 0..n {
                let entries: Vec<Value> = members
                    .get(part)
                    .map(|(c, id, i)| {
                        serde_json::from_str::<Value>(&member_json(id, *i))
                            .map(|m| json!({"channel": c, "connection": id, "member": m}))
                            .unwrap()
                    })
                    .into_iter()
                    .collect();
                let chunk = json!({"node": FAKE, "seq": seq, "part": part, "last": part + 1 == n, "members": entries});
                server_client
                    .publish(reply.clone(), chunk.to_string().into())
                    .await
                    .unwrap();
            }
        }
    });
    // Its beats, every second, until it "dies".
    let (beat_client, beat_fake, beat_subject) = (
        client.clone(),
        fake.clone(),
        format!("{prefix}._presence.beat"),
    );
    let beats = tokio::spawn(async move {
        loop {
            let seq = beat_fake.lock().unwrap().seq;
            let beat = json!({"node": FAKE, "seq": seq}).to_string();
            beat_client
                .publish(beat_subject.clone(), beat.into())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let delta_subject = format!("{prefix}._presence.delta");
    let delta = |seq: u64, op: &str, connection: &str, i: i64| {
        json!({"node": FAKE, "seq": seq, "op": op, "channel": "/room/f", "connection": connection,
               "member": serde_json::from_str::<Value>(&member_json(connection, i)).unwrap()})
        .to_string()
    };
    let send = |body: String| {
        let (client, subject) = (client.clone(), delta_subject.clone());
        async move { client.publish(subject, body.into()).await.unwrap() }
    };

    // Its beat makes the node fetch its snapshot.
    let (marker, m) = next_event(&mut watcher).await;
    assert_eq!(
        (marker.as_str(), m["info"]["i"].as_i64()),
        ("join", Some(1))
    );
    agree(&[&a], "/room/f", &[0, 1]).await;

    // A change in sequence is applied.
    fake.lock()
        .unwrap()
        .members
        .push(("/room/f".into(), format!("{FAKE}-2"), 2));
    fake.lock().unwrap().seq = 3;
    send(delta(3, "join", &format!("{FAKE}-2"), 2)).await;
    let (marker, m) = next_event(&mut watcher).await;
    assert_eq!(
        (marker.as_str(), m["info"]["i"].as_i64()),
        ("join", Some(2))
    );

    // Change 4 is lost on the way; change 5 shows the gap, and the snapshot (at 5) heals it.
    {
        let mut f = fake.lock().unwrap();
        f.members.push(("/room/f".into(), format!("{FAKE}-3"), 3));
        f.members.push(("/room/f".into(), format!("{FAKE}-4"), 4));
        f.seq = 5;
    }
    send(delta(5, "join", &format!("{FAKE}-4"), 4)).await;
    agree(&[&a], "/room/f", &[0, 1, 2, 3, 4]).await;

    // Garbage, and a change naming another node's connection, change nothing (the latter still
    // takes its number); the next change applies.
    send("not json".into()).await;
    send(json!({"node": "../x", "seq": 1}).to_string()).await;
    send(delta(6, "join", "0123abcd-9", 9)).await;
    fake.lock().unwrap().seq = 7;
    fake.lock().unwrap().members.remove(0);
    send(delta(7, "leave", &format!("{FAKE}-1"), 1)).await;
    agree(&[&a], "/room/f", &[0, 2, 3, 4]).await;
    // Every join once, then the one leave: nothing was announced twice.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (marker, m) = next_event(&mut watcher).await;
        seen.push((marker, m["info"]["i"].as_i64()));
    }
    assert_eq!(
        seen,
        [
            ("join".to_owned(), Some(3)),
            ("join".to_owned(), Some(4)),
            ("leave".to_owned(), Some(1)),
        ]
    );

    // Silent past the TTL: its members leave.
    beats.abort();
    agree(&[&a], "/room/f", &[0]).await;
    snapshots.abort();
    a.stop().await;
}

#[tokio::test]
async fn without_presence_a_node_sends_nothing_for_it() {
    let nats = Nats::start(free_port());
    let prefix = format!("herald-pc-{}", nats.port);
    let client = async_nats::connect(nats.url()).await.expect("NATS");
    let mut heard = client
        .subscribe(format!("{prefix}._presence.>"))
        .await
        .expect("subscribed");
    client.flush().await.expect("the subscription is in place");
    let mut plain = node(&nats);
    plain.namespaces.retain(|n| n.presence.is_none());
    let quiet = start(plain).await;
    // Longer than a beat: a node with presence would have sent one by now.
    let beat = herald_server::config::ClusterConfig::default().presence_heartbeat_ms;
    let got = tokio::time::timeout(
        Duration::from_millis(beat * 3 / 2),
        futures_util::StreamExt::next(&mut heard),
    )
    .await;
    assert!(got.is_err(), "a node without presence sent {got:?}");
    // The same with presence on beats at once.
    let beating = start(node(&nats)).await;
    let got = tokio::time::timeout(AGREE, futures_util::StreamExt::next(&mut heard)).await;
    assert!(
        matches!(&got, Ok(Some(m)) if m.subject.as_str().ends_with("._presence.beat")),
        "{got:?}"
    );
    quiet.stop().await;
    beating.stop().await;
}

#[tokio::test]
async fn a_node_that_starts_late_gets_the_others_members_in_a_chunked_snapshot() {
    let nats = Nats::start(free_port());
    let a = start(node(&nats)).await;
    // 600 members of ~1 KB (4 connections, 150 channels each): a snapshot over 512 KiB.
    let pad = "x".repeat(900);
    let mut held = Vec::new();
    for c in 0..4 {
        let mut client = Client::ready(&a).await;
        for k in 0..150 {
            let i = c * 150 + k;
            join(
                &mut client,
                &format!("s{k}"),
                &format!("/room/big{i}"),
                json!({"info": {"i": i, "pad": pad}}),
            )
            .await;
        }
        held.push(client);
    }
    let b = start(node(&nats)).await;
    agree(&[&b], "/room/big599", &[599]).await;
    for i in 0..600 {
        let (count, members) = read(&b, &format!("/room/big{i}")).await;
        assert_eq!(count, 1, "/room/big{i}");
        assert_eq!(members[0]["info"]["i"], i, "/room/big{i}");
    }
    drop(held);
    a.stop().await;
    b.stop().await;
}
