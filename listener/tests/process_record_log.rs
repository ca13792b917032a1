//! Attack 4 against the real binary: the record log stays small under a flood of
//! garbage commands, and a write error is reported at once (stderr, metric, `/readyz`)
//! and retried until the log can be written again, never a silent stop.

mod support_process;

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use support_process::{Process, Smtp, WAIT, Workdir, http_get, message, metric, require_tool};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

async fn metrics(admin: SocketAddr) -> String {
    http_get(admin, "/metrics")
        .await
        .expect("/metrics answers")
        .1
}

/// Polls `/readyz` until it answers `status`; panics after [`WAIT`].
async fn until_readyz(admin: SocketAddr, status: u16) {
    let start = Instant::now();
    loop {
        let (now, body) = http_get(admin, "/readyz").await.expect("/readyz answers");
        if now == status {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "/readyz still {now} ({body}), expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `process`'s stderr contains `text`; panics after [`WAIT`].
async fn until_stderr(process: &Process, text: &str) {
    let start = Instant::now();
    while !process.stderr().contains(text) {
        assert!(
            start.elapsed() < WAIT,
            "stderr never said {text:?}:\n{}",
            process.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 3 MB of garbage commands on one connection: every one is answered and counted, a
/// handful are logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_commands_gives_a_small_log() {
    let work = Workdir::new();
    let setup = work.config("garbage", &[], &[]);
    let process = Process::start(&work, &setup, "garbage").await;
    let stream = tokio::net::TcpStream::connect(setup.smtp).await.unwrap();
    let (read, mut write) = stream.into_split();
    let commands = 200_000;
    let writer = tokio::spawn(async move {
        let garbage = "XYZZY some garbage\r\n".repeat(1000);
        for _ in 0..commands / 1000 {
            write.write_all(garbage.as_bytes()).await.unwrap();
        }
        write.write_all(b"QUIT\r\n").await.unwrap();
        write
    });
    let mut replies = BufReader::new(read);
    let mut refused = 0;
    let mut line = String::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(WAIT, replies.read_line(&mut line))
            .await
            .expect("replies keep coming")
            .unwrap();
        if n == 0 || line.starts_with("221") {
            break;
        }
        if line.starts_with("500 5.5.2") {
            refused += 1;
        }
    }
    drop(writer.await.unwrap());
    assert_eq!(refused, commands, "every garbage command is answered");
    let text = metrics(setup.admin).await;
    assert_eq!(
        metric(&text, "postern_rejections_total"),
        Some(commands as f64),
        "every refusal is counted"
    );
    let suppressed = metric(&text, "postern_rejection_records_suppressed_total").unwrap();
    // The writer task may still hold the last records: wait until every refusal is
    // either in the log or counted as suppressed.
    let start = Instant::now();
    let records = loop {
        let records = setup.records();
        if records.len() as f64 + suppressed >= commands as f64 || start.elapsed() > WAIT {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log_bytes = std::fs::metadata(&setup.records).map_or(0, |m| m.len());
    println!(
        "{commands} garbage commands (3.8 MB): {} records, {log_bytes} log bytes, {suppressed} suppressed, RSS peak {} KiB",
        records.len(),
        process.status_kib("VmHWM")
    );
    assert!(
        log_bytes < 64 * 1024,
        "the record log grew to {log_bytes} bytes"
    );
    assert_eq!(records.len() as f64 + suppressed, commands as f64);
    assert!(
        records
            .iter()
            .any(|r| r["rejections_suppressed"].as_u64().is_some_and(|n| n > 0))
            || records.len() <= 10,
        "a later record says how many were left out"
    );
}

/// A log that cannot be written (ENOSPC on /dev/full) is reported at once while the
/// listener runs: a line on stderr, the error metric, `/readyz` 503.
#[tokio::test]
async fn a_log_write_error_is_reported_at_once() {
    let work = Workdir::new();
    let setup = work.config("full", &[], &[]);
    let config = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace(&format!("log: {:?}", setup.records), "log: /dev/full");
    std::fs::write(&setup.config, config).unwrap();
    let process = Process::start(&work, &setup, "full").await;
    let mut smtp = Smtp::greeted(setup.smtp).await.unwrap();
    smtp.cmd("XYZZY").await.unwrap().expect(500, "5.5.2");
    until_stderr(&process, "cannot write the record log").await;
    until_readyz(setup.admin, 503).await;
    let errors = metric(
        &metrics(setup.admin).await,
        "postern_log_write_errors_total",
    );
    assert!(errors.is_some_and(|e| e >= 1.0), "{errors:?}");
    let mut process = process;
    assert!(process.try_status().is_none(), "the listener keeps running");
}

/// A reader of a FIFO, as `cat FIFO > OUT`.
fn fifo_reader(fifo: &std::path::Path, out: &std::path::Path) -> Child {
    Command::new("cat")
        .arg(fifo)
        .stdout(std::fs::File::create(out).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn cat")
}

/// The log is a FIFO whose reader goes away (EPIPE) and comes back: the listener says
/// so at once, keeps the records, and writes them when a reader is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_retried_and_recovers_after_epipe() {
    let (Some(_), Some(_)) = (require_tool("mkfifo"), require_tool("cat")) else {
        return;
    };
    let work = Workdir::new();
    let setup = work.config("fifo", &[], &[]);
    let status = Command::new("mkfifo").arg(&setup.records).status().unwrap();
    assert!(status.success());
    let first = work.path().join("first.jsonl");
    let second = work.path().join("second.jsonl");
    let mut reader = fifo_reader(&setup.records, &first);
    let process = Process::start(&work, &setup, "fifo").await;

    let mut smtp = Smtp::greeted(setup.smtp).await.unwrap();
    let before = smtp
        .send_message("a@example.org", &["b@example.com"], &message("before"))
        .await
        .unwrap()
        .expect(250, "2.0.0")
        .id();
    let start = Instant::now();
    while !std::fs::read_to_string(&first).unwrap().contains(&before) {
        assert!(start.elapsed() < WAIT, "the first record never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.kill().unwrap();
    reader.wait().unwrap();

    smtp.cmd("XYZZY").await.unwrap().expect(500, "5.5.2");
    until_stderr(&process, "cannot write the record log").await;
    until_readyz(setup.admin, 503).await;

    let mut reader = fifo_reader(&setup.records, &second);
    let after = smtp
        .send_message("a@example.org", &["b@example.com"], &message("after"))
        .await
        .unwrap()
        .expect(250, "2.0.0")
        .id();
    until_readyz(setup.admin, 200).await;
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&second).unwrap();
        if text.contains(&after) && text.contains("XYZZY") {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "records written after recovery: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_stderr(&process, "the record log is written again").await;
    drop(process);
    let _ = reader.kill();
    let _ = reader.wait();
}
