//! The DATA phase as a byte-fed state machine (RFC 5321 §4.1.1.4, §4.5.2).
//!
//! It finds the end of data — `CRLF . CRLF` and nothing else — removes dot
//! stuffing, counts the size, and remembers whether any line ended in a bare
//! CR or bare LF. Such a message is refused as a whole: accepting bare line
//! endings is what made the 2023 SMTP smuggling attacks possible, and a
//! message that contains none can be stored with plain LF line endings
//! (as Maildir expects) and turned back into CRLF losslessly.
//!
//! How the message is kept, so that memory is bounded and given back: up to
//! [`SMALL`] bytes (most mail) in an ordinary buffer; past that, moved
//! once into one buffer reserved for the whole message (the size limit,
//! and at least [`RESERVE_MIN`]), which is then never copied or grown.
//! Linux backs a reservation with memory only where bytes are written, so
//! a session holds what it received; and a reservation that large is, on
//! glibc and musl alike, a mapping of its own (glibc serves requests over
//! its largest dynamic mmap threshold, 32 MiB on 64-bit, with `mmap`,
//! mallopt(3)), given back to the system the moment the message is freed,
//! where smaller buffers, freed into the allocator's heaps, would stay
//! there after a peak. The `Received:` header is put in front at the end
//! ([`MessageBody::into_vec`]), in the room reserved for it.
//!
//! No I/O happens here; the session feeds whatever each read returned.

/// Message data up to this many bytes is kept in an ordinary buffer.
pub const SMALL: usize = 256 * 1024;

/// Past [`SMALL`], message data moves into one buffer reserved for the
/// whole message, at least this many bytes (address space, not memory):
/// over glibc's `DEFAULT_MMAP_THRESHOLD_MAX` (32 MiB on 64-bit), so it is
/// always its own mapping, returned to the system when freed.
pub const RESERVE_MIN: usize = 33 * 1024 * 1024;

/// Room kept in the reservation for the header prepended at the end.
const HEADER_ROOM: usize = 8 * 1024;

/// The reservation for a large message could not be made (address space
/// or, with strict overcommit, memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoMemory;

/// A message's data as it arrived.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MessageBody {
    data: Vec<u8>,
    /// The most it will hold: the size limit.
    max: usize,
}

impl MessageBody {
    fn new(max: usize) -> MessageBody {
        MessageBody {
            data: Vec::new(),
            max,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), NoMemory> {
        let need = self.data.len() + bytes.len();
        if need > self.data.capacity() {
            let target = if need <= SMALL {
                (self.data.capacity() * 2).clamp(4096, SMALL).max(need)
            } else {
                (self.max.saturating_add(HEADER_ROOM))
                    .max(RESERVE_MIN)
                    .max(need)
            };
            let mut grown = Vec::new();
            grown.try_reserve_exact(target).map_err(|_| NoMemory)?;
            grown.extend_from_slice(&self.data);
            self.data = grown;
        }
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    /// The message's size in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// `prefix` followed by the message, in the same buffer (the message
    /// moved up once, in place).
    pub fn into_vec(self, prefix: &[u8]) -> Vec<u8> {
        let mut data = self.data;
        let len = data.len();
        data.resize(len + prefix.len(), 0);
        data.copy_within(..len, prefix.len());
        data[..prefix.len()].copy_from_slice(prefix);
        data
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (the CRLF after DATA counts as one).
    LineStart,
    /// Inside a line.
    Text,
    /// Saw CR inside a line.
    Cr,
    /// Saw "." at the start of a line.
    Dot,
    /// Saw ".CR" at the start of a line.
    DotCr,
}

/// Collects one message's data.
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
    body: MessageBody,
    max_size: usize,
    size: usize,
    bare_newline: bool,
    no_memory: bool,
}

/// What the decoder found once the end of data arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum DataOutcome {
    /// The message, with CRLF line endings, dots unstuffed.
    Message(MessageBody),
    /// Larger than the limit; the data was read and dropped.
    TooBig,
    /// A line ended in a bare CR or LF.
    BareNewline,
    /// The message could not be kept (see [`NoMemory`]); the data was read
    /// and dropped.
    NoMemory,
}

impl DataDecoder {
    pub fn new(max_size: usize) -> DataDecoder {
        DataDecoder {
            state: State::LineStart,
            body: MessageBody::new(max_size),
            max_size,
            size: 0,
            bare_newline: false,
            no_memory: false,
        }
    }

