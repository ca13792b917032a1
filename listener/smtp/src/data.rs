//! The DATA framer: finds the end of a message and undoes dot-stuffing.
//!
//! Only the octets CRLF `.` CRLF end the data (RFC 5321 §4.1.1.4). A bare LF or a bare
//! CR anywhere in the data marks the message as refused, and neither can end it, so
//! `\n.\n` or `\n.\r\n` cannot smuggle a second message past us. Errors are reported
//! only at the real end of the data, so the client and server stay in step.

use super::MAX_LINE;

/// The smallest step by which the message buffer grows.
const MIN_GROWTH: usize = 4 * 1024;
/// The largest step by which the message buffer grows: past 1 MiB it grows by 1 MiB
/// at a time (the allocator moves large blocks by remapping pages, not copying), so
/// what a session holds is never more than 1 MiB over what it received.
const MAX_GROWTH: usize = 1024 * 1024;

/// How the data ended.
#[derive(Debug, PartialEq, Eq)]
pub enum DataOutcome {
    /// The unstuffed message, every line ending in CRLF (unless bare line endings
    /// are allowed).
    Complete(Vec<u8>),
    /// More than the size limit arrived; the excess was read and dropped.
    TooBig,
    /// A bare CR or LF was seen (possible SMTP smuggling) and they are denied.
    BareLineEnding,
    /// A line longer than the line length limit (after unstuffing) was seen.
    LineTooLong,
}

/// What to do with a bare CR or LF in message data (KumoMTA's `invalid_line_endings`).
/// Whatever the choice, a bare CR or LF never ends a line for the purpose of finding
/// the end of the data or undoing dot-stuffing, so it cannot smuggle a second message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BareLineEndings {
    /// Refuse the message ([`DataOutcome::BareLineEnding`]).
    #[default]
    Deny,
    /// Keep the octets as they came.
    Allow,
    /// Turn each bare CR or LF into CRLF.
    Fix,
}

/// The limits a [`DataFramer`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataOptions {
    /// Largest message, in octets (after unstuffing).
    pub max_size: u64,
    /// Longest line, in octets without its line ending (after unstuffing).
    pub max_line: usize,
    /// What to do with bare CR or LF.
    pub bare_line_endings: BareLineEndings,
}

impl DataOptions {
    /// `max_size` with RFC 5321's 998-octet lines and bare line endings denied.
    pub fn new(max_size: u64) -> Self {
        Self {
            max_size,
            max_line: MAX_LINE,
            bare_line_endings: BareLineEndings::Deny,
        }
    }
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
///
/// The message buffer starts empty and grows only as octets arrive, in steps of at
/// most 1 MiB, so [`DataFramer::held`] is never more than 1 MiB over the message
/// received so far: a client's `SIZE=` estimate reserves nothing.
#[derive(Debug)]
pub struct DataFramer {
    state: State,
    body: Vec<u8>,
    line_len: usize,
    max_size: usize,
    max_line: usize,
    endings: BareLineEndings,
    too_big: bool,
    bare: bool,
    long_line: bool,
}

impl DataFramer {
    /// A framer that refuses messages over `max_size` octets, lines over 998 octets
    /// and bare line endings.
    pub fn new(max_size: u64) -> Self {
        Self::with_options(DataOptions::new(max_size))
    }

    /// A framer with the given limits.
    pub fn with_options(options: DataOptions) -> Self {
        Self {
            state: State::LineStart,
            body: Vec::new(),
            line_len: 0,
            max_size: usize::try_from(options.max_size).unwrap_or(usize::MAX),
            max_line: options.max_line,
            endings: options.bare_line_endings,
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

    /// Octets of memory the message buffer holds now.
    pub fn held(&self) -> usize {
        self.body.capacity()
    }

    /// The most [`DataFramer::held`] can be after `more` further input octets are fed
    /// (a bare line ending fixed into CRLF counts twice).
    pub fn held_after(&self, more: usize) -> usize {
        let needed = self
            .body
            .len()
            .saturating_add(more.saturating_mul(2))
            .min(self.max_size);
        if needed <= self.body.capacity() {
            return self.body.capacity();
        }
        needed.saturating_add(growth_step(needed))
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
                self.bare_ending(b"\n");
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
                // A CR not followed by LF: a bare CR; the octet after it is data.
                self.bare_ending(b"\r");
                return self.step(byte);
            }
            (_, b'\r') => self.state = State::Cr,
            (_, b'\n') => self.bare_ending(b"\n"),
            (_, other) => {
                // At line start `..x` loses its first dot; `.x` does too (RFC 5321 §4.5.2).
                self.push(&[other]);
                self.state = State::InLine;
            }
        }
        None
    }

