//! A minimal WebSocket client (RFC 6455) over a plain loopback `TcpStream`.
//!
//! Hand-rolled rather than tokio-tungstenite because the load generator shares the 2 cores with the
//! server under test: a subscriber parses every frame that sits in one read buffer in place, with no
//! allocation per message, and stamps the whole batch with a single clock read. Only what a client
//! needs is here: the upgrade request, unmasked server frames (text, binary, continuation, ping,
//! close) and masked client frames.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Bytes a reader starts with; it grows only when one frame does not fit.
const INITIAL_READ_BUF: usize = 8 * 1024;
/// Upper bound on one message so a misbehaving server cannot make the bench allocate without end.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// What to send in the upgrade request.
pub struct Upgrade<'a> {
    pub addr: SocketAddr,
    /// Local address to bind before connecting (spreads source addresses over 127.0.0.0/8).
    pub bind: Option<IpAddr>,
    pub host: &'a str,
    pub path: &'a str,
    pub protocols: &'a [String],
}

/// Opens a TCP connection and performs the WebSocket upgrade.
pub async fn connect(up: &Upgrade<'_>) -> anyhow::Result<(WsReader, WsWriter)> {
    let sock = if up.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = up.bind {
        sock.bind(SocketAddr::new(ip, 0))
            .context("bind source address")?;
    }
    let stream = sock.connect(up.addr).await.context("tcp connect")?;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();

    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: aGVyYWxkLWJlbmNoLWtleQ==\r\nSec-WebSocket-Version: 13\r\n",
        up.path, up.host
    );
    if !up.protocols.is_empty() {
        req.push_str("Sec-WebSocket-Protocol: ");
        req.push_str(&up.protocols.join(", "));
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    wr.write_all(req.as_bytes()).await.context("send upgrade")?;

    let mut buf = vec![0u8; INITIAL_READ_BUF];
    let mut len = 0;
    let head_end = loop {
        if len == buf.len() {
            bail!("upgrade response headers too large");
        }
        let n = rd
            .read(&mut buf[len..])
            .await
            .context("read upgrade response")?;
        if n == 0 {
            bail!("connection closed during upgrade");
        }
        len += n;
        if let Some(p) = find(&buf[..len], b"\r\n\r\n") {
            break p + 4;
        }
    };
    let status_line = buf[..head_end]
        .split(|&b| b == b'\r')
        .next()
        .unwrap_or_default();
    if !status_line.starts_with(b"HTTP/1.1 101") {
        bail!("upgrade refused: {}", String::from_utf8_lossy(status_line));
    }
    // Any bytes past the headers already belong to the first frames.
    let reader = WsReader {
        rd,
        buf,
        start: head_end,
        end: len,
        frag: Vec::new(),
        frag_op: 0,
    };
    let mask = mask_seed(up.addr, len);
    Ok((
        reader,
        WsWriter {
            wr,
            out: Vec::with_capacity(512),
            mask,
        },
    ))
}

/// A complete message located in the reader's buffer (or in its fragment buffer).
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub opcode: u8,
    loc: Loc,
}

#[derive(Clone, Copy, Debug)]
enum Loc {
    Buf(usize, usize),
    Frag,
}

pub struct WsReader {
    rd: OwnedReadHalf,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    frag: Vec<u8>,
    frag_op: u8,
}

