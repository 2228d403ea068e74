//! Hostile clients against a real server (issue 20, findings 2, 3 and 5): every resource a
//! client holds — a half-read request body, a socket, a blocked write, a half-sent WebSocket
//! message, an idle socket — has a deadline or a bound, and the well-behaved clients keep being
//! served. Each test reproduces a finding and failed before its fix. Bounds are small so the
//! tests are quick; the defaults are in docs/operations.md ("Hardening").

mod common;

use std::time::{Duration, Instant};

use common::{Auth, Client, KEY, WAIT, config, post, start};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the socket; returns what it sent, or panics past `WAIT`.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server still holds the socket after {WAIT:?}"),
        }
    }
}

/// Sends a WebSocket upgrade and reads the response head (and body, when refused); returns the
/// status, what was read, and the socket (kept open by the caller).
async fn upgrade(server: &common::TestServer) -> (u16, String, TcpStream) {
    let s = TcpStream::connect(server.addr).await.unwrap();
    upgrade_on(server, s).await
}

/// As `upgrade`, on a socket already open.
async fn upgrade_on(server: &common::TestServer, mut s: TcpStream) -> (u16, String, TcpStream) {
    let req = format!(
        "GET /event/realtime HTTP/1.1\r\nhost: {}\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         sec-websocket-protocol: aws-appsync-event-ws\r\n\r\n",
        server.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let text = loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("an answer to the upgrade")
            .unwrap();
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        // A refusal carries a JSON body; a 101 ends with its head.
        if n == 0 || text.contains("\r\n\r\n") && (text.contains(" 101 ") || text.ends_with('}')) {
            break text;
        }
    };
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text, s)
}

/// A `/metrics` value, 0 when absent.
async fn metric(server: &common::TestServer, name: &str) -> f64 {
    let (_, _, body) = common::http(server, "GET", "/metrics", &[], b"").await;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Finding 2: a body declared at 1.2 MB that stalls after part of it is cut at the body
/// deadline with 408, and the socket is closed.
#[tokio::test]
async fn a_stalled_request_body_is_cut_at_its_deadline() {
    let mut c = config();
    c.limits.request_body_timeout_ms = 300;
    let server = start(c).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /event HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-api-key: {KEY}\r\ncontent-length: 1200000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![b' '; 100_000]).await.unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut s).await).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("RequestTimeoutException"), "{answer}");
    assert_eq!(metric(&server, "herald_timeouts_total").await, 1.0);
    // Everyone else is still served.
    let (status, _) = post(
        &server,
        KEY,
        &json!({"channel": "/default/a", "events": ["1"]}),
    )
    .await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// Finding 5: a request line that never ends is cut at the header deadline, unanswered.
#[tokio::test]
async fn a_half_sent_request_line_is_cut_at_its_deadline() {
    let mut c = config();
    c.limits.header_timeout_ms = 300;
    let server = start(c).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /hea").await.unwrap();
    let started = Instant::now();
    read_until_closed(&mut s).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    server.stop().await;
}

/// Finding 2 and 5: sockets of every kind count against a per-address cap and a total cap;
/// past them a socket is closed at once, and freed places are reused.
#[tokio::test]
async fn sockets_are_capped_per_address_and_in_total() {
    let mut c = config();
    c.admission.max_sockets_per_address = 4;
    let server = start(c).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        // A plain HTTP socket that sends half a request line and waits.
        s.write_all(b"GET /hea").await.unwrap();
        held.push(s);
    }
    let mut fifth = TcpStream::connect(server.addr).await.unwrap();
    let _ = fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    assert!(
        read_until_closed(&mut fifth).await.is_empty(),
        "the fifth socket is closed unanswered"
    );
    drop(held.pop());
    // The freed place is taken again (the server notices the close asynchronously).
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, _, _) = common::http(&server, "GET", "/healthz", &[], b"").await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never reused"
        );
        tokio::task::yield_now().await;
    }
    assert!(metric(&server, "herald_refused_sockets_total").await >= 1.0);
    server.stop().await;

    let mut c = config();
    c.admission.max_sockets = 2;
    let server = start(c).await;
    let _a = Client::connect(&server, Auth::Subprotocol(KEY)).await;
    let _b = Client::connect(&server, Auth::Subprotocol(KEY)).await;
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    assert!(read_until_closed(&mut third).await.is_empty());
    server.stop().await;
}

