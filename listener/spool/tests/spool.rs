//! The spool on a real file system: round trips, group commit, locking,
//! recovery, deferred messages and failures.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use postern_spool::{
    Deferral, Envelope, MessageId, RecoveryReport, Spool, SpoolError, SpoolOptions,
};

/// Length of a record header (format v2).
const HEADER: usize = 56;

fn envelope(sender: &str) -> Envelope {
    let mut envelope = Envelope::new(
        MessageId::generate(),
        sender,
        vec!["rcpt@example.org".into()],
    );
    envelope
        .extra
        .insert("peer_address".into(), "192.0.2.7:4567".into());
    envelope
        .extra
        .insert("meta".into(), serde_json::json!({"tenant": "t1"}));
    envelope
}

fn open(dir: &Path) -> (Spool, RecoveryReport) {
    Spool::open(dir, SpoolOptions::default()).expect("open spool")
}

fn listed(dir: &Path) -> Vec<Envelope> {
    postern_spool::list(dir)
        .expect("list")
        .collect::<Result<_, _>>()
        .expect("every record readable")
}

fn listed_ids(dir: &Path) -> Vec<MessageId> {
    listed(dir).into_iter().map(|e| e.id).collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    found.sort();
    found
}

/// Stores each payload in turn and closes; returns the ids.
async fn store_and_close(dir: &Path, payloads: &[Vec<u8>]) -> Vec<MessageId> {
    let (spool, _) = open(dir);
    let mut ids = Vec::new();
    for data in payloads {
        let envelope = envelope("a@example.com");
        ids.push(envelope.id);
        spool.store(envelope, data.clone()).await.unwrap();
    }
    spool.close().await.unwrap();
    ids
}

#[tokio::test]
async fn round_trip_keeps_bytes_metadata_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = [
        b"Subject: hi\r\n\r\nhello\r\n.\r\n".to_vec(),
        (0..=255u8).collect::<Vec<u8>>(),
        Vec::new(),
        vec![b'x'; 100 * 1024],
    ];
    let (spool, report) = open(dir.path());
    assert_eq!(report, RecoveryReport::default());
    let mut stored = Vec::new();
    for data in &payloads {
        let envelope = envelope("a@example.com");
        stored.push(envelope.clone());
        spool.store(envelope, data.clone()).await.unwrap();
    }
    assert_eq!(spool.depth(), 4);
    let listed = listed(dir.path());
    assert_eq!(listed.len(), 4);
    for ((got, want), data) in listed.iter().zip(&stored).zip(&payloads) {
        assert_eq!(got.id, want.id);
        assert_eq!(got.sender, want.sender);
        assert_eq!(got.recipients, want.recipients);
        assert_eq!(got.received_at, want.received_at);
        assert_eq!(got.extra, want.extra);
        assert_eq!(got.size, data.len() as u64);
        assert_eq!(&postern_spool::show(dir.path(), &got.id).unwrap(), data);
        assert_eq!(&spool.load(&got.id).unwrap().1, data);
    }
    spool.close().await.unwrap();

    let (spool, report) = open(dir.path());
    assert_eq!(report.messages, 4);
    assert_eq!(spool.depth(), 4);
    assert_eq!(
        listed_ids(dir.path()),
        stored.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    let unknown = MessageId::generate();
    let err = postern_spool::show(dir.path(), &unknown).unwrap_err();
    assert!(matches!(err, SpoolError::NotFound(id) if id == unknown));
    spool.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stores_are_durable_and_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let spool = spool.clone();
            tokio::spawn(async move {
                let envelope = envelope("a@example.com");
                let id = envelope.id;
                spool
                    .store(envelope, format!("message {i}\r\n").into_bytes())
                    .await
                    .unwrap();
                (id, i)
            })
        })
        .collect();
    let mut expected = Vec::new();
    for task in tasks {
        expected.push(task.await.unwrap());
    }
    let metrics = spool.metrics();
    assert_eq!(metrics.messages_stored(), 200);
    assert!(metrics.batches() < 200, "no batch held two messages");
    assert!(
        metrics.fsyncs() < 200,
        "{} fsyncs for 200 messages",
        metrics.fsyncs()
    );
    assert_eq!(spool.depth(), 200);
    spool.close().await.unwrap();

    let mut ids = listed_ids(dir.path());
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    for (id, i) in expected {
        let data = postern_spool::show(dir.path(), &id).unwrap();
        assert_eq!(data, format!("message {i}\r\n").into_bytes());
    }
}

