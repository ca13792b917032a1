//! The record format, version 2: file headers, record encoding, decoding
//! and scanning. Pure functions over bytes, no I/O.
//!
//! Every file (a message segment or the progress log) starts with a file
//! header holding a random key; every record header carries an HMAC-SHA256
//! (truncated to 16 bytes) of itself under that key. Message data never
//! contains the key, so bytes inside a message can never pass as a record
//! header, and resynchronisation after damage can never land on them.
//!
//! ```text
//! file header (48 bytes)
//! offset len  field
//!      0   8  magic "PSTSPOOL"
//!      8   1  format version, 2
//!      9   1  file kind: 1 message segment, 2 progress log
//!     10   2  zero
//!     12  32  key: 32 random bytes from the OS RNG, fresh for every file
//!     44   4  CRC32 over bytes 0..44, little-endian
//!
//! record header (56 bytes), then the body
//!      0   4  magic "PSR\x02"
//!      4   1  record kind: 1 message, 2 progress
//!      5   3  zero
//!      8  16  message id, big-endian UUID bytes
//!     24   4  envelope length E, u32 little-endian (progress: its JSON)
//!     28   8  data length D, u64 little-endian (progress: 0)
//!     36   4  body CRC32 over envelope || data, little-endian
//!     40  16  HMAC-SHA256(key, bytes 0..40), first 16 bytes
//!     56   E  envelope JSON
//!   56+E   D  data (the message bytes)
//! ```

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::MessageId;

/// First bytes of every file.
const FILE_MAGIC: [u8; 8] = *b"PSTSPOOL";
/// The format version in the file header.
const VERSION: u8 = 2;
/// Size of the file header.
pub(crate) const FILE_HEADER_LEN: usize = 48;
/// First bytes of every record.
pub(crate) const MAGIC: [u8; 4] = *b"PSR\x02";
/// Size of the fixed record header.
pub(crate) const HEADER_LEN: usize = 56;
/// Bytes of the header covered by the MAC.
const MACED_LEN: usize = 40;
/// Bytes of HMAC-SHA256 kept.
const MAC_LEN: usize = 16;
/// Length of a file key.
pub(crate) const KEY_LEN: usize = 32;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A message segment (`segments/*.seg`): message records.
    Segment,
    /// The progress log (`progress.log`): progress records.
    Progress,
}

impl FileKind {
    fn code(self) -> u8 {
        match self {
            FileKind::Segment => 1,
            FileKind::Progress => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(FileKind::Segment),
            2 => Some(FileKind::Progress),
            _ => None,
        }
    }

    /// The one record kind this file holds.
    fn record_kind(self) -> RecordKind {
        match self {
            FileKind::Segment => RecordKind::Message,
            FileKind::Progress => RecordKind::Progress,
        }
    }
}

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A message: envelope JSON and data.
    Message,
    /// Delivery progress of a message: progress JSON, no data.
    Progress,
}

impl RecordKind {
    fn code(self) -> u8 {
        match self {
            RecordKind::Message => 1,
            RecordKind::Progress => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(RecordKind::Message),
            2 => Some(RecordKind::Progress),
            _ => None,
        }
    }
}

/// The secret key of one file: checks every record header in it.
#[derive(Clone)]
pub struct FileKey {
    bytes: [u8; KEY_LEN],
    key: hmac::Key,
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey(..)")
    }
}

