//! `herald publish` and `herald subscribe`: a small AppSync Events client that works against
//! Herald and against AWS alike (API key or `Authorization` token modes).
//!
//! Output is meant for pipes: stdout carries only JSON lines (one per publish reply or received
//! event), everything for humans goes to stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

/// amplify-js gives the connection and the subscription acknowledgements 15 s each.
const ACK_TIMEOUT: Duration = Duration::from_secs(15);
/// AppSync's documented value; used when `connection_ack` does not say.
const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_millis(300_000);
/// AppSync accepts 1 to 5 events per publish.
const MAX_EVENTS: usize = 5;
/// The most we read of one reply or socket message. Events are at most 240 KB and requests
/// 1.2 MB, so anything larger is a broken or hostile server, not something to buffer.
const MAX_MESSAGE: usize = 4 << 20;

/// A Herald started with no `--listen` or `listen` (`herald serve`): the client's default, so a
/// local server needs no `--endpoint`.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080/event";

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
    // Sent as given: Herald forwards event strings byte for byte.
    let events = &args.events;
    let target = Target::new(&args.connection)?;
    let timeout = Duration::from_secs(args.timeout_secs);
    runtime()?.block_on(async {
        let reply = tokio::time::timeout(timeout, async {
            if args.ws {
                publish_ws(&target, &args.channel, events).await
            } else {
                publish_http(&target, &args.channel, events).await
            }
        })
        .await
        .map_err(|_| anyhow!("no reply within {} s", args.timeout_secs))??;
        print_line(&serde_json::to_string(&reply)?)?;
        failed_events(&reply)
    })
}

