//! `deferredSpool: true` with real next hops, by the real binary: toward a working
//! `smtp-sink` a message is delivered from memory and the spool never writes it; toward
//! a sink answering `451` to every recipient, or toward nothing at all, the first
//! transient failure writes it to the spool, where it survives a restart (a `kill -9`
//! or a clean one) and is delivered once the next hop works.

mod support_process;

use std::net::SocketAddr;

use support_process::{
    Process, Setup, Smtp, WAIT, Workdir, free_addrs, http_get, message, metric, sink::Sink,
    spool_list,
};

fn deferred(port: u16) -> [String; 2] {
    [
        format!(
            "delivery: {{smarthost: {{host: 127.0.0.1, port: {port}, tls: none}}, retryInterval: 1s}}"
        ),
        "deferredSpool: true".to_owned(),
    ]
}

fn config(work: &Workdir, name: &str, port: u16) -> Setup {
    let keys = deferred(port);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    work.config(name, &keys, &[])
}

/// Sends one message with body marker `marker`; returns its id.
async fn send(smtp: SocketAddr, marker: &str) -> String {
    let mut client = Smtp::greeted(smtp).await.unwrap();
    let reply = client
        .send_message("a@example.org", &["b@example.com"], &message(marker))
        .await
        .unwrap();
    reply.expect(250, "2.0.0");
    client.cmd("QUIT").await.unwrap();
    reply.id()
}

/// The spool's metric `name`.
async fn spool_metric(admin: SocketAddr, name: &str) -> f64 {
    let (_, metrics) = http_get(admin, "/metrics").await.unwrap();
    metric(&metrics, name).unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

/// Segment files in the spool.
fn segments(setup: &Setup) -> usize {
    std::fs::read_dir(setup.spool.join("segments"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn with_a_working_next_hop_a_deferred_message_never_touches_the_disk() {
    let work = Workdir::new();
    let [sink_addr] = free_addrs();
    let Some(sink) = Sink::start(&work, sink_addr) else {
        return;
    };
    let setup = config(&work, "working", sink_addr.port());
    let mut process = Process::start(&work, &setup, "working").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(send(setup.smtp, &format!("memory-{n}")).await);
    }
    let delivered = setup.wait_records("Delivery", 3).await;
    for id in &ids {
        assert!(delivered.iter().any(|r| r["id"] == id.as_str()), "{id}");
    }
    let markers = sink.markers();
    for n in 0..3 {
        assert_eq!(markers.get(&format!("memory-{n}")), Some(&1), "{markers:?}");
    }
    // Nothing was ever written: no message stored, no segment byte, no segment file.
    assert_eq!(
        spool_metric(setup.admin, "postern_spool_messages_stored_total").await,
        0.0
    );
    assert_eq!(
        spool_metric(setup.admin, "postern_spool_written_bytes_total").await,
        0.0
    );
    assert_eq!(segments(&setup), 0);
    process.sigterm();
    assert!(process.wait_exit(WAIT).await.success());
    // Shutdown had nothing undelivered to write either.
    assert_eq!(segments(&setup), 0);
    assert!(spool_list(&setup.spool).is_empty());
}

#[tokio::test]
async fn a_451_writes_a_deferred_message_which_survives_kill_9_and_is_delivered_later() {
    let work = Workdir::new();
    let [sink_addr] = free_addrs();
    let Some(refusing) = Sink::start_with(
        &work,
        sink_addr,
        &["-r", "RCPT", "-b", "451 4.3.0 Try again later"],
    ) else {
        return;
    };
    let setup = config(&work, "refused", sink_addr.port());
    let mut process = Process::start(&work, &setup, "refused").await;
    let id = send(setup.smtp, "later").await;

    let failed = setup.wait_records("TransientFailure", 1).await;
    assert_eq!(failed[0]["id"], id.as_str());
    assert_eq!(failed[0]["response"]["code"], 451, "{}", failed[0]);
    assert_eq!(failed[0]["response"]["command"], "RCPT", "{}", failed[0]);
    // The first transient failure wrote it.
    assert_eq!(
        spool_metric(setup.admin, "postern_spool_messages_stored_total").await,
        1.0
    );
    assert!(segments(&setup) >= 1);
    process.sigkill();
    let _ = process.wait_exit(WAIT).await;
    assert!(
        spool_list(&setup.spool).contains_key(&id),
        "written before the kill"
    );

    refusing.stop();
    let sink = Sink::start(&work, sink_addr).expect("smtp-sink was there a moment ago");
    let mut process = Process::start(&work, &setup, "refused-restarted").await;
    let delivered = setup.wait_records("Delivery", 1).await;
    assert_eq!(delivered[0]["id"], id.as_str());
    let attempts = delivered[0]["num_attempts"].as_u64().unwrap();
    assert!(
        attempts >= 2,
        "the restart kept the attempt count: {attempts}"
    );
    assert_eq!(sink.markers().get("later"), Some(&1));
    process.sigterm();
    assert!(process.wait_exit(WAIT).await.success());
    assert!(spool_list(&setup.spool).is_empty());
    assert_eq!(segments(&setup), 0, "the delivered segment is unlinked");
}

#[tokio::test]
async fn a_next_hop_that_is_down_writes_a_deferred_message_which_survives_a_restart() {
    let work = Workdir::new();
    // Nothing listens here until the sink starts.
    let [down] = free_addrs();
    let setup = config(&work, "down", down.port());
    let mut process = Process::start(&work, &setup, "down").await;
    let id = send(setup.smtp, "when-up").await;

    let failed = setup.wait_records("TransientFailure", 1).await;
    assert_eq!(failed[0]["id"], id.as_str());
    assert_eq!(failed[0]["response"]["code"], 421, "{}", failed[0]);
    assert_eq!(
        spool_metric(setup.admin, "postern_spool_messages_stored_total").await,
        1.0
    );
    process.sigterm();
    assert!(process.wait_exit(WAIT).await.success());
    assert!(spool_list(&setup.spool).contains_key(&id));

    let Some(sink) = Sink::start(&work, down) else {
        return;
    };
    let mut process = Process::start(&work, &setup, "down-restarted").await;
    let delivered = setup.wait_records("Delivery", 1).await;
    assert_eq!(delivered[0]["id"], id.as_str());
    assert_eq!(sink.markers().get("when-up"), Some(&1));
    process.sigterm();
    assert!(process.wait_exit(WAIT).await.success());
    assert!(spool_list(&setup.spool).is_empty());
}
