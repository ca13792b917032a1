//! RFC 5965 Abuse Reporting Format (ARF) feedback reports, with the
//! RFC 6591 authentication-failure fields kept as extensions.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{ReportError, excerpt};
use crate::fields::{self, Field};
use crate::mime::{self, Kind};
use crate::trace;
use crate::typed::{Mta, strip_angle_brackets};

/// Name of the machine-readable part in error messages.
const PART: &str = "message/feedback-report";

/// What makes a `multipart/report` an ARF report.
const KIND: Kind = Kind {
    report_types: &["feedback-report"],
    part_types: &[PART],
    part_name: PART,
};

/// Fields that have their own member in [`FeedbackReport`]; every other
/// field goes to [`FeedbackReport::extensions`].
const KNOWN_FIELDS: &[&str] = &[
    "Feedback-Type",
    "User-Agent",
    "Version",
    "Arrival-Date",
    "Received-Date",
    "Incidents",
    "Original-Envelope-Id",
    "Original-Mail-From",
    "Reporting-MTA",
    "Source-IP",
    "Authentication-Results",
    "Original-Rcpt-To",
    "Reported-Domain",
    "Reported-URI",
];

/// A parsed ARF feedback report: the fields of its
/// `message/feedback-report` part, the returned original and the
/// supplemental trace found in it.
///
/// Serialized with KumoMTA's field names, so log pipelines built for
/// KumoMTA's `feedback_report` work unchanged. Values are kept as written
/// (trimmed and unfolded), except where a member says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackReport {
    /// `Feedback-Type`, lowercased: `abuse`, `fraud`, `virus`, `other`,
    /// `not-spam`, `auth-failure`, or any other token.
    pub feedback_type: String,
    /// `User-Agent`: the software that made the report.
    pub user_agent: String,
    /// `Version` of the format, as written (`1`).
    pub version: String,
    /// `Arrival-Date`, else the older `Received-Date`: the date string as
    /// written (not reformatted).
    pub arrival_date: Option<String>,
    /// `Incidents`: how many incidents the report stands for.
    pub incidents: Option<u32>,
    /// `Original-Envelope-Id`.
    pub original_envelope_id: Option<String>,
    /// `Original-Mail-From`, without angle brackets.
    pub original_mail_from: Option<String>,
    /// `Reporting-MTA`.
    pub reporting_mta: Option<Mta>,
    /// `Source-IP`, as written.
    pub source_ip: Option<String>,
    /// Every `Authentication-Results` field.
    pub authentication_results: Vec<String>,
    /// Every `Original-Rcpt-To` field, without angle brackets. The name's
    /// spelling (`rcpto`) is KumoMTA's and is kept on purpose.
    pub original_rcpto_to: Vec<String>,
    /// Every `Reported-Domain` field.
    pub reported_domain: Vec<String>,
    /// Every `Reported-URI` field.
    pub reported_uri: Vec<String>,
    /// Every other field (e.g. RFC 6591's `Auth-Failure`, `DKIM-Domain`,
    /// or `X-` fields), keyed by lowercased name, values in order.
    pub extensions: BTreeMap<String, Vec<String>>,
    /// The returned original (`message/rfc822` or `text/rfc822-headers`
    /// part, also `message/global(-headers)`), with CRLF turned into LF;
    /// invalid UTF-8 is replaced with U+FFFD.
    pub original_message: Option<String>,
    /// The supplemental trace object found in the original (see
    /// [`crate::supplemental_trace`]), without its marker.
    pub supplemental_trace: Option<Map<String, Value>>,
}

/// Parses an RFC 5965 feedback report.
///
/// `Ok(None)` when `message` is not one: not a `multipart/report`, or one
/// whose report-type is not `feedback-report` and that has no
/// `message/feedback-report` part. `Err` when it claims to be one but is
/// malformed: broken MIME (no boundary, an unused boundary, no closing
/// boundary), no `message/feedback-report` part, a part that is not UTF-8
/// or not made of header fields, a missing `Feedback-Type`, `User-Agent` or
/// `Version`, or a non-numeric `Incidents`.
pub fn parse_arf(message: &[u8]) -> Result<Option<FeedbackReport>, ReportError> {
    let Some(parsed) = mime::parse_for_report(message, &KIND)? else {
        return Ok(None);
    };
    let Some(report) = mime::find_report(&parsed, message, &KIND)? else {
        return Ok(None);
    };
    let text = report.status_text(PART)?;
    // RFC 5965 has one block; blank lines inside it are tolerated.
    let block: Vec<Field> = fields::parse_blocks(&text, PART)?
        .into_iter()
        .flatten()
        .collect();

    let required = |name: &'static str| {
        fields::first(&block, name)
            .map(str::to_owned)
            .ok_or_else(|| ReportError::MissingField {
                part: format!("{PART} part"),
                field: name,
            })
    };
    let optional = |name: &str| fields::first(&block, name).map(str::to_owned);
    let every = |name: &'static str| {
        fields::all(&block, name)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    let feedback_type = required("Feedback-Type")?.to_ascii_lowercase();
    let user_agent = required("User-Agent")?;
    let version = required("Version")?;
    let incidents = match fields::first(&block, "Incidents") {
        None => None,
        Some(value) => Some(
            value
                .parse::<u32>()
                .map_err(|_| ReportError::InvalidValue {
                    part: format!("{PART} part"),
                    field: "Incidents",
                    value: excerpt(value),
                })?,
        ),
    };

    let mut extensions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for field in block
        .iter()
        .filter(|f| !fields::is_one_of(&f.name, KNOWN_FIELDS))
    {
        extensions
            .entry(field.name.to_ascii_lowercase())
            .or_default()
            .push(field.value.clone());
    }

    let original_message = report.originals().next().map(|b| mime::lossy_lf(&b));
    let supplemental_trace = report.originals().find_map(|b| trace::trace_in_headers(&b));

    Ok(Some(FeedbackReport {
        feedback_type,
        user_agent,
        version,
        arrival_date: optional("Arrival-Date").or_else(|| optional("Received-Date")),
        incidents,
        original_envelope_id: optional("Original-Envelope-Id"),
        original_mail_from: optional("Original-Mail-From")
            .map(|a| strip_angle_brackets(&a).to_owned()),
        reporting_mta: fields::first(&block, "Reporting-MTA").map(Mta::parse),
        source_ip: optional("Source-IP"),
        authentication_results: every("Authentication-Results"),
        original_rcpto_to: fields::all(&block, "Original-Rcpt-To")
            .map(|a| strip_angle_brackets(a).to_owned())
            .collect(),
        reported_domain: every("Reported-Domain"),
        reported_uri: every("Reported-URI"),
        extensions,
        original_message,
        supplemental_trace,
    }))
}
