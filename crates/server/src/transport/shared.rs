//! A plain TCP socket shared between its connection's task and the tasks that deliver to it.
//!
//! The connection task reads and writes it as any stream; a delivering task may also write a
//! frame straight into it, without waking the connection's task, when nothing else is queued or
//! being written (the outbox decides: see `connection::outbox`). Both go through tokio's
//! readiness API (`try_write` needs only `&TcpStream`), so no lock is held across an await.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Most bytes one read asks for.
const READ_CHUNK: usize = 64 * 1024;

/// The connection task's handle on a shared socket.
pub struct SharedTcp {
    socket: Arc<TcpStream>,
    /// What the client sent right behind the upgrade request, which the HTTP layer already read:
    /// returned before anything new.
    read_ahead: Bytes,
}

impl SharedTcp {
    pub fn new(socket: Arc<TcpStream>, read_ahead: Bytes) -> SharedTcp {
        SharedTcp { socket, read_ahead }
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read_ahead.is_empty() {
            let n = self.read_ahead.len().min(buf.remaining());
            buf.put_slice(&self.read_ahead.split_to(n));
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(self.socket.poll_read_ready(cx))?;
            // `try_read` clears the readiness it consumed on `WouldBlock`, so the next
            // `poll_read_ready` registers for a wake-up instead of spinning. At most `READ_CHUNK`
            // of the buffer is initialized per read: a reader that reserved room for a large
            // declared message must not have all of it zeroed (and made resident) up front.
            let room = buf.remaining().min(READ_CHUNK);
            match self.socket.try_read(buf.initialize_unfilled_to(room)) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.socket.poll_write_ready(cx))?;
            match self.socket.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.socket.poll_write_ready(cx))?;
            match self.socket.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Half-close for writing, as `TcpStream`'s own `poll_shutdown` does; the socket stays
        // readable for the linger after a close frame.
        Poll::Ready(shutdown_write(&self.socket))
    }
}

/// `shutdown(SHUT_WR)` on a shared stream: std's `TcpStream::shutdown` needs only `&self`, which
/// tokio exposes through `AsFd` on Unix.
fn shutdown_write(tcp: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsFd;
    let fd = tcp.as_fd().try_clone_to_owned()?;
    let std = std::net::TcpStream::from(fd);
    // The clone shares the socket: shutting it down shuts down the connection, and dropping it
    // closes only the duplicated descriptor.
    std.shutdown(std::net::Shutdown::Write)
}
