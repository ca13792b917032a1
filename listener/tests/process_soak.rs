//! Soak: good clients sending mail next to every hostile client of issue 12 at once,
//! against the real binary on loopback. Resident memory and open descriptors must stay
//! flat, and every message a good client sends must be accepted.
//!
//! The run lasts `POSTERN_SOAK_SECS` seconds (60 by default, so CI spends a minute;
//! set hours on demand). Hostile clients are bounded in number; each reconnects when
//! the listener cuts it off, so the pressure lasts the whole run.

mod support_process;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use support_process::{Process, Smtp, WAIT, Workdir, hostile, message};
use tokio::task::JoinSet;

/// How many of each hostile kind run at once.
const HOSTILE: &[(&str, usize)] = &[
    ("idle", 100),
    ("never-reads", 2),
    ("trickle-command", 20),
    ("trickle-data", 20),
    ("unfinished-body", 10),
    ("garbage", 1),
    ("bad-ehlo", 2),
    ("stalled-tls", 10),
];

/// Good clients, each sending messages in sessions of 20.
const GOOD: usize = 4;

/// A sample of the listener's resources.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_clients_keep_going_among_hostile_ones_with_flat_memory_and_descriptors() {
    let secs: u64 = std::env::var("POSTERN_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let work = Workdir::new();
    let setup = work.config(
        "soak",
        &[
            "clientTimeout: 2s",
            "commandTimeout: 3s",
            "dataTimeout: 4s",
            "writeTimeout: 2s",
            "tlsHandshakeTimeout: 2s",
            "maxConnections: 400",
        ],
        &[],
    );
    let process = Process::start(&work, &setup, "soak").await;
    let idle_fds = process.open_fds();
    let clients: usize = HOSTILE.iter().map(|(_, n)| n).sum::<usize>() + GOOD;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for &(kind, count) in HOSTILE {
        for _ in 0..count {
            let (stop, addr) = (stop.clone(), setup.smtp);
            tasks.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(30), hostile(kind, addr)).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    }
    let accepted = Arc::new(AtomicU64::new(0));
    let mut good = JoinSet::new();
    for n in 0..GOOD {
        let (stop, addr, accepted) = (stop.clone(), setup.smtp, accepted.clone());
        good.spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut smtp = Smtp::greeted(addr).await.expect("a good client is served");
                for _ in 0..20 {
                    let marker = format!("good-{n}-{sent}");
                    smtp.send_message("g@example.org", &["r@example.com"], &message(&marker))
                        .await
                        .unwrap_or_else(|e| panic!("{marker}: {e}"))
                        .expect(250, "2.0.0");
                    sent += 1;
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                smtp.cmd("QUIT").await.expect("QUIT").expect(221, "2.0.0");
            }
            sent
        });
    }

    let start = Instant::now();
    let mut samples = Vec::new();
    let mut last_accepted = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(5).min(Duration::from_secs(secs))).await;
        let sample = Sample {
            at: start.elapsed(),
            rss_kib: process.rss_kib(),
            fds: process.open_fds(),
        };
        let now = accepted.load(Ordering::Relaxed);
        println!(
            "{:>5.0}s RSS {:>7} KiB, {:>4} fds, {:>6} accepted (+{})",
            sample.at.as_secs_f64(),
            sample.rss_kib,
            sample.fds,
            now,
            now - last_accepted
        );
        last_accepted = now;
        samples.push(sample);
    }
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    while let Some(done) = good.join_next().await {
        sent += done.expect("a good client never fails");
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}

    // Flat: after the first third (warm-up: every hostile kind connected and cut at
    // least once), memory does not keep growing; descriptors never exceed one per
    // client connection over the idle count.
    let warm = (samples.len() / 3).max(1);
    let (early, late) = samples.split_at(warm.min(samples.len()));
    let early_rss = early.iter().map(|s| s.rss_kib).max().unwrap();
    let late_rss = late.iter().map(|s| s.rss_kib).max().unwrap_or(early_rss);
    let peak_fds = samples.iter().map(|s| s.fds).max().unwrap();
    println!(
        "soak {secs}s: {sent} good messages ({:.1}/s); RSS peak {early_rss} KiB warm-up, {late_rss} KiB after; fds {idle_fds} idle, peak {peak_fds} with {clients} clients",
        sent as f64 / secs as f64
    );
    assert!(sent > 0, "the good clients sent nothing");
    assert!(
        late_rss <= early_rss + early_rss / 2 + 16 * 1024,
        "RSS grew from {early_rss} KiB to {late_rss} KiB"
    );
    assert!(
        peak_fds <= idle_fds + clients + 32,
        "{peak_fds} descriptors for {clients} clients ({idle_fds} idle)"
    );
    // Once the hostile clients are gone, the listener lets go of every session.
    let begin = Instant::now();
    loop {
        let fds = process.open_fds();
        if fds <= idle_fds + 8 {
            break;
        }
        assert!(begin.elapsed() < WAIT, "{fds} descriptors still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
