//! The queue runner: scheduled entries wait in a timer queue, due ones join their
//! destination site's ready queue, and per site up to `connectionLimit` workers take
//! them over reused connections (at most `maxMessagesPerConnection` each).
//!
//! An entry is one message's recipients of one recipient domain (its `queue`).
//! Outcomes are per recipient: delivered and bounced recipients are done, transient
//! ones are retried on the schedule, and every outcome is made durable in the store
//! before the entry is rescheduled or dropped.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use postern_config::{BounceMode, DeliveryConfig};
use postern_smtp::reply::Reply;
use postern_spool::MessageId;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    DispatchError,
    classify::{Outcome, classify},
    dispatcher::{Dispatcher, OutboundMessage, PeerInfo, RecipientResult, SendResult},
    dsn::{FailedRecipient, Original, build_dsn},
    metrics::{AttemptOutcome, DeliveryMetrics, SiteLabels},
    record::{DeliveryRecord, DeliveryRecordType, PeerAddress, RecordSink, Response},
    route::{Destination, Router, domain_of},
    schedule::RetrySchedule,
    store::{Attempted, QueueStore, QueuedMessage, RecoveredMessage},
    timeq::{Poll, TimerQueue},
};

/// How often the queue gauges are refreshed.
const GAUGE_REFRESH: Duration = Duration::from_secs(1);

/// One listener's delivery settings, ready to use.
#[derive(Clone, Debug)]
pub struct ListenerDelivery {
    /// Routes.
    pub router: Router,
    /// Retry schedule.
    pub schedule: RetrySchedule,
    /// Whether to mail reports to senders.
    pub bounces: BounceMode,
    /// The host name that signs reports (`Reporting-MTA`).
    pub hostname: String,
}

impl ListenerDelivery {
    /// The settings of a `delivery` section.
    pub fn new(config: &DeliveryConfig, hostname: String) -> Self {
        Self {
            router: Router::new(config, &hostname),
            schedule: RetrySchedule::of(config),
            bounces: config.bounces,
            hostname,
        }
    }
}

/// Wall-clock time that advances with tokio's clock (so paused-time tests run at once).
#[derive(Clone, Copy, Debug)]
struct Clock {
    wall: DateTime<Utc>,
    base: Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            wall: Utc::now(),
            base: Instant::now(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::TimeDelta::from_std(self.base.elapsed()).unwrap_or_default();
        self.wall + elapsed
    }
}

/// What every entry of one message shares.
#[derive(Debug)]
struct MessageInfo {
    id: MessageId,
    sender: String,
    received_at: DateTime<Utc>,
    size: u64,
    meta: Map<String, Value>,
    listener: usize,
}

/// One recipient: its index in the envelope and its address.
type Recipient = (u32, String);

#[derive(Clone, Debug)]
struct Entry {
    message: Arc<MessageInfo>,
    recipients: Vec<Recipient>,
    queue: String,
    destination: Arc<Destination>,
    num_attempts: u32,
    /// When it is next due, while it waits in the timer queue.
    due: Option<DateTime<Utc>>,
}

/// A site of one listener: each listener's entries have their own sites, since its
/// host name (EHLO), outbound trust (`caFile`) and credentials may differ from another
/// listener's routes to the same `host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SiteKey {
    listener: usize,
    site: String,
}

impl SiteKey {
    fn of(entry: &Entry) -> Self {
        Self {
            listener: entry.message.listener,
            site: entry.destination.site.clone(),
        }
    }
}

#[derive(Debug)]
struct Site {
    destination: Arc<Destination>,
    ready: VecDeque<u64>,
    connections: u32,
}

#[derive(Debug, Default)]
struct State {
    next_key: u64,
    entries: HashMap<u64, Entry>,
    timers: TimerQueue<u64>,
    sites: HashMap<SiteKey, Site>,
    /// The keys of each message's entries: the queue depth in messages is its length.
    messages: HashMap<MessageId, Vec<u64>>,
    stopping: bool,
}

