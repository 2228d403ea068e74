//! The listener: accepts TCP connections, tells TLS from plain HTTP by the first byte, serves
//! HTTP/1.1 with upgrades, runs the keep-alive timer, and shuts down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::admission::{Refusal, Ticket};
use crate::api::Apis;
use crate::config::{Config, ConfigError, ReloadSource};
use crate::control::replicated::Records;
use crate::deployment::BackplaneError;
use crate::reload::ReloadError;
use crate::settings::Settings;
use crate::state::State;
use crate::transport::blocklist::{self, Blocklist};
use crate::transport::deadline::WriteDeadline;
use crate::transport::proxy;
use crate::transport::tls::{DevFiles, TlsError};
use crate::transport::ws::close;

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
    #[error(transparent)]
    Stored(#[from] crate::control::store::StoreError),
    #[error("cannot open an API the control plane created: {0}")]
    Api(#[from] crate::api::OpenError),
    // The I/O error is in the message, so it is not also a `#[source]` (a chain would repeat it).
    #[error(
        "cannot listen on {addr}: {error} (is another process using the port? choose another with --listen)"
    )]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// Reloads a running server's configuration.
#[derive(Clone)]
pub struct Reloader(Arc<State>);

impl Reloader {
    /// Reloads from the configuration source (see `reload`).
    pub async fn reload(&self) -> Result<(), ReloadError> {
        crate::reload::reload(self.0.clone()).await
    }
}

/// A bound, ready-to-run server.
pub struct Server {
    state: Arc<State>,
    /// The APIs created through the control plane, served beside the file's.
    apis: Arc<Apis>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    dev_tls: Option<DevFiles>,
}

impl Server {
    /// Checks and builds the configuration, sets up TLS, starts the backplane (embedded or
    /// cluster) and binds the port.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        // What the control plane created is served beside the file's: kept in the data
        // directory, or in cluster mode in NATS (read once the backplane is up).
        let record = if config.cluster.enabled() {
            Default::default()
        } else {
            crate::control::store::load(&config.data_dir, &config.control_plane.api_id)?
                .without_deleted_keys(crate::time::now_unix())
        };
        let Settings { fixed, live } = Settings::build_with(config, record)?;
        let (tls, dev_tls) = fixed.tls.acceptor(&fixed.data_dir)?;
        let addr = fixed.listen;
        let backplane = crate::deployment::start(&fixed).await?;
        let mut state = State::new(
            fixed,
            live,
            backplane.broker,
            backplane.history,
            backplane.outbound,
        );
        // In cluster mode the control plane's records are the cluster's, in NATS.
        if let Some(nats) = &backplane.nats {
            let cluster = &state.fixed.cluster;
            let records = Records::open(nats.clone(), cluster.prefix(), cluster.history_replicas)
                .await
                .map_err(crate::api::OpenError::Replicated)?;
            state.records = Some(Arc::new(records));
        }
        let state = Arc::new(state);
        if let Some(nats) = backplane.nats {
            crate::presence::cluster::start(
                &state.presence,
                nats,
                &state.fixed.cluster,
                state.metrics.presence_deltas_dropped.clone(),
            );
        }
        let apis = Arc::new(Apis::default());
        match state.records.clone() {
            Some(records) => crate::api::follow(&state, &apis, records).await?,
            None => apis.open_stored(&state).await?,
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|error| StartError::Bind { addr, error })?;
        Ok(Server {
            state,
            apis,
            listener,
            tls,
            dev_tls,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.fixed.listen)
    }

    /// Where reloads (SIGHUP, `POST /admin/reload`) read the configuration from.
    pub fn set_reload_source(&self, source: ReloadSource) {
        self.state.set_reload_source(source);
    }

    /// A handle that reloads the running server's configuration.
    pub fn reloader(&self) -> Reloader {
        Reloader(self.state.clone())
    }

