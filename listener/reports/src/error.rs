//! The error type shared by the report parsers.

/// Why a message that claims to be a report (a `multipart/report` of the
/// wanted kind) could not be parsed.
///
/// The display text says what is wrong; the listener logs it as the
/// parse-error field of a plain reception record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The `multipart/report` Content-Type has no `boundary` parameter.
    #[error("multipart/report Content-Type has no boundary parameter")]
    MissingBoundary,
    /// The boundary is declared but no body part is delimited by it.
    #[error("multipart/report boundary {0:?} delimits no body part")]
    BoundaryNotFound(String),
    /// The closing delimiter (`--boundary--`) never comes: the message was
    /// cut short.
    #[error("multipart/report is truncated: closing boundary \"--{0}--\" is missing")]
    Truncated(String),
    /// The MIME structure of a `multipart/report` defeated the MIME parser.
    #[error("multipart/report has a MIME structure that could not be parsed")]
    UnparsableMime,
    /// The report lacks the machine-readable part its report-type requires.
    #[error("multipart/report lacks a {0} part")]
    MissingPart(&'static str),
    /// A machine-readable part is not valid UTF-8.
    #[error("{0} part is not valid UTF-8")]
    NotUtf8(&'static str),
    /// A line of a machine-readable part is neither a field, a folded
    /// continuation nor a blank separator line.
    #[error("{part} part, line {line}: not a header field: {text:?}")]
    BadLine {
        /// The part being parsed, e.g. `message/delivery-status`.
        part: &'static str,
        /// 1-based line number inside the part.
        line: usize,
        /// The offending line (cut to 80 characters).
        text: String,
    },
    /// A required field is absent.
    #[error("{part} lacks {field}")]
    MissingField {
        /// Where the field was looked for, e.g.
        /// `message/delivery-status part, recipient block 2`.
        part: String,
        /// The field name, e.g. `Final-Recipient`.
        field: &'static str,
    },
    /// A field is present but its value cannot be used.
    #[error("{part}: {field} has an invalid value {value:?}")]
    InvalidValue {
        /// Where the field was found.
        part: String,
        /// The field name.
        field: &'static str,
        /// The offending value (cut to 80 characters).
        value: String,
    },
    /// A delivery status notification has a per-message block but no
    /// per-recipient block.
    #[error("{0} part has no per-recipient block")]
    NoRecipients(&'static str),
}

/// Cuts `text` to at most 80 characters for an error message.
pub(crate) fn excerpt(text: &str) -> String {
    text.chars().take(80).collect()
}
