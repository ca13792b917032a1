//! RFC 3464 delivery status notifications (DSNs), including RFC 6533's
//! `message/global-delivery-status`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ReportError;
use crate::fields::{self, Field};
use crate::mime::{self, Kind};
use crate::trace;
use crate::typed::{Mta, TypedAddress, split_typed};

/// Name of the machine-readable part in error messages.
const PART: &str = "message/delivery-status";

/// What makes a `multipart/report` a DSN.
const KIND: Kind = Kind {
    report_types: &["delivery-status", "global-delivery-status"],
    part_types: &[PART, "message/global-delivery-status"],
    part_name: PART,
};

/// Per-message fields with their own member in [`DeliveryReport`].
const KNOWN_MESSAGE_FIELDS: &[&str] = &[
    "Original-Envelope-Id",
    "Reporting-MTA",
    "DSN-Gateway",
    "Received-From-MTA",
    "Arrival-Date",
];

/// Per-recipient fields with their own member in [`RecipientReport`].
const KNOWN_RECIPIENT_FIELDS: &[&str] = &[
    "Original-Recipient",
    "Final-Recipient",
    "Action",
    "Status",
    "Remote-MTA",
    "Diagnostic-Code",
    "Last-Attempt-Date",
    "Final-Log-ID",
    "Will-Retry-Until",
];

/// The SMTP reply code assumed when a Diagnostic-Code has none.
pub const DEFAULT_DIAGNOSTIC_CODE: u16 = 550;

/// A parsed delivery status notification.
///
/// Dates are kept as the strings written in the report (trimmed and
/// unfolded), not reformatted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryReport {
    /// `Reporting-MTA` (required): the MTA that made the report.
    pub reporting_mta: Mta,
    /// `Original-Envelope-Id` (the ENVID given at submission).
    pub original_envelope_id: Option<String>,
    /// `DSN-Gateway`, when the report was translated from another system.
    pub dsn_gateway: Option<Mta>,
    /// `Received-From-MTA`: where the reporting MTA got the message.
    pub received_from_mta: Option<Mta>,
    /// `Arrival-Date` at the reporting MTA, as written.
    pub arrival_date: Option<String>,
    /// Other per-message fields, keyed by lowercased name.
    pub extensions: BTreeMap<String, Vec<String>>,
    /// One entry per per-recipient block, in order (at least one).
    pub recipients: Vec<RecipientReport>,
    /// The returned original (`message/rfc822`, `text/rfc822-headers`,
    /// `message/global` or `message/global-headers` part), CRLF turned into
    /// LF, invalid UTF-8 replaced with U+FFFD.
    pub original_message: Option<String>,
    /// The supplemental trace object found in the returned original, if
    /// any (see [`crate::supplemental_trace`]).
    pub supplemental_trace: Option<Map<String, Value>>,
}

/// One per-recipient block of a DSN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientReport {
    /// `Final-Recipient` (required).
    pub final_recipient: TypedAddress,
    /// `Original-Recipient` (the ORCPT given at submission).
    pub original_recipient: Option<TypedAddress>,
    /// `Action` (required), lowercased: `failed`, `delayed`, `delivered`,
    /// `relayed` or `expanded`.
    pub action: String,
    /// `Status` (required): the enhanced status code, e.g. `5.1.1`, without
    /// any trailing comment.
    pub status: String,
    /// `Remote-MTA`: the MTA that gave the diagnostic.
    pub remote_mta: Option<Mta>,
    /// `Diagnostic-Code`.
    pub diagnostic_code: Option<DiagnosticCode>,
    /// `Last-Attempt-Date`, as written.
    pub last_attempt_date: Option<String>,
    /// `Final-Log-ID`.
    pub final_log_id: Option<String>,
    /// `Will-Retry-Until` (for `delayed`), as written.
    pub will_retry_until: Option<String>,
    /// Other per-recipient fields (e.g. `X-Postfix-Sender`), keyed by
    /// lowercased name.
    pub extensions: BTreeMap<String, Vec<String>>,
}

/// A parsed `Diagnostic-Code: smtp; 550 5.1.1 User unknown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiagnosticCode {
    /// The diagnostic type, lowercased (`smtp`, `x-postfix`, ...); empty
    /// when the value has no `type;` prefix.
    #[serde(rename = "type")]
    pub diagnostic_type: String,
    /// The reply code at the start of the text (`550` here); when there is
    /// none, [`DEFAULT_DIAGNOSTIC_CODE`].
    pub code: u16,
    /// The text after the reply code (`5.1.1 User unknown` here); the whole
    /// diagnostic when it starts with no reply code.
    pub text: String,
}