/// Finding 3: subscribers that never read are disconnected even while the server's write to
/// them is blocked, and the publisher keeps being answered.
#[tokio::test]
async fn subscribers_that_never_read_are_cut_while_a_write_is_blocked() {
    let mut c = config();
    c.limits.write_timeout_ms = 300;
    let server = start(c).await;
    let mut readers_that_stopped = Vec::new();
    for i in 0..3 {
        let mut sub = Client::ready(&server).await;
        let ok = sub.subscribe(&format!("s{i}"), "/default/flood").await;
        assert_eq!(ok["type"], "subscribe_success");
        readers_that_stopped.push(sub);
    }
    let event = json!({"pad": "x".repeat(200_000)}).to_string();
    let body = json!({"channel": "/default/flood", "events": [event]});
    let deadline = Instant::now() + WAIT;
    // Publish until the server has let go of every silent subscriber.
    while metric(&server, "herald_active_connections").await > 0.0 {
        assert!(
            Instant::now() < deadline,
            "silent subscribers still connected after {WAIT:?}"
        );
        let started = Instant::now();
        let (status, _) = post(&server, KEY, &body).await;
        assert_eq!(status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a publish waited on a blocked subscriber"
        );
    }
    assert!(metric(&server, "herald_disconnect_total").await >= 3.0);
    drop(readers_that_stopped);
    server.stop().await;
}

/// Finding 5: a WebSocket message begun and never finished is cut at its deadline (1008), and so
/// is a socket that subscribes to nothing and says nothing.
#[tokio::test]
async fn half_sent_messages_and_idle_sockets_are_cut() {
    let mut c = config();
    c.websocket.message_timeout_ms = 300;
    c.websocket.idle_timeout_ms = 600;
    let server = start(c).await;

    let mut half = Client::ready(&server).await;
    // A masked text frame header announcing 60,000 bytes, then ten of them.
    let mut frame = vec![0x81, 0x80 | 126, 0xEA, 0x60, 1, 2, 3, 4];
    frame.extend_from_slice(&[b'x'; 10]);
    let tcp = match half.ws.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s,
        _ => unreachable!("the test server is plain"),
    };
    tcp.write_all(&frame).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest)).await;
    // The close frame: 0x88, length, then the code.
    let at = rest
        .windows(2)
        .position(|w| w[0] == 0x88)
        .expect("a close frame");
    let code = u16::from_be_bytes([rest[at + 2], rest[at + 3]]);
    assert_eq!(code, 1008, "{rest:?}");

    let started = Instant::now();
    let mut idle = Client::connect(&server, Auth::Subprotocol(KEY)).await;
    let close = idle.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1000);
    assert!(started.elapsed() >= Duration::from_millis(500));

    // A subscriber that listens quietly is never cut for being idle.
    let mut listener = Client::ready(&server).await;
    listener.subscribe("s", "/default/quiet").await;
    let quiet_until = Instant::now() + Duration::from_millis(1500);
    let mut publisher = Client::ready(&server).await;
    publisher.subscribe("p", "/default/keepalive").await;
    while Instant::now() < quiet_until {
        let (status, _) = post(
            &server,
            KEY,
            &json!({"channel": "/default/keepalive", "events": ["1"]}),
        )
        .await;
        assert_eq!(status, 200);
        publisher.recv().await;
    }
    let (status, _) = post(
        &server,
        KEY,
        &json!({"channel": "/default/quiet", "events": ["\"still here\""]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listener.recv().await["type"], "data");
    assert_eq!(metric(&server, "herald_timeouts_total").await, 2.0);
    server.stop().await;
}

/// Finding 5: one address opening sockets in a loop is held to its connect rate (429), as are
/// its HTTP publishes; other addresses are unaffected (covered by the unit tests of
/// `admission`, since every test client here shares 127.0.0.1).
#[tokio::test]
async fn connects_and_http_publishes_are_rate_limited_per_address() {
    let mut c = config();
    c.admission.max_connects_per_address_per_second = 3;
    c.admission.max_http_publishes_per_address_per_second = 3;
    let server = start(c).await;
    let mut refused = 0;
    let mut open = Vec::new();
    for _ in 0..6 {
        let (status, head, s) = upgrade(&server).await;
        if status == 429 {
            assert!(head.contains("LimitExceededError"), "{head}");
            refused += 1;
        }
        open.push(s);
    }
    assert!(refused >= 2, "{refused} of 6 rapid connects refused");
    let mut limited = 0;
    for _ in 0..6 {
        let (status, body) = post(
            &server,
            KEY,
            &json!({"channel": "/default/a", "events": ["1"]}),
        )
        .await;
        if status == 429 {
            assert_eq!(body["errors"][0]["errorType"], "LimitExceededError");
            limited += 1;
        }
    }
    assert!(limited >= 2, "{limited} of 6 rapid publishes refused");
    assert!(metric(&server, "herald_rate_limited_total").await >= 4.0);
    server.stop().await;
}

/// One address cannot multiply the per-socket publish rate by opening sockets: WebSocket
/// publishes from all its sockets share `admission.max_socket_publishes_per_address_per_second`.
#[tokio::test]
async fn socket_publishes_are_rate_limited_per_address_across_sockets() {
    let mut c = config();
    c.limits.max_publishes_per_second = 1_000;
    c.admission.max_socket_publishes_per_address_per_second = 4;
    let server = start(c).await;
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(Client::ready(&server).await);
    }
    let (mut ok, mut limited) = (0, 0);
    for round in 0..4 {
        for (i, s) in sockets.iter_mut().enumerate() {
            let r = s
                .publish(&format!("p{round}-{i}"), "/default/a", &[json!(1)])
                .await;
            match r["type"].as_str() {
                Some("publish_success") => ok += 1,
                Some("publish_error") => {
                    assert_eq!(r["errors"][0]["errorType"], "LimitExceededError", "{r}");
                    limited += 1;
                }
                _ => panic!("unexpected reply {r}"),
            }
        }
    }
    // A bucket of 4 refilling at 4/s: 16 rapid publishes leave most refused.
    assert!(ok <= 8, "{ok} of 16 accepted");
    assert!(limited >= 8, "{limited} of 16 refused");
    server.stop().await;
}

