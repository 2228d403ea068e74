//! `herald publish` and `herald subscribe`: the command line over the `herald-client` library,
//! against Herald and AWS alike (API key, `Authorization` token and IAM modes).
//!
//! Output is meant for pipes: stdout carries only JSON lines (one per publish reply or received
//! event), everything for humans goes to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;
use herald_client::{Auth, Client, Error, Event, PublishReply, ResumeFrom, ResumeOutcome};
use serde_json::Value;

/// amplify-js gives the connection and the subscription acknowledgements 15 s each.
const ACK_TIMEOUT: Duration = Duration::from_secs(15);

/// A Herald started with no `--listen` or `listen` (`herald serve`): the client's default, so a
/// local server needs no `--endpoint`.
pub const DEFAULT_ENDPOINT: &str = herald_client::DEFAULT_ENDPOINT;

/// Where and how to connect; shared by `publish` and `subscribe`.
#[derive(clap::Args)]
pub struct Connection {
    /// The HTTP endpoint, e.g. https://<id>.appsync-api.<region>.amazonaws.com/event (the socket
    /// URL is derived from it). Default: a local Herald on its default port.
    #[arg(long, env = "HERALD_ENDPOINT", value_name = "URL", default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// API key (sent as `x-api-key`).
    #[arg(
        long,
        env = "HERALD_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    api_key: Option<String>,
    /// Token sent as `Authorization` (OIDC, Cognito user pools, Lambda authorizers).
    #[arg(
        long,
        env = "HERALD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// IAM: sign with SigV4, credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
    /// AWS_SESSION_TOKEN; region from an AWS endpoint, else AWS_REGION.
    #[arg(long)]
    iam: bool,
    /// Also trust this PEM certificate authority (e.g. Herald's `<data-dir>/dev-tls/ca.pem`).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct PublishArgs {
    #[command(flatten)]
    connection: Connection,
    /// Publish over the WebSocket instead of `POST /event`.
    #[arg(long)]
    ws: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    timeout_secs: u64,
    /// The channel, e.g. /default/greetings (no wildcards).
    channel: String,
    /// 1 to 5 events, each a JSON value: '{"a":1}', '"text"', 42.
    #[arg(required = true, allow_negative_numbers = true, value_name = "EVENT")]
    events: Vec<String>,
}

#[derive(clap::Args)]
pub struct SubscribeArgs {
    #[command(flatten)]
    connection: Connection,
    /// Exit after this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this many seconds: an error if --count events have not arrived by then,
    /// a normal exit otherwise.
    #[arg(long, value_name = "SECS")]
    timeout_secs: Option<u64>,
    /// Herald: replay what was stored on the channel after this position, then go live.
    #[arg(long, value_name = "EPOCH:OFFSET", conflicts_with = "since_ms")]
    resume_from: Option<String>,
    /// Herald: replay what was stored at or after this time (Unix milliseconds), then go live.
    #[arg(long, value_name = "MS")]
    since_ms: Option<u64>,
    /// The channel, e.g. /default/greetings or /default/* for everything below /default.
    channel: String,
}

pub fn publish(args: PublishArgs) -> anyhow::Result<()> {
    check_events(&args.events)?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let client = client(&args.connection, timeout)?;
    // Sent as given: Herald forwards event strings byte for byte.
    let events = &args.events;
    runtime()?.block_on(async {
        let reply = tokio::time::timeout(timeout, async {
            if args.ws {
                let connection = client.connect().await?;
                let reply = connection.publish_raw(&args.channel, events).await;
                connection.close();
                reply
            } else {
                client.publish_raw(&args.channel, events).await
            }
        })
        .await
        .map_err(|_| anyhow!("no reply within {} s", args.timeout_secs))??;
        // Through a `Value`, so keys print sorted, as the server's JSON does.
        print_line(&serde_json::to_value(&reply)?.to_string())?;
        failed_events(&reply)
    })
}

pub fn subscribe(args: SubscribeArgs) -> anyhow::Result<()> {
    let resume = resume_request(&args)?;
    let client = client(&args.connection, ACK_TIMEOUT)?;
    runtime()?.block_on(async {
        let mut received = 0u64;
        let run = subscribe_until_done(&client, &args, resume, &mut received);
        let Some(secs) = args.timeout_secs else {
            return run.await;
        };
        match tokio::time::timeout(Duration::from_secs(secs), run).await {
            Ok(result) => result,
            Err(_) => match args.count {
                Some(n) => bail!("timed out after {secs} s with {received} of {n} events"),
                None => Ok(()),
            },
        }
    })
}