impl FileKey {
    /// A key from the given bytes (tests and fuzzing use fixed keys).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        FileKey {
            bytes,
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        }
    }

    /// A fresh key from the operating system's RNG.
    pub(crate) fn generate() -> Result<Self, std::io::Error> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| std::io::Error::other("the OS random number generator failed"))?;
        Ok(FileKey::from_bytes(bytes))
    }

    /// The truncated MAC of a header's first 40 bytes.
    fn mac(&self, header: &[u8]) -> [u8; MAC_LEN] {
        let tag = hmac::sign(&self.key, &header[..MACED_LEN]);
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&tag.as_ref()[..MAC_LEN]);
        out
    }

    /// Check of a header's MAC (in constant time, though nothing here
    /// needs it: the bytes come from local files).
    fn verify(&self, header: &[u8]) -> bool {
        let expected = self.mac(header);
        let stored = &header[MACED_LEN..HEADER_LEN];
        expected
            .iter()
            .zip(stored)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The file header of a new file of `kind` keyed with `key`.
pub fn file_header(kind: FileKind, key: &FileKey) -> [u8; FILE_HEADER_LEN] {
    let mut out = [0u8; FILE_HEADER_LEN];
    out[0..8].copy_from_slice(&FILE_MAGIC);
    out[8] = VERSION;
    out[9] = kind.code();
    out[12..44].copy_from_slice(&key.bytes);
    let crc = crc32fast::hash(&out[..44]);
    out[44..48].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Parses a file header.
fn parse_file_header(bytes: &[u8]) -> Result<(FileKind, FileKey), &'static str> {
    let bytes = bytes
        .get(..FILE_HEADER_LEN)
        .ok_or("file header cut short")?;
    let crc = u32::from_le_bytes([bytes[44], bytes[45], bytes[46], bytes[47]]);
    if bytes[0..8] != FILE_MAGIC || crc32fast::hash(&bytes[..44]) != crc {
        return Err("bad file magic or file header checksum");
    }
    if bytes[8] != VERSION {
        return Err("unsupported spool format version");
    }
    let kind = FileKind::from_code(bytes[9]).ok_or("unknown file kind")?;
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&bytes[12..44]);
    Ok((kind, FileKey::from_bytes(key)))
}

/// The fixed part of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// What the record holds.
    pub kind: RecordKind,
    /// The message id.
    pub id: MessageId,
    /// Length of the envelope (or progress) JSON.
    pub envelope_len: u32,
    /// Length of the message data.
    pub data_len: u64,
    /// CRC32 of envelope || data.
    pub body_crc: u32,
}

impl Header {
    /// Writes the unkeyed part of the header into `out[..40]`.
    fn write_unkeyed(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = self.kind.code();
        out[5..8].fill(0);
        out[8..24].copy_from_slice(&self.id.to_bytes());
        out[24..28].copy_from_slice(&self.envelope_len.to_le_bytes());
        out[28..36].copy_from_slice(&self.data_len.to_le_bytes());
        out[36..40].copy_from_slice(&self.body_crc.to_le_bytes());
    }

