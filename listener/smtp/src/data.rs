//! The DATA framer: finds the end of a message and undoes dot-stuffing.
//!
//! Only the octets CRLF `.` CRLF end the data (RFC 5321 §4.1.1.4). A bare LF or a bare
//! CR anywhere in the data marks the message as refused, and neither can end it, so
//! `\n.\n` or `\n.\r\n` cannot smuggle a second message past us. Errors are reported
//! only at the real end of the data, so the client and server stay in step.

use super::MAX_LINE;

/// The most a `SIZE=` hint may reserve before any data has arrived.
const MAX_RESERVE: u64 = 64 * 1024 * 1024;

/// How the data ended.
#[derive(Debug, PartialEq, Eq)]
pub enum DataOutcome {
    /// The unstuffed message, every line ending in CRLF.
    Complete(Vec<u8>),
    /// More than the size limit arrived; the excess was read and dropped.
    TooBig,
    /// A bare CR or LF was seen (possible SMTP smuggling).
    BareLineEnding,
    /// A line longer than 998 octets (after unstuffing) was seen.
    LineTooLong,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// Inside a line.
    InLine,
    /// After a CR inside (or at the end of) a line.
    Cr,
    /// After a `.` at the start of a line.
    Dot,
    /// After `.` CR at the start of a line.
    DotCr,
}

/// Incremental DATA framer: feed it what the socket gives until it returns an outcome.
#[derive(Debug)]
pub struct DataFramer {
    state: State,
    body: Vec<u8>,
    line_len: usize,
    max_size: usize,
    too_big: bool,
    bare: bool,
    long_line: bool,
}

impl DataFramer {
    /// A framer that refuses messages over `max_size` octets.
    pub fn new(max_size: u64) -> Self {
        Self::with_size_hint(max_size, None)
    }

    /// A framer that reserves room for the client's `SIZE=` estimate up front (at most
    /// `max_size`), so a large message is not copied by repeated growth.
    pub fn with_size_hint(max_size: u64, hint: Option<u64>) -> Self {
        let reserve = hint.map_or(0, |h| h.min(max_size).min(MAX_RESERVE));
        Self {
            state: State::LineStart,
            body: Vec::with_capacity(usize::try_from(reserve).unwrap_or(0)),
            line_len: 0,
            max_size: usize::try_from(max_size).unwrap_or(usize::MAX),
            too_big: false,
            bare: false,
            long_line: false,
        }
    }

    /// Octets of message accepted so far.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    /// Whether no message octet has been accepted yet.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// Consumes octets from `input`; returns how many were used and, at the end of the
    /// data, the outcome. Octets after the end belong to the next command.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<DataOutcome>) {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::InLine {
                i += self.copy_line_run(&input[i..]);
                continue;
            }
            let byte = input[i];
            i += 1;
            if let Some(outcome) = self.step(byte) {
                return (i, Some(outcome));
            }
        }
        (i, None)
    }

    /// Fast path inside a line: copies up to the next CR or LF.
    fn copy_line_run(&mut self, input: &[u8]) -> usize {
        let run = memchr::memchr2(b'\r', b'\n', input).unwrap_or(input.len());
        self.push(&input[..run]);
        if run < input.len() {
            if input[run] == b'\r' {
                self.state = State::Cr;
            } else {
                self.bare = true;
                self.push(b"\n");
            }
            return run + 1;
        }
        run
    }

    fn step(&mut self, byte: u8) -> Option<DataOutcome> {
        match (self.state, byte) {
            (State::LineStart, b'.') => self.state = State::Dot,
            (State::Dot, b'\r') => self.state = State::DotCr,
            (State::DotCr, b'\n') => return Some(self.finish()),
            (State::Cr, b'\n') => {
                self.push(b"\r\n");
                self.line_len = 0;
                self.state = State::LineStart;
            }
            (State::Cr | State::DotCr, _) => {
                // A CR not followed by LF: refuse the message, keep the octets as data.
                self.bare = true;
                self.push(b"\r");
                self.state = State::InLine;
                return self.step(byte);
            }
            (_, b'\r') => self.state = State::Cr,
            (_, b'\n') => {
                self.bare = true;
                self.push(b"\n");
                self.state = State::InLine;
            }
            (_, other) => {
                // At line start `..x` loses its first dot; `.x` does too (RFC 5321 §4.5.2).
                self.push(&[other]);
                self.state = State::InLine;
            }
        }
        None
    }

    fn push(&mut self, octets: &[u8]) {
        if octets != b"\r\n" {
            self.line_len += octets.len();
            if self.line_len > MAX_LINE {
                self.long_line = true;
            }
        }
        if self.too_big || self.body.len() + octets.len() > self.max_size {
            self.too_big = true;
            return;
        }
        self.body.extend_from_slice(octets);
    }

    fn finish(&mut self) -> DataOutcome {
        if self.too_big {
            DataOutcome::TooBig
        } else if self.bare {
            DataOutcome::BareLineEnding
        } else if self.long_line {
            DataOutcome::LineTooLong
        } else {
            DataOutcome::Complete(std::mem::take(&mut self.body))
        }
    }
}

