//! Every shell example in README.md and docs/*.md runs as written, with its output checked,
//! against the `herald` built for these tests; and the usage lines agree with `--help`.
//!
//! How a page's fenced `sh` blocks are read:
//! - A block runs in a new `bash`, in a temporary directory shared by the page's blocks. Its
//!   `export` lines carry over to the page's later blocks, as if typed in the same terminal.
//! - Comment lines right after a command (no blank line between) are its expected output, in
//!   order, other lines allowed between them: `# stderr: …` is a line of stderr, `# exit: N` the
//!   exit status (otherwise it must be 0), `# stdout: …` or any other comment a line of stdout.
//!   `…` matches any text. A comment after a blank line describes what follows.
//! - `<!-- doctest: server -->` before a block: it starts a server, which runs in the background
//!   until the next server block or the end of the page. The page goes on once the server prints
//!   its banner (and any expected stdout line). Its last command is `exec`'d, so that stopping
//!   it waits for the server itself and frees the port.
//! - `<!-- doctest: background -->`: the block runs in the background (a subscriber, in "another
//!   terminal"). The page goes on once every `stderr:` line it expects was printed; its stdout is
//!   awaited at the next server block or the end of the page, and then it is stopped.
//!
//! What the harness changes, and only this: `cargo run [-q] --release -p herald --` runs the
//! binary under test; port 8080 becomes a free port (`:8080` in the text, and `HERALD_LISTEN`,
//! `HERALD_ENDPOINT` in the environment, which otherwise holds no `HERALD_…` variable). The
//! client's default endpoint itself is checked by a unit test in `src/client.rs`.
//!
//! Blocks that cannot run here are listed in [`SKIPPED`] with the reason; each entry must still
//! match a block, so the list cannot go stale.

#[path = "support/http.rs"]
mod http;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http::free_port;

/// Pages with shell examples; `every_page_with_shell_examples_is_run` keeps this complete.
const PAGES: &[&str] = &[
    "README.md",
    "docs/cli.md",
    "docs/clients.md",
    "docs/console.md",
    "docs/control-plane.md",
    "docs/fuzzing.md",
];

/// (page, text in the block, why it is not run).
const SKIPPED: &[(&str, &str, &str)] = &[
    ("README.md", "scripts/test", "the test command itself"),
    (
        "README.md",
        "npm install aws-amplify ws",
        "tests/amplify installs these from its lockfile (npm ci) and readme.test.mjs uses them",
    ),
    (
        "README.md",
        "node quickstart.mjs",
        "run with the README's quickstart.mjs by tests/amplify/test/readme.test.mjs",
    ),
    (
        "docs/cli.md",
        "cargo install",
        "installs a second build; these tests run the binary built for them",
    ),
    (
        "docs/cli.md",
        "amazonaws.com",
        "needs an AWS AppSync Events API and its key",
    ),
    (
        "docs/console.md",
        "cd tests/console",
        "the console's own suite, which scripts/test runs",
    ),
    (
        "docs/control-plane.md",
        "aws appsync",
        "needs the AWS CLI (PyPI awscli): clients/python/tests/test_control_plane.py runs these commands against a Herald",
    ),
    (
        "docs/control-plane.md",
        "cdk synth",
        "needs a CDK app: tests/amplify/test/cdk.test.mjs synthesizes one and runs herald apply on it",
    ),
    (
        "docs/control-plane.md",
        "herald apis list",
        "APIID stands for an id the server made: crates/herald/tests/cli.rs runs these commands",
    ),
    (
        "docs/fuzzing.md",
        "cargo ",
        "cargo-fuzz runs take minutes to hours; the corpus replays are `cargo test`s of scripts/test",
    ),
];

/// Bounds for a wedged example; none is a wait that passes in the normal case.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read_page(page: &str) -> String {
    std::fs::read_to_string(root().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Foreground,
    Server,
    Background,
}

struct Block {
    /// 1-based line of the opening fence, for messages.
    line: usize,
    kind: Kind,
    text: String,
}

/// The fenced blocks of `lang` (`sh` also takes `bash` and `shell`), with the doctest marker on
/// the nearest non-blank line above each.
fn blocks(doc: &str, lang: &str) -> Vec<Block> {
    let langs: &[&str] = if lang == "sh" {
        &["sh", "bash", "shell"]
    } else {
        &[lang]
    };
    let mut found = Vec::new();
    let mut last_text = "";
    let mut lines = doc.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim();
        let Some(info) = trimmed.strip_prefix("```") else {
            if !trimmed.is_empty() {
                last_text = trimmed;
            }
            continue;
        };
        let mut text = String::new();
        for (_, body) in lines.by_ref() {
            if body.trim() == "```" {
                break;
            }
            text.push_str(body);
            text.push('\n');
        }
        if langs.contains(&info.trim()) {
            let kind = match last_text {
                "<!-- doctest: server -->" => Kind::Server,
                "<!-- doctest: background -->" => Kind::Background,
                _ => Kind::Foreground,
            };
            found.push(Block {
                line: i + 1,
                kind,
                text,
            });
        }
        last_text = "";
    }
    found
}

