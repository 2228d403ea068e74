//! Publishes events given as JSON arguments, over HTTP or (with `--ws`) over the socket, and
//! prints the reply.
//!
//! ```sh
//! HERALD_API_KEY=da2-… cargo run -p herald-client --example publish -- /default/greetings '{"hello":"world"}'
//! ```
//!
//! Endpoint and credentials as in the `subscribe` example.

use herald_client::{Auth, Client, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let ws = args.first().is_some_and(|a| a == "--ws");
    if ws {
        args.remove(0);
    }
    if args.len() < 2 {
        eprintln!("usage: publish [--ws] CHANNEL EVENT...");
        std::process::exit(2);
    }
    let channel = args.remove(0);
    let endpoint =
        std::env::var("HERALD_ENDPOINT").unwrap_or_else(|_| herald_client::DEFAULT_ENDPOINT.into());
    let auth = match (
        std::env::var("HERALD_API_KEY"),
        std::env::var("HERALD_TOKEN"),
    ) {
        (Ok(key), _) => Auth::api_key(key),
        (_, Ok(token)) => Auth::Token(token),
        _ => Auth::iam_from_env()?,
    };
    let client = Client::new(&endpoint, auth)?;
    // Each argument is JSON text, sent as written.
    let reply = if ws {
        let connection = client.connect().await?;
        connection.publish_raw(&channel, &args).await?
    } else {
        client.publish_raw(&channel, &args).await?
    };
    for ok in &reply.successful {
        println!("event {}: {}", ok.index, ok.identifier);
    }
    for failed in &reply.failed {
        eprintln!(
            "event {} failed: {}: {}",
            failed.index, failed.code, failed.message
        );
    }
    Ok(())
}