pub fn subscribe(args: SubscribeArgs) -> anyhow::Result<()> {
    let resume = resume_request(&args)?;
    let target = Target::new(&args.connection)?;
    runtime()?.block_on(async {
        let mut received = 0u64;
        let run = subscribe_until_done(&target, &args, resume, &mut received);
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Checks every argument locally, so a typo is reported before anything is sent.
fn check_events(events: &[String]) -> anyhow::Result<()> {
    if events.len() > MAX_EVENTS {
        bail!(
            "{} events given; a publish takes 1 to {MAX_EVENTS}",
            events.len()
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

fn resume_request(args: &SubscribeArgs) -> anyhow::Result<Option<Value>> {
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
        return Ok(Some(json!({"epoch": epoch, "offset": offset})));
    }
    Ok(args.since_ms.map(|ms| json!({"since_ms": ms})))
}

/// The endpoint URLs and the credentials, resolved once.
struct Target {
    http: Url,
    realtime: Url,
    /// The auth object of the `header-` subprotocol and of every operation's `authorization`.
    auth: Map<String, Value>,
    /// (header name, value) for HTTP publish.
    header: (&'static str, String),
    tls: Arc<rustls::ClientConfig>,
}

impl Target {
    fn new(c: &Connection) -> anyhow::Result<Target> {
        let http = http_url(&c.endpoint)?;
        let realtime = realtime_url(&http)?;
        let host = match http.port() {
            Some(port) => format!("{}:{port}", http.host_str().unwrap_or_default()),
            None => http.host_str().unwrap_or_default().to_owned(),
        };
        let (name, value) = match (&c.api_key, &c.token) {
            (Some(key), None) => ("x-api-key", key.clone()),
            (None, Some(token)) => ("Authorization", token.clone()),
            (Some(_), Some(_)) => bail!(
                "both an API key and a token are set (--api-key/HERALD_API_KEY, --token/HERALD_TOKEN); give one"
            ),
            (None, None) => bail!("no credentials: give --api-key KEY or --token TOKEN"),
        };
        let mut auth = Map::new();
        // AWS checks `host` against the API's HTTP host, also on the realtime host.
        auth.insert("host".into(), Value::String(host));
        auth.insert(name.into(), Value::String(value.clone()));
        let tls = tls_config(c.ca.as_deref(), http.scheme() == "https")?;
        Ok(Target {
            http,
            realtime,
            auth,
            header: (name, value),
            tls,
        })
    }
}

/// Parses the HTTP endpoint; a bare host gets AppSync's `/event` path.
fn http_url(endpoint: &str) -> anyhow::Result<Url> {
    let mut url =
        Url::parse(endpoint).with_context(|| format!("--endpoint {endpoint:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("--endpoint must be an http:// or https:// URL, got {endpoint:?}");
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("--endpoint {endpoint:?} has no host");
    }
    if url.path() == "/" {
        url.set_path("/event");
    }
    Ok(url)
}

/// The WebSocket URL, derived like amplify-js does: AWS hosts switch `appsync-api` to
/// `appsync-realtime-api`, custom domains keep the host; both append `/realtime`. Unlike amplify,
/// `http://` maps to `ws://` (amplify always uses `wss://`, which a plain local server cannot take).
fn realtime_url(http: &Url) -> anyhow::Result<Url> {
    let mut url = http.clone();
    if let Some(host) = http.host_str() {
        let labels: Vec<&str> = host.split('.').collect();
        let aws = host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn");
        if aws && labels.len() > 2 && labels[1] == "appsync-api" {
            let mut realtime = labels.clone();
            realtime[1] = "appsync-realtime-api";
            url.set_host(Some(&realtime.join(".")))
                .context("cannot build the realtime host")?;
        }
    }
    let path = format!("{}/realtime", http.path().trim_end_matches('/'));
    url.set_path(&path);
    let scheme = if http.scheme() == "https" {
        "wss"
    } else {
        "ws"
    };
    url.set_scheme(scheme)
        .map_err(|()| anyhow!("cannot build a {scheme}:// URL from {http}"))?;
    Ok(url)
}

/// rustls on ring, trusting the OS store plus `--ca`. The OS store is read only for https.
fn tls_config(ca: Option<&Path>, secure: bool) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    if secure {
        // Unreadable entries in the OS store are skipped: the others still verify servers.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
    }
    if let Some(path) = ca.filter(|_| secure) {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("cannot read --ca {}", path.display()))?;
        if certs.is_empty() {
            bail!("--ca {}: no PEM certificate in the file", path.display());
        }
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("--ca {}: unusable certificate", path.display()))?;
        }
    }
    if secure && roots.is_empty() {
        bail!("no trusted certificate authorities: the OS store is empty; pass --ca FILE");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // HTTP/1.1 only: the WebSocket upgrade needs it, and reqwest is built without HTTP/2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn publish_http(
    target: &Target,
    channel: &str,
    events: &[String],
) -> anyhow::Result<Map<String, Value>> {
    // reqwest is built without a bundled crypto provider; TLS uses our config, but the builder
    // still wants a process default. Losing the race to another installer is fine.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured((*target.tls).clone())
        // Straight to the endpoint, like the socket (which knows nothing of proxies).
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")?;
    let body = json!({"channel": channel, "events": events});
    let url = &target.http;
    let mut resp = client
        .post(url.clone())
        .header("content-type", "application/json")
        .header(target.header.0, &target.header.1)
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("POST {url} failed"))?;
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .with_context(|| format!("reading the reply to POST {url}"))?
    {
        if body.len() + chunk.len() > MAX_MESSAGE {
            bail!("the reply to POST {url} is larger than {MAX_MESSAGE} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body);
    let reply: Option<Map<String, Value>> = serde_json::from_str(&text).ok();
    match reply {
        Some(reply) if status.is_success() => Ok(reply),
        Some(reply) if reply.contains_key("errors") => {
            bail!("{} (HTTP {})", describe_errors(&reply), status.as_u16())
        }
        _ => bail!("HTTP {}: {}", status.as_u16(), excerpt(&text)),
    }
}

async fn publish_ws(
    target: &Target,
    channel: &str,
    events: &[String],
) -> anyhow::Result<Map<String, Value>> {
    let (mut ws, _) = connect(target).await?;
    let id = herald_server::id::uuid_v4();
    let publish = json!({
        "type": "publish",
        "id": id,
        "channel": channel,
        "events": events,
        "authorization": target.auth,
    });
    send(&mut ws, &publish).await?;
    loop {
        let mut msg = next_message(&mut ws, ACK_TIMEOUT, "the publish reply").await?;
        let kind = message_type(&msg).to_owned();
        let for_us = msg.get("id").and_then(Value::as_str) == Some(id.as_str());
        match kind.as_str() {
            "publish_success" if for_us => {
                // Same shape as the HTTP reply: `successful` and `failed`.
                msg.remove("type");
                msg.remove("id");
                let _ = ws.close(None).await;
                return Ok(msg);
            }
            "publish_error" if for_us => bail!("{}", describe_errors(&msg)),
            "error" | "connection_error" => bail!("{}", describe_errors(&msg)),
            _ => {} // ka, and anything else the server may add.
        }
    }
}

/// Per-event failures come back with a 200 (`failed` entries): report them after the reply.
fn failed_events(reply: &Map<String, Value>) -> anyhow::Result<()> {
    let Some(failed) = reply.get("failed").and_then(Value::as_array) else {
        return Ok(());
    };
    if failed.is_empty() {
        return Ok(());
    }
    let each: Vec<String> = failed
        .iter()
        .map(|f| {
            let index = f.get("index").map(Value::to_string).unwrap_or_default();
            let code = f
                .get("code")
                .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned))
                .unwrap_or_default();
            let message = f.get("message").and_then(Value::as_str).unwrap_or("");
            format!("event index {index}: {code}: {message}")
        })
        .collect();
    bail!("{} event(s) failed: {}", failed.len(), each.join("; "))
}

async fn subscribe_until_done(
    target: &Target,
    args: &SubscribeArgs,
    resume: Option<Value>,
    received: &mut u64,
) -> anyhow::Result<()> {
    let (mut ws, keepalive) = connect(target).await?;
    let id = herald_server::id::uuid_v4();
    let mut subscribe = json!({
        "type": "subscribe",
        "id": id,
        "channel": args.channel,
        "authorization": target.auth,
    });
    if let Some(resume) = resume {
        subscribe["resume"] = resume;
    }
    send(&mut ws, &subscribe).await?;
    let mut subscribed = false;
    loop {
        let (wait, what) = if subscribed {
            // Silence longer than the server's announced timeout means the link is dead.
            (keepalive, "events or keep-alives")
        } else {
            (ACK_TIMEOUT, "subscribe_success")
        };
        let msg = next_message(&mut ws, wait, what).await?;
        let for_us = msg.get("id").and_then(Value::as_str) == Some(id.as_str());
        match message_type(&msg) {
            "subscribe_success" if for_us => {
                subscribed = true;
                eprintln!("subscribed to {}{}", args.channel, resume_note(&msg));
            }
            "subscribe_error" if for_us => bail!("subscribe failed: {}", describe_errors(&msg)),
            "data" if for_us => {
                print_line(&event_line(&msg, &args.channel)?)?;
                *received += 1;
            }
            "broadcast_error" if for_us => eprintln!("broadcast error: {}", describe_errors(&msg)),
            "error" | "connection_error" => bail!("{}", describe_errors(&msg)),
            _ => {} // ka, and anything else the server may add.
        }
        if subscribed && args.count.is_some_and(|n| *received >= n) {
            let _ = ws.close(None).await;
            return Ok(());
        }
    }
}

/// What `subscribe_success` says about a resume (a Herald extension), for stderr.
fn resume_note(msg: &Map<String, Value>) -> String {
    let Some(resume) = msg.get("resume") else {
        return String::new();
    };
    let replayed = resume.get("replayed").and_then(Value::as_u64).unwrap_or(0);
    if resume.get("recovered").and_then(Value::as_bool) == Some(true) {
        format!(" (resumed: {replayed} replayed)")
    } else {
        let reason = resume
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        format!(" (NOT resumed: {reason}; {replayed} replayed, events may be missing)")
    }
}

/// One output line for a `data` frame: `{"channel":…,"event":…,"position":…}`.
fn event_line(msg: &Map<String, Value>, subscribed: &str) -> anyhow::Result<String> {
    let event = msg
        .get("event")
        .and_then(Value::as_str)
        .context("the server sent a data frame without an event string")?;
    let position = msg.get("position").cloned().unwrap_or(Value::Null);
    // Herald names the concrete channel in `position` (AppSync leaves wildcard subscribers guessing).
    let channel = position
        .get("channel")
        .and_then(Value::as_str)
        .unwrap_or(subscribed);
    let event = match serde_json::from_str::<&serde_json::value::RawValue>(event) {
        Ok(_) => compact(event),
        Err(_) => {
            eprintln!("warning: an event is not JSON; printed as a string");
            Value::String(event.to_owned()).to_string()
        }
    };
    Ok(format!(
        "{{\"channel\":{},\"event\":{event},\"position\":{position}}}",
        Value::String(channel.to_owned())
    ))
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

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = WebSocketStream<Box<dyn Io>>;

/// Opens the socket with the credentials in the `header-` subprotocol, sends `connection_init`
/// and waits for `connection_ack`. Returns the socket and the server's keep-alive timeout.
async fn connect(target: &Target) -> anyhow::Result<(Socket, Duration)> {
    let url = &target.realtime;
    let connecting = async {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(80);
        // IPv6 literals come bracketed from the URL; the socket and TLS want them bare.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((bare, port))
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if url.scheme() == "wss" {
            let name = rustls_pki_types::ServerName::try_from(bare.to_owned())
                .with_context(|| format!("{bare:?} is not a valid TLS server name"))?;
            let tls = tokio_rustls::TlsConnector::from(target.tls.clone())
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS handshake with {url} failed"))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Value::Object(target.auth.clone()).to_string());
        let mut request = url
            .as_str()
            .into_client_request()
            .context("cannot build the WebSocket request")?;
        request.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(&format!("aws-appsync-event-ws, header-{header}"))
                .context("the credentials do not fit in a header")?,
        );
        let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE));
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, io, Some(config))
            .await
            .map_err(|e| upgrade_error(url, e))?;
        anyhow::Ok(ws)
    };
    let mut ws = tokio::time::timeout(ACK_TIMEOUT, connecting)
        .await
        .map_err(|_| anyhow!("cannot open {url} within {} s", ACK_TIMEOUT.as_secs()))??;
    send(&mut ws, &json!({"type": "connection_init"})).await?;
    loop {
        let msg = next_message(&mut ws, ACK_TIMEOUT, "connection_ack").await?;
        match message_type(&msg) {
            "connection_ack" => {
                let keepalive = msg
                    .get("connectionTimeoutMs")
                    .and_then(Value::as_u64)
                    .map_or(DEFAULT_CONNECTION_TIMEOUT, Duration::from_millis);
                return Ok((ws, keepalive));
            }
            "connection_error" | "error" => {
                bail!(
                    "the server rejected the connection: {}",
                    describe_errors(&msg)
                )
            }
            _ => {}
        }
    }
}

fn upgrade_error(url: &Url, e: tungstenite::Error) -> anyhow::Error {
    match e {
        tungstenite::Error::Http(resp) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            anyhow!(
                "{url} refused the WebSocket upgrade: HTTP {}: {}",
                resp.status().as_u16(),
                excerpt(&body)
            )
        }
        e => anyhow!("WebSocket handshake with {url} failed: {e}"),
    }
}

async fn send(ws: &mut Socket, msg: &Value) -> anyhow::Result<()> {
    ws.send(Message::text(msg.to_string()))
        .await
        .context("cannot send on the WebSocket")
}

/// The next JSON message, skipping control frames; an error when the socket closes or stays
/// silent for `wait`.
async fn next_message(
    ws: &mut Socket,
    wait: Duration,
    what: &str,
) -> anyhow::Result<Map<String, Value>> {
    loop {
        let frame = tokio::time::timeout(wait, ws.next())
            .await
            .map_err(|_| anyhow!("no {what} from the server within {} ms", wait.as_millis()))?;
        let text = match frame {
            None => bail!("the server closed the connection"),
            Some(Err(e)) => bail!("WebSocket error: {e}"),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(Some(frame)))) => {
                bail!("the server closed the connection ({frame})")
            }
            Some(Ok(Message::Close(None))) => bail!("the server closed the connection"),
            Some(Ok(_)) => continue, // ping/pong (answered by tungstenite), binary.
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(msg)) => return Ok(msg),
            _ => bail!(
                "the server sent a message that is not a JSON object: {}",
                excerpt(&text)
            ),
        }
    }
}

