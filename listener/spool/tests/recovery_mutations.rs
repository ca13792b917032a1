//! Robustness of spool recovery on stable Rust (runs in `cargo test`): the
//! same checks as the fuzz target (`listener/spool/fuzz`), over inputs made
//! by a fixed-seed PRNG: random bytes, genuine segments truncated, flipped,
//! zeroed, spliced; genuine segments whose message data hold forged records
//! (old format, and the current one under guessed keys). Nothing may panic,
//! and no record may be yielded whose key check failed or that was never
//! written. Then real recovery (`Spool::open`) runs over mutated segment
//! files: it must open, and queue only genuine messages.

use std::fs;

use fastrand::Rng;

use postern_spool::record::{self, FileKey, FileKind, RecordKind};
use postern_spool::robustness::{check_forgery, scan_checked};
use postern_spool::{Envelope, MessageId, Spool, SpoolOptions};

/// The fixed-seed PRNG, with the helpers these inputs need.
trait RngExt {
    /// A uniform index below `n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize;
    /// `n` random octets.
    fn bytes(&mut self, n: usize) -> Vec<u8>;
}

impl RngExt for Rng {
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.usize(..n) }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        std::iter::repeat_with(|| self.u8(..)).take(n).collect()
    }
}

/// A genuine segment with a few records, keyed with `key`.
fn genuine_segment(rng: &mut Rng, key: &FileKey) -> Vec<u8> {
    let mut buf = record::file_header(FileKind::Segment, key).to_vec();
    for _ in 0..=rng.below(4) {
        let id = MessageId::generate();
        let envelope = format!("{{\"id\":\"{id}\"}}");
        let data = {
            let n = rng.below(300);
            rng.bytes(n)
        };
        buf.extend(
            record::encode(key, RecordKind::Message, id, envelope.as_bytes(), &data).unwrap(),
        );
    }
    buf
}

/// Forged records an attacker could put in message data.
fn forged(rng: &mut Rng) -> Vec<u8> {
    let id = MessageId::generate();
    let envelope = format!("{{\"id\":\"{id}\",\"sender\":\"attacker@evil.test\"}}");
    let key = FileKey::from_bytes(if rng.below(2) == 0 {
        [0; 32]
    } else {
        [0x5a; 32]
    });
    let mut out =
        record::encode(&key, RecordKind::Message, id, envelope.as_bytes(), b"spam").unwrap();
    if rng.below(2) == 0 {
        // Old format: magic "PSR\x01", CRC-checked header.
        out[..4].copy_from_slice(b"PSR\x01");
    }
    out
}

/// Applies 1 to 8 random mutations.
fn mutate(rng: &mut Rng, buf: &mut Vec<u8>) {
    for _ in 0..=rng.below(8) {
        if buf.is_empty() {
            buf.push(rng.u8(..));
        }
        let at = rng.below(buf.len());
        match rng.below(6) {
            0 => buf[at] ^= 1 << rng.below(8),
            1 => buf[at] = rng.u8(..),
            2 => buf.truncate(at),
            3 => {
                let end = (at + rng.below(64)).min(buf.len());
                buf[at..end].fill(0);
            }
            4 => {
                let insert = {
                    let n = rng.below(16) + 1;
                    rng.bytes(n)
                };
                buf.splice(at..at, insert);
            }
            _ => {
                let end = (at + rng.below(16)).min(buf.len());
                buf.drain(at..end);
            }
        }
    }
}

#[test]
fn random_bytes_never_panic_and_yield_no_record() {
    let mut rng = Rng::with_seed(0x5eed_5001_0000_0001);
    for _ in 0..3000 {
        let mut buf = {
            let n = rng.below(400);
            rng.bytes(n)
        };
        if rng.below(2) == 0 {
            // A valid file header with a key nobody wrote records with.
            let key = FileKey::from_bytes(rng.bytes(32).try_into().unwrap());
            let kind = if rng.below(2) == 0 {
                FileKind::Segment
            } else {
                FileKind::Progress
            };
            buf.splice(0..0, record::file_header(kind, &key));
        }
        for kind in [FileKind::Segment, FileKind::Progress] {
            let scan = scan_checked(&buf, kind);
            assert!(
                !scan
                    .regions
                    .iter()
                    .any(|r| matches!(r, record::Scanned::Record { .. })),
                "random bytes passed as a record"
            );
        }
    }
}

#[test]
fn mutated_genuine_segments_never_panic() {
    let mut rng = Rng::with_seed(0x5eed_5001_0000_0002);
    let key = FileKey::from_bytes([9; 32]);
    for _ in 0..3000 {
        let mut buf = genuine_segment(&mut rng, &key);
        mutate(&mut rng, &mut buf);
        scan_checked(&buf, FileKind::Segment);
        scan_checked(&buf, FileKind::Progress);
    }
}

#[test]
fn forged_records_in_message_data_are_never_yielded() {
    let mut rng = Rng::with_seed(0x5eed_5001_0000_0003);
    for _ in 0..3000 {
        let mut payload = {
            let n = rng.below(64);
            rng.bytes(n)
        };
        for _ in 0..=rng.below(3) {
            let at = rng.below(payload.len() + 1);
            let record = forged(&mut rng);
            payload.splice(at..at, record);
        }
        let damage: Vec<(usize, u8)> = (0..rng.below(6))
            .map(|_| (rng.usize(..), 1 << rng.below(8)))
            .collect();
        check_forgery(&payload, &damage);
        // The genuine header zeroed (first 40 bytes of the first record).
        let zeroed: Vec<(usize, u8)> = (48..88).map(|at| (at, 0xff)).collect();
        check_forgery(&payload, &zeroed);
    }
}

#[tokio::test]
async fn real_recovery_over_mutated_segment_files() {
    let mut rng = Rng::with_seed(0x5eed_5001_0000_0004);
    for round in 0..60 {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        let mut ids = Vec::new();
        for _ in 0..=rng.below(5) {
            let envelope = Envelope::new(MessageId::generate(), "a@b.c", vec!["d@e.f".into()]);
            ids.push(envelope.id);
            let mut data = {
                let n = rng.below(200);
                rng.bytes(n)
            };
            let record = forged(&mut rng);
            data.extend(record);
            spool.store(envelope, data).await.unwrap();
        }
        spool.close().await.unwrap();
        let segment = fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = fs::read(&segment).unwrap();
        mutate(&mut rng, &mut bytes);
        fs::write(&segment, &bytes).unwrap();

        let (spool, report) = Spool::open(dir.path(), SpoolOptions::default())
            .unwrap_or_else(|e| panic!("round {round}: recovery failed: {e}"));
        for queued in spool.queued().unwrap() {
            assert!(
                ids.contains(&queued.envelope.id),
                "round {round}: {:?}",
                queued.envelope
            );
            assert_eq!(queued.envelope.sender, "a@b.c", "round {round}");
        }
        assert!(report.messages <= ids.len() as u64);
        spool.close().await.unwrap();
        // A second open finds a clean spool.
        let (spool, again) = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        assert!(again.corrupt_moved.is_empty(), "round {round}: {again:?}");
        assert_eq!(again.messages, report.messages, "round {round}");
        spool.close().await.unwrap();
    }
}