/// One command of a block, with what it is expected to print.
#[derive(Debug, Default)]
struct Cmd {
    text: String,
    stdout: Vec<String>,
    stderr: Vec<String>,
    exit: i32,
}

fn commands(block: &str) -> Vec<Cmd> {
    let mut cmds: Vec<Cmd> = Vec::new();
    let mut continued = false;
    let mut expecting = false;
    for line in block.lines() {
        let trimmed = line.trim();
        if continued {
            let cmd = cmds.last_mut().expect("a continued command");
            cmd.text.push('\n');
            cmd.text.push_str(line);
            continued = trimmed.ends_with('\\');
        } else if trimmed.is_empty() {
            expecting = false;
        } else if let Some(comment) = trimmed.strip_prefix('#') {
            let Some(cmd) = cmds.last_mut().filter(|_| expecting) else {
                continue;
            };
            let comment = comment.trim();
            if let Some(err) = comment.strip_prefix("stderr:") {
                cmd.stderr.push(err.trim().to_owned());
            } else if let Some(code) = comment.strip_prefix("exit:") {
                cmd.exit = code.trim().parse().expect("# exit: N");
            } else {
                let out = comment.strip_prefix("stdout:").unwrap_or(comment);
                cmd.stdout.push(out.trim().to_owned());
            }
        } else {
            cmds.push(Cmd {
                text: line.to_owned(),
                ..Cmd::default()
            });
            continued = trimmed.ends_with('\\');
            expecting = true;
        }
    }
    cmds
}

/// Whether `line` matches `pattern`, in which `…` stands for any text.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    let line = line.trim();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return line == first;
    }
    if !line.starts_with(first) || line.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &line[first.len()..];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Whether `expected` appear in `lines` in order (other lines may come between).
fn contains_in_order(lines: &[String], expected: &[String]) -> bool {
    let mut lines = lines.iter();
    expected
        .iter()
        .all(|pattern| lines.any(|line| matches(pattern, line)))
}

/// A process group running one block in the background, its output read line by line.
struct Running {
    child: Child,
    line: usize,
    lines: mpsc::Receiver<(bool, String)>,
    stdout: Vec<String>,
    stderr: Vec<String>,
    expect_stdout: Vec<String>,
    expect_stderr: Vec<String>,
}

impl Running {
    fn spawn(mut cmd: Command, block: &Block, cmds: &[Cmd]) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("bash starts");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let pipes: [(bool, Box<dyn Read + Send>); 2] =
            [(false, Box::new(out)), (true, Box::new(err))];
        for (is_err, pipe) in pipes {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send((is_err, line)).is_err() {
                        break;
                    }
                }
            });
        }
        Running {
            child,
            line: block.line,
            lines: rx,
            stdout: Vec::new(),
            stderr: Vec::new(),
            expect_stdout: cmds.iter().flat_map(|c| c.stdout.clone()).collect(),
            expect_stderr: cmds.iter().flat_map(|c| c.stderr.clone()).collect(),
        }
    }

    /// Reads output until `done` holds; panics with everything read after `WAIT_TIMEOUT` or when
    /// the block's output ends first.
    fn wait_for(&mut self, page: &str, what: &str, done: impl Fn(&Running) -> bool) {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((false, line)) => self.stdout.push(line),
                Ok((true, line)) => self.stderr.push(line),
                Err(e) => panic!(
                    "{page}:{}: {what}: {e}\nstdout:\n{}\nstderr:\n{}",
                    self.line,
                    self.stdout.join("\n"),
                    self.stderr.join("\n")
                ),
            }
        }
    }

    /// SIGTERM to the whole group (bash and what it started), then reaped.
    fn stop(mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.wait();
    }
}

/// One page's examples, in order.
struct Page {
    name: &'static str,
    dir: tempfile::TempDir,
    bin: tempfile::TempDir,
    port: u16,
    /// `export` lines of blocks run so far.
    exports: Vec<String>,
    server: Option<Running>,
    background: Vec<Running>,
}

impl Page {
    fn new(name: &'static str) -> Page {
        let bin = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_herald"), bin.path().join("herald"))
            .unwrap();
        Page {
            name,
            dir: tempfile::tempdir().unwrap(),
            bin,
            port: free_port(),
            exports: Vec::new(),
            server: None,
            background: Vec::new(),
        }
    }

