//! Raw loopback sockets for the attacks: connecting from the attacker's own source address
//! within the attack's time, naming how the server ended a socket it read from, and noticing
//! that the server gave up on a socket the attacker never reads.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::ws::OP_CLOSE;

/// `TCP_ESTABLISHED` in the kernel's TCP states (include/net/tcp_states.h).
const TCP_ESTABLISHED: u8 = 1;
/// How often a socket that is never read is checked.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// Bytes of the server's last words kept to name how it ended a socket.
const KEEP: usize = 64;

/// Runs `fut` until `end`; an error once the attack is over.
pub async fn until<T>(end: Instant, fut: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout_at(end.into(), fut)
        .await
        .context("attack over")
}

/// Opens a TCP connection from `from` (any port) to `addr` before `end`.
pub async fn connect(addr: SocketAddr, from: IpAddr, end: Instant) -> anyhow::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Pick the port at connect time, not at bind: a port chosen by bind() is reserved for every
    // local address, so tens of thousands of hostile sockets would leave the well-behaved
    // clients on 127.0.0.1 no ephemeral port ("Cannot assign requested address").
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("IP_BIND_ADDRESS_NO_PORT");
    }
    sock.bind(SocketAddr::new(from, 0))
        .with_context(|| format!("bind source address {from}"))?;
    let s = until(end, sock.connect(addr))
        .await?
        .context("tcp connect")?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Whether the kernel still sees the connection as established. Once the server closes its end
/// (FIN) or resets it, this turns false without the attacker reading anything.
pub fn established(s: &TcpStream) -> bool {
    // SAFETY: tcp_info is a plain C struct of integers, for which all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is that large.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    rc == 0 && info.tcpi_state == TCP_ESTABLISHED
}

/// Waits until a socket the attacker never reads is due for its next probe: half a second, or
/// until `end`. False once the attack is over.
///
/// A probe writes a few harmless bytes and checks [`established`]: a server that closed its end
/// while its own unsent data was stuck (the attacker reads nothing) sends no FIN the attacker
/// could see, but answers those bytes with a reset.
pub async fn next_probe(end: Instant) -> bool {
    let next = Instant::now() + PROBE_EVERY;
    tokio::time::sleep_until(next.min(end).into()).await;
    next < end
}

/// Reads until the server closes the socket; names what it said last (`http 408`, `close 1008`,
/// `eof`, `reset`). `None` if the socket is still open at `end`.
pub async fn read_end(s: &mut TcpStream, end: Instant) -> Option<String> {
    let mut first = Vec::with_capacity(KEEP);
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(end.into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) => return Some(name_end(&first, false)),
            Ok(Ok(n)) => {
                let room = KEEP - first.len();
                first.extend_from_slice(&buf[..n.min(room)]);
            }
            Ok(Err(_)) => return Some(name_end(&first, true)),
        }
    }
}

/// Names how a socket ended from the first bytes the server sent on it.
fn name_end(first: &[u8], reset: bool) -> String {
    if let Some(status) = first.strip_prefix(b"HTTP/1.1 ") {
        let code: String = status.iter().take(3).map(|&b| char::from(b)).collect();
        return format!("http {code}");
    }
    if let Some(code) = close_code(first) {
        return format!("close {code}");
    }
    match (first.is_empty(), reset) {
        (true, false) => "eof".into(),
        (true, true) => "reset".into(),
        (false, _) => "other bytes, then closed".into(),
    }
}

/// The status code of a server's (unmasked) WebSocket close frame at the start of `frame`.
pub fn close_code(frame: &[u8]) -> Option<u16> {
    match frame {
        [b0, len, hi, lo, ..] if *b0 == 0x80 | OP_CLOSE && *len >= 2 && *len < 126 => {
            Some(u16::from_be_bytes([*hi, *lo]))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn names_how_a_socket_ended() {
        assert_eq!(
            name_end(b"HTTP/1.1 408 Request Timeout\r\n", false),
            "http 408"
        );
        assert_eq!(name_end(&[0x88, 2, 0x03, 0xf0], false), "close 1008");
        assert_eq!(name_end(b"", false), "eof");
        assert_eq!(name_end(b"", true), "reset");
        assert_eq!(name_end(b"xyz", false), "other bytes, then closed");
    }

    #[tokio::test]
    async fn sees_a_peer_close_without_reading() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        let from: IpAddr = "127.0.0.2".parse().unwrap();
        let (client, accepted) = tokio::join!(connect(addr, from, end), listener.accept());
        let mut client = client.unwrap();
        let (mut server, peer) = accepted.unwrap();
        assert_eq!(peer.ip(), from, "the attacker's own source address");
        assert!(established(&client));
        server
            .write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .await
            .unwrap();
        drop(server);
        while established(&client) {
            assert!(next_probe(end).await, "the peer's close went unnoticed");
        }
        assert_eq!(
            read_end(&mut client, end).await.as_deref(),
            Some("http 408")
        );
    }
}
