//! The hostile clients: what each attack does, over and over from each of its workers until the
//! attack's end or its budget of attempts, and the tally of what it achieved.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::socket::{self, until};
use super::{AttackPlan, Kind};
use crate::http::HttpConn;
use crate::target::Endpoint;
use crate::track::{Latency, new_histogram};
use crate::ws::{OP_CLOSE, OP_PING, OP_TEXT, WsReader, WsWriter, find};

/// slow-body: the body size a request declares (under the 1.2 MB request limit) …
const SLOW_DECLARED: usize = 1_200_000;
/// … and how much of it is sent before stalling.
const SLOW_SENT: usize = 64 * 1024;
/// socket-flood: what each socket sends, half a request line.
const HALF_LINE: &[u8] = b"GET /event/realt";
/// half-message: the message size a frame header announces, and how much of it follows.
const HALF_DECLARED: usize = 1_000_000;
const HALF_SENT: usize = 16 * 1024;
/// Largest HTTP body the prefill sends (events are batched up to five per publish under it).
const FILL_BODY: usize = 1_000_000;
/// Distinct outcome names kept; the rest are counted under "other".
const MAX_OUTCOMES: usize = 24;

/// What the attack did, as it goes; read by the progress line and summed up at the end.
#[derive(Default)]
pub struct Tally {
    attempts: AtomicU64,
    opened: AtomicU64,
    refused: AtomicU64,
    completed: AtomicU64,
    closed: AtomicU64,
    held: AtomicU64,
    held_max: AtomicU64,
    units: AtomicU64,
    /// Lifetimes (µs) of held sockets the server closed.
    lifetimes: Mutex<Option<Histogram<u64>>>,
    outcomes: Mutex<BTreeMap<String, u64>>,
}

/// Counts a socket as held while it lives.
pub struct Held<'a>(&'a Tally);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Tally {
    /// Takes one attempt from the budget; false once it is spent.
    fn begin(&self, max: u64) -> bool {
        if self.attempts.fetch_add(1, Ordering::Relaxed) < max {
            return true;
        }
        self.attempts.fetch_sub(1, Ordering::Relaxed);
        false
    }

    fn hold(&self) -> Held<'_> {
        self.opened.fetch_add(1, Ordering::Relaxed);
        let now = self.held.fetch_add(1, Ordering::Relaxed) + 1;
        self.held_max.fetch_max(now, Ordering::Relaxed);
        Held(self)
    }

    fn note(&self, what: &str) {
        let mut o = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        let key = if o.len() < MAX_OUTCOMES || o.contains_key(what) {
            what
        } else {
            "other"
        };
        *o.entry(key.to_owned()).or_default() += 1;
    }

    /// The server ended a held socket after `lived`.
    fn closed(&self, how: &str, lived: Duration) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        self.note(how);
        let mut h = self.lifetimes.lock().unwrap_or_else(|p| p.into_inner());
        h.get_or_insert_with(new_histogram)
            .saturating_record(lived.as_micros().max(1) as u64);
    }

    /// An attempt failed before the attack was in place (connect, upgrade, subscribe).
    fn refused(&self, e: &anyhow::Error) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut why = format!("refused: {e:#}");
        if let Some((i, _)) = why.char_indices().nth(70) {
            why.truncate(i);
        }
        self.note(&why);
    }

    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// One line for the progress display.
    pub fn progress(&self) -> String {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "attempts {} held {} closed by server {} refused {} done {}",
            l(&self.attempts),
            l(&self.held),
            l(&self.closed),
            l(&self.refused),
            l(&self.completed)
        )
    }

    pub fn outcome(&self, plan: &AttackPlan, held_at_end: u64) -> AttackOutcome {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let lifetimes = self.lifetimes.lock().unwrap_or_else(|p| p.into_inner());
        AttackOutcome {
            kind: plan.kind,
            workers: plan.workers,
            attempts: l(&self.attempts),
            opened: l(&self.opened),
            refused: l(&self.refused),
            completed: l(&self.completed),
            closed_by_server: l(&self.closed),
            held_max: l(&self.held_max),
            held_at_end,
            server_closed_after: lifetimes
                .as_ref()
                .map(Latency::from_hist)
                .unwrap_or_default(),
            units: l(&self.units),
            units_are: plan.kind.units(),
            outcomes: self
                .outcomes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            prefilled: 0,
            server_fds_max: None,
            server_rss_kib_max: None,
        }
    }
}

