//! Bytes on the wire: the PROXY protocol header, TLS, WebSocket framing and write deadlines;
//! the listener's filter of blocked addresses.
//! Protocol logic lives elsewhere.

pub mod blocklist;
pub mod deadline;
pub mod proxy;
pub mod shared;
pub mod tls;
pub mod uring;
pub mod ws;

/// Caps a socket's kernel send buffer (`limits.socket_send_buffer_bytes`; 0 leaves it alone).
/// Best effort: a socket the kernel refuses this for keeps its default.
pub fn cap_send_buffer(tcp: &tokio::net::TcpStream, bytes: usize) {
    #[cfg(unix)]
    if bytes > 0 {
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: the descriptor is open for as long as `tcp` is borrowed, and the option value
        // is a c_int of the size passed.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(tcp),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (tcp, bytes);
}
