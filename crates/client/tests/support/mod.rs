//! For the client's tests: a real Herald on 127.0.0.1:0 in this process, configured from TOML as
//! a file would be, and a TCP relay in front of it that a test can cut (every connection through
//! it dropped at once) or freeze (bytes held, sockets open), to break the client's socket
//! without the server's help.
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const KEY: &str = "da2-clienttestkey0000000000";
/// Bound on waiting for anything that should arrive; tests never sleep for a fixed time.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn endpoint(&self) -> String {
        format!("http://{}/event", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

/// Starts Herald with this configuration (TOML, read as the server reads a file) on a free port.
pub async fn start(toml: &str) -> TestServer {
    use figment::providers::Format;
    let mut config: herald_server::Config =
        figment::Figment::from(figment::providers::Toml::string(toml))
            .extract()
            .expect("the test configuration parses");
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.shutdown_grace_ms = 500;
    // Every test client is 127.0.0.1: lift the per-address rates.
    config.admission.max_connects_per_address_per_second = 100_000;
    config.admission.max_http_publishes_per_address_per_second = 100_000;
    config.admission.max_socket_publishes_per_address_per_second = 100_000;
    let server = herald_server::Server::bind(config)
        .await
        .expect("server starts");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    TestServer {
        addr,
        stop: Some(stop),
        done: Some(done),
    }
}

/// An API key, a `default` namespace without history and a `chat` namespace with history in
/// memory.
pub fn key_and_history() -> String {
    format!(
        "[[auth.api_keys]]\nkey = \"{KEY}\"\n[history]\nbackend = \"memory\"\n\
         [[namespaces]]\nname = \"default\"\n[[namespaces]]\nname = \"chat\"\nhistory = {{}}\n"
    )
}

/// A TCP relay to `target`: `cut` drops every connection through it, `freeze` stops moving
/// bytes on the connections open now (the sockets stay open, as on a dead link); connections
/// made later are relayed as usual.
pub struct Relay {
    pub addr: SocketAddr,
    links: Arc<Mutex<Vec<Link>>>,
    /// Connections accepted so far.
    accepted: Arc<tokio::sync::watch::Sender<usize>>,
    accept: JoinHandle<()>,
}

struct Link {
    task: JoinHandle<()>,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<Link>>> = Arc::default();
        let all = links.clone();
        let accepted = Arc::new(tokio::sync::watch::channel(0usize).0);
        let count = accepted.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.send_modify(|n| *n += 1);
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (frozen, _) = tokio::sync::watch::channel(false);
                let (mut up, mut down) = (frozen.subscribe(), frozen.subscribe());
                let task = tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::select! {
                        _ = pump(&mut cr, &mut sw, &mut up) => {}
                        _ = pump(&mut sr, &mut cw, &mut down) => {}
                    }
                });
                all.lock().unwrap().push(Link { task, frozen });
            }
        });
        Relay {
            addr,
            links,
            accepted,
            accept,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}/event", self.addr)
    }

    /// Drops every connection through the relay (both sides see the TCP stream end).
    pub fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.task.abort();
        }
    }

    /// Stops moving bytes on every connection open now.
    pub fn freeze(&self) {
        for link in self.links.lock().unwrap().iter() {
            link.frozen.send_replace(true);
        }
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Waits until `n` connections were accepted since the start.
    pub async fn wait_accepted(&self, n: usize) {
        let mut accepted = self.accepted.subscribe();
        let _ = tokio::time::timeout(WAIT, accepted.wait_for(|a| *a >= n)).await;
    }

    /// Connections relayed now.
    pub fn links(&self) -> usize {
        let mut links = self.links.lock().unwrap();
        links.retain(|l| !l.task.is_finished());
        links.len()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Copies `from` to `to` until either ends; once `frozen`, holds what it read.
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    frozen: &mut tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