/// What the attack achieved.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AttackOutcome {
    pub kind: Kind,
    pub workers: usize,
    /// Connections or requests begun.
    pub attempts: u64,
    /// Attempts that got as far as the attack needs (socket open and the stall in place,
    /// subscription made, upgrade done).
    pub opened: u64,
    /// Attempts the server refused or failed before the attack was in place.
    pub refused: u64,
    /// Whole cycles of cycling attacks (connect-flood: upgrades; resume-storm: resumes).
    pub completed: u64,
    /// Held sockets the server closed before the attack ended.
    pub closed_by_server: u64,
    /// Most hostile sockets held at once, and how many were still held when the attack ended.
    pub held_max: u64,
    pub held_at_end: u64,
    /// How long the server let a held socket live before closing it (µs).
    pub server_closed_after: Latency,
    /// A kind-specific amount, named by `units_are`.
    pub units: u64,
    pub units_are: &'static str,
    /// How attempts ended: the server's answer (`http 408`, `close 1008`), `eof`, `reset`, or
    /// why they were refused.
    pub outcomes: BTreeMap<String, u64>,
    /// Events stored on the attacked history channel before the run.
    pub prefilled: u64,
    /// Server's open file descriptors and resident memory at their highest (with --server-pid).
    pub server_fds_max: Option<u64>,
    pub server_rss_kib_max: Option<u64>,
}

/// One attack in progress.
struct Attack {
    ep: Endpoint,
    plan: AttackPlan,
    end: Instant,
    tally: Arc<Tally>,
}

/// Worker threads of the attack's own runtime.
const ATTACK_THREADS: usize = 2;

/// Starts the attack on its own runtime and threads, so that thousands of hostile tasks do not
/// queue ahead of the well-behaved clients' tasks in the bench: both sides then share the cores
/// only through the kernel's scheduler, as separate clients would. The thread ends by `end`.
pub fn spawn(
    ep: Endpoint,
    plan: AttackPlan,
    end: Instant,
    tally: Arc<Tally>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let (cpus, nice) = (plan.attacker_cpus.clone(), plan.attacker_nice);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(ATTACK_THREADS)
        .thread_name("attack")
        .on_thread_start(move || {
            // Checked on the first attack thread below; a failure here would be the same one.
            let _ = confine(&cpus, nice);
        })
        .enable_all()
        .build()?;
    let (placed, checked) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("attack".into())
        .spawn(move || {
            let confined = confine(&plan.attacker_cpus, plan.attacker_nice);
            let ok = confined.is_ok();
            let _ = placed.send(confined);
            if ok {
                rt.block_on(run(ep, plan, end, tally))
            }
        })?;
    checked.recv()??;
    Ok(thread)
}

