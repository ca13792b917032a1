//! Spool throughput with 10 KiB messages and 1, 16 or 64 concurrent
//! writers, with group commit and with one fsync per message (baseline).
//!
//! `cargo bench -p postern-spool`. divan reports messages/s ("item/s");
//! fsyncs per message are printed after its table.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

use divan::Bencher;
use divan::counter::ItemsCount;
use postern_spool::{Envelope, MessageId, Spool, SpoolOptions};
use tokio::runtime::Runtime;

/// Size of each message.
const MESSAGE_BYTES: usize = 10 * 1024;
/// Messages stored per measured iteration (divisible by every writer count).
const MESSAGES_PER_ITERATION: usize = 256;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
});

/// (mode, writers) → (fsyncs, messages), filled by each benchmark.
type FsyncTable = BTreeMap<(&'static str, usize), (u64, u64)>;
static FSYNCS: Mutex<FsyncTable> = Mutex::new(BTreeMap::new());

fn main() {
    divan::main();
    println!("\nfsyncs per message (10 KiB messages):");
    println!(
        "{:<20} {:>8} {:>10} {:>10} {:>14}",
        "mode", "writers", "messages", "fsyncs", "fsyncs/message"
    );
    for ((mode, writers), (fsyncs, messages)) in FSYNCS.lock().unwrap().iter() {
        let ratio = *fsyncs as f64 / *messages as f64;
        println!("{mode:<20} {writers:>8} {messages:>10} {fsyncs:>10} {ratio:>14.3}");
    }
}

/// Shared fsyncs: one writer thread batches whatever is queued.
#[divan::bench(args = [1, 16, 64], sample_count = 5, sample_size = 1)]
fn group_commit(bencher: Bencher, writers: usize) {
    run(bencher, writers, "group_commit", true);
}

/// Baseline: the same spool with one fsync per message.
#[divan::bench(args = [1, 16, 64], sample_count = 5, sample_size = 1)]
fn fsync_per_message(bencher: Bencher, writers: usize) {
    run(bencher, writers, "fsync_per_message", false);
}

fn run(bencher: Bencher, writers: usize, mode: &'static str, group_commit: bool) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let options = SpoolOptions {
        group_commit,
        ..SpoolOptions::default()
    };
    let (spool, _) = Spool::open(dir.path(), options).expect("open spool");
    bencher
        .counter(ItemsCount::new(MESSAGES_PER_ITERATION))
        .bench(|| RUNTIME.block_on(store_many(&spool, writers)));
    let metrics = spool.metrics();
    FSYNCS.lock().unwrap().insert(
        (mode, writers),
        (metrics.fsyncs(), metrics.messages_stored()),
    );
    RUNTIME.block_on(spool.close()).expect("close spool");
}

/// `writers` tasks store MESSAGES_PER_ITERATION messages between them.
async fn store_many(spool: &Spool, writers: usize) {
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let spool = spool.clone();
            tokio::spawn(async move {
                for _ in 0..MESSAGES_PER_ITERATION / writers {
                    let id = MessageId::generate();
                    let envelope = Envelope::new(id, "a@example.com", vec!["b@example.org".into()]);
                    spool
                        .store(envelope, vec![b'x'; MESSAGE_BYTES])
                        .await
                        .expect("store");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
}