/// The library client for these options. The command line does not reconnect: a closed socket
/// ends `subscribe` with an error.
fn client(c: &Connection, timeout: Duration) -> anyhow::Result<Client> {
    let auth = match (&c.api_key, &c.token) {
        (None, None) if c.iam => Auth::iam_from_env()?,
        _ if c.iam => bail!(
            "--iam and an API key or token are set (--api-key/HERALD_API_KEY, --token/HERALD_TOKEN); give one"
        ),
        (Some(key), None) => Auth::api_key(key),
        (None, Some(token)) => Auth::Token(token.clone()),
        (Some(_), Some(_)) => bail!(
            "both an API key and a token are set (--api-key/HERALD_API_KEY, --token/HERALD_TOKEN); give one"
        ),
        (None, None) => bail!("no credentials: give --api-key KEY, --token TOKEN or --iam"),
    };
    let mut builder = Client::builder(&c.endpoint, auth)
        .timeout(timeout)
        .no_reconnect();
    // A CA is only read for https endpoints, where it is used.
    if let Some(ca) = c.ca.as_ref().filter(|_| c.endpoint.starts_with("https:")) {
        builder = builder.ca_file(ca);
    }
    builder.build().map_err(|e| match e {
        Error::Config(text) if text.starts_with("endpoint") => anyhow!("--{text}"),
        e => anyhow::Error::new(e),
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Checks every argument locally, so a typo is reported before anything is sent.
fn check_events(events: &[String]) -> anyhow::Result<()> {
    if events.len() > herald_client::MAX_EVENTS {
        bail!(
            "{} events given; a publish takes 1 to {}",
            events.len(),
            herald_client::MAX_EVENTS
        );
    }
    for (i, event) in events.iter().enumerate() {
        if let Err(e) = serde_json::from_str::<&serde_json::value::RawValue>(event) {
            bail!(
                "event {} is not JSON ({e}): {event}\n(a string must be quoted twice, e.g. '\"hello\"')",
                i + 1
            );
        }
    }
    Ok(())
}

fn resume_request(args: &SubscribeArgs) -> anyhow::Result<Option<ResumeFrom>> {
    if let Some(from) = &args.resume_from {
        let (epoch, offset) = from
            .split_once(':')
            .context("--resume-from takes EPOCH:OFFSET, e.g. 17965114866176928825:42")?;
        let offset: u64 = offset
            .parse()
            .with_context(|| format!("--resume-from: offset {offset:?} is not a number"))?;
        if epoch.is_empty() {
            bail!("--resume-from: the epoch is empty");
        }
        // The epoch stays a string: it is a 64-bit number JavaScript clients cannot hold.
        return Ok(Some(ResumeFrom::After {
            epoch: epoch.to_owned(),
            offset,
        }));
    }
    Ok(args.since_ms.map(ResumeFrom::SinceMs))
}

/// Per-event failures come back with a 200 (`failed` entries): report them after the reply.
fn failed_events(reply: &PublishReply) -> anyhow::Result<()> {
    if reply.failed.is_empty() {
        return Ok(());
    }
    let each: Vec<String> = reply
        .failed
        .iter()
        .map(|f| format!("event index {}: {}: {}", f.index, f.code, f.message))
        .collect();
    bail!(
        "{} event(s) failed: {}",
        reply.failed.len(),
        each.join("; ")
    )
}

async fn subscribe_until_done(
    client: &Client,
    args: &SubscribeArgs,
    resume: Option<ResumeFrom>,
    received: &mut u64,
) -> anyhow::Result<()> {
    let connection = client.connect().await?;
    let mut subscription = match resume {
        Some(from) => connection.subscribe_from(&args.channel, from).await,
        None => connection.subscribe(&args.channel).await,
    }
    .map_err(|e| match e {
        Error::SubscribeRejected { errors, .. } => anyhow!("subscribe failed: {errors}"),
        e => anyhow::Error::new(e),
    })?;
    eprintln!(
        "subscribed to {}{}",
        args.channel,
        resume_note(subscription.resume_outcome())
    );
    if args.count == Some(0) {
        connection.close();
        return Ok(());
    }
    while let Some(item) = subscription.next().await {
        match item {
            Ok(event) => {
                print_line(&event_line(&event))?;
                *received += 1;
                if args.count.is_some_and(|n| *received >= n) {
                    connection.close();
                    return Ok(());
                }
            }
            Err(e @ Error::Broadcast { .. }) => eprintln!("{e}"),
            Err(e) => return Err(e.into()),
        }
    }
    bail!("the server closed the connection")
}

/// What `subscribe_success` says about a resume (a Herald extension), for stderr.
fn resume_note(outcome: Option<&ResumeOutcome>) -> String {
    let Some(outcome) = outcome else {
        return String::new();
    };
    if outcome.recovered {
        format!(" (resumed: {} replayed)", outcome.replayed)
    } else {
        let reason = outcome.reason.as_deref().unwrap_or("unknown");
        format!(
            " (NOT resumed: {reason}; {} replayed, events may be missing)",
            outcome.replayed
        )
    }
}

/// One output line for an event: `{"channel":…,"event":…,"position":…}`.
fn event_line(event: &Event) -> String {
    let position = event
        .position
        .as_ref()
        .and_then(|p| serde_json::to_value(p).ok())
        .unwrap_or(Value::Null);
    let data = match serde_json::from_str::<&serde_json::value::RawValue>(&event.data) {
        Ok(_) => compact(&event.data),
        Err(_) => {
            eprintln!("warning: an event is not JSON; printed as a string");
            Value::String(event.data.clone()).to_string()
        }
    };
    format!(
        "{{\"channel\":{},\"event\":{data},\"position\":{position}}}",
        Value::String(event.channel.clone())
    )
}

/// Drops the whitespace between tokens of valid JSON, keeping everything else as published (key
/// order, number spelling), so an event spread over lines still fits on one output line.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// Writes one line to stdout; a closed pipe (`| head -1`) ends the program quietly.
fn print_line(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other.context("cannot write to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_endpoint_is_a_default_local_server() {
        let listen = herald_server::Config::default().listen;
        assert_eq!(DEFAULT_ENDPOINT, format!("http://{listen}/event"));
    }

    #[test]
    fn compact_keeps_strings_and_order() {
        assert_eq!(
            compact("{ \"b\" : 1,\n \"a\": \"x \\\" y\" }"),
            "{\"b\":1,\"a\":\"x \\\" y\"}"
        );
        assert_eq!(compact(" 1.50 "), "1.50");
    }

    #[test]
    fn events_are_checked_locally() {
        assert!(check_events(&["{\"a\":1}".into(), "2".into()]).is_ok());
        let err = check_events(&["1".into(), "hello".into()]).unwrap_err();
        assert!(err.to_string().starts_with("event 2 is not JSON"), "{err}");
        assert!(check_events(&vec!["1".to_string(); 6]).is_err());
    }
}