#[tokio::test]
async fn segments_rotate_and_keep_order() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        max_segment_bytes: 4096,
        ..SpoolOptions::default()
    };
    let (spool, _) = Spool::open(dir.path(), options).unwrap();
    let mut ids = Vec::new();
    for i in 0..20u8 {
        let envelope = envelope("a@example.com");
        ids.push(envelope.id);
        spool.store(envelope, vec![i; 1000]).await.unwrap();
    }
    spool.close().await.unwrap();
    assert!(segments(dir.path()).len() >= 5);
    assert_eq!(listed_ids(dir.path()), ids);
    let (spool, report) = open(dir.path());
    assert_eq!(report.messages, 20);
    assert_eq!(spool.load(&ids[13]).unwrap().1, vec![13; 1000]);
    spool.close().await.unwrap();
}

#[tokio::test]
async fn second_open_is_refused_until_close() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let err = Spool::open(dir.path(), SpoolOptions::default()).expect_err("locked");
    assert!(matches!(err, SpoolError::Locked { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(text.contains("already in use"), "{text}");
    spool.close().await.unwrap();
    let (spool, _) = open(dir.path());
    spool.close().await.unwrap();
}

fn append(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[tokio::test]
async fn torn_tails_are_cut_and_good_records_survive() {
    let payloads: Vec<Vec<u8>> = (0..4u8).map(|i| vec![b'a' + i; 300]).collect();
    // How to damage the only segment, given the last record's id.
    let cases: [(&str, Damage); 5] = [
        ("cut inside the last record's data", |p, _| cut(p, 5)),
        ("cut inside the last record's header", |p, last| {
            let header = find(p, format!("{{\"id\":\"{last}\"").as_bytes()) - HEADER;
            cut_at(p, header as u64 + 20);
        }),
        ("cut right after the last record's header", |p, last| {
            let envelope = find(p, format!("{{\"id\":\"{last}\"").as_bytes());
            cut_at(p, envelope as u64);
        }),
        ("short garbage appended", |p, _| append(p, b"garbage")),
        ("zeros appended", |p, _| append(p, &[0; 4096])),
    ];
    for (case, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let ids = store_and_close(dir.path(), &payloads).await;
        let segment = segments(dir.path()).remove(0);
        let intact = fs::metadata(&segment).unwrap().len();
        damage(&segment, ids[3]);
        let (spool, report) = open(dir.path());
        assert_eq!(report.truncated_tails, 1, "{case}");
        assert!(report.corrupt_moved.is_empty(), "{case}");
        let survivors = if fs::metadata(&segment).unwrap().len() < intact {
            3
        } else {
            4
        };
        assert_eq!(report.messages, survivors, "{case}");
        assert_eq!(listed_ids(dir.path()), ids[..survivors as usize], "{case}");
        for (id, data) in ids.iter().zip(&payloads).take(survivors as usize) {
            assert_eq!(
                &postern_spool::show(dir.path(), id).unwrap(),
                data,
                "{case}"
            );
        }
        // The writer appends after the repaired log.
        let envelope = envelope("b@example.com");
        spool
            .store(envelope.clone(), b"after".to_vec())
            .await
            .unwrap();
        spool.close().await.unwrap();
        let (spool, report) = open(dir.path());
        assert_eq!(report.truncated_tails, 0, "{case}");
        assert_eq!(report.messages, survivors + 1, "{case}");
        assert_eq!(spool.load(&envelope.id).unwrap().1, b"after", "{case}");
        spool.close().await.unwrap();
    }
}

/// Damages a segment, given the id of its last record.
type Damage = fn(&Path, MessageId);

fn cut(path: &Path, by: u64) {
    cut_at(path, fs::metadata(path).unwrap().len() - by);
}

fn cut_at(path: &Path, len: u64) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len).unwrap();
}

/// Offset of `needle` in the file at `path`.
fn find(path: &Path, needle: &[u8]) -> usize {
    let bytes = fs::read(path).unwrap();
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in segment")
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn corrupt_middle_record_is_moved_aside_and_reported() {
    let payloads: Vec<Vec<u8>> = ["first", "MIDDLE-MARKER", "last"]
        .iter()
        .map(|s| format!("Subject: {s}\r\n\r\nbody\r\n").into_bytes())
        .collect();
    for damage_header in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let ids = store_and_close(dir.path(), &payloads).await;
        let segment = segments(dir.path()).remove(0);
        let at = if damage_header {
            // the envelope length field of the middle record's header (MACed)
            find(&segment, format!("{{\"id\":\"{}\"", ids[1]).as_bytes()) - HEADER + 25
        } else {
            find(&segment, b"MIDDLE-MARKER")
        };
        flip_byte(&segment, at);

        let (spool, report) = open(dir.path());
        assert_eq!(
            report.corrupt_moved.len(),
            1,
            "header damaged: {damage_header}"
        );
        assert_eq!(report.truncated_tails, 0);
        assert_eq!(report.messages, 2);
        let copy = &report.corrupt_moved[0];
        assert!(copy.starts_with(dir.path().join("corrupt")), "{copy:?}");
        assert!(fs::read(copy).unwrap().windows(6).any(|w| w == b"Subjec"));
        assert_eq!(listed_ids(dir.path()), [ids[0], ids[2]]);
        assert_eq!(
            postern_spool::show(dir.path(), &ids[2]).unwrap(),
            payloads[2]
        );
        assert!(matches!(
            postern_spool::show(dir.path(), &ids[1]),
            Err(SpoolError::NotFound(_))
        ));
        assert_eq!(spool.depth(), 2);
        spool.close().await.unwrap();

        let (spool, report) = open(dir.path());
        assert!(report.corrupt_moved.is_empty(), "moved aside only once");
        assert_eq!(report.messages, 2);
        spool.close().await.unwrap();
    }
}

#[tokio::test]
async fn trailing_garbage_is_moved_aside_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let ids = store_and_close(dir.path(), &[b"one".to_vec(), b"two".to_vec()]).await;
    let segment = segments(dir.path()).remove(0);
    append(&segment, &[0x42; 500]);
    let (spool, report) = open(dir.path());
    assert_eq!(report.corrupt_moved.len(), 1);
    assert_eq!(fs::read(&report.corrupt_moved[0]).unwrap(), vec![0x42; 500]);
    assert_eq!(listed_ids(dir.path()), ids);
    spool.close().await.unwrap();
}

