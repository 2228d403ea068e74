//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that load balancers such as
//! HAProxy and AWS NLB put before a connection's first byte to say whom they accepted it from.
//! Read only from configured trusted proxies (`admission.proxy_protocol`): from anyone else it
//! would let a client choose its own address.
//!
//! The header is read exactly — not one byte past it — so the stream that follows (TLS or HTTP)
//! needs no buffer in front of it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Version 2's fixed opening.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's longest line, CRLF included.
const V1_MAX: usize = 107;
/// Version 2's address block and TLVs: AWS NLB's TLVs are well under this; more is refused.
const V2_MAX_BODY: usize = 2048;

/// Why a header was refused; the connection is then closed unanswered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyHeaderError {
    #[error("the connection did not start with a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("PROXY protocol header longer than {V2_MAX_BODY} bytes")]
    TooLong,
    #[error("reading the PROXY protocol header: {0}")]
    Io(String),
}

/// Reads the header; returns the client's address, or `None` when the proxy speaks for itself
/// (v1 `UNKNOWN`, v2 `LOCAL` such as health checks, or a family other than TCP over IPv4/IPv6).
pub async fn read_header<S: AsyncRead + Unpin>(
    io: &mut S,
) -> Result<Option<IpAddr>, ProxyHeaderError> {
    let io_err = |e: std::io::Error| ProxyHeaderError::Io(e.to_string());
    // Both versions are at least 15 bytes long ("PROXY UNKNOWN\r\n"), so 12 can always be read.
    let mut start = [0u8; 12];
    io.read_exact(&mut start).await.map_err(io_err)?;
    if start == V2_SIGNATURE {
        let mut head = [0u8; 4];
        io.read_exact(&mut head).await.map_err(io_err)?;
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if len > V2_MAX_BODY {
            return Err(ProxyHeaderError::TooLong);
        }
        let mut body = vec![0u8; len];
        io.read_exact(&mut body).await.map_err(io_err)?;
        return parse_v2(head[0], head[1], &body);
    }
    if !start.starts_with(b"PROXY ") {
        return Err(ProxyHeaderError::Missing);
    }
    // Version 1 is a line: read it a byte at a time so nothing after it is consumed. Proxies send
    // it in one segment, so these reads find their byte already buffered.
    let mut line = start.to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err(ProxyHeaderError::Malformed("v1 line without CRLF"));
        }
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await.map_err(io_err)?;
        line.extend_from_slice(&b);
    }
    parse_v1(&line)
}

/// Parses a whole version 1 line (`PROXY TCP4 <src> <dst> <sport> <dport>\r\n`).
pub fn parse_v1(line: &[u8]) -> Result<Option<IpAddr>, ProxyHeaderError> {
    let text = line
        .strip_suffix(b"\r\n")
        .and_then(|l| std::str::from_utf8(l).ok())
        .ok_or(ProxyHeaderError::Malformed(
            "v1 line is not text ending in CRLF",
        ))?;
    let mut words = text.split(' ');
    if words.next() != Some("PROXY") {
        return Err(ProxyHeaderError::Missing);
    }
    let family = words.next();
    if family == Some("UNKNOWN") {
        return Ok(None);
    }
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        return Err(ProxyHeaderError::Malformed("v1 line needs five fields"));
    };
    let addr = |s: &str| -> Result<IpAddr, ProxyHeaderError> {
        match family {
            Some("TCP4") => s.parse::<Ipv4Addr>().map(IpAddr::V4).ok(),
            Some("TCP6") => s.parse::<Ipv6Addr>().map(IpAddr::V6).ok(),
            _ => None,
        }
        .ok_or(ProxyHeaderError::Malformed(
            "v1 address does not match its family",
        ))
    };
    let port = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| ProxyHeaderError::Malformed("v1 port is not a number below 65536"))
    };
    let source = addr(src)?;
    addr(dst)?;
    port(sport)?;
    port(dport)?;
    Ok(Some(source))
}

/// Parses version 2 after its signature: the version/command and family bytes and the body.
pub fn parse_v2(
    version_command: u8,
    family: u8,
    body: &[u8],
) -> Result<Option<IpAddr>, ProxyHeaderError> {
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed("v2 version is not 2"));
    }
    match version_command & 0x0f {
        0 => return Ok(None), // LOCAL: the proxy's own connection.
        1 => {}
        _ => {
            return Err(ProxyHeaderError::Malformed(
                "v2 command is neither LOCAL nor PROXY",
            ));
        }
    }
    const SHORT: ProxyHeaderError =
        ProxyHeaderError::Malformed("v2 address block shorter than its family needs");
    // The block holds source, destination and both ports; only the source is kept.
    fn source<const N: usize>(body: &[u8]) -> Result<[u8; N], ProxyHeaderError> {
        body.get(..2 * N + 4).ok_or(SHORT)?;
        body.get(..N).and_then(|s| s.try_into().ok()).ok_or(SHORT)
    }
    match family {
        // TCP or UDP over IPv4, then over IPv6.
        0x11 | 0x12 => Ok(Some(IpAddr::V4(Ipv4Addr::from(source::<4>(body)?)))),
        0x21 | 0x22 => Ok(Some(IpAddr::V6(Ipv6Addr::from(source::<16>(body)?)))),
        // UNSPEC or UNIX sockets: no client address to take.
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<IpAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut io = bytes;
        let r = read_header(&mut io).await;
        (r, io.to_vec())
    }

    #[tokio::test]
    async fn version_1_leaves_the_stream_after_it() {
        let (r, rest) =
            read(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\nGET / HTTP/1.1\r\n").await;
        assert_eq!(r, Ok(Some("203.0.113.7".parse().unwrap())));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (r, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n").await;
        assert_eq!(r, Ok(Some("2001:db8::7".parse().unwrap())));
        let (r, rest) = read(b"PROXY UNKNOWN\r\nX").await;
        assert_eq!((r, rest), (Ok(None), b"X".to_vec()));
    }

    #[tokio::test]
    async fn version_1_refuses_what_is_not_one() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"PROXY TCP4 203.0.113.7 10.0.0.1 51000\r\n",
            b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 70000 443\r\n",
            b"PROXY TCP9 1 2 3 4\r\n",
            &[b'P'; 200][..],
        ] {
            assert!(
                read(bad).await.0.is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[tokio::test]
    async fn version_2_with_tlvs() {
        let mut body = vec![198, 51, 100, 9, 10, 0, 0, 1, 0xc7, 0x38, 0x01, 0xbb];
        body.extend_from_slice(&[0xea, 0, 3, b'v', b'p', b'c']); // an AWS TLV
        let mut bytes = v2(1, 0x11, &body);
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (r, rest) = read(&bytes).await;
        assert_eq!(r, Ok(Some("198.51.100.9".parse().unwrap())));
        assert_eq!(rest, b"\x16\x03\x01");
        let mut six = vec![0x20, 0x01, 0x0d, 0xb8];
        six.resize(36, 0);
        let (r, _) = read(&v2(1, 0x21, &six)).await;
        assert_eq!(r, Ok(Some("2001:db8::".parse().unwrap())));
        assert_eq!(read(&v2(0, 0x00, &[])).await.0, Ok(None));
        assert!(read(&v2(1, 0x11, &[1, 2, 3])).await.0.is_err());
        let mut long = v2(1, 0x11, &[0; 12]);
        long[14..16].copy_from_slice(&4000u16.to_be_bytes());
        assert_eq!(read(&long).await.0, Err(ProxyHeaderError::TooLong));
    }
}
