//! What one small write to one of many loopback TCP sockets costs the sending thread, written
//! one syscall per socket (what Herald's direct writes do) or submitted in batches through
//! io_uring — the experiment issue 13 asks for before io_uring goes into the server.
//!
//! `cargo run --release -p herald-bench --example send_floor -- [conns] [rounds] [bytes] [batch]`
//!
//! `conns` connected pairs on 127.0.0.1; the reading ends are drained by one thread on CPU 1
//! (epoll), the sending thread runs on CPU 0. Each round writes `bytes` to every socket once, in
//! socket order, so no write coalesces with the next on the same socket (the many-small-channels
//! case). Reported: CPU time of the sending thread per write (`CLOCK_THREAD_CPUTIME_ID`; on
//! loopback the receiving side's TCP processing runs in the sender's context too, as it does in
//! the server), and the process's CPU per write (which adds io_uring's worker threads, if any,
//! and the reader).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let arg = |i: usize, d: usize| -> anyhow::Result<usize> {
        Ok(match std::env::args().nth(i) {
            Some(s) => s.parse()?,
            None => d,
        })
    };
    let (conns, rounds, bytes, batch) = (arg(1, 10_000)?, arg(2, 30)?, arg(3, 120)?, arg(4, 64)?);
    raise_fd_limit(2 * conns as u64 + 64)?;

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut senders = Vec::with_capacity(conns);
    let mut readers = Vec::with_capacity(conns);
    for _ in 0..conns {
        let r = TcpStream::connect(addr)?;
        let (s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        r.set_nonblocking(true)?;
        senders.push(s);
        readers.push(r);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, received) = (stop.clone(), received.clone());
        std::thread::spawn(move || drain(readers, &stop, &received))
    };
    pin(0)?;

    let payload = vec![b'x'; bytes];
    let mut table = Vec::new();
    for mode in ["write", "io_uring"] {
        let round = |senders: &[TcpStream]| match mode {
            "write" => Ok(round_write(senders, &payload)),
            _ => round_uring(senders, &payload, batch),
        };
        // One warm-up round (the ring's setup, first-touch of buffers), then the measured ones.
        round(&senders)?;
        let (cpu0, proc0, t0) = (thread_cpu(), process_cpu(), Instant::now());
        let (mut sent, mut skipped) = (0u64, 0u64);
        for _ in 0..rounds {
            let (s, k) = round(&senders)?;
            sent += s;
            skipped += k;
        }
        let (cpu, procs, wall) = (
            thread_cpu() - cpu0,
            process_cpu() - proc0,
            t0.elapsed().as_secs_f64(),
        );
        table.push((mode, sent, skipped, cpu, procs, wall));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();

    println!(
        "{conns} sockets, {rounds} rounds, {bytes}-byte writes, io_uring batch {batch}; {} bytes received",
        received.load(Ordering::Relaxed)
    );
    println!(
        "| mode | writes | would block | sender CPU per write | process CPU per write | writes/s |"
    );
    println!("|---|---|---|---|---|---|");
    for (mode, sent, skipped, cpu, procs, wall) in table {
        let n = sent.max(1) as f64;
        println!(
            "| {mode} | {sent} | {skipped} | {:.2} µs | {:.2} µs | {:.0} |",
            cpu * 1e6 / n,
            procs * 1e6 / n,
            n / wall
        );
    }
    Ok(())
}

/// One write syscall per socket.
fn round_write(senders: &[TcpStream], payload: &[u8]) -> (u64, u64) {
    let (mut sent, mut skipped) = (0, 0);
    for mut s in senders {
        // A short write counts as sent: with 120-byte writes and drained readers there is none.
        match s.write(payload) {
            Ok(n) if n > 0 => sent += 1,
            _ => skipped += 1,
        }
    }
    (sent, skipped)
}

/// The same writes as `IORING_OP_SEND`s, `batch` per `io_uring_enter`.
fn round_uring(senders: &[TcpStream], payload: &[u8], batch: usize) -> anyhow::Result<(u64, u64)> {
    thread_local! {
        static RING: std::cell::RefCell<Option<io_uring::IoUring>> = const { std::cell::RefCell::new(None) };
    }
    RING.with(|ring| {
        let mut ring = ring.borrow_mut();
        if ring.is_none() {
            *ring = Some(io_uring::IoUring::new(batch.next_power_of_two() as u32)?);
        }
        let Some(ring) = ring.as_mut() else {
            unreachable!("set above")
        };
        let (mut sent, mut skipped) = (0, 0);
        for chunk in senders.chunks(batch) {
            for (i, s) in chunk.iter().enumerate() {
                let op = io_uring::opcode::Send::new(
                    io_uring::types::Fd(s.as_raw_fd()),
                    payload.as_ptr(),
                    payload.len() as u32,
                )
                .flags(libc::MSG_DONTWAIT)
                .build()
                .user_data(i as u64);
                // SAFETY: `payload` and the sockets outlive the submission: every entry is
                // completed (waited for below) before this function returns.
                unsafe { ring.submission().push(&op)? };
            }
            ring.submit_and_wait(chunk.len())?;
            for cqe in ring.completion() {
                if cqe.result() > 0 {
                    sent += 1;
                } else {
                    skipped += 1;
                }
            }
        }
        Ok((sent, skipped))
    })
}

/// Reads and discards everything arriving on `readers` until `stop`.
fn drain(readers: Vec<TcpStream>, stop: &AtomicBool, received: &AtomicU64) {
    let _ = pin(1);
    // SAFETY: plain epoll syscalls on descriptors `readers` keeps open for the whole loop.
    let ep = unsafe { libc::epoll_create1(0) };
    for (i, r) in readers.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, r.as_raw_fd(), &mut ev) };
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 100) };
        for ev in events.iter().take(n.max(0) as usize) {
            let Some(mut r) = readers.get(ev.u64 as usize) else {
                continue;
            };
            while let Ok(k) = r.read(&mut buf) {
                if k == 0 {
                    break;
                }
                received.fetch_add(k as u64, Ordering::Relaxed);
            }
        }
    }
    unsafe { libc::close(ep) };
}

fn pin(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; `cpu` is a small constant.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            anyhow::bail!(
                "cannot pin to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

fn cpu_clock(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into `ts` only.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn thread_cpu() -> f64 {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn process_cpu() -> f64 {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn raise_fd_limit(want: u64) -> anyhow::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads and writes `lim` only.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    anyhow::ensure!(
        lim.rlim_cur >= want,
        "need {want} open files, the limit is {}",
        lim.rlim_cur
    );
    Ok(())
}
