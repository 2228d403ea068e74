//! What a newcomer sees from the real binary: the start-up banner (endpoints, console, metrics,
//! namespaces, history, cluster, an absolute CA path, a generated key only where one can be
//! used, warnings), the log formats, `check-config`'s messages, and errors that say each cause
//! once with the path really looked for.

#[path = "support/http.rs"]
mod http;
#[path = "../../history/tests/support/nats.rs"]
mod nats;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use http::free_port;

const KEY: &str = "da2-firsthourfirsthour00";

/// `herald` with none of the developer's settings.
fn herald(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("HERALD_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// A `herald serve` whose stdout is read up to its "serving" log line (the banner comes first).
struct Served {
    child: Child,
    port: u16,
    /// Stdout up to and including the "serving" line.
    lines: Vec<String>,
    /// Stdout after it.
    rest: mpsc::Receiver<String>,
}

impl Served {
    fn start(dir: &Path, args: &[&str]) -> Served {
        Served::start_with(herald(dir), args)
    }

    fn start_with(mut cmd: Command, args: &[&str]) -> Served {
        let port = free_port();
        let mut child = cmd
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("herald serve starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    let done = line.contains("serving");
                    lines.push(line);
                    if done {
                        break;
                    }
                }
                Err(e) => panic!("no 'serving' line ({e}); stdout:\n{}", lines.join("\n")),
            }
        }
        Served {
            child,
            port,
            lines,
            rest: rx,
        }
    }

    /// The next stdout line containing `text`.
    fn wait_for(&self, text: &str) -> String {
        loop {
            match self.rest.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line with {text:?}: {e}"),
            }
        }
    }

    fn text(&self) -> String {
        self.lines.join("\n")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("herald runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn banner_shows_endpoints_console_metrics_namespaces_history_and_cluster() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "herald.toml",
        "[[namespaces]]\nname = \"default\"\n\n[[namespaces]]\nname = \"chat\"\nhistory = {}\n",
    );
    let s = Served::start(
        dir.path(),
        &["--config", "herald.toml", "--data-dir", "data"],
    );
    let text = s.text();
    let p = s.port;
    for line in [
        format!("Herald is listening on 127.0.0.1:{p}"),
        format!("  HTTP publish:  http://127.0.0.1:{p}/event"),
        format!("  WebSocket:     ws://127.0.0.1:{p}/event/realtime"),
        format!("  Console:       http://127.0.0.1:{p}/console"),
        format!("  Metrics:       http://127.0.0.1:{p}/metrics"),
        "  Namespaces:    default, chat (history)".to_owned(),
        format!(
            "  History:       on disk under {}",
            std::fs::canonicalize(dir.path())
                .unwrap()
                .join("data/history")
                .display()
        ),
        "  Cluster:       no (a single node)".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing from:\n{text}"
        );
    }
    // The configuration accepts API keys and has none: one is generated, and it works.
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("  API key (generated): "))
        .unwrap_or_else(|| panic!("no generated key in:\n{text}"));
    let body = r#"{"channel":"/default/a","events":["1"]}"#;
    let (status, _) = http::request(p, key, "POST /event", body).unwrap();
    assert_eq!(status, 200);
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes into a pipe:\n{text}"
    );
    assert!(!text.contains("Control plane"), "off without keys:\n{text}");
}

#[test]
fn banner_shows_the_control_plane_when_on() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "herald.toml",
        "[control_plane]\napi_id = \"local\"\n\n[[control_plane.access_keys]]\naccess_key_id = \"AKIDADMIN\"\nsecret_access_key = \"admin-secret\"\n\n[[namespaces]]\nname = \"default\"\n",
    );
    let s = Served::start(dir.path(), &["--config", "herald.toml", "--api-key", KEY]);
    let text = s.text();
    let line = format!(
        "  Control plane: http://127.0.0.1:{} (AppSync API \"local\"; aws appsync --endpoint-url)",
        s.port
    );
    assert!(
        text.lines().any(|l| l == line),
        "{line:?} missing from:\n{text}"
    );
}

#[test]
fn dev_tls_ca_path_is_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &["--dev-tls", "--api-key", KEY]);
    let text = s.text();
    let ca = text
        .lines()
        .find_map(|l| l.split_once("NODE_EXTRA_CA_CERTS=").map(|(_, p)| p))
        .unwrap_or_else(|| panic!("no CA path in:\n{text}"));
    assert!(Path::new(ca).is_absolute(), "{ca}");
    assert!(Path::new(ca).exists(), "{ca}");
    assert!(ca.ends_with("herald-data/dev-tls/ca.pem"), "{ca}");
    assert!(
        !text.contains("API key (generated)"),
        "--api-key given: nothing generated:\n{text}"
    );
}

