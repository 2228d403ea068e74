//! `herald`: the command line. `serve` runs the server; `check-config` validates a file;
//! `publish` and `subscribe` are a client for any AppSync Events endpoint (see `client`).

mod apply;
mod client;
mod manage;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use herald_server::config::{ApiKeyConfig, NamespaceConfig};
use herald_server::{Config, Server};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "A self-hosted, AppSync Events-compatible real-time pub/sub server"
)]
struct Cli {
    /// Log output format (how much is logged: `RUST_LOG`, e.g. `debug`).
    ///
    /// `human`: text, coloured only on a terminal. `json`: one JSON object per line, the start-up
    /// banner included. `RUST_LOG` defaults to `info`; `debug` also logs why each request was
    /// refused.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "HERALD_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// TOML configuration file. Without one, Herald serves a `default` namespace with API keys.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides `listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// An API key to accept (repeatable; added to the configured keys, named `command-line`
        /// for access rules).
        #[arg(long = "api-key")]
        api_keys: Vec<String>,
        /// Serve TLS with a generated development certificate for localhost and 127.0.0.1.
        #[arg(long)]
        dev_tls: bool,
        /// Directory for Herald's files (overrides `data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Check a configuration file as `serve` would, naming the key of each problem.
    ///
    /// Every invalid value is reported at once; a syntax, type or unknown-key error stops the
    /// reading, so only the first of those is. Warns about API keys that have already expired.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Publish 1 to 5 events to a channel (Herald or AWS AppSync Events); prints the reply.
    Publish(client::PublishArgs),
    /// Subscribe to a channel and print each event as a JSON line.
    Subscribe(client::SubscribeArgs),
    /// Deploy the Event APIs, channel namespaces and API keys of a CloudFormation template (what
    /// `cdk synth` writes) to a running Herald through its control plane; prints each API's
    /// endpoints and keys as JSON.
    Apply(apply::ApplyArgs),
    /// List, create, show and delete Event APIs through a Herald's control plane.
    Apis {
        #[command(flatten)]
        admin: manage::Admin,
        #[command(subcommand)]
        command: manage::Apis,
    },
    /// List, create and delete an API's channel namespaces through the control plane.
    Namespaces {
        #[command(flatten)]
        admin: manage::Admin,
        #[command(subcommand)]
        command: manage::Namespaces,
    },
    /// List, create and delete an API's keys through the control plane.
    Keys {
        #[command(flatten)]
        admin: manage::Admin,
        #[command(subcommand)]
        command: manage::Keys,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The client subcommands log nothing: their stdout is JSON lines, and the log goes to stdout.
    if !matches!(
        cli.command,
        Command::Publish(_)
            | Command::Subscribe(_)
            | Command::Apply(_)
            | Command::Apis { .. }
            | Command::Namespaces { .. }
            | Command::Keys { .. }
    ) {
        init_logs(cli.log_format);
    }
    let result = match cli.command {
        Command::Publish(args) => client::publish(args),
        Command::Subscribe(args) => client::subscribe(args),
        Command::Apply(args) => apply::apply(args),
        Command::Apis { admin, command } => manage::apis(admin, command),
        Command::Namespaces { admin, command } => manage::namespaces(admin, command),
        Command::Keys { admin, command } => manage::keys(admin, command),
        Command::CheckConfig { file } => check_config(&file),
        Command::Serve {
            config,
            listen,
            api_keys,
            dev_tls,
            data_dir,
        } => serve(config, listen, api_keys, dev_tls, data_dir, cli.log_format),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, leaving out a cause whose text is already in the
/// message (many errors quote their cause), so nothing is said twice.
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The log goes to stdout: colours only when a terminal reads it, never into a file or pipe.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(Some(file))?;
    let warnings = config.warnings(herald_server::time::now_unix());
    // Checks every section and compiles the handlers: a syntax error names the namespace and
    // the line.
    herald_server::Settings::build(config)?;
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    match warnings.len() {
        0 => println!("{}: ok", file.display()),
        n => println!("{}: ok, with {n} warning(s)", file.display()),
    }
    Ok(())
}

/// What `serve` was given on the command line; applied on start and again on every reload.
#[derive(Clone)]
struct ServeArgs {
    file: Option<PathBuf>,
    listen: Option<SocketAddr>,
    api_keys: Vec<String>,
    dev_tls: bool,
    data_dir: Option<PathBuf>,
}

impl ServeArgs {
    /// The file (or defaults), environment and flags, as one configuration. `generated` is the
    /// key generated at first start, kept across reloads.
    fn config(&self, generated: Option<&str>) -> anyhow::Result<Config> {
        let mut config = Config::load(self.file.as_deref())?;
        if self.file.is_none() && config.namespaces.is_empty() {
            config.namespaces.push(NamespaceConfig::named("default"));
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        // Absolute, so that printed paths (the development CA, history) work from anywhere.
        if let Ok(dir) = std::path::absolute(&config.data_dir) {
            config.data_dir = dir;
        }
        config.tls.dev |= self.dev_tls;
        for key in &self.api_keys {
            config.auth.api_keys.push(ApiKeyConfig {
                key: key.clone(),
                name: Some("command-line".into()),
                expires: None,
            });
        }
        if let Some(key) = generated {
            config.auth.api_keys.push(ApiKeyConfig {
                key: key.to_owned(),
                name: Some("generated".into()),
                expires: None,
            });
        }
        Ok(config)
    }
}

fn serve(
    file: Option<PathBuf>,
    listen: Option<SocketAddr>,
    api_keys: Vec<String>,
    dev_tls: bool,
    data_dir: Option<PathBuf>,
    log_format: LogFormat,
) -> anyhow::Result<()> {
    let args = ServeArgs {
        file,
        listen,
        api_keys,
        dev_tls,
        data_dir,
    };
    let mut config = args.config(None)?;
    let mut generated = None;
    // A key only where some operation takes one: otherwise it would be printed and then refused.
    if config.auth.api_keys.is_empty() && config.accepts_api_keys() {
        let key = herald_server::id::api_key()?;
        config = args.config(Some(&key))?;
        generated = Some(key);
    }
    let warnings = config.warnings(herald_server::time::now_unix());
    let mut banner = Banner::new(&config, generated.clone(), warnings);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(config).await?;
        let source_key = generated;
        server.set_reload_source(Box::new(move || {
            args.config(source_key.as_deref())
                .map_err(|e| format!("{e:#}"))
        }));
        spawn_reload_on_sighup(server.reloader());
        banner.bound(&server);
        banner.show(log_format);
        server.run(shutdown_signal()).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// What a newcomer wants to see at start: where to publish, subscribe, look and measure; what is
/// served; the key to use. Text on stdout, or one JSON log line with `--log-format json`.
struct Banner {
    addr: String,
    http: String,
    websocket: String,
    console: String,
    metrics: String,
    /// The control plane's `apiId`, when administrator keys turn it on.
    control_api_id: Option<String>,
    /// Where the AWS CLI and SDKs reach the control plane (`--endpoint-url`).
    control: String,
    /// Each namespace, `(history)` after those that keep it.
    namespaces: Vec<String>,
    history: Option<String>,
    cluster: Option<String>,
    dev_tls_ca: Option<PathBuf>,
    generated_key: Option<String>,
    warnings: Vec<String>,
}

impl Banner {
    fn new(config: &Config, generated_key: Option<String>, warnings: Vec<String>) -> Banner {
        let namespaces = config
            .namespaces
            .iter()
            .map(|ns| match ns.history {
                Some(_) => format!("{} (history)", ns.name),
                None => ns.name.clone(),
            })
            .collect();
        let keeps_history = config.namespaces.iter().any(|ns| ns.history.is_some());
        let clustered = config.cluster.enabled();
        let history = keeps_history.then(|| {
            if clustered {
                "in NATS JetStream".to_owned()
            } else {
                match config.history.backend {
                    herald_server::config::HistoryBackend::Fjall => {
                        format!(
                            "on disk under {}",
                            config.data_dir.join("history").display()
                        )
                    }
                    herald_server::config::HistoryBackend::Memory => {
                        "in memory (lost on restart)".to_owned()
                    }
                }
            }
        });
        let cluster = clustered.then(|| {
            format!(
                "over NATS at {}",
                without_credentials(&config.cluster.nats_url)
            )
        });
        Banner {
            addr: String::new(),
            http: String::new(),
            websocket: String::new(),
            console: String::new(),
            metrics: String::new(),
            control_api_id: (!config.control_plane.access_keys.is_empty())
                .then(|| config.control_plane.api_id.clone()),
            control: String::new(),
            namespaces,
            history,
            cluster,
            dev_tls_ca: None,
            generated_key,
            warnings,
        }
    }

    /// The addresses, once the port is bound (it may have been 0).
    fn bound(&mut self, server: &Server) {
        let addr = server.local_addr();
        let host = if addr.ip().is_unspecified() {
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        };
        // amplify-js always opens wss://, which only a TLS-serving Herald takes.
        let ws_scheme = if server.tls_enabled() { "wss" } else { "ws" };
        self.addr = addr.to_string();
        self.http = format!("http://{host}/event");
        self.websocket = format!("{ws_scheme}://{host}/event/realtime");
        self.console = format!("http://{host}/console");
        self.metrics = format!("http://{host}/metrics");
        self.control = format!("http://{host}");
        self.dev_tls_ca = server.dev_tls_files().map(|f| f.ca.clone());
    }

    fn show(&self, format: LogFormat) {
        let namespaces = self.namespaces.join(", ");
        match format {
            LogFormat::Json => {
                for warning in &self.warnings {
                    tracing::warn!("{warning}");
                }
                let ca = self.dev_tls_ca.as_ref().map(|p| p.display().to_string());
                tracing::info!(
                    addr = %self.addr,
                    http = %self.http,
                    websocket = %self.websocket,
                    console = %self.console,
                    metrics = %self.metrics,
                    control_plane = self.control_api_id.as_ref().map(|_| self.control.as_str()),
                    control_plane_api_id = self.control_api_id.as_deref(),
                    namespaces = %namespaces,
                    history = self.history.as_deref(),
                    cluster = self.cluster.as_deref(),
                    dev_tls_ca = ca.as_deref(),
                    generated_api_key = self.generated_key.as_deref(),
                    "serving"
                );
            }
            LogFormat::Human => {
                let mut lines = vec![
                    format!("Herald is listening on {}", self.addr),
                    format!("  HTTP publish:  {}", self.http),
                    format!("  WebSocket:     {}", self.websocket),
                    format!("  Console:       {}", self.console),
                    format!("  Metrics:       {}", self.metrics),
                    format!("  Namespaces:    {namespaces}"),
                ];
                if let Some(api_id) = &self.control_api_id {
                    lines.push(format!(
                        "  Control plane: {} (AppSync API {api_id:?}; aws appsync --endpoint-url)",
                        self.control
                    ));
                }
                if let Some(history) = &self.history {
                    lines.push(format!("  History:       {history}"));
                }
                lines.push(match &self.cluster {
                    Some(cluster) => format!("  Cluster:       {cluster}"),
                    None => "  Cluster:       no (a single node)".to_owned(),
                });
                if let Some(ca) = &self.dev_tls_ca {
                    lines.push(format!(
                        "  Development TLS on the same port; trust its CA with NODE_EXTRA_CA_CERTS={}",
                        ca.display()
                    ));
                }
                if let Some(key) = &self.generated_key {
                    lines.push(format!("  API key (generated): {key}"));
                }
                for warning in &self.warnings {
                    lines.push(format!("  Warning: {warning}"));
                }
                println!("{}", lines.join("\n"));
                tracing::info!(addr = %self.addr, "serving");
            }
        }
    }
}

/// NATS URLs as they may be printed: `user:password@` left out of each.
fn without_credentials(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let url = url.trim();
            match (url.split_once("://"), url.rsplit_once('@')) {
                (Some((scheme, _)), Some((_, host))) => format!("{scheme}://{host}"),
                (None, Some((_, host))) => host.to_owned(),
                _ => url.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// SIGHUP reloads namespaces, keys, providers, rules and handlers without dropping connections;
/// a configuration that fails validation is refused and the running one kept.
fn spawn_reload_on_sighup(reloader: herald_server::server::Reloader) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /admin/reload instead");
            return;
        };
        while hup.recv().await.is_some() {
            match reloader.reload().await {
                Ok(()) => tracing::info!("reloaded on SIGHUP"),
                Err(e) => tracing::error!(error = %e, "reload on SIGHUP refused"),
            }
        }
    });
    #[cfg(not(unix))]
    let _ = reloader;
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_credentials_are_not_printed() {
        assert_eq!(
            without_credentials("nats://u:secret@10.0.0.5:4222, tls://10.0.0.6:4222,a:b@h:1"),
            "nats://10.0.0.5:4222,tls://10.0.0.6:4222,h:1"
        );
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(io).context("cannot read x: No such file");
        assert_eq!(error_chain(&e), "cannot read x: No such file");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&e), "outer: inner");
    }
}