    /// The block as the harness runs it (see the module comment).
    fn adapt(&self, text: &str) -> String {
        text.replace("cargo run -q --release -p herald --", "herald")
            .replace("cargo run --release -p herald --", "herald")
            .replace(":8080", &format!(":{}", self.port))
    }

    fn bash(&self, script: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(script).current_dir(self.dir.path());
        for (name, _) in std::env::vars() {
            if name.starts_with("HERALD_") || name == "RUST_LOG" {
                cmd.env_remove(name);
            }
        }
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", self.bin.path().display()))
            .env("HERALD_LISTEN", format!("127.0.0.1:{}", self.port))
            .env(
                "HERALD_ENDPOINT",
                format!("http://127.0.0.1:{}/event", self.port),
            );
        cmd
    }

    fn prelude(&self) -> String {
        self.exports.join("\n") + "\n"
    }

    fn remember_exports(&mut self, cmds: &[Cmd]) {
        let exports: Vec<String> = cmds
            .iter()
            .filter(|c| c.text.trim_start().starts_with("export "))
            .map(|c| self.adapt(&c.text))
            .collect();
        self.exports.extend(exports);
    }

    /// Awaits what the background blocks still expect on stdout, then stops them.
    fn finish_background(&mut self) {
        for mut bg in std::mem::take(&mut self.background) {
            let expected = bg.expect_stdout.clone();
            bg.wait_for(self.name, "expected stdout", |r| {
                contains_in_order(&r.stdout, &expected)
            });
            bg.stop();
        }
    }

    fn stop_server(&mut self) {
        self.finish_background();
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }

    fn run(&mut self, block: &Block) {
        let cmds = commands(&block.text);
        match block.kind {
            Kind::Server => {
                self.stop_server();
                // The server replaces bash (`exec`), so stopping it is waiting for it: the port
                // is free for the next server block.
                let (last, before) = cmds.split_last().expect("a server command");
                let mut script = self.prelude();
                for cmd in before {
                    script.push_str(&self.adapt(&cmd.text));
                    script.push('\n');
                }
                script.push_str("exec ");
                script.push_str(&self.adapt(&last.text));
                let mut server = Running::spawn(self.bash(&script), block, &cmds);
                let mut expected = server.expect_stdout.clone();
                expected.push("Herald is listening on …".into());
                let expected: Vec<String> = expected.iter().map(|e| self.adapt(e)).collect();
                server.wait_for(self.name, "server banner", |r| {
                    expected
                        .iter()
                        .all(|e| r.stdout.iter().any(|line| matches(e, line)))
                });
                self.server = Some(server);
            }
            Kind::Background => {
                let script = self.prelude() + &self.adapt(&block.text);
                let mut bg = Running::spawn(self.bash(&script), block, &cmds);
                let expected = bg.expect_stderr.clone();
                bg.wait_for(self.name, "expected stderr", |r| {
                    contains_in_order(&r.stderr, &expected)
                });
                self.background.push(bg);
            }
            Kind::Foreground => self.run_foreground(block, &cmds),
        }
        self.remember_exports(&cmds);
    }

