//! Parsing one command line (without its CRLF) into a [`Command`].

use super::address::{Mailbox, parse_path};

/// A parsed SMTP command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain`.
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `MAIL FROM:<path> [params]`; `from` is None for the null sender `<>`.
    Mail {
        /// The reverse path.
        from: Option<Mailbox>,
        /// The ESMTP parameters we support.
        params: MailParams,
    },
    /// `RCPT TO:<path>`.
    Rcpt {
        /// The forward path.
        to: Mailbox,
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string`.
    Vrfy,
    /// `HELP [topic]`.
    Help,
    /// `STARTTLS`.
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954); the response stays base64 and
    /// holds a password: never log it.
    Auth {
        /// The mechanism name as given, e.g. `PLAIN`.
        mechanism: String,
        /// The initial response, if the client sent one.
        initial: Option<String>,
    },
    /// `XCLIENT attribute=value ...` (Postfix's extension): the arguments as given, to be
    /// parsed with [`crate::xclient::parse_xclient`] once the client is known to be
    /// allowed to use it (an untrusted client learns nothing from the parse).
    Xclient(String),
    /// A command we know of but do not implement (EXPN, BDAT, ETRN, TURN, …).
    NotImplemented(String),
}

/// The MAIL FROM parameters Postern understands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n` (RFC 1870): the client's estimate of the message size.
    pub size: Option<u64>,
    /// `BODY=8BITMIME` (RFC 6152).
    pub eight_bit: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
}

/// Why a command line was refused; each maps to one reply in the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The line is not UTF-8.
    InvalidUtf8,
    /// The verb is not an SMTP command.
    Unrecognized(String),
    /// The verb is known but its arguments are wrong.
    Syntax(String),
    /// MAIL FROM's address is malformed.
    BadSender(String),
    /// RCPT TO's address is malformed.
    BadRecipient(String),
    /// An ESMTP parameter we do not support (RFC 5321 §4.1.1.11: 555).
    UnsupportedParameter(String),
}

/// Verbs recognised but not implemented: they get 502 rather than 500.
const NOT_IMPLEMENTED: &[&str] = &[
    "EXPN", "BDAT", "ETRN", "TURN", "ATRN", "SEND", "SOML", "SAML", "LHLO",
];

/// Parses a command line (without CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let line = std::str::from_utf8(line).map_err(|_| {
        // 8-bit octets in a hello name are a syntax error of the name, as for UTF-8.
        let verb = line.split(|&b| b == b' ').next().unwrap_or_default();
        if verb.eq_ignore_ascii_case(b"EHLO") || verb.eq_ignore_ascii_case(b"HELO") {
            CommandError::Syntax(HELLO_NAME.into())
        } else {
            CommandError::InvalidUtf8
        }
    })?;
    let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
    let upper = verb.to_ascii_uppercase();
    match upper.as_str() {
        "EHLO" => domain_arg(args).map(Command::Ehlo),
        "HELO" => domain_arg(args).map(Command::Helo),
        "MAIL" => parse_mail(args),
        "RCPT" => parse_rcpt(args),
        "DATA" => no_args(args, Command::Data),
        "RSET" => no_args(args, Command::Rset),
        "QUIT" => no_args(args, Command::Quit),
        "STARTTLS" => no_args(args, Command::StartTls),
        "AUTH" => parse_auth(args),
        "XCLIENT" => Ok(Command::Xclient(args.to_owned())),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" if args.trim().is_empty() => {
            Err(CommandError::Syntax("VRFY needs an argument".into()))
        }
        "VRFY" => Ok(Command::Vrfy),
        v if NOT_IMPLEMENTED.contains(&v) => Ok(Command::NotImplemented(upper)),
        _ => Err(CommandError::Unrecognized(printable(verb))),
    }
}

fn parse_auth(args: &str) -> Result<Command, CommandError> {
    let mut words = args.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(mechanism), initial, None) => Ok(Command::Auth {
            mechanism: mechanism.to_owned(),
            initial: initial.map(str::to_owned),
        }),
        (None, ..) => Err(CommandError::Syntax("AUTH needs a mechanism".into())),
        _ => Err(CommandError::Syntax(
            "expected AUTH mechanism [initial-response]".into(),
        )),
    }
}