#[tokio::test]
async fn listing_reports_corruption_without_a_lock() {
    let dir = tempfile::tempdir().unwrap();
    let ids = store_and_close(
        dir.path(),
        &[b"one".to_vec(), b"MARK".to_vec(), b"three".to_vec()],
    )
    .await;
    let segment = segments(dir.path()).remove(0);
    flip_byte(&segment, find(&segment, b"MARK"));
    let items: Vec<_> = postern_spool::list(dir.path()).unwrap().collect();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].as_ref().unwrap().id, ids[0]);
    let err = items[1].as_ref().unwrap_err().to_string();
    assert!(
        err.contains("corrupt") && err.contains(&segment.display().to_string()),
        "{err}"
    );
    assert_eq!(items[2].as_ref().unwrap().id, ids[2]);
}

#[tokio::test]
async fn leftover_temporary_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    store_and_close(dir.path(), &[b"one".to_vec()]).await;
    let leftovers = [
        dir.path().join("segments/00000000000000000001.seg.tmp"),
        dir.path()
            .join("corrupt/00000000000000000001-00000000000000000000.corrupt.tmp"),
    ];
    for path in &leftovers {
        fs::write(path, b"half written").unwrap();
    }
    let (spool, report) = open(dir.path());
    assert_eq!(report.temp_files_removed.len(), 2);
    assert!(leftovers.iter().all(|p| !p.exists()));
    assert_eq!(report.messages, 1);
    spool.close().await.unwrap();
}

