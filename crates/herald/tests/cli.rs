//! `herald publish` and `herald subscribe` against a real Herald started here: the real binary on
//! both sides, over plain HTTP/WebSocket and over `--dev-tls` with `--ca`.

#[path = "support/http.rs"]
mod http;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use http::free_port;

const KEY: &str = "da2-clicliclicli0000";

/// `herald` with no ambient client settings, so the developer's environment cannot leak in.
fn herald() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    for var in [
        "HERALD_ENDPOINT",
        "HERALD_API_KEY",
        "HERALD_TOKEN",
        "RUST_LOG",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// A Herald process, killed (by its own handle) when dropped.
struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = herald()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--api-key", KEY, "--data-dir"])
            .arg(dir.path().join("data"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("herald serve starts");
        let server = Server { child, port, dir };
        server.wait_ready();
        server
    }

    /// With a config file: `listen` and `data_dir` are set here, the rest is `toml`.
    fn start_with_config(toml: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("herald.toml");
        let head = format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n",
            dir.path().join("data")
        );
        std::fs::write(&config, head + toml).unwrap();
        let child = herald()
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("herald serve starts");
        let server = Server { child, port, dir };
        server.wait_ready();
        server
    }

    /// Polls `GET /healthz` in plain HTTP (a `--dev-tls` port takes both).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = TcpStream::connect(("127.0.0.1", self.port)).and_then(|mut s| {
                s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")?;
                let mut reply = String::new();
                s.read_to_string(&mut reply)?;
                Ok(reply.starts_with("HTTP/1.1 200"))
            });
            if ok.unwrap_or(false) {
                return;
            }
            assert!(Instant::now() < deadline, "herald did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn http(&self) -> String {
        format!("http://127.0.0.1:{}/event", self.port)
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("data/dev-tls/ca.pem")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `herald subscribe`, with its stderr read line by line on a thread.
struct Subscriber {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Subscriber {
    /// With the test API key.
    fn start(endpoint: &str, args: &[&str]) -> Subscriber {
        Subscriber::start_with(
            herald().args(["subscribe", "--api-key", KEY]),
            endpoint,
            args,
        )
    }

    fn start_with(cmd: &mut Command, endpoint: &str, args: &[&str]) -> Subscriber {
        let mut child = cmd
            .args(["--endpoint", endpoint])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("herald subscribe starts");
        let (tx, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Subscriber { child, stderr }
    }

    /// Waits for the "subscribed to …" line: from then on, publishes reach it.
    fn wait_subscribed(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.starts_with("subscribed to ") => return line,
                Ok(_) => {}
                Err(e) => panic!("subscriber never said it subscribed: {e}"),
            }
        }
    }

    /// Waits for the process to exit (it has a --timeout-secs of its own) and returns its
    /// stdout lines parsed as JSON, and the stderr lines not read yet.
    fn finish(mut self) -> (bool, Vec<Value>, Vec<String>) {
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.child.wait().unwrap();
        let lines = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        // The reader thread ends at EOF, which closes the channel.
        let stderr = self.stderr.iter().collect();
        (status.success(), lines, stderr)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn publish(endpoint: &str, args: &[&str]) -> Output {
    herald()
        .args(["publish", "--endpoint", endpoint])
        .args(args)
        .output()
        .expect("herald publish runs")
}

/// Runs a publish that must succeed and returns its one-line reply.
fn publish_ok(endpoint: &str, args: &[&str]) -> Value {
    let out = publish(endpoint, args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "publish {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one reply line: {stdout}");
    let reply: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(reply["failed"], json!([]), "{reply}");
    reply
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Subscribe `--count 2`, publish once over HTTP and once over the socket, see both events.
fn round_trip(endpoint: &str, ca: Option<&Path>) {
    let ca_args: Vec<&str> = match ca {
        Some(path) => vec!["--ca", path.to_str().unwrap()],
        None => vec![],
    };
    let mut sub_args = vec!["--count", "2", "--timeout-secs", "30", "/default/cli"];
    sub_args.extend(&ca_args);
    let sub = Subscriber::start(endpoint, &sub_args);
    assert_eq!(sub.wait_subscribed(), "subscribed to /default/cli");

    let mut args = vec![
        "--api-key",
        KEY,
        "/default/cli",
        "{ \"n\": 1,\n \"s\": \"a b\" }",
    ];
    args.extend(&ca_args);
    let reply = publish_ok(endpoint, &args);
    assert_eq!(reply["successful"][0]["index"], 0, "{reply}");
    assert_eq!(reply["successful"][0]["delivered"], 1, "{reply}");

    let mut args = vec!["--ws", "--api-key", KEY, "/default/cli", "\"two\""];
    args.extend(&ca_args);
    let reply = publish_ok(endpoint, &args);
    assert_eq!(reply["successful"][0]["delivered"], 1, "{reply}");

    let (ok, lines, _) = sub.finish();
    assert!(ok, "subscriber exits 0 after --count events");
    assert_eq!(
        lines,
        vec![
            json!({"channel": "/default/cli", "event": {"n": 1, "s": "a b"}, "position": null}),
            json!({"channel": "/default/cli", "event": "two", "position": null}),
        ]
    );
}

#[test]
fn publish_and_subscribe_over_plain_http_and_websocket() {
    let server = Server::start(&[]);
    round_trip(&server.http(), None);
}

#[test]
fn publish_and_subscribe_over_dev_tls_with_ca() {
    let server = Server::start(&["--dev-tls"]);
    let https = format!("https://127.0.0.1:{}/event", server.port);
    round_trip(&https, Some(&server.ca()));

    // Without --ca the development certificate is not trusted, on either transport.
    for transport in [&[][..], &["--ws"][..]] {
        let mut args = vec!["--api-key", KEY, "/default/cli", "1"];
        args.extend(transport);
        let out = publish(&https, &args);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("UnknownIssuer"), "{}", stderr(&out));
    }
}

#[test]
fn publish_errors_exit_non_zero_with_the_server_error() {
    let server = Server::start(&[]);
    let endpoint = server.http();
    for transport in [&[][..], &["--ws"][..]] {
        let mut args = vec!["--api-key", "da2-wrongwrongwrong", "/default/a", "1"];
        args.extend(transport);
        let out = publish(&endpoint, &args);
        assert!(!out.status.success(), "{transport:?}");
        assert!(out.stdout.is_empty(), "{transport:?}");
        assert!(
            stderr(&out).contains("UnauthorizedException: You are not authorized"),
            "{transport:?}: {}",
            stderr(&out)
        );

        let mut args = vec!["--api-key", KEY, "/nowhere/a", "1"];
        args.extend(transport);
        let out = publish(&endpoint, &args);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("UnauthorizedException"),
            "{}",
            stderr(&out)
        );
    }

    let out = publish(&endpoint, &["--api-key", KEY, "/default/a", "{}", "hello"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("event 2 is not JSON"),
        "{}",
        stderr(&out)
    );

    let out = publish(&endpoint, &["/default/a", "1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--api-key"), "{}", stderr(&out));
}

#[test]
fn positions_wildcards_and_resume_on_a_history_namespace() {
    // A `chat` namespace that keeps history: positions and resume.
    let server = Server::start_with_config(&format!(
        "[[auth.api_keys]]\nkey = \"{KEY}\"\n[history]\nbackend = \"memory\"\n\
         [[namespaces]]\nname = \"chat\"\nhistory = {{}}\n"
    ));
    let endpoint = server.http();
    let first = publish_ok(&endpoint, &["--api-key", KEY, "/chat/room1", "{\"i\":1}"]);
    let epoch = first["successful"][0]["position"]["epoch"]
        .as_str()
        .expect("a history namespace returns positions")
        .to_owned();
    publish_ok(&endpoint, &["--api-key", KEY, "/chat/room1", "{\"i\":2}"]);

    // A wildcard subscriber learns the concrete channel from the position.
    let sub = Subscriber::start(
        &endpoint,
        &["--count", "1", "--timeout-secs", "30", "/chat/*"],
    );
    sub.wait_subscribed();
    publish_ok(&endpoint, &["--ws", "--api-key", KEY, "/chat/room2", "[3]"]);
    let (ok, lines, _) = sub.finish();
    assert!(ok);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["channel"], "/chat/room2");
    assert_eq!(lines[0]["event"], json!([3]));
    assert_eq!(lines[0]["position"]["offset"], 1);

    // Resume after offset 1: only the second event is replayed.
    let from = format!("{epoch}:1");
    let sub = Subscriber::start(
        &endpoint,
        &[
            "--count",
            "1",
            "--timeout-secs",
            "30",
            "--resume-from",
            &from,
            "/chat/room1",
        ],
    );
    assert_eq!(
        sub.wait_subscribed(),
        "subscribed to /chat/room1 (resumed: 1 replayed)"
    );
    let (ok, lines, _) = sub.finish();
    assert!(ok);
    assert_eq!(lines[0]["event"], json!({"i": 2}));
    assert_eq!(lines[0]["position"]["offset"], 2);

    // --since-ms 0: everything stored.
    let sub = Subscriber::start(
        &endpoint,
        &[
            "--count",
            "2",
            "--timeout-secs",
            "30",
            "--since-ms",
            "0",
            "/chat/room1",
        ],
    );
    let (ok, lines, _) = sub.finish();
    assert!(ok);
    let events: Vec<&Value> = lines.iter().map(|l| &l["event"]).collect();
    assert_eq!(events, [&json!({"i": 1}), &json!({"i": 2})]);
}

#[test]
fn subscribe_timeout_without_enough_events_is_an_error() {
    let server = Server::start(&[]);
    let sub = Subscriber::start(
        &server.http(),
        &["--count", "1", "--timeout-secs", "1", "/default/quiet"],
    );
    // Not waiting for "subscribed": on a loaded machine the deadline may pass before it.
    let (ok, lines, stderr) = sub.finish();
    assert!(!ok, "timed out before --count events");
    assert!(lines.is_empty());
    assert_eq!(
        stderr.last().map(String::as_str),
        Some("error: timed out after 1 s with 0 of 1 events"),
        "{stderr:?}"
    );
}

/// A Lambda-style authorizer webhook on loopback: allows exactly `Authorization: Bearer good`,
/// and records every request it was asked about.
fn authorizer() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end().to_ascii_lowercase();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(n) = line.strip_prefix("content-length:") {
                        length = n.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let request: Value = serde_json::from_slice(&body).unwrap();
                let allowed = request["authorizationToken"] == "Bearer good";
                log.lock().unwrap().push(request);
                let reply = json!({"isAuthorized": allowed}).to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            });
        }
    });
    (port, seen)
}

