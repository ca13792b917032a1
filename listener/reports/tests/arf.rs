//! ARF feedback reports from the corpus: exact parsed fields.

mod common;

use common::{kumoref_trace, load, original_headers, original_message};
use postern_reports::{FeedbackReport, parse_arf, parse_dsn, supplemental_trace};
use serde_json::json;

fn arf(name: &str) -> FeedbackReport {
    parse_arf(&load(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .unwrap_or_else(|| panic!("{name}: not recognised as ARF"))
}

/// The report serialized, without `original_message` (checked on its own).
fn fields(report: &FeedbackReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap();
    value.as_object_mut().unwrap().remove("original_message");
    value
}

#[test]
fn abuse_with_every_standard_field() {
    let report = arf("arf-abuse.eml");
    assert_eq!(
        fields(&report),
        json!({
            "feedback_type": "abuse",
            "user_agent": "SomeGenerator/1.0",
            "version": "1",
            "arrival_date": "Thu, 26 Nov 2026 09:15:04 +0000",
            "incidents": 3,
            "original_envelope_id": "c1-0001",
            "original_mail_from": "news@sender.example.org",
            "reporting_mta": {"mta_type": "dns", "name": "fbl.mailbox.example"},
            "source_ip": "198.51.100.1",
            "authentication_results": [
                "mx.mailbox.example; spf=pass smtp.mailfrom=news@sender.example.org",
                "mx.mailbox.example; dkim=pass header.d=sender.example.org"
            ],
            "original_rcpto_to": ["user@example.com"],
            "reported_domain": ["sender.example.org"],
            "reported_uri": [
                "http://sender.example.org/offers",
                "mailto:unsubscribe@sender.example.org"
            ],
            "extensions": {},
            "supplemental_trace": kumoref_trace()
        })
    );
    assert_eq!(
        report.original_message.as_deref(),
        Some(original_message().as_str())
    );
}

#[test]
fn fraud_with_headers_only_and_received_date() {
    let report = arf("arf-fraud-headers.eml");
    assert_eq!(
        fields(&report),
        json!({
            "feedback_type": "fraud",
            "user_agent": "Mailbox-FBL/2.3",
            "version": "1",
            "arrival_date": "Thu, 26 Nov 2026 09:15:04 +0000",
            "incidents": null,
            "original_envelope_id": null,
            "original_mail_from": null,
            "reporting_mta": null,
            "source_ip": "2001:db8::25",
            "authentication_results": [],
            "original_rcpto_to": ["user@example.com", "second@example.com"],
            "reported_domain": [],
            "reported_uri": [],
            "extensions": {},
            "supplemental_trace": kumoref_trace()
        })
    );
    assert_eq!(
        report.original_message.as_deref(),
        Some(original_headers().as_str())
    );
}

#[test]
fn virus_without_a_marked_trace_header() {
    let report = arf("arf-virus.eml");
    assert_eq!(
        fields(&report),
        json!({
            "feedback_type": "virus",
            "user_agent": "AV-Scanner/9",
            "version": "1",
            "arrival_date": null,
            "incidents": null,
            "original_envelope_id": null,
            "original_mail_from": null,
            "reporting_mta": null,
            "source_ip": null,
            "authentication_results": [],
            "original_rcpto_to": [],
            "reported_domain": [],
            "reported_uri": [],
            "extensions": {},
            "supplemental_trace": null
        })
    );
    let original = report.original_message.unwrap();
    assert!(original.starts_with("X-Tracking: "), "{original}");
    assert!(original.ends_with("Subject: Virus\n\nbody\n"), "{original}");
    assert!(!original.contains('\r'));
}

#[test]
fn other_with_extension_fields() {
    let report = arf("arf-other-extensions.eml");
    assert_eq!(
        fields(&report),
        json!({
            "feedback_type": "other",
            "user_agent": "Mailbox-FBL/2.3",
            "version": "1",
            "arrival_date": "Thu, 26 Nov 2026 09:15:04 +0000",
            "incidents": null,
            "original_envelope_id": null,
            "original_mail_from": null,
            "reporting_mta": null,
            "source_ip": null,
            "authentication_results": [],
            "original_rcpto_to": [],
            "reported_domain": [],
            "reported_uri": [],
            "extensions": {
                "removal-recipient": ["user@example.com"],
                "x-folded-note": ["first part second part"],
                "x-mailbox-account-id": ["8812", "8813"]
            },
            "supplemental_trace": kumoref_trace()
        })
    );
    assert_eq!(
        report.original_message.as_deref(),
        Some(original_message().as_str())
    );
}

#[test]
fn not_spam() {
    let report = arf("arf-not-spam.eml");
    assert_eq!(
        fields(&report),
        json!({
            "feedback_type": "not-spam",
            "user_agent": "Mailbox-FBL/2.3",
            "version": "1",
            "arrival_date": null,
            "incidents": null,
            "original_envelope_id": null,
            "original_mail_from": null,
            "reporting_mta": null,
            "source_ip": null,
            "authentication_results": [],
            "original_rcpto_to": ["user@example.com"],
            "reported_domain": ["sender.example.org"],
            "reported_uri": [],
            "extensions": {},
            "supplemental_trace": kumoref_trace()
        })
    );
    assert_eq!(
        report.original_message.as_deref(),
        Some(original_headers().as_str())
    );
}

#[test]
fn auth_failure_fields_are_extensions() {
    let report = arf("arf-auth-failure.eml");
    assert_eq!(
        fields(&report),
        json!({
            "feedback_type": "auth-failure",
            "user_agent": "DMARC-Reporter/0.9",
            "version": "1",
            "arrival_date": "Thu, 26 Nov 2026 09:15:04 +0000",
            "incidents": null,
            "original_envelope_id": null,
            "original_mail_from": "news@sender.example.org",
            "reporting_mta": null,
            "source_ip": "198.51.100.1",
            "authentication_results": [
                "mx.mailbox.example; dkim=fail reason=\"signature verification failed\" header.d=sender.example.org"
            ],
            "original_rcpto_to": [],
            "reported_domain": ["sender.example.org"],
            "reported_uri": [],
            "extensions": {
                "auth-failure": ["dkim"],
                "delivery-result": ["reject"],
                "dkim-domain": ["sender.example.org"],
                "dkim-identity": ["@sender.example.org"],
                "dkim-selector": ["s2026"],
                "identity-alignment": ["dkim"]
            },
            "supplemental_trace": kumoref_trace()
        })
    );
    assert_eq!(
        report.original_message.as_deref(),
        Some(original_message().as_str())
    );
}

#[test]
fn an_arf_is_not_a_dsn() {
    for name in [
        "arf-abuse.eml",
        "arf-fraud-headers.eml",
        "arf-virus.eml",
        "arf-other-extensions.eml",
        "arf-not-spam.eml",
        "arf-auth-failure.eml",
    ] {
        assert_eq!(parse_dsn(&load(name)), Ok(None), "{name}");
    }
}

#[test]
fn supplemental_trace_of_a_whole_report_and_of_its_original() {
    for name in [
        "arf-abuse.eml",
        "arf-fraud-headers.eml",
        "arf-auth-failure.eml",
    ] {
        let trace = supplemental_trace(&load(name)).map(serde_json::Value::Object);
        assert_eq!(trace, Some(kumoref_trace()), "{name}");
    }
    assert_eq!(supplemental_trace(&load("arf-virus.eml")), None);
    // The original on its own: message or headers.
    for original in [original_message(), original_headers()] {
        let trace = supplemental_trace(original.as_bytes()).map(serde_json::Value::Object);
        assert_eq!(trace, Some(kumoref_trace()));
    }
}

#[test]
fn serialized_names_match_kumomta() {
    let value = serde_json::to_value(arf("arf-abuse.eml")).unwrap();
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "arrival_date",
            "authentication_results",
            "extensions",
            "feedback_type",
            "incidents",
            "original_envelope_id",
            "original_mail_from",
            "original_message",
            "original_rcpto_to",
            "reported_domain",
            "reported_uri",
            "reporting_mta",
            "source_ip",
            "supplemental_trace",
            "user_agent",
            "version",
        ]
    );
}
