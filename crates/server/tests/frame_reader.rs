//! Property tests of the WebSocket frame reader (`transport::ws::Reader`) against a small client
//! encoder written here: masked frames, fragmented messages with control frames between the
//! fragments, and every payload length form (7-bit, 16-bit, 64-bit). However TCP splits the bytes,
//! the same messages come out; arbitrary bytes never panic and every error has its close code;
//! a message larger than the limit is refused, and as soon as its size is known.

use bytes::BytesMut;
use herald_server::transport::ws::{
    FrameError, Message, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, Reader,
    close,
};
use proptest::prelude::*;
use proptest::sample::Index;

/// Larger than any message the well-formed streams carry.
const ROOMY: usize = 1 << 20;

// ---- The client side -------------------------------------------------------------------------

/// How a frame writes its payload length. RFC 6455 asks senders for the shortest form that fits;
/// the reader accepts the longer ones too, which lets short payloads reach every form.
#[derive(Debug, Clone, Copy, PartialEq)]
enum LenForm {
    Short,
    U16,
    U64,
}

/// One frame as a client sends it.
#[derive(Debug, Clone)]
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
    mask: [u8; 4],
    form: LenForm,
}

impl Frame {
    /// Appends the frame's bytes (always masked, as a client's must be).
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(if self.fin { 0x80 } else { 0 } | self.opcode);
        let len = self.payload.len();
        match self.form {
            LenForm::Short => out.push(0x80 | u8::try_from(len).expect("≤ 125 bytes")),
            LenForm::U16 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&u16::try_from(len).expect("≤ 65535 bytes").to_be_bytes());
            }
            LenForm::U64 => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&self.mask);
        out.extend(
            self.payload
                .iter()
                .zip(self.mask.iter().cycle())
                .map(|(b, m)| b ^ m),
        );
    }

    /// Bytes before the payload.
    fn header_len(&self) -> usize {
        match self.form {
            LenForm::Short => 2,
            LenForm::U16 => 4,
            LenForm::U64 => 10,
        }
    }
}

/// Every frame's bytes, one after another.
fn encode_all(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        f.encode(&mut out);
    }
    out
}

/// The length forms that can carry `len` bytes; `pick` chooses one.
fn form_for(len: usize, pick: Index) -> LenForm {
    let mut forms = Vec::new();
    if len <= 125 {
        forms.push(LenForm::Short);
    }
    if len <= usize::from(u16::MAX) {
        forms.push(LenForm::U16);
    }
    forms.push(LenForm::U64);
    *pick.get(&forms)
}

/// Mask and length form of one frame, drawn at random.
#[derive(Debug, Clone)]
struct Wire {
    mask: [u8; 4],
    form: Index,
}

fn wire() -> impl Strategy<Value = Wire> {
    (any::<[u8; 4]>(), any::<Index>()).prop_map(|(mask, form)| Wire { mask, form })
}

impl Wire {
    fn frame(&self, fin: bool, opcode: u8, payload: Vec<u8>) -> Frame {
        let form = form_for(payload.len(), self.form);
        Frame {
            fin,
            opcode,
            payload,
            mask: self.mask,
            form,
        }
    }
}

/// A control frame: ping, pong or close.
#[derive(Debug, Clone)]
enum Control {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// No payload, or a code and a reason.
    Close(Option<(u16, Vec<u8>)>),
}

fn control() -> impl Strategy<Value = (Control, Wire)> {
    let c = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(Control::Ping),
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(Control::Pong),
        // Codes a peer may send (RFC 6455 §7.4) with UTF-8 reasons; others are refused and
        // covered by the arbitrary-bytes property.
        prop::option::of((
            prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999],
            "[a-z é]{0,40}".prop_map(String::into_bytes),
        ))
        .prop_map(Control::Close),
    ];
    (c, wire())
}

impl Control {
    fn frame(&self, wire: &Wire) -> Frame {
        let (opcode, payload) = match self {
            Control::Ping(p) => (OP_PING, p.clone()),
            Control::Pong(p) => (OP_PONG, p.clone()),
            Control::Close(None) => (OP_CLOSE, Vec::new()),
            Control::Close(Some((code, reason))) => {
                let mut p = code.to_be_bytes().to_vec();
                p.extend_from_slice(reason);
                (OP_CLOSE, p)
            }
        };
        wire.frame(true, opcode, payload)
    }

