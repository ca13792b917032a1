//! Delivery progress on a real file system: round trip, restart resumes the
//! schedule, completion reclaims disk space, deferredSpool's rules, the
//! progress log's compaction, and the space report.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use postern_spool::{Deferral, Envelope, MessageId, Progress, Spool, SpoolError, SpoolOptions};

fn envelope(recipients: usize) -> Envelope {
    let recipients = (0..recipients)
        .map(|i| format!("r{i}@example.org"))
        .collect();
    Envelope::new(MessageId::generate(), "a@example.com", recipients)
}

fn progress(finished: &[u32], attempts: u32, next_due: Option<SystemTime>) -> Progress {
    Progress {
        finished: finished.to_vec(),
        attempts,
        next_due,
    }
}

fn segment_files(dir: &Path) -> usize {
    fs::read_dir(dir.join("segments")).unwrap().count()
}

#[tokio::test]
async fn progress_round_trips_and_a_restart_resumes_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let message = envelope(3);
    let id = message.id;
    spool.store(message, b"body\r\n".to_vec()).await.unwrap();
    let due = SystemTime::UNIX_EPOCH + Duration::new(1_900_000_000, 42);
    spool
        .record_progress(&id, progress(&[1], 1, Some(due)))
        .await
        .unwrap();
    let queued = spool.queued().unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        (queued[0].finished.clone(), queued[0].attempts),
        (vec![1], 1)
    );
    assert_eq!(spool.metrics().progress_records(), 1);
    spool.close().await.unwrap();

    let (spool, report) = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    assert_eq!((report.messages, report.messages_with_progress), (1, 1));
    let queued = spool.queued().unwrap();
    assert_eq!(queued[0].envelope.id, id);
    assert_eq!(queued[0].envelope.recipients.len(), 3);
    assert_eq!(queued[0].finished, vec![1]);
    assert_eq!(queued[0].attempts, 1);
    assert_eq!(
        queued[0].next_due,
        Some(due),
        "schedule kept to the nanosecond"
    );
    assert_eq!(spool.depth(), 1);

    spool
        .record_progress(&id, progress(&[0], 2, None))
        .await
        .unwrap();
    assert_eq!(spool.queued().unwrap()[0].finished, vec![0, 1]);
    spool
        .record_progress(&id, progress(&[2], 3, None))
        .await
        .unwrap();
    assert_eq!(spool.depth(), 0);
    assert!(spool.queued().unwrap().is_empty());
    assert!(matches!(spool.load(&id), Err(SpoolError::NotFound(_))));
    assert_eq!(
        segment_files(dir.path()),
        0,
        "the only segment was unlinked"
    );
    let again = spool.record_progress(&id, progress(&[2], 4, None)).await;
    assert!(matches!(again, Err(SpoolError::NotFound(_))), "{again:?}");
    spool.close().await.unwrap();

    let (spool, report) = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    assert_eq!((report.messages, report.segments), (0, 0));
    assert!(postern_spool::list(dir.path()).unwrap().next().is_none());
    spool.close().await.unwrap();
}