/// Only IAM accepted anywhere: a generated API key would be refused by every request.
#[test]
fn no_key_is_generated_when_no_mode_accepts_one() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "herald.toml",
        r#"
[auth]
connection_auth_modes = ["AWS_IAM"]
default_publish_auth_modes = ["AWS_IAM"]
default_subscribe_auth_modes = ["AWS_IAM"]

[[auth.providers]]
auth_type = "AWS_IAM"

[[auth.providers.keys]]
access_key_id = "AKIAFIRSTHOUR"
secret_access_key = "first-hour-secret"
principal = "someone"
actions = ["EventConnect", "EventPublish", "EventSubscribe"]

[[namespaces]]
name = "default"
"#,
    );
    let s = Served::start(dir.path(), &["--config", "herald.toml"]);
    assert!(!s.text().contains("API key"), "{}", s.text());
}

#[test]
fn json_log_format_makes_the_banner_a_json_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "herald.toml",
        &format!(
            "[[auth.api_keys]]\nkey = \"{KEY}\"\nname = \"old\"\nexpires = \"2020-01-01T00:00:00Z\"\n\n[[namespaces]]\nname = \"default\"\n"
        ),
    );
    let s = Served::start(
        dir.path(),
        &["--config", "herald.toml", "--log-format", "json"],
    );
    let lines: Vec<serde_json::Value> = s
        .lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let warning = &lines[0];
    assert_eq!(warning["level"], "WARN", "{warning}");
    let message = warning["fields"]["message"].as_str().unwrap();
    assert!(message.contains("auth.api_keys[0].expires"), "{message}");
    let serving = lines.last().unwrap();
    let fields = &serving["fields"];
    assert_eq!(fields["message"], "serving");
    let p = s.port;
    assert_eq!(fields["http"], format!("http://127.0.0.1:{p}/event"));
    assert_eq!(fields["console"], format!("http://127.0.0.1:{p}/console"));
    assert_eq!(fields["metrics"], format!("http://127.0.0.1:{p}/metrics"));
    assert_eq!(fields["namespaces"], "default");
}

#[test]
fn expired_key_is_a_warning_of_check_config_and_of_the_banner() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "herald.toml",
        &format!(
            "[[auth.api_keys]]\nkey = \"{KEY}\"\nname = \"web\"\nexpires = \"2020-01-01T00:00:00Z\"\n\n[[namespaces]]\nname = \"default\"\n"
        ),
    );
    let (out, stdout, stderr) = run(herald(dir.path()).args(["check-config", "herald.toml"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "herald.toml: ok, with 1 warning(s)");
    assert_eq!(
        stderr.trim(),
        "warning: auth.api_keys[0].expires: the key (web) expired at 2020-01-01T00:00:00Z; every request with it is refused"
    );
    let s = Served::start(dir.path(), &["--config", "herald.toml"]);
    assert!(
        s.text()
            .contains("  Warning: auth.api_keys[0].expires: the key (web) expired"),
        "{}",
        s.text()
    );
}

#[test]
fn check_config_names_keys_without_a_profile_prefix_or_backticks() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[limits]\nmax_connections = \"many\"\n",
            "limits.max_connections: expected a whole number (0 or more), found the string \"many\"",
        ),
        (
            "[limits]\nmax_conections = 5\n",
            "limits.max_conections: unknown key; the keys here are: max_connections,",
        ),
        (
            "[[namespaces]]\nnam = \"x\"\n",
            "namespaces[0].nam: unknown key; the keys here are: name,",
        ),
        (
            "[history]\nbackend = \"disk\"\n",
            "history.backend: unknown value \"disk\"; expected one of: fjall, memory",
        ),
        ("listen = ", "herald.toml: TOML parse error at line 1"),
    ];
    for (toml, expected) in cases {
        write(dir.path(), "herald.toml", toml);
        let (out, _, stderr) = run(herald(dir.path()).args(["check-config", "herald.toml"]));
        assert!(!out.status.success(), "{toml}");
        assert!(
            stderr.contains(expected),
            "{toml}: {expected:?} missing from:\n{stderr}"
        );
        assert!(stderr.contains("herald.toml"), "names the file: {stderr}");
        assert!(!stderr.contains("default."), "{stderr}");
        // TOML's own syntax messages quote with backticks, once; figment's nested ones are gone.
        assert!(!stderr.contains("``"), "{stderr}");
        assert!(
            toml.starts_with("listen") || !stderr.contains('`'),
            "{stderr}"
        );
    }
    // From the environment: the variable's name.
    write(
        dir.path(),
        "herald.toml",
        "[[namespaces]]\nname = \"default\"\n",
    );
    let (out, _, stderr) = run(herald(dir.path())
        .args(["check-config", "herald.toml"])
        .env("HERALD_LIMITS__MAX_CONNECTIONS", "lots"));
    assert!(!out.status.success());
    assert!(
        stderr.contains("HERALD_LIMITS__MAX_CONNECTIONS: expected a whole number (0 or more), found the string \"lots\" (from the environment)"),
        "{stderr}"
    );
    // Validation problems all come at once.
    write(
        dir.path(),
        "herald.toml",
        "[limits]\nmax_connections = 0\n\n[[namespaces]]\nname = \"a b\"\n",
    );
    let (_, _, stderr) = run(herald(dir.path()).args(["check-config", "herald.toml"]));
    assert!(stderr.contains("limits.max_connections"), "{stderr}");
    assert!(stderr.contains("namespaces[0].name"), "{stderr}");
}

