//! What happens to a message once its data has arrived: report detection, the relay
//! decision per recipient, trace headers, and the log records. Pure.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::{
    context::ListenerContext,
    records::{LogRecord, PeerAddress, RecordType, Response, recipient_value},
    relay::Decision,
    session::{Authenticated, Delivery, TlsInfo},
    smtp::{
        address::Mailbox,
        reply::{Enhanced, Reply},
    },
    trace::{ReceivedInfo, received_header, reception_protocol, supplemental_header},
};

/// A received message and its session facts.
#[derive(Debug)]
pub struct Received<'a> {
    /// The listener.
    pub ctx: &'a ListenerContext,
    /// The id given to the message.
    pub id: String,
    /// Reception time.
    pub now: DateTime<Utc>,
    /// The peer.
    pub peer: SocketAddr,
    /// The listener address.
    pub local: SocketAddr,
    /// The EHLO/HELO name, if known.
    pub helo: Option<&'a str>,
    /// Whether the client spoke ESMTP (said EHLO).
    pub esmtp: bool,
    /// The client's host name, when an XCLIENT proxy said it.
    pub client_name: Option<&'a str>,
    /// The XCLIENT proxy that named the client, when one did.
    pub xclient_from: Option<SocketAddr>,
    /// TLS facts, when encrypted.
    pub tls: Option<&'a TlsInfo>,
    /// Who the client authenticated as, if it did.
    pub auth: Option<&'a Authenticated>,
    /// The envelope sender ("" for the null sender).
    pub sender: String,
    /// The accepted recipients with their RCPT-time decisions.
    pub recipients: &'a [(Mailbox, Decision)],
    /// The unstuffed message data.
    pub body: Vec<u8>,
}

/// The reports found in a message, parsed at most once each.
#[derive(Default)]
struct Reports {
    arf: Option<Result<Option<postern_reports::FeedbackReport>, String>>,
    dsn: Option<Result<Option<postern_reports::DeliveryReport>, String>>,
}

impl Reports {
    fn arf(&mut self, body: &[u8]) -> &Result<Option<postern_reports::FeedbackReport>, String> {
        self.arf
            .get_or_insert_with(|| postern_reports::parse_arf(body).map_err(|e| e.to_string()))
    }

    fn dsn(&mut self, body: &[u8]) -> &Result<Option<postern_reports::DeliveryReport>, String> {
        self.dsn
            .get_or_insert_with(|| postern_reports::parse_dsn(body).map_err(|e| e.to_string()))
    }
}

/// How one recipient's copy is handled.
struct Handling {
    kind: RecordType,
    relay: bool,
    feedback: Option<Value>,
    oob: bool,
    parse_error: Option<String>,
}

/// Decides, per recipient, whether the message is a report to log and whether it is
/// relayed: a report is relayed only when its domain has `relayTo`; anything else is
/// relayed when the RCPT-time decision allowed relaying.
fn handle(decision: Decision, body: &[u8], reports: &mut Reports) -> Handling {
    let mut handling = Handling {
        kind: RecordType::Reception,
        relay: decision.relay,
        feedback: None,
        oob: false,
        parse_error: None,
    };
    if decision.log_arf {
        match reports.arf(body) {
            Ok(Some(report)) => {
                handling.kind = RecordType::Feedback;
                handling.feedback = serde_json::to_value(report).ok();
                handling.relay = decision.relay_to;
                return handling;
            }
            Ok(None) => {}
            Err(e) => handling.parse_error = Some(format!("ARF: {e}")),
        }
    }
    if decision.log_oob {
        match reports.dsn(body) {
            Ok(Some(_)) => {
                handling.oob = true;
                handling.relay = decision.relay_to;
                handling.parse_error = None;
            }
            Ok(None) => {}
            Err(e) => handling.parse_error = Some(format!("OOB: {e}")),
        }
    }
    handling
}