    fn message(&self) -> Message {
        match self {
            Control::Ping(p) => Message::Ping(p.clone()),
            Control::Pong(_) => Message::Pong,
            Control::Close(c) => Message::Close(c.as_ref().map(|(code, _)| *code)),
        }
    }
}

/// A text or binary message, cut into fragments, with control frames between fragments.
#[derive(Debug, Clone)]
struct Data {
    text: bool,
    payload: Vec<u8>,
    /// Where the payload is cut (any byte, even inside a UTF-8 character).
    cuts: Vec<Index>,
    /// One per fragment (extra ones unused).
    wires: Vec<Wire>,
    /// Control frames sent after the fragment the index picks (the last fragment excluded).
    between: Vec<(Index, Control, Wire)>,
}

fn data(payload: BoxedStrategy<(bool, Vec<u8>)>) -> impl Strategy<Value = Data> {
    (
        payload,
        prop::collection::vec(any::<Index>(), 0..4),
        prop::collection::vec(wire(), 5),
        prop::collection::vec((any::<Index>(), control()), 0..3),
    )
        .prop_map(|((text, payload), cuts, wires, between)| Data {
            text,
            payload,
            cuts,
            wires,
            between: between.into_iter().map(|(at, (c, w))| (at, c, w)).collect(),
        })
}

fn small_payload() -> BoxedStrategy<(bool, Vec<u8>)> {
    prop_oneof![
        "(?s).{0,200}".prop_map(|s: String| (true, s.into_bytes())),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| (false, b)),
    ]
    .boxed()
}

/// Past 65535 bytes, so the shortest length form is the 64-bit one.
fn big_payload() -> BoxedStrategy<(bool, Vec<u8>)> {
    (65_536usize..70_000, "(?s).{1,8}")
        .prop_map(|(len, unit)| {
            let mut s = unit.repeat(len / unit.len() + 1);
            s.truncate(s.floor_char_boundary(len));
            (true, s.into_bytes())
        })
        .boxed()
}

impl Data {
    fn fragments(&self) -> Vec<Vec<u8>> {
        let mut at: Vec<usize> = self
            .cuts
            .iter()
            .map(|i| i.index(self.payload.len() + 1))
            .collect();
        at.sort_unstable();
        let mut pieces = Vec::new();
        let mut from = 0;
        for to in at {
            pieces.push(self.payload[from..to].to_vec());
            from = to;
        }
        pieces.push(self.payload[from..].to_vec());
        pieces
    }

    /// Its frames, and the messages a reader should return for them, in order.
    fn frames(&self, frames: &mut Vec<Frame>, messages: &mut Vec<Message>) {
        let fragments = self.fragments();
        let n = fragments.len();
        for (k, piece) in fragments.into_iter().enumerate() {
            let opcode = match (k, self.text) {
                (0, true) => OP_TEXT,
                (0, false) => OP_BINARY,
                _ => OP_CONTINUATION,
            };
            frames.push(self.wires[k % self.wires.len()].frame(k + 1 == n, opcode, piece));
            if k + 1 < n {
                for (at, c, w) in &self.between {
                    if at.index(n - 1) == k {
                        frames.push(c.frame(w));
                        messages.push(c.message());
                    }
                }
            }
        }
        messages.push(if self.text {
            Message::Text(String::from_utf8(self.payload.clone()).expect("text is UTF-8"))
        } else {
            Message::Binary
        });
        // With one fragment there is no "between": send the controls before the message.
        if n == 1 {
            let last = messages.pop().expect("the message");
            let data = frames.pop().expect("its frame");
            for (_, c, w) in &self.between {
                frames.push(c.frame(w));
                messages.push(c.message());
            }
            frames.push(data);
            messages.push(last);
        }
    }
}

/// One thing a client sends: a data message (perhaps fragmented) or a lone control frame.
#[derive(Debug, Clone)]
enum Item {
    Data(Data),
    Control(Control, Wire),
}

fn stream(payload: fn() -> BoxedStrategy<(bool, Vec<u8>)>, n: usize) -> BoxedStrategy<Vec<Item>> {
    let item = prop_oneof![
        3 => data(payload()).prop_map(Item::Data),
        1 => control().prop_map(|(c, w)| Item::Control(c, w)),
    ];
    prop::collection::vec(item, 1..=n).boxed()
}

