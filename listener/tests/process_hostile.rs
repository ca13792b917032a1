//! The attacks of issue 12 against the real binary, each as a hostile client would run
//! it on loopback, each failing on the listener before the fix: too many connections
//! (1), message data held in memory (1), a client that never reads (2), SIGTERM then
//! SIGKILL with deferredSpool (2), a bare X-KumoRef disclosing Bcc recipients (5),
//! `SIZE=` reserving memory (6), trickling clients (7), raw bytes in EHLO (9) and
//! IPv4-mapped peers (10). The record log (4) is in `process_record_log.rs`.

mod support_process;

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use base64::Engine;
use support_process::{
    HOST, Process, Smtp, WAIT, Workdir, contains, free_addrs, http_get, message, metric,
    require_tool, spool_list, spool_show,
};
use tokio::{io::AsyncWriteExt, net::TcpStream, task::JoinSet};

/// The scrape of `/metrics`.
async fn metrics(admin: SocketAddr) -> String {
    let (status, text) = http_get(admin, "/metrics").await.expect("/metrics answers");
    assert_eq!(status, 200);
    text
}

/// Polls `/metrics` until `series` reaches `at_least`; panics after [`WAIT`].
async fn until_metric(admin: SocketAddr, series: &str, at_least: f64) -> f64 {
    let start = Instant::now();
    loop {
        let value = metric(&metrics(admin).await, series).unwrap_or(0.0);
        if value >= at_least {
            return value;
        }
        assert!(
            start.elapsed() < WAIT,
            "{series} is {value}, expected at least {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/livez` answers 200.
async fn assert_live(admin: SocketAddr) {
    let (status, body) = http_get(admin, "/livez").await.expect("/livez answers");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

/// Attack 1: past `maxConnections` a client is told 421 4.3.2 and closed, the admin
/// endpoint answers throughout, and a freed place is given to the next client.
#[tokio::test]
async fn max_connections_refuses_with_421_and_the_admin_endpoint_answers() {
    let work = Workdir::new();
    let setup = work.config("maxconn", &["maxConnections: 20"], &[]);
    let _process = Process::start(&work, &setup, "maxconn").await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(Smtp::greeted(setup.smtp).await.expect("a place"));
    }
    for _ in 0..10 {
        let mut over = Smtp::connect(setup.smtp).await.unwrap();
        over.reply().await.unwrap().expect(
            421,
            &format!("4.3.2 {HOST} too many concurrent sessions. Try later"),
        );
        assert!(over.closed().await, "closed after the 421");
        assert_live(setup.admin).await;
    }
    let denied = until_metric(setup.admin, "postern_connections_denied_total", 10.0).await;
    assert_eq!(denied, 10.0);
    drop(held.pop());
    let start = Instant::now();
    loop {
        let mut next = Smtp::connect(setup.smtp).await.unwrap();
        if next.reply().await.unwrap().code == 220 {
            break;
        }
        assert!(start.elapsed() < WAIT, "the freed place is never given out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Attack 1 as reported: more idle connections than the process has file descriptors.
/// At the defaults (maxConnections 32768) the listener caps sessions below its fd
/// limit, refuses the rest with 421, and `/livez` keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_connections_than_file_descriptors_leave_livez_answering() {
    let Some(_) = require_tool("prlimit") else {
        return;
    };
    let work = Workdir::new();
    let setup = work.config("fdlimit", &[], &[]);
    let _process = Process::start_wrapped(
        &work,
        &setup,
        "fdlimit",
        &["prlimit", "--nofile=512:512", "--"],
    )
    .await;
    let attempted = 700;
    let mut clients = JoinSet::new();
    for _ in 0..attempted {
        let addr = setup.smtp;
        clients.spawn(async move {
            let mut smtp = Smtp::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let reply = smtp.reply().await.map_err(|e| format!("reply: {e}"))?;
            Ok::<_, String>((reply.code, smtp))
        });
    }
    let mut held = Vec::new();
    let mut refused = 0;
    while let Some(joined) = clients.join_next().await {
        match joined.unwrap() {
            Ok((220, smtp)) => held.push(smtp),
            Ok((421, _)) => refused += 1,
            other => panic!("every client gets 220 or 421, got {:?}", other.map(|o| o.0)),
        }
    }
    assert_live(setup.admin).await;
    let (status, _) = http_get(setup.admin, "/readyz").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        held.len() <= 512 - 256,
        "{} sessions held under a 512-fd limit",
        held.len()
    );
    assert_eq!(held.len() + refused, attempted);
    println!(
        "fd limit 512: {attempted} connections attempted, {} held, {refused} refused with 421, /livez answered",
        held.len()
    );
}

/// Attack 1, memory: 40 sessions sending 19 MB bodies without the final dot. Message
/// data is held within `maxDataInFlight` (128 MiB by default), not 40 × 19 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_large_bodies_are_held_within_the_data_budget() {
    let work = Workdir::new();
    let setup = work.config("budget", &[], &[]);
    let process = Process::start(&work, &setup, "budget").await;
    let before = process.rss_kib();
    let mut senders = JoinSet::new();
    for _ in 0..40 {
        let addr = setup.smtp;
        senders.spawn(async move {
            let mut smtp = Smtp::greeted(addr).await?;
            smtp.send_message_start("a@example.org", &["b@example.com"])
                .await?;
            let line = format!("{}\r\n", "x".repeat(998));
            let chunk = line.repeat(64);
            let mut sent = 0;
            while sent < 19_000_000 {
                smtp.send(chunk.as_bytes()).await?;
                sent += chunk.len();
            }
            Ok::<_, std::io::Error>(smtp)
        });
    }
    // Let the clients push as much as the listener takes.
    let start = Instant::now();
    let mut last = 0.0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let text = metrics(setup.admin).await;
        let held = metric(&text, "postern_data_in_flight_bytes").unwrap_or(0.0);
        let waits = metric(&text, "postern_data_budget_waits_total").unwrap_or(0.0);
        if waits > 0.0 && (held - last).abs() < 1.0 || start.elapsed() > WAIT {
            break;
        }
        last = held;
    }
    let peak = process.status_kib("VmHWM");
    let budget = metric(&metrics(setup.admin).await, "postern_data_budget_bytes").unwrap();
    println!(
        "40 unfinished 19 MB bodies: RSS {before} KiB before, peak {peak} KiB; budget {budget} bytes"
    );
    assert!(
        peak < 256 * 1024,
        "peak RSS {peak} KiB with 40 unfinished 19 MB bodies; expected under 256 MiB"
    );
    assert_live(setup.admin).await;
    senders.abort_all();
}

/// Attack 2: a client that pipelines commands and never reads its replies is dropped
/// after `writeTimeout`.
#[tokio::test]
async fn a_client_that_never_reads_is_dropped() {
    let work = Workdir::new();
    let setup = work.config("noread", &["writeTimeout: 1s"], &[]);
    let _process = Process::start(&work, &setup, "noread").await;
    let mut stream = TcpStream::connect(setup.smtp).await.unwrap();
    let flood = tokio::spawn(async move {
        let noops = "NOOP\r\n".repeat(10_000);
        let mut sent = 0usize;
        while sent < 200_000_000 {
            if stream.write_all(noops.as_bytes()).await.is_err() {
                return sent;
            }
            sent += noops.len();
        }
        sent
    });
    until_metric(
        setup.admin,
        "postern_session_deadlines_total{deadline=\"write\"}",
        1.0,
    )
    .await;
    let text = metrics(setup.admin).await;
    assert_eq!(
        metric(&text, "postern_active_connections"),
        Some(0.0),
        "{text}"
    );
    let sent = tokio::time::timeout(WAIT, flood)
        .await
        .expect("the client's writes fail once it is dropped")
        .unwrap();
    assert!(sent < 200_000_000);
}

/// Holds a session the way a hostile client does during shutdown: one pipelines NOOPs
/// and never reads, one stalls its STARTTLS handshake.
async fn hostile_sessions(addr: SocketAddr) -> (tokio::task::JoinHandle<()>, Smtp) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let flood = tokio::spawn(async move {
        let noops = "NOOP\r\n".repeat(10_000);
        while stream.write_all(noops.as_bytes()).await.is_ok() {}
    });
    let mut stalled = Smtp::greeted(addr).await.unwrap();
    stalled.cmd("STARTTLS").await.unwrap().expect(220, "2.0.0");
    (flood, stalled)
}

/// Attack 2: with deferredSpool, a message answered 250 survives SIGTERM followed by
/// SIGKILL at the end of the grace period, as a kubelet does, while hostile clients
/// hold their sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_messages_survive_sigterm_then_sigkill() {
    let work = Workdir::new();
    let setup = work.config(
        "deferred",
        &["deferredSpool: true", "clientTimeout: 1m"],
        &["shutdownGracePeriod: 2s"],
    );
    let mut process = Process::start(&work, &setup, "deferred").await;
    let mut client = Smtp::greeted(setup.smtp).await.unwrap();
    let id = client
        .send_message(
            "a@example.org",
            &["b@example.com"],
            &message("deferred-kept"),
        )
        .await
        .unwrap()
        .expect(250, "2.0.0")
        .id();
    let (_flood, _stalled) = hostile_sessions(setup.smtp).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    process.sigterm();
    tokio::time::sleep(Duration::from_secs(2)).await;
    if process.try_status().is_none() {
        process.sigkill();
    }
    let listed = spool_list(&setup.spool);
    assert!(
        listed.contains_key(&id),
        "the acknowledged message is on disk: {listed:?}"
    );
    assert!(contains(
        &spool_show(&setup.spool, &id),
        "body deferred-kept\r\n"
    ));
}