/// Puts the calling thread on `cpus` (unless empty) at `nice`. Linux applies both per thread,
/// so the well-behaved clients' threads keep their own placement and priority.
fn confine(cpus: &[usize], nice: i32) -> anyhow::Result<()> {
    if !cpus.is_empty() {
        // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes within it for indexes
        // below CPU_SETSIZE, checked first.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &c in cpus {
                anyhow::ensure!(c < libc::CPU_SETSIZE as usize, "no CPU {c}");
                libc::CPU_SET(c, &mut set);
            }
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                anyhow::bail!(
                    "cannot put the attacker on CPUs {cpus:?}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    if nice != 0 {
        // SAFETY: plain syscall on this thread's id.
        let tid = unsafe { libc::gettid() };
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } != 0 {
            anyhow::bail!(
                "cannot set the attacker's nice to {nice}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// Runs the attack until `end` (every wait is bounded by it) or until its attempts are spent.
async fn run(ep: Endpoint, plan: AttackPlan, end: Instant, tally: Arc<Tally>) {
    if plan.kind == Kind::None {
        return;
    }
    let a = Arc::new(Attack {
        ep,
        plan,
        end,
        tally,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..a.plan.workers {
        tasks.spawn(a.clone().worker(w as u64));
    }
    if a.plan.kind == Kind::NonReader {
        tasks.spawn(a.clone().busy_publisher());
    }
    while tasks.join_next().await.is_some() {}
}

impl Attack {
    fn channel(&self, name: &str) -> String {
        format!("/{}/{name}", self.plan.namespace)
    }

    async fn worker(self: Arc<Self>, id: u64) {
        while Instant::now() < self.end && self.tally.begin(self.plan.max_attempts) {
            let round = match self.plan.kind {
                Kind::None => return,
                Kind::SlowBody => self.slow_body().await,
                Kind::SocketFlood => self.socket_flood().await,
                Kind::ConnectFlood => self.connect_flood().await,
                Kind::NonReader => self.non_reader(id).await,
                Kind::HalfMessage => self.half_message().await,
                Kind::ResumeStorm => self.resume_storm().await,
                Kind::HistoryFlood => self.history_flood().await,
            };
            if let Err(e) = round {
                if Instant::now() >= self.end {
                    return;
                }
                self.tally.refused(&e);
                // Do not spin on a refusing server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Holds a socket that reads until the server closes it or the attack ends.
    async fn hold_reading(&self, mut s: TcpStream, held: Held<'_>, since: Instant) {
        if let Some(how) = socket::read_end(&mut s, self.end).await {
            self.tally.closed(&how, since.elapsed());
        }
        drop(held);
    }

    /// A POST declaring a 1.2 MB body, of which 64 KiB arrive; then nothing.
    async fn slow_body(&self) -> anyhow::Result<()> {
        let mut s =
            socket::connect(self.ep.http_addr, self.plan.attacker_address, self.end).await?;
        let (held, since) = (self.tally.hold(), Instant::now());
        let mut req = format!(
            "POST /event HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             x-api-key: {}\r\nContent-Length: {SLOW_DECLARED}\r\n\r\n\
             {{\"channel\":\"{}\",\"events\":[\"",
            self.ep.http_host(),
            self.ep.api_key,
            self.channel("slow")
        )
        .into_bytes();
        req.resize(req.len() + SLOW_SENT, b'x');
        // A server that stops reading leaves this write pending: the socket is held all the same.
        match until(self.end, s.write_all(&req)).await {
            Ok(Ok(())) => self.hold_reading(s, held, since).await,
            Ok(Err(_)) => self.tally.closed("reset while sending", since.elapsed()),
            Err(_) => {}
        }
        Ok(())
    }

    /// A socket that sends half a request line and waits.
    async fn socket_flood(&self) -> anyhow::Result<()> {
        let mut s =
            socket::connect(self.ep.http_addr, self.plan.attacker_address, self.end).await?;
        let (held, since) = (self.tally.hold(), Instant::now());
        match until(self.end, s.write_all(HALF_LINE)).await {
            Ok(Ok(())) => self.hold_reading(s, held, since).await,
            Ok(Err(_)) => self.tally.closed("reset while sending", since.elapsed()),
            Err(_) => {}
        }
        Ok(())
    }

    /// A whole WebSocket handshake (upgrade, `connection_init`, `connection_ack`), then close.
    async fn connect_flood(&self) -> anyhow::Result<()> {
        let (_r, mut w) = until(self.end, self.ep.open(Some(self.plan.attacker_address))).await??;
        self.tally.opened.fetch_add(1, Ordering::Relaxed);
        self.tally.completed.fetch_add(1, Ordering::Relaxed);
        let _ = w.close().await;
        Ok(())
    }

    /// A subscriber of the busy channel that never reads after its `subscribe_success`.
    async fn non_reader(&self, id: u64) -> anyhow::Result<()> {
        let (mut r, mut w) =
            until(self.end, self.ep.open(Some(self.plan.attacker_address))).await??;
        let busy = self.channel("busy");
        until(self.end, self.ep.subscribe(&mut r, &mut w, &busy, id)).await??;
        let (_held, since) = (self.tally.hold(), Instant::now());
        // Pings are legitimate and tiny; their only purpose is to draw a reset once the server
        // dropped the connection.
        while socket::next_probe(self.end).await {
            if w.send(OP_PING, b"").await.is_err() || !socket::established(r.tcp()) {
                self.tally.closed("server closed", since.elapsed());
                break;
            }
        }
        Ok(())
    }

    /// The attacker's own publisher of big events to the busy channel, at `busy_rate`, over one
    /// WebSocket from the attacker's address (reopened when it fails), one publish in flight.
    /// Past `limits.max_publishes_per_second` (25 per connection by default; the benchmark
    /// config lifts it) publishes are refused, and counted as such.
    async fn busy_publisher(self: Arc<Self>) {
        let event = format!("{{\"x\":\"{}\"}}", "x".repeat(self.plan.big_bytes));
        let busy = self.channel("busy");
        let mut conn = None;
        let mut tick =
            tokio::time::interval(Duration::from_secs_f64(1.0 / self.plan.busy_rate.max(0.1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        for n in 0u64.. {
            if until(self.end, tick.tick()).await.is_err() {
                return;
            }
            if conn.is_none() {
                let from = Some(self.plan.attacker_address);
                match until(self.end, self.ep.open(from)).await {
                    Ok(Ok(c)) => conn = Some(c),
                    Ok(Err(_)) => {
                        self.tally.note("busy publish: connection failed");
                        continue;
                    }
                    Err(_) => return,
                }
            }
            let Some((r, w)) = conn.as_mut() else {
                continue;
            };
            let msg = self
                .ep
                .ws_publish(&busy, &format!("b{n}"), std::slice::from_ref(&event));
            match until(self.end, publish_once(r, w, &msg)).await {
                Ok(Ok(true)) => {
                    self.tally.units.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Ok(false)) => self.tally.note("busy publish: refused"),
                Ok(Err(_)) => {
                    self.tally.note("busy publish: connection failed");
                    conn = None;
                }
                Err(_) => return,
            }
        }
    }

    /// A WebSocket that announces a 1 MB message, sends 16 KiB of it, and stalls.
    async fn half_message(&self) -> anyhow::Result<()> {
        let (mut r, mut w) =
            until(self.end, self.ep.open(Some(self.plan.attacker_address))).await??;
        let (_held, since) = (self.tally.hold(), Instant::now());
        let start = vec![b' '; HALF_SENT];
        if until(self.end, w.send_partial(OP_TEXT, HALF_DECLARED, &start))
            .await
            .is_err()
        {
            return Ok(());
        }
        loop {
            match until(self.end, r.recv_owned()).await {
                Err(_) => return Ok(()),
                Ok(Ok((OP_CLOSE, p))) => {
                    let how = match p.get(..2) {
                        Some(&[hi, lo]) => format!("close {}", u16::from_be_bytes([hi, lo])),
                        _ => "close".to_owned(),
                    };
                    self.tally.closed(&how, since.elapsed());
                    return Ok(());
                }
                // Keep-alives and the like.
                Ok(Ok(_)) => {}
                Ok(Err(_)) => {
                    self.tally.closed("eof or reset", since.elapsed());
                    return Ok(());
                }
            }
        }
    }

    /// Connect, subscribe to the filled channel resuming from the beginning, and close as soon as
    /// the server answers (before reading the replay).
    async fn resume_storm(&self) -> anyhow::Result<()> {
        let (mut r, mut w) =
            until(self.end, self.ep.open(Some(self.plan.attacker_address))).await??;
        self.tally.opened.fetch_add(1, Ordering::Relaxed);
        let msg = format!(
            r#"{{"type":"subscribe","id":"r","channel":"{}","authorization":{},"resume":{{"since_ms":0}}}}"#,
            self.plan.big_channel,
            self.ep.auth_json()
        );
        until(self.end, w.send(OP_TEXT, msg.as_bytes())).await??;
        loop {
            let (op, p) = until(self.end, r.recv_owned()).await??;
            if op == OP_CLOSE {
                match p.get(..2) {
                    Some(&[hi, lo]) => anyhow::bail!("close {}", u16::from_be_bytes([hi, lo])),
                    _ => anyhow::bail!("close"),
                }
            }
            if find(&p, b"subscribe_success").is_some() {
                self.tally.completed.fetch_add(1, Ordering::Relaxed);
                self.tally
                    .units
                    .fetch_add(number_after(&p, b"\"replayed\":"), Ordering::Relaxed);
                self.tally.note(&resume_result(&p));
                break;
            }
            if find(&p, b"subscribe_error").is_some() || find(&p, b"\"error\"").is_some() {
                anyhow::bail!("{}", String::from_utf8_lossy(&p));
            }
        }
        let _ = w.close().await;
        Ok(())
    }

    /// `GET /event/history?…&limit=1000` of the filled channel, whose answer is never read.
    async fn history_flood(&self) -> anyhow::Result<()> {
        let mut s =
            socket::connect(self.ep.http_addr, self.plan.attacker_address, self.end).await?;
        let req = format!(
            "GET /event/history?channel={}&limit=1000 HTTP/1.1\r\nHost: {}\r\nx-api-key: {}\r\n\r\n",
            self.plan.big_channel,
            self.ep.http_host(),
            self.ep.api_key
        );
        until(self.end, s.write_all(req.as_bytes())).await??;
        let (_held, since) = (self.tally.hold(), Instant::now());
        // An empty line before a request line is to be ignored (RFC 9112 §2.2): the probe bytes
        // are harmless, and draw a reset once the server dropped the connection.
        while socket::next_probe(self.end).await {
            if s.write_all(b"\r\n").await.is_err() || !socket::established(&s) {
                self.tally.closed("server closed", since.elapsed());
                break;
            }
        }
        Ok(())
    }
}

/// Sends one WebSocket publish and waits for its answer: whether every event was accepted.
async fn publish_once(r: &mut WsReader, w: &mut WsWriter, msg: &[u8]) -> anyhow::Result<bool> {
    w.send(OP_TEXT, msg).await?;
    loop {
        let (op, p) = r.recv_owned().await?;
        if op == OP_CLOSE {
            anyhow::bail!("closed");
        }
        if find(&p, b"publish_success").is_some() {
            return Ok(find(&p, b"\"failed\":[]").is_some());
        }
        if find(&p, b"publish_error").is_some() || find(&p, b"\"error\"").is_some() {
            return Ok(false);
        }
    }
}

/// `recovered`, or the reason a resume was not served, from a `subscribe_success`.
fn resume_result(p: &[u8]) -> String {
    if find(p, b"\"recovered\":true").is_some() {
        return "resume recovered".into();
    }
    let reason = find(p, b"\"reason\":\"").map(|i| {
        p[i + 10..]
            .iter()
            .take_while(|&&b| b != b'"')
            .map(|&b| char::from(b))
            .collect::<String>()
    });
    format!("resume not recovered: {}", reason.as_deref().unwrap_or("?"))
}

/// The decimal number right after `key` in `p`; 0 when absent.
fn number_after(p: &[u8], key: &[u8]) -> u64 {
    find(p, key).map_or(0, |i| {
        p[i + key.len()..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .fold(0u64, |n, &b| {
                n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
            })
    })
}

/// Stores `fill_events` events of `big_bytes` on `big_channel`; returns how many
/// the server acknowledged.
pub async fn prefill(ep: &Endpoint, plan: &AttackPlan) -> anyhow::Result<u64> {
    let event = format!("{{\"x\":\"{}\"}}", "x".repeat(plan.big_bytes));
    let per_publish = (FILL_BODY / (event.len() + 8)).clamp(1, 5) as u64;
    let channel = &plan.big_channel;
    let mut conn = HttpConn::new(ep.http_addr, &ep.http_host());
    let mut stored = 0;
    while stored < plan.fill_events {
        let n = per_publish.min(plan.fill_events - stored) as usize;
        let (path, headers, body) = ep.http_publish(channel, &vec![event.clone(); n]);
        let r = conn.post(&path, &headers, &body).await?;
        if !ep.http_publish_ok(r.status, &r.body) {
            anyhow::bail!(
                "filling {channel}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        stored += n as u64;
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resume_replies() {
        let ok =
            br#"{"type":"subscribe_success","id":"r","resume":{"recovered":true,"replayed":1000}}"#;
        assert_eq!(resume_result(ok), "resume recovered");
        assert_eq!(number_after(ok, b"\"replayed\":"), 1000);
        let too_many = br#"{"type":"subscribe_success","id":"r","resume":{"recovered":false,"replayed":0,"reason":"too_many"}}"#;
        assert_eq!(resume_result(too_many), "resume not recovered: too_many");
        assert_eq!(number_after(b"{}", b"\"replayed\":"), 0);
    }

    #[test]
    fn budget_and_outcomes_are_bounded() {
        let t = Tally::default();
        assert!(t.begin(2) && t.begin(2) && !t.begin(2));
        assert_eq!(t.attempts.load(Ordering::Relaxed), 2);
        for i in 0..MAX_OUTCOMES + 5 {
            t.note(&format!("n{i}"));
        }
        let o = t.outcomes.lock().unwrap();
        assert_eq!(o.len(), MAX_OUTCOMES + 1);
        assert_eq!(o["other"], 5);
    }
}
