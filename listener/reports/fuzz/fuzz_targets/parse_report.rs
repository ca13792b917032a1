//! Feeds arbitrary bytes to every report parser: none may panic, and what
//! they return must hold the documented invariants.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_reports::{parse_arf, parse_dsn, supplemental_trace};

fuzz_target!(
    // libfuzzer-sys aborts on every panic, even one caught: the parsers catch
    // mail-parser's known panics (`mime::guarded`) and treat them as "not a report",
    // as the listener does. A silent hook lets those be caught; a panic that escapes
    // the parsers still aborts (it cannot unwind into libFuzzer).
    init: std::panic::set_hook(Box::new(|_| {})),
    |data: &[u8]| {
    if let Ok(Some(report)) = parse_dsn(data) {
        assert!(!report.recipients.is_empty());
        for record in report.oob_records() {
            assert_eq!(record.action, "failed");
        }
    }
    if let Ok(Some(report)) = parse_arf(data) {
        assert!(!report.feedback_type.is_empty());
    }
    if let Some(trace) = supplemental_trace(data) {
        assert!(!trace.contains_key("_@_"));
    }
    }
);