    /// A bare CR or LF: refused, kept or fixed. Never a line start (no end of data,
    /// no unstuffing after it).
    fn bare_ending(&mut self, octet: &[u8]) {
        match self.endings {
            BareLineEndings::Deny => {
                self.bare = true;
                self.push(octet);
            }
            BareLineEndings::Allow => self.push(octet),
            BareLineEndings::Fix => {
                self.push(b"\r\n");
                self.line_len = 0;
            }
        }
        self.state = State::InLine;
    }

    fn push(&mut self, octets: &[u8]) {
        if octets != b"\r\n" {
            self.line_len += octets.len();
            if self.line_len > self.max_line {
                self.long_line = true;
            }
        }
        if self.too_big || self.body.len() + octets.len() > self.max_size {
            self.too_big = true;
            return;
        }
        let needed = self.body.len() + octets.len();
        if needed > self.body.capacity() {
            let target = needed.max(self.body.capacity() + growth_step(self.body.capacity()));
            self.body.reserve_exact(target - self.body.len());
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

/// How much the message buffer grows from `capacity`: doubling, 4 KiB to 1 MiB.
fn growth_step(capacity: usize) -> usize {
    capacity.clamp(MIN_GROWTH, MAX_GROWTH)
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

    fn framed(input: &[u8], endings: BareLineEndings) -> DataOutcome {
        let mut framer = DataFramer::with_options(DataOptions {
            bare_line_endings: endings,
            ..DataOptions::new(1 << 20)
        });
        let (used, outcome) = framer.feed(input);
        assert_eq!(used, input.len());
        outcome.unwrap()
    }

    #[test]
    fn bare_line_endings_are_denied_allowed_or_fixed_and_never_end_the_data() {
        let input = b"a\nb\rc\n.\nd\r\n.\r\n";
        assert_eq!(
            framed(input, BareLineEndings::Deny),
            DataOutcome::BareLineEnding
        );
        assert_eq!(
            framed(input, BareLineEndings::Allow),
            DataOutcome::Complete(b"a\nb\rc\n.\nd\r\n".to_vec())
        );
        assert_eq!(
            framed(input, BareLineEndings::Fix),
            DataOutcome::Complete(b"a\r\nb\r\nc\r\n.\r\nd\r\n".to_vec())
        );
    }

    #[test]
    fn the_line_limit_can_be_raised_or_lowered() {
        let mut framer = DataFramer::with_options(DataOptions {
            max_line: 4,
            ..DataOptions::new(100)
        });
        assert_eq!(
            framer.feed(b"abcde\r\n.\r\n").1,
            Some(DataOutcome::LineTooLong)
        );
    }

    #[test]
    fn the_buffer_grows_with_the_data_and_never_by_more_than_one_step() {
        let mut framer = DataFramer::new(64 << 20);
        assert_eq!(framer.held(), 0, "nothing is reserved before data arrives");
        let line = [b'x'; 998];
        let mut fed = 0;
        while fed < 8 << 20 {
            let bound = framer.held_after(1000);
            framer.feed(&line);
            framer.feed(b"\r\n");
            fed += 1000;
            assert!(framer.held() <= bound, "{} > {bound}", framer.held());
            assert!(framer.held() <= framer.len() + MAX_GROWTH + 1000);
        }
    }

    #[test]
    fn incomplete_data_waits() {
        assert!(frame(b"abc\r\n.\r", 100).is_none());
    }
}
