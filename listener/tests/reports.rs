//! OOB bounces and ARF feedback reports through the listener over real TCP, and the
//! X-KumoRef round trip: a relayed message's supplemental header comes back inside an
//! ARF report and the `Feedback` record names the original recipient and campaign.

mod common;

use common::{Client, Harness, yaml};

const DOMAINS: &str = r#"
bounce.example.com: {logOob: true}
fbl.example.com: {logArf: true}
both.example.com: {logOob: true, logArf: true, relayTo: true}
"#;

fn corpus(name: &str) -> String {
    let path = format!("{}/reports/tests/corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Dot-stuffs a message for DATA.
fn stuffed(message: &str) -> String {
    message
        .split_inclusive("\r\n")
        .map(|l| {
            if l.starts_with('.') {
                format!(".{l}")
            } else {
                l.to_owned()
            }
        })
        .collect()
}

#[tokio::test]
async fn the_x_kumoref_loop_closes_through_an_arf_report() {
    let mut h = Harness::start(|l| {
        l.domains = yaml(DOMAINS);
        l.meta = [
            ("tenant".to_owned(), "acme".to_owned()),
            ("campaign".to_owned(), "spring-sale".to_owned()),
        ]
        .into();
        l.trace_headers.include_meta_names = vec!["tenant".into(), "campaign".into()];
    })
    .await;
    // 1. The platform sends a message through the relay.
    let mut sender = Client::hello(h.smtp).await;
    sender
        .send_mail(
            "news@acme.test",
            &["reader@mailbox.test"],
            "Subject: Spring sale\r\nMessage-ID: <m1@acme.test>\r\n\r\nBuy now\r\n",
        )
        .await
        .assert(250, "2.0.0");
    let original = String::from_utf8(h.spooled().remove(0).1).unwrap();
    assert!(original.starts_with("X-KumoRef: "));

    // 2. The mailbox provider wraps it in an ARF report and sends it to the FBL domain.
    let report = format!(
        "From: fbl@mailbox.test\r\nTo: fbl@fbl.example.com\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"\r\n\r\n\
--b1\r\nContent-Type: text/plain\r\n\r\nA user complained.\r\n\
--b1\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: ISP-FBL/1.0\r\nVersion: 1\r\n\
Original-Mail-From: <news@acme.test>\r\nOriginal-Rcpt-To: <reader@mailbox.test>\r\nSource-IP: 192.0.2.25\r\nArrival-Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n\
--b1\r\nContent-Type: message/rfc822\r\n\r\n{original}\r\n--b1--\r\n"
    );
    let mut isp = h.outsider("127.0.0.2").await;
    isp.send_mail(
        "fbl@mailbox.test",
        &["fbl@fbl.example.com"],
        &stuffed(&report),
    )
    .await
    .assert(250, "2.0.0");
    assert_eq!(
        h.spooled().len(),
        1,
        "a report to a log-only domain is not spooled"
    );

    // 3. The Feedback record ties the complaint to recipient, tenant and campaign.
    let records = h.stop().await;
    let feedback = records
        .iter()
        .find(|r| r["type"] == "Feedback")
        .expect("a Feedback record");
    let fr = &feedback["feedback_report"];
    assert_eq!(fr["feedback_type"], "abuse");
    assert_eq!(fr["user_agent"], "ISP-FBL/1.0");
    assert_eq!(fr["source_ip"], "192.0.2.25");
    assert_eq!(
        fr["supplemental_trace"],
        serde_json::json!({"recipient": "reader@mailbox.test", "tenant": "acme", "campaign": "spring-sale"})
    );
    assert_eq!(feedback["spooled"], false);
}

#[tokio::test]
async fn a_bounce_report_logs_one_oob_record_per_failed_recipient() {
    let mut h = Harness::start(|l| l.domains = yaml(DOMAINS)).await;
    let mut isp = h.outsider("127.0.0.2").await;
    let dsn = corpus("dsn-multi-recipient.eml");
    isp.send_mail("", &["bounces@bounce.example.com"], &stuffed(&dsn))
        .await
        .assert(250, "2.0.0");
    assert!(h.spooled().is_empty());
    let records = h.stop().await;
    let expected = postern_reports::parse_dsn(dsn.as_bytes()).unwrap().unwrap();
    let failed: Vec<String> = expected
        .failed()
        .map(|r| r.recipient().to_owned())
        .collect();
    let oob: Vec<&serde_json::Value> = records.iter().filter(|r| r["type"] == "OOB").collect();
    assert_eq!(oob.len(), failed.len());
    assert!(!oob.is_empty());
    for (record, rcpt) in oob.iter().zip(&failed) {
        assert_eq!(record["recipient"], rcpt.as_str());
        assert_eq!(record["sender"], "bounces@bounce.example.com");
        assert_eq!(
            record["peer_address"]["name"],
            expected.reporting_mta.name.as_str()
        );
        assert!(
            record["response"]["enhanced_code"]["class"]
                .as_u64()
                .unwrap()
                >= 4
        );
    }
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "Reception" && r["recipient"] == "bounces@bounce.example.com")
    );
}

#[tokio::test]
async fn reports_to_a_relay_to_domain_are_logged_and_relayed() {
    let mut h = Harness::start(|l| l.domains = yaml(DOMAINS)).await;
    let mut isp = h.outsider("127.0.0.2").await;
    isp.send_mail(
        "",
        &["x@both.example.com"],
        &stuffed(&corpus("arf-abuse.eml")),
    )
    .await
    .assert(250, "2.0.0");
    assert_eq!(h.spooled().len(), 1);
    let records = h.stop().await;
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "Feedback" && r["spooled"] == true)
    );
}

#[tokio::test]
async fn malformed_reports_are_plain_receptions_with_a_parse_error_and_nothing_is_lost() {
    let mut h = Harness::start(|l| l.domains = yaml(DOMAINS)).await;
    let mut isp = h.outsider("127.0.0.2").await;
    isp.send_mail(
        "",
        &["x@fbl.example.com"],
        &stuffed(&corpus("bad-arf-missing-feedback-type.eml")),
    )
    .await
    .assert(250, "2.0.0");
    isp.send_mail(
        "",
        &["y@both.example.com"],
        &stuffed(&corpus("bad-dsn-missing-status.eml")),
    )
    .await
    .assert(250, "2.0.0");
    let spooled = h.spooled();
    assert_eq!(
        spooled.len(),
        1,
        "the malformed report to a relayTo domain is relayed"
    );
    assert_eq!(spooled[0].0.recipients, ["y@both.example.com"]);
    let records = h.stop().await;
    let receptions: Vec<_> = records
        .iter()
        .filter(|r| r["type"] == "Reception")
        .collect();
    assert_eq!(receptions.len(), 2);
    for r in receptions {
        assert!(
            r["report_parse_error"]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{r}"
        );
    }
}
