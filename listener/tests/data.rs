//! DATA over real TCP: dot-unstuffing, CRLF.CRLF as the only end, bare LF/CR refused
//! (no SMTP smuggling), empty bodies, long lines, and a cleared transaction after failure.

mod common;

use common::{Client, Harness, id_of};

#[tokio::test]
async fn dot_unstuffing_applies_to_every_line_including_the_first() {
    let mut h = Harness::start(|l| {
        l.trace_headers.received_header = false;
        l.trace_headers.supplemental_header = false;
    })
    .await;
    let mut c = Client::hello(h.smtp).await;
    let reply = c
        .send_mail(
            "a@b.test",
            &["c@d.test"],
            "..first\r\nmiddle\r\n..\r\n...three\r\n",
        )
        .await;
    reply.assert(250, "2.0.0");
    let (envelope, bytes) = h.spooled().remove(0);
    assert_eq!(envelope.id.to_string(), id_of(&reply));
    assert_eq!(bytes, b".first\r\nmiddle\r\n.\r\n..three\r\n");
    h.stop().await;
}

#[tokio::test]
async fn an_empty_body_is_accepted_without_hanging() {
    let mut h = Harness::start(|_| {}).await;
    let mut c = Client::hello(h.smtp).await;
    c.send_mail("a@b.test", &["c@d.test"], "")
        .await
        .assert(250, "2.0.0");
    h.stop().await;
}

#[tokio::test]
async fn bare_lf_cannot_end_data_or_smuggle_a_second_message() {
    let mut h = Harness::start(|_| {}).await;
    let mut c = Client::hello(h.smtp).await;
    c.cmd("MAIL FROM:<a@b.test>").await;
    c.cmd("RCPT TO:<c@d.test>").await;
    c.cmd("DATA").await.assert(354, "");
    // The classic smuggling payload: "\n.\n" then a second transaction.
    c.send(b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@d.test>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n").await;
    c.reply().await.assert(552, "5.6.0");
    // Nothing of it was executed: the next reply answers our NOOP.
    c.cmd("NOOP").await.assert(250, "2.0.0");
    c.cmd("RCPT TO:<c@d.test>").await.assert(503, "5.5.1");
    assert!(h.spooled().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn bare_cr_and_lf_dot_crlf_are_refused() {
    let mut h = Harness::start(|_| {}).await;
    let mut c = Client::hello(h.smtp).await;
    for payload in [
        &b"a\r.\r\nb\r\n.\r\n"[..],
        b"a\n.\r\nb\r\n.\r\n",
        b"a\r\n.\nb\r\n.\r\n",
    ] {
        c.cmd("MAIL FROM:<a@b.test>").await;
        c.cmd("RCPT TO:<c@d.test>").await;
        c.cmd("DATA").await.assert(354, "");
        c.send(payload).await;
        c.reply().await.assert(552, "5.6.0");
    }
    assert!(h.spooled().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn body_lines_over_998_octets_are_refused() {
    let mut h = Harness::start(|_| {}).await;
    let mut c = Client::hello(h.smtp).await;
    let body = format!("Subject: long\r\n\r\n{}\r\n", "z".repeat(999));
    c.send_mail("a@b.test", &["c@d.test"], &body)
        .await
        .assert(500, "5.5.2");
    c.cmd("NOOP").await.assert(250, "2.0.0");
    assert!(h.spooled().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_message_split_across_many_writes_arrives_whole() {
    let mut h = Harness::start(|l| {
        l.trace_headers.received_header = false;
        l.trace_headers.supplemental_header = false;
    })
    .await;
    let mut c = Client::hello(h.smtp).await;
    c.cmd("MAIL FROM:<a@b.test>").await;
    c.cmd("RCPT TO:<c@d.test>").await;
    c.cmd("DATA").await.assert(354, "");
    let body = b"Subject: bytes\r\n\r\nline one\r\n..dot\r\n.\r\n";
    for byte in body {
        c.send(&[*byte]).await;
    }
    c.reply().await.assert(250, "2.0.0");
    assert_eq!(
        h.spooled()[0].1,
        b"Subject: bytes\r\n\r\nline one\r\n.dot\r\n"
    );
    h.stop().await;
}
