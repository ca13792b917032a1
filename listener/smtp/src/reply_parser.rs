//! Parsing a server's replies off the front of a read buffer (RFC 5321 §4.2), for the
//! outbound client: bytes in, a complete (possibly multi-line) [`Reply`] or "read more".
//!
//! Lines end with CRLF; a bare LF is accepted as a line end too (some servers send it),
//! and the CR is then dropped. Every line of one reply must carry the same code; `-`
//! after the code continues the reply, a space (or nothing) ends it. An RFC 3463
//! enhanced code at the start of the text is taken when its class matches the reply
//! code's first digit (so `250-8BITMIME` or a greeting never lose text), and it is
//! removed from every line that repeats it.

use std::fmt;

use crate::reply::{Enhanced, Reply};

/// Longest reply line accepted, CRLF included. RFC 5321 §4.5.3.1.5 says 512; real servers
/// send longer texts, so this leaves room while still bounding memory.
pub const MAX_REPLY_LINE: usize = 4096;

/// Most lines one reply may have (EHLO replies are the longest, a few dozen lines).
pub const MAX_REPLY_LINES: usize = 256;

/// A reply that breaks RFC 5321 §4.2: the connection cannot be trusted to be in step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// A line does not start with three digits (2-5, 0-5, 0-9) followed by ` `, `-` or
    /// the line end.
    BadCode {
        /// The offending line, lossily decoded and cut to 80 characters.
        line: String,
    },
    /// A continuation line carries another code than the first line.
    MixedCodes {
        /// The first line's code.
        first: u16,
        /// The differing code.
        then: u16,
    },
    /// A line longer than [`MAX_REPLY_LINE`].
    LineTooLong,
    /// More than [`MAX_REPLY_LINES`] lines.
    TooManyLines,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadCode { line } => write!(f, "reply line without a valid code: {line:?}"),
            Self::MixedCodes { first, then } => {
                write!(f, "multi-line reply mixes codes {first} and {then}")
            }
            Self::LineTooLong => write!(f, "reply line longer than {MAX_REPLY_LINE} octets"),
            Self::TooManyLines => write!(f, "reply with more than {MAX_REPLY_LINES} lines"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Parses one reply from the front of `buf`. `Ok(Some((reply, used)))` when a complete
/// reply is there (`used` octets, drop them from the buffer), `Ok(None)` when more bytes
/// are needed, `Err` when the bytes cannot be a reply.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut at = 0;
    let mut code = None;
    let mut texts: Vec<String> = Vec::new();
    loop {
        let rest = &buf[at..];
        let Some(nl) = memchr::memchr(b'\n', &rest[..rest.len().min(MAX_REPLY_LINE)]) else {
            return if rest.len() >= MAX_REPLY_LINE {
                Err(ReplyError::LineTooLong)
            } else {
                Ok(None)
            };
        };
        let raw = &rest[..nl];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let (line_code, last, text) = split_line(line)?;
        match code {
            None => code = Some(line_code),
            Some(first) if first != line_code => {
                return Err(ReplyError::MixedCodes {
                    first,
                    then: line_code,
                });
            }
            Some(_) => {}
        }
        if texts.len() == MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        texts.push(String::from_utf8_lossy(text).into_owned());
        at += nl + 1;
        if last {
            let code = line_code;
            return Ok(Some((with_enhanced(code, texts), at)));
        }
    }
}

/// `(code, is_last_line, text)` of one line without its line end.
fn split_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    let bad = || ReplyError::BadCode {
        line: String::from_utf8_lossy(line).chars().take(80).collect(),
    };
    let digits = line.get(..3).ok_or_else(bad)?;
    let valid = matches!(digits[0], b'2'..=b'5')
        && matches!(digits[1], b'0'..=b'5')
        && digits[2].is_ascii_digit();
    if !valid {
        return Err(bad());
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None => Ok((code, true, b"")),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(bad()),
    }
}

/// Takes the enhanced code off the first line when it is there and matches the class,
/// and off every later line that repeats it.
fn with_enhanced(code: u16, mut lines: Vec<String>) -> Reply {
    let class = (code / 100) as u8;
    let enhanced = lines
        .first()
        .and_then(|first| leading_enhanced(first))
        .filter(|(e, _)| e.class == class && matches!(class, 2 | 4 | 5));
    if let Some((enhanced, _)) = enhanced {
        for line in &mut lines {
            if let Some((e, rest)) = leading_enhanced(line)
                && e == enhanced
            {
                *line = line[line.len() - rest..].to_string();
            }
        }
    }
    Reply {
        code,
        enhanced: enhanced.map(|(e, _)| e),
        lines,
    }
}

