//! RFC 3464 delivery status notifications to the envelope sender, built as bytes.
//!
//! Never for a null sender and never for a message that is itself a delivery report,
//! so a bounce can never loop.

use chrono::{DateTime, Utc};
use postern_smtp::reply::Reply;

/// What became of one recipient that the report is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedRecipient {
    /// The recipient address.
    pub recipient: String,
    /// The last reply (the remote's, or a synthetic one).
    pub reply: Reply,
    /// The remote host that gave it, when one did.
    pub remote_mta: Option<String>,
    /// When the last attempt was.
    pub last_attempt: DateTime<Utc>,
}

/// The message a report is about.
#[derive(Clone, Copy, Debug)]
pub struct Original<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its envelope sender ("" for the null sender).
    pub sender: &'a str,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// Its bytes; the report returns the header section only.
    pub data: &'a [u8],
}

/// A report ready to queue: from the null sender to `recipient`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dsn {
    /// The original envelope sender.
    pub recipient: String,
    /// The whole report message.
    pub data: Vec<u8>,
}

/// Builds the report, or `None` when none may be sent: the original has the null
/// sender, is itself a delivery report, or nothing failed.
pub fn build_dsn(
    reporting_mta: &str,
    original: Original<'_>,
    failed: &[FailedRecipient],
    now: DateTime<Utc>,
    report_id: &str,
) -> Option<Dsn> {
    if original.sender.is_empty() || failed.is_empty() || is_delivery_report(original.data) {
        return None;
    }
    let boundary = format!("{report_id}/{reporting_mta}");
    let date = now.to_rfc2822();
    let mut out = String::new();
    out.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n\
         To: <{sender}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {date}\r\n\
         Message-ID: <{report_id}@{reporting_mta}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         This is the mail system at {reporting_mta}.\r\n\
         \r\n\
         Your message {id} could not be delivered to {count}:\r\n\
         \r\n",
        sender = original.sender,
        id = original.id,
        count = if failed.len() == 1 {
            "one recipient".to_owned()
        } else {
            format!("{} recipients", failed.len())
        },
    ));
    for f in failed {
        out.push_str(&format!(
            "<{}>: {}\r\n",
            f.recipient,
            one_line(&f.reply.content())
        ));
    }
    out.push_str(&format!(
        "\r\n--{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {reporting_mta}\r\n\
         X-Postern-Queue-ID: {id}\r\n\
         Arrival-Date: {arrival}\r\n",
        id = original.id,
        arrival = original.received_at.to_rfc2822(),
    ));
    for f in failed {
        let status = f
            .reply
            .enhanced
            .map_or_else(|| format!("{}.0.0", f.reply.code / 100), |e| e.to_string());
        out.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {status}\r\n",
            f.recipient
        ));
        if let Some(mta) = &f.remote_mta {
            out.push_str(&format!("Remote-MTA: dns; {mta}\r\n"));
        }
        out.push_str(&format!(
            "Diagnostic-Code: smtp; {} {}\r\nLast-Attempt-Date: {}\r\n",
            f.reply.code,
            one_line(&f.reply.content()),
            f.last_attempt.to_rfc2822()
        ));
    }
    out.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut data = out.into_bytes();
    data.extend_from_slice(header_section(original.data));
    if !data.ends_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Some(Dsn {
        recipient: original.sender.to_owned(),
        data,
    })
}

/// The header section of a message, without the blank line.
fn header_section(data: &[u8]) -> &[u8] {
    if data.starts_with(b"\r\n") {
        return &[];
    }
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data, |end| &data[..end + 2])
}

/// Whether the message is a `multipart/report; report-type=delivery-status`.
pub fn is_delivery_report(data: &[u8]) -> bool {
    let headers = String::from_utf8_lossy(header_section(data));
    let unfolded = headers.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded.split("\r\n").any(|line| {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        let value = value.to_ascii_lowercase().replace([' ', '\t', '"'], "");
        name.trim().eq_ignore_ascii_case("content-type")
            && value.starts_with("multipart/report")
            && value.contains("report-type=delivery-status")
    })
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    const MESSAGE: &[u8] =
        b"From: a@send.example\r\nTo: b@dest.example\r\nSubject: hi\r\n\r\nbody\r\n";

    fn failed() -> Vec<FailedRecipient> {
        vec![
            FailedRecipient {
                recipient: "b@dest.example".into(),
                reply: Reply::new(550, "5.1.1", "<b@dest.example> no such user"),
                remote_mta: Some("mx.dest.example".into()),
                last_attempt: at(10),
            },
            FailedRecipient {
                recipient: "c@dest.example".into(),
                reply: Reply::new(421, "4.4.2", "timed out"),
                remote_mta: None,
                last_attempt: at(20),
            },
        ]
    }

    fn original<'a>(sender: &'a str, data: &'a [u8]) -> Original<'a> {
        Original {
            id: "0190aaaa",
            sender,
            received_at: at(0),
            data,
        }
    }

    #[test]
    fn a_report_the_reports_parser_reads_back() {
        let dsn = build_dsn(
            "mx.postern.test",
            original("a@send.example", MESSAGE),
            &failed(),
            at(30),
            "r1",
        )
        .unwrap();
        assert_eq!(dsn.recipient, "a@send.example");
        let report = postern_reports::parse_dsn(&dsn.data).unwrap().unwrap();
        let records: Vec<_> = report.oob_records().collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].recipient, "b@dest.example");
        assert_eq!(records[0].status, "5.1.1");
        assert_eq!(records[0].code, 550);
        assert_eq!(records[1].status, "4.4.2");
        assert_eq!(records[0].reporting_mta.name, "mx.postern.test");
        let text = String::from_utf8(dsn.data.clone()).unwrap();
        assert!(
            text.contains("Remote-MTA: dns; mx.dest.example\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Subject: hi\r\n"),
            "the original headers are returned"
        );
        assert!(
            !text.contains("body\r\n"),
            "the original body is not returned"
        );
        assert!(
            is_delivery_report(&dsn.data),
            "the report is recognised as one"
        );
    }

    #[test]
    fn never_to_the_null_sender_never_about_a_report() {
        assert_eq!(
            build_dsn("mx", original("", MESSAGE), &failed(), at(30), "r"),
            None
        );
        let report = build_dsn("mx", original("a@x", MESSAGE), &failed(), at(30), "r")
            .unwrap()
            .data;
        assert_eq!(
            build_dsn("mx", original("a@x", &report), &failed(), at(30), "r2"),
            None,
            "a report about a report would loop"
        );
        assert_eq!(
            build_dsn("mx", original("a@x", MESSAGE), &[], at(30), "r"),
            None
        );
    }

    #[test]
    fn report_detection_reads_folded_headers() {
        assert!(is_delivery_report(
            b"Subject: x\r\nContent-Type: multipart/report;\r\n\treport-type=\"delivery-status\"; boundary=b\r\n\r\n"
        ));
        assert!(!is_delivery_report(
            b"Content-Type: multipart/report; report-type=feedback-report\r\n\r\n"
        ));
        assert!(!is_delivery_report(
            b"Subject: x\r\n\r\nContent-Type: multipart/report; report-type=delivery-status\r\n"
        ));
    }
}
