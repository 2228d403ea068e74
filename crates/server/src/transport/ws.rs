//! WebSocket framing (RFC 6455), server side, written for this server's needs:
//! frames are parsed straight out of the connection's read buffer, and outbound frames are
//! appended to one write buffer from borrowed parts, so a `data` frame costs no allocation.
//! No extensions are negotiated (permessage-deflate is declined, as RFC 6455 allows).

use bytes::{Buf, BytesMut};
use sha1::{Digest, Sha1};

/// Most room reserved ahead for a frame still arriving.
const FRAME_RESERVE_STEP: usize = 64 * 1024;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes Herald sends.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    /// The connection's outbound queue overflowed: it could not keep up with its subscriptions.
    pub const SLOW_CONSUMER: u16 = 4008;

    /// Whether a peer may send `code` in a close frame (RFC 6455 §7.4 and the IANA registry):
    /// the defined codes 1000–1003 and 1007–1014, and 3000–4999 for libraries and
    /// applications. 1004 is reserved, 1005, 1006 and 1015 must never be sent, and the rest of
    /// 0–2999 is unassigned: any of those is a protocol error, not something to echo back.
    pub fn valid_from_peer(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(client_key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    herald_protocol::auth::base64_encode(&h.finalize())
}

/// A complete message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (already checked to be UTF-8).
    Text(String),
    Binary,
    Ping(Vec<u8>),
    Pong,
    /// A close frame: its code, already checked to be one a peer may send; `None` when it had
    /// no payload.
    Close(Option<u16>),
}

/// A violation that ends the connection, with the close code to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("message larger than {0} bytes")]
    TooBig(usize),
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
}

impl FrameError {
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => close::PROTOCOL_ERROR,
            FrameError::TooBig(_) => close::TOO_BIG,
            FrameError::InvalidUtf8 => close::INVALID_PAYLOAD,
        }
    }
}

/// Reassembles client messages from the bytes read so far.
#[derive(Debug, Default)]
pub struct Reader {
    /// Opcode and payload of a fragmented message in progress.
    partial: Option<(u8, Vec<u8>)>,
}

impl Reader {
    /// Whether a fragmented message has begun and not ended.
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }
}

impl Reader {
    /// Takes the next complete message out of `buf`, or `None` if more bytes are needed.
    /// `max_message` bounds a message (and so the buffer a client can make us hold).
    pub fn next(
        &mut self,
        buf: &mut BytesMut,
        max_message: usize,
    ) -> Result<Option<Message>, FrameError> {
        loop {
            let Some(frame) = parse_frame(buf, max_message)? else {
                return Ok(None);
            };
            let Frame {
                fin,
                opcode,
                payload,
            } = frame;
            match opcode {
                OP_PING => return Ok(Some(Message::Ping(payload))),
                OP_PONG => return Ok(Some(Message::Pong)),
                OP_CLOSE => return close_code(&payload).map(|code| Some(Message::Close(code))),
                OP_TEXT | OP_BINARY => {
                    if self.partial.is_some() {
                        return Err(FrameError::Protocol("new message inside a fragmented one"));
                    }
                    if fin {
                        return finish(opcode, payload).map(Some);
                    }
                    self.partial = Some((opcode, payload));
                }
                OP_CONTINUATION => {
                    let Some((op, mut data)) = self.partial.take() else {
                        return Err(FrameError::Protocol("continuation without a message"));
                    };
                    if data.len() + payload.len() > max_message {
                        return Err(FrameError::TooBig(max_message));
                    }
                    data.extend_from_slice(&payload);
                    if fin {
                        return finish(op, data).map(Some);
                    }
                    self.partial = Some((op, data));
                }
                _ => return Err(FrameError::Protocol("unknown opcode")),
            }
        }
    }
}

/// The code of a close frame's payload (RFC 6455 §5.5.1): empty, or a valid code and a UTF-8
/// reason.
fn close_code(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("a close frame with half a code")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close::valid_from_peer(code) {
                return Err(FrameError::Protocol("a close code a peer may not send"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(FrameError::InvalidUtf8);
            }
            Ok(Some(code))
        }
    }
}

