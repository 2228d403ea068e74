//! Prints every event under a channel or wildcard, reconnecting and resuming as needed.
//!
//! ```sh
//! HERALD_API_KEY=da2-… cargo run -p herald-client --example subscribe -- '/default/*'
//! ```
//!
//! The endpoint is `HERALD_ENDPOINT` (default: a local Herald, `http://127.0.0.1:8080/event`).
//! The credential is `HERALD_API_KEY`, or `HERALD_TOKEN` (a Cognito/OIDC JWT or a Lambda
//! authorizer token), or, with neither, IAM from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
//! and `AWS_REGION`.

use futures_util::StreamExt;
use herald_client::{Auth, Client, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let channel = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/default/*".into());
    let client = Client::new(&endpoint(), auth()?)?;
    let connection = client.connect().await?;
    let mut events = connection.subscribe(&channel).await?;
    eprintln!("subscribed to {channel}");
    while let Some(item) = events.next().await {
        match item {
            Ok(event) => match &event.position {
                Some(p) => println!("{} #{} {}", event.channel, p.offset, event.data),
                None => println!("{} {}", event.channel, event.data),
            },
            // A notice (events missed during a reconnect): the subscription goes on.
            Err(e) if !e.is_fatal() => eprintln!("warning: {e}"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn endpoint() -> String {
    std::env::var("HERALD_ENDPOINT").unwrap_or_else(|_| herald_client::DEFAULT_ENDPOINT.into())
}

fn auth() -> Result<Auth, Error> {
    if let Ok(key) = std::env::var("HERALD_API_KEY") {
        return Ok(Auth::api_key(key));
    }
    if let Ok(token) = std::env::var("HERALD_TOKEN") {
        return Ok(Auth::Token(token));
    }
    Auth::iam_from_env()
}
