//! Robustness on stable Rust (runs in CI): every parser over mutated corpus
//! files — truncated at many offsets, bytes flipped, inserted and deleted
//! by a fixed-seed PRNG, files spliced together — must return, never
//! panic, and whatever it returns must hold the documented invariants.

mod common;

use postern_reports::{parse_arf, parse_dsn, supplemental_trace};

/// xorshift64*: a small deterministic PRNG, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

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
    let mut rng = Rng(0x5eed_2026_1126_0001);
    for (name, bytes) in common::all() {
        for round in 0..300 {
            let mut mutant = bytes.clone();
            for _ in 0..=rng.below(8) {
                let at = rng.below(mutant.len());
                match rng.below(4) {
                    0 if !mutant.is_empty() => mutant[at] = rng.next() as u8,
                    1 if !mutant.is_empty() => {
                        mutant[at] = INTERESTING[rng.below(INTERESTING.len())]
                    }
                    2 => mutant.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
                    _ if !mutant.is_empty() => {
                        mutant.remove(at);
                    }
                    _ => {}
                }
            }
            check(&mutant, &format!("{name} round {round}"));
        }
    }
}

#[test]
fn spliced_files() {
    let files = common::all();
    let mut rng = Rng(0x5eed_2026_1126_0002);
    for round in 0..500 {
        let (_, a) = &files[rng.below(files.len())];
        let (_, b) = &files[rng.below(files.len())];
        let mut mutant = a[..rng.below(a.len())].to_vec();
        mutant.extend_from_slice(&b[rng.below(b.len())..]);
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
