//! The DATA phase as a byte-fed state machine (RFC 5321 §4.1.1.4, §4.5.2).
//!
//! It finds the end of data — `CRLF . CRLF` and nothing else — removes dot
//! stuffing, counts the size, and remembers whether any line ended in a bare
//! CR or bare LF. Such a message is refused as a whole: accepting bare line
//! endings is what made the 2023 SMTP smuggling attacks possible, and a
//! message that contains none can be stored with plain LF line endings
//! (as Maildir expects) and turned back into CRLF losslessly.
//!
//! No I/O happens here; the session feeds whatever each read returned.

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
    body: Vec<u8>,
    max_size: usize,
    size: usize,
    bare_newline: bool,
}

/// What the decoder found once the end of data arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum DataOutcome {
    /// The message, with CRLF line endings, dots unstuffed.
    Message(Vec<u8>),
    /// Larger than the limit; the data was read and dropped.
    TooBig,
    /// A line ended in a bare CR or LF.
    BareNewline,
}

impl DataDecoder {
    pub fn new(max_size: usize) -> DataDecoder {
        DataDecoder {
            state: State::LineStart,
            body: Vec::with_capacity(max_size.min(16 * 1024)),
            max_size,
            size: 0,
            bare_newline: false,
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
        if self.size <= self.max_size {
            self.body.extend_from_slice(bytes);
        } else if !self.body.is_empty() {
            self.body = Vec::new();
        }
    }

    /// Call once `feed` returned `Some`.
    pub fn finish(self) -> DataOutcome {
        if self.size > self.max_size {
            DataOutcome::TooBig
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
            out,
            DataOutcome::Message(b"Subject: hi\r\n\r\n.leading dot\r\nx\r\nend\r\n".to_vec())
        );
        assert_eq!(&input[n..], b"QUIT\r\n");
    }

    #[test]
    fn empty_message_ends_at_once() {
        assert_eq!(
            decode_all_splits(b".\r\n", 10),
            (DataOutcome::Message(Vec::new()), 3)
        );
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
        assert_eq!(out, DataOutcome::Message(b"12345678\r\n".to_vec()));
    }
}
