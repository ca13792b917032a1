//! The figures of `docs/reliability.md`, measured on the real binary at its defaults.
//! On demand (they take a few minutes and want a release build):
//!
//! ```sh
//! cargo test -p postern-listener --release --test process_figures -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Each prints its figures; each also asserts the bound the docs promise, so a
//! regression fails loudly.

mod support_process;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use support_process::{
    HOSTILE_KINDS, Process, Smtp, Workdir, hostile, http_get, metric, require_tool,
};
use tokio::task::JoinSet;

/// Sessions per hostile kind.
const SESSIONS: usize = 1000;

/// Opens `count` connections of `kind`; returns the tasks holding them.
fn spawn_hostile(kind: &'static str, addr: SocketAddr, count: usize) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for _ in 0..count {
        set.spawn(async move {
            let _ = hostile(kind, addr).await;
        });
    }
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures: run on demand with --ignored --release"]
async fn rss_per_idle_connection() {
    let work = Workdir::new();
    let setup = work.config("idle", &[], &[]);
    let process = Process::start(&work, &setup, "idle").await;
    // Warm up the runtime and the allocator with a few sessions first.
    let mut warm = Vec::new();
    for _ in 0..20 {
        warm.push(Smtp::greeted(setup.smtp).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = process.rss_kib();
    let mut held = Vec::new();
    for _ in 0..SESSIONS {
        held.push(Smtp::greeted(setup.smtp).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = process.rss_kib();
    let per = (after - before) as f64 * 1024.0 / SESSIONS as f64;
    println!(
        "FIGURE idle: RSS {before} KiB → {after} KiB with {SESSIONS} more idle sessions (after EHLO): {per:.0} bytes each"
    );
    assert!(per < 10.0 * 1024.0, "{per:.0} bytes per idle connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures: run on demand with --ignored --release"]
async fn peak_rss_with_1000_hostile_sessions_of_each_kind() {
    let mut table = Vec::new();
    for &kind in HOSTILE_KINDS {
        let work = Workdir::new();
        let setup = work.config(kind, &[], &[]);
        let process = Process::start(&work, &setup, kind).await;
        let before = process.rss_kib();
        let mut set = spawn_hostile(kind, setup.smtp, SESSIONS);
        // Let every client connect and get as far as the listener lets it (kinds the
        // listener cuts quickly never have all 1000 open at once).
        let start = Instant::now();
        while process.open_fds() < SESSIONS && start.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (live, _) = http_get(setup.admin, "/livez").await.unwrap();
        let peak = process.status_kib("VmHWM");
        let fds = process.open_fds();
        set.abort_all();
        while set.join_next().await.is_some() {}
        println!(
            "FIGURE hostile {kind}: {SESSIONS} sessions, RSS {before} KiB idle, peak {peak} KiB, {fds} fds, /livez {live}"
        );
        assert_eq!(live, 200);
        assert!(peak < 256 * 1024, "{kind}: peak RSS {peak} KiB");
        table.push((kind, peak));
    }
    println!("FIGURE table: {table:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures: run on demand with --ignored --release"]
async fn connections_attempted_and_held_at_max_connections() {
    let Some(_) = require_tool("prlimit") else {
        return;
    };
    for (label, keys, wrapper, attempted) in [
        (
            "maxConnections 1000",
            vec!["maxConnections: 1000"],
            vec![],
            3000,
        ),
        (
            // Under half this test's own 20 000-descriptor limit, which holds every
            // client socket.
            "defaults under a 10 000-fd limit",
            vec![],
            vec!["prlimit", "--nofile=10000:10000", "--"],
            10_400,
        ),
    ] {
        let work = Workdir::new();
        let setup = work.config("held", &keys, &[]);
        let process = Process::start_wrapped(&work, &setup, "held", &wrapper).await;
        let mut set = JoinSet::new();
        for _ in 0..attempted {
            let addr = setup.smtp;
            set.spawn(async move {
                let mut smtp = Smtp::connect(addr).await.ok()?;
                let code = smtp.reply().await.ok()?.code;
                Some((code, smtp))
            });
        }
        let mut livez_ok = 0;
        let mut livez_failed = 0;
        let start = Instant::now();
        let mut held = Vec::new();
        let mut refused = 0;
        let mut failed = 0;
        loop {
            match http_get(setup.admin, "/livez").await {
                Ok((200, _)) => livez_ok += 1,
                _ => livez_failed += 1,
            }
            while let Some(done) = set.try_join_next() {
                match done.unwrap() {
                    Some((220, smtp)) => held.push(smtp),
                    Some((421, _)) => refused += 1,
                    _ => failed += 1,
                }
            }
            if set.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = http_get(setup.admin, "/metrics").await.unwrap().1;
        println!(
            "FIGURE {label}: {attempted} attempted, {} held, {refused} refused with 421, {failed} failed otherwise, /livez {livez_ok} ok / {livez_failed} failed over {:?}, fds {}, denied metric {:?}",
            held.len(),
            start.elapsed(),
            process.open_fds(),
            metric(&text, "postern_connections_denied_total"),
        );
        assert_eq!(livez_failed, 0);
    }
}
