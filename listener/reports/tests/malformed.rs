//! Malformed reports from the corpus: each is an error with a message that
//! says what is wrong, never a panic and never mistaken for "not a report".

mod common;

use common::load;
use postern_reports::{ReportError, parse_arf, parse_dsn};

fn arf_error(name: &str) -> ReportError {
    match parse_arf(&load(name)) {
        Err(e) => e,
        other => panic!("{name}: expected an error, got {other:?}"),
    }
}

fn dsn_error(name: &str) -> ReportError {
    match parse_dsn(&load(name)) {
        Err(e) => e,
        other => panic!("{name}: expected an error, got {other:?}"),
    }
}

#[test]
fn truncated_arf() {
    let e = arf_error("bad-arf-truncated.eml");
    assert_eq!(e, ReportError::Truncated("arf_abuse_1".into()));
    assert_eq!(
        e.to_string(),
        "multipart/report is truncated: closing boundary \"--arf_abuse_1--\" is missing"
    );
}

#[test]
fn arf_without_boundary() {
    let e = arf_error("bad-arf-no-boundary.eml");
    assert_eq!(e, ReportError::MissingBoundary);
    assert_eq!(
        e.to_string(),
        "multipart/report Content-Type has no boundary parameter"
    );
}

#[test]
fn dsn_whose_boundary_delimits_nothing() {
    let e = dsn_error("bad-dsn-boundary-not-found.eml");
    assert_eq!(e, ReportError::BoundaryNotFound("declared".into()));
    assert_eq!(
        e.to_string(),
        "multipart/report boundary \"declared\" delimits no body part"
    );
}

#[test]
fn arf_without_feedback_type() {
    let e = arf_error("bad-arf-missing-feedback-type.eml");
    assert_eq!(
        e.to_string(),
        "message/feedback-report part lacks Feedback-Type"
    );
}

#[test]
fn arf_without_feedback_report_part() {
    let e = arf_error("bad-arf-missing-part.eml");
    assert_eq!(e, ReportError::MissingPart("message/feedback-report"));
    assert_eq!(
        e.to_string(),
        "multipart/report lacks a message/feedback-report part"
    );
}

#[test]
fn dsn_without_reporting_mta() {
    let e = dsn_error("bad-dsn-missing-reporting-mta.eml");
    assert_eq!(
        e.to_string(),
        "message/delivery-status part, per-message block lacks Reporting-MTA"
    );
}

#[test]
fn dsn_recipient_without_status() {
    let e = dsn_error("bad-dsn-missing-status.eml");
    assert_eq!(
        e.to_string(),
        "message/delivery-status part, recipient block 2 lacks Status"
    );
}

#[test]
fn dsn_without_recipients() {
    let e = dsn_error("bad-dsn-no-recipients.eml");
    assert_eq!(e, ReportError::NoRecipients("message/delivery-status"));
    assert_eq!(
        e.to_string(),
        "message/delivery-status part has no per-recipient block"
    );
}

#[test]
fn dsn_with_non_utf8_garbage() {
    let e = dsn_error("bad-dsn-not-utf8.eml");
    assert_eq!(e, ReportError::NotUtf8("message/delivery-status"));
    assert_eq!(
        e.to_string(),
        "message/delivery-status part is not valid UTF-8"
    );
}

#[test]
fn malformed_reports_of_one_kind_are_none_for_the_other() {
    for name in [
        "bad-arf-truncated.eml",
        "bad-arf-no-boundary.eml",
        "bad-arf-missing-feedback-type.eml",
        "bad-arf-missing-part.eml",
    ] {
        assert_eq!(parse_dsn(&load(name)), Ok(None), "{name}");
    }
    for name in [
        "bad-dsn-boundary-not-found.eml",
        "bad-dsn-missing-reporting-mta.eml",
        "bad-dsn-missing-status.eml",
        "bad-dsn-no-recipients.eml",
        "bad-dsn-not-utf8.eml",
    ] {
        assert_eq!(parse_arf(&load(name)), Ok(None), "{name}");
    }
}

#[test]
fn inline_malformations() {
    let arf = |fields: &str| {
        let message = format!(
            "Content-Type: multipart/report; report-type=feedback-report; boundary=x\r\n\r\n--x\r\nContent-Type: message/feedback-report\r\n\r\n{fields}\r\n--x--\r\n"
        );
        parse_arf(message.as_bytes())
    };
    assert!(matches!(
        arf("Feedback-Type: abuse\r\nUser-Agent: a\r\nVersion: 1"),
        Ok(Some(_))
    ));
    assert_eq!(
        arf("Feedback-Type: abuse\r\nVersion: 1")
            .unwrap_err()
            .to_string(),
        "message/feedback-report part lacks User-Agent"
    );
    assert_eq!(
        arf("Feedback-Type: abuse\r\nUser-Agent: a")
            .unwrap_err()
            .to_string(),
        "message/feedback-report part lacks Version"
    );
    assert_eq!(
        arf("Feedback-Type: abuse\r\nUser-Agent: a\r\nVersion: 1\r\nIncidents: many")
            .unwrap_err()
            .to_string(),
        "message/feedback-report part: Incidents has an invalid value \"many\""
    );
    assert_eq!(
        arf("Feedback-Type: abuse\r\nthis is prose\r\nVersion: 1")
            .unwrap_err()
            .to_string(),
        "message/feedback-report part, line 2: not a header field: \"this is prose\""
    );
    // A report-type of another kind with no feedback part is not ARF.
    let other = "Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n\r\n--x\r\nContent-Type: message/disposition-notification\r\n\r\nFinal-Recipient: rfc822; a@b\r\n--x--\r\n";
    assert_eq!(parse_arf(other.as_bytes()), Ok(None));
    assert_eq!(parse_dsn(other.as_bytes()), Ok(None));
    // Empty input and header-less input.
    assert_eq!(parse_arf(b""), Ok(None));
    assert_eq!(parse_dsn(b"\r\n\r\n"), Ok(None));
}