#[tokio::test]
async fn deferred_messages_are_written_by_close() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let later = spool.clone();
    let mut ids = Vec::new();
    for data in [b"deferred one".to_vec(), b"deferred two".to_vec()] {
        let envelope = envelope("a@example.com");
        ids.push(envelope.id);
        assert_eq!(
            spool.store_deferred(envelope, data).await.unwrap(),
            Deferral::Held
        );
    }
    assert_eq!(spool.depth(), 2);
    assert!(
        listed(dir.path()).is_empty(),
        "deferred messages are not on disk"
    );
    assert_eq!(spool.load(&ids[0]).unwrap().1, b"deferred one");
    assert_eq!(spool.metrics().fsyncs(), 0);
    spool.close().await.unwrap();

    assert_eq!(listed_ids(dir.path()), ids);
    assert_eq!(
        postern_spool::show(dir.path(), &ids[1]).unwrap(),
        b"deferred two"
    );
    let refused = later
        .store_deferred(envelope("late@example.com"), b"late".to_vec())
        .await;
    assert!(matches!(refused, Err(SpoolError::Closed)));
    let refused = later
        .store(envelope("late@example.com"), b"late".to_vec())
        .await;
    assert!(matches!(refused, Err(SpoolError::Closed)));
    drop(later);
    let (spool, report) = open(dir.path());
    assert_eq!(report.messages, 2);
    spool.close().await.unwrap();
}

#[tokio::test]
async fn persist_deferred_writes_what_is_held_and_then_stores_durably() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let held = envelope("a@example.com");
    let held_id = held.id;
    assert_eq!(
        spool.store_deferred(held, b"held".to_vec()).await.unwrap(),
        Deferral::Held
    );
    spool.persist_deferred().await.unwrap();
    assert_eq!(
        listed_ids(dir.path()),
        vec![held_id],
        "on disk before close"
    );
    let late = envelope("b@example.com");
    let late_id = late.id;
    assert_eq!(
        spool.store_deferred(late, b"late".to_vec()).await.unwrap(),
        Deferral::Written,
        "after persist_deferred nothing more is held in memory only"
    );
    assert_eq!(listed_ids(dir.path()), vec![held_id, late_id]);
    assert_eq!(spool.depth(), 2);
    spool.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_fails_every_waiter_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let segments_dir = dir.path().join("segments");
    fs::remove_dir(&segments_dir).unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.store(envelope("a@example.com"), b"x".to_vec()).await })
        })
        .collect();
    for task in tasks {
        let err = task.await.unwrap().expect_err("no silent success");
        assert!(matches!(err, SpoolError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("segments"), "{err}");
    }
    assert_eq!(spool.metrics().store_errors(), 20);
    assert_eq!(spool.depth(), 0);

    fs::create_dir(&segments_dir).unwrap();
    let envelope = envelope("a@example.com");
    spool.store(envelope.clone(), b"ok".to_vec()).await.unwrap();
    spool.close().await.unwrap();
    assert_eq!(listed_ids(dir.path()), [envelope.id]);
}

#[tokio::test]
async fn deferred_memory_is_bounded_and_overflow_is_written_durably() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SpoolOptions {
        max_deferred_bytes: 10,
        ..SpoolOptions::default()
    };
    let (spool, _) = Spool::open(dir.path(), opts).unwrap();
    let held = envelope("a@example.com");
    let overflow = envelope("b@example.com");
    let overflow_id = overflow.id;
    assert_eq!(
        spool
            .store_deferred(held, b"12345678".to_vec())
            .await
            .unwrap(),
        Deferral::Held
    );
    assert_eq!(
        spool
            .store_deferred(overflow, b"12345".to_vec())
            .await
            .unwrap(),
        Deferral::Written
    );
    assert_eq!(
        listed_ids(dir.path()),
        [overflow_id],
        "only the overflow is on disk"
    );
    assert_eq!(spool.depth(), 2);
    spool.close().await.unwrap();
    assert_eq!(listed(dir.path()).len(), 2);
}
