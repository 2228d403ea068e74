//! Real `nats-server` processes for tests, on free loopback ports with their own JetStream
//! directories: one server, or a 3-server cluster. Shared by the history and server tests
//! (`#[path]`), so every test owns its NATS and cleans it up on drop.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

fn binary() -> &'static str {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("nats-server is installed (scripts/test installs Debian's nats-server)")
}

/// Waits until a NATS server answers on `port` with its `INFO` line. An open port alone is not
/// enough: on a loaded machine the probe can connect to itself (the port is in the ephemeral
/// range), or reach the server before it serves clients.
fn wait_for_port(port: u16) {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let greeted = std::net::TcpStream::connect(("127.0.0.1", port))
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(1)))?;
                let mut info = [0u8; 4];
                s.read_exact(&mut info)?;
                Ok(&info == b"INFO")
            })
            .unwrap_or(false);
        if greeted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nats-server did not open port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `nats-server`; restartable on the same port and data directory.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
    /// JetStream's directory, removed on drop.
    _dir: Option<tempfile::TempDir>,
}

impl Nats {
    /// A lone server with JetStream.
    pub fn start(port: u16) -> Nats {
        Nats::with_args(port, &[])
    }

    /// A lone server with JetStream and extra command-line options (TLS, credentials).
    pub fn with_args(port: u16, extra: &[&str]) -> Nats {
        let dir = tempfile::tempdir().expect("a JetStream directory");
        let mut args = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-js".into(),
            "-sd".into(),
            dir.path().display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut nats = Nats {
            child: None,
            port,
            args,
            _dir: Some(dir),
        };
        nats.restart();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again with the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(binary())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        wait_for_port(self.port);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Three clustered `nats-server`s with JetStream (so streams can have 3 replicas).
pub struct NatsCluster {
    pub servers: Vec<Nats>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    pub fn start() -> NatsCluster {
        let dir = tempfile::tempdir().expect("a cluster directory");
        let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes = route
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let name = format!("herald-test-{}", client[0]);
        let servers = (0..3)
            .map(|i| {
                let store: PathBuf = dir.path().join(format!("n{i}"));
                let args = vec![
                    "-a".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    client[i].to_string(),
                    "-n".into(),
                    format!("nats-{i}"),
                    "-js".into(),
                    "-sd".into(),
                    store.display().to_string(),
                    "--cluster_name".into(),
                    name.clone(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", route[i]),
                    "--routes".into(),
                    routes.clone(),
                ];
                let mut nats = Nats {
                    child: None,
                    port: client[i],
                    args,
                    _dir: None,
                };
                nats.restart();
                nats
            })
            .collect();
        NatsCluster { servers, _dir: dir }
    }

    /// Every server's URL, comma-separated (what `cluster.nats_url` takes).
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(Nats::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}