    /// Whether connections may use TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// The generated development certificate, when `--dev-tls` is on.
    pub fn dev_tls_files(&self) -> Option<&DevFiles> {
        self.dev_tls.as_ref()
    }

    /// Serves until `shutdown` resolves, then stops accepting, closes WebSockets with
    /// "going away", lets in-flight requests finish, and returns within the grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            state,
            apis,
            listener,
            tls,
            ..
        } = self;
        // Every HTTP connection holds a receiver; shutdown flips the value and waits for all to drop.
        let (stop, _) = tokio::sync::watch::channel(false);
        let ticker = tokio::spawn(crate::api::keepalive(state.clone()));
        let handshake = Duration::from_millis(state.fixed.websocket.handshake_timeout_ms);
        let mut blocklist = Blocklist::new(&listener);
        // Addresses found flooding by their connect rate (the upgrade handlers see those).
        let mut floods = state.admission.take_floods();
        let mut expiry = tokio::time::interval(Duration::from_secs(1));
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                now = expiry.tick(), if !blocklist.is_empty() => {
                    for ip in blocklist.expire(now.into_std()) {
                        tracing::info!(client = %ip, "flood block lifted");
                    }
                    state.metrics.blocked_addresses.set(blocklist.len() as i64);
                }
                Some(ip) = async { floods.as_mut()?.recv().await } => {
                    block(&state, &mut blocklist, ip);
                }
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Usually out of file descriptors: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    // Admitted here, before any work on the socket, unless a PROXY header is to
                    // name the client first: a flood of sockets over the cap then costs the
                    // accept and the close only (no task, no option set).
                    let ticket = if state.admission.expects_proxy_header(peer.ip()) {
                        None
                    } else {
                        match state.admission.admit(peer.ip()) {
                            Ok(t) => Some(Arc::new(t)),
                            Err(refusal) => {
                                refused(&state, refusal, peer);
                                if let Refusal::Flood(ip) = refusal {
                                    block(&state, &mut blocklist, ip);
                                }
                                continue;
                            }
                        }
                    };
                    if !blocklist.is_empty() {
                        // The socket inherited the listener's filter: its packets need not be
                        // checked against the list for its whole life.
                        let _ = blocklist::detach(std::os::fd::AsRawFd::as_raw_fd(&tcp));
                    }
                    let _ = tcp.set_nodelay(true);
                    crate::transport::cap_send_buffer(
                        &tcp,
                        state.fixed.limits.socket_send_buffer_bytes,
                    );
                    let state = state.clone();
                    let apis = apis.clone();
                    let tls = tls.clone();
                    let watcher = stop.subscribe();
                    tokio::spawn(async move {
                        let served = Served { state, apis };
                        serve_tcp(served, tcp, peer, ticket, tls, handshake, watcher).await;
                    });
                }
            }
        }
        drop(listener);
        ticker.abort();
        tracing::info!("shutting down: closing connections");
        let mut every = apis.all();
        every.push(state.clone());
        for api in &every {
            api.connections
                .close_all(close::GOING_AWAY, "server shutting down");
        }
        let grace = Duration::from_millis(state.fixed.shutdown_grace_ms);
        let open = || every.iter().map(|s| s.connections.count()).sum::<usize>();
        let drained = async {
            let _ = stop.send(true);
            stop.closed().await;
            while open() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!(
                open = open(),
                "grace period over with connections still open"
            );
        }
        crate::presence::cluster::drain(&state.presence, Duration::from_secs(1)).await;
    }
}

/// Takes the socket's place under the per-address and total caps for `client`, or counts the
/// refusal; a refused socket is closed unanswered: answering would cost what the cap protects.
/// (Behind a PROXY-protocol balancer a flooding client cannot be blocked in the kernel, whose
/// packets all come from the balancer: it is refused one socket at a time.)
fn admit(state: &State, client: std::net::IpAddr, peer: SocketAddr) -> Option<Arc<Ticket>> {
    match state.admission.admit(client) {
        Ok(t) => Some(Arc::new(t)),
        Err(refusal) => {
            refused(state, refusal, peer);
            None
        }
    }
}