/// Opens a TCP connection from `from` to the server, or `None` when no answer to the SYN came
/// within `wait` (a blocked address's SYNs are dropped by the listener's filter).
async fn connect_from(
    server: &common::TestServer,
    from: [u8; 4],
    wait: Duration,
) -> Option<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    match tokio::time::timeout(wait, socket.connect(server.addr)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => panic!("connect from {from:?}: {e}"),
        Err(_) => None,
    }
}

/// Asks `/healthz` on a kept-alive socket; true on 200.
async fn healthy(s: &mut TcpStream) -> bool {
    if s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 1024];
    matches!(
        tokio::time::timeout(WAIT, s.read(&mut buf)).await,
        Ok(Ok(n)) if n > 0 && buf[..n].starts_with(b"HTTP/1.1 200")
    )
}

/// Socket-flood (issue 20): an address whose sockets keep coming over its cap is blocked in the
/// kernel — its SYNs go unanswered, so the flood costs the server no accept and no close —
/// while other addresses and the address's own open connections are served; the block ends.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_address_flooding_over_its_socket_cap_is_blocked_in_the_kernel() {
    let mut c = config();
    c.admission.max_sockets_per_address = 2;
    c.admission.flood_block_refusals_per_second = 10;
    c.admission.flood_block_secs = 1;
    let server = start(c).await;
    let attacker = [127, 0, 0, 2];
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from(&server, attacker, WAIT).await.unwrap();
        assert!(healthy(&mut s).await);
        held.push(s);
    }
    // Sockets over the cap: each is accepted and closed, until the tenth within a second.
    let mut refused = 0;
    let blocked_at = loop {
        match connect_from(&server, attacker, Duration::from_millis(300)).await {
            Some(mut s) => {
                assert!(read_until_closed(&mut s).await.is_empty());
                refused += 1;
                assert!(refused < 1000, "never blocked");
            }
            None => break Instant::now(),
        }
    };
    assert!(refused >= 10, "blocked after {refused} refusals");
    assert_eq!(metric(&server, "herald_flood_blocks_total").await, 1.0);
    assert_eq!(metric(&server, "herald_blocked_addresses").await, 1.0);
    // Others are served, on sockets accepted while the filter is on; so are the address's own
    // open connections.
    let mut other = connect_from(&server, [127, 0, 0, 3], WAIT).await.unwrap();
    assert!(healthy(&mut other).await);
    assert!(healthy(&mut other).await);
    for s in &mut held {
        assert!(healthy(s).await);
    }
    // The block ends (1 s): the address's SYNs are answered again.
    loop {
        if connect_from(&server, attacker, Duration::from_millis(300))
            .await
            .is_some()
        {
            break;
        }
        assert!(blocked_at.elapsed() < WAIT, "the block never ended");
    }
    assert!(blocked_at.elapsed() >= Duration::from_millis(700));
    server.stop().await;
}

/// Connect-flood (issue 20): each connect refused over the rate still costs an accept, a parse
/// and a 429, so an address that keeps connecting far over its rate is blocked in the kernel
/// like one over its socket cap; other addresses are still served.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_address_connecting_far_over_its_rate_is_blocked_in_the_kernel() {
    let mut c = config();
    c.admission.max_connects_per_address_per_second = 2;
    c.admission.flood_block_refusals_per_second = 10;
    c.admission.flood_block_secs = 1;
    let server = start(c).await;
    let attacker = [127, 0, 0, 4];
    let mut refused = 0;
    loop {
        let Some(s) = connect_from(&server, attacker, Duration::from_millis(300)).await else {
            break;
        };
        let (status, head, _s) = upgrade_on(&server, s).await;
        if status == 429 {
            assert!(head.contains("LimitExceededError"), "{head}");
            refused += 1;
        }
        assert!(refused < 1000, "never blocked");
    }
    assert!(refused >= 10, "blocked after {refused} refusals");
    assert_eq!(metric(&server, "herald_flood_blocks_total").await, 1.0);
    let (status, _, _) = upgrade(&server).await;
    assert_eq!(status, 101, "another address still connects");
    server.stop().await;
}
