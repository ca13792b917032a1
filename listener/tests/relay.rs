//! The relay rules of `start_esmtp_listener` over real TCP, from relay and non-relay
//! peers on IPv4 and IPv6 loopback.

mod common;

use common::{Client, Harness, yaml};

const SEED_DOMAINS: &str = r#"
example.com: {relayTo: true}
bounce.example.com: {logOob: true}
fbl.example.com: {logArf: true}
send.example.com: {relayFrom: ["127.0.0.3/32"]}
"*.example.com": {logOob: true, logArf: true, relayTo: true}
www.example.com: {relayTo: false, logArf: false, logOob: false}
"#;

#[tokio::test]
async fn relay_hosts_may_relay_anywhere_and_others_may_not() {
    let mut h = Harness::start(|l| l.domains = yaml(SEED_DOMAINS)).await;
    let mut inside = Client::hello(h.smtp).await;
    inside
        .send_mail(
            "a@anywhere.test",
            &["b@gmail.test"],
            "Subject: in\r\n\r\nx\r\n",
        )
        .await
        .assert(250, "2.0.0");
    let mut c = h.outsider("127.0.0.2").await;
    c.cmd("MAIL FROM:<a@anywhere.test>")
        .await
        .assert(250, "2.1.0");
    c.cmd("RCPT TO:<b@gmail.test>").await.assert(550, "5.7.1");
    assert_eq!(h.spooled().len(), 1);
    let records = h.stop().await;
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "Rejection" && r["response"]["code"] == 550)
    );
}

#[tokio::test]
async fn relay_to_and_wildcards_with_exact_keys_winning() {
    let mut h = Harness::start(|l| l.domains = yaml(SEED_DOMAINS)).await;
    let mut c = h.outsider("127.0.0.2").await;
    c.cmd("MAIL FROM:<a@anywhere.test>")
        .await
        .assert(250, "2.1.0");
    c.cmd("RCPT TO:<u@example.com>").await.assert(250, "2.1.5");
    c.cmd("RCPT TO:<u@a.example.com>")
        .await
        .assert(250, "2.1.5");
    c.cmd("RCPT TO:<u@a.b.example.com>")
        .await
        .assert(250, "2.1.5");
    c.cmd("RCPT TO:<u@www.example.com>")
        .await
        .assert(550, "5.7.1");
    c.cmd("RCPT TO:<u@example.net>").await.assert(550, "5.7.1");
    c.send_mail_data("Subject: w\r\n\r\nx\r\n")
        .await
        .assert(250, "2.0.0");
    assert_eq!(
        h.spooled()[0].0.recipients,
        ["u@example.com", "u@a.example.com", "u@a.b.example.com"]
    );
    h.stop().await;
}

#[tokio::test]
async fn relay_from_needs_both_the_sender_domain_and_the_peer() {
    let mut h = Harness::start(|l| l.domains = yaml(SEED_DOMAINS)).await;
    let mut listed = h.outsider("127.0.0.3").await;
    listed
        .send_mail(
            "a@send.example.com",
            &["b@gmail.test"],
            "Subject: rf\r\n\r\nx\r\n",
        )
        .await
        .assert(250, "2.0.0");
    listed
        .cmd("MAIL FROM:<a@other.test>")
        .await
        .assert(250, "2.1.0");
    listed
        .cmd("RCPT TO:<b@gmail.test>")
        .await
        .assert(550, "5.7.1");
    let mut unlisted = h.outsider("127.0.0.4").await;
    unlisted
        .cmd("MAIL FROM:<a@send.example.com>")
        .await
        .assert(250, "2.1.0");
    unlisted
        .cmd("RCPT TO:<b@gmail.test>")
        .await
        .assert(550, "5.7.1");
    assert_eq!(h.spooled().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn report_only_domains_are_accepted_logged_and_not_spooled() {
    let mut h = Harness::start(|l| l.domains = yaml(SEED_DOMAINS)).await;
    let mut c = h.outsider("127.0.0.2").await;
    c.send_mail(
        "mailer-daemon@isp.test",
        &["b@bounce.example.com"],
        "Subject: not a report\r\n\r\nx\r\n",
    )
    .await
    .assert(250, "2.0.0 OK logged");
    c.send_mail(
        "fbl@isp.test",
        &["c@fbl.example.com"],
        "Subject: not a report\r\n\r\nx\r\n",
    )
    .await
    .assert(250, "2.0.0");
    assert!(h.spooled().is_empty());
    let records = h.stop().await;
    let receptions: Vec<_> = records
        .iter()
        .filter(|r| r["type"] == "Reception")
        .collect();
    assert_eq!(receptions.len(), 2);
    assert!(receptions.iter().all(|r| r["spooled"] == false));
}

#[tokio::test]
async fn ipv6_peers_follow_ipv6_rules() {
    let mut h =
        Harness::start_on("[::1]:0", |l| l.relay_hosts = vec!["::1".parse().unwrap()]).await;
    let mut c = Client::hello(h.smtp).await;
    c.send_mail("a@b.test", &["c@d.test"], "Subject: v6\r\n\r\nx\r\n")
        .await
        .assert(250, "2.0.0");
    let spooled = h.spooled();
    assert!(String::from_utf8_lossy(&spooled[0].1).contains("([IPv6:::1])"));
    h.stop().await;

    let mut strict = Harness::start_on("[::1]:0", |l| {
        l.relay_hosts = vec!["2001:db8::/32".parse().unwrap()]
    })
    .await;
    let mut c = Client::hello(strict.smtp).await;
    c.cmd("MAIL FROM:<a@b.test>").await.assert(250, "2.1.0");
    c.cmd("RCPT TO:<c@d.test>").await.assert(550, "5.7.1");
    strict.stop().await;
}

#[tokio::test]
async fn a_cidr_relay_host_admits_its_whole_network() {
    let mut h = Harness::start(|l| l.relay_hosts = vec!["127.0.0.0/30".parse().unwrap()]).await;
    let mut inside = h.outsider("127.0.0.3").await;
    inside
        .send_mail("a@b.test", &["c@d.test"], "Subject: cidr\r\n\r\nx\r\n")
        .await
        .assert(250, "2.0.0");
    let mut outside = h.outsider("127.0.0.4").await;
    outside.cmd("MAIL FROM:<a@b.test>").await;
    outside.cmd("RCPT TO:<c@d.test>").await.assert(550, "5.7.1");
    h.stop().await;
}
