//! The queue runner over the in-memory dispatcher and store: per-recipient outcomes,
//! retries on the schedule, expiry, bounces, limits and resuming after a restart.
//! Tokio's clock is paused, so retry delays pass at once.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use postern_config::DeliveryConfig;
use postern_delivery::{
    DeliveryMetrics, DeliveryRecord, DeliveryRecordType, DispatchError, ListenerDelivery,
    MemoryDispatcher, MemoryStore, QueuedMessage, RecordSink, Runner,
};
use postern_smtp::reply::Reply;
use postern_spool::MessageId;

#[derive(Clone, Default)]
struct Records(Arc<Mutex<Vec<DeliveryRecord>>>);

impl RecordSink for Records {
    fn write(&self, record: &DeliveryRecord) {
        self.0.lock().unwrap().push(record.clone());
    }
}

impl Records {
    fn all(&self) -> Vec<DeliveryRecord> {
        self.0.lock().unwrap().clone()
    }

    fn of(&self, recipient: &str) -> Vec<(DeliveryRecordType, u16, u32)> {
        self.all()
            .into_iter()
            .filter(|r| r.recipient == recipient)
            .map(|r| (r.kind, r.response.code, r.num_attempts))
            .collect()
    }
}

struct Harness {
    runner: Runner<MemoryDispatcher, MemoryStore>,
    dispatcher: MemoryDispatcher,
    store: MemoryStore,
    records: Records,
}

fn harness(yaml: &str) -> Harness {
    harness_with(yaml, MemoryDispatcher::default(), MemoryStore::default())
}

fn harness_with(yaml: &str, dispatcher: MemoryDispatcher, store: MemoryStore) -> Harness {
    let config: DeliveryConfig = serde_yaml::from_str(yaml).unwrap();
    let records = Records::default();
    let runner = Runner::start(
        vec![ListenerDelivery::new(&config, "mx.postern.test".into())],
        dispatcher.clone(),
        store.clone(),
        Arc::new(records.clone()),
        DeliveryMetrics::default(),
    );
    Harness {
        runner,
        dispatcher,
        store,
        records,
    }
}

const SMARTHOST: &str =
    "{smarthost: {host: relay.test, port: 2525, tls: none}, retryInterval: 1s, maxAge: 1h}";

fn message(sender: &str, recipients: &[&str]) -> QueuedMessage {
    QueuedMessage {
        id: MessageId::generate(),
        sender: sender.into(),
        recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
        received_at: Utc::now(),
        size: 0,
        meta: serde_json::Map::new(),
        listener: 0,
    }
}

impl Harness {
    fn send(&self, sender: &str, recipients: &[&str], deferred: bool) -> MessageId {
        let m = message(sender, recipients);
        let data = format!("Subject: {}\r\n\r\nbody\r\n", m.id).into_bytes();
        self.store.add(&m, data, deferred);
        self.runner.submit(m.clone());
        m.id
    }

    /// Waits (in paused time) until the queue is empty.
    async fn drained(&self) {
        let mut depth = self.runner.watch_depth();
        tokio::time::timeout(Duration::from_secs(24 * 3600), depth.wait_for(|d| *d == 0))
            .await
            .expect("the queue empties")
            .unwrap();
    }
}

fn reply(code: u16, enhanced: &str, text: &str) -> Result<Reply, DispatchError> {
    Ok(Reply::new(code, enhanced, text))
}

#[tokio::test(start_paused = true)]
async fn two_of_three_delivered_and_only_the_third_is_retried() {
    let h = harness(SMARTHOST);
    h.dispatcher
        .script("c@dest.test", [reply(451, "4.3.0", "try later")]);
    let id = h.send(
        "s@src.test",
        &["a@dest.test", "b@dest.test", "c@dest.test"],
        false,
    );
    h.drained().await;
    assert_eq!(h.dispatcher.attempts("a@dest.test"), 1);
    assert_eq!(h.dispatcher.attempts("b@dest.test"), 1);
    assert_eq!(h.dispatcher.attempts("c@dest.test"), 2);
    assert_eq!(
        h.records.of("a@dest.test"),
        [(DeliveryRecordType::Delivery, 250, 1)]
    );
    assert_eq!(
        h.records.of("c@dest.test"),
        [
            (DeliveryRecordType::TransientFailure, 451, 1),
            (DeliveryRecordType::Delivery, 250, 2)
        ]
    );
    let transient = h
        .records
        .all()
        .into_iter()
        .find(|r| r.kind == DeliveryRecordType::TransientFailure)
        .unwrap();
    assert_eq!(transient.queue, "dest.test");
    assert_eq!(transient.site, "relay.test:2525");
    assert_eq!(transient.response.content, "try later");
    assert_eq!(
        transient.response.enhanced_code.unwrap().to_string(),
        "4.3.0"
    );
    let due = transient
        .next_due
        .expect("a transient failure names the next due time");
    assert_eq!(
        (due - transient.timestamp).num_seconds(),
        1,
        "the first retry is retryInterval later"
    );
    assert_eq!(transient.peer_address.unwrap().name, "relay.test:2525");
    assert!(
        h.store.get(id).is_none(),
        "a finished message leaves the store"
    );
    let delivered: Vec<String> = h
        .dispatcher
        .delivered()
        .into_iter()
        .map(|d| d.recipient)
        .collect();
    assert_eq!(delivered, ["a@dest.test", "b@dest.test", "c@dest.test"]);
}