/// Attack 2: graceful shutdown ends within the grace period (plus the second given to
/// the last 421s) whatever clients do, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_by_the_grace_period_whatever_clients_do() {
    let work = Workdir::new();
    let setup = work.config(
        "bounded",
        &["clientTimeout: 1m"],
        &["shutdownGracePeriod: 2s"],
    );
    let mut process = Process::start(&work, &setup, "bounded").await;
    let (_flood, _stalled) = hostile_sessions(setup.smtp).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = Instant::now();
    process.sigterm();
    let status = process.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", process.stderr());
    println!("exited {:?} after SIGTERM (grace 2s)", sent.elapsed());
}

/// Attack 6: `SIZE=` reserves nothing. Under an address-space limit, sessions that
/// announce 20 MB each and send little do not make the process fail an allocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_announcements_reserve_no_memory() {
    let Some(_) = require_tool("prlimit") else {
        return;
    };
    let work = Workdir::new();
    let setup = work.config("sizehint", &[], &[]);
    // Measure the address space the listener uses idle, then give it 200 MiB more.
    let probe = Process::start(&work, &setup, "sizehint-probe").await;
    let idle = probe.status_kib("VmSize");
    drop(probe);
    let limit = (idle + 200 * 1024) * 1024;
    let mut process = Process::start_wrapped(
        &work,
        &setup,
        "sizehint",
        &["prlimit", &format!("--as={limit}"), "--"],
    )
    .await;
    let mut sessions = Vec::new();
    for _ in 0..20 {
        let mut smtp = Smtp::greeted(setup.smtp).await.unwrap();
        smtp.cmd("MAIL FROM:<a@example.org> SIZE=20000000")
            .await
            .unwrap()
            .expect(250, "2.1.0");
        smtp.cmd("RCPT TO:<b@example.com>")
            .await
            .unwrap()
            .expect(250, "2.1.5");
        smtp.cmd("DATA").await.unwrap().expect(354, "");
        smtp.send(b"Subject: announced big\r\n\r\nsmall\r\n")
            .await
            .unwrap();
        sessions.push(smtp);
    }
    for smtp in &mut sessions {
        smtp.send(b".\r\n").await.unwrap();
        smtp.reply().await.unwrap().expect(250, "2.0.0");
    }
    assert!(process.try_status().is_none(), "{}", process.stderr());
}

