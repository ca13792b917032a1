//! Delivery by the real binary to real next hops on loopback: Postfix's `smtp-sink`
//! with the README's minimal smarthost configuration, and a scripted SMTP peer for
//! what real servers do badly (451 then 250, mixed replies per recipient), a restart
//! in the middle of a retry schedule, drain and backpressure.

mod support_process;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use support_process::{
    DELIVERY_WAIT, Process, Smtp, WAIT, Workdir, free_addrs, http_get, message, metric, run_to_end,
    sink::Sink,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// The minimal `delivery` section, toward `port`.
fn minimal(port: u16) -> String {
    format!(
        "delivery: {{smarthost: {{host: 127.0.0.1, port: {port}, tls: none}}, retryInterval: 1s}}"
    )
}

#[tokio::test]
async fn the_minimal_smarthost_config_delivers_to_smtp_sink() {
    let work = Workdir::new();
    let [sink_addr] = free_addrs();
    let Some(sink) = Sink::start(&work, sink_addr) else {
        return;
    };
    let setup = work.config("minimal", &[&minimal(sink_addr.port())], &[]);
    let mut process = Process::start(&work, &setup, "minimal").await;

    let mut client = Smtp::greeted(setup.smtp).await.unwrap();
    client
        .send_message("a@example.org", &["one@example.com"], &message("first"))
        .await
        .unwrap()
        .expect(250, "2.0.0");
    client
        .send_message(
            "a@example.org",
            &["two@example.com", "three@example.net"],
            &message("second"),
        )
        .await
        .unwrap()
        .expect(250, "2.0.0");
    client.cmd("QUIT").await.unwrap();

    let delivered = setup.wait_records("Delivery", 3).await;
    let recipients: std::collections::BTreeSet<&str> = delivered
        .iter()
        .map(|r| r["recipient"].as_str().unwrap())
        .collect();
    assert_eq!(
        recipients,
        ["one@example.com", "three@example.net", "two@example.com"].into()
    );
    for r in &delivered {
        assert_eq!(r["site"], format!("127.0.0.1:{}", sink_addr.port()));
        assert_eq!(r["response"]["code"], 250);
        assert_eq!(r["num_attempts"], 1);
        assert_eq!(r["peer_address"]["addr"], sink_addr.to_string());
    }
    let queue: Vec<&str> = delivered
        .iter()
        .map(|r| r["queue"].as_str().unwrap())
        .collect();
    assert!(queue.contains(&"example.com") && queue.contains(&"example.net"));
    let dump = sink.received();
    assert!(
        dump.contains("body first") && dump.contains("body second"),
        "{dump}"
    );

    // Delivered means gone: the queue is empty and the spool lists nothing.
    let (status, body) = http_get(setup.admin, "/queue").await.unwrap();
    assert_eq!(status, 200);
    let queue: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(queue["depth"], 0, "{body}");
    let listed = support_process::spool_list(&setup.spool);
    assert!(listed.is_empty(), "{listed:?}");
    let (_, metrics) = http_get(setup.admin, "/metrics").await.unwrap();
    assert_eq!(
        metric(
            &metrics,
            r#"postern_delivery_attempts_total{outcome="delivered"}"#
        ),
        Some(3.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("postern_delivery_latency_seconds_count 3"),
        "{metrics}"
    );

    process.sigterm();
    assert!(process.wait_exit(WAIT).await.success());
}

/// A scripted SMTP peer: every recipient is accepted, except that the first
/// `fail_first` RCPTs of `flaky` get `451 4.3.0`. Records each delivered recipient.
#[derive(Clone, Default)]
struct Peer {
    delivered: Arc<Mutex<Vec<String>>>,
    rcpt_seen: Arc<Mutex<Vec<String>>>,
}

impl Peer {
    async fn start(flaky: &'static str, fail_first: usize) -> (Self, SocketAddr) {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let peer = Self::default();
        let state = peer.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = socket.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 peer.test ESMTP\r\n").await.ok();
                    let mut accepted = Vec::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let upper = line.to_ascii_uppercase();
                        let reply: String = if upper.starts_with("EHLO") {
                            "250-peer.test\r\n250 PIPELINING\r\n".into()
                        } else if upper.starts_with("MAIL") {
                            accepted.clear();
                            "250 2.1.0 ok\r\n".into()
                        } else if upper.starts_with("RCPT") {
                            let rcpt = line[line.find('<').unwrap() + 1..line.find('>').unwrap()]
                                .to_owned();
                            let mut seen = state.rcpt_seen.lock().unwrap();
                            let earlier = seen.iter().filter(|r| **r == rcpt).count();
                            seen.push(rcpt.clone());
                            if rcpt == flaky && earlier < fail_first {
                                "451 4.3.0 greylisted, try again\r\n".into()
                            } else {
                                accepted.push(rcpt);
                                "250 2.1.5 ok\r\n".into()
                            }
                        } else if upper == "DATA" {
                            write.write_all(b"354 go on\r\n").await.ok();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                            }
                            state.delivered.lock().unwrap().append(&mut accepted);
                            "250 2.0.0 queued as X\r\n".into()
                        } else if upper == "QUIT" {
                            write.write_all(b"221 2.0.0 bye\r\n").await.ok();
                            return;
                        } else {
                            "250 2.0.0 ok\r\n".into()
                        };
                        if write.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (peer, addr)
    }

    fn delivered(&self) -> Vec<String> {
        self.delivered.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn two_of_three_get_250_and_only_the_451_one_is_retried() {
    let work = Workdir::new();
    let (peer, addr) = Peer::start("c@example.com", 1).await;
    let setup = work.config("mixed", &[&minimal(addr.port())], &[]);
    let mut process = Process::start(&work, &setup, "mixed").await;
    let mut client = Smtp::greeted(setup.smtp).await.unwrap();
    client
        .send_message(
            "s@example.org",
            &["a@example.com", "b@example.com", "c@example.com"],
            &message("mixed"),
        )
        .await
        .unwrap()
        .expect(250, "2.0.0");
    let delivered = setup.wait_records("Delivery", 3).await;
    let transient = setup.wait_records("TransientFailure", 1).await;
    assert_eq!(transient.len(), 1);
    let t = &transient[0];
    assert_eq!(t["recipient"], "c@example.com");
    assert_eq!(t["response"]["code"], 451);
    assert_eq!(t["response"]["content"], "greylisted, try again");
    assert_eq!(t["response"]["enhanced_code"]["class"], 4);
    assert_eq!(t["response"]["command"], "RCPT");
    assert_eq!(t["num_attempts"], 1);
    assert_eq!(
        t["next_due"].as_i64().unwrap() - t["timestamp"].as_i64().unwrap(),
        1,
        "retryInterval 1s"
    );
    let c = delivered
        .iter()
        .find(|r| r["recipient"] == "c@example.com")
        .unwrap();
    assert_eq!(c["num_attempts"], 2);
    let mut got = peer.delivered();
    got.sort();
    assert_eq!(
        got,
        ["a@example.com", "b@example.com", "c@example.com"],
        "a and b once only"
    );
    process.sigterm();
    assert!(process.wait_exit(WAIT).await.success());
}

#[tokio::test]
async fn a_restart_resumes_the_retry_schedule() {
    let work = Workdir::new();
    let (peer, addr) = Peer::start("x@example.com", 2).await;
    let delivery = format!(
        "delivery: {{smarthost: {{host: 127.0.0.1, port: {}, tls: none}}, retryInterval: 2s}}",
        addr.port()
    );
    let setup = work.config("restart", &[&delivery], &[]);
    let mut first = Process::start(&work, &setup, "restart-1").await;
    let mut client = Smtp::greeted(setup.smtp).await.unwrap();
    client
        .send_message(
            "s@example.org",
            &["x@example.com", "y@example.com"],
            &message("restart"),
        )
        .await
        .unwrap()
        .expect(250, "2.0.0");
    let transient = setup.wait_records("TransientFailure", 1).await;
    let due = transient[0]["next_due"].as_i64().unwrap();
    first.sigterm();
    assert!(first.wait_exit(WAIT).await.success());
    assert_eq!(peer.delivered(), ["y@example.com"]);

    let mut second = Process::start(&work, &setup, "restart-2").await;
    let delivered = setup.wait_records("Delivery", 2).await;
    let x = delivered
        .iter()
        .find(|r| r["recipient"] == "x@example.com")
        .unwrap();
    assert_eq!(
        x["num_attempts"], 3,
        "the attempt count went on after the restart"
    );
    let failures = setup.wait_records("TransientFailure", 2).await;
    assert_eq!(failures[1]["num_attempts"], 2);
    assert!(
        failures[1]["timestamp"].as_i64().unwrap() >= due,
        "not before it was due"
    );
    assert_eq!(
        failures[1]["next_due"].as_i64().unwrap() - failures[1]["timestamp"].as_i64().unwrap(),
        4,
        "the second failure doubles the delay"
    );
    let mut got = peer.delivered();
    got.sort();
    assert_eq!(
        got,
        ["x@example.com", "y@example.com"],
        "y was not sent again"
    );
    second.sigterm();
    assert!(second.wait_exit(WAIT).await.success());
}

#[tokio::test]
async fn drain_stops_taking_mail_and_reports_until_the_queue_is_empty() {
    let work = Workdir::new();
    let (peer, addr) = Peer::start("slow@example.com", 1).await;
    let setup = work.config("drain", &[&minimal(addr.port())], &[]);
    let mut process = Process::start(&work, &setup, "drain").await;
    let mut client = Smtp::greeted(setup.smtp).await.unwrap();
    client
        .send_message("s@example.org", &["slow@example.com"], &message("drain"))
        .await
        .unwrap()
        .expect(250, "2.0.0");
    client.cmd("QUIT").await.unwrap();
    setup.wait_records("TransientFailure", 1).await;

    let admin = setup.admin.to_string();
    let drained = tokio::task::spawn_blocking({
        let cwd = work.path().to_owned();
        move || run_to_end(&cwd, &["drain", "--admin", &admin])
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&drained.stdout);
    assert_eq!(drained.code(), 0, "{}", drained.stderr);
    assert!(out.contains("queue depth: 1"), "{out}");
    assert!(
        out.trim_end().ends_with("drained: nothing left to deliver"),
        "{out}"
    );
    assert_eq!(peer.delivered(), ["slow@example.com"]);

    let (status, body) = http_get(setup.admin, "/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("draining"), "{body}");
    let mut late = Smtp::connect(setup.smtp).await.unwrap();
    let greeting = late.reply().await.unwrap();
    assert_eq!(greeting.code, 421, "{greeting:?}");
    process.sigterm();
    assert!(process.wait_exit(WAIT).await.success());
}

#[tokio::test]
async fn backpressure_refuses_mail_while_the_queue_is_full_and_clears_by_itself() {
    let work = Workdir::new();
    let (_peer, addr) = Peer::start("held@example.com", 1).await;
    let delivery = format!(
        "delivery: {{smarthost: {{host: 127.0.0.1, port: {}, tls: none}}, retryInterval: 2s, maxQueueDepth: 1}}",
        addr.port()
    );
    let setup = work.config("pressure", &[&delivery], &[]);
    let mut process = Process::start(&work, &setup, "pressure").await;
    let mut client = Smtp::greeted(setup.smtp).await.unwrap();
    client
        .send_message("s@example.org", &["held@example.com"], &message("held"))
        .await
        .unwrap()
        .expect(250, "2.0.0");
    setup.wait_records("TransientFailure", 1).await;
    // The queue holds 1 of 1: MAIL is refused and /readyz says why.
    let start = Instant::now();
    loop {
        let reply = client.cmd("MAIL FROM:<s@example.org>").await.unwrap();
        if reply.code == 452 {
            assert!(reply.lines[0].starts_with("4.3.1"), "{reply:?}");
            break;
        }
        client.cmd("RSET").await.unwrap();
        assert!(start.elapsed() < DELIVERY_WAIT, "MAIL was never refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = http_get(setup.admin, "/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert!(
        body.contains("backpressure") && body.contains("at the limit of 1"),
        "{body}"
    );
    // Delivered on the retry: the refusal clears by itself.
    setup.wait_records("Delivery", 1).await;
    let start = Instant::now();
    loop {
        let reply = client.cmd("MAIL FROM:<s@example.org>").await.unwrap();
        if reply.code == 250 {
            break;
        }
        assert!(
            start.elapsed() < DELIVERY_WAIT,
            "MAIL still refused: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = http_get(setup.admin, "/readyz").await.unwrap();
    assert_eq!(status, 200);
    client.cmd("QUIT").await.unwrap();
    process.sigterm();
    assert!(process.wait_exit(WAIT).await.success());
}
