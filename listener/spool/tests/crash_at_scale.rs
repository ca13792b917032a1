//! Crash consistency at scale: the `spool_crash_child` binary drives 8
//! concurrent writers (stores, deferred stores, progress records,
//! completions, and finishing what earlier runs left) and is killed with
//! SIGKILL at a random moment, again and again on the same spool: 200
//! times by default, `POSTERN_SPOOL_CRASH_ROUNDS=1000` on demand. After
//! each kill the spool is reopened and checked:
//!
//! - every acknowledged message that is not complete is queued exactly
//!   once, with its exact bytes;
//! - every acknowledged progress is honoured: its recipients are finished
//!   (never to be sent again) and the attempts are at least those recorded;
//! - every message whose completion was acknowledged is gone (one whose
//!   completing progress was in flight may be either);
//! - kill -9 corrupts nothing (page cache survives), so nothing is moved
//!   aside.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use postern_spool::{MessageId, Spool, SpoolOptions};

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

/// What the child acknowledged about one message.
#[derive(Debug, Default)]
struct Acked {
    stored: bool,
    /// Acknowledged in the latest round (its bytes are checked then).
    fresh: bool,
    /// A progress that completes it was issued (maybe not acknowledged).
    completing: bool,
    finished: BTreeSet<u32>,
    attempts: u32,
}

/// Runs the child once and kills it after a random number of
/// acknowledgements (and a random pause); folds what it acknowledged.
fn run_child_and_kill(
    dir: &std::path::Path,
    round: u64,
    rng: &mut fastrand::Rng,
    acked: &mut HashMap<MessageId, Acked>,
) -> usize {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spool_crash_child"))
        .arg(dir)
        .arg("mixed")
        .arg(round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let target = rng.usize(..60);
    let mut lines = 0;
    let mut out = BufReader::new(child.stdout.take().expect("child stdout"));
    let mut line = String::new();
    while lines < target {
        line.clear();
        if out.read_line(&mut line).expect("read child") == 0 {
            break;
        }
        fold(&line, acked);
        lines += 1;
    }
    std::thread::sleep(Duration::from_micros(rng.u64(..3000)));
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // Whatever the child printed before it died was acknowledged too.
    loop {
        line.clear();
        if out.read_line(&mut line).expect("read child") == 0 {
            break;
        }
        fold(&line, acked);
        lines += 1;
    }
    lines
}

/// Folds one line of the child's output.
fn fold(line: &str, acked: &mut HashMap<MessageId, Acked>) {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[..] {
        ["COMPLETING", id] => acked.entry(id.parse().unwrap()).or_default().completing = true,
        ["STORED", id] => {
            let entry = acked.entry(id.parse().unwrap()).or_default();
            entry.stored = true;
            entry.fresh = true;
        }
        ["PROGRESS", id, finished, attempts] => {
            let entry = acked.entry(id.parse().unwrap()).or_default();
            entry.stored = true;
            entry.finished.extend(
                finished
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<u32>().unwrap()),
            );
            entry.attempts = entry.attempts.max(attempts.parse().unwrap());
        }
        _ => panic!("unexpected child output {line:?}"),
    }
}

#[test]
fn every_acknowledged_write_survives_hundreds_of_kill_9() {
    let rounds: u64 = std::env::var("POSTERN_SPOOL_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(0x5eed_c4a5_0000_0001);
    let mut acked: HashMap<MessageId, Acked> = HashMap::new();
    let mut checked = 0u64;
    let mut lines = 0;
    for round in 0..rounds {
        lines += run_child_and_kill(dir.path(), round, &mut rng, &mut acked);

        let (spool, report) = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        assert!(report.corrupt_moved.is_empty(), "round {round}: {report:?}");
        let queued: HashMap<MessageId, _> = spool
            .queued()
            .unwrap()
            .into_iter()
            .map(|q| (q.envelope.id, q))
            .collect();
        let mut listed: HashMap<MessageId, usize> = HashMap::new();
        for envelope in postern_spool::list(dir.path()).unwrap() {
            *listed.entry(envelope.unwrap().id).or_default() += 1;
        }
        assert_eq!(listed.len(), queued.len(), "round {round}");
        for (id, ack) in &acked {
            if !ack.stored {
                continue;
            }
            if ack.finished.len() == 3 {
                assert!(
                    !queued.contains_key(id),
                    "round {round}: completed {id} is queued again"
                );
                continue;
            }
            if ack.completing && !queued.contains_key(id) {
                continue; // completed by a progress in flight at the kill
            }
            let message = queued.get(id).unwrap_or_else(|| {
                panic!(
                    "round {round}: acknowledged {id} lost: {ack:?}, on disk: {:?}, {report:?}",
                    postern_spool::show(dir.path(), id).map(|d| d.len())
                )
            });
            assert_eq!(
                listed.get(id),
                Some(&1),
                "round {round}: {id} not exactly once"
            );
            let finished: BTreeSet<u32> = message.finished.iter().copied().collect();
            assert!(
                finished.is_superset(&ack.finished),
                "round {round}: {id} finished {finished:?}, acknowledged {:?}",
                ack.finished
            );
            assert!(message.attempts >= ack.attempts, "round {round}: {id}");
            if ack.fresh {
                assert_eq!(
                    spool.load(id).unwrap().1,
                    payload(id),
                    "round {round}: {id}"
                );
            }
            checked += 1;
        }
        // Messages completed by later runs are dropped from the bookkeeping
        // once checked gone, so each round checks what may still exist.
        acked.retain(|id, ack| ack.finished.len() < 3 || queued.contains_key(id));
        for id in queued.keys() {
            acked.entry(*id).or_default().stored = true;
        }
        acked.values_mut().for_each(|ack| ack.fresh = false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(spool.close()).unwrap();
    }
    eprintln!(
        "crash at scale: {rounds} kill -9 survived, {lines} acknowledgements read, {checked} message checks"
    );
}
