//! The child process of the spool's kill -9 tests (`tests/kill9.rs`,
//! `tests/crash_at_scale.rs`), built by Cargo for them: it writes to the
//! spool until it is killed, and prints a line on stdout only after the
//! operation it reports returned `Ok` (was acknowledged):
//!
//! ```text
//! STORED <id>                         the message is durable
//! PROGRESS <id> <i,j,...> <attempts>  this progress is durable
//! COMPLETING <id>                     (before) progress that may complete it
//! ```
//!
//! Usage: `spool_crash_child DIR store` (8 tasks storing one-recipient
//! messages) or `spool_crash_child DIR mixed SEED` (8 tasks storing
//! three-recipient messages, some deferred, recording progress and
//! completing them, plus one task finishing what earlier runs left queued).
//! The content of each message is [`payload`] of its id, so the parent can
//! check the exact bytes.

use std::path::PathBuf;

use postern_spool::{Deferral, Envelope, MessageId, Progress, Spool, SpoolOptions};

/// Concurrent writer tasks.
const WRITERS: usize = 8;

/// The message stored under `id`: its size and content depend on the id.
/// (The tests hold a copy of this function.)
fn payload(id: &MessageId) -> Vec<u8> {
    let text = id.to_string();
    let lines = 50 + usize::from(text.as_bytes()[31] % 16) * 20;
    let mut data = format!("Message-ID: <{text}@test>\r\n\r\n").into_bytes();
    for line in 0..lines {
        data.extend_from_slice(format!("{text} line {line}\r\n").as_bytes());
    }
    data
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(mode)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: spool_crash_child DIR store|mixed [SEED]");
        std::process::exit(2);
    };
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = PathBuf::from(dir);
    let mixed = mode == "mixed";
    runtime.block_on(async move {
        // Small segments and an eager compaction, so that rotation,
        // unlinking and the progress log's rewrite all happen under kill -9.
        let options = SpoolOptions {
            max_segment_bytes: 256 << 10,
            compact_progress_bytes: 2 << 10,
            ..SpoolOptions::default()
        };
        let (spool, _) = Spool::open(&dir, options).expect("open spool");
        let mut tasks = Vec::new();
        if mixed {
            let queued = spool.queued().expect("queued messages");
            tasks.push(tokio::spawn(finish_queued(spool.clone(), queued)));
        }
        for writer in 0..WRITERS as u64 {
            let spool = spool.clone();
            let rng = fastrand::Rng::with_seed(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ writer);
            tasks.push(if mixed {
                tokio::spawn(mixed_forever(spool, rng))
            } else {
                tokio::spawn(store_forever(spool))
            });
        }
        for task in tasks {
            task.await.expect("writer task");
        }
    });
}

async fn store_forever(spool: Spool) {
    loop {
        let id = MessageId::generate();
        let envelope = Envelope::new(id, "a@example.com", vec!["b@example.org".into()]);
        spool.store(envelope, payload(&id)).await.expect("store");
        println!("STORED {id}");
    }
}

/// Records progress and prints it once durable.
async fn progress(spool: &Spool, id: MessageId, finished: Vec<u32>, attempts: u32) {
    let list: Vec<String> = finished.iter().map(u32::to_string).collect();
    let progress = Progress {
        finished,
        attempts,
        next_due: Some(std::time::SystemTime::now()),
    };
    spool
        .record_progress(&id, progress)
        .await
        .expect("record progress");
    println!("PROGRESS {id} {} {attempts}", list.join(","));
}

/// Finishes every message earlier runs left, concurrently (sharing fsyncs).
async fn finish_queued(spool: Spool, queued: Vec<postern_spool::QueuedMessage>) {
    let tasks: Vec<_> = queued
        .into_iter()
        .map(|message| {
            let spool = spool.clone();
            tokio::spawn(async move {
                let all = message.envelope.recipients.len() as u32;
                let rest: Vec<u32> = (0..all).filter(|i| !message.finished.contains(i)).collect();
                println!("COMPLETING {}", message.envelope.id);
                progress(&spool, message.envelope.id, rest, message.attempts + 1).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("finishing task");
    }
}

async fn mixed_forever(spool: Spool, mut rng: fastrand::Rng) {
    let recipients: Vec<String> = ["x@example.org", "y@example.org", "z@example.org"]
        .map(String::from)
        .into();
    loop {
        let id = MessageId::generate();
        let envelope = Envelope::new(id, "a@example.com", recipients.clone());
        if rng.u32(..10) < 3 {
            // deferredSpool: durable only once a transient failure is recorded.
            let held = spool.store_deferred(envelope, payload(&id)).await;
            if held.expect("store deferred") == Deferral::Held && rng.u32(..2) == 0 {
                // Delivered to everybody at the first attempt: never on disk.
                let done = Progress {
                    finished: vec![0, 1, 2],
                    attempts: 1,
                    next_due: None,
                };
                spool.record_progress(&id, done).await.expect("complete");
                continue;
            }
            progress(&spool, id, vec![0], 1).await;
            println!("STORED {id}");
        } else {
            spool.store(envelope, payload(&id)).await.expect("store");
            println!("STORED {id}");
            match rng.u32(..3) {
                0 => continue,
                1 => progress(&spool, id, vec![1], 1).await,
                _ => {
                    progress(&spool, id, vec![0], 1).await;
                    println!("COMPLETING {id}");
                    progress(&spool, id, vec![1, 2], 2).await;
                }
            }
        }
    }
}