#[tokio::test(start_paused = true)]
async fn the_schedule_doubles_until_max_age_then_expires() {
    let h = harness("{smarthost: {host: relay.test, tls: none}, retryInterval: 1s, maxAge: 10s}");
    h.dispatcher
        .script("x@dest.test", (0..10).map(|_| reply(421, "4.4.2", "busy")));
    h.send("s@src.test", &["x@dest.test"], false);
    h.drained().await;
    // Attempts at 0, 1, 3 and 7 seconds; the next (15 s) would be past maxAge.
    assert_eq!(h.dispatcher.attempts("x@dest.test"), 4);
    let kinds: Vec<_> = h.records.of("x@dest.test");
    assert_eq!(
        kinds,
        [
            (DeliveryRecordType::TransientFailure, 421, 1),
            (DeliveryRecordType::TransientFailure, 421, 2),
            (DeliveryRecordType::TransientFailure, 421, 3),
            (DeliveryRecordType::Expiration, 551, 4),
        ]
    );
    let gaps: Vec<i64> = h
        .records
        .all()
        .iter()
        .filter_map(|r| r.next_due.map(|d| (d - r.timestamp).num_seconds()))
        .collect();
    assert_eq!(gaps, [1, 2, 4]);
    let expiry = h.records.all().pop().unwrap();
    assert_eq!(expiry.response.enhanced_code.unwrap().to_string(), "5.4.7");
    assert!(
        expiry
            .response
            .content
            .contains("last reply: 421 4.4.2 busy"),
        "{}",
        expiry.response.content
    );
}

#[tokio::test(start_paused = true)]
async fn a_bounce_mails_the_sender_a_report_but_never_the_null_sender() {
    let h = harness(
        "{smarthost: {host: relay.test, tls: none}, retryInterval: 1s, bounces: notifySender}",
    );
    h.dispatcher
        .script("gone@dest.test", [reply(550, "5.1.1", "no such user")]);
    h.dispatcher
        .script("gone2@dest.test", [reply(550, "5.1.1", "no such user")]);
    h.send(
        "sender@src.test",
        &["gone@dest.test", "ok@dest.test"],
        false,
    );
    h.send("", &["gone2@dest.test"], false);
    h.drained().await;
    assert_eq!(
        h.records.of("gone@dest.test"),
        [(DeliveryRecordType::Bounce, 550, 1)]
    );
    let reports: Vec<_> = h
        .dispatcher
        .delivered()
        .into_iter()
        .filter(|d| d.sender.is_empty())
        .collect();
    assert_eq!(reports.len(), 1, "one report, to the non-null sender only");
    assert_eq!(reports[0].recipient, "sender@src.test");
    let dsn = postern_reports::parse_dsn(&reports[0].data)
        .unwrap()
        .unwrap();
    let failed: Vec<_> = dsn.oob_records().collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].recipient, "gone@dest.test");
    assert_eq!(failed[0].status, "5.1.1");
}

#[tokio::test(start_paused = true)]
async fn a_report_that_bounces_does_not_loop() {
    let h = harness(
        "{smarthost: {host: relay.test, tls: none}, retryInterval: 1s, bounces: notifySender}",
    );
    h.dispatcher
        .script("gone@dest.test", [reply(550, "5.1.1", "no such user")]);
    h.dispatcher
        .script("sender@src.test", [reply(550, "5.1.1", "sender gone too")]);
    h.send("sender@src.test", &["gone@dest.test"], false);
    h.drained().await;
    assert_eq!(
        h.records.of("sender@src.test"),
        [(DeliveryRecordType::Bounce, 550, 1)],
        "the report bounced, and nothing was sent about it"
    );
    assert!(h.dispatcher.delivered().is_empty());
}

