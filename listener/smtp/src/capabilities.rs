//! What a server offers, read from its EHLO reply (RFC 5321 §4.1.1.1).

use crate::reply::Reply;

/// The extensions the outbound client uses, as a server's EHLO reply lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The server answered EHLO (false after a HELO fallback: no extension is offered).
    pub esmtp: bool,
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `SIZE [n]` (RFC 1870): `Some(0)` when offered without a limit.
    pub size: Option<u64>,
    /// `8BITMIME` (RFC 6152).
    pub eight_bit_mime: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `STARTTLS` (RFC 3207).
    pub starttls: bool,
    /// `AUTH` lists `PLAIN` (RFC 4954, RFC 4616).
    pub auth_plain: bool,
    /// `AUTH` lists `LOGIN`.
    pub auth_login: bool,
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    pub enhanced_status_codes: bool,
}

impl Capabilities {
    /// Reads the keywords of a 250 EHLO reply; the first line is the greeting and is
    /// skipped. Keywords are case-insensitive; unknown ones are ignored.
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Self {
            esmtp: true,
            ..Self::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "AUTH" => {
                    for mechanism in words {
                        match mechanism.to_ascii_uppercase().as_str() {
                            "PLAIN" => caps.auth_plain = true,
                            "LOGIN" => caps.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ehlo(lines: &[&str]) -> Capabilities {
        Capabilities::from_ehlo(&Reply::plain(
            250,
            lines.iter().map(|l| l.to_string()).collect(),
        ))
    }

    #[test]
    fn reads_the_keywords_it_uses() {
        let caps = ehlo(&[
            "mx.example hello",
            "pipelining",
            "SIZE 10240000",
            "8BITMIME",
            "SMTPUTF8",
            "STARTTLS",
            "AUTH LOGIN plain CRAM-MD5",
            "ENHANCEDSTATUSCODES",
            "DSN",
        ]);
        assert_eq!(
            caps,
            Capabilities {
                esmtp: true,
                pipelining: true,
                size: Some(10_240_000),
                eight_bit_mime: true,
                smtputf8: true,
                starttls: true,
                auth_plain: true,
                auth_login: true,
                enhanced_status_codes: true,
            }
        );
    }

    #[test]
    fn the_greeting_line_is_not_a_keyword_and_size_may_be_bare() {
        let caps = ehlo(&["PIPELINING is my name", "SIZE"]);
        assert!(!caps.pipelining);
        assert_eq!(caps.size, Some(0));
        assert_eq!(
            ehlo(&["only a greeting"]),
            Capabilities {
                esmtp: true,
                ..Capabilities::default()
            }
        );
    }
}
