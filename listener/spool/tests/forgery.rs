//! Attack 3 of issue 12: a client sends, as message data, a complete spool
//! record (valid checksums) whose envelope relays to a victim; then the
//! genuine record's header is damaged (one flipped bit, or its first 40
//! bytes zeroed as a torn write can leave them). Recovery must recover the
//! genuine message or move it to `corrupt/`, and never yield the forged one:
//! record headers carry an HMAC under a random per-file key that message
//! data never contains.

use std::fs;
use std::path::Path;

use postern_spool::record::{FileKey, RecordKind};
use postern_spool::{Envelope, MessageId, Spool, SpoolOptions};

const ATTACKER: &str = "attacker@evil.test";

/// The forged envelope: relay to a victim.
fn forged_envelope() -> (MessageId, Vec<u8>) {
    let id = MessageId::generate();
    let json = format!(
        "{{\"id\":\"{id}\",\"sender\":\"{ATTACKER}\",\"recipients\":[\"victim@gmail.com\"],\
         \"received_at\":\"2026-11-26T14:40:41Z\",\"size\":5}}"
    );
    (id, json.into_bytes())
}

/// A record in the old (v1) format, with valid CRCs.
fn v1_record() -> Vec<u8> {
    let (id, envelope) = forged_envelope();
    let data = b"spam!";
    let mut body = crc32fast::Hasher::new();
    body.update(&envelope);
    body.update(data);
    let mut out = b"PSR\x01".to_vec();
    let hex = id.to_string();
    out.extend((0..16).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()));
    out.extend_from_slice(&(envelope.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&body.finalize().to_le_bytes());
    let crc = crc32fast::hash(&out[..36]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&envelope);
    out.extend_from_slice(data);
    out
}

/// A record in the current (v2) format, sealed with keys an attacker might
/// try: all zeros, and a random one of their own.
fn v2_records() -> Vec<Vec<u8>> {
    [[0u8; 32], [0x5a; 32]]
        .into_iter()
        .map(|key| {
            let (id, envelope) = forged_envelope();
            let key = FileKey::from_bytes(key);
            postern_spool::record::encode(&key, RecordKind::Message, id, &envelope, b"spam!")
                .unwrap()
        })
        .collect()
}

/// Offset of `needle` in `bytes`.
fn find(bytes: &[u8], needle: &[u8]) -> usize {
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle")
}

fn segment(dir: &Path) -> std::path::PathBuf {
    let mut found: Vec<_> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    found.sort();
    found.remove(0)
}

#[tokio::test]
async fn a_record_hidden_in_message_data_is_never_recovered() {
    let mut forged = vec![v1_record()];
    forged.extend(v2_records());
    type Damage = fn(&mut [u8], usize);
    let damages: [(&str, Damage); 3] = [
        ("one flipped bit in the id", |b, at| b[at + 8] ^= 1),
        ("one flipped bit in the data length", |b, at| {
            b[at + 30] ^= 0x10
        }),
        ("first 40 bytes zeroed", |b, at| b[at..at + 40].fill(0)),
    ];
    for (which, record) in forged.iter().enumerate() {
        for (what, damage) in damages {
            let case = format!("forged record {which}, {what}");
            let dir = tempfile::tempdir().unwrap();
            let (spool, _) = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
            let genuine = Envelope::new(
                MessageId::generate(),
                "client@example.com",
                vec!["someone@relay-to.example".into()],
            );
            let genuine_id = genuine.id;
            // No CR or LF inside the forged record, as DATA would accept it.
            let mut data = b"Subject: hello\r\n\r\n".to_vec();
            data.extend_from_slice(record);
            data.extend_from_slice(b"\r\n");
            spool.store(genuine, data.clone()).await.unwrap();
            let after = Envelope::new(MessageId::generate(), "b@example.com", vec!["c@d.e".into()]);
            let after_id = after.id;
            spool.store(after, b"later\r\n".to_vec()).await.unwrap();
            spool.close().await.unwrap();

            let path = segment(dir.path());
            let mut bytes = fs::read(&path).unwrap();
            let genuine_json = find(&bytes, format!("{{\"id\":\"{genuine_id}\"").as_bytes());
            damage(&mut bytes, genuine_json - 56);
            fs::write(&path, &bytes).unwrap();

            let (spool, report) = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
            let listed: Vec<Envelope> = postern_spool::list(dir.path())
                .unwrap()
                .map(|e| e.unwrap())
                .collect();
            assert!(
                listed.iter().all(|e| e.sender != ATTACKER),
                "{case}: forged envelope recovered: {listed:?}"
            );
            let queued = spool.queued().unwrap();
            assert!(
                queued.iter().all(|q| q.envelope.sender != ATTACKER),
                "{case}"
            );
            assert_eq!(
                queued.iter().map(|q| q.envelope.id).collect::<Vec<_>>(),
                [after_id],
                "{case}: the next genuine record is found again"
            );
            // The genuine message was set aside whole, forged bytes included.
            assert_eq!(report.corrupt_moved.len(), 1, "{case}: {report:?}");
            let copy = fs::read(&report.corrupt_moved[0]).unwrap();
            assert!(copy.windows(data.len()).any(|w| w == data), "{case}");
            spool.close().await.unwrap();
        }
    }
}
