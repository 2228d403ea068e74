//! A minimal Server-Sent Events subscriber for Herald's `GET /event/stream`, over a plain loopback
//! `TcpStream`.
//!
//! Hand-rolled for the same reason as `ws`: the load generator shares the cores with the server.
//! The response body (HTTP/1.1 chunked, or plain until end of stream) is de-chunked from a small
//! read buffer into a body buffer that holds at most one unfinished event; complete events
//! (blocks ending in a blank line) are handed out as (name, data) slices, without copies.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::ws::find;

/// Socket read buffer; the body buffer grows only while one event does not fit.
const READ_BUF: usize = 8 * 1024;
/// Upper bound on one event so a misbehaving server cannot make the bench allocate without end.
const MAX_EVENT: usize = 16 * 1024 * 1024;
/// A chunk-size line is a few hex digits; anything longer is not HTTP.
const MAX_SIZE_LINE: usize = 64;

/// Opens `path` (with its query) on `addr` and waits for the `200` response headers: Herald
/// sends them once every subscription of the stream is live.
pub async fn connect(addr: SocketAddr, path: &str, headers: &str) -> anyhow::Result<SseReader> {
    let stream = TcpStream::connect(addr).await.context("tcp connect")?;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{headers}\r\n"
    );
    wr.write_all(req.as_bytes()).await.context("send request")?;

    let mut raw = vec![0u8; READ_BUF];
    let mut len = 0;
    let head_end = loop {
        if len == raw.len() {
            bail!("response headers too large");
        }
        let n = rd.read(&mut raw[len..]).await.context("read response")?;
        if n == 0 {
            bail!("connection closed before the response headers");
        }
        len += n;
        if let Some(p) = find(&raw[..len], b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        bail!(
            "stream refused: {}",
            String::from_utf8_lossy(&raw[..len]).trim_end()
        );
    }
    Ok(SseReader {
        rd,
        _wr: wr,
        chunked: head.contains("\r\ntransfer-encoding: chunked"),
        raw,
        start: head_end,
        end: len,
        body: Vec::with_capacity(1024),
        data_left: 0,
        crlf_left: 0,
        ended: false,
    })
}

pub struct SseReader {
    rd: OwnedReadHalf,
    /// Kept open: dropping it would half-close the connection.
    _wr: OwnedWriteHalf,
    chunked: bool,
    raw: Vec<u8>,
    start: usize,
    end: usize,
    /// De-chunked bytes not yet consumed as complete events.
    body: Vec<u8>,
    /// Data bytes left in the current chunk, then the CRLF that closes it.
    data_left: usize,
    crlf_left: usize,
    /// The last chunk (size 0) arrived.
    ended: bool,
}

