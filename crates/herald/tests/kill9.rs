//! Nothing acknowledged is lost: publish N events to a history namespace, each acknowledged
//! with `successful`, kill the server with SIGKILL, restart it on the same data directory, and
//! read all N back.

#[path = "support/http.rs"]
mod http;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::free_port;

const KEY: &str = "da2-kill9kill9kill9";

fn request(port: u16, head: &str, body: &str) -> Option<(u16, serde_json::Value)> {
    http::request(port, KEY, head, body)
}

fn start(config: &std::path::Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("herald starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while request(port, "GET /healthz", "").is_none() {
        assert!(Instant::now() < deadline, "herald did not become ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn acknowledged_events_survive_kill_9() {
    const N: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n[[auth.api_keys]]\nkey = \"{KEY}\"\n[[namespaces]]\nname = \"chat\"\nhistory = {{}}\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let mut server = start(&config, port);
    let mut acknowledged = Vec::new();
    for i in 0..N {
        let body = serde_json::json!({"channel": "/chat/k", "events": [serde_json::json!({"i": i}).to_string()]});
        let (status, reply) =
            request(port, "POST /event", &body.to_string()).expect("publish answered");
        assert_eq!(status, 200, "{reply}");
        acknowledged.push(
            reply["successful"][0]["position"]["offset"]
                .as_u64()
                .unwrap(),
        );
    }
    server.kill().unwrap(); // SIGKILL on Unix: no shutdown code runs.
    server.wait().unwrap();

    let mut server = start(&config, port);
    let (status, page) = request(port, "GET /event/history?channel=/chat/k&limit=1000", "")
        .expect("history answered");
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    let offsets: Vec<u64> = events
        .iter()
        .map(|e| e["position"]["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, acknowledged, "every acknowledged event, in order");
    for (i, e) in events.iter().enumerate() {
        let event: serde_json::Value = serde_json::from_str(e["event"].as_str().unwrap()).unwrap();
        assert_eq!(event["i"], i);
    }
}
