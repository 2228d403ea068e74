//! History over real sockets: positions on data frames, delivery feedback, resume with no gap and
//! no duplicate (also while publishers keep publishing, and for wildcards), unrecoverable resume
//! points, the HTTP history endpoint, and restart.

mod common;

use common::*;
use herald_server::config::HistoryBackend;
use serde_json::{Value, json};

fn position(frame: &Value) -> (String, u64) {
    let p = &frame["position"];
    (
        p["epoch"].as_str().expect("epoch string").to_owned(),
        p["offset"].as_u64().expect("offset"),
    )
}

#[tokio::test]
async fn positions_and_delivery_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(history_config(dir.path(), None)).await;
    let mut a = Client::ready(&server).await;
    let mut b = Client::ready(&server).await;
    assert_eq!(
        a.subscribe("s", "/chat/*").await["type"],
        "subscribe_success"
    );
    assert_eq!(
        b.subscribe("s", "/chat/room").await["type"],
        "subscribe_success"
    );
    let (status, reply) = post(
        &server,
        KEY,
        &json!({"channel": "/chat/room", "events": ["1", "2"]}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let ok = reply["successful"].as_array().unwrap();
    assert_eq!(ok[0]["delivered"], 2, "two subscriptions reached: {reply}");
    assert_eq!(ok[1]["position"]["offset"], 2);
    let epoch = ok[0]["position"]["epoch"].as_str().unwrap().to_owned();
    for c in [&mut a, &mut b] {
        for n in 1..=2u64 {
            let f = c.recv().await;
            assert_eq!(f["event"], n.to_string());
            assert_eq!(position(&f), (epoch.clone(), n));
            assert_eq!(f["position"]["channel"], "/chat/room");
        }
    }
    // Namespaces without history still report deliveries.
    let (_, reply) = post(
        &server,
        KEY,
        &json!({"channel": "/default/x", "events": ["1"]}),
    )
    .await;
    assert_eq!(reply["successful"][0]["delivered"], 0);
    assert!(reply["successful"][0].get("position").is_none());
    server.stop().await;
}

#[tokio::test]
async fn resume_replays_exactly_what_was_missed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(history_config(dir.path(), None)).await;
    let mut c = Client::ready(&server).await;
    assert_eq!(
        c.subscribe("s", "/chat/room").await["type"],
        "subscribe_success"
    );
    post(
        &server,
        KEY,
        &json!({"channel": "/chat/room", "events": ["1", "2"]}),
    )
    .await;
    c.recv().await;
    let last = c.recv().await;
    let (epoch, offset) = position(&last);
    drop(c);
    post(
        &server,
        KEY,
        &json!({"channel": "/chat/room", "events": ["3", "4", "5"]}),
    )
    .await;

    let mut c = Client::ready(&server).await;
    c.send(
        json!({"type": "subscribe", "id": "s2", "channel": "/chat/room",
        "authorization": {"x-api-key": KEY}, "resume": {"epoch": epoch, "offset": offset}}),
    )
    .await;
    let ok = c.recv().await;
    assert_eq!(ok["type"], "subscribe_success");
    assert_eq!(ok["resume"], json!({"recovered": true, "replayed": 3}));
    for n in 3..=5 {
        assert_eq!(c.recv().await["event"], n.to_string());
    }
    post(
        &server,
        KEY,
        &json!({"channel": "/chat/room", "events": ["6"]}),
    )
    .await;
    let live = c.recv().await;
    assert_eq!((live["event"].as_str(), position(&live).1), (Some("6"), 6));
    server.stop().await;
}