    /// Each command's output goes to its own files, so each is checked against its comments.
    fn run_foreground(&mut self, block: &Block, cmds: &[Cmd]) {
        let out = tempfile::tempdir().unwrap();
        let mut script = self.prelude();
        for (i, cmd) in cmds.iter().enumerate() {
            let o = out.path().join(i.to_string());
            script.push_str(&format!(
                "{{ {}\n}} >'{o}.out' 2>'{o}.err'; echo $? >'{o}.rc'\n",
                self.adapt(&cmd.text),
                o = o.display()
            ));
        }
        let mut child = self
            .bash(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("bash starts");
        let pgid = child.id();
        let (done, finished) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let _ = done.send(());
            status
        });
        if finished.recv_timeout(BLOCK_TIMEOUT).is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
        }
        let _ = waiter.join();
        for (i, cmd) in cmds.iter().enumerate() {
            let o = out.path().join(i.to_string());
            let read = |ext: &str| {
                std::fs::read_to_string(format!("{}.{ext}", o.display())).unwrap_or_default()
            };
            let (stdout, stderr, rc) = (read("out"), read("err"), read("rc"));
            let lines = |s: &str| s.lines().map(str::to_owned).collect::<Vec<_>>();
            let place = format!("{}:{}: `{}`", self.name, block.line, cmd.text.trim());
            let rc: i32 = rc
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{place}: did not finish within {BLOCK_TIMEOUT:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"));
            let adapt = |v: &[String]| v.iter().map(|e| self.adapt(e)).collect::<Vec<_>>();
            assert_eq!(
                rc, cmd.exit,
                "{place}: exit status\nstdout:\n{stdout}\nstderr:\n{stderr}"
            );
            assert!(
                contains_in_order(&lines(&stdout), &adapt(&cmd.stdout)),
                "{place}: stdout should contain, in order:\n{}\nbut was:\n{stdout}\nstderr:\n{stderr}",
                cmd.stdout.join("\n")
            );
            assert!(
                contains_in_order(&lines(&stderr), &adapt(&cmd.stderr)),
                "{place}: stderr should contain, in order:\n{}\nbut was:\n{stderr}",
                cmd.stderr.join("\n")
            );
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        for bg in std::mem::take(&mut self.background) {
            bg.stop();
        }
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

fn skip_reason(page: &str, block: &Block) -> Option<&'static str> {
    SKIPPED
        .iter()
        .find(|(p, needle, _)| *p == page && block.text.contains(needle))
        .map(|(_, _, why)| *why)
}

fn run_page(name: &'static str) {
    let doc = read_page(name);
    let all = blocks(&doc, "sh");
    assert!(!all.is_empty(), "{name} has no shell examples");
    for (page, needle, _) in SKIPPED.iter().filter(|(p, _, _)| *p == name) {
        assert!(
            all.iter().any(|b| b.text.contains(needle)),
            "{page}: no block contains {needle:?}; update SKIPPED"
        );
    }
    let mut page = Page::new(name);
    for block in &all {
        if let Some(why) = skip_reason(name, block) {
            eprintln!("{name}:{}: skipped: {why}", block.line);
            continue;
        }
        page.run(block);
    }
    page.stop_server();
}

#[test]
fn readme() {
    run_page("README.md");
}

#[test]
fn cli() {
    run_page("docs/cli.md");
}

#[test]
fn clients() {
    run_page("docs/clients.md");
}

#[test]
fn console() {
    run_page("docs/console.md");
}

#[test]
fn control_plane() {
    run_page("docs/control-plane.md");
}

#[test]
fn fuzzing() {
    run_page("docs/fuzzing.md");
}

#[test]
fn every_page_with_shell_examples_is_run() {
    let mut pages = vec!["README.md".to_owned()];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            pages.push(format!("docs/{name}"));
        }
    }
    let with_examples: BTreeSet<String> = pages
        .into_iter()
        .filter(|p| !blocks(&read_page(p), "sh").is_empty())
        .collect();
    let run: BTreeSet<String> = PAGES.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        with_examples, run,
        "add a test for each page with shell examples"
    );
}

/// The long options of `herald <sub> --help`.
fn help_options(sub: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([sub, "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    help.lines()
        .filter_map(|l| {
            // `      --name <VALUE>  …` or `  -n, --name  …`
            let l = l.trim_start();
            let option = if l.starts_with("--") {
                l
            } else if l.starts_with('-') && l.get(2..).is_some_and(|r| r.starts_with(", --")) {
                l.get(4..)?
            } else {
                return None;
            };
            option.split([' ', '=', '[', '<']).next().map(str::to_owned)
        })
        .collect()
}

/// The usage lines of README.md's "Command line" block and docs/cli.md's first block list every
/// option `--help` lists, and no other.
#[test]
fn usage_lines_match_the_help() {
    let readme = read_page("README.md");
    let cli = read_page("docs/cli.md");
    let mut checked = 0;
    for (page, doc) in [("README.md", &readme), ("docs/cli.md", &cli)] {
        let usage = blocks(doc, "").into_iter().next().expect("a usage block");
        // Continuation lines (indented) belong to the line above.
        let mut lines: Vec<String> = Vec::new();
        for line in usage.text.lines() {
            match lines.last_mut() {
                Some(last) if line.starts_with(' ') => last.push_str(line),
                _ => lines.push(line.to_owned()),
            }
        }
        for line in lines {
            let mut words = line.split_whitespace();
            assert_eq!(words.next(), Some("herald"), "{page}: {line}");
            let sub = words.next().expect("a subcommand");
            let documented: BTreeSet<String> = line
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .filter(|w| w.starts_with("--"))
                .map(str::to_owned)
                .collect();
            let mut help = help_options(sub);
            for global in ["--help", "--version"] {
                help.remove(global);
            }
            // A global option: shown where it matters (serve), allowed anywhere.
            if !documented.contains("--log-format") {
                help.remove("--log-format");
            }
            assert_eq!(
                documented, help,
                "{page}: `{line}` against `herald {sub} --help`"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "README: 4 usage lines, docs/cli.md: 2");
}

#[test]
fn wildcard_matching() {
    assert!(matches("a…c", "abc"));
    assert!(matches("{\"id\":\"…\",\"n\":…}", "{\"id\":\"x\",\"n\":3}"));
    assert!(!matches("a…c", "abd"));
    assert!(!matches("ab…ba", "aba"));
    assert!(matches("exact", "  exact "));
}
