//! Crash consistency of the real binary at scale (issue 12): concurrent SMTP sessions,
//! SIGKILL at a random moment, a restart on the same spool, again and again. Every
//! message that got `250 … id=` must be in the spool afterwards exactly once, with its
//! bytes. 200 rounds by default (CI); `POSTERN_LISTENER_CRASH_ROUNDS=1000` on demand.
//! The kill moments come from a seeded generator whose seed is printed
//! (`POSTERN_LISTENER_CRASH_SEED` replays a run).

mod support_process;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use support_process::{
    Process, Stopped, WAIT, Workdir, message, send_until_stopped, spool_list, spool_show,
};

/// Concurrent client connections in each round.
const SENDERS: usize = 4;
/// The latest moment of a kill after the listener is ready, in milliseconds.
const MAX_KILL_AFTER_MS: u64 = 120;
/// How many acknowledged messages have their stored bytes compared at the end (each
/// comparison runs `spool show`, a process that reads the spool).
const BYTES_CHECKED: usize = 60;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{name}={value:?} is not a number"))
        })
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_repeated_sigkill() {
    let rounds = env_number("POSTERN_LISTENER_CRASH_ROUNDS", 200);
    let seed = env_number(
        "POSTERN_LISTENER_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1,
    );
    eprintln!("crash at scale: {rounds} rounds, seed {seed}");
    let mut moments = fastrand::Rng::with_seed(seed);
    let work = Workdir::new();
    let setup = work.config("crash", &[], &[]);

    let mut acked_all: Vec<(String, String)> = Vec::new();
    let mut kills_mid_traffic = 0;
    for round in 0..rounds {
        let mut process = Process::start(&work, &setup, &format!("round-{round}")).await;
        let acked = Arc::new(Mutex::new(Vec::new()));
        let senders: Vec<_> = (0..SENDERS)
            .map(|n| {
                let name = format!("r{round}-s{n}");
                tokio::spawn(send_until_stopped(setup.smtp, name, acked.clone()))
            })
            .collect();
        let after = moments.u64(..=MAX_KILL_AFTER_MS);
        tokio::time::sleep(Duration::from_millis(after)).await;
        process.sigkill();
        for sender in senders {
            match tokio::time::timeout(WAIT, sender).await.unwrap().unwrap() {
                Stopped::Died(_) => {}
                Stopped::Refused(reply) => {
                    panic!("round {round} (seed {seed}): refused before the kill: {reply:?}")
                }
            }
        }
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        if !acked.is_empty() {
            kills_mid_traffic += 1;
        }
        acked_all.extend(acked);
    }

    // One more start runs recovery over what the last kill left.
    let _last = Process::start(&work, &setup, "final").await;
    let listed = spool_list(&setup.spool);
    let missing: Vec<_> = acked_all
        .iter()
        .filter(|(id, _)| !listed.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: {} of {} acknowledged messages are missing after {rounds} SIGKILLs: {missing:?}",
        missing.len(),
        acked_all.len()
    );
    for _ in 0..BYTES_CHECKED.min(acked_all.len()) {
        let (id, marker) = &acked_all[moments.usize(..acked_all.len())];
        let bytes = spool_show(&setup.spool, id);
        assert!(
            bytes.ends_with(message(marker).as_bytes()),
            "seed {seed}: {id} does not hold the message sent with {marker}"
        );
    }
    eprintln!(
        "crash at scale: {rounds} kills ({kills_mid_traffic} with messages acknowledged in \
         that round), {} acknowledged messages all present once, {} spooled in all \
         (some unacknowledged at the kill), {} byte-checked",
        acked_all.len(),
        listed.len(),
        BYTES_CHECKED.min(acked_all.len())
    );
    assert!(
        kills_mid_traffic * 2 >= rounds,
        "seed {seed}: only {kills_mid_traffic} of {rounds} kills came mid-traffic"
    );
}
