//! Dot-stuffing a message for DATA (RFC 5321 §4.5.2), the inverse of the [`data`] framer.
//!
//! The spool holds messages with CRLF line ends (bare CR and LF are refused inbound), so
//! stuffing only doubles a `.` at the start of a line. The terminator `.` CRLF follows,
//! with a CRLF before it when the message does not already end with one (a message must
//! end with a line end for the terminator to be seen as one).
//!
//! [`data`]: crate::data

/// Appends `body` dot-stuffed, then the end-of-data line, to `out`.
pub fn dot_stuff_into(body: &[u8], out: &mut Vec<u8>) {
    out.reserve(body.len() + body.len() / 512 + 5);
    let mut line_start = 0;
    for newline in memchr::memchr_iter(b'\n', body) {
        stuff_line(&body[line_start..=newline], out);
        line_start = newline + 1;
    }
    if line_start < body.len() {
        stuff_line(&body[line_start..], out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// `body` dot-stuffed with the end-of-data line, as a new buffer.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    dot_stuff_into(body, &mut out);
    out
}

fn stuff_line(line: &[u8], out: &mut Vec<u8>) {
    if line.first() == Some(&b'.') {
        out.push(b'.');
    }
    out.extend_from_slice(line);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DataOutcome, frame};

    #[test]
    fn leading_dots_are_doubled_and_the_terminator_added() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b"a\r\n.b\r\n..c\r\n", b"a\r\n..b\r\n...c\r\n.\r\n"),
            (b"no end", b"no end\r\n.\r\n"),
            (b"x\r\n.", b"x\r\n..\r\n.\r\n"),
            (b"mid.dle\r\n", b"mid.dle\r\n.\r\n"),
        ];
        for (body, wire) in cases {
            assert_eq!(dot_stuff(body), *wire, "{body:?}");
        }
    }

    #[test]
    fn the_inbound_framer_gives_the_message_back() {
        let body = b"Subject: x\r\n\r\n.\r\n..two\r\nend .\r\n.\r\n.x\r\n";
        let wire = dot_stuff(body);
        let (used, outcome) = frame(&wire, 1 << 20).expect("a complete message");
        assert_eq!(used, wire.len());
        assert_eq!(outcome, DataOutcome::Complete(body.to_vec()));
    }
}