fn no_args(args: &str, command: Command) -> Result<Command, CommandError> {
    if args.trim().is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Syntax(
            "this command takes no arguments".into(),
        ))
    }
}

/// What a hello name must be.
const HELLO_NAME: &str = "expected a domain name or an address literal such as [192.0.2.1]";

fn domain_arg(args: &str) -> Result<String, CommandError> {
    let mut words = args.split_whitespace();
    match (words.next(), words.next()) {
        (Some(domain), None) if is_hello_name(domain) && !args.contains(is_forbidden) => {
            Ok(domain.to_owned())
        }
        (Some(_), None) => Err(CommandError::Syntax(HELLO_NAME.into())),
        (None, _) => Err(CommandError::Syntax(
            "a domain name or address literal is required".into(),
        )),
        (Some(_), Some(_)) => Err(CommandError::Syntax(
            "expected exactly one domain name".into(),
        )),
    }
}

/// Control characters (NUL, ESC, DEL …) and anything outside ASCII.
fn is_forbidden(c: char) -> bool {
    !c.is_ascii() || c.is_ascii_control() && c != ' '
}

/// An EHLO/HELO argument (RFC 5321 §4.1.1.1): a domain name or an address literal.
/// Underscores are tolerated in names (many hosts are called so); control
/// characters and 8-bit octets never are, so the name is safe in `Received:` and logs.
pub fn is_hello_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    if let Some(literal) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        if literal.parse::<std::net::Ipv4Addr>().is_ok() {
            return true;
        }
        if let Some(v6) = literal.strip_prefix("IPv6:") {
            return v6.parse::<std::net::Ipv6Addr>().is_ok();
        }
        // General-address-literal: Standardized-tag ":" 1*dcontent.
        return literal.split_once(':').is_some_and(|(tag, content)| {
            !tag.is_empty()
                && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !content.is_empty()
                && content
                    .bytes()
                    .all(|b| (33..=90).contains(&b) || (94..=126).contains(&b))
        });
    }
    name.strip_suffix('.')
        .unwrap_or(name)
        .split('.')
        .all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Strips a case-insensitive keyword such as `FROM:`.
fn keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &args[keyword.len()..])
}