    /// Parses a header; `None` unless the magic and the keyed MAC match.
    fn decode(key: &FileKey, bytes: &[u8]) -> Option<Header> {
        let bytes = bytes.get(..HEADER_LEN)?;
        if bytes[0..4] != MAGIC || !key.verify(bytes) {
            return None;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[8..24]);
        Some(Header {
            kind: RecordKind::from_code(bytes[4])?,
            id: MessageId::from_bytes(id),
            envelope_len: u32::from_le_bytes(bytes[24..28].try_into().ok()?),
            data_len: u64::from_le_bytes(bytes[28..36].try_into().ok()?),
            body_crc: u32::from_le_bytes(bytes[36..40].try_into().ok()?),
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

/// A record encoded but not yet sealed: its MAC needs the key of the file
/// it will be appended to, which only the writer knows.
#[derive(Debug)]
pub(crate) struct Unsealed(Vec<u8>);

impl Unsealed {
    /// Encodes one record (the expensive part: copy and CRC, done on the
    /// caller's task). Fails only for an envelope of 4 GiB or more.
    pub(crate) fn new(
        kind: RecordKind,
        id: MessageId,
        envelope: &[u8],
        data: &[u8],
    ) -> Result<Self, String> {
        let envelope_len = u32::try_from(envelope.len())
            .map_err(|_| format!("envelope JSON of {} bytes is too large", envelope.len()))?;
        let header = Header {
            kind,
            id,
            envelope_len,
            data_len: data.len() as u64,
            body_crc: body_crc(envelope, data),
        };
        let mut out = vec![0u8; HEADER_LEN];
        header.write_unkeyed(&mut out);
        out.reserve_exact(envelope.len() + data.len());
        out.extend_from_slice(envelope);
        out.extend_from_slice(data);
        Ok(Unsealed(out))
    }

    /// Record length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The length of the envelope (or progress) JSON.
    pub(crate) fn envelope_len(&self) -> u32 {
        u32::from_le_bytes([self.0[24], self.0[25], self.0[26], self.0[27]])
    }

    /// Writes the MAC under `key`; returns the bytes to append.
    pub(crate) fn seal(&mut self, key: &FileKey) -> &[u8] {
        let mac = key.mac(&self.0);
        self.0[MACED_LEN..HEADER_LEN].copy_from_slice(&mac);
        &self.0
    }
}

/// Encodes and seals one record under `key`.
pub fn encode(
    key: &FileKey,
    kind: RecordKind,
    id: MessageId,
    envelope: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, String> {
    let mut record = Unsealed::new(kind, id, envelope, data)?;
    record.seal(key);
    Ok(record.0)
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

/// Decodes the record at the start of `bytes`, checking magic, MAC, lengths
/// and the body CRC.
pub(crate) fn decode<'a>(key: &FileKey, bytes: &'a [u8]) -> Result<Decoded<'a>, &'static str> {
    let header = Header::decode(key, bytes).ok_or("bad magic or header MAC")?;
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

/// Decodes the header and envelope at the start of `bytes` (which may stop
/// after the envelope), checking magic and MAC: the id and envelope JSON.
pub(crate) fn decode_envelope<'a>(
    key: &FileKey,
    bytes: &'a [u8],
) -> Result<(MessageId, &'a [u8]), &'static str> {
    let header = Header::decode(key, bytes).ok_or("bad magic or header MAC")?;
    let end = HEADER_LEN + header.envelope_len as usize;
    let envelope = bytes.get(HEADER_LEN..end).ok_or("record is cut short")?;
    Ok((header.id, envelope))
}

/// One region of a file, as found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scanned {
    /// A record that passed every check, its MAC included.
    Record {
        /// Offset in the file.
        offset: usize,
        /// Record length.
        len: usize,
        /// Its message id.
        id: MessageId,
    },
    /// Bytes that are not a valid record and are followed by more data, or
    /// complete-looking but failing their checks.
    Corrupt {
        /// Offset in the file.
        offset: usize,
        /// Length of the bad region.
        len: usize,
        /// What check failed.
        reason: &'static str,
    },
    /// An unfinished append at the end: a short header, a record whose
    /// header is valid but whose body runs past the end, or zeros.
    TornTail {
        /// Offset in the file.
        offset: usize,
        /// Length up to the end of the file.
        len: usize,
    },
}

/// A whole file, scanned.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The file's kind and key, when its header is readable.
    pub header: Option<(FileKind, FileKey)>,
    /// Contiguous regions covering every byte after the file header (or
    /// every byte of the file when the header is unreadable).
    pub regions: Vec<Scanned>,
}

/// What the bytes at one position are.
enum Step {
    Record(MessageId, usize),
    BadBody(usize),
    WrongKind(usize),
    BadHeader,
    Torn,
}

/// Classifies the bytes at the start of `rest`.
fn classify(key: &FileKey, kind: RecordKind, rest: &[u8]) -> Step {
    if rest.len() < HEADER_LEN {
        return Step::Torn;
    }
    let Some(header) = Header::decode(key, rest) else {
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
    if header.kind != kind {
        return Step::WrongKind(len);
    }
    match decode(key, rest) {
        Ok(_) => Step::Record(header.id, len),
        Err(_) => Step::BadBody(len),
    }
}

/// The distance to the next position in `rest` (after the first byte) where
/// a header that passes its MAC check starts.
fn resync(key: &FileKey, rest: &[u8]) -> Option<usize> {
    (1..rest.len().saturating_sub(HEADER_LEN - 1))
        .filter(|&i| rest[i..].starts_with(&MAGIC))
        .find(|&i| Header::decode(key, &rest[i..]).is_some())
}

/// Splits a whole file into its header, records, corrupt regions and a torn
/// tail. `expected` is the kind the caller wants; a readable header of
/// another kind makes the whole file corrupt.
pub fn scan(buf: &[u8], expected: FileKind) -> Scan {
    if buf.len() < FILE_HEADER_LEN {
        // A file created but whose header never made it: nothing in it was
        // acknowledged.
        let regions = if buf.is_empty() {
            Vec::new()
        } else {
            vec![Scanned::TornTail {
                offset: 0,
                len: buf.len(),
            }]
        };
        return Scan {
            header: None,
            regions,
        };
    }
    let header = match parse_file_header(buf) {
        Ok((kind, key)) if kind == expected => (kind, key),
        Ok(_) => return unreadable(buf, "file header of another kind"),
        Err(_) if buf.iter().all(|&b| b == 0) => {
            let len = buf.len();
            return Scan {
                header: None,
                regions: vec![Scanned::TornTail { offset: 0, len }],
            };
        }
        Err(reason) => return unreadable(buf, reason),
    };
    let regions = scan_records(&header.1, expected.record_kind(), buf, FILE_HEADER_LEN);
    Scan {
        header: Some(header),
        regions,
    }
}

/// A file whose header cannot be trusted: one corrupt region.
fn unreadable(buf: &[u8], reason: &'static str) -> Scan {
    Scan {
        header: None,
        regions: vec![Scanned::Corrupt {
            offset: 0,
            len: buf.len(),
            reason,
        }],
    }
}

/// Splits `buf[start..]` into records, corrupt regions and a torn tail.
fn scan_records(key: &FileKey, kind: RecordKind, buf: &[u8], start: usize) -> Vec<Scanned> {
    let mut out = Vec::new();
    let mut offset = start;
    while offset < buf.len() {
        let rest = &buf[offset..];
        let len = match classify(key, kind, rest) {
            Step::Record(id, len) => {
                out.push(Scanned::Record { offset, len, id });
                len
            }
            Step::BadBody(len) | Step::WrongKind(len) => {
                out.push(Scanned::Corrupt {
                    offset,
                    len,
                    reason: "body checksum mismatch or record of the wrong kind",
                });
                len
            }
            Step::Torn => {
                let len = rest.len();
                out.push(Scanned::TornTail { offset, len });
                len
            }
            Step::BadHeader => {
                let (len, reason) = match resync(key, rest) {
                    Some(len) => (len, "bad magic or header MAC"),
                    None => (rest.len(), "unreadable bytes up to the end of the file"),
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

    fn key() -> FileKey {
        FileKey::from_bytes([7; KEY_LEN])
    }

    fn record(data: &[u8]) -> (MessageId, Vec<u8>) {
        let id = MessageId::generate();
        let bytes = encode(&key(), RecordKind::Message, id, b"{\"x\":1}", data).unwrap();
        (id, bytes)
    }

    fn segment(records: &[&[u8]]) -> Vec<u8> {
        let mut out = file_header(FileKind::Segment, &key()).to_vec();
        for r in records {
            out.extend_from_slice(r);
        }
        out
    }

    #[test]
    fn round_trip() {
        let (id, bytes) = record(b"hello\r\n");
        let decoded = decode(&key(), &bytes).unwrap();
        assert_eq!(decoded.header.id, id);
        assert_eq!(decoded.header.kind, RecordKind::Message);
        assert_eq!(decoded.envelope, b"{\"x\":1}");
        assert_eq!(decoded.data, b"hello\r\n");
        assert_eq!(bytes.len(), HEADER_LEN + 7 + 7);
        let other = FileKey::from_bytes([8; KEY_LEN]);
        assert_eq!(
            decode(&other, &bytes).unwrap_err(),
            "bad magic or header MAC"
        );
        let (kind, read_key) = parse_file_header(&file_header(FileKind::Progress, &key())).unwrap();
        assert_eq!(kind, FileKind::Progress);
        assert_eq!(read_key.bytes, key().bytes);
    }

    #[test]
    fn scan_finds_records_and_a_torn_tail() {
        let (a, ra) = record(b"a");
        let (b, rb) = record(b"bb");
        let (_, rc) = record(b"ccc");
        for cut in [1, HEADER_LEN - 1, HEADER_LEN, rc.len() - 1] {
            let mut buf = segment(&[&ra, &rb]);
            buf.extend_from_slice(&rc[..cut]);
            let scan = scan(&buf, FileKind::Segment);
            let items = scan.regions;
            assert_eq!(items.len(), 3, "cut {cut}");
            assert_eq!(
                items[0],
                Scanned::Record {
                    offset: FILE_HEADER_LEN,
                    len: ra.len(),
                    id: a
                }
            );
            assert!(matches!(items[1], Scanned::Record { id, .. } if id == b));
            assert_eq!(
                items[2],
                Scanned::TornTail {
                    offset: FILE_HEADER_LEN + ra.len() + rb.len(),
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
        let base = FILE_HEADER_LEN + ra.len();
        let mut buf = segment(&[&ra, &rb, &rc]);
        buf[base + rb.len() - 1] ^= 0xff; // data of b
        let items = scan(&buf, FileKind::Segment).regions;
        assert!(matches!(items[1], Scanned::Corrupt { len, .. } if len == rb.len()));
        assert!(matches!(items[2], Scanned::Record { id, .. } if id == c));

        let mut buf = segment(&[&ra, &rb, &rc]);
        buf[base + 10] ^= 0xff; // header of b
        let items = scan(&buf, FileKind::Segment).regions;
        assert_eq!(items.len(), 3);
        assert!(matches!(items[1], Scanned::Corrupt { offset, len, .. }
            if offset == base && len == rb.len()));
        assert!(matches!(items[2], Scanned::Record { id, .. } if id == c));
    }

    #[test]
    fn a_record_inside_message_data_is_never_a_record() {
        // The data of the genuine record holds a complete record, sealed
        // with a key the sender guessed (not the file's).
        let guessed = FileKey::from_bytes([0; KEY_LEN]);
        let forged = encode(
            &guessed,
            RecordKind::Message,
            MessageId::generate(),
            b"{}",
            b"x",
        );
        let (_, genuine) = record(&forged.unwrap());
        for damage in [0usize, 1, 30] {
            let mut buf = segment(&[&genuine]);
            buf[FILE_HEADER_LEN + damage] ^= 1;
            let items = scan(&buf, FileKind::Segment).regions;
            assert_eq!(items.len(), 1, "{items:?}");
            assert!(matches!(items[0], Scanned::Corrupt { .. }));
        }
    }

    #[test]
    fn trailing_garbage_is_corrupt_but_zeros_are_torn() {
        let (_, ra) = record(b"a");
        let mut buf = segment(&[&ra]);
        buf.extend_from_slice(&[0x55; 100]);
        assert!(matches!(
            scan(&buf, FileKind::Segment).regions[1],
            Scanned::Corrupt { len: 100, .. }
        ));
        let mut buf = segment(&[&ra]);
        buf.extend_from_slice(&[0; 100]);
        assert!(matches!(
            scan(&buf, FileKind::Segment).regions[1],
            Scanned::TornTail { len: 100, .. }
        ));
    }

    #[test]
    fn file_headers_torn_unreadable_or_of_another_kind() {
        let header = file_header(FileKind::Segment, &key());
        let torn = scan(&header[..20], FileKind::Segment);
        assert!(torn.header.is_none());
        assert!(matches!(
            torn.regions[..],
            [Scanned::TornTail { len: 20, .. }]
        ));
        assert!(scan(&[], FileKind::Segment).regions.is_empty());
        let mut bad = header.to_vec();
        bad[20] ^= 1;
        bad.extend_from_slice(&[1; 10]);
        assert!(matches!(
            scan(&bad, FileKind::Segment).regions[..],
            [Scanned::Corrupt { len: 58, .. }]
        ));
        let other = scan(&header, FileKind::Progress);
        assert!(matches!(other.regions[..], [Scanned::Corrupt { .. }]));
        let (_, ra) = record(b"a");
        let progress = encode(
            &key(),
            RecordKind::Progress,
            MessageId::generate(),
            b"{}",
            b"",
        );
        let items = scan(&segment(&[&progress.unwrap(), &ra]), FileKind::Segment).regions;
        assert!(matches!(items[0], Scanned::Corrupt { .. }));
        assert!(matches!(items[1], Scanned::Record { .. }));
    }
}
