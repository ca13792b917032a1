//! The record format: encoding, decoding and scanning. Pure functions over
//! bytes, no I/O.
//!
//! ```text
//! offset len  field
//!      0   4  magic "PSR\x01" (the last byte is the format version)
//!      4  16  message id, big-endian UUID bytes
//!     20   4  envelope length E, u32 little-endian
//!     24   8  data length D, u64 little-endian
//!     32   4  body CRC32 over envelope || data, little-endian
//!     36   4  header CRC32 over bytes 0..36, little-endian
//!     40   E  envelope JSON
//!   40+E   D  data (the message bytes)
//! ```

use crate::MessageId;

/// First bytes of every record.
pub(crate) const MAGIC: [u8; 4] = *b"PSR\x01";
/// Size of the fixed header.
pub(crate) const HEADER_LEN: usize = 40;

/// The fixed part of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The message id.
    pub id: MessageId,
    /// Length of the envelope JSON.
    pub envelope_len: u32,
    /// Length of the message data.
    pub data_len: u64,
    /// CRC32 of envelope || data.
    pub body_crc: u32,
}

impl Header {
    /// The header bytes, header CRC included.
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..20].copy_from_slice(&self.id.to_bytes());
        out[20..24].copy_from_slice(&self.envelope_len.to_le_bytes());
        out[24..32].copy_from_slice(&self.data_len.to_le_bytes());
        out[32..36].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32fast::hash(&out[..36]);
        out[36..40].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a header; `None` unless the magic and the header CRC match.
    fn decode(bytes: &[u8]) -> Option<Header> {
        let bytes: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        let crc = u32::from_le_bytes(bytes[36..40].try_into().ok()?);
        if bytes[0..4] != MAGIC || crc32fast::hash(&bytes[..36]) != crc {
            return None;
        }
        Some(Header {
            id: MessageId::from_bytes(bytes[4..20].try_into().ok()?),
            envelope_len: u32::from_le_bytes(bytes[20..24].try_into().ok()?),
            data_len: u64::from_le_bytes(bytes[24..32].try_into().ok()?),
            body_crc: u32::from_le_bytes(bytes[32..36].try_into().ok()?),
        })
    }

    /// Total record length: header, envelope and data.
    fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.envelope_len) + self.data_len
    }
}

/// The CRC32 of envelope || data.
fn body_crc(envelope: &[u8], data: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(envelope);
    hasher.update(data);
    hasher.finalize()
}

/// Encodes one record. Fails only for an envelope of 4 GiB or more.
pub(crate) fn encode(id: MessageId, envelope: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    let envelope_len = u32::try_from(envelope.len())
        .map_err(|_| format!("envelope JSON of {} bytes is too large", envelope.len()))?;
    let header = Header {
        id,
        envelope_len,
        data_len: data.len() as u64,
        body_crc: body_crc(envelope, data),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + envelope.len() + data.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(envelope);
    out.extend_from_slice(data);
    Ok(out)
}

/// A record whose checks all passed, borrowed from the bytes it was read from.
#[derive(Debug)]
pub(crate) struct Decoded<'a> {
    /// The header.
    pub header: Header,
    /// The envelope JSON.
    pub envelope: &'a [u8],
    /// The message data.
    pub data: &'a [u8],
}

/// Decodes the record at the start of `bytes`, checking magic, lengths and
/// both CRCs.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded<'_>, &'static str> {
    let header = Header::decode(bytes).ok_or("bad magic or header checksum")?;
    let len = usize::try_from(header.record_len()).map_err(|_| "record length overflows")?;
    let record = bytes.get(..len).ok_or("record is cut short")?;
    let (envelope, data) = record[HEADER_LEN..].split_at(header.envelope_len as usize);
    if body_crc(envelope, data) != header.body_crc {
        return Err("body checksum mismatch");
    }
    Ok(Decoded {
        header,
        envelope,
        data,
    })
}

/// One region of a segment, as found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scanned {
    /// A record that passed every check.
    Record {
        /// Offset in the segment.
        offset: usize,
        /// Record length.
        len: usize,
        /// Its message id.
        id: MessageId,
    },
    /// Bytes that are not a valid record and are followed by more data, or
    /// complete-looking but failing their checks.
    Corrupt {
        /// Offset in the segment.
        offset: usize,
        /// Length of the bad region.
        len: usize,
        /// What check failed.
        reason: &'static str,
    },
    /// An unfinished append at the end: a short header, a record whose
    /// header is valid but whose body runs past the end, or zeros.
    TornTail {
        /// Offset in the segment.
        offset: usize,
        /// Length up to the end of the segment.
        len: usize,
    },
}

/// What the bytes at one position are.
enum Step {
    Record(MessageId, usize),
    BadBody(usize),
    BadHeader,
    Torn,
}