fn parse_mail(args: &str) -> Result<Command, CommandError> {
    let path = keyword(args, "FROM:")
        .ok_or_else(|| CommandError::Syntax("expected MAIL FROM:<address>".into()))?;
    let (from, rest) = parse_path(path, true).map_err(CommandError::BadSender)?;
    let mut params = MailParams::default();
    for param in rest.split_whitespace() {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match (
            key.to_ascii_uppercase().as_str(),
            value.to_ascii_uppercase().as_str(),
        ) {
            ("SIZE", v) => {
                let size = v
                    .parse()
                    .map_err(|_| CommandError::Syntax(format!("SIZE={value} is not a number")))?;
                params.size = Some(size);
            }
            ("BODY", "7BIT") => params.eight_bit = false,
            ("BODY", "8BITMIME") => params.eight_bit = true,
            ("SMTPUTF8", "") => params.smtputf8 = true,
            _ => return Err(CommandError::UnsupportedParameter(printable(param))),
        }
    }
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(args: &str) -> Result<Command, CommandError> {
    let path = keyword(args, "TO:")
        .ok_or_else(|| CommandError::Syntax("expected RCPT TO:<address>".into()))?;
    let (to, rest) = parse_path(path, false).map_err(CommandError::BadRecipient)?;
    if let Some(param) = rest.split_whitespace().next() {
        return Err(CommandError::UnsupportedParameter(printable(param)));
    }
    let to = to.expect("parse_path refuses <> when the null path is not allowed");
    Ok(Command::Rcpt { to })
}

/// A short, printable rendering of client text for replies and logs.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, CommandError> {
        parse_command(line.as_bytes())
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            parse("ehlo client.example").unwrap(),
            Command::Ehlo("client.example".into())
        );
        assert_eq!(parse("QuIt").unwrap(), Command::Quit);
        assert_eq!(parse("noop anything at all").unwrap(), Command::Noop);
    }

    #[test]
    fn hello_names_are_domains_or_address_literals() {
        for good in [
            "client.example",
            "localhost",
            "my_host.example.",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "[x-tag:abc]",
        ] {
            assert_eq!(
                parse(&format!("EHLO {good}")).unwrap(),
                Command::Ehlo(good.into()),
                "{good}"
            );
        }
        for bad in [
            "EHLO a\u{0}b",
            "EHLO a\u{1b}[31mb",
            "EHLO a\u{7f}",
            "HELO bücher.example",
            "EHLO a..b",
            "EHLO [999.1.1.1]",
            "EHLO <a@b>",
            "EHLO a b",
            "EHLO",
        ] {
            assert!(
                matches!(parse(bad), Err(CommandError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_command(b"EHLO caf\xe9.example"),
            Err(CommandError::Syntax(_))
        ));
        assert_eq!(parse_command(b"NOOP \xff"), Err(CommandError::InvalidUtf8));
    }

    #[test]
    fn mail_with_parameters() {
        let Command::Mail { from, params } =
            parse("MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8").unwrap()
        else {
            panic!("not MAIL");
        };
        assert_eq!(from.unwrap().to_string(), "a@b.example");
        assert_eq!(
            params,
            MailParams {
                size: Some(1000),
                eight_bit: true,
                smtputf8: true
            }
        );
        assert!(matches!(
            parse("mail from: <>").unwrap(),
            Command::Mail { from: None, .. }
        ));
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(
            parse_command(b"MAIL \xff").unwrap_err(),
            CommandError::InvalidUtf8
        );
        assert!(matches!(parse("FOO bar"), Err(CommandError::Unrecognized(v)) if v == "FOO"));
        assert!(matches!(parse("EXPN list"), Ok(Command::NotImplemented(_))));
        assert_eq!(
            parse("auth plain AHRpbQB0aW0="),
            Ok(Command::Auth {
                mechanism: "plain".into(),
                initial: Some("AHRpbQB0aW0=".into())
            })
        );
        assert_eq!(
            parse("AUTH LOGIN"),
            Ok(Command::Auth {
                mechanism: "LOGIN".into(),
                initial: None
            })
        );
        assert!(matches!(parse("AUTH"), Err(CommandError::Syntax(_))));
        assert!(matches!(
            parse("AUTH PLAIN a b"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(parse("EHLO"), Err(CommandError::Syntax(_))));
        assert!(matches!(parse("EHLO a b"), Err(CommandError::Syntax(_))));
        assert!(matches!(parse("DATA now"), Err(CommandError::Syntax(_))));
        assert!(matches!(
            parse("MAIL TO:<a@b.c>"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(
            parse("MAIL FROM:<a@>"),
            Err(CommandError::BadSender(_))
        ));
        assert!(matches!(
            parse("RCPT TO:<>"),
            Err(CommandError::BadRecipient(_))
        ));
        assert!(matches!(
            parse("RCPT TO:<a@b.c> NOTIFY=NEVER"),
            Err(CommandError::UnsupportedParameter(_))
        ));
        assert!(matches!(
            parse("MAIL FROM:<a@b.c> BODY=BINARYMIME"),
            Err(CommandError::UnsupportedParameter(_))
        ));
        assert!(matches!(
            parse("MAIL FROM:<a@b.c> SIZE=big"),
            Err(CommandError::Syntax(_))
        ));
        assert!(matches!(parse("VRFY"), Err(CommandError::Syntax(_))));
        assert_eq!(
            parse("xclient ADDR=192.0.2.1 NAME=x.example"),
            Ok(Command::Xclient("ADDR=192.0.2.1 NAME=x.example".into()))
        );
        assert_eq!(parse("XCLIENT"), Ok(Command::Xclient(String::new())));
    }
}
