//! kill -9 durability: a child process stores messages in a loop and prints
//! each id only after `store` returned; it is killed with SIGKILL mid-flight,
//! and every printed id must be in the reopened spool with its exact bytes.
//!
//! The child is this test binary itself, re-run on `kill9_child_writer`
//! with the spool directory in an environment variable.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postern_spool::{Envelope, MessageId, Spool, SpoolOptions};

const CHILD_DIR_VAR: &str = "POSTERN_SPOOL_KILL9_CHILD_DIR";
const WRITERS: usize = 8;
const IDS_BEFORE_KILL: usize = 300;

/// The message stored under `id`: its size and content depend on the id.
fn payload(id: &MessageId) -> Vec<u8> {
    let text = id.to_string();
    let lines = 50 + usize::from(text.as_bytes()[31] % 16) * 20;
    let mut data = format!("Message-ID: <{text}@test>\r\n\r\n").into_bytes();
    for line in 0..lines {
        data.extend_from_slice(format!("{text} line {line}\r\n").as_bytes());
    }
    data
}

/// Child side: stores forever until killed. Does nothing in a normal run.
#[test]
fn kill9_child_writer() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (spool, _) = Spool::open(Path::new(&dir), SpoolOptions::default()).unwrap();
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| tokio::spawn(write_forever(spool.clone())))
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
    });
}

async fn write_forever(spool: Spool) {
    loop {
        let id = MessageId::generate();
        let envelope = Envelope::new(id, "a@example.com", vec!["b@example.org".into()]);
        spool.store(envelope, payload(&id)).await.unwrap();
        println!("STORED {id}");
    }
}

#[test]
fn acknowledged_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "kill9_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut acknowledged = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("STORED ") {
            acknowledged.push(id.parse::<MessageId>().unwrap());
        }
        if acknowledged.len() >= IDS_BEFORE_KILL || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        acknowledged.len() >= IDS_BEFORE_KILL,
        "child printed only {} ids",
        acknowledged.len()
    );

    let (spool, report) = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    assert!(report.corrupt_moved.is_empty(), "{report:?}");
    assert!(report.messages >= acknowledged.len() as u64, "{report:?}");
    for id in &acknowledged {
        let data = postern_spool::show(dir.path(), id).unwrap();
        assert_eq!(data, payload(id), "message {id}");
        assert_eq!(spool.load(id).unwrap().0.size, data.len() as u64);
    }
    eprintln!(
        "kill -9 after {} acknowledged ids: {report:?}",
        acknowledged.len()
    );
}