/// Frames a whole buffer at once; for tests, benchmarks and fuzzing.
pub fn frame(input: &[u8], max_size: u64) -> Option<(usize, DataOutcome)> {
    let mut framer = DataFramer::new(max_size);
    let (used, outcome) = framer.feed(input);
    outcome.map(|o| (used, o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(input: &[u8]) -> Vec<u8> {
        match frame(input, 1 << 20) {
            Some((_, DataOutcome::Complete(body))) => body,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ends_on_crlf_dot_crlf_and_returns_the_rest() {
        let (used, outcome) = frame(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n", 100).unwrap();
        assert_eq!(
            outcome,
            DataOutcome::Complete(b"Subject: x\r\n\r\nhi\r\n".to_vec())
        );
        assert_eq!(used, 21);
    }

    #[test]
    fn empty_body() {
        assert_eq!(complete(b".\r\n"), b"");
    }

    #[test]
    fn unstuffs_every_line_including_the_first() {
        assert_eq!(
            complete(b"..first\r\n..\r\n...x\r\n.\r\n"),
            b".first\r\n.\r\n..x\r\n"
        );
    }

    #[test]
    fn bare_lf_and_cr_never_end_data_and_refuse_the_message() {
        for smuggle in [
            &b"a\n.\nMAIL FROM:<x@y>\r\n.\r\n"[..],
            b"a\n.\r\nb\r\n.\r\n",
            b"a\r.\r\nb\r\n.\r\n",
            b"a\r\n.\nb\r\n.\r\n",
        ] {
            let (used, outcome) = frame(smuggle, 100).unwrap();
            assert_eq!(
                outcome,
                DataOutcome::BareLineEnding,
                "{:?}",
                String::from_utf8_lossy(smuggle)
            );
            assert_eq!(used, smuggle.len());
        }
    }

    #[test]
    fn input_split_at_every_offset_gives_the_same_result() {
        let input = b"..a\r\nb\r\n\r\n.\r\nNEXT";
        let whole = frame(input, 100).unwrap();
        for cut in 0..whole.0 {
            let mut framer = DataFramer::new(100);
            let (first, none) = framer.feed(&input[..cut]);
            assert_eq!((first, none), (cut, None), "cut {cut}");
            let (second, outcome) = framer.feed(&input[cut..]);
            assert_eq!((cut + second, outcome.unwrap()), whole, "cut {cut}");
        }
    }

    #[test]
    fn size_limit_reads_to_the_end_then_refuses() {
        let (used, outcome) = frame(b"0123456789\r\n.\r\nNEXT", 5).unwrap();
        assert_eq!((used, outcome), (15, DataOutcome::TooBig));
        assert!(matches!(
            frame(b"0123\r\n.\r\n", 6).unwrap().1,
            DataOutcome::Complete(_)
        ));
    }

    #[test]
    fn line_length_limit_is_998_after_unstuffing() {
        let mut ok = b".".to_vec();
        ok.extend(vec![b'.'; 998]);
        ok.extend_from_slice(b"\r\n.\r\n");
        assert!(matches!(
            frame(&ok, 1 << 20).unwrap().1,
            DataOutcome::Complete(_)
        ));
        let mut long = vec![b'a'; 999];
        long.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(frame(&long, 1 << 20).unwrap().1, DataOutcome::LineTooLong);
    }

    #[test]
    fn incomplete_data_waits() {
        assert!(frame(b"abc\r\n.\r", 100).is_none());
    }
}
