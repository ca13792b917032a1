//! Invariant checks over the pure record scanner, shared by the fuzz target
//! (`listener/spool/fuzz`, nightly) and the stable property test
//! (`tests/recovery_mutations.rs`). Each panics when an invariant fails.

use crate::MessageId;
use crate::record::{self, FileKey, FileKind, RecordKind, Scan, Scanned};

/// Scans `buf` as a file of `expected` kind and checks what recovery relies
/// on: the regions are contiguous and cover every byte after the file
/// header, a torn tail comes last, and every record passes the MAC check
/// under the file's own key (so no record is yielded whose check failed).
pub fn scan_checked(buf: &[u8], expected: FileKind) -> Scan {
    let scan = record::scan(buf, expected);
    let mut at = match &scan.header {
        Some(_) => record::FILE_HEADER_LEN,
        None => 0,
    };
    for (i, region) in scan.regions.iter().enumerate() {
        let (offset, len) = match *region {
            Scanned::Record { offset, len, id } => {
                let (_, key) = scan.header.as_ref().expect("a record needs a file key");
                let decoded = record::decode(key, &buf[offset..offset + len]);
                let decoded = decoded.expect("a yielded record passes its checks");
                assert_eq!(decoded.header.id, id);
                (offset, len)
            }
            Scanned::Corrupt { offset, len, .. } => (offset, len),
            Scanned::TornTail { offset, len } => {
                assert_eq!(i + 1, scan.regions.len(), "a torn tail is last");
                (offset, len)
            }
        };
        assert_eq!(offset, at, "regions are contiguous");
        assert!(len > 0, "no empty region");
        at += len;
    }
    assert_eq!(at.max(buf.len()), buf.len(), "regions stay inside the file");
    if !scan.regions.is_empty() || scan.header.is_some() {
        assert_eq!(at, buf.len(), "regions cover the file");
    }
    scan
}

/// The key of the genuine segments built by [`check_forgery`]. Fixed, so
/// failures reproduce; a fuzzer cannot invert HMAC-SHA256 to use it.
const GENUINE_KEY: [u8; record::KEY_LEN] = [0xa7; record::KEY_LEN];

/// Builds a genuine segment of three records whose data hold `payload`
/// (which may contain anything, forged records included), applies `damage`
/// (offset modulo the segment length, byte to XOR in), scans it, and checks
/// that every record found is a genuine one, at its genuine offset.
pub fn check_forgery(payload: &[u8], damage: &[(usize, u8)]) {
    let key = FileKey::from_bytes(GENUINE_KEY);
    let mut buf = record::file_header(FileKind::Segment, &key).to_vec();
    let mut genuine: Vec<(usize, MessageId)> = Vec::new();
    for i in 0..3u128 {
        let id =
            MessageId::from_bytes((0x0190_0000_0000_7000_8000_0000_0000_0000 + i).to_be_bytes());
        let envelope = format!("{{\"id\":\"{id}\"}}");
        let bytes = record::encode(&key, RecordKind::Message, id, envelope.as_bytes(), payload)
            .expect("small envelope");
        genuine.push((buf.len(), id));
        buf.extend_from_slice(&bytes);
    }
    let len = buf.len();
    for &(at, xor) in damage {
        buf[at % len] ^= xor;
    }
    let scan = scan_checked(&buf, FileKind::Segment);
    for region in scan.regions {
        if let Scanned::Record { offset, id, .. } = region {
            assert!(
                genuine.contains(&(offset, id)),
                "a record that was never written was yielded: {id} at {offset}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_genuine_segment_passes_and_damage_yields_no_stranger() {
        check_forgery(b"hello", &[]);
        check_forgery(b"hello", &[(60, 1), (200, 0xff)]);
        scan_checked(b"", FileKind::Segment);
        scan_checked(&[0u8; 100], FileKind::Progress);
    }

    /// The check is not vacuous: a record sealed with the genuine key
    /// (which an attacker does not have) is caught once resynchronisation
    /// lands on it.
    #[test]
    #[should_panic(expected = "never written")]
    fn a_record_under_the_genuine_key_is_caught() {
        let key = FileKey::from_bytes(GENUINE_KEY);
        let id = MessageId::from_bytes([1; 16]);
        let envelope = format!("{{\"id\":\"{id}\"}}");
        let inner = record::encode(&key, RecordKind::Message, id, envelope.as_bytes(), b"x");
        // Damage the first genuine header so the scan resynchronises.
        check_forgery(&inner.unwrap(), &[(60, 1)]);
    }
}
