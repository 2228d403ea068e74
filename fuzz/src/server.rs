//! Fuzz checks for `herald-server`: the WebSocket frame reader, the PROXY protocol header, and
//! the configuration loader.

use std::sync::OnceLock;

use bytes::BytesMut;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use herald_server::Config;
use herald_server::transport::ws::{FrameError, Message, Reader};

/// `ws_frame`: the input is `<seed> <max_message: u16 BE> <bytes from the client>`. The bytes go
/// through `Reader::next` twice: all at once, and in chunks whose sizes the seed picks (seed 0:
/// one byte at a time). Both must yield the same messages and the same error: how TCP splits the
/// stream must never change what a client said.
pub fn ws_frame(data: &[u8]) {
    let [seed, hi, lo, stream @ ..] = data else {
        return;
    };
    let max_message = usize::from(u16::from_be_bytes([*hi, *lo]));
    let whole = read_all(&[stream], max_message);
    let chunked = read_all(&chunks(stream, *seed), max_message);
    assert_eq!(whole, chunked);
}

/// What a reader made of a stream.
#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Message>,
    error: Option<FrameError>,
    /// Bytes of an incomplete frame still buffered (0 after an error: the connection is over).
    left: usize,
}

fn read_all(chunks: &[&[u8]], max_message: usize) -> Outcome {
    let mut reader = Reader::default();
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match reader.next(&mut buf, max_message) {
                Ok(Some(m)) => {
                    check_message(&m, max_message);
                    messages.push(m);
                }
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        messages,
                        error: Some(error),
                        left: 0,
                    };
                }
            }
        }
    }
    Outcome {
        messages,
        error: None,
        left: buf.len(),
    }
}

fn check_message(m: &Message, max_message: usize) {
    match m {
        Message::Text(t) => assert!(t.len() <= max_message),
        Message::Ping(p) => assert!(p.len() <= 125),
        Message::Binary | Message::Pong | Message::Close(_) => {}
    }
}

/// Splits `stream` into chunks of 1 to `seed + 1` bytes, sizes drawn from a small LCG.
fn chunks(stream: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = stream;
    let mut state = u32::from(seed);
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let size = 1 + (state >> 16) as usize % (usize::from(seed) + 1);
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        out.push(chunk);
        rest = tail;
    }
    out
}

/// `config`: TOML text layered over the defaults as `Config::load` does, then checked and built
/// as the server does (`Settings::build`), handler code aside: compiling JavaScript is the
/// handler crate's own concern and would start engine threads per input.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The defaults are the same every time: serialize them once.
    static DEFAULTS: OnceLock<Figment> = OnceLock::new();
    let figment = DEFAULTS
        .get_or_init(|| Figment::from(Serialized::defaults(Config::default())))
        .clone()
        .merge(Toml::string(text));
    if let Ok(mut config) = figment.extract::<Config>() {
        for ns in &mut config.namespaces {
            ns.handlers = None;
        }
        // Every problem is reported as text; none may panic on odd values.
        let _ = herald_server::Settings::build(config);
    }
}

/// `proxy_header`: the input is what a trusted proxy sent first. The header reader must never
/// panic, and must never consume a byte past the header: read from the input followed by a
/// marker, it gives the same answer and leaves the marker unread.
pub fn proxy_header(data: &[u8]) {
    use herald_server::transport::proxy::read_header;
    static RT: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    let Some(rt) = RT
        .get_or_init(|| tokio::runtime::Builder::new_current_thread().build().ok())
        .as_ref()
    else {
        return;
    };
    const MARK: &[u8] = b"\x16after";
    let mut alone = data;
    let first = rt.block_on(read_header(&mut alone));
    let mut followed = data.to_vec();
    followed.extend_from_slice(MARK);
    let mut rest = &followed[..];
    let second = rt.block_on(read_header(&mut rest));
    if first.is_ok() {
        assert_eq!(first, second);
        assert!(rest.ends_with(MARK), "read past the header");
    }
}
