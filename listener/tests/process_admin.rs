//! The real binary's admin endpoint: `/livez` and `/readyz` answer 200 while running,
//! and `/metrics` (Prometheus text) counts connections, accepted messages and bytes,
//! rejections by code and enhanced code (a relay denial from 127.0.0.2, outside the
//! default relayHosts, is `550 5.7.1`), and exposes the spool's depth and fsync latency.

mod support_process;

use std::net::{IpAddr, Ipv4Addr};

use support_process::{Process, Smtp, WAIT, Workdir, http_get, message, metric};

#[tokio::test]
async fn health_and_metrics() {
    let work = Workdir::new();
    let setup = work.config("admin", &[], &[]);
    let mut process = Process::start(&work, &setup, "admin").await;

    let (status, body) = http_get(setup.admin, "/livez").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = http_get(setup.admin, "/readyz").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, _) = http_get(setup.admin, "/nope").await.unwrap();
    assert_eq!(status, 404);

    // One accepted message from 127.0.0.1 (in the default relayHosts).
    let mut client = Smtp::greeted(setup.smtp).await.unwrap();
    let body = message("metrics");
    client
        .send_message("a@example.org", &["b@example.com"], &body)
        .await
        .unwrap()
        .expect(250, "2.0.0");
    client.cmd("QUIT").await.unwrap().expect(221, "2.0.0");

    // One relay denial from 127.0.0.2 (not in relayHosts).
    let outsider = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut denied = Smtp::connect_from(setup.smtp, outsider).await.unwrap();
    denied.hello().await.unwrap();
    denied
        .cmd("MAIL FROM:<a@example.org>")
        .await
        .unwrap()
        .expect(250, "2.1.0");
    denied
        .cmd("RCPT TO:<b@example.com>")
        .await
        .unwrap()
        .expect(550, "5.7.1");
    denied.cmd("QUIT").await.unwrap().expect(221, "2.0.0");

    let (status, text) = http_get(setup.admin, "/metrics").await.unwrap();
    assert_eq!(status, 200, "{text}");
    let value = |series: &str| {
        metric(&text, series).unwrap_or_else(|| panic!("{series} is missing from:\n{text}"))
    };
    assert_eq!(value("postern_connections_total"), 2.0);
    assert_eq!(value("postern_messages_accepted_total"), 1.0);
    assert!(value("postern_received_bytes_total") >= body.len() as f64);
    assert_eq!(
        value(r#"postern_rejections_total{code="550",reason="5.7.1"}"#),
        1.0
    );
    assert_eq!(value("postern_spool_depth_messages"), 1.0);
    assert!(value("postern_spool_fsync_duration_seconds_count") >= 1.0);
    assert!(value("postern_spool_fsync_duration_seconds_sum") > 0.0);
    assert!(value("postern_spool_messages_stored_total") >= 1.0);

    process.sigterm();
    assert_eq!(
        process.wait_exit(WAIT).await.code(),
        Some(0),
        "{}",
        process.stderr()
    );
}
