//! Parser for the header-style field blocks that make up the bodies of
//! `message/delivery-status` and `message/feedback-report` parts.
//!
//! A body is a sequence of blocks separated by blank lines; each block is a
//! sequence of `Name: value` fields, where a line starting with a space or
//! a tab continues the previous field (RFC 5322 folding).

use crate::error::{ReportError, excerpt};

/// One field of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    /// The name as written (compare case-insensitively).
    pub name: String,
    /// The value, unfolded (each fold becomes one space) and trimmed.
    pub value: String,
}

/// The fields of one block, in order.
pub(crate) type Block = Vec<Field>;

/// Splits `text` into blocks of fields.
///
/// Accepts CRLF and LF line ends; a whitespace-only line separates blocks
/// like an empty one, and runs of separators (also at the start or end)
/// produce no empty blocks. `part` names the part in error messages.
pub(crate) fn parse_blocks(text: &str, part: &'static str) -> Result<Vec<Block>, ReportError> {
    let mut blocks = Vec::new();
    let mut current: Block = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let bad_line = || ReportError::BadLine {
            part,
            line: index + 1,
            text: excerpt(line),
        };
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            let field = current.last_mut().ok_or_else(bad_line)?;
            if !field.value.is_empty() {
                field.value.push(' ');
            }
            field.value.push_str(line.trim());
        } else {
            let (name, value) = line.split_once(':').ok_or_else(bad_line)?;
            let name = name.trim_end();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad_line());
            }
            current.push(Field {
                name: name.to_owned(),
                value: value.trim().to_owned(),
            });
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    Ok(blocks)
}

/// The value of the first field named `name` (case-insensitive).
pub(crate) fn first<'a>(block: &'a [Field], name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name))
        .map(|f| f.value.as_str())
}

/// The values of every field named `name` (case-insensitive), in order.
pub(crate) fn all<'a>(block: &'a [Field], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    block
        .iter()
        .filter(move |f| f.name.eq_ignore_ascii_case(name))
        .map(|f| f.value.as_str())
}

/// Whether `name` is one of `known` (case-insensitive).
pub(crate) fn is_one_of(name: &str, known: &[&str]) -> bool {
    known.iter().any(|k| k.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, value: &str) -> Field {
        Field {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn blocks_split_on_blank_and_whitespace_lines() {
        let text = "\r\nA: 1\r\nB:2\r\n\r\nC: 3\r\n \t \r\nD: 4\n\n\n";
        let blocks = parse_blocks(text, "t").unwrap();
        assert_eq!(
            blocks,
            vec![
                vec![f("A", "1"), f("B", "2")],
                vec![f("C", "3")],
                vec![f("D", "4")]
            ]
        );
    }

    #[test]
    fn folding_becomes_one_space() {
        let text = "Diagnostic-Code: smtp; 550 5.1.1\r\n\tuser unknown\r\n    here\r\nX:\r\n y";
        let blocks = parse_blocks(text, "t").unwrap();
        assert_eq!(
            blocks,
            vec![vec![
                f("Diagnostic-Code", "smtp; 550 5.1.1 user unknown here"),
                f("X", "y")
            ]]
        );
    }

    #[test]
    fn value_may_hold_colons_and_be_empty() {
        let blocks = parse_blocks("Arrival-Date: Thu, 1 Jan 2026 10:00:00 +0000\nE:", "t").unwrap();
        assert_eq!(
            blocks,
            vec![vec![
                f("Arrival-Date", "Thu, 1 Jan 2026 10:00:00 +0000"),
                f("E", "")
            ]]
        );
    }

    #[test]
    fn obsolete_space_before_colon_is_accepted() {
        let blocks = parse_blocks("Action : failed", "t").unwrap();
        assert_eq!(blocks, vec![vec![f("Action", "failed")]]);
    }

    #[test]
    fn bad_lines_are_errors() {
        let err = parse_blocks("A: 1\nnot a field\n", "message/x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "message/x part, line 2: not a header field: \"not a field\""
        );
        assert!(parse_blocks(" continuation first", "t").is_err());
        assert!(parse_blocks("A: 1\n\n continuation after blank", "t").is_err());
        assert!(parse_blocks(": no name", "t").is_err());
        assert!(parse_blocks("two words: x", "t").is_err());
    }

    #[test]
    fn empty_text_has_no_blocks() {
        assert!(parse_blocks("", "t").unwrap().is_empty());
        assert!(parse_blocks("\r\n \r\n", "t").unwrap().is_empty());
    }

    #[test]
    fn lookups_ignore_case() {
        let block = vec![f("Reported-URI", "a"), f("reported-uri", "b"), f("X", "c")];
        assert_eq!(first(&block, "REPORTED-URI"), Some("a"));
        assert_eq!(all(&block, "Reported-Uri").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(first(&block, "Y"), None);
        assert!(is_one_of("x", &["Y", "X"]));
    }
}