impl DiagnosticCode {
    /// Parses the value of a Diagnostic-Code field.
    pub(crate) fn parse(value: &str) -> DiagnosticCode {
        let (diagnostic_type, rest) = split_typed(value, "");
        match reply_code(&rest) {
            Some(code) => DiagnosticCode {
                diagnostic_type,
                code,
                text: rest[3..].trim_start_matches('-').trim().to_owned(),
            },
            None => DiagnosticCode {
                diagnostic_type,
                code: DEFAULT_DIAGNOSTIC_CODE,
                text: rest,
            },
        }
    }
}

/// A reply code (`[2-5]dd`) at the start of `text`, followed by the end,
/// a space or a `-`.
fn reply_code(text: &str) -> Option<u16> {
    let bytes = text.as_bytes();
    let digits = bytes.get(..3)?;
    let well_formed = matches!(digits[0], b'2'..=b'5')
        && digits[1..].iter().all(u8::is_ascii_digit)
        && matches!(bytes.get(3), None | Some(b' ' | b'\t' | b'-'));
    well_formed.then(|| {
        digits
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'))
    })
}

/// The fields of one `OOB` log record: a failed recipient of a DSN with
/// the report's per-message context. See [`DeliveryReport::oob_records`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OobRecord {
    /// The recipient the bounce is about: Original-Recipient, else
    /// Final-Recipient, without the type prefix.
    pub recipient: String,
    /// The Action (always `failed` from [`DeliveryReport::oob_records`]).
    pub action: String,
    /// The Status: the record's `response.enhanced_code`.
    pub status: String,
    /// The Diagnostic-Code's reply code (default 550): the record's
    /// `response.code`.
    pub code: u16,
    /// The Diagnostic-Code's text (empty when there is none): the record's
    /// `response.content`.
    pub content: String,
    /// The Reporting-MTA: the record's `peer_address.name` is its name.
    pub reporting_mta: Mta,
    /// The Remote-MTA, if given.
    pub remote_mta: Option<Mta>,
    /// The per-message Arrival-Date, as written.
    pub arrival_date: Option<String>,
    /// The Last-Attempt-Date, as written: the record's timestamp when
    /// present (else the time of reception).
    pub last_attempt_date: Option<String>,
}

impl DeliveryReport {
    /// The recipients whose Action is `failed`.
    pub fn failed(&self) -> impl Iterator<Item = &RecipientReport> + '_ {
        self.recipients.iter().filter(|r| r.action == "failed")
    }

    /// One [`OobRecord`] per failed recipient, in report order.
    pub fn oob_records(&self) -> impl Iterator<Item = OobRecord> + '_ {
        self.failed().map(|r| OobRecord {
            recipient: r.recipient().to_owned(),
            action: r.action.clone(),
            status: r.status.clone(),
            code: r
                .diagnostic_code
                .as_ref()
                .map_or(DEFAULT_DIAGNOSTIC_CODE, |d| d.code),
            content: r
                .diagnostic_code
                .as_ref()
                .map(|d| d.text.clone())
                .unwrap_or_default(),
            reporting_mta: self.reporting_mta.clone(),
            remote_mta: r.remote_mta.clone(),
            arrival_date: self.arrival_date.clone(),
            last_attempt_date: r.last_attempt_date.clone(),
        })
    }
}

impl RecipientReport {
    /// The address the report is about: Original-Recipient, else
    /// Final-Recipient, without the type prefix.
    pub fn recipient(&self) -> &str {
        self.original_recipient
            .as_ref()
            .unwrap_or(&self.final_recipient)
            .address
            .as_str()
    }
}

