//! Spool recovery over arbitrary bytes: the input is scanned as a segment
//! and as a progress log (no panic; regions contiguous; every record passes
//! its key check), then used as the message data of a genuine segment that
//! the first bytes damage (no record may be yielded that was never written:
//! bytes inside message data never pass as a record).

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_spool::record::FileKind;
use postern_spool::robustness::{check_forgery, scan_checked};

fuzz_target!(|data: &[u8]| {
    scan_checked(data, FileKind::Segment);
    scan_checked(data, FileKind::Progress);
    if let Some((&count, rest)) = data.split_first() {
        let split = (usize::from(count % 8) * 3).min(rest.len());
        let (damage, payload) = rest.split_at(split);
        let damage: Vec<(usize, u8)> = damage
            .chunks_exact(3)
            .map(|c| (usize::from(u16::from_le_bytes([c[0], c[1]])), c[2]))
            .collect();
        check_forgery(payload, &damage);
    }
});
