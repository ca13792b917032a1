//! The properties the protocol functions promise for *any* input, as checks that panic
//! when one does not hold. The cargo-fuzz targets in `fuzz/` and the stable mutation
//! tests in `tests/mutations.rs` run the same checks, so a crash found by one
//! reproduces in the other.

use crate::{
    MAX_LINE,
    command::{Command, CommandError, is_hello_name, parse_command},
    data::{BareLineEndings, DataFramer, DataOptions, DataOutcome},
    line::{Split, split_line},
    xclient::{XclientValue, parse_xclient},
};

/// Splits `data` into command lines as the listener does and parses each one.
pub fn check_command_input(data: &[u8]) {
    let mut rest = data;
    loop {
        match split_line(rest) {
            Split::Line { len } => {
                assert!(len <= MAX_LINE, "a line of {len} octets was returned");
                assert_eq!(&rest[len..len + 2], b"\r\n", "lines end at CRLF");
                assert!(
                    !rest[..len].windows(2).any(|w| w == b"\r\n"),
                    "the first CRLF ends the line"
                );
                check_command(&rest[..len]);
                rest = &rest[len + 2..];
            }
            Split::TooLong => {
                assert!(rest.len() >= MAX_LINE + 2);
                assert!(!rest[..MAX_LINE + 2].windows(2).any(|w| w == b"\r\n"));
                return;
            }
            Split::Incomplete => {
                assert!(rest.len() < MAX_LINE + 2);
                assert!(!rest.windows(2).any(|w| w == b"\r\n"));
                check_command(rest);
                return;
            }
        }
    }
}

/// Parses one line: never a panic, and nothing unprintable comes out.
fn check_command(line: &[u8]) {
    let printable = |text: &str| !text.chars().any(|c| c.is_control());
    match parse_command(line) {
        Ok(Command::Ehlo(name) | Command::Helo(name)) => {
            assert!(is_hello_name(&name), "{name:?}");
            assert!(name.bytes().all(|b| b.is_ascii_graphic()), "{name:?}");
        }
        Ok(Command::Mail {
            from: Some(from), ..
        }) => assert!(printable(&from.to_string()), "{from:?}"),
        Ok(Command::Rcpt { to }) => assert!(printable(&to.to_string()), "{to:?}"),
        Ok(Command::NotImplemented(verb)) => assert!(printable(&verb)),
        Ok(Command::Xclient(args)) => check_xclient(&args),
        Ok(_) => {}
        Err(CommandError::Unrecognized(verb) | CommandError::UnsupportedParameter(verb)) => {
            assert!(printable(&verb), "{verb:?}");
        }
        Err(_) => {}
    }
}

/// Parses XCLIENT arguments: never a panic; the names that reach `Received:` and the
/// records are hello names, and an error's text is printable.
fn check_xclient(args: &str) {
    match parse_xclient(args) {
        Ok(attributes) => {
            for name in [attributes.name, attributes.helo].into_iter().flatten() {
                if let Some(name) = name.known() {
                    assert!(is_hello_name(&name), "{name:?}");
                    assert!(name.bytes().all(|b| b.is_ascii_graphic()), "{name:?}");
                }
            }
            if let Some(login) = attributes.login.and_then(XclientValue::known) {
                assert!(!login.chars().any(char::is_control), "{login:?}");
            }
        }
        Err(error) => {
            let text = error.to_string();
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    }
}

/// Frames `data` with limits and cut points taken from its first octets, under each
/// line-ending policy, whole and in pieces.
pub fn check_data_input(data: &[u8]) {
    let (head, input) = data.split_at(data.len().min(3));
    let byte = |i: usize| usize::from(head.get(i).copied().unwrap_or(0));
    let max_size = 16 + byte(0) * 64;
    let max_line = 8 + byte(1) * 4;
    let cut = 1 + byte(2);
    for endings in [
        BareLineEndings::Deny,
        BareLineEndings::Allow,
        BareLineEndings::Fix,
    ] {
        let options = DataOptions {
            max_size: max_size as u64,
            max_line,
            bare_line_endings: endings,
        };
        let whole = {
            let mut framer = DataFramer::with_options(options);
            framer.feed(input)
        };
        let mut framer = DataFramer::with_options(options);
        let mut used = 0;
        let mut pieces = None;
        for piece in input.chunks(cut) {
            let bound = framer.held_after(piece.len());
            let (n, outcome) = framer.feed(piece);
            used += n;
            if let Some(outcome) = outcome {
                pieces = Some(outcome);
                break;
            }
            assert_eq!(n, piece.len(), "without an outcome every octet is used");
            assert!(framer.held() <= bound, "{} > {bound}", framer.held());
        }
        assert_eq!((used, pieces.as_ref()), (whole.0, whole.1.as_ref()));
        let Some(outcome) = whole.1 else {
            continue;
        };
        let ended = &input[..whole.0];
        assert!(
            ended == b".\r\n" || ended.ends_with(b"\r\n.\r\n"),
            "only CRLF.CRLF ends the data"
        );
        if let DataOutcome::Complete(body) = outcome {
            assert!(body.len() <= max_size);
            if endings != BareLineEndings::Allow {
                for (i, &b) in body.iter().enumerate() {
                    match b {
                        b'\r' => assert_eq!(body.get(i + 1), Some(&b'\n'), "bare CR kept"),
                        b'\n' => assert!(i > 0 && body[i - 1] == b'\r', "bare LF kept"),
                        _ => {}
                    }
                }
            }
        }
    }
}
