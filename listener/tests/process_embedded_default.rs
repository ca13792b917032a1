//! The README's first command: `postern-listener` with no `--config`, run in an empty
//! directory. It serves SMTP on 127.0.0.1:2525 (admin on 127.0.0.1:8025) with this
//! machine's hostname, relays from loopback to any domain, spools to `./postern-spool`
//! and writes its JSON records to stdout.
//!
//! The only test that uses the fixed ports; it also takes a machine-wide lock
//! ([`support_process::lock_default_ports`]) so that no other test that does so can
//! run at the same time.

mod support_process;

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use support_process::{Process, Smtp, WAIT, lock_default_ports, message, spool_list, spool_show};

const SMTP: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 2525);
const ADMIN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8025);

/// Fails with a clear message when a fixed port is taken by something else.
fn assert_free(addr: SocketAddr) {
    if let Err(e) = std::net::TcpListener::bind(addr) {
        panic!(
            "{addr} is busy on this machine ({e}); the embedded-default test needs it. \
             Stop whatever listens there and run the test again."
        );
    }
}

#[tokio::test]
async fn no_config_serves_the_embedded_default() {
    let _lock = lock_default_ports();
    assert_free(SMTP);
    assert_free(ADMIN);
    let cwd = tempfile::tempdir().unwrap();
    let no_args: [&str; 0] = [];
    let mut process = Process::spawn(cwd.path(), "default", &no_args);
    process.wait_ready(ADMIN).await;
    assert!(
        cwd.path().join("postern-spool").is_dir(),
        "./postern-spool is created in the working directory"
    );

    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read the hostname")
        .trim()
        .to_owned();
    let mut smtp = Smtp::connect(SMTP).await.unwrap();
    let greeting = smtp.reply().await.unwrap();
    assert_eq!(greeting.code, 220, "{greeting:?}");
    assert!(
        greeting.lines[0].starts_with(&format!("{hostname} ")),
        "the greeting names this machine ({hostname}): {greeting:?}"
    );
    smtp.cmd("EHLO client.test")
        .await
        .unwrap()
        .expect(250, &hostname);
    let reply = smtp
        .send_message(
            "someone@example.org",
            &["anyone@any-domain.example"],
            &message("embedded-default"),
        )
        .await
        .unwrap();
    reply.expect(250, "2.0.0 OK id=");
    let id = reply.id();
    smtp.cmd("QUIT").await.unwrap().expect(221, "2.0.0");

    // The Reception record appears on stdout (polled: the log is written by a task).
    let deadline = Instant::now() + WAIT;
    let record = loop {
        let found = process
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r["type"] == "Reception" && r["id"] == id.as_str());
        if let Some(record) = found {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "no Reception record for {id} on stdout: {}",
            process.stdout()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(record["sender"], "someone@example.org");
    assert_eq!(record["recipient"], "anyone@any-domain.example");
    assert_eq!(record["peer_address"]["addr"], "127.0.0.1");
    for line in process.stdout().lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("stdout carries only JSON records ({e}): {line}"));
    }

    process.sigterm();
    let status = process.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", process.stderr());

    let spool = cwd.path().join("postern-spool");
    let listed = spool_list(&spool);
    assert_eq!(listed.keys().collect::<Vec<_>>(), [&id]);
    assert!(support_process::contains(
        &spool_show(&spool, &id),
        "body embedded-default"
    ));
}
