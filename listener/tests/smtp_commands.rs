//! RFC 5321 commands and replies over real TCP: greeting, EHLO/HELO, every verb,
//! enhanced status codes, sequence errors, bad input that keeps the session going,
//! and pipelining.

mod common;

use common::{Client, HOST, Harness};

#[tokio::test]
async fn greeting_ehlo_and_helo() {
    let mut h = Harness::start(|l| l.banner = "Welcome to Postern".into()).await;
    let mut c = h.client().await;
    let greeting = c.reply().await;
    assert_eq!(
        (greeting.code, greeting.text()),
        (220, format!("{HOST} Welcome to Postern"))
    );
    let ehlo = c.cmd("EHLO client.test").await;
    assert_eq!(ehlo.code, 250);
    assert_eq!(ehlo.lines[0], format!("{HOST} Hello client.test"));
    for ext in [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "SIZE 20971520",
        "STARTTLS",
    ] {
        assert!(
            ehlo.lines.iter().any(|l| l == ext),
            "{ext} missing from {ehlo:?}"
        );
    }
    let helo = c.cmd("HELO other.test").await;
    assert_eq!(
        (helo.code, helo.text()),
        (250, format!("{HOST} Hello other.test"))
    );
    c.cmd("QUIT").await.assert(221, "2.0.0");
    assert!(c.is_closed().await);
    h.stop().await;
}

#[tokio::test]
async fn every_verb_has_its_reply_with_an_enhanced_code() {
    let mut h = Harness::start(|_| {}).await;
    let mut c = Client::hello(h.smtp).await;
    c.cmd("NOOP").await.assert(250, "2.0.0");
    c.cmd("NOOP with an argument").await.assert(250, "2.0.0");
    c.cmd("RSET").await.assert(250, "2.0.0");
    c.cmd("VRFY someone").await.assert(252, "2.5.0");
    c.cmd("HELP").await.assert(214, "2.0.0");
    c.cmd("EXPN list").await.assert(502, "5.5.1");
    c.cmd("AUTH PLAIN").await.assert(502, "5.5.1");
    c.cmd("BDAT 10 LAST").await.assert(502, "5.5.1");
    c.cmd("FROB nicate").await.assert(500, "5.5.2");
    c.cmd("").await.assert(500, "5.5.2");
    c.cmd("EHLO").await.assert(501, "5.5.4");
    c.cmd("DATA now").await.assert(501, "5.5.4");
    c.cmd("VRFY").await.assert(501, "5.5.4");
    c.send(b"MAIL FROM:<\xff@x.test>\r\n").await;
    c.reply().await.assert(500, "5.5.2");
    c.cmd("MAIL FROM:<a@>").await.assert(501, "5.1.7");
    c.cmd("MAIL FROM:<a@b.test> BODY=BINARYMIME")
        .await
        .assert(555, "5.5.4");
    c.cmd("MAIL FROM:<a@b.test> SIZE=10 BODY=8BITMIME")
        .await
        .assert(250, "2.1.0");
    c.cmd("RCPT TO:<nobody>").await.assert(501, "5.1.3");
    c.cmd("RCPT TO:<b@c.test> NOTIFY=NEVER")
        .await
        .assert(555, "5.5.4");
    c.cmd("RCPT TO:<b@c.test>").await.assert(250, "2.1.5");
    c.cmd("QUIT").await.assert(221, "2.0.0");
    h.stop().await;
}

#[tokio::test]
async fn out_of_sequence_commands_get_503_and_the_session_goes_on() {
    let mut h = Harness::start(|_| {}).await;
    let mut c = h.client().await;
    c.reply().await;
    c.cmd("MAIL FROM:<a@b.test>")
        .await
        .assert(503, "5.5.1 send EHLO");
    c.cmd("EHLO client.test").await;
    c.cmd("RCPT TO:<a@b.test>")
        .await
        .assert(503, "5.5.1 send MAIL");
    c.cmd("DATA").await.assert(503, "5.5.1 send MAIL");
    c.cmd("MAIL FROM:<a@b.test>").await.assert(250, "2.1.0");
    c.cmd("MAIL FROM:<a@b.test>")
        .await
        .assert(503, "5.5.1 MAIL already");
    c.cmd("DATA").await.assert(503, "5.5.1 send RCPT");
    c.cmd("RCPT TO:<x@y.test>").await.assert(250, "2.1.5");
    let reply = c.send_mail_data("Subject: ok\r\n\r\nbody\r\n").await;
    reply.assert(250, "2.0.0 OK id=");
    h.stop().await;
}