impl WsReader {
    /// Parses the next complete message already in the buffer, without reading the socket.
    /// Call [`WsReader::payload`] to see its bytes before calling this again.
    pub fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if avail.len() < 2 {
                return Ok(None);
            }
            let fin = avail[0] & 0x80 != 0;
            let opcode = avail[0] & 0x0f;
            if avail[1] & 0x80 != 0 {
                bail!("server sent a masked frame");
            }
            let (hlen, plen) = match avail[1] & 0x7f {
                126 if avail.len() >= 4 => (4, u16::from_be_bytes([avail[2], avail[3]]) as usize),
                127 if avail.len() >= 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&avail[2..10]);
                    (10, u64::from_be_bytes(b) as usize)
                }
                126 | 127 => return Ok(None),
                n => (2, n as usize),
            };
            if plen > MAX_MESSAGE {
                bail!("frame of {plen} bytes exceeds the bench limit");
            }
            if avail.len() < hlen + plen {
                return Ok(None);
            }
            let p0 = self.start + hlen;
            let p1 = p0 + plen;
            self.start = p1;
            if opcode >= 0x8 {
                return Ok(Some(Frame {
                    opcode,
                    loc: Loc::Buf(p0, p1),
                }));
            }
            if fin && opcode != OP_CONT {
                return Ok(Some(Frame {
                    opcode,
                    loc: Loc::Buf(p0, p1),
                }));
            }
            // Fragmented message: gather pieces until the final continuation frame.
            if opcode != OP_CONT {
                self.frag.clear();
                self.frag_op = opcode;
            }
            if self.frag.len() + plen > MAX_MESSAGE {
                bail!("fragmented message exceeds the bench limit");
            }
            self.frag.extend_from_slice(&self.buf[p0..p1]);
            if fin {
                return Ok(Some(Frame {
                    opcode: self.frag_op,
                    loc: Loc::Frag,
                }));
            }
        }
    }

    pub fn payload(&self, f: &Frame) -> &[u8] {
        match f.loc {
            Loc::Buf(a, b) => &self.buf[a..b],
            Loc::Frag => &self.frag,
        }
    }

    /// Reads more bytes from the socket. Cancel-safe: it awaits a single `read`.
    /// Returns false on end of stream.
    pub async fn fill(&mut self) -> anyhow::Result<bool> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
        }
        let n = self.rd.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n > 0)
    }

    /// The socket, to ask the kernel about its state without reading it.
    pub fn tcp(&self) -> &tokio::net::TcpStream {
        self.rd.as_ref()
    }

    /// Reads until a complete message arrives; copies it out. For handshakes, not for hot paths.
    pub async fn recv_owned(&mut self) -> anyhow::Result<(u8, Vec<u8>)> {
        loop {
            if let Some(f) = self.next_frame()? {
                return Ok((f.opcode, self.payload(&f).to_vec()));
            }
            if !self.fill().await? {
                bail!("connection closed");
            }
        }
    }
}

pub struct WsWriter {
    wr: OwnedWriteHalf,
    out: Vec<u8>,
    mask: u32,
}

