//! RFC 5321 paths and mailboxes (with RFC 6531 UTF-8), parsed strictly but kindly:
//! a space after `FROM:`/`TO:` and a source route are tolerated.

use std::fmt;

/// Longest local part (RFC 5321 §4.5.3.1.1).
const MAX_LOCAL: usize = 64;
/// Longest domain (RFC 5321 §4.5.3.1.2).
const MAX_DOMAIN: usize = 255;
/// Longest path including the brackets (RFC 5321 §4.5.3.1.3).
const MAX_PATH: usize = 256;

/// A mailbox: `local@domain` or `local@[address literal]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    /// The local part as written (quoted local parts keep their quotes).
    pub local: String,
    /// The domain or address literal as written (literals keep their brackets).
    pub domain: String,
}

impl Mailbox {
    /// Whether every octet is ASCII (else the transaction needs SMTPUTF8).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }

    /// The domain as used for relay lookups: lowercase ASCII (IDNA A-labels).
    pub fn lookup_domain(&self) -> String {
        idna::domain_to_ascii(&self.domain).unwrap_or_else(|_| self.domain.to_ascii_lowercase())
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// Parses `<mailbox>` (or `<>` when `allow_null`) at the start of `text`; returns the
/// mailbox (None for `<>`) and the rest of the text after `>`.
pub fn parse_path(text: &str, allow_null: bool) -> Result<(Option<Mailbox>, &str), String> {
    let text = text.trim_start_matches(' ');
    let after_open = text
        .strip_prefix('<')
        .ok_or("expected an address in angle brackets, e.g. <user@example.com>")?;
    let close = closing_bracket(after_open).ok_or("the address has no closing '>'")?;
    let (inner, rest) = (&after_open[..close], &after_open[close + 1..]);
    if inner.len() + 2 > MAX_PATH {
        return Err(format!("the path is longer than {MAX_PATH} octets"));
    }
    if inner.is_empty() {
        return if allow_null {
            Ok((None, rest))
        } else {
            Err("the null path <> is not allowed here".into())
        };
    }
    let mailbox = match inner.find(':') {
        Some(colon) if inner.starts_with('@') => &inner[colon + 1..],
        _ => inner,
    };
    parse_mailbox(mailbox).map(|m| (Some(m), rest))
}

/// The index of the `>` that closes a path, skipping any inside a quoted local part.
fn closing_bracket(text: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Parses `local@domain`.
pub fn parse_mailbox(text: &str) -> Result<Mailbox, String> {
    let at = text
        .rfind('@')
        .ok_or_else(|| format!("'{text}' has no @domain"))?;
    let (local, domain) = (&text[..at], &text[at + 1..]);
    check_local(local)?;
    check_domain(domain)?;
    Ok(Mailbox {
        local: local.into(),
        domain: domain.into(),
    })
}

fn check_local(local: &str) -> Result<(), String> {
    if local.is_empty() || local.len() > MAX_LOCAL {
        return Err(format!("the local part must be 1 to {MAX_LOCAL} octets"));
    }
    if let Some(quoted) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        return check_quoted(quoted);
    }
    if local
        .split('.')
        .any(|atom| atom.is_empty() || !atom.chars().all(is_atext))
    {
        return Err(format!("'{local}' is not a valid local part"));
    }
    Ok(())
}

fn check_quoted(quoted: &str) -> Result<(), String> {
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        let ok = match c {
            '\\' => chars.next().is_some_and(|n| (' '..='~').contains(&n)),
            '"' => false,
            c => (' '..='~').contains(&c) || is_utf8_text(c),
        };
        if !ok {
            return Err("invalid character in quoted local part".into());
        }
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() || domain.len() > MAX_DOMAIN {
        return Err(format!("the domain must be 1 to {MAX_DOMAIN} octets"));
    }
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let valid = match literal.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => literal.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        return if valid {
            Ok(())
        } else {
            Err(format!("'{domain}' is not a valid address literal"))
        };
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || is_utf8_text(c))
    };
    if domain.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("'{domain}' is not a valid domain"))
    }
}

/// RFC 5322 atext, plus RFC 6531 UTF-8.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || is_utf8_text(c)
}

/// Non-ASCII text allowed by RFC 6531, minus controls and invisible format characters
/// (zero-width spaces, joiners, word joiner, BOM) that make look-alike addresses.
fn is_utf8_text(c: char) -> bool {
    !c.is_ascii()
        && !c.is_control()
        && !matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> Result<Option<String>, String> {
        parse_path(text, true).map(|(m, _)| m.map(|m| m.to_string()))
    }

    #[test]
    fn plain_null_and_routed_paths() {
        assert_eq!(
            path("<a@example.com>").unwrap().as_deref(),
            Some("a@example.com")
        );
        assert_eq!(path("<>").unwrap(), None);
        assert_eq!(
            path(" <a@b.example>").unwrap().as_deref(),
            Some("a@b.example")
        );
        assert_eq!(
            path("<@relay.example,@r2.example:a@b.example>")
                .unwrap()
                .as_deref(),
            Some("a@b.example")
        );
        assert!(parse_path("<>", false).is_err());
    }

    #[test]
    fn the_rest_after_the_path_is_returned() {
        let (_, rest) = parse_path("<a@b.c> SIZE=100 BODY=8BITMIME", false).unwrap();
        assert_eq!(rest, " SIZE=100 BODY=8BITMIME");
    }

    #[test]
    fn quoted_local_parts_may_hold_brackets_and_at() {
        assert_eq!(
            path(r#"<"odd>@name"@example.com>"#).unwrap().as_deref(),
            Some(r#""odd>@name"@example.com"#)
        );
    }

    #[test]
    fn literals_and_utf8() {
        assert!(path("<a@[192.0.2.1]>").is_ok());
        assert!(path("<a@[IPv6:2001:db8::1]>").is_ok());
        assert!(path("<a@[999.0.0.1]>").is_err());
        let (m, _) = parse_path("<用户@Bücher.example>", false).unwrap();
        let m = m.unwrap();
        assert!(!m.is_ascii());
        assert_eq!(m.lookup_domain(), "xn--bcher-kva.example");
    }

    #[test]
    fn refuses_what_would_be_lost_later() {
        for bad in [
            "a@b.c",
            "<a@>",
            "<@b.c>",
            "<a..b@c.d>",
            "<a@-b.c>",
            "<a b@c.d>",
            "<a\u{2060}@c.d>",
            "<a@b.c",
        ] {
            assert!(path(bad).is_err(), "{bad}");
        }
        assert!(path(&format!("<{}@b.c>", "x".repeat(65))).is_err());
    }

    #[test]
    fn lookup_domain_is_lowercase() {
        assert_eq!(
            parse_mailbox("a@Example.COM").unwrap().lookup_domain(),
            "example.com"
        );
    }
}
