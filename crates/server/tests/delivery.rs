//! Delivery order under direct writes (`websocket.direct_write_max_fanout`): small fan-outs
//! write into subscribers' sockets from the publishing task, and what a socket does not take is
//! queued first in line. Subscribers that stop reading until their socket buffers are full must
//! still get every event exactly once, in order, in well-formed frames, for each subscription —
//! with direct writes off, on, and sent together through io_uring.

mod common;

use common::{Client, KEY, config, post, start};
use serde_json::{Value, json};

const EVENTS: usize = 400;
/// Large enough that the subscribers' socket buffers fill while they do not read.
const PAD: usize = 8 * 1024;

/// The sequence numbers each subscription id received, in arrival order.
async fn read_all(c: &mut Client, ids: &[&str], expected: usize) -> Vec<Vec<u64>> {
    let mut got = vec![Vec::new(); ids.len()];
    let mut total = 0;
    while total < expected {
        let m = c.recv().await;
        assert_eq!(m["type"], "data", "{m}");
        let event: Value = serde_json::from_str(m["event"].as_str().unwrap()).unwrap();
        let slot = ids.iter().position(|id| m["id"] == *id).unwrap();
        got[slot].push(event["n"].as_u64().unwrap());
        total += 1;
    }
    got
}

#[tokio::test]
async fn every_event_arrives_once_and_in_order_while_sockets_fill() {
    for (max_fanout, io_uring) in [(64, false), (0, false), (64, true)] {
        let mut c = config();
        c.websocket.direct_write_max_fanout = max_fanout;
        c.websocket.direct_write_io_uring = io_uring;
        // Nothing may be cut as a slow consumer here: the subscribers read only at the end.
        c.limits.max_queued_bytes = 64 << 20;
        let server = start(c).await;
        let mut both = Client::ready(&server).await;
        assert_eq!(
            both.subscribe("exact", "/default/room").await["type"],
            "subscribe_success"
        );
        assert_eq!(
            both.subscribe("wild", "/default/*").await["type"],
            "subscribe_success"
        );
        let mut one = Client::ready(&server).await;
        assert_eq!(
            one.subscribe("exact", "/default/room").await["type"],
            "subscribe_success"
        );

        let pad = "x".repeat(PAD);
        for batch in 0..EVENTS / 5 {
            let events: Vec<String> = (batch * 5..batch * 5 + 5)
                .map(|n| json!({"n": n, "pad": pad}).to_string())
                .collect();
            let (status, reply) = post(
                &server,
                KEY,
                &json!({"channel": "/default/room", "events": events}),
            )
            .await;
            assert_eq!(status, 200, "{reply}");
        }

        let in_order: Vec<u64> = (0..EVENTS as u64).collect();
        let got = read_all(&mut both, &["exact", "wild"], 2 * EVENTS).await;
        assert_eq!(
            got[0], in_order,
            "exact subscription, fan-out limit {max_fanout}, io_uring {io_uring}"
        );
        assert_eq!(
            got[1], in_order,
            "wildcard subscription, fan-out limit {max_fanout}, io_uring {io_uring}"
        );
        let got = read_all(&mut one, &["exact"], EVENTS).await;
        assert_eq!(
            got[0], in_order,
            "second subscriber, fan-out limit {max_fanout}, io_uring {io_uring}"
        );
        // Nothing more, nothing twice: the next message is the answer to a fresh publish.
        assert_eq!(
            one.publish("p", "/default/elsewhere", &[json!(1)]).await["type"],
            "publish_success"
        );
        server.stop().await;
    }
}