/// The frames of a stream and the messages they should decode to.
fn frames_of(items: &[Item]) -> (Vec<Frame>, Vec<Message>) {
    let (mut frames, mut messages) = (Vec::new(), Vec::new());
    for item in items {
        match item {
            Item::Data(d) => d.frames(&mut frames, &mut messages),
            Item::Control(c, w) => {
                frames.push(c.frame(w));
                messages.push(c.message());
            }
        }
    }
    (frames, messages)
}

// ---- The server side -------------------------------------------------------------------------

/// What the reader made of a stream fed in chunks.
#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Message>,
    error: Option<FrameError>,
    /// Bytes fed when the error came.
    error_at: Option<usize>,
    /// Bytes still buffered at the end (an incomplete frame).
    left: usize,
}

/// Feeds `bytes` to a fresh reader chunk by chunk (cut before each offset in `cuts`), taking
/// every message out after each chunk, and stopping at the first error.
fn feed(bytes: &[u8], cuts: &[usize], max_message: usize) -> Outcome {
    let mut reader = Reader::default();
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain([bytes.len()].iter()) {
        buf.extend_from_slice(&bytes[from..to]);
        from = to;
        loop {
            match reader.next(&mut buf, max_message) {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        messages,
                        error: Some(e),
                        error_at: Some(to),
                        left: buf.len(),
                    };
                }
            }
        }
    }
    Outcome {
        messages,
        error: None,
        error_at: None,
        left: buf.len(),
    }
}

/// Cut offsets into `len` bytes from random picks, sorted, without duplicates.
fn cuts(picks: &[Index], len: usize) -> Vec<usize> {
    let mut at: Vec<usize> = picks.iter().map(|i| i.index(len + 1)).collect();
    at.sort_unstable();
    at.dedup();
    at
}

/// Every byte its own chunk.
fn bytewise(len: usize) -> Vec<usize> {
    (1..len).collect()
}

/// The same messages and error whether the bytes come at once or in any chunks. (Where an error
/// is noticed may differ: a split stream is noticed at the cut.)
fn same_outcome(whole: &Outcome, split: &Outcome) -> Result<(), TestCaseError> {
    prop_assert_eq!(&whole.messages, &split.messages);
    prop_assert_eq!(&whole.error, &split.error);
    if whole.error.is_none() {
        prop_assert_eq!(whole.left, split.left);
    }
    Ok(())
}

fn check_close_code(e: &FrameError) -> Result<(), TestCaseError> {
    let want = match e {
        FrameError::Protocol(_) => close::PROTOCOL_ERROR,
        FrameError::TooBig(_) => close::TOO_BIG,
        FrameError::InvalidUtf8 => close::INVALID_PAYLOAD,
    };
    prop_assert_eq!(e.close_code(), want);
    Ok(())
}

fn check_well_formed(items: &[Item], picks: &[Index]) -> Result<(), TestCaseError> {
    let (frames, expected) = frames_of(items);
    let bytes = encode_all(&frames);
    let whole = feed(&bytes, &[], ROOMY);
    prop_assert_eq!(&whole.messages, &expected);
    prop_assert_eq!(&whole.error, &None);
    prop_assert_eq!(whole.left, 0);
    same_outcome(&whole, &feed(&bytes, &cuts(picks, bytes.len()), ROOMY))?;
    if bytes.len() <= 8192 {
        same_outcome(&whole, &feed(&bytes, &bytewise(bytes.len()), ROOMY))?;
    }
    Ok(())
}

// ---- Arbitrary input -------------------------------------------------------------------------