/// Processes a received message: returns the delivery to store (None when nothing is
/// relayed) and the records to log once the outcome is known.
pub fn process(r: Received<'_>) -> (Option<Delivery>, Vec<LogRecord>) {
    let meta = message_meta(&r);
    let mut reports = Reports::default();
    let handlings: Vec<(String, Handling)> = r
        .recipients
        .iter()
        .map(|(mailbox, decision)| {
            (
                mailbox.to_string(),
                handle(*decision, &r.body, &mut reports),
            )
        })
        .collect();
    let relayed: Vec<String> = handlings
        .iter()
        .filter(|(_, h)| h.relay)
        .map(|(rcpt, _)| rcpt.clone())
        .collect();
    let size = r.body.len() as u64;
    let accepted = Reply::new(250, "2.0.0", "OK");
    let mut records = Vec::new();
    let mut oob_logged = false;
    for (rcpt, handling) in &handlings {
        let mut record = message_record(&r, handling.kind, &accepted, &meta, size);
        record.recipient = Value::from(rcpt.as_str());
        record.spooled = handling.relay;
        record.queue = if handling.relay {
            rcpt.rsplit('@').next().unwrap_or_default().to_owned()
        } else {
            String::new()
        };
        record.feedback_report = handling.feedback.clone();
        record.report_parse_error = handling.parse_error.clone();
        records.push(record);
        if handling.oob && !oob_logged {
            oob_logged = true;
            if let Some(Ok(Some(dsn))) = &reports.dsn {
                records.extend(
                    dsn.oob_records()
                        .map(|oob| oob_record(&r, &meta, rcpt, oob)),
                );
            }
        }
    }
    if relayed.is_empty() {
        return (None, records);
    }
    let data = with_trace_headers(&r, &relayed, &meta);
    let extra = spool_extra(&r, meta);
    let delivery = Delivery::new(
        r.id,
        r.sender,
        relayed,
        data,
        r.now,
        extra,
        r.ctx.config.deferred_spool,
    );
    (Some(delivery), records)
}

/// Prepends the supplemental header and the `Received:` header (final order:
/// supplemental, Received, the original headers).
fn with_trace_headers(r: &Received<'_>, relayed: &[String], meta: &Map<String, Value>) -> Vec<u8> {
    let trace = &r.ctx.config.trace_headers;
    let mut data = Vec::with_capacity(r.body.len() + 512);
    if trace.supplemental_header {
        data.extend_from_slice(
            supplemental_header(
                &trace.header_name,
                single(relayed),
                &trace.include_meta_names,
                meta,
            )
            .as_bytes(),
        );
    }
    if trace.received_header {
        let info = ReceivedInfo {
            helo: r.helo,
            esmtp: r.esmtp,
            peer: r.peer.ip(),
            client_name: r.client_name,
            hostname: &r.ctx.hostname,
            tls: r.tls.map(|t| (t.protocol.as_str(), t.cipher.as_str())),
            authenticated: r.auth.is_some(),
            id: &r.id,
            single_recipient: single(relayed),
            date: r.now,
        };
        data.extend_from_slice(received_header(&info).as_bytes());
    }
    data.extend_from_slice(&r.body);
    data
}

/// The recipient when there is exactly one. The stored message goes to every
/// recipient, so with several none is named in it: naming them all would show each
/// recipient the others, Bcc included.
fn single(recipients: &[String]) -> Option<&str> {
    match recipients {
        [one] => Some(one),
        _ => None,
    }
}

/// The message metadata: the listener's static `meta`, then the connection facts.
fn message_meta(r: &Received<'_>) -> Map<String, Value> {
    let mut meta: Map<String, Value> = r
        .ctx
        .config
        .meta
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    meta.insert("received_from".into(), r.peer.to_string().into());
    meta.insert("received_via".into(), r.local.to_string().into());
    meta.insert("hostname".into(), r.ctx.hostname.clone().into());
    meta.insert("ehlo_domain".into(), r.helo.unwrap_or_default().into());
    meta.insert(
        "reception_protocol".into(),
        reception_protocol(r.esmtp, r.tls.is_some()).into(),
    );
    if let Some(tls) = r.tls {
        meta.insert("tls_protocol_version".into(), tls.protocol.clone().into());
        meta.insert("tls_cipher".into(), tls.cipher.clone().into());
    }
    if let Some(auth) = r.auth {
        meta.insert("authn_id".into(), auth.authn.clone().into());
        meta.insert("authz_id".into(), auth.authz.clone().into());
    }
    if let Some(proxy) = r.xclient_from {
        meta.insert("xclient_from".into(), proxy.to_string().into());
    }
    if let Some(name) = r.client_name {
        meta.insert("client_name".into(), name.into());
    }
    meta
}

