//! MIME helpers over `mail-parser`: finding the parts of a
//! `multipart/report` (RFC 6522) and getting their contents.

use std::borrow::Cow;

use mail_parser::{Encoding, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use crate::error::ReportError;

/// The content types that carry the returned original message or its
/// headers, in a DSN (RFC 3464, RFC 6533) or an ARF report (RFC 5965).
pub(crate) const ORIGINAL_TYPES: &[&str] = &[
    "message/rfc822",
    "text/rfc822-headers",
    "message/global",
    "message/global-headers",
];

/// The outcome of handing bytes to `mail-parser`.
pub(crate) enum Parsed<'x> {
    /// A message with at least one header field.
    Message(Message<'x>),
    /// No header field at all: not a message.
    NotMessage,
    /// `mail-parser` panicked (see [`guarded`]).
    ParserPanicked,
}

/// Runs a `mail-parser` call, turning a panic into `None`.
///
/// Hostile input must never take the listener down. `mail-parser` 0.11
/// holds `debug_assert!(false, ..)` on some inconsistent MIME structures
/// (found by fuzzing: "Invalid part ID, could not find multipart."); they
/// panic in debug builds only, and release builds recover. The guard
/// makes both behave, and shields against any other panic in the
/// dependency. (The panic hook still prints the message.)
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// Parses `raw` as a MIME message.
pub(crate) fn parse(raw: &[u8]) -> Parsed<'_> {
    match guarded(|| MessageParser::new().parse(raw)) {
        Some(Some(message)) => Parsed::Message(message),
        Some(None) => Parsed::NotMessage,
        None => Parsed::ParserPanicked,
    }
}

/// The common start of `parse_arf` and `parse_dsn`: the parsed message,
/// `Ok(None)` when `raw` is not a message, and when the MIME parser failed,
/// an error if the top-level header still claims a report of `kind`
/// (else `Ok(None)`).
pub(crate) fn parse_for_report<'x>(
    raw: &'x [u8],
    kind: &Kind,
) -> Result<Option<Message<'x>>, ReportError> {
    match parse(raw) {
        Parsed::Message(message) => Ok(Some(message)),
        Parsed::NotMessage => Ok(None),
        Parsed::ParserPanicked => {
            let claimed = guarded(|| MessageParser::new().parse_headers(raw))
                .flatten()
                .is_some_and(|m| m.parts.first().is_some_and(|root| claims(root, kind)));
            if claimed {
                Err(ReportError::UnparsableMime)
            } else {
                Ok(None)
            }
        }
    }
}

/// Whether `root` is a `multipart/report` whose report-type is of `kind`.
fn claims(root: &MessagePart<'_>, kind: &Kind) -> bool {
    mime_type(root) == "multipart/report"
        && content_type_param(root, "report-type").is_some_and(|t| {
            kind.report_types
                .contains(&t.trim().to_ascii_lowercase().as_str())
        })
}

/// The lowercased `type/subtype` of a part; `text/plain` when the part has
/// no Content-Type (RFC 2045 default).
pub(crate) fn mime_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "text/plain".to_owned(),
    }
}

/// A Content-Type parameter of a part, looked up case-insensitively.
fn content_type_param<'a>(part: &'a MessagePart<'_>, name: &str) -> Option<&'a str> {
    part.content_type()?
        .attributes()?
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .map(|a| a.value.as_ref())
}

/// What a `multipart/report` looks for to call itself a report of one kind.
pub(crate) struct Kind {
    /// Accepted values of the `report-type` parameter (lowercase).
    pub report_types: &'static [&'static str],
    /// Accepted content types of the machine-readable part (lowercase).
    pub part_types: &'static [&'static str],
    /// Name of the machine-readable part for error messages.
    pub part_name: &'static str,
}

/// A `multipart/report` that claims to be of the wanted kind.
pub(crate) struct Report<'m, 'x> {
    /// The raw message bytes.
    pub raw: &'x [u8],
    /// The direct children of the `multipart/report`, in order.
    pub children: Vec<&'m MessagePart<'x>>,
    /// The first child whose type is one of the kind's part types.
    pub status_part: &'m MessagePart<'x>,
}