#[tokio::test]
async fn ehlo_resets_the_transaction() {
    let mut h = Harness::start(|_| {}).await;
    let mut c = Client::hello(h.smtp).await;
    c.cmd("MAIL FROM:<a@b.test>").await.assert(250, "2.1.0");
    c.cmd("RCPT TO:<x@y.test>").await.assert(250, "2.1.5");
    c.cmd("EHLO again.test").await.assert(250, HOST);
    c.cmd("DATA").await.assert(503, "5.5.1 send MAIL");
    c.cmd("RCPT TO:<x@y.test>").await.assert(503, "5.5.1");
    h.stop().await;
}

#[tokio::test]
async fn over_long_command_lines_are_refused_and_the_session_survives() {
    let mut h = Harness::start(|_| {}).await;
    let mut c = Client::hello(h.smtp).await;
    let long = format!("NOOP {}\r\n", "x".repeat(2000));
    c.send(long.as_bytes()).await;
    c.reply().await.assert(500, "5.5.2 line too long");
    let exactly_998 = format!("NOOP {}", "y".repeat(998 - 5));
    c.cmd(&exactly_998).await.assert(250, "2.0.0");
    c.cmd("NOOP").await.assert(250, "2.0.0");
    h.stop().await;
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let mut h = Harness::start(|_| {}).await;
    let mut c = Client::hello(h.smtp).await;
    c.send(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<one@x.test>\r\nRCPT TO:<bad>\r\nRCPT TO:<two@x.test>\r\nDATA\r\n").await;
    c.reply().await.assert(250, "2.1.0");
    c.reply().await.assert(250, "2.1.5");
    c.reply().await.assert(501, "5.1.3");
    c.reply().await.assert(250, "2.1.5");
    c.reply().await.assert(354, "");
    c.send(b"Subject: p\r\n\r\nhi\r\n.\r\nNOOP\r\nRSET\r\n")
        .await;
    c.reply().await.assert(250, "2.0.0 OK id=");
    c.reply().await.assert(250, "2.0.0");
    c.reply().await.assert(250, "2.0.0");
    let spooled = h.spooled();
    assert_eq!(spooled.len(), 1);
    assert_eq!(spooled[0].0.recipients, ["one@x.test", "two@x.test"]);
    h.stop().await;
}

#[tokio::test]
async fn smtputf8_addresses_need_the_parameter() {
    let mut h = Harness::start(|_| {}).await;
    let mut c = Client::hello(h.smtp).await;
    c.cmd("MAIL FROM:<用户@例子.test>")
        .await
        .assert(553, "5.6.7");
    c.cmd("MAIL FROM:<a@b.test>").await.assert(250, "2.1.0");
    c.cmd("RCPT TO:<jörg@bücher.test>")
        .await
        .assert(553, "5.6.7");
    c.cmd("RSET").await;
    c.cmd("MAIL FROM:<用户@例子.test> SMTPUTF8")
        .await
        .assert(250, "2.1.0");
    c.cmd("RCPT TO:<jörg@bücher.test>")
        .await
        .assert(250, "2.1.5");
    c.send_mail_data("Subject: utf8\r\n\r\nGrüße\r\n")
        .await
        .assert(250, "2.0.0");
    assert_eq!(h.spooled()[0].0.recipients, ["jörg@bücher.test"]);
    h.stop().await;
}

#[tokio::test]
async fn rejections_are_logged_with_kumomta_field_names() {
    let mut h = Harness::start(|_| {}).await;
    let mut c = Client::hello(h.smtp).await;
    c.cmd("FROB").await;
    drop(c);
    let records = h.stop().await;
    let rejection = records
        .iter()
        .find(|r| r["type"] == "Rejection")
        .expect("a Rejection record");
    assert_eq!(rejection["response"]["code"], 500);
    assert_eq!(
        rejection["response"]["enhanced_code"],
        serde_json::json!({"class": 5, "subject": 5, "detail": 2})
    );
    assert_eq!(rejection["response"]["command"], "FROB");
    assert_eq!(rejection["peer_address"]["name"], "client.test");
    assert_eq!(rejection["peer_address"]["addr"], "127.0.0.1");
    assert!(rejection["timestamp"].is_u64());
}