#[tokio::test(start_paused = true)]
async fn connections_are_limited_reused_and_renewed() {
    let h = harness(
        "{smarthost: {host: relay.test, tls: none}, connectionLimit: 3, maxMessagesPerConnection: 5}",
    );
    for i in 0..60 {
        h.send("s@src.test", &[&format!("r{i}@dest{}.test", i % 4)], false);
    }
    h.drained().await;
    assert_eq!(h.dispatcher.delivered().len(), 60);
    assert!(h.dispatcher.max_open("relay.test:25") <= 3);
    assert_eq!(
        h.dispatcher.max_messages_per_connection(),
        5,
        "connections carry several messages, at most 5"
    );
    assert!(h.dispatcher.connections_opened() >= 12);
    assert!(
        h.dispatcher.connections_opened() < 60,
        "connections are reused"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_is_a_transient_failure() {
    let h = harness(SMARTHOST);
    h.dispatcher.fail_connects(
        "relay.test:2525",
        [DispatchError::Connect("connection refused".into())],
    );
    h.send("s@src.test", &["x@dest.test"], false);
    h.drained().await;
    let records = h.records.all();
    assert_eq!(records[0].kind, DeliveryRecordType::TransientFailure);
    assert_eq!(records[0].response.code, 421);
    assert_eq!(
        records[0].response.enhanced_code.unwrap().to_string(),
        "4.4.1"
    );
    assert_eq!(records[0].peer_address, None);
    assert_eq!(records[1].kind, DeliveryRecordType::Delivery);
}

#[tokio::test(start_paused = true)]
async fn a_null_mx_bounces_at_once() {
    let h = harness("{retryInterval: 1s}");
    h.dispatcher
        .fail_connects("mx:null.test", [DispatchError::NullMx("null.test".into())]);
    h.send("s@src.test", &["x@null.test"], false);
    h.drained().await;
    assert_eq!(
        h.records.of("x@null.test"),
        [(DeliveryRecordType::Bounce, 556, 1)]
    );
    assert_eq!(h.records.all()[0].site, "mx:null.test");
}

#[tokio::test(start_paused = true)]
async fn deferred_messages_are_written_only_on_their_first_transient_failure() {
    let h = harness(SMARTHOST);
    h.dispatcher
        .script("slow@dest.test", [reply(451, "4.3.0", "later")]);
    // Watch the store while the retry is pending: the failed one was written.
    let fast = h.send("s@src.test", &["fast@dest.test"], true);
    let slow = h.send("s@src.test", &["slow@dest.test"], true);
    let mut written = None;
    for _ in 0..1000 {
        if let Some(m) = h.store.get(slow)
            && m.written
        {
            written = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let written = written.expect("the deferred message was written after its transient failure");
    assert_eq!(written.retry.unwrap().0, 1);
    h.drained().await;
    assert!(h.store.get(fast).is_none() && h.store.get(slow).is_none());
    assert_eq!(
        h.records.of("fast@dest.test"),
        [(DeliveryRecordType::Delivery, 250, 1)],
        "delivered from memory on the first attempt, never written"
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_resumes_the_schedule_instead_of_resetting_it() {
    let dispatcher = MemoryDispatcher::default();
    let store = MemoryStore::default();
    let first = harness_with(
        "{smarthost: {host: relay.test, tls: none}, retryInterval: 1h, maxAge: 1d}",
        dispatcher.clone(),
        store.clone(),
    );
    dispatcher.script(
        "x@dest.test",
        [reply(451, "4.3.0", "later"), reply(451, "4.3.0", "later")],
    );
    let id = first.send("s@src.test", &["x@dest.test", "y@dest.test"], false);
    while first.records.all().len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(first.runner.shutdown(Duration::from_secs(5)).await, 0);
    let recovered = store.recover();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].finished, [1], "y is done");
    assert_eq!(recovered[0].attempts, 1);
    let due = recovered[0].next_due.unwrap();

    let second = harness_with(
        "{smarthost: {host: relay.test, tls: none}, retryInterval: 1h, maxAge: 1d}",
        dispatcher.clone(),
        store.clone(),
    );
    second.runner.resume(recovered).await;
    assert_eq!(second.runner.depth(), 1);
    tokio::time::sleep(Duration::from_secs(1800)).await;
    assert_eq!(
        dispatcher.attempts("x@dest.test"),
        1,
        "not attempted before it is due"
    );
    second.drained().await;
    assert_eq!(
        dispatcher.attempts("y@dest.test"),
        1,
        "y was never sent again"
    );
    assert_eq!(
        second.records.of("x@dest.test"),
        [
            (DeliveryRecordType::TransientFailure, 451, 2),
            (DeliveryRecordType::Delivery, 250, 3)
        ],
        "the attempt count goes on from the stored schedule"
    );
    let gap = second.records.all()[0].next_due.unwrap() - second.records.all()[0].timestamp;
    assert_eq!(
        gap.num_seconds(),
        2 * 3600,
        "the second failure doubles the delay"
    );
    assert!(second.records.all()[0].timestamp >= due);
    assert!(store.get(id).is_none());
}

#[tokio::test(start_paused = true)]
async fn the_snapshot_names_each_destination() {
    let h = harness(
        "{retryInterval: 1h, routes: {b.test: {smarthost: {host: relay.test, tls: none}}}}",
    );
    h.dispatcher
        .script("x@a.test", [reply(451, "4.3.0", "later")]);
    h.dispatcher
        .script("y@b.test", [reply(451, "4.3.0", "later")]);
    h.send("s@src.test", &["x@a.test", "y@b.test"], false);
    while h.records.all().len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let snapshot = h.runner.snapshot();
    assert_eq!(snapshot.depth, 1, "one message");
    let sites: BTreeMap<String, u64> = snapshot
        .sites
        .iter()
        .map(|s| (s.site.clone(), s.depth))
        .collect();
    assert_eq!(
        sites,
        BTreeMap::from([("mx:a.test".to_owned(), 1), ("relay.test:25".to_owned(), 1)])
    );
}
