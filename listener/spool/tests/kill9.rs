//! kill -9 durability: a child process (the `spool_crash_child` binary,
//! built by Cargo for this test) stores messages in a loop and prints each
//! id only after `store` returned; it is killed with SIGKILL mid-flight, and
//! every printed id must be in the reopened spool with its exact bytes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postern_spool::{MessageId, Spool, SpoolOptions};

const IDS_BEFORE_KILL: usize = 300;

/// The message stored under `id` (the same function as the child's).
fn payload(id: &MessageId) -> Vec<u8> {
    let text = id.to_string();
    let lines = 50 + usize::from(text.as_bytes()[31] % 16) * 20;
    let mut data = format!("Message-ID: <{text}@test>\r\n\r\n").into_bytes();
    for line in 0..lines {
        data.extend_from_slice(format!("{text} line {line}\r\n").as_bytes());
    }
    data
}

#[test]
fn acknowledged_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spool_crash_child"))
        .arg(dir.path())
        .arg("store")
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