/// A frame with every header field up for grabs: reserved bits, any opcode, unmasked, any length
/// form, a payload that may not be UTF-8, and a length that may lie about the payload.
fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        // Mostly sound headers, so that streams get past their first frames.
        prop::bool::weighted(0.8),
        prop_oneof![19 => Just(0u8), 1 => 1u8..8],
        prop_oneof![
            9 => prop::sample::select(vec![OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG]),
            1 => 0u8..16,
        ],
        prop::bool::weighted(0.97),
        any::<Index>(),
        prop_oneof![
            3 => "(?s).{0,40}".prop_map(String::into_bytes),
            1 => prop::collection::vec(any::<u8>(), 0..200),
        ],
        any::<[u8; 4]>(),
        prop::option::weighted(0.05, any::<u64>()),
    )
        .prop_map(|(fin, rsv, opcode, masked, form, payload, mask, lie)| {
            let f = Frame {
                fin,
                opcode,
                mask,
                form: form_for(payload.len(), form),
                payload,
            };
            let mut out = Vec::new();
            f.encode(&mut out);
            out[0] |= rsv << 4;
            if !masked {
                out[1] &= 0x7f;
            }
            if let Some(len) = lie {
                // Overwrite the length field with any value its form can hold.
                match f.form {
                    LenForm::Short => out[1] = (out[1] & 0x80) | (len as u8 % 126),
                    LenForm::U16 => out[2..4].copy_from_slice(&(len as u16).to_be_bytes()),
                    LenForm::U64 => out[2..10].copy_from_slice(&len.to_be_bytes()),
                }
            }
            out
        })
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        prop::collection::vec(any_frame(), 0..6).prop_map(|f| f.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn split_streams_decode_like_whole_ones(
        items in stream(small_payload, 6),
        picks in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        check_well_formed(&items, &picks)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_have_close_codes(
        bytes in any_bytes(),
        picks in prop::collection::vec(any::<Index>(), 0..24),
        max_message in prop_oneof![0usize..300, Just(ROOMY)],
    ) {
        let whole = feed(&bytes, &[], max_message);
        for split in [feed(&bytes, &cuts(&picks, bytes.len()), max_message), feed(&bytes, &bytewise(bytes.len()), max_message)] {
            same_outcome(&whole, &split)?;
        }
        if let Some(e) = &whole.error {
            check_close_code(e)?;
        }
        for m in &whole.messages {
            match m {
                Message::Text(t) => prop_assert!(t.len() <= max_message),
                Message::Ping(p) => prop_assert!(p.len() <= 125),
                Message::Binary | Message::Pong | Message::Close(_) => {}
            }
        }
    }

    /// A data message of `n` bytes is read under a limit of `n` and refused under `n - 1`, by the
    /// end of the first frame that takes it past the limit (by that frame's header when the frame
    /// alone is too big), so a client cannot make the server buffer more.
    #[test]
    fn a_message_over_the_limit_is_refused_early(message in data(small_payload())) {
        let message = Data { between: Vec::new(), ..message };
        let (frames, expected) = frames_of(&[Item::Data(message.clone())]);
        let bytes = encode_all(&frames);
        let n = message.payload.len();
        prop_assert_eq!(feed(&bytes, &bytewise(bytes.len()), n).messages, expected);
        prop_assume!(n > 0);
        let max = n - 1;
        let refused = feed(&bytes, &bytewise(bytes.len()), max);
        prop_assert_eq!(&refused.error, &Some(FrameError::TooBig(max)));
        prop_assert!(refused.messages.is_empty());
        // Where the limit is crossed: the frame's header if it alone is too big, else its end.
        let (mut start, mut total) = (0, 0);
        let mut deadline = bytes.len();
        for f in &frames {
            let end = start + f.header_len() + 4 + f.payload.len();
            total += f.payload.len();
            if f.payload.len() > max {
                deadline = start + f.header_len();
                break;
            }
            if total > max {
                deadline = end;
                break;
            }
            start = end;
        }
        let at = refused.error_at.expect("refused");
        prop_assert!(at <= deadline, "refused after {} bytes, {} were enough", at, deadline);
    }
}

proptest! {
    // Large payloads: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn messages_past_64_kib_use_the_64_bit_form(
        items in stream(big_payload, 2),
        picks in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        check_well_formed(&items, &picks)?;
    }
}

/// Every length form, at the edges of each, decodes the same payload.
#[test]
fn every_length_form_at_its_edges() {
    for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 65_537] {
        let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        for form in [LenForm::Short, LenForm::U16, LenForm::U64] {
            if (form == LenForm::Short && len > 125) || (form == LenForm::U16 && len > 65_535) {
                continue;
            }
            let f = Frame {
                fin: true,
                opcode: OP_TEXT,
                payload: payload.clone(),
                mask: [0x37, 0xfa, 0x21, 0x3d],
                form,
            };
            let mut bytes = Vec::new();
            f.encode(&mut bytes);
            let got = feed(&bytes, &[], ROOMY);
            assert_eq!(
                got.messages,
                vec![Message::Text(String::from_utf8(payload.clone()).unwrap())],
                "{len} bytes in form {form:?}"
            );
            assert_eq!(got.error, None);
        }
    }
}
