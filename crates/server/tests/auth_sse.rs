//! Server-Sent Events authorized by every mode: `GET /event/stream` with a token in
//! `Authorization` or SigV4 over the real GET, and `POST /event/stream/token` SigV4-signed with
//! its body; refusals as for `POST /event`.

mod common;

use common::auth::*;
use common::{KEY, WAIT, http};
use herald_testkit::sigv4::Signer;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const STREAM_PATH: &str = "/event/stream?channel=/default/a";

/// The status of `GET path` with `headers`; the stream, if any, is left open until dropped.
async fn stream_status(w: &World, path: &str, headers: &[(&str, &str)]) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(w.server.addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: {}\r\n", w.host());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    tokio::time::timeout(WAIT, reader.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    (status, reader.into_inner())
}

fn signed(w: &World, method: &str, path: &str, body: &[u8]) -> Vec<(String, String)> {
    let url = format!("http://{}{path}", w.host());
    Signer::new((AK_READER, SK_READER), REGION).sign(method, &url, &[("host", w.host())], body)
}

#[tokio::test]
async fn streams_open_with_every_mode() {
    let w = World::start().await;
    let oidc = oidc_token(&w.oidc, "reader");
    let cognito = cognito_token(&w.cognito, "reader");
    for token in [oidc.as_str(), cognito.as_str(), "allow-reader"] {
        let (status, _) = stream_status(&w, STREAM_PATH, &[("Authorization", token)]).await;
        assert_eq!(status, 200, "{token}");
    }
    let (status, _) = stream_status(&w, STREAM_PATH, &[("x-api-key", KEY)]).await;
    assert_eq!(status, 200);
    let headers = signed(&w, "GET", STREAM_PATH, b"");
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, _) = stream_status(&w, STREAM_PATH, &headers).await;
    assert_eq!(status, 200);
    let (status, _) = stream_status(&w, STREAM_PATH, &[("Authorization", "deny-reader")]).await;
    assert_eq!(status, 401);
    w.stop().await;
}

#[tokio::test]
async fn a_signed_token_request() {
    let w = World::start().await;
    let body = json!({"channels": ["/default/a"]}).to_string();
    let headers = signed(&w, "POST", "/event/stream/token", body.as_bytes());
    let mut headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    headers.push(("content-type", "application/json"));
    let (status, _, answer) = http(
        &w.server,
        "POST",
        "/event/stream/token",
        &headers,
        body.as_bytes(),
    )
    .await;
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(status, 200, "{answer}");
    let token = answer["token"].as_str().unwrap();
    let (status, _) = stream_status(&w, &format!("/event/stream?token={token}"), &[]).await;
    assert_eq!(status, 200);
    // A signature over another body is refused.
    let (status, _, _) = http(
        &w.server,
        "POST",
        "/event/stream/token",
        &headers,
        json!({"channels": ["/default/b"]}).to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 401);
    w.stop().await;
}
