//! Decoding of the supplemental trace header (`X-KumoRef` by default) that
//! the listener adds to outgoing mail and that comes back inside reports.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

use crate::mime;

/// The marker key and value that identify a supplemental trace object.
const MARKER_KEY: &str = "_@_";
/// The marker value: the three characters `\_/`.
const MARKER_VALUE: &str = "\\_/";

/// Standard alphabet; padding accepted whether present or not.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Finds the supplemental trace object in a returned message.
///
/// `headers_or_message` is either a report (`multipart/report`: its
/// `message/rfc822`, `text/rfc822-headers`, `message/global` and
/// `message/global-headers` parts are searched, in order) or the returned
/// message or headers themselves (its top-level header fields are
/// searched).
///
/// A header field qualifies when its name starts with `X-` (any case) and
/// its value, with all whitespace removed (so folding is tolerated), is
/// standard base64 (padding optional) of a JSON object holding
/// `"_@_": "\\_/"`. The first qualifying field wins; the object is returned
/// without the marker.
pub fn supplemental_trace(headers_or_message: &[u8]) -> Option<Map<String, Value>> {
    if let mime::Parsed::Message(message) = mime::parse(headers_or_message)
        && let Some(root) = message.parts.first()
        && mime::mime_type(root) == "multipart/report"
    {
        let ids = root.sub_parts()?;
        return ids
            .iter()
            .filter_map(|&id| message.parts.get(id as usize))
            .filter(|p| mime::ORIGINAL_TYPES.contains(&mime::mime_type(p).as_str()))
            .find_map(|p| trace_in_headers(&mime::body_bytes(headers_or_message, p)));
    }
    trace_in_headers(headers_or_message)
}

/// Looks for the trace in the top-level header fields of `bytes`.
pub(crate) fn trace_in_headers(bytes: &[u8]) -> Option<Map<String, Value>> {
    mime::raw_headers(bytes)
        .into_iter()
        .filter(|(name, _)| name.len() > 2 && name.as_bytes()[..2].eq_ignore_ascii_case(b"x-"))
        .find_map(|(_, value)| decode_trace(value))
}

/// Decodes one header value; `None` unless it is a marked trace object.
pub(crate) fn decode_trace(value: &[u8]) -> Option<Map<String, Value>> {
    let compact: Vec<u8> = value
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    // A JSON object starts with '{', which base64 encodes as "e".
    if !compact.starts_with(b"e") {
        return None;
    }
    let json = BASE64.decode(&compact).ok()?;
    let Value::Object(mut object) = serde_json::from_slice(&json).ok()? else {
        return None;
    };
    match object.remove(MARKER_KEY) {
        Some(Value::String(marker)) if marker == MARKER_VALUE => Some(object),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(json: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    #[test]
    fn decodes_the_reference_example() {
        let map =
            decode_trace(b" eyJfQF8iOiJcXF8vIiwicmVjaXBpZW50IjoidGVzdEBleGFtcGxlLmNvbSJ9\r\n")
                .unwrap();
        assert_eq!(
            Value::Object(map),
            serde_json::json!({"recipient": "test@example.com"})
        );
    }

    #[test]
    fn folding_and_missing_padding_are_tolerated() {
        let b64 = encode(r#"{"_@_":"\\_/","recipient":["a@x","b@x"],"tenant":null}"#);
        let (head, tail) = b64.split_at(20);
        let folded = format!(" {head}\r\n\t{}", tail.trim_end_matches('='));
        let map = decode_trace(folded.as_bytes()).unwrap();
        assert_eq!(
            Value::Object(map),
            serde_json::json!({"recipient": ["a@x", "b@x"], "tenant": null})
        );
    }

    #[test]
    fn unmarked_or_wrong_values_are_ignored() {
        assert!(decode_trace(encode(r#"{"recipient":"a@x"}"#).as_bytes()).is_none());
        assert!(decode_trace(encode(r#"{"_@_":"_/","recipient":"a@x"}"#).as_bytes()).is_none());
        assert!(decode_trace(encode(r#"{"_@_":1}"#).as_bytes()).is_none());
        assert!(decode_trace(encode(r#"["_@_"]"#).as_bytes()).is_none());
        assert!(decode_trace(b"eyJ!!!").is_none());
        assert!(decode_trace(b"").is_none());
    }

    #[test]
    fn first_marked_x_header_wins() {
        let first = encode(r#"{"_@_":"\\_/","n":1}"#);
        let second = encode(r#"{"_@_":"\\_/","n":2}"#);
        let unmarked = encode(r#"{"n":0}"#);
        let headers = format!(
            "Subject: {first}\r\nX-Other: {unmarked}\r\nx-kumoref: {first}\r\nX-KumoRef: {second}\r\n\r\nbody"
        );
        let map = supplemental_trace(headers.as_bytes()).unwrap();
        assert_eq!(map.get("n"), Some(&Value::from(1)));
    }

    #[test]
    fn non_x_headers_are_not_searched() {
        let value = encode(r#"{"_@_":"\\_/","n":1}"#);
        let headers = format!("Subject: {value}\r\nReferences: {value}\r\n\r\n");
        assert!(supplemental_trace(headers.as_bytes()).is_none());
    }
}