    /// Feeds bytes read from the client. Returns `Some(n)` once the end of
    /// data was found, `n` being how many input bytes belonged to the
    /// message (the rest are the next commands); `None` means keep reading.
    pub fn feed(&mut self, input: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            i += 1;
            match self.state {
                State::LineStart => match b {
                    b'.' => self.state = State::Dot,
                    _ => self.text(b),
                },
                State::Text => {
                    // Copy the run up to the next CR or LF in one go: most
                    // of a message is plain text.
                    let start = i - 1;
                    let run = input[start..]
                        .iter()
                        .position(|&c| c == b'\r' || c == b'\n')
                        .unwrap_or(input.len() - start);
                    if run > 0 {
                        self.emit(&input[start..start + run]);
                        i = start + run;
                    } else {
                        self.text(b);
                    }
                }
                State::Cr => {
                    if b == b'\n' {
                        self.emit(b"\r\n");
                        self.state = State::LineStart;
                    } else {
                        self.bare_newline = true;
                        self.emit(b"\r");
                        self.text(b);
                    }
                }
                // RFC 5321 §4.5.2: a leading dot is removed; the line goes on.
                State::Dot => match b {
                    b'\r' => self.state = State::DotCr,
                    _ => self.text(b),
                },
                State::DotCr => {
                    if b == b'\n' {
                        return Some(i);
                    }
                    self.bare_newline = true;
                    self.emit(b"\r");
                    self.text(b);
                }
            }
        }
        None
    }

    fn text(&mut self, b: u8) {
        match b {
            b'\r' => self.state = State::Cr,
            // Only CRLF starts a line: after a bare LF a dot is just text, so
            // `LF . CRLF` can never end the data (RFC 5321 §4.1.1.4).
            b'\n' => {
                self.bare_newline = true;
                self.emit(b"\n");
                self.state = State::Text;
            }
            _ => {
                self.emit(&[b]);
                self.state = State::Text;
            }
        }
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.size += bytes.len();
        if self.size <= self.max_size && !self.no_memory {
            if self.body.push(bytes).is_err() {
                self.no_memory = true;
                self.body = MessageBody::default();
            }
        } else if self.body.data.capacity() > 0 {
            // Too big: the rest is only counted, and what was kept is freed.
            self.body = MessageBody::default();
        }
    }

    /// Bytes of message data kept so far (nothing once the message is
    /// over the size limit): what the session charges to the budget.
    pub fn kept(&self) -> usize {
        self.body.len()
    }

    /// Whether the message could not be kept for want of memory.
    pub fn out_of_memory(&self) -> bool {
        self.no_memory
    }