fn refused(state: &State, refusal: Refusal, peer: SocketAddr) {
    state.metrics.refused_sockets.inc();
    tracing::debug!(%peer, ?refusal, "socket refused");
}

/// Blocks a flooding address in the kernel for `admission.flood_block_secs`.
fn block(state: &State, blocklist: &mut Blocklist, ip: std::net::IpAddr) {
    let secs = state.fixed.admission.flood_block_secs;
    if blocklist.block(ip, secs) {
        state.metrics.flood_blocks.inc();
        state.metrics.blocked_addresses.set(blocklist.len() as i64);
        tracing::warn!(
            client = %ip,
            secs,
            "address blocked: its sockets keep coming over admission.max_sockets_per_address, \
             or its connects over admission.max_connects_per_address_per_second \
             (admission.flood_block_refusals_per_second); its connection attempts are dropped \
             until the block ends, its open connections are untouched"
        );
    }
}

/// Serves one accepted socket; `ticket` is its admission, or `None` when a PROXY header must
/// name the client before it can be admitted.
async fn serve_tcp(
    served: Served,
    tcp: TcpStream,
    peer: SocketAddr,
    ticket: Option<Arc<Ticket>>,
    tls: Option<TlsAcceptor>,
    handshake: Duration,
    watcher: tokio::sync::watch::Receiver<bool>,
) {
    let state = &served.state;
    let mut tcp = tcp;
    // Behind a PROXY-protocol load balancer the client is whom the header names; read it before
    // admission so the per-address cap counts clients, not the balancer.
    let mut proxied = None;
    let ticket = match ticket {
        Some(t) => t,
        None => {
            match tokio::time::timeout(handshake, proxy::read_header(&mut tcp)).await {
                Ok(Ok(client)) => proxied = client,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "PROXY header refused; closing");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "no PROXY header in time; closing");
                    return;
                }
            }
            match admit(state, proxied.unwrap_or(peer.ip()), peer) {
                Some(t) => t,
                None => return,
            }
        }
    };
    let stall = Duration::from_millis(state.fixed.limits.write_timeout_ms);
    if let Some(acceptor) = tls {
        let mut first = [0u8; 1];
        let is_tls = matches!(
            tokio::time::timeout(handshake, tcp.peek(&mut first)).await,
            Ok(Ok(1))
        ) && first[0] == 0x16;
        if is_tls {
            let tcp = WriteDeadline::new(tcp, stall);
            match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => serve_http(served, stream, peer, proxied, ticket, watcher).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
            return;
        }
    }
    let tcp = WriteDeadline::new(tcp, stall);
    serve_http(served, tcp, peer, proxied, ticket, watcher).await;
}

/// What a socket is served with: the file's API (which owns the listener) and the created ones.
#[derive(Clone)]
struct Served {
    state: Arc<State>,
    apis: Arc<Apis>,
}

async fn serve_http<S>(
    served: Served,
    io: S,
    peer: SocketAddr,
    proxied: Option<std::net::IpAddr>,
    ticket: Arc<Ticket>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout_ms = served.state.fixed.limits.header_timeout_ms;
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let Served { state, apis } = served.clone();
        // A PROXY header names the client for the whole connection; else a trusted proxy's
        // `X-Forwarded-For` names it per request.
        let client = proxied.unwrap_or_else(|| {
            let forwarded = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok());
            state.admission.client(peer.ip(), forwarded)
        });
        let extensions = req.extensions_mut();
        let direct = proxied.is_none() && client == peer.ip();
        extensions.insert(crate::http::request::Peer { client, direct });
        // The WebSocket this request may become holds the socket's place too.
        extensions.insert(ticket.clone());
        async move { Ok::<_, std::convert::Infallible>(crate::http::handle(state, apis, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(header_timeout_ms))
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            // Finish the request in flight, then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}