/// Parses an RFC 3464 delivery status notification (also RFC 6533
/// `message/global-delivery-status`).
///
/// `Ok(None)` when `message` is not one: not a `multipart/report`, or one
/// whose report-type is not `delivery-status`/`global-delivery-status` and
/// that has no `message/(global-)delivery-status` part. `Err` when it
/// claims to be one but is malformed: broken MIME, no status part, a status
/// part that is not UTF-8 or not made of header fields, no `Reporting-MTA`,
/// no per-recipient block, or a per-recipient block without
/// `Final-Recipient`, `Action` or `Status`.
pub fn parse_dsn(message: &[u8]) -> Result<Option<DeliveryReport>, ReportError> {
    let Some(parsed) = mime::parse_for_report(message, &KIND)? else {
        return Ok(None);
    };
    let Some(report) = mime::find_report(&parsed, message, &KIND)? else {
        return Ok(None);
    };
    let text = report.status_text(PART)?;
    let mut blocks = fields::parse_blocks(&text, PART)?.into_iter();
    let per_message = blocks.next().unwrap_or_default();
    let reporting_mta = fields::first(&per_message, "Reporting-MTA")
        .map(Mta::parse)
        .ok_or_else(|| ReportError::MissingField {
            part: format!("{PART} part, per-message block"),
            field: "Reporting-MTA",
        })?;
    let recipients = blocks
        .enumerate()
        .map(|(i, block)| parse_recipient(&block, i + 1))
        .collect::<Result<Vec<_>, _>>()?;
    if recipients.is_empty() {
        return Err(ReportError::NoRecipients(PART));
    }

    let optional = |name: &str| fields::first(&per_message, name).map(str::to_owned);
    Ok(Some(DeliveryReport {
        reporting_mta,
        original_envelope_id: optional("Original-Envelope-Id"),
        dsn_gateway: fields::first(&per_message, "DSN-Gateway").map(Mta::parse),
        received_from_mta: fields::first(&per_message, "Received-From-MTA").map(Mta::parse),
        arrival_date: optional("Arrival-Date"),
        extensions: extensions(&per_message, KNOWN_MESSAGE_FIELDS),
        recipients,
        original_message: report.originals().next().map(|b| mime::lossy_lf(&b)),
        supplemental_trace: report.originals().find_map(|b| trace::trace_in_headers(&b)),
    }))
}

/// Parses the `number`th (1-based) per-recipient block.
fn parse_recipient(block: &[Field], number: usize) -> Result<RecipientReport, ReportError> {
    let required = |name: &'static str| {
        fields::first(block, name).ok_or_else(|| ReportError::MissingField {
            part: format!("{PART} part, recipient block {number}"),
            field: name,
        })
    };
    let final_recipient = TypedAddress::parse(required("Final-Recipient")?);
    let action = first_word(required("Action")?).to_ascii_lowercase();
    let status = first_word(required("Status")?).to_owned();
    let optional = |name: &str| fields::first(block, name).map(str::to_owned);
    Ok(RecipientReport {
        final_recipient,
        original_recipient: fields::first(block, "Original-Recipient").map(TypedAddress::parse),
        action,
        status,
        remote_mta: fields::first(block, "Remote-MTA").map(Mta::parse),
        diagnostic_code: fields::first(block, "Diagnostic-Code").map(DiagnosticCode::parse),
        last_attempt_date: optional("Last-Attempt-Date"),
        final_log_id: optional("Final-Log-ID"),
        will_retry_until: optional("Will-Retry-Until"),
        extensions: extensions(block, KNOWN_RECIPIENT_FIELDS),
    })
}

/// The first whitespace-separated word of `value` (drops comments such as
/// `5.0.0 (permanent failure)`).
fn first_word(value: &str) -> &str {
    value.split_whitespace().next().unwrap_or("")
}

/// The fields of `block` not in `known`, keyed by lowercased name.
fn extensions(block: &[Field], known: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for field in block.iter().filter(|f| !fields::is_one_of(&f.name, known)) {
        map.entry(field.name.to_ascii_lowercase())
            .or_default()
            .push(field.value.clone());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_codes() {
        let d = DiagnosticCode::parse("smtp; 550 5.1.1 <a@b>: Recipient address rejected");
        assert_eq!(d.diagnostic_type, "smtp");
        assert_eq!(d.code, 550);
        assert_eq!(d.text, "5.1.1 <a@b>: Recipient address rejected");

        let d = DiagnosticCode::parse("SMTP; 452-4.2.2 The mailbox is full");
        assert_eq!((d.diagnostic_type.as_str(), d.code), ("smtp", 452));
        assert_eq!(d.text, "4.2.2 The mailbox is full");

        let d = DiagnosticCode::parse("X-Postfix; host mx said: 554 no");
        assert_eq!((d.diagnostic_type.as_str(), d.code), ("x-postfix", 550));
        assert_eq!(d.text, "host mx said: 554 no");

        let d = DiagnosticCode::parse("smtp; 421");
        assert_eq!((d.code, d.text.as_str()), (421, ""));

        let d = DiagnosticCode::parse("no type 600 x");
        assert_eq!((d.diagnostic_type.as_str(), d.code), ("", 550));
        assert_eq!(d.text, "no type 600 x");

        assert_eq!(reply_code("5501"), None);
        assert_eq!(reply_code("650 x"), None);
        assert_eq!(reply_code("55"), None);
        assert_eq!(reply_code("2a0 x"), None);
        assert_eq!(reply_code("€50 x"), None);
    }

    #[test]
    fn first_word_drops_comments() {
        assert_eq!(first_word("5.0.0 (permanent failure)"), "5.0.0");
        assert_eq!(first_word(""), "");
    }
}
