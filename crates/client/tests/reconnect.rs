//! Reconnecting: the client's socket goes through a relay the test cuts or freezes while a
//! publisher keeps publishing (straight to the server); on a history namespace every event must
//! arrive exactly once, in order, on an exact and on a wildcard subscription.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use herald_client::{Auth, Client, Error, Event, Reconnect, Subscription};
use serde_json::{Value, json};

use support::{KEY, Relay, WAIT, key_and_history, start};

fn reconnecting(endpoint: &str) -> Client {
    Client::builder(endpoint, Auth::api_key(KEY))
        .reconnect(Reconnect {
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(500),
            max_attempts: None,
        })
        .build()
        .unwrap()
}

/// The next event; a notice or an error fails the test.
async fn next_event(sub: &mut Subscription) -> Event {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("{}: {e}", sub.channel()),
        Ok(None) => panic!("{}: the stream ended", sub.channel()),
        Err(_) => panic!("{}: no event within {WAIT:?}", sub.channel()),
    }
}

fn number(event: &Event) -> u64 {
    event.json::<Value>().unwrap()["i"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_while_publishing_lose_and_repeat_nothing() {
    const EVENTS: u64 = 400;
    const CUTS: [u64; 4] = [60, 140, 220, 300];
    let server = start(&key_and_history()).await;
    let relay = Relay::start(server.addr).await;
    let client = reconnecting(&relay.endpoint());
    let connection = client.connect().await.unwrap();
    let mut exact = connection.subscribe("/chat/room").await.unwrap();
    let mut wildcard = connection.subscribe("/chat/*").await.unwrap();

    // Even events to /chat/room, odd ones to /chat/other, over HTTP straight to the server.
    let (progress, mut published) = tokio::sync::watch::channel(0u64);
    let publisher = Client::new(&server.endpoint(), Auth::api_key(KEY)).unwrap();
    let publishing = tokio::spawn(async move {
        for i in 0..EVENTS {
            let channel = if i % 2 == 0 {
                "/chat/room"
            } else {
                "/chat/other"
            };
            let reply = publisher
                .publish(channel, &[json!({"i": i})])
                .await
                .unwrap();
            assert_eq!(reply.successful.len(), 1, "{reply:?}");
            progress.send_replace(i + 1);
        }
    });
    // The relay is cut at these points of the publishing: the client's socket drops mid-stream.
    let cutting = async {
        for (k, at) in CUTS.into_iter().enumerate() {
            published.wait_for(|n| *n >= at).await.unwrap();
            // On the socket of the previous reconnect, so that every cut drops one.
            relay.wait_accepted(k + 1).await;
            relay.cut();
        }
    };
    let reading_exact = async {
        let mut seen = Vec::new();
        while seen.len() < (EVENTS / 2) as usize {
            seen.push(next_event(&mut exact).await);
        }
        seen
    };
    let reading_wildcard = async {
        let mut seen = Vec::new();
        while seen.len() < EVENTS as usize {
            seen.push(next_event(&mut wildcard).await);
        }
        seen
    };
    let ((), on_exact, on_wildcard) = tokio::join!(cutting, reading_exact, reading_wildcard);
    publishing.await.unwrap();

    let numbers: Vec<u64> = on_exact.iter().map(number).collect();
    let expected: Vec<u64> = (0..EVENTS).step_by(2).collect();
    assert_eq!(numbers, expected, "the exact channel, in order, each once");
    let offsets: Vec<u64> = on_exact
        .iter()
        .map(|e| e.position.as_ref().unwrap().offset)
        .collect();
    assert_eq!(offsets, (1..=EVENTS / 2).collect::<Vec<_>>());

    // The wildcard: per channel in order, every event once.
    let mut per_channel: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in &on_wildcard {
        per_channel
            .entry(e.channel.clone())
            .or_default()
            .push(number(e));
    }
    assert_eq!(per_channel["/chat/room"], expected);
    assert_eq!(
        per_channel["/chat/other"],
        (1..EVENTS).step_by(2).collect::<Vec<_>>()
    );
    assert_eq!(per_channel.len(), 2);

    // Nothing more is waiting: no late duplicate.
    publish_marker(&server.endpoint()).await;
    assert_eq!(number(&next_event(&mut exact).await), 1_000_000);
    assert_eq!(number(&next_event(&mut wildcard).await), 1_000_000);
    assert_eq!(relay.links(), 1, "the client is connected again");
    // One new socket per cut, or more if a cut fell on a socket being opened.
    assert!(
        relay.accepted() > CUTS.len(),
        "{} sockets",
        relay.accepted()
    );
    connection.close();
    server.stop().await;
}

async fn publish_marker(endpoint: &str) {
    let publisher = Client::new(endpoint, Auth::api_key(KEY)).unwrap();
    publisher
        .publish("/chat/room", &[json!({"i": 1_000_000})])
        .await
        .unwrap();
}

/// A link that goes silent (no close, no reset) is noticed from the server's
/// `connectionTimeoutMs`; the client reconnects and replays what it missed meanwhile.
#[tokio::test]
async fn a_silent_link_is_dropped_after_the_connection_timeout() {
    let toml = format!(
        "{}[websocket]\nkeepalive_interval_ms = 100\nconnection_timeout_ms = 600\n",
        key_and_history()
    );
    let server = start(&toml).await;
    let relay = Relay::start(server.addr).await;
    let client = reconnecting(&relay.endpoint());
    let connection = client.connect().await.unwrap();
    let mut sub = connection.subscribe("/chat/quiet").await.unwrap();
    let publisher = Client::new(&server.endpoint(), Auth::api_key(KEY)).unwrap();
    publisher
        .publish("/chat/quiet", &[json!({"i": 1})])
        .await
        .unwrap();
    assert_eq!(number(&next_event(&mut sub).await), 1);

    relay.freeze();
    // Held by the frozen link; delivered by the resume on the next one.
    publisher
        .publish("/chat/quiet", &[json!({"i": 2})])
        .await
        .unwrap();
    publisher
        .publish("/chat/quiet", &[json!({"i": 3})])
        .await
        .unwrap();
    assert_eq!(number(&next_event(&mut sub).await), 2);
    assert_eq!(number(&next_event(&mut sub).await), 3);
    publisher
        .publish("/chat/quiet", &[json!({"i": 4})])
        .await
        .unwrap();
    assert_eq!(number(&next_event(&mut sub).await), 4);
    assert_eq!(relay.accepted(), 2, "a second socket, after the silence");
    connection.close();
    server.stop().await;
}

/// Without history nothing can be replayed: the stream says so, then goes on live.
#[tokio::test]
async fn without_history_a_reconnect_reports_the_gap() {
    let server = start(&key_and_history()).await;
    let relay = Relay::start(server.addr).await;
    let client = reconnecting(&relay.endpoint());
    let connection = client.connect().await.unwrap();
    let mut sub = connection.subscribe("/default/live").await.unwrap();
    relay.cut();
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Some(Err(Error::Gap { channel, reason }))) => {
            assert_eq!(channel, "/default/live");
            assert_eq!(reason, "no_history");
        }
        other => panic!("expected a gap notice, got {other:?}"),
    }
    // Subscribed again (the notice comes with `subscribe_success`): live events flow.
    let publisher = Client::new(&server.endpoint(), Auth::api_key(KEY)).unwrap();
    let reply = publisher
        .publish("/default/live", &[json!({"i": 7})])
        .await
        .unwrap();
    assert_eq!(reply.successful[0].delivered, Some(1));
    assert_eq!(number(&next_event(&mut sub).await), 7);
    connection.close();
    server.stop().await;
}