/// Finds the report of `kind` in `message`.
///
/// `Ok(None)` when the message is not a `multipart/report`, or is one of
/// another kind. A `multipart/report` claims to be of `kind` when its
/// report-type says so or when one of its parts has the kind's content
/// type; such a message with broken MIME (no boundary, a boundary that
/// delimits nothing, no closing boundary) or without the part is an error.
pub(crate) fn find_report<'m, 'x>(
    message: &'m Message<'x>,
    raw: &'x [u8],
    kind: &Kind,
) -> Result<Option<Report<'m, 'x>>, ReportError> {
    let Some(root) = message.parts.first() else {
        return Ok(None);
    };
    if mime_type(root) != "multipart/report" {
        return Ok(None);
    }
    let report_type =
        content_type_param(root, "report-type").map(|t| t.trim().to_ascii_lowercase());
    let typed_as_kind = report_type
        .as_deref()
        .is_some_and(|t| kind.report_types.contains(&t));
    let boundary = content_type_param(root, "boundary");

    let Some(ids) = root.sub_parts() else {
        // mail-parser keeps a multipart whose boundary is missing or never
        // found as one text body.
        if !typed_as_kind {
            return Ok(None);
        }
        return Err(match boundary {
            None => ReportError::MissingBoundary,
            Some(b) => ReportError::BoundaryNotFound(b.to_owned()),
        });
    };
    let children: Vec<&MessagePart<'x>> = ids
        .iter()
        .filter_map(|&id| message.parts.get(id as usize))
        .collect();
    let status_part = children
        .iter()
        .copied()
        .find(|p| kind.part_types.contains(&mime_type(p).as_str()));
    if !typed_as_kind && status_part.is_none() {
        return Ok(None);
    }
    if let Some(b) = boundary
        && !has_close_delimiter(raw, b)
    {
        return Err(ReportError::Truncated(b.to_owned()));
    }
    let status_part = status_part.ok_or(ReportError::MissingPart(kind.part_name))?;
    Ok(Some(Report {
        raw,
        children,
        status_part,
    }))
}

/// Whether `raw` holds the close delimiter `--boundary--` at a line start.
fn has_close_delimiter(raw: &[u8], boundary: &str) -> bool {
    let delimiter = format!("--{boundary}--");
    let delimiter = delimiter.as_bytes();
    raw.windows(delimiter.len())
        .enumerate()
        .any(|(at, w)| w == delimiter && (at == 0 || raw[at - 1] == b'\n'))
}

impl<'x> Report<'_, 'x> {
    /// The bytes of each part that returns the original message or its
    /// headers, in order, with content transfer encoding undone.
    pub(crate) fn originals(&self) -> impl Iterator<Item = Cow<'x, [u8]>> + '_ {
        self.children
            .iter()
            .filter(|p| ORIGINAL_TYPES.contains(&mime_type(p).as_str()))
            .map(|p| body_bytes(self.raw, p))
    }

    /// The text of the machine-readable part (transfer encoding undone).
    pub(crate) fn status_text(&self, part_name: &'static str) -> Result<Cow<'x, str>, ReportError> {
        match body_bytes(self.raw, self.status_part) {
            Cow::Borrowed(b) => std::str::from_utf8(b)
                .map(Cow::Borrowed)
                .map_err(|_| ReportError::NotUtf8(part_name)),
            Cow::Owned(b) => String::from_utf8(b)
                .map(Cow::Owned)
                .map_err(|_| ReportError::NotUtf8(part_name)),
        }
    }
}

/// The body of `part` as bytes, transfer encoding undone. For a nested
/// message sent without transfer encoding, the exact bytes of the part's
/// body in `raw` (mail-parser's nested message keeps the whole outer
/// message as its raw bytes, with offsets into it).
pub(crate) fn body_bytes<'x>(raw: &'x [u8], part: &MessagePart<'x>) -> Cow<'x, [u8]> {
    match &part.body {
        PartType::Message(_) if part.encoding == Encoding::None => raw
            .get(part.offset_body as usize..part.offset_end as usize)
            .map(Cow::Borrowed)
            .unwrap_or_default(),
        PartType::Message(nested) => Cow::Owned(nested.raw_message().to_vec()),
        PartType::Text(t) | PartType::Html(t) => match t {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.as_bytes().to_vec()),
        },
        PartType::Binary(b) | PartType::InlineBinary(b) => b.clone(),
        PartType::Multipart(_) => Cow::Borrowed(&[]),
    }
}

/// Raw header fields of the top level of `bytes`, as (name, raw value)
/// pairs; the raw value keeps its folding.
pub(crate) fn raw_headers(bytes: &[u8]) -> Vec<(String, &[u8])> {
    let Some(Some(message)) = guarded(|| MessageParser::new().parse_headers(bytes)) else {
        return Vec::new();
    };
    let Some(root) = message.parts.first() else {
        return Vec::new();
    };
    root.headers
        .iter()
        .filter_map(|h| {
            let value = bytes.get(h.offset_start as usize..h.offset_end as usize)?;
            Some((h.name.as_str().to_owned(), value))
        })
        .collect()
}

/// The bytes as text (invalid UTF-8 replaced with U+FFFD), with every CRLF
/// turned into LF.
pub(crate) fn lossy_lf(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace("\r\n", "\n")
}