fn finish(opcode: u8, payload: Vec<u8>) -> Result<Message, FrameError> {
    if opcode == OP_BINARY {
        return Ok(Message::Binary);
    }
    String::from_utf8(payload)
        .map(Message::Text)
        .map_err(|_| FrameError::InvalidUtf8)
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// Parses one frame if `buf` holds all of it, unmasking the payload.
fn parse_frame(buf: &mut BytesMut, max_message: usize) -> Result<Option<Frame>, FrameError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(FrameError::Protocol(
            "reserved bits set without an extension",
        ));
    }
    let opcode = b0 & 0x0f;
    if b1 & 0x80 == 0 {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    let (len, header) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (u64::from_be_bytes(a), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode >= 0x8 && (len > 125 || !fin) {
        return Err(FrameError::Protocol(
            "control frames are short and unfragmented",
        ));
    }
    if len > max_message as u64 {
        return Err(FrameError::TooBig(max_message));
    }
    let len = len as usize;
    let Some(mask) = buf.get(header..header + 4) else {
        return Ok(None);
    };
    let mask = [mask[0], mask[1], mask[2], mask[3]];
    let start = header + 4;
    if buf.len() < start + len {
        // Room for the frame in large steps, but not its declared length at once: a client that
        // declares a megabyte and stalls then holds only about what it sent (the buffer doubles
        // as more arrives).
        buf.reserve((start + len - buf.len()).min(FRAME_RESERVE_STEP));
        return Ok(None);
    }
    buf.advance(start);
    let mut payload = buf.split_to(len).to_vec();
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
    Ok(Some(Frame {
        fin,
        opcode,
        payload,
    }))
}

/// Appends one unmasked, final frame whose payload is the concatenation of `parts`.
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let header = FrameHeader::new(opcode, len);
    out.extend_from_slice(header.as_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// An unmasked frame's header (the server never masks), kept on the stack for vectored writes.
#[derive(Debug, Clone, Copy)]
pub struct FrameHeader {
    bytes: [u8; 10],
    len: u8,
}

impl FrameHeader {
    pub fn new(opcode: u8, payload: usize) -> FrameHeader {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x80 | opcode;
        let len = if payload < 126 {
            bytes[1] = payload as u8;
            2
        } else if let Ok(short) = u16::try_from(payload) {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&short.to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(payload as u64).to_be_bytes());
            10
        };
        FrameHeader { bytes, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// Appends a close frame with a code and a short reason.
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    // Control frames carry at most 125 bytes: 2 for the code, 123 for the reason.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = reason.get(..end).unwrap_or_default();
    write_frame(out, OP_CLOSE, &[&code.to_be_bytes(), reason.as_bytes()]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 65535 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn reads_whole_fragmented_and_split_messages() {
        let mut r = Reader::default();
        let mut buf = BytesMut::new();
        let big = "x".repeat(70_000);
        let mut bytes = client_frame(true, OP_TEXT, b"hello");
        bytes.extend(client_frame(false, OP_TEXT, b"he"));
        bytes.extend(client_frame(true, OP_PING, b"p"));
        bytes.extend(client_frame(true, OP_CONTINUATION, b"llo"));
        bytes.extend(client_frame(true, OP_TEXT, big.as_bytes()));
        // Feed one byte at a time: every split point must work.
        let mut got = Vec::new();
        for b in bytes {
            buf.extend_from_slice(&[b]);
            while let Some(m) = r.next(&mut buf, 100_000).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(
            got,
            vec![
                Message::Text("hello".into()),
                Message::Ping(b"p".to_vec()),
                Message::Text("hello".into()),
                Message::Text(big),
            ]
        );
    }

    #[test]
    fn refuses_bad_frames() {
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (
                vec![0x81, 0x05, b'h'],
                FrameError::Protocol("client frames must be masked"),
            ),
            (
                client_frame(true, OP_TEXT, &[0xff, 0xfe]),
                FrameError::InvalidUtf8,
            ),
            (
                client_frame(true, OP_CONTINUATION, b"x"),
                FrameError::Protocol("continuation without a message"),
            ),
            (
                client_frame(true, OP_TEXT, &[b'a'; 200]),
                FrameError::TooBig(100),
            ),
            (
                client_frame(false, OP_PING, b""),
                FrameError::Protocol("control frames are short and unfragmented"),
            ),
            (
                client_frame(true, 0x3, b""),
                FrameError::Protocol("unknown opcode"),
            ),
            (
                client_frame(true, OP_CLOSE, &[0x03]),
                FrameError::Protocol("a close frame with half a code"),
            ),
            (
                client_frame(true, OP_CLOSE, &[0x03, 0xe8, 0xff]),
                FrameError::InvalidUtf8,
            ),
        ];
        for code in [
            0u16,
            999,
            1004,
            1005,
            1006,
            1015,
            1016,
            2999,
            5000,
            u16::MAX,
        ] {
            let mut buf = BytesMut::from(&client_frame(true, OP_CLOSE, &code.to_be_bytes())[..]);
            assert_eq!(
                Reader::default().next(&mut buf, 100),
                Err(FrameError::Protocol("a close code a peer may not send")),
                "{code}"
            );
        }
        for code in [1000u16, 1003, 1007, 1014, 3000, 4999] {
            let mut buf = BytesMut::from(&client_frame(true, OP_CLOSE, &code.to_be_bytes())[..]);
            assert_eq!(
                Reader::default().next(&mut buf, 100),
                Ok(Some(Message::Close(Some(code))))
            );
        }
        for (bytes, want) in cases {
            let mut buf = BytesMut::from(&bytes[..]);
            assert_eq!(Reader::default().next(&mut buf, 100), Err(want));
        }
    }

    #[test]
    fn writes_frames_with_each_length_form() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let mut out = Vec::new();
            let payload = vec![b'a'; len];
            write_frame(
                &mut out,
                OP_TEXT,
                &[&payload[..len / 2], &payload[len / 2..]],
            );
            let header = out.len() - len;
            assert_eq!(
                header,
                if len < 126 {
                    2
                } else if len < 65536 {
                    4
                } else {
                    10
                }
            );
            assert_eq!(out[0], 0x81);
        }
        let mut out = Vec::new();
        write_close(&mut out, 1000, &"é".repeat(100));
        assert!(out.len() <= 127);
    }
}
