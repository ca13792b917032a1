//! SMTP replies with RFC 3463 enhanced status codes (RFC 2034).

use std::fmt;

use serde::Serialize;

/// An RFC 3463 enhanced status code such as `5.7.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Enhanced {
    /// 2, 4 or 5.
    pub class: u8,
    /// The subject (e.g. 7 for security).
    pub subject: u16,
    /// The detail.
    pub detail: u16,
}

impl Enhanced {
    /// Parses `x.y.z` (surrounding whitespace allowed), as written in replies and in
    /// the `Status` field of bounce reports.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let class = parts.next()?.parse().ok()?;
        let subject = parts.next()?.parse().ok()?;
        let detail = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Self {
            class,
            subject,
            detail,
        })
    }
}

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply: a code, an optional enhanced code, and one or more text lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code, on every reply but the greeting, EHLO/HELO and 354.
    pub enhanced: Option<Enhanced>,
    /// The text, one entry per line.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced code written `"x.y.z"`.
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced: Some(parse_enhanced(enhanced)),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced code (greeting, EHLO, HELO, 354).
    pub fn plain(code: u16, lines: Vec<String>) -> Self {
        Self {
            code,
            enhanced: None,
            lines,
        }
    }

    /// Whether the reply is a 4xx or 5xx failure.
    pub fn is_failure(&self) -> bool {
        self.code >= 400
    }

    /// The text as one line, with the enhanced code: what logs record as `content`.
    pub fn content(&self) -> String {
        let text = self.lines.join(" ");
        match self.enhanced {
            Some(e) => format!("{e} {text}"),
            None => text,
        }
    }

    /// Appends the wire form (`250-first\r\n250 last\r\n`) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let text = match self.enhanced {
                Some(e) => format!("{}{sep}{e} {line}\r\n", self.code),
                None => format!("{}{sep}{line}\r\n", self.code),
            };
            out.extend_from_slice(text.as_bytes());
        }
    }

    /// The wire form as bytes.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

fn parse_enhanced(code: &str) -> Enhanced {
    Enhanced::parse(code).unwrap_or_else(|| panic!("enhanced code literal '{code}' is not x.y.z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_with_and_without_enhanced_codes() {
        assert_eq!(
            Reply::new(250, "2.1.0", "OK").to_wire(),
            b"250 2.1.0 OK\r\n"
        );
        let ehlo = Reply::plain(
            250,
            vec!["mx Hello".into(), "PIPELINING".into(), "SIZE 10".into()],
        );
        assert_eq!(
            ehlo.to_wire(),
            b"250-mx Hello\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
    }

    #[test]
    fn enhanced_codes_parse_only_as_three_numbers() {
        assert_eq!(
            Enhanced::parse(" 5.1.1 ").map(|e| e.to_string()).as_deref(),
            Some("5.1.1")
        );
        for bad in ["5.1", "5.1.1.1", "x.1.1", ""] {
            assert_eq!(Enhanced::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_carries_the_enhanced_code() {
        assert_eq!(
            Reply::new(550, "5.7.1", "relaying denied").content(),
            "5.7.1 relaying denied"
        );
    }
}
