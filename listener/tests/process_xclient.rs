//! XCLIENT against the real binary, from real clients on loopback: swaks' `--xclient`
//! options and Python's smtplib sending the raw command. The listener trusts only
//! 127.0.0.1 (`xclientFrom`); `relayHosts` holds 127.0.0.1 itself and 203.0.113.0/24,
//! so a client named by XCLIENT relays exactly when its own address may, whatever the
//! proxy's:
//!
//! - swaks from 127.0.0.1 names 203.0.113.9: relayed, and the message's `Received:`
//!   and the Reception record name 203.0.113.9 (the record also names the proxy in
//!   `xclient_from`);
//! - smtplib from 127.0.0.1 names 198.51.100.7: relaying refused with 550, though the
//!   proxy itself may relay; XCLIENT inside a transaction gets 503; commands pipelined
//!   after XCLIENT are thrown away; XCLIENT after STARTTLS keeps TLS;
//! - smtplib from 127.0.0.7 (not in `xclientFrom`): XCLIENT not offered, `550 5.7.0`,
//!   and the session goes on;
//! - a listener without `allowXclient`: not offered, `550 5.7.0`.
//!
//! A missing tool fails the test when `CI` is set; otherwise the test says so loudly on
//! stderr and returns.

mod support_process;

use std::{net::IpAddr, process::Command};

use support_process::{
    Process, Setup, Smtp, WAIT, Workdir, contains, require_tool, run_command, spool_list,
    spool_show,
};

/// The only peer trusted with XCLIENT.
const PROXY: &str = "127.0.0.1";
/// A loopback peer that is not.
const UNTRUSTED: &str = "127.0.0.7";
/// A client that XCLIENT names and that may relay.
const RELAYING_CLIENT: &str = "203.0.113.9";
/// A client that XCLIENT names and that may not relay.
const OTHER_CLIENT: &str = "198.51.100.7";

fn xclient_listener(work: &Workdir) -> Setup {
    work.config(
        "xclient",
        &[
            "allowXclient: true",
            &format!("xclientFrom: [\"{PROXY}/32\"]"),
            &format!("relayHosts: [\"{PROXY}\", \"203.0.113.0/24\"]"),
        ],
        &[],
    )
}

/// smtplib: prints one line per step, so the test compares the whole conversation.
const SMTPLIB: &str = r#"
import smtplib, ssl, sys

port, source, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def step(what, reply):
    code, text = reply
    print(f"{what} {code} {text.decode().splitlines()[0]}")

with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0)) as s:
    s.ehlo("proxy.test")
    print("offered" if s.has_extn("xclient") else "not offered")
    if mode == "untrusted":
        step("XCLIENT", s.docmd("XCLIENT", "ADDR=203.0.113.9"))
        step("NOOP", s.docmd("NOOP"))
        sys.exit(0)
    if mode == "tls":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        s.starttls(context=context)
        s.ehlo("proxy.test")
    step("XCLIENT", s.docmd("XCLIENT", "ADDR=198.51.100.7 NAME=other.example HELO=other.example"))
    s.ehlo_resp = None
    s.ehlo("proxy.test")
    print("starttls offered" if s.has_extn("starttls") else "starttls not offered")
    step("MAIL", s.docmd("MAIL", "FROM:<sender@example.org>"))
    step("XCLIENT", s.docmd("XCLIENT", "ADDR=203.0.113.9"))
    step("RCPT", s.docmd("RCPT", "TO:<rcpt@example.com>"))
    step("RSET", s.docmd("RSET"))
"#;

