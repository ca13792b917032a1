//! Graceful shutdown of the real binary on SIGTERM: `/readyz` turns 503 at once, new
//! connections are no longer served, an idle session gets `421 4.3.2`, a session inside
//! a transaction may finish it within `shutdownGracePeriod` (then gets `421 4.3.2`), a
//! transaction that outlasts the grace period gets `421 4.3.2`, and the process exits 0
//! with everything it acknowledged on disk and in the record log, also when SIGTERM
//! arrives in the middle of traffic on many connections. SIGINT does the same.

mod support_process;

use std::{
    io::ErrorKind,
    sync::Arc,
    time::{Duration, Instant},
};

use support_process::{
    Acked, Process, Smtp, Stopped, WAIT, Workdir, contains, http_get, message, send_until_stopped,
    spool_list, spool_show,
};

/// Polls `/readyz` until it answers 503; returns how long that took.
async fn until_not_ready(admin: std::net::SocketAddr) -> Duration {
    let start = Instant::now();
    loop {
        let (status, body) = http_get(admin, "/readyz").await.expect("/readyz answers");
        if status == 503 {
            return start.elapsed();
        }
        assert_eq!(status, 200, "{body}");
        assert!(start.elapsed() < WAIT, "/readyz still 200 after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn sigterm_drains_sessions_and_exits_0() {
    let work = Workdir::new();
    let setup = work.config("shutdown", &[], &["shutdownGracePeriod: 15s"]);
    let mut process = Process::start(&work, &setup, "shutdown").await;

    let mut idle = Smtp::greeted(setup.smtp).await.unwrap();
    let mut busy = Smtp::greeted(setup.smtp).await.unwrap();
    busy.cmd("MAIL FROM:<a@example.org>")
        .await
        .unwrap()
        .expect(250, "2.1.0");
    busy.cmd("RCPT TO:<b@example.com>")
        .await
        .unwrap()
        .expect(250, "2.1.5");

    process.sigterm();
    let took = until_not_ready(setup.admin).await;
    assert!(
        took < Duration::from_secs(2),
        "/readyz turned 503 only after {took:?}"
    );

    // The idle session is told, unasked, and closed.
    idle.reply().await.unwrap().expect(421, "4.3.2");
    assert!(idle.closed().await, "the idle session is closed after 421");

    // No new sessions: the connection is refused, closed unanswered, or answered 421
    // (never greeted with 220).
    if let Ok(mut late) = Smtp::connect(setup.smtp).await
        && let Ok(reply) = late.reply().await
    {
        reply.expect(421, "4.3.2");
    }

    // The transaction under way may finish, within the grace period.
    assert!(
        process.try_status().is_none(),
        "the process waits for the transaction"
    );
    busy.cmd("DATA").await.unwrap().expect(354, "");
    busy.send(message("finished-after-sigterm").as_bytes())
        .await
        .unwrap();
    busy.send(b".\r\n").await.unwrap();
    let id = busy.reply().await.unwrap().expect(250, "2.0.0").id();
    busy.cmd("NOOP").await.unwrap().expect(421, "4.3.2");
    assert!(busy.closed().await, "the session is closed after 421");

    let status = process.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", process.stderr());
    assert!(spool_list(&setup.spool).contains_key(&id));
    assert!(contains(
        &spool_show(&setup.spool, &id),
        "body finished-after-sigterm\r\n"
    ));
    let records = setup.records();
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "Reception" && r["id"] == id.as_str()),
        "the reception is in the record log: {records:?}"
    );
}

#[tokio::test]
async fn a_transaction_that_outlasts_the_grace_period_gets_421() {
    let work = Workdir::new();
    let setup = work.config("grace", &[], &["shutdownGracePeriod: 1s"]);
    let mut process = Process::start(&work, &setup, "grace").await;

    let mut slow = Smtp::greeted(setup.smtp).await.unwrap();
    slow.cmd("MAIL FROM:<a@example.org>")
        .await
        .unwrap()
        .expect(250, "2.1.0");
    slow.cmd("RCPT TO:<b@example.com>")
        .await
        .unwrap()
        .expect(250, "2.1.5");
    slow.cmd("DATA").await.unwrap().expect(354, "");
    slow.send(b"Subject: never finished\r\n\r\nhalf a mess")
        .await
        .unwrap();

    let sent = Instant::now();
    process.sigterm();
    slow.reply().await.unwrap().expect(421, "4.3.2");
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "421 came after {waited:?}, expected about the 1s grace period"
    );
    assert!(slow.closed().await);
    let status = process.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", process.stderr());
    assert!(
        spool_list(&setup.spool).is_empty(),
        "the unfinished message was not stored"
    );
}

/// SIGTERM in the middle of traffic on many connections: every session ends with
/// `421 4.3.2` (or a closed connection), never another refusal; every acknowledged
/// message is on disk and in the record log; the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_keeps_every_acknowledged_message() {
    let work = Workdir::new();
    let setup = work.config("load", &[], &["shutdownGracePeriod: 5s"]);
    let mut process = Process::start(&work, &setup, "load").await;
    let acked: Acked = Arc::default();
    let senders: Vec<_> = (0..8)
        .map(|n| {
            tokio::spawn(send_until_stopped(
                setup.smtp,
                format!("load-{n}"),
                acked.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    while acked.lock().unwrap().len() < 80 {
        assert!(Instant::now() < deadline, "too slow before SIGTERM");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    process.sigterm();
    for sender in senders {
        match tokio::time::timeout(WAIT, sender).await.unwrap().unwrap() {
            Stopped::Refused(reply) => {
                reply.expect(421, "4.3.2");
            }
            Stopped::Died(e) => assert!(
                matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                ),
                "a session ended with {e}"
            ),
        }
    }
    let status = process.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", process.stderr());

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let listed = spool_list(&setup.spool);
    let records = setup.records();
    for (id, marker) in &acked {
        assert!(listed.contains_key(id), "{id} ({marker}) is not on disk");
        assert!(
            records
                .iter()
                .any(|r| r["type"] == "Reception" && r["id"] == id.as_str()),
            "{id} ({marker}) has no Reception record"
        );
    }
    assert_eq!(
        listed.len(),
        acked.len(),
        "nothing unacknowledged was stored"
    );
}

/// Ctrl-C on the README's first command: SIGINT is the same graceful shutdown.
#[tokio::test]
async fn sigint_shuts_down_gracefully_too() {
    let work = Workdir::new();
    let setup = work.config("sigint", &[], &[]);
    let mut process = Process::start(&work, &setup, "sigint").await;
    let mut idle = Smtp::greeted(setup.smtp).await.unwrap();
    process.signal("INT");
    idle.reply().await.unwrap().expect(421, "4.3.2");
    let status = process.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", process.stderr());
}