/// With reconnecting off, a dropped socket ends the stream with the reason.
#[tokio::test]
async fn without_reconnect_the_stream_ends() {
    let server = start(&key_and_history()).await;
    let relay = Relay::start(server.addr).await;
    let client = Client::builder(&relay.endpoint(), Auth::api_key(KEY))
        .no_reconnect()
        .build()
        .unwrap();
    let connection = client.connect().await.unwrap();
    let mut sub = connection.subscribe("/chat/once").await.unwrap();
    relay.cut();
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Some(Err(e @ Error::ConnectionLost { .. }))) => assert!(e.is_fatal()),
        other => panic!("expected the connection lost, got {other:?}"),
    }
    assert!(sub.next().await.is_none());
    assert!(matches!(
        connection.publish("/chat/once", &[1]).await,
        Err(Error::Closed)
    ));
    server.stop().await;
}

/// A subscription made with a resume point replays from it, then goes live; the outcome is
/// reported.
#[tokio::test]
async fn subscribe_from_a_position_replays_then_goes_live() {
    let server = start(&key_and_history()).await;
    let client = Client::new(&server.endpoint(), Auth::api_key(KEY)).unwrap();
    let first = client
        .publish(
            "/chat/log",
            &[json!({"i": 1}), json!({"i": 2}), json!({"i": 3})],
        )
        .await
        .unwrap();
    let position = first.successful[0].position.clone().unwrap();
    let connection = client.connect().await.unwrap();
    let mut sub = connection
        .subscribe_from(
            "/chat/log",
            herald_client::ResumeFrom::After {
                epoch: position.epoch,
                offset: position.offset,
            },
        )
        .await
        .unwrap();
    let outcome = sub.resume_outcome().unwrap();
    assert!(outcome.recovered);
    assert_eq!(outcome.replayed, 2);
    assert_eq!(number(&next_event(&mut sub).await), 2);
    assert_eq!(number(&next_event(&mut sub).await), 3);
    connection
        .publish("/chat/log", &[json!({"i": 4})])
        .await
        .unwrap();
    let live = next_event(&mut sub).await;
    assert_eq!(number(&live), 4);
    assert_eq!(live.position.unwrap().offset, 4);
    connection.close();
    server.stop().await;
}