/// Classifies the bytes at the start of `rest`.
fn classify(rest: &[u8]) -> Step {
    if rest.len() < HEADER_LEN {
        return Step::Torn;
    }
    let Some(header) = Header::decode(rest) else {
        return if rest.iter().all(|&b| b == 0) {
            Step::Torn
        } else {
            Step::BadHeader
        };
    };
    let Some(len) = usize::try_from(header.record_len())
        .ok()
        .filter(|&len| len <= rest.len())
    else {
        return Step::Torn;
    };
    match decode(rest) {
        Ok(_) => Step::Record(header.id, len),
        Err(_) => Step::BadBody(len),
    }
}

/// The distance to the next position in `rest` (after the first byte) where
/// a fully valid record starts.
fn resync(rest: &[u8]) -> Option<usize> {
    (1..rest.len().saturating_sub(HEADER_LEN - 1))
        .filter(|&i| rest[i..].starts_with(&MAGIC))
        .find(|&i| matches!(classify(&rest[i..]), Step::Record(..)))
}

/// Splits a whole segment into records, corrupt regions and a torn tail.
/// The regions are contiguous and cover every byte.
pub(crate) fn scan(buf: &[u8]) -> Vec<Scanned> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        let rest = &buf[offset..];
        let len = match classify(rest) {
            Step::Record(id, len) => {
                out.push(Scanned::Record { offset, len, id });
                len
            }
            Step::BadBody(len) => {
                let reason = "body checksum mismatch";
                out.push(Scanned::Corrupt {
                    offset,
                    len,
                    reason,
                });
                len
            }
            Step::Torn => {
                let len = rest.len();
                out.push(Scanned::TornTail { offset, len });
                len
            }
            Step::BadHeader => {
                let (len, reason) = match resync(rest) {
                    Some(len) => (len, "bad magic or header checksum"),
                    None => (rest.len(), "unreadable bytes up to the end of the segment"),
                };
                out.push(Scanned::Corrupt {
                    offset,
                    len,
                    reason,
                });
                len
            }
        };
        offset += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(data: &[u8]) -> (MessageId, Vec<u8>) {
        let id = MessageId::generate();
        (id, encode(id, b"{\"x\":1}", data).unwrap())
    }

    #[test]
    fn round_trip() {
        let (id, bytes) = record(b"hello\r\n");
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.header.id, id);
        assert_eq!(decoded.envelope, b"{\"x\":1}");
        assert_eq!(decoded.data, b"hello\r\n");
        assert_eq!(bytes.len(), HEADER_LEN + 7 + 7);
    }

    #[test]
    fn scan_finds_records_and_a_torn_tail() {
        let (a, ra) = record(b"a");
        let (b, rb) = record(b"bb");
        let (_, rc) = record(b"ccc");
        for cut in [1, HEADER_LEN - 1, HEADER_LEN, rc.len() - 1] {
            let mut buf = [ra.clone(), rb.clone()].concat();
            buf.extend_from_slice(&rc[..cut]);
            let items = scan(&buf);
            assert_eq!(items.len(), 3, "cut {cut}");
            assert_eq!(
                items[0],
                Scanned::Record {
                    offset: 0,
                    len: ra.len(),
                    id: a
                }
            );
            assert!(matches!(items[1], Scanned::Record { id, .. } if id == b));
            assert_eq!(
                items[2],
                Scanned::TornTail {
                    offset: ra.len() + rb.len(),
                    len: cut
                }
            );
        }
    }

    #[test]
    fn scan_skips_a_bad_body_and_resyncs_after_a_bad_header() {
        let (_, ra) = record(b"aaaa");
        let (_, rb) = record(b"bbbb");
        let (c, rc) = record(b"cccc");
        let mut buf = [ra.clone(), rb.clone(), rc.clone()].concat();
        buf[ra.len() + rb.len() - 1] ^= 0xff; // data of b
        let items = scan(&buf);
        assert!(matches!(items[1], Scanned::Corrupt { len, .. } if len == rb.len()));
        assert!(matches!(items[2], Scanned::Record { id, .. } if id == c));

        let mut buf = [ra.clone(), rb.clone(), rc].concat();
        buf[ra.len() + 10] ^= 0xff; // header of b
        let items = scan(&buf);
        assert_eq!(items.len(), 3);
        assert!(matches!(items[1], Scanned::Corrupt { offset, len, .. }
            if offset == ra.len() && len == rb.len()));
        assert!(matches!(items[2], Scanned::Record { id, .. } if id == c));
    }

    #[test]
    fn trailing_garbage_is_corrupt_but_zeros_are_torn() {
        let (_, ra) = record(b"a");
        let mut buf = ra.clone();
        buf.extend_from_slice(&[0x55; 100]);
        assert!(matches!(scan(&buf)[1], Scanned::Corrupt { len: 100, .. }));
        let mut buf = ra;
        buf.extend_from_slice(&[0; 100]);
        assert!(matches!(scan(&buf)[1], Scanned::TornTail { len: 100, .. }));
    }
}
