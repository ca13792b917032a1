//! The trace headers in spooled messages: `Received:` then the supplemental header,
//! their contents, and switching each off.

mod common;

use base64::Engine;
use common::{Client, Harness, id_of};

fn supplemental_json(message: &str, name: &str) -> serde_json::Value {
    let start = message
        .find(&format!("{name}: "))
        .expect("supplemental header present")
        + name.len()
        + 2;
    let mut b64 = String::new();
    for (i, line) in message[start..].split("\r\n").enumerate() {
        if i > 0 && !line.starts_with('\t') {
            break;
        }
        b64.push_str(line.trim());
    }
    let json = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

#[tokio::test]
async fn both_headers_are_added_in_kumomta_order() {
    let mut h = Harness::start(|l| {
        l.meta = [("tenant".to_owned(), "acme".to_owned())].into();
        l.trace_headers.include_meta_names = vec!["tenant".into(), "campaign".into()];
    })
    .await;
    let mut c = Client::hello(h.smtp).await;
    let reply = c
        .send_mail("a@b.test", &["c@d.test"], "Subject: t\r\n\r\nbody\r\n")
        .await;
    let id = id_of(&reply);
    let message = String::from_utf8(h.spooled().remove(0).1).unwrap();
    assert!(message.starts_with("X-KumoRef: "), "{message}");
    let received_at = message
        .find(
            "\r\nReceived: from client.test ([127.0.0.1])\r\n\tby mx.test (Postern) with ESMTP\r\n",
        )
        .unwrap();
    assert!(message[received_at..].contains(&format!("\tid {id}\r\n\tfor <c@d.test>;\r\n\t")));
    assert!(
        message.ends_with("+0000\r\nSubject: t\r\n\r\nbody\r\n"),
        "{message}"
    );
    assert_eq!(
        supplemental_json(&message, "X-KumoRef"),
        serde_json::json!({"_@_": "\\_/", "recipient": "c@d.test", "tenant": "acme", "campaign": null})
    );
    h.stop().await;
}

#[tokio::test]
async fn with_several_recipients_no_trace_header_names_any() {
    let mut h = Harness::start(|l| l.trace_headers.header_name = "X-Trace".into()).await;
    let mut c = Client::hello(h.smtp).await;
    c.send_mail(
        "a@b.test",
        &["c@d.test", "e@f.test"],
        "Subject: t\r\n\r\nbody\r\n",
    )
    .await
    .assert(250, "2.0.0");
    let message = String::from_utf8(h.spooled().remove(0).1).unwrap();
    assert_eq!(
        supplemental_json(&message, "X-Trace"),
        serde_json::json!({"_@_": "\\_/"}),
        "no recipient is disclosed to the others"
    );
    assert!(!message.contains("\tfor <"));
    assert!(!message.contains("c@d.test") && !message.contains("e@f.test"));
    h.stop().await;
}

#[tokio::test]
async fn each_header_can_be_switched_off() {
    let mut h = Harness::start(|l| l.trace_headers.supplemental_header = false).await;
    let mut c = Client::hello(h.smtp).await;
    c.send_mail("a@b.test", &["c@d.test"], "Subject: t\r\n\r\nbody\r\n")
        .await;
    let message = String::from_utf8(h.spooled().remove(0).1).unwrap();
    assert!(message.starts_with("Received: ") && !message.contains("X-KumoRef"));
    h.stop().await;

    let mut h = Harness::start(|l| l.trace_headers.received_header = false).await;
    let mut c = Client::hello(h.smtp).await;
    c.send_mail("a@b.test", &["c@d.test"], "Subject: t\r\n\r\nbody\r\n")
        .await;
    let message = String::from_utf8(h.spooled().remove(0).1).unwrap();
    assert!(message.starts_with("X-KumoRef: ") && !message.contains("Received:"));
    h.stop().await;
}

#[tokio::test]
async fn helo_clients_are_recorded_as_smtp() {
    let mut h = Harness::start(|_| {}).await;
    let mut c = h.client().await;
    c.reply().await;
    c.cmd("HELO old.test").await;
    c.send_mail("a@b.test", &["c@d.test"], "Subject: t\r\n\r\nbody\r\n")
        .await
        .assert(250, "2.0.0");
    let message = String::from_utf8(h.spooled().remove(0).1).unwrap();
    assert!(
        message.contains(
            "Received: from old.test ([127.0.0.1])\r\n\tby mx.test (Postern) with SMTP\r\n"
        )
    );
    h.stop().await;
}