/// A wildcard that misses events on a channel it has read and on one it has not: the resume
/// names the first's position and replays the second from the subscription's start.
#[tokio::test]
async fn a_wildcard_resumes_known_and_new_channels() {
    let toml = format!(
        "{}[websocket]\nkeepalive_interval_ms = 100\nconnection_timeout_ms = 600\n",
        key_and_history()
    );
    let server = start(&toml).await;
    let publisher = Client::new(&server.endpoint(), Auth::api_key(KEY)).unwrap();
    // Stored before the subscription: not for it.
    publisher
        .publish("/chat/new", &[json!({"i": 0})])
        .await
        .unwrap();
    let relay = Relay::start(server.addr).await;
    let client = Client::builder(&relay.endpoint(), Auth::api_key(KEY))
        .reconnect(Reconnect {
            initial_delay: Duration::from_millis(20),
            ..Reconnect::default()
        })
        .clock_skew(Duration::ZERO)
        .build()
        .unwrap();
    let connection = client.connect().await.unwrap();
    let mut sub = connection.subscribe("/chat/*").await.unwrap();
    publisher
        .publish("/chat/known", &[json!({"i": 1})])
        .await
        .unwrap();
    let first = next_event(&mut sub).await;
    assert_eq!((first.channel.as_str(), number(&first)), ("/chat/known", 1));

    relay.freeze();
    publisher
        .publish("/chat/known", &[json!({"i": 2})])
        .await
        .unwrap();
    publisher
        .publish("/chat/new", &[json!({"i": 3})])
        .await
        .unwrap();
    let mut got: Vec<(String, u64)> = Vec::new();
    for _ in 0..2 {
        let e = next_event(&mut sub).await;
        got.push((e.channel.clone(), number(&e)));
    }
    got.sort();
    assert_eq!(
        got,
        [("/chat/known".to_owned(), 2), ("/chat/new".to_owned(), 3)]
    );
    publisher
        .publish("/chat/known", &[json!({"i": 4})])
        .await
        .unwrap();
    assert_eq!(number(&next_event(&mut sub).await), 4);
    connection.close();
    server.stop().await;
}

/// With `with_channel`, a wildcard on a namespace without history still learns each event's
/// channel (Herald's `withChannel`).
#[tokio::test]
async fn with_channel_names_the_channel_without_history() {
    let server = start(&key_and_history()).await;
    let client = Client::builder(&server.endpoint(), Auth::api_key(KEY))
        .with_channel(true)
        .build()
        .unwrap();
    let connection = client.connect().await.unwrap();
    let mut sub = connection.subscribe("/default/*").await.unwrap();
    client
        .publish("/default/orders/eu", &[json!({"i": 1})])
        .await
        .unwrap();
    let event = next_event(&mut sub).await;
    assert_eq!(event.channel, "/default/orders/eu");
    assert_eq!(event.position, None);
    connection.close();
    server.stop().await;
}
