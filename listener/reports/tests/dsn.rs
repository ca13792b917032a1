//! Delivery status notifications from the corpus: exact parsed fields.

mod common;

use common::{kumoref_trace, load, original_headers, original_message};
use postern_reports::{DeliveryReport, parse_arf, parse_dsn, supplemental_trace};
use serde_json::json;

fn dsn(name: &str) -> DeliveryReport {
    parse_dsn(&load(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .unwrap_or_else(|| panic!("{name}: not recognised as a DSN"))
}

/// The report serialized, without the two members checked on their own.
fn fields(report: &DeliveryReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap();
    let object = value.as_object_mut().unwrap();
    object.remove("original_message");
    object.remove("supplemental_trace");
    value
}

#[test]
fn several_recipients_mixed_actions() {
    let report = dsn("dsn-multi-recipient.eml");
    assert_eq!(
        fields(&report),
        json!({
            "reporting_mta": {"mta_type": "dns", "name": "mx.example.net"},
            "original_envelope_id": "c1-0001",
            "dsn_gateway": null,
            "received_from_mta": {"mta_type": "dns", "name": "relay.postern.example"},
            "arrival_date": "Thu, 26 Nov 2026 09:15:03 +0000",
            "extensions": {"x-postfix-queue-id": ["4F2A1"]},
            "recipients": [
                {
                    "final_recipient": {"address_type": "rfc822", "address": "user@example.com"},
                    "original_recipient": {"address_type": "rfc822", "address": "User@Example.com"},
                    "action": "failed",
                    "status": "5.1.1",
                    "remote_mta": {"mta_type": "dns", "name": "mail-in.example.com"},
                    "diagnostic_code": {
                        "type": "smtp",
                        "code": 550,
                        "text": "5.1.1 <user@example.com>: Recipient address rejected: User unknown in virtual mailbox table"
                    },
                    "last_attempt_date": "Thu, 26 Nov 2026 09:20:09 +0000",
                    "final_log_id": null,
                    "will_retry_until": null,
                    "extensions": {}
                },
                {
                    "final_recipient": {"address_type": "rfc822", "address": "slow@example.com"},
                    "original_recipient": null,
                    "action": "delayed",
                    "status": "4.2.2",
                    "remote_mta": {"mta_type": "dns", "name": "mail-in.example.com"},
                    "diagnostic_code": {
                        "type": "smtp",
                        "code": 452,
                        "text": "4.2.2 The email account that you tried to reach is over quota"
                    },
                    "last_attempt_date": "Thu, 26 Nov 2026 09:20:09 +0000",
                    "final_log_id": null,
                    "will_retry_until": "Sat, 28 Nov 2026 09:15:03 +0000",
                    "extensions": {}
                },
                {
                    "final_recipient": {"address_type": "rfc822", "address": "ok@example.com"},
                    "original_recipient": null,
                    "action": "delivered",
                    "status": "2.0.0",
                    "remote_mta": {"mta_type": "dns", "name": "mail-in.example.com"},
                    "diagnostic_code": {"type": "smtp", "code": 250, "text": "2.0.0 Ok: queued as 9C1D2"},
                    "last_attempt_date": null,
                    "final_log_id": null,
                    "will_retry_until": null,
                    "extensions": {}
                },
                {
                    "final_recipient": {"address_type": "rfc822", "address": "gone@example.org"},
                    "original_recipient": null,
                    "action": "failed",
                    "status": "5.0.0",
                    "remote_mta": null,
                    "diagnostic_code": null,
                    "last_attempt_date": "Thu, 26 Nov 2026 09:20:10 +0000",
                    "final_log_id": null,
                    "will_retry_until": null,
                    "extensions": {"x-postfix-sender": ["rfc822; news@sender.example.org"]}
                }
            ]
        })
    );
    assert_eq!(
        report.original_message.as_deref(),
        Some(original_message().as_str())
    );
    assert_eq!(
        report.supplemental_trace.map(serde_json::Value::Object),
        Some(kumoref_trace())
    );
}

#[test]
fn oob_records_are_the_failed_recipients_only() {
    let report = dsn("dsn-multi-recipient.eml");
    let failed: Vec<&str> = report.failed().map(|r| r.recipient()).collect();
    assert_eq!(failed, ["User@Example.com", "gone@example.org"]);
    let records = serde_json::to_value(report.oob_records().collect::<Vec<_>>()).unwrap();
    assert_eq!(
        records,
        json!([
            {
                "recipient": "User@Example.com",
                "action": "failed",
                "status": "5.1.1",
                "code": 550,
                "content": "5.1.1 <user@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
                "reporting_mta": {"mta_type": "dns", "name": "mx.example.net"},
                "remote_mta": {"mta_type": "dns", "name": "mail-in.example.com"},
                "arrival_date": "Thu, 26 Nov 2026 09:15:03 +0000",
                "last_attempt_date": "Thu, 26 Nov 2026 09:20:09 +0000"
            },
            {
                "recipient": "gone@example.org",
                "action": "failed",
                "status": "5.0.0",
                "code": 550,
                "content": "",
                "reporting_mta": {"mta_type": "dns", "name": "mx.example.net"},
                "remote_mta": null,
                "arrival_date": "Thu, 26 Nov 2026 09:15:03 +0000",
                "last_attempt_date": "Thu, 26 Nov 2026 09:20:10 +0000"
            }
        ])
    );
}

#[test]
fn headers_only_original_and_non_smtp_diagnostic() {
    let report = dsn("dsn-headers-only.eml");
    assert_eq!(
        fields(&report),
        json!({
            "reporting_mta": {"mta_type": "dns", "name": "mail.example.com"},
            "original_envelope_id": null,
            "dsn_gateway": null,
            "received_from_mta": null,
            "arrival_date": "26 Nov 2026 10:01:00 -0500",
            "extensions": {},
            "recipients": [{
                "final_recipient": {"address_type": "rfc822", "address": "nobody@mail.example.com"},
                "original_recipient": null,
                "action": "failed",
                "status": "5.0.0",
                "remote_mta": null,
                "diagnostic_code": {
                    "type": "x-postfix",
                    "code": 550,
                    "text": "host mx[192.0.2.9] said: mailbox disabled"
                },
                "last_attempt_date": null,
                "final_log_id": null,
                "will_retry_until": null,
                "extensions": {}
            }]
        })
    );
    assert_eq!(
        report.original_message.as_deref(),
        Some(original_headers().as_str())
    );
    assert_eq!(
        report
            .supplemental_trace
            .clone()
            .map(serde_json::Value::Object),
        Some(kumoref_trace())
    );
    let oob: Vec<_> = report.oob_records().collect();
    assert_eq!(oob.len(), 1);
    assert_eq!(oob[0].recipient, "nobody@mail.example.com");
    assert_eq!(
        (oob[0].code, oob[0].content.as_str()),
        (550, "host mx[192.0.2.9] said: mailbox disabled")
    );
    assert_eq!(oob[0].last_attempt_date, None);
}

#[test]
fn global_delivery_status_with_utf8_addresses() {
    let report = dsn("dsn-global.eml");
    assert_eq!(
        fields(&report),
        json!({
            "reporting_mta": {"mta_type": "dns", "name": "mx.παράδειγμα.δοκιμή"},
            "original_envelope_id": null,
            "dsn_gateway": null,
            "received_from_mta": null,
            "arrival_date": "Thu, 26 Nov 2026 11:00:00 +0100",
            "extensions": {},
            "recipients": [
                {
                    "final_recipient": {"address_type": "utf-8", "address": "χρήστης@παράδειγμα.δοκιμή"},
                    "original_recipient": {"address_type": "utf-8", "address": "δοκιμή@παράδειγμα.δοκιμή"},
                    "action": "failed",
                    "status": "5.1.10",
                    "remote_mta": null,
                    "diagnostic_code": {"type": "smtp", "code": 550, "text": "5.1.10 Ο παραλήπτης δεν υπάρχει"},
                    "last_attempt_date": "Thu, 26 Nov 2026 11:00:05 +0100",
                    "final_log_id": null,
                    "will_retry_until": null,
                    "extensions": {}
                },
                {
                    "final_recipient": {"address_type": "utf-8", "address": "müller@beispiel.de"},
                    "original_recipient": null,
                    "action": "delivered",
                    "status": "2.0.0",
                    "remote_mta": null,
                    "diagnostic_code": null,
                    "last_attempt_date": null,
                    "final_log_id": null,
                    "will_retry_until": null,
                    "extensions": {}
                }
            ]
        })
    );
    assert_eq!(
        report.original_message.as_deref(),
        Some(
            format!(
                "{}From: =?utf-8?q?Caf=C3=A9?= <café@sender.example.org>\nTo: δοκιμή@παράδειγμα.δοκιμή\nSubject: Γεια σου\nMessage-ID: <c1-0002@sender.example.org>\n",
                common::KUMOREF_HEADER
            )
            .as_str()
        )
    );
    assert_eq!(
        report
            .supplemental_trace
            .clone()
            .map(serde_json::Value::Object),
        Some(kumoref_trace())
    );
    let oob: Vec<_> = report.oob_records().collect();
    assert_eq!(oob.len(), 1);
    assert_eq!(oob[0].recipient, "δοκιμή@παράδειγμα.δοκιμή");
    assert_eq!(oob[0].status, "5.1.10");
}

#[test]
fn base64_encoded_status_and_original() {
    let report = dsn("dsn-base64-parts.eml");
    assert_eq!(
        fields(&report),
        json!({
            "reporting_mta": {"mta_type": "dns", "name": "out.example.com"},
            "original_envelope_id": null,
            "dsn_gateway": null,
            "received_from_mta": null,
            "arrival_date": null,
            "extensions": {},
            "recipients": [{
                "final_recipient": {"address_type": "rfc822", "address": "b64@example.com"},
                "original_recipient": null,
                "action": "failed",
                "status": "5.7.1",
                "remote_mta": null,
                "diagnostic_code": {"type": "smtp", "code": 554, "text": "5.7.1 Message rejected as spam"},
                "last_attempt_date": null,
                "final_log_id": null,
                "will_retry_until": null,
                "extensions": {}
            }]
        })
    );
    assert_eq!(
        report.original_message.as_deref(),
        Some(original_message().as_str())
    );
    assert_eq!(
        report.supplemental_trace.map(serde_json::Value::Object),
        Some(kumoref_trace())
    );
}

#[test]
fn bounces_that_are_not_reports_are_none() {
    for name in [
        "bounce-not-report.eml",
        "mixed-not-report.eml",
        "garbage.eml",
    ] {
        let bytes = load(name);
        assert_eq!(parse_dsn(&bytes), Ok(None), "{name}");
        assert_eq!(parse_arf(&bytes), Ok(None), "{name}");
        assert_eq!(supplemental_trace(&bytes), None, "{name}");
    }
}

#[test]
fn a_dsn_is_not_an_arf() {
    for name in [
        "dsn-multi-recipient.eml",
        "dsn-headers-only.eml",
        "dsn-global.eml",
        "dsn-base64-parts.eml",
    ] {
        assert_eq!(parse_arf(&load(name)), Ok(None), "{name}");
    }
}

#[test]
fn supplemental_trace_of_a_whole_dsn() {
    for name in [
        "dsn-multi-recipient.eml",
        "dsn-headers-only.eml",
        "dsn-global.eml",
    ] {
        let trace = supplemental_trace(&load(name)).map(serde_json::Value::Object);
        assert_eq!(trace, Some(kumoref_trace()), "{name}");
    }
}
