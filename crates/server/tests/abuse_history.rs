//! Hostile history readers against a real server (Herald issue 20, findings 1 and 4): a storm of
//! resumes that close at once must not delay publishes in the same namespace; `GET
//! /event/history` is bounded in bytes per page and in concurrent reads per namespace; a resume
//! whose client left stops.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use herald_server::config::HistoryConfig;
use serde_json::{Value, json};

/// Events in the big channel, and the size of each (JSON text).
const BIG_EVENTS: usize = 100;
const EVENT_BYTES: usize = 200_000;

/// A server whose resumes replay the whole big channel (filled), so that each takes a while;
/// `tune` sets the history limit under test.
async fn long_resumes(dir: &std::path::Path, tune: impl FnOnce(&mut HistoryConfig)) -> TestServer {
    let mut cfg = history_config(dir, None);
    cfg.history.max_replay_bytes = 32 << 20;
    cfg.limits.max_queued_bytes = 64 << 20;
    tune(&mut cfg.history);
    let server = start(cfg).await;
    fill_big_channel(&server).await;
    server
}

/// Fills `/chat/big` with `BIG_EVENTS` events of `EVENT_BYTES` each, five per request.
async fn fill_big_channel(server: &TestServer) {
    let event = format!("\"{}\"", "x".repeat(EVENT_BYTES - 2));
    for _ in 0..BIG_EVENTS / 5 {
        let (status, reply) = post(
            server,
            KEY,
            &json!({"channel": "/chat/big", "events": vec![event.clone(); 5]}),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
    }
}

async fn stop(server: Arc<TestServer>) {
    if let Some(server) = Arc::into_inner(server) {
        server.stop().await;
    }
}

/// One counter of `/metrics` for the `chat` namespace (0 when absent).
async fn chat_counter(server: &TestServer, name: &str) -> u64 {
    let (_, _, body) = http(server, "GET", "/metrics", &[], b"").await;
    let text = String::from_utf8(body).unwrap();
    let prefix = format!("herald_{name}_total{{namespace=\"chat\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Publishes one event to `/chat/calm` and returns how long the answer took; panics past
/// `give_up`.
async fn timed_publish(server: &TestServer, n: usize, give_up: Duration) -> Duration {
    let started = Instant::now();
    let body = json!({"channel": "/chat/calm", "events": [n.to_string()]});
    let answer = tokio::time::timeout(give_up, post(server, KEY, &body)).await;
    let waited = started.elapsed();
    let (status, reply) =
        answer.unwrap_or_else(|_| panic!("publish {n} unanswered after {waited:?}"));
    assert_eq!(status, 200, "{reply}");
    waited
}

fn median(waits: &mut [Duration]) -> Duration {
    waits.sort();
    waits[waits.len() / 2]
}

/// Finding 1. Two clients loop "connect, resume the big channel from the start, close" while a
/// well-behaved publisher keeps publishing to another channel of the namespace. A calm publish
/// takes 2–5 ms here (fsynced, debug build, two shared cores).
///
/// - During the storm every publish is answered, none after more than `BOUND`: 2 s is several
///   hundred calm publishes, and catches the stall the finding describes.
/// - Within `BOUND` of the storm's end, every resume it started has ended (gone live, refused,
///   or abandoned because its client left), and publishing is calm again: the median of `AFTER`
///   publishes stays under `CALM`.
///
/// Measured here with resumes read and replayed inside the namespace's lane (before the fix):
/// publishes during the storm had medians of 30–380 ms (the spread follows the allocator's
/// state) and a worst of 0.2–1.6 s, so the 2 s bound alone did not catch it with these sizes;
/// but 2 s after the storm only 100–700 of its 7000–10000 resumes had ended, the rest still
/// queued in the lane, to run for minutes (the finding's "blocked after the attack stopped").
/// After the fix: medians of 5–16 ms during the storm, about 3 ms after it, worst 30–260 ms, and
/// the storm's resumes all end with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_storm_does_not_delay_publishes() {
    const BOUND: Duration = Duration::from_secs(2);
    const CALM: Duration = Duration::from_millis(50);
    const ATTACK: Duration = Duration::from_secs(8);
    const AFTER: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(start(history_config(dir.path(), None)).await);
    fill_big_channel(&server).await;
    let until = Instant::now() + ATTACK;
    let attackers: Vec<_> = (0..2)
        .map(|a| {
            let server = server.clone();
            tokio::spawn(async move {
                let mut resumes = 0u64;
                while Instant::now() < until {
                    let mut c = Client::ready(&server).await;
                    c.send(json!({"type": "subscribe", "id": format!("a{a}-{resumes}"),
                        "channel": "/chat/big", "authorization": {"x-api-key": KEY},
                        "resume": {"since_ms": 0}}))
                        .await;
                    drop(c);
                    resumes += 1;
                }
                resumes
            })
        })
        .collect();
    let mut during = Vec::new();
    while Instant::now() < until {
        during.push(timed_publish(&server, during.len(), BOUND * 5).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut storm = 0;
    for a in attackers {
        storm += a.await.unwrap();
    }
    let worst = during.iter().max().copied().unwrap_or_default();
    let median_during = median(&mut during);
    eprintln!(
        "storm of {storm} resumes: {} publishes, median {median_during:?}, worst {worst:?}",
        during.len()
    );
    assert!(storm > 10, "the storm ran: {storm} resumes");
    assert!(
        worst <= BOUND,
        "a publish waited {worst:?} during a storm of {storm} resumes"
    );
    let settled = Instant::now() + BOUND;
    loop {
        let mut ended = 0;
        for counter in ["resumes", "resumes_abandoned", "subscribe_client_errors"] {
            ended += chat_counter(&server, counter).await;
        }
        if ended >= storm {
            break;
        }
        assert!(
            Instant::now() < settled,
            "{BOUND:?} after the storm, only {ended} of its {storm} resumes have ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut after = Vec::new();
    for n in 0..AFTER {
        after.push(timed_publish(&server, during.len() + n, BOUND).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let median_after = median(&mut after);
    assert!(
        median_after <= CALM,
        "publishes still wait after the storm: median {median_after:?}"
    );
    stop(server).await;
}

/// Finding 4. `GET /event/history` pages stay under `history.max_page_bytes` (the client pages
/// on with `since`), and reads beyond `history.max_concurrent_reads` get 429
/// `LimitExceededError` while the others succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_are_bounded_in_bytes_and_concurrency() {
    const CAP: usize = 500_000;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = history_config(dir.path(), None);
    cfg.history.max_page_bytes = CAP;
    cfg.history.max_concurrent_reads = 1;
    let server = Arc::new(start(cfg).await);
    fill_big_channel(&server).await;
    let get = |query: String| {
        let server = server.clone();
        async move {
            let (status, headers, body) = http(
                &server,
                "GET",
                &format!("/event/history?{query}"),
                &[("x-api-key", KEY)],
                b"",
            )
            .await;
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            (status, headers, body)
        }
    };
    // Paging through the channel: every page within the cap, every event once, in order.
    let mut since = String::new();
    let mut offsets = Vec::new();
    while offsets.len() < BIG_EVENTS {
        let (status, _, page) = get(format!("channel=/chat/big&limit=1000&since={since}")).await;
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        assert!(!events.is_empty(), "a page holds at least one event");
        let bytes: usize = events
            .iter()
            .map(|e| e["event"].as_str().unwrap().len())
            .sum();
        assert!(bytes <= CAP, "a page of {bytes} bytes exceeds {CAP}");
        for e in events {
            offsets.push(e["position"]["offset"].as_u64().unwrap());
        }
        let last = &events.last().unwrap()["position"];
        since = format!("{}:{}", last["epoch"].as_str().unwrap(), last["offset"]);
    }
    assert_eq!(offsets, (1..=BIG_EVENTS as u64).collect::<Vec<_>>());
    // Concurrent readers: some are refused, clearly; the others are served.
    let (mut served, mut refused) = (0, 0);
    for _ in 0..10 {
        let round: Vec<_> = (0..16)
            .map(|_| tokio::spawn(get("channel=/chat/big&limit=1000".into())))
            .collect();
        for r in round {
            let (status, headers, body) = r.await.unwrap();
            match status {
                200 => served += 1,
                429 => {
                    refused += 1;
                    assert_eq!(
                        body["errors"][0]["errorType"], "LimitExceededError",
                        "{body}"
                    );
                    assert!(
                        headers
                            .iter()
                            .any(|(k, v)| k == "x-amzn-errortype" && v == "LimitExceededError")
                    );
                }
                other => panic!("unexpected status {other}: {body}"),
            }
        }
        if refused > 0 && served > 0 {
            break;
        }
    }
    assert!(
        served > 0 && refused > 0,
        "served {served}, refused {refused}"
    );
    stop(server).await;
}

/// Finding 1, third part. A client asks to resume the big channel and leaves at once: the resume
/// stops (counted in `herald_resumes_abandoned_total`) instead of replaying into a dead
/// connection, and it no longer holds the namespace's read slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_stops_when_its_client_leaves() {
    let dir = tempfile::tempdir().unwrap();
    // One read slot: a resume that kept running would refuse the next.
    let server = long_resumes(dir.path(), |h| h.max_concurrent_reads = 1).await;
    let mut c = Client::ready(&server).await;
    c.send(
        json!({"type": "subscribe", "id": "gone", "channel": "/chat/big",
        "authorization": {"x-api-key": KEY}, "resume": {"since_ms": 0}}),
    )
    .await;
    drop(c);
    let deadline = Instant::now() + WAIT;
    while chat_counter(&server, "resumes_abandoned").await == 0 {
        assert!(
            Instant::now() < deadline,
            "the resume was not abandoned (resumes completed: {})",
            chat_counter(&server, "resumes").await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        chat_counter(&server, "resumes").await,
        0,
        "the resume did not complete"
    );
    // The read slot is free again: the next resume is served.
    let mut c = Client::ready(&server).await;
    let ok = c.resume("next", "/chat/big", json!({"since_ms": 0})).await;
    assert_eq!(ok["type"], "subscribe_success", "{ok}");
    assert_eq!(
        ok["resume"],
        json!({"recovered": true, "replayed": BIG_EVENTS})
    );
    server.stop().await;
}

/// A connection may have `history.max_resumes_per_connection` resumes in progress: three
/// resumes sent at once with a limit of one get one `subscribe_success` and two
/// `LimitExceededError`. An `unsubscribe` sent during a resume is answered once it ends, and
/// nothing of that subscription arrives after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_per_connection_are_bounded() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let server = long_resumes(dir.path(), |h| h.max_resumes_per_connection = 1).await;
    let mut c = Client::ready(&server).await;
    let subscribe = |id: &str| {
        Message::text(
            json!({"type": "subscribe", "id": id, "channel": "/chat/big",
            "authorization": {"x-api-key": KEY}, "resume": {"since_ms": 0}})
            .to_string(),
        )
    };
    for id in ["r1", "r2", "r3"] {
        c.ws.feed(subscribe(id)).await.unwrap();
    }
    c.ws.flush().await.unwrap();
    let mut refused = Vec::new();
    let mut replayed = 0;
    while replayed < BIG_EVENTS || refused.len() < 2 {
        let m = c.recv().await;
        match m["type"].as_str() {
            Some("subscribe_error") => {
                assert_eq!(m["errors"][0]["errorType"], "LimitExceededError", "{m}");
                refused.push(m["id"].as_str().unwrap().to_owned());
            }
            Some("subscribe_success") => assert_eq!(m["id"], "r1", "{m}"),
            Some("data") => replayed += 1,
            _ => panic!("unexpected {m}"),
        }
    }
    refused.sort();
    assert_eq!(refused, ["r2", "r3"]);
    // Unsubscribing while the resume runs: answered when it ends, and nothing follows.
    c.ws.feed(subscribe("r4")).await.unwrap();
    c.ws.feed(Message::text(
        json!({"type": "unsubscribe", "id": "r4"}).to_string(),
    ))
    .await
    .unwrap();
    c.ws.flush().await.unwrap();
    loop {
        let m = c.recv().await;
        match (m["type"].as_str(), m["id"].as_str()) {
            (Some("unsubscribe_success"), Some("r4")) => break,
            (Some("subscribe_success" | "data"), Some("r4")) => {}
            _ => panic!("unexpected {m}"),
        }
    }
    assert_eq!(
        c.subscribe("calm", "/chat/calm").await["type"],
        "subscribe_success"
    );
    for channel in ["/chat/big", "/chat/calm"] {
        let (status, _) = post(&server, KEY, &json!({"channel": channel, "events": ["1"]})).await;
        assert_eq!(status, 200);
    }
    // r1 is live and gets the first; r4 gets nothing; then the marker on /chat/calm.
    assert_eq!(c.recv().await["id"], "r1");
    assert_eq!(c.recv().await["id"], "calm");
    server.stop().await;
}

/// Fills `channel` with `n` events (`"1"`, `"2"`, …), five per request.
async fn fill(server: &TestServer, channel: &str, n: usize) {
    for first in (1..=n).step_by(5) {
        let events: Vec<String> = (first..(first + 5).min(n + 1))
            .map(|i| i.to_string())
            .collect();
        let (status, reply) =
            post(server, KEY, &json!({"channel": channel, "events": events})).await;
        assert_eq!(status, 200, "{reply}");
    }
}

/// Issue 20, resume storm across connections: `history.max_replay_events_per_second` paces the
/// replays of a namespace. Two resumes of 300 events each with a budget of 200 events/s (one
/// second's worth available at once) cannot both end before 2 s; each is complete and in order,
/// including events published to the channel while they wait (the seam holds); and publishes —
/// to another namespace, and to the paced channel itself — are answered before either ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_paced_by_the_namespace_budget() {
    const STORED: usize = 300;
    const LIVE: usize = 5;
    const RATE: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = history_config(dir.path(), None);
    cfg.history.max_replay_events_per_second = RATE;
    let server = start(cfg).await;
    fill(&server, "/chat/paced", STORED).await;

    let started = Instant::now();
    let mut resumes = Vec::new();
    for id in ["r1", "r2"] {
        let mut c = Client::ready(&server).await;
        c.send(
            json!({"type": "subscribe", "id": id, "channel": "/chat/paced",
            "authorization": {"x-api-key": KEY}, "resume": {"since_ms": 0}}),
        )
        .await;
        resumes.push(tokio::spawn(async move {
            let ok = c.recv().await;
            let answered = Instant::now();
            assert_eq!(ok["type"], "subscribe_success", "{ok}");
            assert_eq!(ok["resume"]["recovered"], true, "{ok}");
            let mut offsets = Vec::new();
            while offsets.len() < STORED + LIVE {
                let f = c.recv().await;
                assert_eq!(f["type"], "data", "{f}");
                offsets.push(f["position"]["offset"].as_u64().unwrap());
            }
            (answered, offsets)
        }));
    }
    // Neither publish waits on the replay budget.
    let (status, reply) = post(
        &server,
        KEY,
        &json!({"channel": "/default/elsewhere", "events": ["1"]}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let elsewhere = Instant::now();
    let live: Vec<String> = (STORED + 1..=STORED + LIVE)
        .map(|i| i.to_string())
        .collect();
    let (status, reply) = post(
        &server,
        KEY,
        &json!({"channel": "/chat/paced", "events": live}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let same_channel = Instant::now();

    let mut answered = Vec::new();
    for r in resumes {
        let (at, offsets) = r.await.unwrap();
        assert_eq!(
            offsets,
            (1..=(STORED + LIVE) as u64).collect::<Vec<_>>(),
            "every offset once, in order"
        );
        answered.push(at);
    }
    let first = answered.iter().min().copied().unwrap();
    let last = answered.iter().max().copied().unwrap();
    assert!(
        elsewhere < first && same_channel < first,
        "publishes were answered after a paced resume ended"
    );
    // 600 events, 200 of them at once, the rest at 200/s: at least 2 s.
    let paced = last - started;
    assert!(
        paced >= Duration::from_millis(1900),
        "two resumes of {STORED} events took {paced:?} at {RATE} events/s"
    );
    server.stop().await;
}

/// A resume waiting for the replay budget stops when its client leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_resume_stops_when_its_client_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = history_config(dir.path(), None);
    // 300 events at 10/s: half a minute of waiting, unless the resume stops.
    cfg.history.max_replay_events_per_second = 10;
    let server = start(cfg).await;
    fill(&server, "/chat/paced", 300).await;
    let mut c = Client::ready(&server).await;
    c.send(
        json!({"type": "subscribe", "id": "gone", "channel": "/chat/paced",
        "authorization": {"x-api-key": KEY}, "resume": {"since_ms": 0}}),
    )
    .await;
    drop(c);
    let deadline = Instant::now() + WAIT;
    while chat_counter(&server, "resumes_abandoned").await == 0 {
        assert!(
            Instant::now() < deadline,
            "the paced resume was not abandoned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(chat_counter(&server, "resumes").await, 0);
    server.stop().await;
}