impl WsWriter {
    /// Appends one masked frame to the pending output without sending it.
    pub fn queue(&mut self, opcode: u8, payload: &[u8]) {
        let mask = self.next_mask();
        encode_frame(&mut self.out, opcode, payload, mask);
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift: masks only have to differ between frames, not be secret, on loopback.
        self.mask ^= self.mask << 13;
        self.mask ^= self.mask >> 17;
        self.mask ^= self.mask << 5;
        self.mask.to_be_bytes()
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.out.is_empty() {
            self.wr.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends the header of a frame announcing `declared` payload bytes, then only `start`, the
    /// beginning of that payload: half a message, as a hostile client sends it.
    pub async fn send_partial(
        &mut self,
        opcode: u8,
        declared: usize,
        start: &[u8],
    ) -> anyhow::Result<()> {
        let mask = self.next_mask();
        encode_head(&mut self.out, opcode, declared, mask);
        push_masked(&mut self.out, start, mask);
        self.flush().await
    }

    pub async fn send(&mut self, opcode: u8, payload: &[u8]) -> anyhow::Result<()> {
        self.queue(opcode, payload);
        self.flush().await
    }

    pub async fn close(&mut self) -> anyhow::Result<()> {
        self.send(OP_CLOSE, &1000u16.to_be_bytes()).await?;
        self.wr.shutdown().await?;
        Ok(())
    }
}

/// Encodes a masked client frame (FIN set).
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    encode_head(out, opcode, payload.len(), mask);
    push_masked(out, payload, mask);
}

/// The header of a masked client frame (FIN set) carrying `n` payload bytes.
fn encode_head(out: &mut Vec<u8>, opcode: u8, n: usize, mask: [u8; 4]) {
    out.push(0x80 | opcode);
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
}

fn push_masked(out: &mut Vec<u8>, payload: &[u8], mask: [u8; 4]) {
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

fn mask_seed(addr: SocketAddr, salt: usize) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(1);
    (nanos ^ u32::from(addr.port()) ^ salt as u32) | 1
}

/// First index of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn masked_frame_roundtrip() {
        let mut out = Vec::new();
        let payload = vec![b'a'; 300];
        encode_frame(&mut out, OP_TEXT, &payload, [1, 2, 3, 4]);
        assert_eq!(out[0], 0x81);
        assert_eq!(out[1], 0x80 | 126);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 300);
        let mask = &out[4..8];
        let unmasked: Vec<u8> = out[8..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        assert_eq!(unmasked, payload);
    }

    /// Server frame (unmasked) with FIN set or not.
    fn server_frame(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8]) {
        out.push(if fin { 0x80 } else { 0 } | opcode);
        if payload.len() < 126 {
            out.push(payload.len() as u8);
        } else {
            out.push(126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(payload);
    }

    #[tokio::test]
    async fn reads_batched_fragmented_and_split_frames() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            let mut n = 0;
            while find(&req[..n], b"\r\n\r\n").is_none() {
                n += s.read(&mut req[n..]).await.unwrap();
            }
            let req = String::from_utf8_lossy(&req[..n]).to_string();
            // Headers, then two frames in the same write as the 101 response.
            let mut out =
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
            server_frame(&mut out, true, OP_TEXT, b"one");
            server_frame(&mut out, true, OP_TEXT, &[b'x'; 300]);
            server_frame(&mut out, false, OP_TEXT, b"frag");
            server_frame(&mut out, true, OP_CONT, b"mented");
            let mut tail = Vec::new();
            server_frame(&mut tail, true, OP_TEXT, &[b'y'; 20_000]);
            // Split the large frame over two writes so the reader must grow and refill.
            out.extend_from_slice(&tail[..100]);
            s.write_all(&out).await.unwrap();
            s.flush().await.unwrap();
            tokio::task::yield_now().await;
            s.write_all(&tail[100..]).await.unwrap();
            // Echo back one masked client frame, unmasked, to check encoding.
            let mut hdr = [0u8; 6];
            s.read_exact(&mut hdr).await.unwrap();
            let len = (hdr[1] & 0x7f) as usize;
            let mut body = vec![0u8; len];
            s.read_exact(&mut body).await.unwrap();
            let plain: Vec<u8> = body
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ hdr[2 + (i & 3)])
                .collect();
            (req, plain)
        });
        let protocols = vec!["aws-appsync-event-ws".to_owned(), "header-abc".to_owned()];
        let up = Upgrade {
            addr,
            bind: None,
            host: "127.0.0.1",
            path: "/event/realtime",
            protocols: &protocols,
        };
        let (mut r, mut w) = connect(&up).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            while let Some(f) = r.next_frame().unwrap() {
                got.push((f.opcode, r.payload(&f).to_vec()));
            }
            if got.len() < 4 {
                assert!(r.fill().await.unwrap());
            }
        }
        assert_eq!(got[0], (OP_TEXT, b"one".to_vec()));
        assert_eq!(got[1].1.len(), 300);
        assert_eq!(got[2], (OP_TEXT, b"fragmented".to_vec()));
        assert_eq!(got[3].1, vec![b'y'; 20_000]);
        w.send(OP_TEXT, b"hello").await.unwrap();
        let (req, plain) = server.await.unwrap();
        assert!(req.starts_with("GET /event/realtime HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains("Sec-WebSocket-Protocol: aws-appsync-event-ws, header-abc\r\n"),
            "{req}"
        );
        assert_eq!(plain, b"hello");
    }

    #[test]
    fn find_works() {
        assert_eq!(find(b"abc\r\n\r\nx", b"\r\n\r\n"), Some(3));
        assert_eq!(find(b"abc", b"zz"), None);
    }
}