/// What the spool keeps beside the message.
fn spool_extra(r: &Received<'_>, meta: Map<String, Value>) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert(
        crate::delivery::LISTENER_FIELD.into(),
        r.ctx.config.listen.to_string().into(),
    );
    extra.insert("peer_address".into(), r.peer.to_string().into());
    if let Some(proxy) = r.xclient_from {
        extra.insert("xclient_from".into(), proxy.to_string().into());
    }
    extra.insert("ehlo".into(), r.helo.unwrap_or_default().into());
    if let Some(tls) = r.tls {
        extra.insert(
            "tls".into(),
            serde_json::json!({"protocol": tls.protocol, "cipher": tls.cipher}),
        );
    }
    extra.insert("meta".into(), Value::Object(meta));
    extra
}

fn message_record(
    r: &Received<'_>,
    kind: RecordType,
    reply: &Reply,
    meta: &Map<String, Value>,
    size: u64,
) -> LogRecord {
    let mut record = base_record(
        kind,
        Response::of(reply, None),
        PeerAddress {
            name: r.helo.unwrap_or_default().into(),
            addr: r.peer.ip().to_string(),
        },
        r.local,
        r.tls,
        r.esmtp,
    );
    record.id = Some(r.id.clone());
    record.xclient_from = r.xclient_from.map(|p| p.to_string());
    record.sender = r.sender.clone();
    record.size = size;
    record.timestamp = r.now;
    record.meta = meta.clone();
    record
}

/// One `OOB` record: KumoMTA puts the report's envelope recipient in `sender`, the
/// bounced address in `recipient`, the reporting MTA in `peer_address.name`.
fn oob_record(
    r: &Received<'_>,
    meta: &Map<String, Value>,
    report_rcpt: &str,
    oob: postern_reports::OobRecord,
) -> LogRecord {
    let mut record = message_record(r, RecordType::Oob, &Reply::new(250, "2.0.0", "OK"), meta, 0);
    record.sender = report_rcpt.to_owned();
    record.recipient = Value::from(oob.recipient.as_str());
    record.response = Response {
        code: oob.code,
        enhanced_code: Enhanced::parse(&oob.status),
        content: oob.content.clone(),
        command: None,
    };
    record.peer_address = PeerAddress {
        name: oob.reporting_mta.name.clone(),
        addr: String::new(),
    };
    if let Some(when) = oob
        .last_attempt_date
        .as_deref()
        .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
    {
        record.timestamp = when.with_timezone(&Utc);
    }
    record.oob = serde_json::to_value(&oob).ok();
    record
}

/// A record with the session facts filled in and the message fields empty.
pub fn base_record(
    kind: RecordType,
    response: Response,
    peer_address: PeerAddress,
    local: SocketAddr,
    tls: Option<&TlsInfo>,
    esmtp: bool,
) -> LogRecord {
    LogRecord {
        kind,
        id: None,
        sender: String::new(),
        recipient: recipient_value(&[]),
        queue: String::new(),
        site: String::new(),
        size: 0,
        response,
        peer_address,
        timestamp: Utc::now(),
        num_attempts: 0,
        reception_protocol: reception_protocol(esmtp, tls.is_some()).into(),
        source_address: local.to_string(),
        tls_protocol_version: tls.map(|t| t.protocol.clone()),
        tls_cipher: tls.map(|t| t.cipher.clone()),
        meta: Map::new(),
        spooled: false,
        feedback_report: None,
        oob: None,
        report_parse_error: None,
        rejections_suppressed: None,
        xclient_from: None,
        suppressed: false,
    }
}
