//! A keep-alive HTTP/1.1 client for publishing: one request in flight per connection.
//!
//! Written by hand because a publisher only ever sends `POST` with a small JSON body and reads a
//! small reply; a full client would cost the shared CPU more than the requests themselves.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ws::find;

pub struct HttpConn {
    addr: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    req: Vec<u8>,
    buf: Vec<u8>,
    len: usize,
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpConn {
    pub fn new(addr: SocketAddr, host: &str) -> Self {
        HttpConn {
            addr,
            host: host.to_owned(),
            stream: None,
            req: Vec::with_capacity(1024),
            buf: vec![0; 8 * 1024],
            len: 0,
        }
    }

    /// Sends `POST path` with the given extra header lines (each ending in CRLF) and JSON body.
    /// Reconnects once when a kept-alive connection turns out to be closed.
    pub async fn post(
        &mut self,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> anyhow::Result<Response> {
        self.req.clear();
        self.req.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n",
                self.host,
                body.len()
            )
            .as_bytes(),
        );
        self.req.extend_from_slice(body);
        let reused = self.stream.is_some();
        match self.roundtrip().await {
            Ok(r) => Ok(r),
            Err(_) if reused => {
                self.stream = None;
                self.roundtrip().await
            }
            Err(e) => Err(e),
        }
    }

    async fn roundtrip(&mut self) -> anyhow::Result<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .context("http connect")?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.len = 0;
        }
        let res = self.exchange().await;
        if res.is_err() {
            self.stream = None;
        }
        res
    }

    async fn exchange(&mut self) -> anyhow::Result<Response> {
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(&self.req).await?;
        let head_end = loop {
            if let Some(p) = find(&self.buf[..self.len], b"\r\n\r\n") {
                break p + 4;
            }
            if self.len == self.buf.len() {
                bail!("response headers too large");
            }
            let n = stream.read(&mut self.buf[self.len..]).await?;
            if n == 0 {
                bail!("connection closed before response");
            }
            self.len += n;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("non-UTF-8 headers")?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("bad status line")?;
        let mut content_length = None;
        let mut chunked = false;
        let mut close = false;
        for line in head.split("\r\n").skip(1) {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.eq_ignore_ascii_case("close");
            }
        }
        self.buf.copy_within(head_end..self.len, 0);
        self.len -= head_end;
        let body = if chunked {
            self.read_chunked().await?
        } else {
            let n = content_length.unwrap_or(0);
            self.read_exact_body(n).await?
        };
        if close {
            self.stream = None;
        }
        Ok(Response { status, body })
    }

    async fn read_exact_body(&mut self, n: usize) -> anyhow::Result<Vec<u8>> {
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        let stream = self.stream.as_mut().expect("connected");
        while self.len < n {
            let k = stream.read(&mut self.buf[self.len..]).await?;
            if k == 0 {
                bail!("connection closed inside body");
            }
            self.len += k;
        }
        let body = self.buf[..n].to_vec();
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
        Ok(body)
    }

    async fn read_chunked(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = self.read_until_crlf().await?;
            let size_str = std::str::from_utf8(&self.buf[..line_end])?
                .split(';')
                .next()
                .unwrap_or("");
            let size = usize::from_str_radix(size_str.trim(), 16).context("bad chunk size")?;
            self.buf.copy_within(line_end + 2..self.len, 0);
            self.len -= line_end + 2;
            let chunk = self.read_exact_body(size + 2).await?;
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }

    async fn read_until_crlf(&mut self) -> anyhow::Result<usize> {
        let stream = self.stream.as_mut().expect("connected");
        loop {
            if let Some(p) = find(&self.buf[..self.len], b"\r\n") {
                return Ok(p);
            }
            if self.len == self.buf.len() {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
            let k = stream.read(&mut self.buf[self.len..]).await?;
            if k == 0 {
                bail!("connection closed inside chunked body");
            }
            self.len += k;
        }
    }
}