fn message_type(msg: &Map<String, Value>) -> &str {
    msg.get("type").and_then(Value::as_str).unwrap_or("")
}

/// `errors: [{errorType, message}]` as `UnauthorizedException: You are not authorized…`.
fn describe_errors(msg: &Map<String, Value>) -> String {
    let errors = msg.get("errors").and_then(Value::as_array);
    let each: Vec<String> = errors
        .into_iter()
        .flatten()
        .map(|e| {
            let kind = e
                .get("errorType")
                .and_then(Value::as_str)
                .unwrap_or("Error");
            match e.get("message").and_then(Value::as_str) {
                Some(m) if !m.is_empty() => format!("{kind}: {m}"),
                _ => kind.to_owned(),
            }
        })
        .collect();
    if each.is_empty() {
        format!(
            "{} with no error details: {}",
            message_type(msg),
            excerpt(&Value::Object(msg.clone()).to_string())
        )
    } else {
        each.join("; ")
    }
}

/// At most 300 characters of a reply, for error messages.
fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realtime(endpoint: &str) -> String {
        realtime_url(&http_url(endpoint).unwrap())
            .unwrap()
            .to_string()
    }

    #[test]
    fn the_default_endpoint_is_a_default_local_server() {
        let listen = herald_server::Config::default().listen;
        assert_eq!(DEFAULT_ENDPOINT, format!("http://{listen}/event"));
    }

    #[test]
    fn realtime_url_follows_amplify_except_for_plain_http() {
        // The spec's amplify-js test vector (§1.1).
        assert_eq!(
            realtime(
                "https://abcdefghijklmnopqrstuvwxyz.appsync-api.us-east-1.amazonaws.com/event"
            ),
            "wss://abcdefghijklmnopqrstuvwxyz.appsync-realtime-api.us-east-1.amazonaws.com/event/realtime"
        );
        assert_eq!(
            realtime("https://api.example.com/event"),
            "wss://api.example.com/event/realtime"
        );
        assert_eq!(
            realtime("http://127.0.0.1:8080/event"),
            "ws://127.0.0.1:8080/event/realtime"
        );
        assert_eq!(
            realtime("http://localhost:8080"),
            "ws://localhost:8080/event/realtime"
        );
        assert_eq!(
            realtime("https://[::1]:8443/event?x=1"),
            "wss://[::1]:8443/event/realtime?x=1"
        );
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
