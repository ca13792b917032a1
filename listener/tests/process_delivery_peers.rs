//! Delivery by the real binary through real DNS and real TLS peers on loopback:
//!
//! - MX delivery with `dns.nameservers` pointing at a DNS server on 127.0.0.1
//!   (`postern-test-peers`) and `smtpPort` at Postfix's `smtp-sink`: MX, implicit MX,
//!   null MX, NXDOMAIN and SERVFAIL, each with its record;
//! - two listeners relaying to two aiosmtpd smarthosts that check credentials (read
//!   from files, as from a mounted Secret), one over STARTTLS and one over implicit
//!   TLS, each signed by its own CA given as that listener's `caFile`: both deliver
//!   (so each listener verifies with its own CA), and the `Delivery` records carry the
//!   TLS facts (`tls_protocol_version`, `tls_cipher`, `tls_peer_subject_name`).

mod support_process;

use std::net::SocketAddr;

use postern_test_peers::{
    aiosmtpd::{AuthSmarthost, HOST_NAME, PASSWORD, USERNAME},
    dns::{DnsServer, Entry, addresses, mx},
};
use serde_json::Value;
use support_process::{
    HOST, Process, Setup, Smtp, WAIT, Workdir, free_addrs, message, sink::Sink, spool_list,
};

/// Sends one message from a@example.org to `to`; returns its id.
async fn send(smtp: SocketAddr, to: &[&str], marker: &str) -> String {
    let mut client = Smtp::greeted(smtp).await.unwrap();
    let reply = client
        .send_message("a@example.org", to, &message(marker))
        .await
        .unwrap();
    reply.expect(250, "2.0.0");
    client.cmd("QUIT").await.unwrap();
    reply.id()
}

/// The one record of `kind` for `recipient`.
fn record_for<'a>(records: &'a [Value], kind: &str, recipient: &str) -> &'a Value {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == kind && r["recipient"] == recipient)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} for {recipient}: {records:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_delivery_through_a_dns_server_on_loopback() {
    let work = Workdir::new();
    let [sink_addr] = free_addrs();
    let Some(sink) = Sink::start(&work, sink_addr) else {
        return;
    };
    let dns = DnsServer::start(vec![
        (
            "mx.test",
            mx(&[(20, "backup.mx.test"), (10, "mail.mx.test")]),
        ),
        ("mail.mx.test", addresses(&["127.0.0.1"])),
        ("backup.mx.test", addresses(&["127.0.0.1"])),
        ("implicit.test", addresses(&["127.0.0.1"])),
        ("null.test", mx(&[(0, ".")])),
        ("broken.test", Entry::ServFail),
    ])
    .await;
    let setup = work.config(
        "mx",
        &[&format!(
            "delivery: {{smtpPort: {}, retryInterval: 1h}}",
            sink_addr.port()
        )],
        &[&format!("dns: {{nameservers: [\"{}\"]}}", dns.addr)],
    );
    let mut process = Process::start(&work, &setup, "mx").await;
    let to = [
        "one@mx.test",
        "two@implicit.test",
        "three@null.test",
        "four@missing.test",
        "five@broken.test",
    ];
    let id = send(setup.smtp, &to, "via-mx").await;

    setup.wait_records("Delivery", 2).await;
    setup.wait_records("Bounce", 2).await;
    setup.wait_records("TransientFailure", 1).await;
    let records: Vec<Value> = setup
        .records()
        .into_iter()
        .filter(|r| r["id"] == id.as_str())
        .collect();

    let mx = record_for(&records, "Delivery", "one@mx.test");
    assert_eq!(mx["site"], "mx:mx.test");
    assert_eq!(mx["queue"], "mx.test");
    assert_eq!(
        mx["peer_address"]["name"], "mail.mx.test",
        "the lower preference first"
    );
    assert_eq!(mx["peer_address"]["addr"], sink_addr.to_string());
    let implicit = record_for(&records, "Delivery", "two@implicit.test");
    assert_eq!(implicit["site"], "mx:implicit.test");
    assert_eq!(implicit["peer_address"]["name"], "implicit.test");
    let null = record_for(&records, "Bounce", "three@null.test");
    assert_eq!(null["response"]["code"], 556, "{null}");
    let missing = record_for(&records, "Bounce", "four@missing.test");
    assert_eq!(missing["response"]["code"], 550, "{missing}");
    assert_eq!(
        missing["response"]["enhanced_code"],
        serde_json::json!({"class": 5, "subject": 1, "detail": 2})
    );
    let broken = record_for(&records, "TransientFailure", "five@broken.test");
    assert_eq!(broken["response"]["code"], 451, "{broken}");
    // smtp-sink offers no STARTTLS: opportunistic TLS toward MX went on in plaintext.
    assert_eq!(mx["delivery_protocol"], "ESMTP");
    assert!(mx.get("tls_cipher").is_none());
    // One copy for each of the two domains that have hosts.
    assert_eq!(sink.markers().get("via-mx"), Some(&2));

    process.sigterm();
    assert!(process.wait_exit(WAIT).await.success());
    // Only the SERVFAIL recipient is left to retry.
    assert_eq!(spool_list(&setup.spool).len(), 1);
}

