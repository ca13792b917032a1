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
    /// A command we know of but do not implement (EXPN, AUTH, BDAT, ETRN, TURN, …).
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
    "EXPN", "AUTH", "BDAT", "ETRN", "TURN", "ATRN", "SEND", "SOML", "SAML", "LHLO",
];

/// Parses a command line (without CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let line = std::str::from_utf8(line).map_err(|_| CommandError::InvalidUtf8)?;
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

fn no_args(args: &str, command: Command) -> Result<Command, CommandError> {
    if args.trim().is_empty() {
        Ok(command)
    } else {
        Err(CommandError::Syntax(
            "this command takes no arguments".into(),
        ))
    }
}

fn domain_arg(args: &str) -> Result<String, CommandError> {
    let mut words = args.split_whitespace();
    match (words.next(), words.next()) {
        (Some(domain), None) => Ok(domain.to_owned()),
        (None, _) => Err(CommandError::Syntax(
            "a domain name or address literal is required".into(),
        )),
        (Some(_), Some(_)) => Err(CommandError::Syntax(
            "expected exactly one domain name".into(),
        )),
    }
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
fn printable(text: &str) -> String {
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
    }
}