impl SseReader {
    /// Moves what the read buffer holds into the body, then calls `f(name, data)` for every
    /// complete event (comments and unnamed fields are skipped; an event without `event:` is
    /// called `message`, as in the SSE spec). Does not read the socket.
    pub fn events(&mut self, mut f: impl FnMut(&[u8], &[u8])) -> anyhow::Result<()> {
        self.dechunk()?;
        let mut pos = 0;
        while let Some(e) = find(&self.body[pos..], b"\n\n") {
            let block = &self.body[pos..pos + e];
            pos += e + 2;
            let (mut name, mut data): (&[u8], Option<&[u8]>) = (b"message", None);
            for line in block.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if let Some(v) = field(line, b"event:") {
                    name = v;
                } else if let Some(v) = field(line, b"data:") {
                    data = Some(v);
                }
            }
            if let Some(d) = data {
                f(name, d);
            }
        }
        self.body.drain(..pos);
        if self.body.len() > MAX_EVENT {
            bail!("event of more than {MAX_EVENT} bytes");
        }
        Ok(())
    }

    fn dechunk(&mut self) -> anyhow::Result<()> {
        if !self.chunked {
            self.body.extend_from_slice(&self.raw[self.start..self.end]);
            self.start = self.end;
            return Ok(());
        }
        loop {
            let avail = &self.raw[self.start..self.end];
            if self.data_left > 0 {
                let n = self.data_left.min(avail.len());
                self.body.extend_from_slice(&avail[..n]);
                self.data_left -= n;
                self.start += n;
                if self.data_left > 0 {
                    return Ok(());
                }
            } else if self.crlf_left > 0 {
                let n = self.crlf_left.min(avail.len());
                self.crlf_left -= n;
                self.start += n;
                if self.crlf_left > 0 {
                    return Ok(());
                }
            } else if self.ended {
                self.start = self.end;
                return Ok(());
            } else {
                let Some(e) = find(avail, b"\r\n") else {
                    if avail.len() > MAX_SIZE_LINE {
                        bail!("bad chunk size line");
                    }
                    return Ok(());
                };
                let hex = avail[..e].split(|&b| b == b';').next().unwrap_or_default();
                let size = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                    .context("bad chunk size")?;
                self.start += e + 2;
                if size == 0 {
                    self.ended = true;
                } else {
                    self.data_left = size;
                    self.crlf_left = 2;
                }
            }
        }
    }

    /// Reads more bytes from the socket. Cancel-safe: it awaits a single `read`.
    /// Returns false on end of stream (or after the last chunk).
    pub async fn fill(&mut self) -> anyhow::Result<bool> {
        if self.ended {
            return Ok(false);
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.raw.len() {
            // Only an unfinished chunk-size line stays behind after `events`: move it to the front.
            self.raw.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.rd.read(&mut self.raw[self.end..]).await?;
        self.end += n;
        Ok(n > 0)
    }
}

/// The value of `line` if it is the field `name` (one space after the colon is not part of it).
fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let v = line.strip_prefix(name)?;
    Some(v.strip_prefix(b" ").unwrap_or(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dechunks_split_events_and_skips_comments() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            let mut n = 0;
            while find(&req[..n], b"\r\n\r\n").is_none() {
                n += s.read(&mut req[n..]).await.unwrap();
            }
            let body = "event: subscribe_success\ndata: {\"id\":\"0\"}\n\n: ka\n\n\
                        event: data\ndata: {\"channel\":\"/d/a\",\"event\":\"1\"}\n\n\
                        id: x\nevent: data\ndata: {\"event\":\"2\"}\n\n";
            let mut out =
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec();
            // Chunk boundaries that cut an event, a size line and a CRLF in two.
            let (a, b) = body.as_bytes().split_at(50);
            out.extend_from_slice(format!("{:x}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(format!("\r\n{:x}", b.len()).as_bytes());
            s.write_all(&out).await.unwrap();
            s.flush().await.unwrap();
            tokio::task::yield_now().await;
            let mut rest = b"\r\n".to_vec();
            rest.extend_from_slice(b);
            rest.extend_from_slice(b"\r");
            s.write_all(&rest).await.unwrap();
            s.flush().await.unwrap();
            tokio::task::yield_now().await;
            s.write_all(b"\n0\r\n\r\n").await.unwrap();
            String::from_utf8_lossy(&req[..n]).to_string()
        });
        let mut r = connect(addr, "/event/stream?channel=/d/a", "x-api-key: k\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        loop {
            r.events(|name, data| got.push((name.to_vec(), data.to_vec())))
                .unwrap();
            if !r.fill().await.unwrap() {
                break;
            }
        }
        r.events(|name, data| got.push((name.to_vec(), data.to_vec())))
            .unwrap();
        let req = server.await.unwrap();
        assert!(req.starts_with("GET /event/stream?channel=/d/a HTTP/1.1\r\n"));
        assert!(req.contains("x-api-key: k\r\n"));
        let names: Vec<&[u8]> = got.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(
            names,
            vec![&b"subscribe_success"[..], &b"data"[..], &b"data"[..]]
        );
        assert_eq!(got[1].1, br#"{"channel":"/d/a","event":"1"}"#);
        assert_eq!(got[2].1, br#"{"event":"2"}"#);
    }

    #[tokio::test]
    async fn refusal_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            let _ = s.read(&mut req).await.unwrap();
            s.write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}")
                .await
                .unwrap();
        });
        let e = connect(addr, "/event/stream?channel=/d/a", "")
            .await
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("401"), "{e:#}");
    }
}
