//! Robustness on stable Rust (runs in CI): every parser over mutated corpus
//! files — truncated at many offsets, bytes flipped, inserted and deleted
//! by a fixed-seed PRNG, files spliced together — must return, never
//! panic, and whatever it returns must hold the documented invariants.

mod common;

use postern_mutate::Mutator;
use postern_reports::{parse_arf, parse_dsn, supplemental_trace};

/// Bytes that matter to MIME and to the field parser: flipping to them
/// reaches more paths than uniform noise.
const INTERESTING: &[u8] = b"\r\n-:;= \t\"<>\\\x00\xff\xc3";

fn check(input: &[u8], what: &str) {
    match parse_dsn(input) {
        Ok(Some(report)) => {
            assert!(
                !report.recipients.is_empty(),
                "{what}: DSN with no recipient"
            );
            serde_json::to_string(&report).expect("DSN serializes");
            for record in report.oob_records() {
                assert_eq!(record.action, "failed", "{what}");
            }
        }
        Ok(None) => {}
        Err(e) => assert!(!e.to_string().is_empty(), "{what}"),
    }
    match parse_arf(input) {
        Ok(Some(report)) => {
            assert!(
                !report.feedback_type.is_empty(),
                "{what}: empty Feedback-Type"
            );
            serde_json::to_string(&report).expect("ARF serializes");
        }
        Ok(None) => {}
        Err(e) => assert!(!e.to_string().is_empty(), "{what}"),
    }
    if let Some(trace) = supplemental_trace(input) {
        assert!(
            !trace.contains_key("_@_"),
            "{what}: marker left in the trace"
        );
    }
}

#[test]
fn truncated_at_many_offsets() {
    for (name, bytes) in common::all() {
        let step = (bytes.len() / 400).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            check(&bytes[..cut], &format!("{name} cut at {cut}"));
        }
    }
}

#[test]
fn random_byte_mutations() {
    let mut mutator = Mutator::new(0x5eed_2026_1126_0001, INTERESTING);
    for (name, bytes) in common::all() {
        for round in 0..300 {
            let mut mutant = bytes.clone();
            mutator.mutate(&mut mutant);
            check(&mutant, &format!("{name} round {round}"));
        }
    }
}

#[test]
fn spliced_files() {
    let files = common::all();
    let mut mutator = Mutator::new(0x5eed_2026_1126_0002, INTERESTING);
    for round in 0..500 {
        let (_, a) = &files[mutator.below(files.len())];
        let (_, b) = &files[mutator.below(files.len())];
        let mutant = mutator.splice(a, b);
        check(&mutant, &format!("splice round {round}"));
    }
}

#[test]
fn pathological_shapes() {
    let deep = "Content-Type: multipart/report; report-type=feedback-report; boundary=a\r\n\r\n--a\r\nContent-Type: message/rfc822\r\n\r\n".repeat(200);
    check(deep.as_bytes(), "deeply nested");
    let many_parts = format!(
        "Content-Type: multipart/report; report-type=delivery-status; boundary=a\r\n\r\n{}--a--\r\n",
        "--a\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n"
            .repeat(2000)
    );
    check(many_parts.as_bytes(), "many parts");
    let long_line = format!("X-KumoRef: {}\r\n\r\n", "e".repeat(200_000));
    check(long_line.as_bytes(), "long header");
    check(&[0u8; 4096], "zeros");
    check(&[b'\n'; 4096], "newlines");
}