/// Attack 7: one byte every 300 ms keeps every read inside `clientTimeout`, but a
/// command must be whole within `commandTimeout` and the data within `dataTimeout`.
#[tokio::test]
async fn trickling_clients_are_cut_at_the_command_and_data_deadlines() {
    let work = Workdir::new();
    let setup = work.config(
        "trickle",
        &["clientTimeout: 1s", "commandTimeout: 2s", "dataTimeout: 2s"],
        &[],
    );
    let _process = Process::start(&work, &setup, "trickle").await;

    let mut command = Smtp::greeted(setup.smtp).await.unwrap();
    let mut data = Smtp::greeted(setup.smtp).await.unwrap();
    data.send_message_start("a@example.org", &["b@example.com"])
        .await
        .unwrap();
    let line = b"MAIL FROM:<a-rather-long-sender-name@example.org>\r\n";
    let mut cut = (None, None);
    for &byte in line.iter().cycle().take(200) {
        if cut.0.is_none() && command.send(&[byte]).await.is_err() {
            cut.0 = Some(None);
        }
        if cut.1.is_none() && data.send(&[byte]).await.is_err() {
            cut.1 = Some(None);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if cut.0.is_none()
            && let Ok(Ok(reply)) =
                tokio::time::timeout(Duration::from_millis(1), command.reply()).await
        {
            cut.0 = Some(Some(reply));
        }
        if cut.1.is_none()
            && let Ok(Ok(reply)) =
                tokio::time::timeout(Duration::from_millis(1), data.reply()).await
        {
            cut.1 = Some(Some(reply));
        }
        if cut.0.is_some() && cut.1.is_some() {
            break;
        }
    }
    for (what, reply) in [("command", cut.0), ("data", cut.1)] {
        let reply = reply
            .unwrap_or_else(|| panic!("the trickling {what} client is never cut"))
            .unwrap_or_else(|| panic!("the {what} client was cut without a 421"));
        reply.expect(421, "4.4.2");
    }
    let text = metrics(setup.admin).await;
    for deadline in ["command", "data"] {
        assert_eq!(
            metric(
                &text,
                &format!("postern_session_deadlines_total{{deadline=\"{deadline}\"}}")
            ),
            Some(1.0),
            "{text}"
        );
    }
}

/// Attack 9: control characters and 8-bit octets in the hello name are refused with
/// 501 5.5.4 and never reach the `Received` header.
#[tokio::test]
async fn raw_bytes_in_ehlo_are_refused_and_never_reach_received() {
    let work = Workdir::new();
    let setup = work.config("ehlo", &[], &[]);
    let _process = Process::start(&work, &setup, "ehlo").await;
    let mut smtp = Smtp::connect(setup.smtp).await.unwrap();
    smtp.reply().await.unwrap().expect(220, HOST);
    for bad in [
        &b"EHLO evil\x00.example\r\n"[..],
        b"EHLO evil\x1b[2J.example\r\n",
        b"HELO evil\x7f.example\r\n",
        b"EHLO caf\xc3\xa9.example\r\n",
        b"EHLO caf\xe9.example\r\n",
    ] {
        smtp.send(bad).await.unwrap();
        smtp.reply().await.unwrap().expect(501, "5.5.4");
    }
    smtp.cmd("MAIL FROM:<a@example.org>")
        .await
        .unwrap()
        .expect(503, "5.5.1");
    smtp.cmd("EHLO good.example")
        .await
        .unwrap()
        .expect(250, HOST);
    let id = smtp
        .send_message("a@example.org", &["b@example.com"], &message("ehlo"))
        .await
        .unwrap()
        .expect(250, "2.0.0")
        .id();
    let stored = spool_show(&setup.spool, &id);
    assert!(contains(
        &stored,
        "Received: from good.example ([127.0.0.1])"
    ));
    assert!(
        !stored
            .iter()
            .any(|&b| b == 0 || b == 0x1b || b == 0x7f || b >= 0x80),
        "no raw control or 8-bit octet in the stored message"
    );
    let records = setup.records();
    let names: Vec<&str> = records
        .iter()
        .filter_map(|r| r["peer_address"]["name"].as_str())
        .collect();
    assert!(
        names.iter().all(|n| n.is_empty() || *n == "good.example"),
        "{names:?}"
    );
}

/// Attack 10: on a dual-stack listener IPv4 clients arrive as `::ffff:a.b.c.d`;
/// `relayHosts` written in IPv6 form match them, and records and `Received` show them
/// as plain IPv4.
#[tokio::test]
async fn relay_hosts_in_ipv6_form_match_ipv4_mapped_peers() {
    for relay_hosts in ["\"::ffff:0:0/96\"", "\"::/0\""] {
        let work = Workdir::new();
        let [admin] = free_addrs();
        let port = free_addrs::<1>()[0].port();
        let records = work.path().join("records.jsonl");
        let config = work.write(
            "dual.yaml",
            &format!(
                "listeners:\n  - listen: \"[::]:{port}\"\n    hostname: {HOST}\n    relayHosts: [{relay_hosts}]\n\
                 spool:\n  path: {:?}\nlog: {records:?}\nadmin:\n  listen: \"{admin}\"\n",
                work.spool()
            ),
        );
        let setup = support_process::Setup {
            config,
            smtp: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            admin,
            spool: work.spool(),
            records,
        };
        let _process = Process::start(&work, &setup, "dual").await;
        let mut smtp = Smtp::greeted(setup.smtp).await.unwrap();
        let id = smtp
            .send_message(
                "a@example.org",
                &["anyone@elsewhere.example"],
                &message("v6"),
            )
            .await
            .unwrap_or_else(|e| panic!("relayHosts [{relay_hosts}]: {e}"))
            .expect(250, "2.0.0")
            .id();
        let stored = spool_show(&setup.spool, &id);
        assert!(
            contains(&stored, "Received: from client.test ([127.0.0.1])"),
            "{}",
            String::from_utf8_lossy(&stored)
        );
        let records = setup.records();
        assert!(!records.is_empty());
        for record in &records {
            assert_eq!(record["peer_address"]["addr"], "127.0.0.1", "{record}");
            assert_eq!(
                record["meta"]["received_from"]
                    .as_str()
                    .map(|a| a.starts_with("127.0.0.1:")),
                Some(true),
                "{record}"
            );
        }
    }
}

/// Attack 5: a message for several recipients (one of them Bcc) names none of them in
/// its X-KumoRef header, so no recipient learns the others.
#[tokio::test]
async fn x_kumoref_does_not_disclose_bcc_recipients() {
    let work = Workdir::new();
    let setup = work.config("bcc", &[], &[]);
    let _process = Process::start(&work, &setup, "bcc").await;
    let mut smtp = Smtp::greeted(setup.smtp).await.unwrap();
    let id = smtp
        .send_message(
            "a@example.org",
            &["to@example.com", "hidden-bcc@example.net"],
            "Subject: hello\r\nTo: <to@example.com>\r\n\r\nhi\r\n",
        )
        .await
        .unwrap()
        .expect(250, "2.0.0")
        .id();
    let stored = String::from_utf8(spool_show(&setup.spool, &id)).unwrap();
    assert!(
        !stored.contains("hidden-bcc"),
        "the Bcc recipient is not in the message: {stored}"
    );
    let header = stored
        .split("\r\n")
        .scan(None::<String>, |acc, line| {
            if let Some(rest) = line.strip_prefix("X-KumoRef: ") {
                *acc = Some(rest.to_owned());
            } else if let (Some(a), Some(rest)) = (acc.as_mut(), line.strip_prefix('\t')) {
                a.push_str(rest);
            } else if acc.is_some() {
                return Some(acc.take());
            }
            Some(None)
        })
        .flatten()
        .next()
        .expect("an X-KumoRef header");
    let json = base64::engine::general_purpose::STANDARD
        .decode(header)
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json, serde_json::json!({"_@_": "\\_/"}));
}