#[tokio::test]
async fn wildcard_resume_across_channels() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(history_config(dir.path(), None)).await;
    let t0 = herald_server::time::now_unix_ms();
    for ch in ["/chat/a", "/chat/b", "/chat/b/deep"] {
        post(&server, KEY, &json!({"channel": ch, "events": ["1", "2"]})).await;
    }
    let (_, r) = post(
        &server,
        KEY,
        &json!({"channel": "/chat/a", "events": ["3"]}),
    )
    .await;
    let epoch_a = r["successful"][0]["position"]["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut c = Client::ready(&server).await;
    // Seen /chat/a up to offset 2; everything else by time.
    c.send(json!({"type": "subscribe", "id": "w", "channel": "/chat/*",
        "authorization": {"x-api-key": KEY},
        "resume": {"positions": {"/chat/a": {"epoch": epoch_a, "offset": 2}}, "since_ms": t0}}))
        .await;
    let ok = c.recv().await;
    assert_eq!(
        ok["resume"],
        json!({"recovered": true, "replayed": 5}),
        "{ok}"
    );
    let mut got = Vec::new();
    for _ in 0..5 {
        let f = c.recv().await;
        got.push((
            f["position"]["channel"].as_str().unwrap().to_owned(),
            position(&f).1,
        ));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("/chat/a".into(), 3),
            ("/chat/b".into(), 1),
            ("/chat/b".into(), 2),
            ("/chat/b/deep".into(), 1),
            ("/chat/b/deep".into(), 2)
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn unrecoverable_resume_points_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(history_config(dir.path(), Some(2))).await;
    let (_, r) = post(
        &server,
        KEY,
        &json!({"channel": "/chat/r", "events": ["1", "2", "3", "4", "5"]}),
    )
    .await;
    let epoch = r["successful"][0]["position"]["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut c = Client::ready(&server).await;
    let cases = [
        (json!({"epoch": epoch, "offset": 1}), "expired"),
        (json!({"epoch": "12345", "offset": 1}), "epoch_changed"),
    ];
    for (i, (resume, reason)) in cases.into_iter().enumerate() {
        c.send(
            json!({"type": "subscribe", "id": format!("s{i}"), "channel": "/chat/r",
            "authorization": {"x-api-key": KEY}, "resume": resume}),
        )
        .await;
        let ok = c.recv().await;
        assert_eq!(ok["type"], "subscribe_success");
        assert_eq!(ok["resume"]["recovered"], false, "{ok}");
        assert_eq!(ok["resume"]["reason"], reason, "{ok}");
    }
    // A resume on a namespace without history says so.
    c.send(
        json!({"type": "subscribe", "id": "d", "channel": "/default/r",
        "authorization": {"x-api-key": KEY}, "resume": {"since_ms": 0}}),
    )
    .await;
    assert_eq!(c.recv().await["resume"]["reason"], "no_history");
    server.stop().await;
}

#[tokio::test]
async fn http_history_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(history_config(dir.path(), None)).await;
    post(
        &server,
        KEY,
        &json!({"channel": "/chat/h", "events": ["{\"a\":1}", "2", "3"]}),
    )
    .await;
    let get = |q: String| {
        let server = &server;
        async move {
            let (status, _, body) = http(
                server,
                "GET",
                &format!("/event/history?{q}"),
                &[("x-api-key", KEY)],
                b"",
            )
            .await;
            (
                status,
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };
    let (status, page) = get("channel=%2Fchat%2Fh&limit=2".into()).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"][0]["event"], "{\"a\":1}");
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["top"]["offset"], 3);
    let epoch = page["top"]["epoch"].as_str().unwrap();
    let (_, rest) = get(format!("channel=/chat/h&since={epoch}:2")).await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 1);
    assert_eq!(rest["events"][0]["position"]["offset"], 3);
    let (_, lost) = get("channel=/chat/h&since=1:2".into()).await;
    assert_eq!(
        (lost["recovered"].clone(), lost["reason"].clone()),
        (json!(false), json!("epoch_changed"))
    );
    let (status, _, _) = http(
        &server,
        "GET",
        "/event/history?channel=/chat/h",
        &[("x-api-key", "da2-wrong000")],
        b"",
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = get("channel=/default/h".into()).await;
    assert_eq!(status, 400, "no history in that namespace");
    server.stop().await;
}

#[tokio::test]
async fn history_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(history_config(dir.path(), None)).await;
    let (_, r) = post(
        &server,
        KEY,
        &json!({"channel": "/chat/p", "events": ["1", "2"]}),
    )
    .await;
    let epoch = r["successful"][0]["position"]["epoch"].clone();
    server.stop().await;
    let server = start(history_config(dir.path(), None)).await;
    let (_, r) = post(
        &server,
        KEY,
        &json!({"channel": "/chat/p", "events": ["3"]}),
    )
    .await;
    assert_eq!(
        r["successful"][0]["position"]["epoch"], epoch,
        "same epoch after a clean restart"
    );
    assert_eq!(r["successful"][0]["position"]["offset"], 3);
    server.stop().await;
}

#[tokio::test]
async fn memory_backend_works_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = history_config(dir.path(), None);
    cfg.history.backend = HistoryBackend::Memory;
    let server = start(cfg).await;
    let (status, r) = post(
        &server,
        KEY,
        &json!({"channel": "/chat/m", "events": ["1"]}),
    )
    .await;
    assert_eq!(
        (status, r["successful"][0]["position"]["offset"].clone()),
        (200, json!(1))
    );
    server.stop().await;
}