/// A config with two listeners, each relaying to its own aiosmtpd smarthost (`tls`:
/// `required` toward its STARTTLS port, `implicit` toward its implicit-TLS port) with
/// that smarthost's CA as its `caFile`; the smarthosts' name resolves through `dns`.
/// Returns the setup (`smtp` is the first listener) and the second listener's address.
fn two_listeners(
    work: &Workdir,
    dns: SocketAddr,
    hosts: [(&AuthSmarthost, &str); 2],
) -> (Setup, SocketAddr) {
    let [first, second, admin] = free_addrs();
    let spool = work.spool();
    let records = work.path().join("tls.records.jsonl");
    let mut yaml = String::from("listeners:\n");
    for ((host, tls), listen) in hosts.iter().zip([first, second]) {
        let port = if *tls == "implicit" {
            host.implicit.port()
        } else {
            host.starttls.port()
        };
        yaml += &format!(
            "  - listen: \"{listen}\"\n    hostname: {HOST}\n    delivery:\n      \
             smarthost:\n        host: {HOST_NAME}\n        port: {port}\n        tls: {tls}\n        \
             auth: {{username: \"{USERNAME}\", password: {:?}}}\n      caFile: {:?}\n      \
             retryInterval: 1h\n",
            host.password_file, host.pki.ca_file
        );
    }
    yaml += &format!(
        "spool:\n  path: {spool:?}\nlog: {records:?}\nadmin:\n  listen: \"{admin}\"\n\
         dns:\n  nameservers: [\"{dns}\"]\n"
    );
    let setup = Setup {
        config: work.write("tls.yaml", &yaml),
        smtp: first,
        admin,
        spool,
        records,
    };
    (setup, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_relays_over_tls_with_auth_trusting_its_own_ca_and_logs_the_tls_facts() {
    let Some(starttls) = AuthSmarthost::start() else {
        return;
    };
    let Some(implicit) = AuthSmarthost::start() else {
        return;
    };
    let dns = DnsServer::start(vec![(HOST_NAME, addresses(&["127.0.0.1"]))]).await;
    let work = Workdir::new();
    let (setup, second) = two_listeners(
        &work,
        dns.addr,
        [(&starttls, "required"), (&implicit, "implicit")],
    );
    let mut process = Process::start(&work, &setup, "tls").await;
    let first_id = send(setup.smtp, &["x@example.com"], "over-starttls").await;
    let second_id = send(second, &["y@example.com"], "over-implicit").await;

    let delivered = setup.wait_records("Delivery", 2).await;
    assert!(
        setup
            .records()
            .iter()
            .all(|r| r["type"] != "TransientFailure"),
        "{:#?}",
        setup.records()
    );
    for (id, host, smarthost) in [
        (&first_id, starttls.starttls, &starttls),
        (&second_id, implicit.implicit, &implicit),
    ] {
        let record = delivered
            .iter()
            .find(|r| r["id"] == id.as_str())
            .unwrap_or_else(|| panic!("no Delivery for {id}: {delivered:#?}"));
        assert_eq!(record["site"], format!("{HOST_NAME}:{}", host.port()));
        assert_eq!(record["peer_address"]["name"], HOST_NAME);
        assert_eq!(record["delivery_protocol"], "ESMTPS", "{record}");
        let version = record["tls_protocol_version"].as_str().unwrap_or_default();
        assert!(version.starts_with("TLSv1_"), "{record}");
        let cipher = record["tls_cipher"].as_str().unwrap_or_default();
        assert!(cipher.starts_with("TLS"), "{record}");
        // rcgen's server certificate: its default subject, one attribute.
        assert_eq!(
            record["tls_peer_subject_name"],
            serde_json::json!(["CN=rcgen self signed cert"]),
            "{record}"
        );
        // The smarthost checked the credentials read from the password file.
        smarthost.wait_for("AUTH PLAIN ok", WAIT).await;
        let line = smarthost.wait_for("DELIVERED", WAIT).await;
        assert!(line.contains("auth=True"), "{line}");
    }
    assert_eq!(starttls.printed("DELIVERED").len(), 1);
    assert_eq!(implicit.printed("DELIVERED").len(), 1);

    process.sigterm();
    assert!(process.wait_exit(WAIT).await.success());
    // The password appears in no record and no log line.
    let logs = [
        std::fs::read_to_string(&setup.records).unwrap(),
        process.stdout(),
        process.stderr(),
        std::fs::read_to_string(&setup.config).unwrap(),
    ];
    for text in &logs {
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    }
    assert!(spool_list(&setup.spool).is_empty());
}