#[test]
fn a_missing_handler_file_is_named_by_its_resolved_path_and_its_cause_said_once() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "conf/herald.toml",
        "[[namespaces]]\nname = \"chat\"\n[namespaces.handlers]\ncode_file = \"handlers/chat.js\"\n",
    );
    let resolved = std::fs::canonicalize(dir.path())
        .unwrap()
        .join("conf/handlers/chat.js");
    for args in [
        vec!["check-config", "conf/herald.toml"],
        vec![
            "serve",
            "--config",
            "conf/herald.toml",
            "--listen",
            "127.0.0.1:0",
        ],
    ] {
        let (out, _, stderr) = run(herald(dir.path()).args(&args));
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains(&format!(
                "namespace chat: cannot read handler code file {}: No such file or directory",
                resolved.display()
            )),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            stderr.matches("No such file").count(),
            1,
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_port_in_use_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (out, _, stderr) =
        run(herald(dir.path()).args(["serve", "--api-key", KEY, "--listen", &addr]));
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert_eq!(stderr.matches("in use").count(), 1, "{stderr}");
}

/// `--api-key` keys are named `command-line`, and rules on the key's name see that.
#[test]
fn command_line_keys_are_named_for_access_rules() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "herald.toml",
        "[[namespaces]]\nname = \"default\"\n[namespaces.rules]\npublish = [\"/default/{key.name}/*\"]\n",
    );
    let s = Served::start(dir.path(), &["--config", "herald.toml", "--api-key", KEY]);
    let publish = |channel: &str| {
        let body = format!(r#"{{"channel":"{channel}","events":["1"]}}"#);
        http::request(s.port, KEY, "POST /event", &body).unwrap().0
    };
    assert_eq!(publish("/default/command-line/x"), 200);
    assert_eq!(publish("/default/someone-else/x"), 401);
}

/// docs/authorization.md and operations.md: `RUST_LOG=debug` logs why a request was refused.
#[test]
fn debug_logs_say_why_a_request_was_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = herald(dir.path());
    cmd.env("RUST_LOG", "debug");
    let s = Served::start_with(cmd, &["--api-key", KEY]);
    let body = r#"{"channel":"/default/a","events":["1"]}"#;
    let (status, _) = http::request(s.port, "da2-notthekey00000000", "POST /event", body).unwrap();
    assert_eq!(status, 401);
    let line = s.wait_for("authorization refused");
    assert!(line.contains("DEBUG"), "{line}");
    assert!(line.contains("unknown API key"), "{line}");
    assert!(!line.contains("da2-notthekey"), "no key in the log: {line}");
}

#[test]
fn banner_in_cluster_mode_says_so_and_where_history_is() {
    let server = nats::Nats::start(nats::free_port());
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "herald.toml",
        &format!(
            "[cluster]\nnats_url = \"{}\"\n\n[[namespaces]]\nname = \"chat\"\nhistory = {{}}\n",
            server.url()
        ),
    );
    let s = Served::start(dir.path(), &["--config", "herald.toml", "--api-key", KEY]);
    let text = s.text();
    for line in [
        "  Namespaces:    chat (history)".to_owned(),
        "  History:       in NATS JetStream".to_owned(),
        format!("  Cluster:       over NATS at {}", server.url()),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing from:\n{text}"
        );
    }
}