#[test]
fn token_mode_through_a_lambda_authorizer() {
    let (authorizer_port, seen) = authorizer();
    let modes = r#"["API_KEY", "AWS_LAMBDA"]"#;
    let server = Server::start_with_config(&format!(
        "[auth]\nconnection_auth_modes = {modes}\ndefault_publish_auth_modes = {modes}\n\
         default_subscribe_auth_modes = {modes}\n[[auth.api_keys]]\nkey = \"{KEY}\"\n\
         [[auth.providers]]\nauth_type = \"AWS_LAMBDA\"\n\
         authorizer_url = \"http://127.0.0.1:{authorizer_port}/authorize\"\n\
         [[namespaces]]\nname = \"default\"\n"
    ));
    let endpoint = server.http();

    // The token comes from HERALD_TOKEN here, from --token below.
    let sub = Subscriber::start_with(
        herald().arg("subscribe").env("HERALD_TOKEN", "Bearer good"),
        &endpoint,
        &["--count", "2", "--timeout-secs", "30", "/default/t"],
    );
    sub.wait_subscribed();
    publish_ok(&endpoint, &["--token", "Bearer good", "/default/t", "1"]);
    publish_ok(
        &endpoint,
        &["--ws", "--token", "Bearer good", "/default/t", "2"],
    );
    let (ok, lines, _) = sub.finish();
    assert!(ok);
    let events: Vec<&Value> = lines.iter().map(|l| &l["event"]).collect();
    assert_eq!(events, [&json!(1), &json!(2)]);

    for transport in [&[][..], &["--ws"][..]] {
        let mut args = vec!["--token", "Bearer bad", "/default/t", "1"];
        args.extend(transport);
        let out = publish(&endpoint, &args);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("UnauthorizedException"),
            "{}",
            stderr(&out)
        );
    }

    // Over the socket, the authorizer sees the auth object's `host`: the HTTP endpoint's host:port.
    let host = format!("127.0.0.1:{}", server.port);
    let seen = seen.lock().unwrap();
    let operations: Vec<&str> = seen
        .iter()
        .filter(|r| r["requestHeaders"]["host"] == host.as_str())
        .filter_map(|r| r["requestContext"]["operation"].as_str())
        .collect();
    for op in ["EVENT_CONNECT", "EVENT_SUBSCRIBE", "EVENT_PUBLISH"] {
        assert!(operations.contains(&op), "{op} with host {host}: {seen:?}");
    }
}

