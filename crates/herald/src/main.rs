//! `herald`: the command line. `serve` runs the server; `check-config` validates a file;
//! `publish` and `subscribe` are a client for any AppSync Events endpoint (see `client`).

mod client;

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
    /// Log output format.
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
        /// An API key to accept (repeatable; added to the configured keys).
        #[arg(long = "api-key")]
        api_keys: Vec<String>,
        /// Serve TLS with a generated development certificate for localhost and 127.0.0.1.
        #[arg(long)]
        dev_tls: bool,
        /// Directory for Herald's files (overrides `data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Validate a configuration file and report every problem.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Publish 1 to 5 events to a channel (Herald or AWS AppSync Events); prints the reply.
    Publish(client::PublishArgs),
    /// Subscribe to a channel and print each event as a JSON line.
    Subscribe(client::SubscribeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The client subcommands log nothing: their stdout is JSON lines, and the log goes to stdout.
    if !matches!(cli.command, Command::Publish(_) | Command::Subscribe(_)) {
        init_logs(cli.log_format);
    }
    let result = match cli.command {
        Command::Publish(args) => client::publish(args),
        Command::Subscribe(args) => client::subscribe(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::Serve {
            config,
            listen,
            api_keys,
            dev_tls,
            data_dir,
        } => serve(config, listen, api_keys, dev_tls, data_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(Some(file))?;
    // Checks every section and compiles the handlers: a syntax error names the namespace and
    // the line.
    herald_server::Settings::build(config)?;
    println!("{}: ok", file.display());
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
    if config.auth.api_keys.is_empty() {
        let key = herald_server::id::api_key()?;
        config = args.config(Some(&key))?;
        generated = Some(key);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(config).await?;
        let source_key = generated.clone();
        server.set_reload_source(Box::new(move || {
            args.config(source_key.as_deref())
                .map_err(|e| format!("{e:#}"))
        }));
        spawn_reload_on_sighup(server.reloader());
        let addr = server.local_addr();
        let host = if addr.ip().is_unspecified() {
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        };
        let ws_scheme = if server.tls_enabled() { "wss" } else { "ws" };
        println!("Herald is listening on {addr}");
        println!("  HTTP publish:  http://{host}/event");
        println!("  WebSocket:     {ws_scheme}://{host}/event/realtime");
        if let Some(files) = server.dev_tls_files() {
            println!(
                "  Development TLS on the same port; trust its CA with NODE_EXTRA_CA_CERTS={}",
                files.ca.display()
            );
        }
        if let Some(key) = generated {
            println!("  API key (generated): {key}");
        }
        tracing::info!(%addr, "serving");
        server.run(shutdown_signal()).await;
        tracing::info!("stopped");
        Ok(())
    })
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
