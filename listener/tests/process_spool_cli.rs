//! The operator's view of the spool through the real binary: `spool list` prints one
//! JSON envelope per line (id, sender, recipients, size, received_at) and `spool show`
//! prints the stored bytes exactly (trace headers, then the message as sent, unstuffed);
//! a malformed id exits 2 and an unknown one fails, each with one line.

mod support_process;

use std::ffi::OsStr;

use support_process::{Process, Smtp, WAIT, Workdir, run_to_end, spool_list, spool_show};

#[tokio::test]
async fn list_and_show_describe_what_was_acknowledged() {
    let work = Workdir::new();
    let setup = work.config("spool", &[], &[]);
    let mut process = Process::start(&work, &setup, "spool").await;
    let mut client = Smtp::greeted(setup.smtp).await.unwrap();
    // As sent: the line ".leading dot" is dot-stuffed; the stored copy is unstuffed.
    let stuffed = "Subject: exact\r\n\r\n..leading dot\r\n8-bit: caf\u{e9}\r\nlast line\r\n";
    let unstuffed = "Subject: exact\r\n\r\n.leading dot\r\n8-bit: caf\u{e9}\r\nlast line\r\n";
    let reply = client
        .send_message(
            "a@example.org",
            &["b@example.com", "c@example.net"],
            stuffed,
        )
        .await
        .unwrap();
    let id = reply.expect(250, "2.0.0").id();
    client.cmd("QUIT").await.unwrap().expect(221, "2.0.0");
    process.sigterm();
    assert_eq!(
        process.wait_exit(WAIT).await.code(),
        Some(0),
        "{}",
        process.stderr()
    );

    let listed = spool_list(&setup.spool);
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let envelope = &listed[&id];
    assert_eq!(envelope["sender"], "a@example.org");
    assert_eq!(
        envelope["recipients"],
        serde_json::json!(["b@example.com", "c@example.net"])
    );
    let received_at = envelope["received_at"].as_str().expect("received_at");
    chrono::DateTime::parse_from_rfc3339(received_at).expect("received_at is RFC 3339");

    let bytes = spool_show(&setup.spool, &id);
    assert_eq!(envelope["size"], bytes.len(), "size is the stored length");
    assert!(
        bytes.ends_with(unstuffed.as_bytes()),
        "the message follows the trace headers byte for byte:\n{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(bytes.starts_with(b"Received: ") || bytes.starts_with(b"X-KumoRef: "));
}

#[tokio::test]
async fn show_refuses_malformed_and_unknown_ids() {
    let work = Workdir::new();
    let setup = work.config("ids", &[], &[]);
    let mut process = Process::start(&work, &setup, "ids").await;
    process.sigterm();
    assert_eq!(
        process.wait_exit(WAIT).await.code(),
        Some(0),
        "{}",
        process.stderr()
    );
    let show = |id: &str| {
        run_to_end(
            work.path(),
            &[
                OsStr::new("spool"),
                OsStr::new("show"),
                OsStr::new(id),
                OsStr::new("--spool"),
                setup.spool.as_os_str(),
            ],
        )
    };

    let malformed = show("not-an-id");
    assert_eq!(malformed.code(), 2, "{malformed:?}");
    assert_eq!(malformed.stderr_lines().len(), 1, "{malformed:?}");
    assert!(malformed.stderr.contains("'not-an-id'") && malformed.stderr.contains("32 hex"));
    assert!(malformed.stdout.is_empty());

    let unknown_id = "0".repeat(32);
    let unknown = show(&unknown_id);
    assert_ne!(unknown.code(), 0, "{unknown:?}");
    assert_eq!(unknown.stderr_lines().len(), 1, "{unknown:?}");
    assert!(unknown.stderr.contains(&unknown_id), "{unknown:?}");
    assert!(unknown.stdout.is_empty());
}
