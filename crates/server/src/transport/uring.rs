//! Many sockets' sends in one system call, through io_uring: a fan-out's direct writes go to
//! the kernel together instead of one `writev` each (`websocket.direct_write_io_uring`).
//!
//! Every send is non-blocking (`MSG_DONTWAIT`): a socket without room answers `EAGAIN` at once,
//! as `writev` would, and the caller queues what was not taken. [`send_all`] returns only once
//! every send it submitted has completed, so the buffers it was given are never read after it
//! returns.

use std::cell::RefCell;
use std::os::fd::RawFd;

/// Most sends submitted in one call; larger batches go in several.
const RING_ENTRIES: usize = 64;

enum Ring {
    Untried,
    Ready(Box<io_uring::IoUring>),
    /// io_uring cannot be used on this thread (kernel without it, disabled, or a failed call):
    /// the caller writes with `writev`.
    Unavailable,
}

thread_local! {
    // One ring per runtime thread: no lock, and a ring's submissions stay on one thread.
    static RING: RefCell<Ring> = const { RefCell::new(Ring::Untried) };
}

/// Whether this thread can send through io_uring (set up on first use); if not, fan-outs
/// write each socket with `writev` instead.
pub fn available() -> bool {
    with_ring(|ring| matches!(ring, Ring::Ready(_)))
}

/// Runs `f` on this thread's ring, setting it up first if it was never tried.
fn with_ring<R>(f: impl FnOnce(&mut Ring) -> R) -> R {
    RING.with(|cell| {
        let mut ring = cell.borrow_mut();
        if matches!(*ring, Ring::Untried) {
            *ring = match io_uring::IoUring::new(RING_ENTRIES as u32) {
                Ok(r) => Ring::Ready(Box::new(r)),
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring unavailable; direct writes use writev");
                    Ring::Unavailable
                }
            };
        }
        f(&mut ring)
    })
}

/// Sends `bufs[i]` on `fds[i]` and stores the result in `results[i]` (bytes written, or a
/// negative errno). Returns how many it handled, from the first: fewer than `bufs.len()` only
/// when io_uring is unavailable, in which case the caller sends the rest itself.
///
/// One contiguous buffer per send (`IORING_OP_SEND`), not a `sendmsg` with iovecs: the kernel
/// then copies no message header or iovec array per send.
///
/// # Safety
/// Each fd must be an open socket for the duration of the call.
pub unsafe fn send_all(fds: &[RawFd], bufs: &[&[u8]], results: &mut [i32]) -> usize {
    with_ring(|ring| {
        let Ring::Ready(r) = ring else {
            return 0;
        };
        let n = bufs.len().min(fds.len()).min(results.len());
        let mut done = 0;
        while done < n {
            let end = (done + RING_ENTRIES).min(n);
            // SAFETY: `bufs` is borrowed for this call and `submit_chunk` waits for every
            // submitted send to complete; the caller keeps the fds open.
            match unsafe { submit_chunk(r, fds, bufs, results, done, end) } {
                Ok(()) => done = end,
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring submission failed; direct writes use writev");
                    *ring = Ring::Unavailable;
                    break;
                }
            }
        }
        done
    })
}

/// Submits sends `from..to` and waits for all of them. An error means none of them was
/// submitted (the kernel reports an error only when it consumed nothing).
unsafe fn submit_chunk(
    ring: &mut io_uring::IoUring,
    fds: &[RawFd],
    bufs: &[&[u8]],
    results: &mut [i32],
    from: usize,
    to: usize,
) -> std::io::Result<()> {
    for i in from..to {
        let (Some(buf), Some(&fd)) = (bufs.get(i), fds.get(i)) else {
            break;
        };
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let entry = io_uring::opcode::Send::new(io_uring::types::Fd(fd), buf.as_ptr(), len)
            .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            .build()
            .user_data(i as u64);
        // SAFETY: the ring has RING_ENTRIES free slots (every earlier send completed), and
        // `buf` stays borrowed until this function returns, after every send completed.
        if unsafe { ring.submission().push(&entry) }.is_err() {
            return Err(std::io::Error::other("submission queue full"));
        }
    }
    let mut pending = to - from;
    let mut submitted = false;
    while pending > 0 {
        match ring.submit_and_wait(pending) {
            Ok(_) => submitted = true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Nothing submitted: the entries stay in the queue, and the ring is dropped
            // unused, so the kernel never reads them.
            Err(e) if !submitted => return Err(e),
            // Submitted, but waiting failed: keep waiting; the sends are in flight.
            Err(_) => {}
        }
        for cqe in ring.completion() {
            if let Some(r) = results.get_mut(cqe.user_data() as usize) {
                *r = cqe.result();
            }
            pending = pending.saturating_sub(1);
        }
    }
    Ok(())
}
