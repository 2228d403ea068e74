//! Hostile clients that per-address bounds cannot see (issue 20): one credential used from many
//! places is held to per-identity bounds, and behind a PROXY-protocol load balancer the
//! per-address bounds count the clients the balancer names, not the balancer.

mod common;

use std::time::Instant;

use common::auth::*;
use common::{WAIT, config, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `test_config` with an `[admission]` section.
async fn world(admission: &str) -> World {
    World::from_toml(|oidc, cognito, hook| {
        format!(
            "{}\n[admission]\n{admission}\n",
            test_config(ALL_MODES, oidc, cognito, hook)
        )
    })
    .await
}

#[tokio::test]
async fn one_identity_holds_at_most_its_sockets() {
    let w = world("max_sockets_per_identity = 2").await;
    let alice = w.token_auth(&oidc_token(&w.oidc, "alice"));
    let first = w.ready(&alice).await;
    let _second = w.ready(&alice).await;
    let (_c, refused) = w.connect(&alice).await;
    assert_eq!(refused["type"], "connection_error", "{refused}");
    assert_eq!(refused["errors"][0]["errorType"], "LimitExceededError");
    // Another identity, and the API key (no identity), are not affected.
    let _bob = w.ready(&w.token_auth(&oidc_token(&w.oidc, "bob"))).await;
    let _k1 = w.ready(&w.key_auth()).await;
    let _k2 = w.ready(&w.key_auth()).await;
    let _k3 = w.ready(&w.key_auth()).await;
    // A closed connection frees its place (the server notices the close asynchronously).
    drop(first);
    let deadline = Instant::now() + WAIT;
    loop {
        let (_c, reply) = w.connect(&alice).await;
        if reply["type"] == "connection_ack" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never reused"
        );
        tokio::task::yield_now().await;
    }
    w.stop().await;
}

#[tokio::test]
async fn one_identity_is_held_to_its_connect_and_publish_rates() {
    let w = world(
        "max_connects_per_identity_per_second = 2\nmax_http_publishes_per_identity_per_second = 2",
    )
    .await;
    let token = oidc_token(&w.oidc, "alice");
    let alice = w.token_auth(&token);
    let mut refused = 0;
    let mut held = Vec::new();
    for _ in 0..5 {
        let (c, reply) = w.connect(&alice).await;
        if reply["type"] == "connection_error" {
            assert_eq!(reply["errors"][0]["errorType"], "LimitExceededError");
            refused += 1;
        }
        held.push(c);
    }
    assert!(refused >= 2, "{refused} of 5 rapid connects refused");

    let body = publish_body("/default/a", &["1".to_owned()]);
    let auth = format!("Bearer {token}");
    let mut limited = 0;
    for _ in 0..5 {
        let (status, reply, _) = post(&w, &body, &[("Authorization", &auth)]).await;
        if status == 429 {
            assert_eq!(reply["errors"][0]["errorType"], "LimitExceededError");
            limited += 1;
        }
    }
    assert!(limited >= 2, "{limited} of 5 rapid publishes refused");
    // Another identity still publishes.
    let bob = format!("Bearer {}", oidc_token(&w.oidc, "bob"));
    assert_eq!(post(&w, &body, &[("Authorization", &bob)]).await.0, 200);
    w.stop().await;
}

/// Sends `head` then a health check on a new socket; returns what came back before the server
/// closed or answered, and the socket.
async fn probe(addr: std::net::SocketAddr, head: &[u8]) -> (String, TcpStream) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = head.to_vec();
    req.extend_from_slice(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
    let _ = s.write_all(&req).await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .expect("an answer or a close")
        .unwrap_or(0);
    (String::from_utf8_lossy(&buf[..n.min(buf.len())]).into(), s)
}

#[tokio::test]
async fn per_address_bounds_count_the_clients_a_proxy_protocol_header_names() {
    let mut c = config();
    c.admission.trusted_proxies = vec!["127.0.0.1".into()];
    c.admission.proxy_protocol = true;
    c.admission.max_sockets_per_address = 1;
    let server = start(c).await;
    let one = b"PROXY TCP4 198.51.100.1 127.0.0.1 40000 443\r\n";
    let (answer, _held) = probe(server.addr, one).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The same client again is over its cap: closed unanswered, though the peer (the proxy) is
    // exempt from per-address caps.
    let (answer, _) = probe(server.addr, one).await;
    assert_eq!(answer, "");
    // Another client behind the same proxy, in either version of the header.
    let (answer, _) = probe(server.addr, b"PROXY TCP6 2001:db8::9 ::1 40000 443\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 2, 127, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb]);
    let (answer, _) = probe(server.addr, &v2).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A trusted peer that sends no header is not served: it would be taken for its clients.
    let (answer, _) = probe(server.addr, b"").await;
    assert_eq!(answer, "");
    server.stop().await;
}
