//! Splitting command lines off the front of a read buffer.

use super::MAX_LINE;

/// What the front of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// A complete line of `len` octets plus the CRLF after it.
    Line {
        /// Octets of the line, without CRLF.
        len: usize,
    },
    /// No CRLF yet and still within the limit: read more.
    Incomplete,
    /// No CRLF within `MAX_LINE + 2` octets: the line is too long.
    TooLong,
}

/// Finds the first CRLF-terminated line. Only CRLF ends a command line; a bare LF
/// stays inside the line (and makes it unparseable), so it can never split commands.
pub fn split_line(buf: &[u8]) -> Split {
    split_line_limit(buf, MAX_LINE)
}

/// [`split_line`] with another limit than 998 octets (`lineLengthHardLimit`).
pub fn split_line_limit(buf: &[u8], limit: usize) -> Split {
    let window = &buf[..buf.len().min(limit.saturating_add(2))];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(len) => Split::Line { len },
        None if buf.len() >= limit.saturating_add(2) => Split::TooLong,
        None => Split::Incomplete,
    }
}

/// While discarding an over-long line: how many octets to drop, up to and including
/// its CRLF, and whether the CRLF was found.
pub fn skip_to_line_end(buf: &[u8], after_cr: bool) -> (usize, bool) {
    if after_cr && buf.first() == Some(&b'\n') {
        return (1, true);
    }
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(at) => (at + 2, true),
        None => (buf.len(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_crlf_lines_only() {
        assert_eq!(split_line(b"NOOP\r\nQUIT\r\n"), Split::Line { len: 4 });
        assert_eq!(split_line(b"NOOP\nQUIT"), Split::Incomplete);
        assert_eq!(split_line(b"NOOP\r"), Split::Incomplete);
    }

    #[test]
    fn the_limit_is_998_plus_crlf() {
        let mut ok = vec![b'a'; MAX_LINE];
        ok.extend_from_slice(b"\r\n");
        assert_eq!(split_line(&ok), Split::Line { len: MAX_LINE });
        assert_eq!(split_line(&vec![b'a'; MAX_LINE + 2]), Split::TooLong);
        assert_eq!(split_line(&vec![b'a'; MAX_LINE + 1]), Split::Incomplete);
    }

    #[test]
    fn the_limit_can_be_changed() {
        assert_eq!(split_line_limit(b"NOOP\r\n", 4), Split::Line { len: 4 });
        assert_eq!(split_line_limit(b"NOOPS\r\n", 4), Split::TooLong);
        assert_eq!(split_line_limit(b"NOOP\r", 4), Split::Incomplete);
    }

    #[test]
    fn skipping_handles_a_crlf_split_across_reads() {
        assert_eq!(skip_to_line_end(b"aaa\r\nNOOP", false), (5, true));
        assert_eq!(skip_to_line_end(b"aaa\r", false), (4, false));
        assert_eq!(skip_to_line_end(b"\nNOOP", true), (1, true));
    }
}
