//! A full disk and an unwritable spool, for real: a 1 MiB tmpfs and a
//! read-only bind mount (both need root and mount(8); outside CI the tests
//! skip loudly when mounting fails, under `CI` they fail). Every refused
//! store is an error, never `Ok`; a batch refused for ENOSPC leaves no empty
//! segment file behind (attack 8 of issue 12); the spool works again once
//! space returns, and what was acknowledged is all there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use postern_spool::{Envelope, MessageId, Spool, SpoolError, SpoolOptions};

/// A mount point, unmounted on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Runs mount(8) with `args`, or skips (fails under CI).
fn mount(args: &[&str], target: &Path, what: &str) -> Option<Mounted> {
    let status = Command::new("mount").args(args).arg(target).status();
    match status {
        Ok(status) if status.success() => Some(Mounted(target.to_path_buf())),
        other => {
            postern_skip::skip(&format!(
                "cannot mount {what} ({other:?}); needs root and mount(8)"
            ));
            None
        }
    }
}

fn envelope() -> Envelope {
    Envelope::new(
        MessageId::generate(),
        "a@example.com",
        vec!["b@example.org".into()],
    )
}

fn segment_sizes(dir: &Path) -> Vec<u64> {
    fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_stores_leaves_no_empty_segment_and_recovers() {
    let root = tempfile::tempdir().unwrap();
    let Some(_mounted) = mount(
        &["-t", "tmpfs", "-o", "size=1m", "tmpfs"],
        root.path(),
        "a 1 MiB tmpfs",
    ) else {
        return;
    };
    let dir = root.path().join("spool");
    let filler = root.path().join("filler");
    fs::write(&filler, vec![0u8; 256 << 10]).unwrap();
    // Small segments, so that refused batches keep trying to create new ones.
    let options = SpoolOptions {
        max_segment_bytes: 100 << 10,
        ..SpoolOptions::default()
    };
    let (spool, _) = Spool::open(&dir, options.clone()).unwrap();
    let mut stored = Vec::new();
    let mut refused = 0;
    for i in 0..200u32 {
        let envelope = envelope();
        let id = envelope.id;
        let data = vec![(i % 251) as u8; 30 << 10];
        match spool.store(envelope, data.clone()).await {
            Ok(()) => stored.push((id, data)),
            Err(SpoolError::Io { source, path }) => {
                assert_eq!(
                    source.raw_os_error(),
                    Some(28),
                    "ENOSPC on {path:?}: {source}"
                );
                refused += 1;
                if refused == 20 {
                    break;
                }
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(refused, 20, "the disk never filled up");
    assert!(!stored.is_empty());
    assert_eq!(spool.depth(), stored.len() as u64);
    let sizes = segment_sizes(&dir);
    assert!(
        sizes.iter().all(|&len| len > 48),
        "a refused batch left an empty segment: {sizes:?}"
    );
    let space = spool.space().unwrap();
    assert!(space.fs_free_bytes < 64 << 10, "{space:?}");
    assert_eq!(space.queue_depth, stored.len() as u64);

    // Space returns: the same spool takes messages again.
    fs::remove_file(&filler).unwrap();
    let envelope = envelope();
    let later = envelope.id;
    spool.store(envelope, b"after\r\n".to_vec()).await.unwrap();
    spool.close().await.unwrap();

    let (spool, report) = Spool::open(&dir, options).unwrap();
    assert!(report.corrupt_moved.is_empty(), "{report:?}");
    assert_eq!(
        report.messages,
        stored.len() as u64 + 1,
        "no refused message came back"
    );
    for (id, data) in &stored {
        assert_eq!(&spool.load(id).unwrap().1, data);
    }
    assert_eq!(spool.load(&later).unwrap().1, b"after\r\n");
    spool.close().await.unwrap();
}

#[tokio::test]
async fn an_unwritable_spool_refuses_stores_and_recovers() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("spool");
    // One message per segment: every store creates a file.
    let options = SpoolOptions {
        max_segment_bytes: 64,
        ..SpoolOptions::default()
    };
    let (spool, _) = Spool::open(&dir, options.clone()).unwrap();
    let first = envelope();
    let first_id = first.id;
    spool.store(first, b"one".to_vec()).await.unwrap();
    let segments = dir.join("segments");
    // `mount --bind DIR DIR`: the directory over itself, so it can be made read-only.
    let source = segments.to_str().expect("a UTF-8 temporary path");
    let Some(bound) = mount(&["--bind", source], &segments, "a bind mount") else {
        spool.close().await.unwrap();
        return;
    };
    // Bind first, then make that bind read-only.
    let Some(read_only) = mount(&["-o", "remount,bind,ro"], &segments, "a read-only remount")
    else {
        spool.close().await.unwrap();
        return;
    };
    for _ in 0..3 {
        let err = spool
            .store(envelope(), b"refused".to_vec())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SpoolError::Io { source, .. } if source.raw_os_error() == Some(30)),
            "EROFS expected: {err:?}"
        );
    }
    assert_eq!(spool.depth(), 1);
    drop(read_only);
    drop(bound);
    let second = envelope();
    let second_id = second.id;
    spool.store(second, b"two".to_vec()).await.unwrap();
    spool.close().await.unwrap();

    // Opening a spool that cannot be written is an error, not a panic.
    let dir_source = dir.to_str().expect("a UTF-8 temporary path");
    let Some(whole) = mount(&["--bind", dir_source], &dir, "a bind mount") else {
        return;
    };
    let Some(read_only) = mount(&["-o", "remount,bind,ro"], &dir, "a read-only remount") else {
        return;
    };
    let err = Spool::open(&dir, options.clone()).unwrap_err();
    assert!(matches!(err, SpoolError::Io { .. }), "{err:?}");
    drop(read_only);
    drop(whole);
    let (spool, report) = Spool::open(&dir, options).unwrap();
    assert_eq!(report.messages, 2);
    assert_eq!(spool.load(&first_id).unwrap().1, b"one");
    assert_eq!(spool.load(&second_id).unwrap().1, b"two");
    spool.close().await.unwrap();
}
