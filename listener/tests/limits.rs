//! The listener's limits over real TCP: recipients per message, messages per
//! connection, message size (SIZE and DATA), and the client timeout.

mod common;

use common::{Client, Harness};

#[tokio::test]
async fn extra_recipients_get_452_and_earlier_ones_stay_valid() {
    let mut h = Harness::start(|l| l.max_recipients_per_message = 2).await;
    let mut c = Client::hello(h.smtp).await;
    c.cmd("MAIL FROM:<a@b.test>").await.assert(250, "2.1.0");
    c.cmd("RCPT TO:<one@x.test>").await.assert(250, "2.1.5");
    c.cmd("RCPT TO:<two@x.test>").await.assert(250, "2.1.5");
    c.cmd("RCPT TO:<three@x.test>").await.assert(452, "4.5.3");
    c.send_mail_data("Subject: two\r\n\r\nx\r\n")
        .await
        .assert(250, "2.0.0");
    assert_eq!(h.spooled()[0].0.recipients, ["one@x.test", "two@x.test"]);
    h.stop().await;
}

#[tokio::test]
async fn mail_beyond_max_messages_per_connection_gets_a_transient_failure() {
    let mut h = Harness::start(|l| l.max_messages_per_connection = 2).await;
    let mut c = Client::hello(h.smtp).await;
    for _ in 0..2 {
        c.send_mail("a@b.test", &["c@d.test"], "Subject: n\r\n\r\nx\r\n")
            .await
            .assert(250, "2.0.0");
    }
    c.cmd("MAIL FROM:<a@b.test>").await.assert(452, "4.5.3");
    c.cmd("NOOP").await.assert(250, "2.0.0");
    let mut fresh = Client::hello(h.smtp).await;
    fresh.cmd("MAIL FROM:<a@b.test>").await.assert(250, "2.1.0");
    h.stop().await;
}

#[tokio::test]
async fn size_is_advertised_and_enforced_at_mail_and_at_data() {
    let mut h = Harness::start(|l| l.max_message_size = 100).await;
    let mut c = Client::hello(h.smtp).await;
    c.cmd("MAIL FROM:<a@b.test> SIZE=101")
        .await
        .assert(552, "5.3.4");
    c.cmd("MAIL FROM:<a@b.test> SIZE=100")
        .await
        .assert(250, "2.1.0");
    c.cmd("RCPT TO:<c@d.test>").await.assert(250, "2.1.5");
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(200));
    c.send_mail_data(&big).await.assert(552, "5.3.4");
    // The transaction was cleared and the session goes on.
    c.cmd("RCPT TO:<c@d.test>").await.assert(503, "5.5.1");
    c.send_mail("a@b.test", &["c@d.test"], "Subject: small\r\n\r\nok\r\n")
        .await
        .assert(250, "2.0.0");
    assert_eq!(h.spooled().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn idle_clients_get_421_at_a_command() {
    let mut h = Harness::start(|l| l.client_timeout = "1s".parse().unwrap()).await;
    let mut c = Client::hello(h.smtp).await;
    let started = std::time::Instant::now();
    c.reply().await.assert(421, "4.4.2");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    assert!(c.is_closed().await);
    h.stop().await;
}

#[tokio::test]
async fn idle_clients_get_421_in_the_middle_of_data_and_nothing_is_spooled() {
    let mut h = Harness::start(|l| l.client_timeout = "1s".parse().unwrap()).await;
    let mut c = Client::hello(h.smtp).await;
    c.cmd("MAIL FROM:<a@b.test>").await;
    c.cmd("RCPT TO:<c@d.test>").await;
    c.cmd("DATA").await.assert(354, "");
    c.send(b"Subject: half\r\n\r\nand then silence").await;
    c.reply().await.assert(421, "4.4.2");
    assert!(c.is_closed().await);
    assert!(h.spooled().is_empty());
    h.stop().await;
}