fn smtplib(python: &std::path::Path, port: u16, source: &str, mode: &str) -> Vec<String> {
    let run =
        run_command(Command::new(python).args(["-c", SMTPLIB, &port.to_string(), source, mode]));
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "smtplib {mode}: {out}\n{}",
        run.stderr
    );
    out.lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn trusted_proxies_name_the_client_and_nobody_else_may() {
    let (Some(swaks), Some(python)) = (require_tool("swaks"), require_tool("python3")) else {
        return;
    };
    let work = Workdir::new();
    let setup = xclient_listener(&work);
    let mut process = Process::start(&work, &setup, "xclient").await;
    let port = setup.smtp.port();

    // (a) swaks from the trusted proxy names 203.0.113.9: relayed for it.
    let swaks_run = run_command(Command::new(&swaks).args([
        "--server",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--local-interface",
        PROXY,
        "--ehlo",
        "proxy.test",
        "--xclient",
        &format!("ADDR={RELAYING_CLIENT} NAME=client.example HELO=orig.example"),
        "--from",
        "sender@example.org",
        "--to",
        "rcpt@example.com",
        "--header",
        "Subject: through xclient",
    ]));
    let out = String::from_utf8_lossy(&swaks_run.stdout);
    assert!(
        swaks_run.status.success(),
        "swaks: {out}\n{}",
        swaks_run.stderr
    );
    assert!(
        out.contains("XCLIENT ADDR NAME PORT PROTO HELO LOGIN DESTADDR DESTPORT"),
        "{out}"
    );
    assert!(out.contains("<-  220 mx.test Postern ESMTP"), "{out}");
    assert!(out.contains("250 2.0.0 OK id="), "{out}");

    // The proxy may relay itself, but the client it names here may not; XCLIENT in a
    // transaction is refused and the transaction goes on.
    assert_eq!(
        smtplib(&python, port, PROXY, "trusted"),
        [
            "offered",
            "XCLIENT 220 mx.test Postern ESMTP",
            "starttls offered",
            "MAIL 250 2.1.0 sender OK",
            "XCLIENT 503 5.5.1 XCLIENT not permitted inside a mail transaction; send RSET first",
            &format!("RCPT 550 5.7.1 relaying to <rcpt@example.com> denied for {OTHER_CLIENT}"),
            "RSET 250 2.0.0 reset",
        ]
    );
    // XCLIENT after STARTTLS: TLS stays, STARTTLS is not offered again.
    let tls = smtplib(&python, port, PROXY, "tls");
    assert_eq!(
        tls[1..3],
        ["XCLIENT 220 mx.test Postern ESMTP", "starttls not offered"]
    );

    // (b) an untrusted peer: not offered, 550 5.7.0, and the session goes on.
    assert_eq!(
        smtplib(&python, port, UNTRUSTED, "untrusted"),
        [
            "not offered",
            "XCLIENT 550 5.7.0 insufficient authorization",
            "NOOP 250 2.0.0 OK",
        ]
    );

    // Commands pipelined after XCLIENT were sent before the new greeting: thrown away.
    let mut raw = Smtp::connect(setup.smtp).await.unwrap();
    raw.reply().await.unwrap().expect(220, "mx.test");
    raw.send(b"XCLIENT ADDR=203.0.113.10\r\nMAIL FROM:<early@example.org>\r\n")
        .await
        .unwrap();
    raw.reply().await.unwrap().expect(220, "mx.test");
    raw.cmd("EHLO proxy.test")
        .await
        .unwrap()
        .expect(250, "mx.test Hello proxy.test");
    raw.cmd("MAIL FROM:<late@example.org>")
        .await
        .unwrap()
        .expect(250, "2.1.0 sender OK");
    raw.cmd("QUIT").await.unwrap().expect(221, "");

    process.sigterm();
    assert_eq!(process.wait_exit(WAIT).await.code(), Some(0));

    // The relayed message names the client XCLIENT gave, never the proxy.
    let spooled = spool_list(&setup.spool);
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    let id = spooled.keys().next().unwrap();
    let data = spool_show(&setup.spool, id);
    assert!(
        contains(
            &data,
            &format!("Received: from orig.example (client.example [{RELAYING_CLIENT}])")
        ),
        "{}",
        String::from_utf8_lossy(&data)
    );
    let records = setup.records();
    let reception = records
        .iter()
        .find(|r| r["type"] == "Reception")
        .expect("a Reception record");
    assert_eq!(reception["peer_address"]["addr"], RELAYING_CLIENT);
    assert_eq!(reception["peer_address"]["name"], "orig.example");
    assert!(
        reception["xclient_from"]
            .as_str()
            .is_some_and(|p| p.starts_with(&format!("{PROXY}:"))),
        "{reception}"
    );
    assert_eq!(reception["meta"]["client_name"], "client.example");
    // The refusals name who they were about: the named client for the relay, the
    // untrusted peer itself for its XCLIENT.
    let rejected = |code: u64, addr: &str| {
        records.iter().any(|r| {
            r["type"] == "Rejection"
                && r["response"]["code"] == code
                && r["peer_address"]["addr"] == addr
        })
    };
    assert!(rejected(550, OTHER_CLIENT), "{records:?}");
    assert!(rejected(503, OTHER_CLIENT), "{records:?}");
    assert!(rejected(550, UNTRUSTED), "{records:?}");
}

#[tokio::test]
async fn a_listener_without_allow_xclient_neither_offers_nor_accepts_it() {
    let Some(python) = require_tool("python3") else {
        return;
    };
    let work = Workdir::new();
    let setup = work.config("plain", &[&format!("relayHosts: [\"{PROXY}\"]")], &[]);
    let mut process = Process::start(&work, &setup, "plain").await;
    assert_eq!(
        smtplib(&python, setup.smtp.port(), PROXY, "untrusted"),
        [
            "not offered",
            "XCLIENT 550 5.7.0 insufficient authorization",
            "NOOP 250 2.0.0 OK",
        ]
    );
    // A raw client too: the reply carries the enhanced code.
    let mut raw = Smtp::connect_from(setup.smtp, PROXY.parse::<IpAddr>().unwrap())
        .await
        .unwrap();
    raw.reply().await.unwrap().expect(220, "mx.test");
    raw.cmd(&format!("XCLIENT ADDR={RELAYING_CLIENT}"))
        .await
        .unwrap()
        .expect(550, "5.7.0 insufficient authorization");
    process.sigterm();
    assert_eq!(process.wait_exit(WAIT).await.code(), Some(0));
}