/// The seam under concurrent publishing: while publishers keep publishing, a subscriber drops
/// and resumes from its last position several times; it must see every offset exactly once, in
/// order. Random disconnect points and publisher counts, a few cases each run. With `wildcard`,
/// each publisher has its own channel under `/chat/seam/*` (created by its first publish, perhaps
/// while a resume runs), and the subscriber resumes with a position per channel it has seen.
#[test]
fn resume_seam_under_concurrent_publishing() {
    use proptest::prelude::*;
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 8,
        ..ProptestConfig::default()
    });
    let strategy = (
        1usize..4,
        proptest::collection::vec(1usize..40, 1..4),
        proptest::bool::ANY,
    );
    runner
        .run(&strategy, |(publishers, drops, wildcard)| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(seam(publishers, drops, wildcard));
            Ok(())
        })
        .unwrap();
}

async fn seam(publishers: usize, drops: Vec<usize>, wildcard: bool) {
    const PER_PUBLISHER: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let server = start(history_config(dir.path(), None)).await;
    let total = publishers * PER_PUBLISHER;
    let channel_of = move |p: usize| {
        if wildcard {
            format!("/chat/seam/p{p}")
        } else {
            "/chat/seam".to_owned()
        }
    };
    let subscribed = if wildcard {
        "/chat/seam/*"
    } else {
        "/chat/seam"
    };
    let mut c = Client::ready(&server).await;
    assert_eq!(
        c.subscribe("s", subscribed).await["type"],
        "subscribe_success"
    );
    let addr = server.addr;
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let channel = channel_of(p);
            tokio::spawn(async move {
                let s = TestAddr(addr);
                for i in 0..PER_PUBLISHER {
                    let body = json!({"channel": channel, "events": [json!({"p": p, "i": i}).to_string()]});
                    let (status, _) = s.post(&body).await;
                    assert_eq!(status, 200);
                }
            })
        })
        .collect();
    // Offsets seen per channel, in arrival order, and the last position of each.
    let mut seen: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    let mut last: std::collections::BTreeMap<String, (String, u64)> = Default::default();
    let mut received = 0;
    let mut drops = drops.into_iter();
    let mut next_drop = drops.next();
    let mut sub = 0;
    while received < total {
        if next_drop.is_some_and(|d| d <= received) {
            next_drop = drops.next();
            drop(std::mem::replace(&mut c, Client::ready(&server).await));
            sub += 1;
            let resume = if wildcard {
                let positions: serde_json::Map<String, Value> = last
                    .iter()
                    .map(|(ch, (epoch, offset))| {
                        (ch.clone(), json!({"epoch": epoch, "offset": offset}))
                    })
                    .collect();
                json!({"positions": positions, "since_ms": 0})
            } else {
                match last.values().next() {
                    Some((epoch, offset)) => json!({"epoch": epoch, "offset": offset}),
                    None => json!({"since_ms": 0}),
                }
            };
            let ok = c.resume(&format!("s{sub}"), subscribed, resume).await;
            assert_eq!(ok["resume"]["recovered"], true, "{ok}");
            continue;
        }
        let f = c.recv().await;
        assert_eq!(f["type"], "data", "{f}");
        let channel = f["position"]["channel"].as_str().unwrap().to_owned();
        let p = position(&f);
        seen.entry(channel.clone()).or_default().push(p.1);
        last.insert(channel, p);
        received += 1;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let per_channel = if wildcard { PER_PUBLISHER } else { total } as u64;
    let expected: Vec<u64> = (1..=per_channel).collect();
    assert_eq!(seen.len(), if wildcard { publishers } else { 1 });
    for (channel, offsets) in &seen {
        assert_eq!(offsets, &expected, "{channel}: every offset once, in order");
    }
    server.stop().await;
}

struct TestAddr(std::net::SocketAddr);

impl TestAddr {
    async fn post(&self, body: &Value) -> (u16, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.0).await.unwrap();
        let body = body.to_string();
        let req = format!(
            "POST /event HTTP/1.1\r\nhost: x\r\nx-api-key: {KEY}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let json = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (status, json)
    }
}
