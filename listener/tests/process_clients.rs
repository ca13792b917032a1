//! Outside SMTP clients against the real binary: Python's smtplib (two recipients,
//! then STARTTLS with an unverified context and a second message), swaks (plain and
//! STARTTLS) and Postfix's smtp-source (200 messages over 10 concurrent sessions). Each
//! must exit 0 and `spool list` must show exactly the messages it sent.
//!
//! A missing tool fails the test when `CI` is set; otherwise the test says so loudly on
//! stderr and returns.

mod support_process;

use std::{collections::BTreeMap, process::Command};

use serde_json::Value;
use support_process::{
    Process, Setup, WAIT, Workdir, contains, require_tool, run_command, spool_list, spool_show,
};

/// Starts a listener for one client.
async fn listener(work: &Workdir) -> (Setup, Process) {
    let setup = work.config("clients", &[], &[]);
    let process = Process::start(work, &setup, "clients").await;
    (setup, process)
}

/// Stops the listener (SIGTERM, exit 0) and returns the spool's envelopes.
async fn stop(mut process: Process, setup: &Setup) -> BTreeMap<String, Value> {
    process.sigterm();
    let status = process.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", process.stderr());
    spool_list(&setup.spool)
}

/// Asserts a client command exited 0.
#[track_caller]
fn assert_success(command: &mut Command) -> String {
    let finished = run_command(command);
    assert!(
        finished.status.success(),
        "{command:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        finished.status,
        String::from_utf8_lossy(&finished.stdout),
        finished.stderr
    );
    String::from_utf8_lossy(&finished.stdout).into_owned()
}

const SMTPLIB_SCRIPT: &str = r#"
import smtplib, ssl, sys

port = int(sys.argv[1])
with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
    code, _ = s.ehlo("python.test")
    if code != 250:
        sys.exit(f"EHLO answered {code}")
    for ext in ("starttls", "pipelining", "8bitmime", "smtputf8", "enhancedstatuscodes", "size"):
        if not s.has_extn(ext):
            sys.exit(f"EHLO does not advertise {ext}")
    refused = s.sendmail("sender@example.org", ["one@example.com", "two@example.net"],
                         b"Subject: plain\r\n\r\nsent in the clear\r\n")
    if refused:
        sys.exit(f"refused: {refused}")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    code, _ = s.starttls(context=context)
    if code != 220:
        sys.exit(f"STARTTLS answered {code}")
    s.ehlo("python.test")
    if s.has_extn("starttls"):
        sys.exit("STARTTLS is still advertised over TLS")
    s.sendmail("sender@example.org", ["three@example.com"],
               b"Subject: tls\r\n\r\nsent over TLS\r\n")
print("smtplib: ok")
"#;

#[tokio::test]
async fn python_smtplib_sends_plain_and_over_starttls() {
    let Some(python) = require_tool("python3") else {
        return;
    };
    let work = Workdir::new();
    let (setup, process) = listener(&work).await;
    let script = work.write("client.py", SMTPLIB_SCRIPT);
    let out = assert_success(
        Command::new(python)
            .arg(&script)
            .arg(setup.smtp.port().to_string()),
    );
    assert!(out.contains("smtplib: ok"), "{out}");

    let listed = stop(process, &setup).await;
    assert_eq!(listed.len(), 2, "{listed:#?}");
    let (plain_id, plain) = listed
        .iter()
        .find(|(_, e)| e["recipients"].as_array().is_some_and(|r| r.len() == 2))
        .expect("the message with two recipients");
    assert_eq!(
        plain["recipients"],
        serde_json::json!(["one@example.com", "two@example.net"])
    );
    assert!(plain.get("tls").is_none_or(Value::is_null), "{plain}");
    let plain_bytes = spool_show(&setup.spool, plain_id);
    assert!(contains(&plain_bytes, "sent in the clear\r\n"));
    assert!(
        contains(&plain_bytes, " with ESMTP\r\n"),
        "Received: says ESMTP"
    );

    let (tls_id, tls) = listed
        .iter()
        .find(|(id, _)| *id != plain_id)
        .expect("the message sent over TLS");
    assert_eq!(tls["recipients"], serde_json::json!(["three@example.com"]));
    assert!(
        tls.get("tls").is_some_and(|t| !t.is_null()),
        "the envelope records the TLS facts: {tls}"
    );
    let tls_bytes = spool_show(&setup.spool, tls_id);
    assert!(contains(&tls_bytes, "sent over TLS\r\n"));
    assert!(
        contains(&tls_bytes, " with ESMTPS (TLS"),
        "Received: says ESMTPS"
    );
}

#[tokio::test]
async fn swaks_sends_plain_and_with_starttls() {
    let Some(swaks) = require_tool("swaks") else {
        return;
    };
    let work = Workdir::new();
    let (setup, process) = listener(&work).await;
    let server = setup.smtp.to_string();
    let base = [
        "--server",
        server.as_str(),
        "--to",
        "a@example.com",
        "--from",
        "b@example.org",
        "--helo",
        "swaks.test",
        "--timeout",
        "10",
    ];
    let plain = assert_success(Command::new(&swaks).args(base));
    assert!(plain.contains("<-  250 2.0.0 OK id="), "{plain}");
    let tls = assert_success(Command::new(&swaks).args(base).arg("--tls"));
    assert!(tls.contains("<-  220 2.0.0"), "STARTTLS accepted: {tls}");
    assert!(
        tls.contains("<~  250 2.0.0 OK id="),
        "the message went over TLS: {tls}"
    );

    let listed = stop(process, &setup).await;
    assert_eq!(listed.len(), 2, "{listed:#?}");
    let with_tls = listed
        .values()
        .filter(|e| e.get("tls").is_some_and(|t| !t.is_null()))
        .count();
    assert_eq!(with_tls, 1, "one of the two came over TLS: {listed:#?}");
    for envelope in listed.values() {
        assert_eq!(envelope["sender"], "b@example.org");
        assert_eq!(envelope["recipients"], serde_json::json!(["a@example.com"]));
    }
}

#[tokio::test]
async fn smtp_source_sends_200_messages_over_10_sessions() {
    let Some(smtp_source) = require_tool("/usr/sbin/smtp-source") else {
        return;
    };
    let work = Workdir::new();
    let (setup, process) = listener(&work).await;
    let target = setup.smtp.to_string();
    assert_success(Command::new(smtp_source).args([
        "-c",
        "-m",
        "200",
        "-s",
        "10",
        "-f",
        "a@b.test",
        "-t",
        "c@d.test",
        target.as_str(),
    ]));

    let listed = stop(process, &setup).await;
    assert_eq!(listed.len(), 200, "every message is spooled");
    assert!(
        listed.values().all(
            |e| e["sender"] == "a@b.test" && e["recipients"] == serde_json::json!(["c@d.test"])
        ),
        "envelopes as sent"
    );
}