#[test]
fn iam_mode_with_credentials_from_the_environment() {
    let modes = r#"["API_KEY", "AWS_IAM"]"#;
    let server = Server::start_with_config(&format!(
        "[auth]\nconnection_auth_modes = {modes}\ndefault_publish_auth_modes = {modes}\n\
         default_subscribe_auth_modes = {modes}\n[[auth.api_keys]]\nkey = \"{KEY}\"\n\
         [[auth.providers]]\nauth_type = \"AWS_IAM\"\nregion = \"eu-north-1\"\n\
         [[auth.providers.keys]]\naccess_key_id = \"AKIACLITEST\"\nsecret_access_key = \"cli/secret\"\n\
         principal = \"cli\"\nactions = [\"EventConnect\", \"EventPublish\", \"EventSubscribe\"]\n\
         [[namespaces]]\nname = \"default\"\n"
    ));
    let endpoint = server.http();
    let iam = |cmd: &mut Command| {
        cmd.env("AWS_ACCESS_KEY_ID", "AKIACLITEST")
            .env("AWS_SECRET_ACCESS_KEY", "cli/secret")
            .env("AWS_REGION", "eu-north-1");
    };
    let mut sub_cmd = herald();
    sub_cmd.args(["subscribe", "--iam"]);
    iam(&mut sub_cmd);
    let sub = Subscriber::start_with(
        &mut sub_cmd,
        &endpoint,
        &["--count", "2", "--timeout-secs", "30", "/default/iam"],
    );
    sub.wait_subscribed();
    for transport in [&[][..], &["--ws"][..]] {
        let mut cmd = herald();
        cmd.args(["publish", "--endpoint", &endpoint, "--iam"])
            .args(transport)
            .args(["/default/iam", "1"]);
        iam(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{transport:?}: {}", stderr(&out));
    }
    let (ok, lines, _) = sub.finish();
    assert!(ok);
    assert_eq!(lines.len(), 2);

    // A wrong secret is refused by the server, not before.
    let out = herald()
        .args([
            "publish",
            "--endpoint",
            &endpoint,
            "--iam",
            "/default/iam",
            "1",
        ])
        .env("AWS_ACCESS_KEY_ID", "AKIACLITEST")
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .env("AWS_REGION", "eu-north-1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("UnauthorizedException"),
        "{}",
        stderr(&out)
    );

    // Without credentials: said before anything is sent.
    let out = publish(&endpoint, &["--iam", "/default/iam", "1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("AWS_ACCESS_KEY_ID"),
        "{}",
        stderr(&out)
    );
}

const ADMIN: (&str, &str) = ("AKIDCLIADMIN", "cli-admin-secret-0123456789");

/// `herald <args>` as the administrator against `port`; its JSON reply, or the failure's stderr.
fn manage(port: u16, args: &[&str]) -> Result<Value, String> {
    let out = herald()
        .args(args)
        .args(["--endpoint", &format!("http://127.0.0.1:{port}")])
        .env("AWS_ACCESS_KEY_ID", ADMIN.0)
        .env("AWS_SECRET_ACCESS_KEY", ADMIN.1)
        .output()
        .expect("herald runs");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(stderr(&out))
    }
}

#[test]
fn apis_namespaces_and_keys_are_managed_from_the_command_line() {
    let server = Server::start_with_config(&format!(
        "[[control_plane.access_keys]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\n[[auth.api_keys]]\nkey = \"{KEY}\"\n\n[[namespaces]]\nname = \"default\"\n",
        ADMIN.0, ADMIN.1
    ));
    let port = server.port;
    let api = manage(port, &["apis", "create", "from the cli"]).unwrap();
    let id = api["api"]["apiId"].as_str().unwrap().to_owned();
    let code = server.dir.path().join("upper.js");
    std::fs::write(
        &code,
        "export function onPublish(ctx) { return ctx.events.map(e => ({...e, payload: String(e.payload).toUpperCase()})); }",
    )
    .unwrap();
    let ns = manage(
        port,
        &[
            "namespaces",
            "create",
            &id,
            "shout",
            "--code-file",
            code.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert_eq!(ns["channelNamespace"]["name"], "shout");
    let key = manage(
        port,
        &[
            "keys",
            "create",
            &id,
            "--description",
            "cli",
            "--expires-in-days",
            "30",
        ],
    )
    .unwrap();
    let key = key["apiKey"]["id"].as_str().unwrap().to_owned();
    let listed = manage(port, &["apis", "list"]).unwrap();
    assert_eq!(listed["apis"].as_array().unwrap().len(), 2, "{listed}");

    // The new API at its own endpoint, with its own key and handler.
    let endpoint = format!("http://127.0.0.1:{port}/apis/{id}/event");
    let sub = Subscriber::start_with(
        herald().arg("subscribe"),
        &endpoint,
        &[
            "--api-key",
            &key,
            "--count",
            "1",
            "--timeout-secs",
            "30",
            "/shout/x",
        ],
    );
    assert_eq!(sub.wait_subscribed(), "subscribed to /shout/x");
    publish_ok(&endpoint, &["--api-key", &key, "/shout/x", "\"hey\""]);
    let (ok, lines, _) = sub.finish();
    assert!(ok);
    assert_eq!(lines[0]["event"], "HEY");
    assert!(
        !publish(&endpoint, &["--api-key", KEY, "/shout/x", "1"])
            .status
            .success()
    );

    assert!(manage(port, &["keys", "delete", &id, &key]).is_ok());
    assert!(manage(port, &["namespaces", "delete", &id, "shout"]).is_ok());
    assert!(manage(port, &["apis", "delete", &id]).is_ok());
    let gone = manage(port, &["apis", "get", &id]).unwrap_err();
    assert!(gone.contains("NotFoundException"), "{gone}");
    let refused = herald()
        .args([
            "apis",
            "list",
            "--endpoint",
            &format!("http://127.0.0.1:{port}"),
        ])
        .env("AWS_ACCESS_KEY_ID", ADMIN.0)
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .output()
        .unwrap();
    assert!(
        stderr(&refused).contains("UnauthorizedException"),
        "{}",
        stderr(&refused)
    );
}
