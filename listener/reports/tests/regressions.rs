//! Inputs that once broke something, kept so they never do again.

mod common;

use postern_reports::{ReportError, parse_arf, parse_dsn, supplemental_trace};

fn regression(name: &str) -> Vec<u8> {
    std::fs::read(common::corpus_dir().join("../regressions").join(name)).unwrap()
}

/// Found by the fuzzer: a message/rfc822 part whose body is another
/// message/rfc822 header trips `debug_assert!(false, "Invalid part ID, ..")`
/// inside mail-parser 0.11 (debug builds only). The parsers must return,
/// not panic.
#[test]
fn mail_parser_debug_assert_on_nested_rfc822() {
    let bytes = regression("mail-parser-nested-rfc822-debug-assert.eml");
    // The top level is "multipart/rrt": not a report.
    assert_eq!(parse_arf(&bytes), Ok(None));
    assert_eq!(parse_dsn(&bytes), Ok(None));
    assert_eq!(supplemental_trace(&bytes), None);

    // The same shape under a multipart/report that claims to be ARF is an
    // error: UnparsableMime where mail-parser panics (debug builds),
    // MissingPart where it recovers (release builds).
    let text = String::from_utf8_lossy(&bytes).replace(
        "multipart/rrt;",
        "multipart/report; report-type=feedback-report;",
    );
    let err = parse_arf(text.as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            ReportError::UnparsableMime | ReportError::MissingPart(_)
        ),
        "{err:?}"
    );
    assert_eq!(parse_dsn(text.as_bytes()), Ok(None));
}