/// The queue of one destination site, for `/queue`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SiteSnapshot {
    /// The site.
    pub site: String,
    /// Queued entries (message and recipient domain), in flight included.
    pub depth: u64,
    /// Open connections.
    pub connections: u32,
    /// Age of the oldest queued message, in seconds.
    pub oldest_age_seconds: u64,
}

/// The whole queue, for `/queue`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueueSnapshot {
    /// Messages with undelivered recipients.
    pub depth: u64,
    /// Per destination site, by name.
    pub sites: Vec<SiteSnapshot>,
}

struct Inner<D, S> {
    dispatcher: D,
    store: S,
    sink: Arc<dyn RecordSink>,
    listeners: Vec<ListenerDelivery>,
    state: Mutex<State>,
    wake: Notify,
    clock: Clock,
    metrics: DeliveryMetrics,
    workers: TaskTracker,
    stop: CancellationToken,
    depth: watch::Sender<u64>,
}

/// The queue runner. Cheap to clone; all clones are one runner.
pub struct Runner<D, S> {
    inner: Arc<Inner<D, S>>,
}

impl<D, S> Clone for Runner<D, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<D, S> std::fmt::Debug for Runner<D, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("depth", &*self.inner.depth.borrow())
            .finish_non_exhaustive()
    }
}

impl<D: Dispatcher, S: QueueStore> Runner<D, S> {
    /// Starts the scheduler; `listeners[i]` applies to messages of listener `i`.
    pub fn start(
        listeners: Vec<ListenerDelivery>,
        dispatcher: D,
        store: S,
        sink: Arc<dyn RecordSink>,
        metrics: DeliveryMetrics,
    ) -> Self {
        let (depth, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            dispatcher,
            store,
            sink,
            listeners,
            state: Mutex::default(),
            wake: Notify::new(),
            clock: Clock::new(),
            metrics,
            workers: TaskTracker::new(),
            stop: CancellationToken::new(),
            depth,
        });
        tokio::spawn(inner.clone().schedule());
        tokio::spawn(inner.clone().refresh_gauges());
        Self { inner }
    }

    /// Queues a newly received message; its recipients are due now.
    pub fn submit(&self, message: QueuedMessage) {
        self.inner.enqueue(message, &[], 0, None);
    }

    /// Queues what the store's recovery found, keeping each recipient's schedule;
    /// messages already past `maxAge` expire at once.
    pub async fn resume(&self, recovered: Vec<RecoveredMessage>) {
        let now = self.inner.clock.now();
        for r in recovered {
            let schedule = self.inner.listener(r.message.listener).schedule;
            if schedule.expired(r.message.received_at, now) {
                self.inner.expire_recovered(r, now).await;
            } else {
                self.inner
                    .enqueue(r.message, &r.finished, r.attempts, r.next_due);
            }
        }
    }

    /// Messages with undelivered recipients.
    pub fn depth(&self) -> u64 {
        *self.inner.depth.borrow()
    }

    /// Follows the depth (for drain: wait until it reaches 0).
    pub fn watch_depth(&self) -> watch::Receiver<u64> {
        self.inner.depth.subscribe()
    }

    /// The queue per destination.
    pub fn snapshot(&self) -> QueueSnapshot {
        self.inner.snapshot()
    }

    /// Stops: no new attempts start; attempts under way may finish within `grace`
    /// (their outcomes are recorded). Returns the attempts abandoned (0 when all
    /// finished); those recipients are attempted again after a restart.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.inner.lock().stopping = true;
        self.inner.stop.cancel();
        self.inner.workers.close();
        if tokio::time::timeout(grace, self.inner.workers.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        let abandoned = self.inner.workers.len();
        tracing::warn!(
            abandoned,
            "delivery attempts still under way at the end of the grace period were abandoned; \
             they are attempted again after a restart"
        );
        abandoned
    }
}

