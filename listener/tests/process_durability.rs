//! Durability of the real binary's spool: every message answered with `250 … id=` is
//! on disk even when the process is killed with SIGKILL mid-traffic (and, as the
//! control that shows the check can fail, `deferredSpool` messages are not); a second
//! process refuses a spool that is in use; `deferredSpool: true` holds acknowledged
//! messages in memory and writes them on graceful shutdown.

mod support_process;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use support_process::{
    Acked, Process, Setup, Smtp, Stopped, WAIT, Workdir, contains, http_get, message, metric,
    run_to_end, send_until_stopped, spool_list, spool_show,
};

/// Concurrent client connections.
const SENDERS: usize = 8;
/// Acknowledged messages to wait for before the kill.
const ACKED_BEFORE_KILL: usize = 120;

/// Starts the listener of `setup`, sends messages over [`SENDERS`] concurrent
/// connections and SIGKILLs the process once [`ACKED_BEFORE_KILL`] were acknowledged,
/// with every sender still mid-conversation. Returns each acknowledged (id, marker).
async fn kill_mid_traffic(work: &Workdir, setup: &Setup) -> Vec<(String, String)> {
    let mut process = Process::start(work, setup, "killed").await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..SENDERS)
        .map(|n| {
            let name = format!("durability-{n}");
            tokio::spawn(send_until_stopped(setup.smtp, name, acked.clone()))
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    while acked.lock().unwrap().len() < ACKED_BEFORE_KILL {
        assert!(
            Instant::now() < deadline,
            "only {} messages acknowledged in {WAIT:?}",
            acked.lock().unwrap().len()
        );
        assert!(
            senders.iter().all(|s| !s.is_finished()),
            "a sender stopped before the kill"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    process.sigkill();
    for sender in senders {
        match tokio::time::timeout(WAIT, sender).await.unwrap().unwrap() {
            Stopped::Died(_) => {}
            Stopped::Refused(reply) => panic!("refused before the kill: {reply:?}"),
        }
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= ACKED_BEFORE_KILL);
    acked
}

/// SIGKILL cannot lose what the page cache holds, so this proves that the 250 comes
/// after the message was handed to the kernel (not buffered in the process) and that
/// recovery keeps every complete entry; fsync ordering itself needs a power cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_sigkill() {
    let work = Workdir::new();
    let setup = work.config("durable", &[], &[]);
    let acked = kill_mid_traffic(&work, &setup).await;

    // The reader's view of the crashed spool, before any recovery.
    let listed = spool_list(&setup.spool);
    let unseen = acked
        .iter()
        .filter(|(id, _)| !listed.contains_key(id))
        .count();
    assert_eq!(
        unseen, 0,
        "`spool list` misses acknowledged messages before restart"
    );

    // Restart on the same spool: recovery runs, and everything acknowledged is there.
    let mut second = Process::start(&work, &setup, "second").await;
    let listed = spool_list(&setup.spool);
    let missing: Vec<_> = acked
        .iter()
        .filter(|(id, _)| !listed.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages are missing after SIGKILL: {missing:?}",
        missing.len(),
        acked.len()
    );
    for (id, marker) in &acked {
        let bytes = spool_show(&setup.spool, id);
        assert!(
            bytes.ends_with(message(marker).as_bytes()),
            "{id}: the stored bytes end with the message sent with {marker}"
        );
        assert_eq!(
            listed[id]["size"],
            bytes.len(),
            "{id}: size matches the stored bytes"
        );
    }
    let (_, metrics) = http_get(setup.admin, "/metrics").await.unwrap();
    assert_eq!(
        metric(&metrics, "postern_spool_depth_messages"),
        Some(listed.len() as f64),
        "the recovered spool's depth is what `spool list` shows"
    );

    // The recovered spool takes new mail.
    let mut client = Smtp::greeted(setup.smtp).await.unwrap();
    let reply = client
        .send_message(
            "sender@example.org",
            &["rcpt@example.com"],
            &message("after-restart"),
        )
        .await
        .unwrap();
    let id = reply.expect(250, "2.0.0").id();
    drop(client);
    second.sigterm();
    assert_eq!(
        second.wait_exit(WAIT).await.code(),
        Some(0),
        "{}",
        second.stderr()
    );
    assert!(spool_list(&setup.spool).contains_key(&id));
}

#[tokio::test]
async fn a_second_process_on_the_same_spool_refuses_to_start() {
    let work = Workdir::new();
    let setup = work.config("first", &[], &[]);
    let mut first = Process::start(&work, &setup, "first").await;

    let other = work.config("second", &[], &[]);
    let finished = run_to_end(work.path(), &["--config", other.config.to_str().unwrap()]);
    assert_eq!(finished.code(), 1, "{finished:?}");
    let errors: Vec<_> = finished
        .stderr_lines()
        .into_iter()
        .filter(|l| l.starts_with("postern-listener:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {}", finished.stderr);
    assert!(
        errors[0].contains("lock") && errors[0].contains(&setup.spool.display().to_string()),
        "the error names the spool and its lock: {}",
        errors[0]
    );
    assert!(
        !support_process::is_listening(other.smtp) && !support_process::is_listening(other.admin),
        "the refused process left nothing listening"
    );

    // The first process is unaffected.
    let mut client = Smtp::greeted(setup.smtp).await.unwrap();
    let reply = client
        .send_message(
            "a@example.org",
            &["b@example.com"],
            &message("still-serving"),
        )
        .await
        .unwrap();
    reply.expect(250, "2.0.0");
    assert!(first.try_status().is_none(), "the first process still runs");
}

#[tokio::test]
async fn deferred_spool_writes_acknowledged_messages_on_sigterm() {
    let work = Workdir::new();
    let setup = work.config("deferred", &["deferredSpool: true"], &[]);
    let mut process = Process::start(&work, &setup, "deferred").await;

    let mut client = Smtp::greeted(setup.smtp).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let reply = client
            .send_message(
                "a@example.org",
                &["b@example.com"],
                &message(&format!("deferred-{i}")),
            )
            .await
            .unwrap();
        ids.push(reply.expect(250, "2.0.0").id());
    }
    client.cmd("QUIT").await.unwrap().expect(221, "2.0.0");
    assert!(
        spool_list(&setup.spool).is_empty(),
        "acknowledged deferred messages are held in memory, not on disk"
    );

    process.sigterm();
    assert_eq!(
        process.wait_exit(WAIT).await.code(),
        Some(0),
        "{}",
        process.stderr()
    );
    let listed = spool_list(&setup.spool);
    for (i, id) in ids.iter().enumerate() {
        assert!(
            listed.contains_key(id),
            "{id} written on graceful shutdown: {listed:?}"
        );
        let bytes = spool_show(&setup.spool, id);
        assert!(contains(&bytes, &format!("body deferred-{i}\r\n")));
    }
    assert_eq!(listed.len(), ids.len());
}

/// The control for the SIGKILL test (it can see a loss): with `deferredSpool: true`,
/// acknowledged messages live only in memory, and SIGKILL loses them, as the seed warns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_deferred_messages_as_the_seed_warns() {
    let work = Workdir::new();
    let setup = work.config("deferred", &["deferredSpool: true"], &[]);
    let acked = kill_mid_traffic(&work, &setup).await;
    let listed = spool_list(&setup.spool);
    let kept = acked
        .iter()
        .filter(|(id, _)| listed.contains_key(id))
        .count();
    assert_eq!(
        kept, 0,
        "deferred messages reached the disk before shutdown"
    );
}

/// `spool list` is safe while the listener writes: run during traffic, it succeeds
/// without complaint and lists every message acknowledged before it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_list_during_traffic_sees_every_acknowledged_message() {
    let work = Workdir::new();
    let setup = work.config("reader", &[], &[]);
    let mut process = Process::start(&work, &setup, "reader").await;
    let acked: Acked = Arc::default();
    let senders: Vec<_> = (0..SENDERS)
        .map(|n| {
            tokio::spawn(send_until_stopped(
                setup.smtp,
                format!("reader-{n}"),
                acked.clone(),
            ))
        })
        .collect();
    let mut checked = 0;
    let deadline = Instant::now() + WAIT;
    while checked < 5 {
        assert!(
            Instant::now() < deadline,
            "only {checked} listings in {WAIT:?}"
        );
        let before: Vec<String> = acked
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        if before.len() < 10 * (checked + 1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let spool = setup.spool.clone();
        let listed = tokio::task::spawn_blocking(move || spool_list(&spool))
            .await
            .unwrap();
        let unseen: Vec<_> = before
            .iter()
            .filter(|id| !listed.contains_key(*id))
            .collect();
        assert!(
            unseen.is_empty(),
            "listing {checked} misses acknowledged {unseen:?}"
        );
        checked += 1;
    }
    assert!(
        senders.iter().all(|s| !s.is_finished()),
        "traffic went on throughout"
    );
    process.sigterm();
    for sender in senders {
        let stopped = tokio::time::timeout(WAIT, sender).await.unwrap().unwrap();
        assert!(
            matches!(stopped, Stopped::Refused(ref r) if r.code == 421)
                || matches!(stopped, Stopped::Died(_))
        );
    }
    assert_eq!(
        process.wait_exit(WAIT).await.code(),
        Some(0),
        "{}",
        process.stderr()
    );
}