#[tokio::test]
async fn bad_progress_is_refused_and_nothing_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let message = envelope(2);
    let id = message.id;
    spool.store(message, b"x".to_vec()).await.unwrap();
    let err = spool
        .record_progress(&id, progress(&[0, 2], 1, None))
        .await
        .unwrap_err();
    assert!(matches!(err, SpoolError::InvalidProgress { .. }), "{err}");
    let unknown = MessageId::generate();
    let err = spool
        .record_progress(&unknown, progress(&[0], 1, None))
        .await
        .unwrap_err();
    assert!(matches!(err, SpoolError::NotFound(found) if found == unknown));
    assert_eq!(spool.metrics().progress_records(), 0);
    assert!(spool.queued().unwrap()[0].finished.is_empty());
    spool.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_use_returns_to_near_zero_once_every_message_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        max_segment_bytes: 256 << 10,
        compact_progress_bytes: 16 << 10,
        ..SpoolOptions::default()
    };
    let (spool, _) = Spool::open(dir.path(), options.clone()).unwrap();
    let empty = spool.space().unwrap();
    let mut ids = Vec::new();
    for _ in 0..400 {
        let message = envelope(2);
        ids.push(message.id);
        spool.store(message, vec![b'x'; 10 << 10]).await.unwrap();
    }
    let full = spool.space().unwrap();
    assert!(segment_files(dir.path()) >= 10);
    assert!(full.spool_bytes >= 400 * (10 << 10), "{full:?}");
    assert_eq!(full.queue_depth, 400);
    assert!(full.fs_free_bytes <= empty.fs_free_bytes);

    // A burst of deliveries: first one recipient of each, then the other.
    for index in [0u32, 1] {
        let tasks: Vec<_> = ids
            .iter()
            .map(|id| {
                let (spool, id) = (spool.clone(), *id);
                tokio::spawn(async move {
                    let done = progress(&[index], index + 1, None);
                    spool.record_progress(&id, done).await.unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    }
    let after = spool.space().unwrap();
    assert_eq!(after.queue_depth, 0);
    assert_eq!(segment_files(dir.path()), 0, "every segment unlinked");
    assert_eq!(
        after.spool_bytes, 48,
        "disk use after delivery: only the progress log's file header"
    );
    let progress_log = fs::metadata(dir.path().join("progress.log")).unwrap().len();
    assert_eq!(after.spool_bytes, progress_log);
    assert!(spool.metrics().segments_removed() >= 10);
    assert_eq!(spool.metrics().messages_completed(), 400);
    spool.close().await.unwrap();

    let (spool, report) = Spool::open(dir.path(), options).unwrap();
    assert_eq!(report.messages, 0);
    assert_eq!(
        spool.space().unwrap().spool_bytes,
        48,
        "only the log's file header"
    );
    spool.close().await.unwrap();
}

#[tokio::test]
async fn a_crash_between_completion_and_unlink_is_finished_by_recovery() {
    let dir = tempfile::tempdir().unwrap();
    // One message per segment.
    let options = SpoolOptions {
        max_segment_bytes: 64,
        ..SpoolOptions::default()
    };
    let (spool, _) = Spool::open(dir.path(), options.clone()).unwrap();
    let (done, pending) = (envelope(1), envelope(1));
    let done_id = done.id;
    spool.store(done, b"x".to_vec()).await.unwrap();
    spool.store(pending, b"y".to_vec()).await.unwrap();
    let segment = dir.path().join("segments/00000000000000000001.seg");
    let kept = fs::read(&segment).unwrap();
    spool
        .record_progress(&done_id, progress(&[0], 1, None))
        .await
        .unwrap();
    assert!(!segment.exists());
    spool.close().await.unwrap();
    // As if the process died after the completion was durable, before the
    // unlink: the segment is back, the progress log says complete.
    fs::write(&segment, kept).unwrap();
    let (spool, report) = Spool::open(dir.path(), options).unwrap();
    assert_eq!(report.complete_segments_removed, 1, "{report:?}");
    assert_eq!(report.messages, 1);
    assert!(!segment.exists());
    assert_eq!(spool.queued().unwrap().len(), 1);
    spool.close().await.unwrap();
}

#[tokio::test]
async fn deferred_messages_touch_the_disk_only_after_a_transient_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let delivered = envelope(2);
    let retried = envelope(2);
    let (delivered_id, retried_id) = (delivered.id, retried.id);
    for message in [delivered, retried] {
        let data = format!("data of {}\r\n", message.id).into_bytes();
        let held = spool.store_deferred(message, data).await.unwrap();
        assert_eq!(held, Deferral::Held);
    }
    assert_eq!(spool.depth(), 2);

    // Delivered to both recipients at the first attempt: dropped, no write.
    spool
        .record_progress(&delivered_id, progress(&[0, 1], 1, None))
        .await
        .unwrap();
    assert_eq!(spool.metrics().fsyncs(), 0, "nothing touched the disk");
    assert_eq!(segment_files(dir.path()), 0);
    assert!(matches!(
        spool.load(&delivered_id),
        Err(SpoolError::NotFound(_))
    ));
    assert_eq!(spool.depth(), 1);

    // One recipient delivered, one transient failure: written durably, with
    // its progress, before record_progress returns.
    let due = SystemTime::now() + Duration::from_secs(1200);
    spool
        .record_progress(&retried_id, progress(&[1], 1, Some(due)))
        .await
        .unwrap();
    let listed: Vec<_> = postern_spool::list(dir.path())
        .unwrap()
        .map(|e| e.unwrap().id)
        .collect();
    assert_eq!(listed, [retried_id], "on disk before close");
    assert_eq!(spool.depth(), 1);
    let queued = spool.queued().unwrap();
    assert_eq!(
        (queued[0].finished.clone(), queued[0].attempts),
        (vec![1], 1)
    );
    assert_eq!(
        spool.load(&retried_id).unwrap().1,
        format!("data of {retried_id}\r\n").into_bytes()
    );
    // Drop without close: what record_progress wrote is durable anyway.
    drop(spool);
    let (spool, report) = loop {
        match Spool::open(dir.path(), SpoolOptions::default()) {
            Err(SpoolError::Locked { .. }) => tokio::task::yield_now().await,
            other => break other.unwrap(),
        }
    };
    assert_eq!(report.messages, 1);
    let queued = spool.queued().unwrap();
    assert_eq!(queued[0].envelope.id, retried_id);
    assert_eq!(queued[0].finished, vec![1]);
    assert_eq!(queued[0].next_due, Some(due));
    spool.close().await.unwrap();
}

#[tokio::test]
async fn the_progress_log_is_compacted_and_keeps_every_state() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        compact_progress_bytes: 4 << 10,
        ..SpoolOptions::default()
    };
    let (spool, _) = Spool::open(dir.path(), options.clone()).unwrap();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let message = envelope(3);
        ids.push(message.id);
        spool.store(message, b"x".to_vec()).await.unwrap();
    }
    // 20 messages × 30 attempts: far more records than the threshold.
    for attempt in 1..=30 {
        for id in &ids {
            spool
                .record_progress(id, progress(&[], attempt, None))
                .await
                .unwrap();
        }
    }
    let log = fs::metadata(dir.path().join("progress.log")).unwrap().len();
    assert!(
        log < 16 << 10,
        "progress log of {log} bytes was not compacted"
    );
    spool
        .record_progress(&ids[0], progress(&[0, 1, 2], 31, None))
        .await
        .unwrap();
    spool.close().await.unwrap();
    let (spool, report) = Spool::open(dir.path(), options).unwrap();
    assert_eq!(report.messages, 19);
    let queued = spool.queued().unwrap();
    assert!(queued.iter().all(|q| q.attempts == 30));
    assert!(!queued.iter().any(|q| q.envelope.id == ids[0]));
    spool.close().await.unwrap();
}