impl<D: Dispatcher, S: QueueStore> Inner<D, S> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn listener(&self, index: usize) -> &ListenerDelivery {
        self.listeners
            .get(index)
            .or_else(|| self.listeners.first())
            .expect("a runner has at least one listener")
    }

    /// Splits a message's unfinished recipients into entries per recipient domain
    /// and queues them, due at `due` (now when `None`).
    fn enqueue(
        self: &Arc<Self>,
        message: QueuedMessage,
        finished: &[u32],
        num_attempts: u32,
        due: Option<DateTime<Utc>>,
    ) {
        let listener = self.listener(message.listener);
        let info = Arc::new(MessageInfo {
            id: message.id,
            sender: message.sender,
            received_at: message.received_at,
            size: message.size,
            meta: message.meta,
            listener: message.listener,
        });
        // Recipient domain → its unfinished recipients, in envelope order.
        let mut groups: Vec<(String, Vec<Recipient>)> = Vec::new();
        for (index, recipient) in (0u32..).zip(message.recipients) {
            if finished.contains(&index) {
                continue;
            }
            let domain = domain_of(&recipient);
            match groups.iter_mut().find(|(d, _)| *d == domain) {
                Some((_, list)) => list.push((index, recipient)),
                None => groups.push((domain, vec![(index, recipient)])),
            }
        }
        let now = self.clock.now();
        let mut state = self.lock();
        for (domain, recipients) in groups {
            let route = listener.router.route(&domain);
            let entry = Entry {
                message: info.clone(),
                recipients,
                queue: route.queue,
                destination: route.destination,
                num_attempts,
                due: due.filter(|d| *d > now),
            };
            let site = SiteKey::of(&entry);
            state.next_key += 1;
            let key = state.next_key;
            state.messages.entry(info.id).or_default().push(key);
            state.sites.entry(site.clone()).or_insert_with(|| Site {
                destination: entry.destination.clone(),
                ready: VecDeque::new(),
                connections: 0,
            });
            state.entries.insert(key, entry);
            match due {
                Some(due) if due > now => state.timers.insert(due, key),
                _ => state
                    .sites
                    .get_mut(&site)
                    .expect("inserted above")
                    .ready
                    .push_back(key),
            }
            self.spawn_workers(&mut state, &site);
        }
        self.publish_depth(&state);
        drop(state);
        self.wake.notify_one();
    }

    /// Starts workers for a site with ready entries, up to its connection limit.
    fn spawn_workers(self: &Arc<Self>, state: &mut State, key: &SiteKey) {
        if state.stopping {
            return;
        }
        let Some(site) = state.sites.get_mut(key) else {
            return;
        };
        while site.connections < site.destination.connection_limit
            && (site.connections as usize) < site.ready.len()
        {
            site.connections += 1;
            self.workers
                .spawn(self.clone().work(key.clone(), site.destination.clone()));
        }
    }

    fn publish_depth(&self, state: &State) {
        let depth = state.messages.len() as u64;
        self.depth
            .send_if_modified(|d| std::mem::replace(d, depth) != depth);
        self.metrics.queued_messages.set(depth as i64);
    }

    /// Moves due entries to their ready queues and sleeps until the next is due.
    async fn schedule(self: Arc<Self>) {
        loop {
            let sleep = {
                let mut state = self.lock();
                match state.timers.poll(self.clock.now()) {
                    Poll::Ready(keys) => {
                        let mut sites = Vec::new();
                        for key in keys {
                            let Some(site) = state.entries.get(&key).map(SiteKey::of) else {
                                continue;
                            };
                            if let Some(e) = state.entries.get_mut(&key) {
                                e.due = None;
                            }
                            if let Some(s) = state.sites.get_mut(&site) {
                                s.ready.push_back(key);
                            }
                            sites.push(site);
                        }
                        sites.sort();
                        sites.dedup();
                        for site in sites {
                            self.spawn_workers(&mut state, &site);
                        }
                        continue;
                    }
                    Poll::Sleep(duration) => duration,
                    Poll::Empty => Duration::from_secs(3600),
                }
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                () = self.stop.cancelled() => return,
            }
        }
    }

    /// One connection's worth of work for a site: take ready entries, send them over
    /// one connection (reopened after `maxMessagesPerConnection`), until none is left.
    async fn work(self: Arc<Self>, site: SiteKey, destination: Arc<Destination>) {
        let labels = SiteLabels {
            site: destination.site.clone(),
        };
        let mut connection: Option<(D::Connection, u32)> = None;
        loop {
            let next = {
                let mut state = self.lock();
                let next = if state.stopping {
                    None
                } else {
                    pop_ready(&mut state, &site)
                };
                if next.is_none() && connection.is_none() {
                    if let Some(open) = state.sites.get_mut(&site) {
                        open.connections -= 1;
                    }
                    return;
                }
                next
            };
            let Some((key, entry)) = next else {
                // Nothing ready: close, then look once more before leaving, so an
                // entry queued meanwhile is not left without a worker.
                if let Some((open, _)) = connection.take() {
                    self.dispatcher.close(open).await;
                    self.metrics.connections_open.get_or_create(&labels).dec();
                }
                continue;
            };
            if connection.is_none() {
                // Connecting is safe to abandon at shutdown: nothing was sent yet, and
                // the entry stays in the store for the next start.
                let connected = tokio::select! {
                    connected = self.dispatcher.connect(&destination) => connected,
                    () = self.stop.cancelled() => return,
                };
                match connected {
                    Ok(open) => {
                        self.metrics.connections_open.get_or_create(&labels).inc();
                        connection = Some((open, 0));
                    }
                    Err(error) => {
                        let result = SendResult::all_failed(entry.recipients.len(), &error);
                        self.finish(key, entry, result, None, None).await;
                        continue;
                    }
                }
            }
            let (open, sent) = connection.as_mut().expect("connected above");
            let peer = D::peer(open);
            let (result, data) = match self.store.load(entry.message.id).await {
                Ok(data) => {
                    let addresses: Vec<String> =
                        entry.recipients.iter().map(|(_, a)| a.clone()).collect();
                    let message = OutboundMessage {
                        sender: &entry.message.sender,
                        recipients: &addresses,
                        data: &data,
                    };
                    (self.dispatcher.send(open, message).await, Some(data))
                }
                Err(e) => (
                    SendResult::all_failed(
                        entry.recipients.len(),
                        &DispatchError::Local(format!("cannot read the message: {e}")),
                    ),
                    None,
                ),
            };
            *sent += 1;
            let close = !result.reusable || *sent >= destination.max_messages_per_connection;
            if close && let Some((open, _)) = connection.take() {
                self.dispatcher.close(open).await;
                self.metrics.connections_open.get_or_create(&labels).dec();
            }
            self.finish(key, entry, result, Some(peer), data).await;
        }
    }

    /// Decides every recipient of an attempt, makes it durable, logs it, mails the
    /// sender a report when asked to, and reschedules or drops the entry.
    async fn finish(
        self: &Arc<Self>,
        key: u64,
        entry: Entry,
        result: SendResult,
        peer: Option<PeerInfo>,
        data: Option<Vec<u8>>,
    ) {
        let now = self.clock.now();
        let message = &entry.message;
        let listener = self.listener(message.listener);
        let num_attempts = entry.num_attempts + 1;
        let mut attempted = Attempted::default();
        let mut records = Vec::new();
        let mut retry = Vec::new();
        let mut failed = Vec::new();
        let record = |kind, recipient: &str, reply: &Reply, command: Option<String>| {
            self.record(
                kind,
                &entry,
                recipient,
                reply,
                command,
                peer.as_ref(),
                now,
                num_attempts,
            )
        };
        let mut results = result.recipients.into_iter();
        for (index, recipient) in &entry.recipients {
            let RecipientResult { result, command } =
                results.next().unwrap_or_else(|| RecipientResult {
                    result: Err(DispatchError::Protocol(
                        "no result for this recipient".into(),
                    )),
                    command: None,
                });
            let (outcome, reply) = classify(&result);
            match outcome {
                Outcome::Delivered => {
                    records.push(record(
                        DeliveryRecordType::Delivery,
                        recipient,
                        &reply,
                        command,
                    ));
                    self.metrics.attempt(AttemptOutcome::delivered);
                    let latency = (now - message.received_at).to_std().unwrap_or_default();
                    self.metrics.latency.observe(latency.as_secs_f64());
                    attempted.finished.push(*index);
                }
                Outcome::Permanent => {
                    records.push(record(
                        DeliveryRecordType::Bounce,
                        recipient,
                        &reply,
                        command,
                    ));
                    self.metrics.attempt(AttemptOutcome::bounced);
                    attempted.finished.push(*index);
                    failed.push(self.failed(recipient, reply, peer.as_ref(), now));
                }
                Outcome::Transient => retry.push((*index, recipient.clone(), reply, command)),
            }
        }
        let next_due = if retry.is_empty() {
            None
        } else {
            listener
                .schedule
                .next_due(message.received_at, num_attempts, now)
        };
        let mut retried = Vec::new();
        for (index, recipient, reply, command) in retry {
            match next_due {
                Some(due) => {
                    let mut r = record(
                        DeliveryRecordType::TransientFailure,
                        &recipient,
                        &reply,
                        command,
                    );
                    r.next_due = Some(due);
                    records.push(r);
                    self.metrics.attempt(AttemptOutcome::transient);
                    attempted.retry = Some((num_attempts, due));
                    retried.push((index, recipient));
                }
                None => {
                    let expired = expiration_reply(&listener.schedule, &reply);
                    records.push(record(
                        DeliveryRecordType::Expiration,
                        &recipient,
                        &expired,
                        command,
                    ));
                    self.metrics.attempt(AttemptOutcome::expired);
                    attempted.finished.push(index);
                    failed.push(self.failed(&recipient, expired, peer.as_ref(), now));
                }
            }
        }
        attempted.retry = self.message_schedule(key, message.id, attempted.retry);
        if let Err(e) = self.store.record(message.id, attempted).await {
            tracing::error!(id = %message.id, error = %e, "cannot record delivery progress; a restart may attempt these recipients again");
        }
        for r in &records {
            self.sink.write(r);
        }
        if !failed.is_empty() {
            self.notify_sender(message, &failed, data, now).await;
        }
        let mut state = self.lock();
        match next_due {
            Some(due) if !retried.is_empty() => {
                if let Some(e) = state.entries.get_mut(&key) {
                    e.recipients = retried;
                    e.num_attempts = num_attempts;
                    e.due = Some(due);
                }
                state.timers.insert(due, key);
                drop(state);
                self.wake.notify_one();
            }
            _ => {
                state.entries.remove(&key);
                if let Some(keys) = state.messages.get_mut(&message.id) {
                    keys.retain(|k| *k != key);
                    if keys.is_empty() {
                        state.messages.remove(&message.id);
                    }
                }
                self.publish_depth(&state);
            }
        }
    }

    /// A message found at recovery past `maxAge`: every unfinished recipient expires
    /// unattempted.
    async fn expire_recovered(self: &Arc<Self>, recovered: RecoveredMessage, now: DateTime<Utc>) {
        let message = recovered.message;
        let listener = self.listener(message.listener);
        let reply = Reply::new(
            551,
            "5.4.7",
            format!(
                "message expired in queue after {}",
                humantime_of(listener.schedule.max_age)
            ),
        );
        let info = Arc::new(MessageInfo {
            id: message.id,
            sender: message.sender.clone(),
            received_at: message.received_at,
            size: message.size,
            meta: message.meta.clone(),
            listener: message.listener,
        });
        let mut failed = Vec::new();
        let mut attempted = Attempted::default();
        for (index, recipient) in (0u32..).zip(&message.recipients) {
            if recovered.finished.contains(&index) {
                continue;
            }
            let route = listener.router.route(&domain_of(recipient));
            let entry = Entry {
                message: info.clone(),
                recipients: vec![(index, recipient.clone())],
                queue: route.queue,
                destination: route.destination,
                num_attempts: recovered.attempts,
                due: None,
            };
            let r = self.record(
                DeliveryRecordType::Expiration,
                &entry,
                recipient,
                &reply,
                None,
                None,
                now,
                recovered.attempts,
            );
            self.sink.write(&r);
            self.metrics.attempt(AttemptOutcome::expired);
            attempted.finished.push(index);
            failed.push(self.failed(recipient, reply.clone(), None, now));
        }
        let data = self.store.load(message.id).await.ok();
        if let Err(e) = self.store.record(message.id, attempted).await {
            tracing::error!(id = %message.id, error = %e, "cannot record the expiry of a message");
        }
        self.notify_sender(&info, &failed, data, now).await;
    }

    /// The schedule of a message's unfinished recipients after an attempt of entry
    /// `key`: the earliest due time (and the most attempts) among this attempt's
    /// retry and the message's other waiting entries. The store keeps one schedule
    /// per message, so a record about one entry must not lose another's.
    fn message_schedule(
        &self,
        key: u64,
        id: MessageId,
        retry: Option<(u32, DateTime<Utc>)>,
    ) -> Option<(u32, DateTime<Utc>)> {
        let state = self.lock();
        state
            .messages
            .get(&id)
            .into_iter()
            .flatten()
            .filter(|k| **k != key)
            .filter_map(|k| state.entries.get(k))
            .filter_map(|e| e.due.map(|due| (e.num_attempts, due)))
            .chain(retry)
            .reduce(|(a1, d1), (a2, d2)| (a1.max(a2), d1.min(d2)))
    }

    fn failed(
        &self,
        recipient: &str,
        reply: Reply,
        peer: Option<&PeerInfo>,
        now: DateTime<Utc>,
    ) -> FailedRecipient {
        FailedRecipient {
            recipient: recipient.to_owned(),
            reply,
            remote_mta: peer.map(|p| p.name.clone()),
            last_attempt: now,
        }
    }

    /// With `bounces: notifySender`, queues an RFC 3464 report to the sender.
    async fn notify_sender(
        self: &Arc<Self>,
        message: &MessageInfo,
        failed: &[FailedRecipient],
        data: Option<Vec<u8>>,
        now: DateTime<Utc>,
    ) {
        let listener = self.listener(message.listener);
        if listener.bounces != BounceMode::NotifySender {
            return;
        }
        let data = match data {
            Some(data) => data,
            None => self.store.load(message.id).await.unwrap_or_default(),
        };
        let id = MessageId::generate();
        let original = Original {
            id: &message.id.to_string(),
            sender: &message.sender,
            received_at: message.received_at,
            data: &data,
        };
        let Some(dsn) = build_dsn(&listener.hostname, original, failed, now, &id.to_string())
        else {
            return;
        };
        let mut meta = Map::new();
        meta.insert("dsn_for".into(), message.id.to_string().into());
        let report = QueuedMessage {
            id,
            sender: String::new(),
            recipients: vec![dsn.recipient],
            received_at: now,
            size: dsn.data.len() as u64,
            meta,
            listener: message.listener,
        };
        match self.store.insert(&report, dsn.data).await {
            Ok(()) => self.enqueue(report, &[], 0, None),
            Err(e) => {
                tracing::error!(id = %message.id, error = %e, "cannot store the delivery status notification")
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        kind: DeliveryRecordType,
        entry: &Entry,
        recipient: &str,
        reply: &Reply,
        command: Option<String>,
        peer: Option<&PeerInfo>,
        now: DateTime<Utc>,
        num_attempts: u32,
    ) -> DeliveryRecord {
        let tls = peer.and_then(|p| p.tls.as_ref());
        DeliveryRecord {
            kind,
            id: entry.message.id.to_string(),
            sender: entry.message.sender.clone(),
            recipient: recipient.to_owned(),
            queue: entry.queue.clone(),
            site: entry.destination.site.clone(),
            size: entry.message.size,
            response: Response::of(reply, command),
            peer_address: peer.map(|p| PeerAddress {
                name: p.name.clone(),
                addr: p.addr.clone(),
            }),
            timestamp: now,
            created: entry.message.received_at,
            num_attempts,
            next_due: None,
            delivery_protocol: if tls.is_some() { "ESMTPS" } else { "ESMTP" }.into(),
            tls_protocol_version: tls.map(|t| t.protocol_version.clone()),
            tls_cipher: tls.map(|t| t.cipher.clone()),
            tls_peer_subject_name: tls.and_then(|t| t.peer_subject_name.clone()),
            meta: entry.message.meta.clone(),
        }
    }

    fn snapshot(&self) -> QueueSnapshot {
        let now = self.clock.now();
        let state = self.lock();
        let mut sites: BTreeMap<&str, SiteSnapshot> = BTreeMap::new();
        for entry in state.entries.values() {
            let site = entry.destination.site.as_str();
            let snap = sites.entry(site).or_insert_with(|| SiteSnapshot {
                site: site.to_owned(),
                depth: 0,
                // Every listener's connections to this site.
                connections: state
                    .sites
                    .iter()
                    .filter(|(key, _)| key.site == site)
                    .map(|(_, s)| s.connections)
                    .sum(),
                oldest_age_seconds: 0,
            });
            snap.depth += 1;
            let age = (now - entry.message.received_at).num_seconds().max(0) as u64;
            snap.oldest_age_seconds = snap.oldest_age_seconds.max(age);
        }
        QueueSnapshot {
            depth: state.messages.len() as u64,
            sites: sites.into_values().collect(),
        }
    }

    async fn refresh_gauges(self: Arc<Self>) {
        loop {
            let snapshot = self.snapshot();
            self.metrics.queue_depth.clear();
            self.metrics.oldest_age.clear();
            for site in snapshot.sites {
                let labels = SiteLabels { site: site.site };
                self.metrics
                    .queue_depth
                    .get_or_create(&labels)
                    .set(site.depth as i64);
                self.metrics
                    .oldest_age
                    .get_or_create(&labels)
                    .set(site.oldest_age_seconds as i64);
            }
            tokio::select! {
                () = tokio::time::sleep(GAUGE_REFRESH) => {}
                () = self.stop.cancelled() => return,
            }
        }
    }
}

/// Takes the next ready entry of a site (skipping keys of entries already gone).
fn pop_ready(state: &mut State, site: &SiteKey) -> Option<(u64, Entry)> {
    loop {
        let key = state.sites.get_mut(site)?.ready.pop_front()?;
        if let Some(entry) = state.entries.get(&key) {
            return Some((key, entry.clone()));
        }
    }
}

/// The reply of an `Expiration`: KumoMTA's `551 5.4.7`, naming the last failure.
fn expiration_reply(schedule: &RetrySchedule, last: &Reply) -> Reply {
    Reply::new(
        551,
        "5.4.7",
        format!(
            "next retry would be past maxAge ({}); last reply: {} {}",
            humantime_of(schedule.max_age),
            last.code,
            last.content().replace(['\r', '\n'], " ")
        ),
    )
}

fn humantime_of(duration: Duration) -> String {
    postern_config::HumanDuration(duration).to_string()
}