    /// Call once `feed` returned `Some`.
    pub fn finish(self) -> DataOutcome {
        if self.size > self.max_size {
            DataOutcome::TooBig
        } else if self.no_memory {
            DataOutcome::NoMemory
        } else if self.bare_newline {
            DataOutcome::BareNewline
        } else {
            DataOutcome::Message(self.body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` split at every possible point into two or three chunks
    /// and checks the outcome and consumed length never depend on the split.
    fn decode_all_splits(input: &[u8], max: usize) -> (DataOutcome, usize) {
        let whole = decode(&[input], max);
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let got = decode(&[&input[..i], &input[i..j], &input[j..]], max);
                assert_eq!(
                    got,
                    whole,
                    "split at {i},{j} of {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
        whole
    }

    fn message(out: DataOutcome) -> Vec<u8> {
        match out {
            DataOutcome::Message(body) => body.into_vec(b""),
            other => panic!("not a message: {other:?}"),
        }
    }

    fn decode(chunks: &[&[u8]], max: usize) -> (DataOutcome, usize) {
        let mut d = DataDecoder::new(max);
        let mut offset = 0;
        for chunk in chunks {
            if let Some(n) = d.feed(chunk) {
                return (d.finish(), offset + n);
            }
            offset += chunk.len();
        }
        panic!("no end of data in {:?}", chunks)
    }

    #[test]
    fn ends_only_on_crlf_dot_crlf_and_unstuffs() {
        let input = b"Subject: hi\r\n\r\n..leading dot\r\n.x\r\nend\r\n.\r\nQUIT\r\n";
        let (out, n) = decode_all_splits(input, 1000);
        assert_eq!(
            message(out),
            b"Subject: hi\r\n\r\n.leading dot\r\nx\r\nend\r\n"
        );
        assert_eq!(&input[n..], b"QUIT\r\n");
    }

    #[test]
    fn empty_message_ends_at_once() {
        let (out, n) = decode_all_splits(b".\r\n", 10);
        assert_eq!((message(out), n), (Vec::new(), 3));
    }

    #[test]
    fn refuses_bare_lf_and_bare_cr_including_smuggling_attempts() {
        let cases: &[&[u8]] = &[
            b"a\nb\r\n.\r\n",
            b"a\rb\r\n.\r\n",
            // The 2023 smuggling shapes: a fake end of data, then a second transaction.
            b"text\r\n\n.\nMAIL FROM:<x@y.test>\r\n.\r\n",
            b"text\r\n.\nRCPT TO:<a@b.test>\r\n.\r\n",
            b"text\n.\r\nDATA\r\n.\r\n",
            b"text\r\n.\rX\r\n.\r\n",
            b"text\r\r\n.\r\n",
        ];
        for input in cases {
            let (out, n) = decode_all_splits(input, 1000);
            assert_eq!(
                out,
                DataOutcome::BareNewline,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(
                n,
                input.len(),
                "must read to the real end: {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn oversize_data_is_read_to_the_end_then_refused() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
        let (out, n) = decode(&[&input], 100);
        assert_eq!(out, DataOutcome::TooBig);
        assert_eq!(&input[n..], b"NOOP\r\n");
        // Exactly at the limit is fine.
        let (out, _) = decode(&[b"12345678\r\n.\r\n"], 10);
        assert_eq!(message(out), b"12345678\r\n");
    }

    #[test]
    fn a_large_message_moves_once_into_one_reservation_that_never_grows() {
        let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstu\r\n";
        let mut input = Vec::new();
        while input.len() < SMALL * 5 {
            input.extend_from_slice(line);
        }
        let expected = input.clone();
        input.extend_from_slice(b".\r\n");
        let mut d = DataDecoder::new(10 << 20);
        let mut fed = 0;
        let mut done = None;
        let mut reservation = None;
        for piece in input.chunks(10_007) {
            if let Some(n) = d.feed(piece) {
                done = Some(fed + n);
                break;
            }
            fed += piece.len();
            // A CR at the end of a read waits for its LF.
            assert!(fed - d.kept() <= 1, "{fed} fed, {} kept", d.kept());
            let cap = d.body.data.capacity();
            if d.kept() <= SMALL {
                assert!(
                    cap <= SMALL,
                    "a small message stays in a small buffer: {cap}"
                );
            } else {
                let here = (d.body.data.as_ptr(), cap);
                assert!(cap >= RESERVE_MIN, "{cap}");
                assert_eq!(
                    *reservation.get_or_insert(here),
                    here,
                    "never moved or grown"
                );
            }
        }
        assert_eq!(done, Some(input.len()));
        let DataOutcome::Message(body) = d.finish() else {
            panic!("not a message")
        };
        assert_eq!(body.len(), expected.len());
        let joined = body.into_vec(b"Received: x\r\n");
        assert_eq!(
            Some((joined.as_ptr(), joined.capacity())),
            reservation,
            "the header goes into the same buffer"
        );
        assert_eq!(&joined[..13], b"Received: x\r\n");
        assert_eq!(&joined[13..], &expected[..]);
    }

    #[test]
    fn a_reservation_that_cannot_be_made_drops_the_message_and_says_so() {
        let mut d = DataDecoder::new(usize::MAX / 2);
        assert_eq!(d.feed(&vec![b'x'; SMALL]), None);
        assert!(!d.out_of_memory());
        assert_eq!(d.feed(b"more"), None);
        assert!(d.out_of_memory());
        assert_eq!(d.kept(), 0);
        assert_eq!(d.feed(b"\r\n.\r\n"), Some(5));
        assert_eq!(d.finish(), DataOutcome::NoMemory);
    }

    #[test]
    fn an_oversize_message_keeps_nothing() {
        let mut d = DataDecoder::new(SMALL * 2);
        assert_eq!(d.feed(&vec![b'x'; SMALL * 2 - 10]), None);
        assert_eq!(d.kept(), SMALL * 2 - 10);
        assert_eq!(d.feed(&[b'x'; 100]), None);
        assert_eq!(d.kept(), 0);
        assert_eq!(d.body.data.capacity(), 0, "freed");
        assert_eq!(d.feed(b"\r\n.\r\n"), Some(5));
        assert_eq!(d.finish(), DataOutcome::TooBig);
    }
}