/// An enhanced code at the start of `text` followed by a space or the end, and how many
/// octets of text follow it (after the space).
fn leading_enhanced(text: &str) -> Option<(Enhanced, usize)> {
    let end = text.find(' ').unwrap_or(text.len());
    let word = &text[..end];
    if !word.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let enhanced = Enhanced::parse(word)?;
    let rest = text.len() - (end + usize::from(end < text.len()));
    Some((enhanced, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(input: &[u8]) -> (Reply, usize) {
        parse_reply(input)
            .expect("a valid reply")
            .expect("a complete reply")
    }

    #[test]
    fn one_line_with_enhanced_code() {
        let (reply, used) = parsed(b"250 2.1.0 Sender OK\r\nextra");
        assert_eq!(used, 21);
        assert_eq!(reply, Reply::new(250, "2.1.0", "Sender OK"));
        assert_eq!(reply.content(), "2.1.0 Sender OK");
    }

    #[test]
    fn multi_line_ehlo_keeps_every_line() {
        let wire = b"250-mx.example Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n";
        let (reply, used) = parsed(wire);
        assert_eq!(used, wire.len());
        assert_eq!(reply.code, 250);
        assert_eq!(reply.enhanced, None);
        assert_eq!(
            reply.lines,
            ["mx.example Hello", "PIPELINING", "SIZE 1000", "8BITMIME"]
        );
    }

    #[test]
    fn a_repeated_enhanced_code_is_taken_off_every_line() {
        let (reply, _) = parsed(b"550-5.1.1 no such user\r\n550 5.1.1 try again never\r\n");
        assert_eq!(reply.enhanced, Enhanced::parse("5.1.1"));
        assert_eq!(reply.lines, ["no such user", "try again never"]);
    }

    #[test]
    fn an_enhanced_code_of_another_class_is_text() {
        let (reply, _) = parsed(b"451 5.1.1 odd server\r\n");
        assert_eq!(reply.enhanced, None);
        assert_eq!(reply.lines, ["5.1.1 odd server"]);
        let (greeting, _) = parsed(b"220 2.0.0\r\n");
        assert_eq!(greeting.enhanced, Enhanced::parse("2.0.0"));
        assert_eq!(greeting.lines, [""]);
    }

    #[test]
    fn incomplete_input_needs_more() {
        for partial in [
            &b""[..],
            b"25",
            b"250",
            b"250 OK",
            b"250 OK\r",
            b"250-first\r\n",
            b"250-first\r\n250 sec",
        ] {
            assert_eq!(parse_reply(partial), Ok(None), "{partial:?}");
        }
    }

    #[test]
    fn bare_lf_and_a_code_alone_end_a_line() {
        let (reply, used) = parsed(b"354\nrest");
        assert_eq!((reply.code, used), (354, 4));
        assert_eq!(reply.lines, [""]);
        let (reply, _) = parsed(b"220-a\n220 b\n");
        assert_eq!(reply.lines, ["a", "b"]);
    }

    #[test]
    fn malformed_replies_are_errors() {
        for bad in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"600 no\r\n",
            b"160 no\r\n",
            b"2a0 no\r\n",
            b"250x\r\n",
            b"\r\n",
        ] {
            assert!(
                matches!(parse_reply(bad), Err(ReplyError::BadCode { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_reply(b"250-a\r\n251 b\r\n"),
            Err(ReplyError::MixedCodes {
                first: 250,
                then: 251
            })
        );
    }

    #[test]
    fn sizes_are_bounded() {
        let long = vec![b'2'; MAX_REPLY_LINE];
        assert_eq!(parse_reply(&long), Err(ReplyError::LineTooLong));
        let many = b"250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert_eq!(parse_reply(&many), Err(ReplyError::TooManyLines));
    }

    #[test]
    fn invalid_utf8_text_is_kept_lossily() {
        let (reply, _) = parsed(b"550 5.7.1 bad \xff byte\r\n");
        assert_eq!(reply.lines, ["bad \u{fffd} byte"]);
    }

    #[test]
    fn pipelined_replies_come_off_one_by_one() {
        let wire = b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no\r\n354 go\r\n";
        let mut at = 0;
        let mut codes = Vec::new();
        while let Some((reply, used)) = parse_reply(&wire[at..]).expect("valid") {
            codes.push(reply.code);
            at += used;
        }
        assert_eq!(codes, [250, 250, 550, 354]);
        assert_eq!(at, wire.len());
    }

    #[test]
    fn never_panics_on_any_short_input() {
        let alphabet = [b'2', b'5', b'0', b' ', b'-', b'\r', b'\n', b'.', b'x', 0xff];
        let mut input = Vec::new();
        for n in 0..alphabet.len().pow(5) {
            input.clear();
            let mut k = n;
            for _ in 0..5 {
                input.push(alphabet[k % alphabet.len()]);
                k /= alphabet.len();
            }
            if let Ok(Some((_, used))) = parse_reply(&input) {
                assert!(used > 0 && used <= input.len(), "{input:?}");
            }
        }
    }
}
