//! The arguments of Postfix's `XCLIENT` command (a trusted proxy telling the server
//! who its client really is): `attribute=value` pairs whose values are RFC 3461 xtext,
//! or one of the special values `[UNAVAILABLE]` and `[TEMPUNAVAIL]`. Pure.
//!
//! Postern understands the attributes of [`XCLIENT_ATTRIBUTES`]; any other name is
//! refused, as is a name given twice.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::command::{is_hello_name, printable};

/// The attributes Postern implements, as its EHLO reply advertises them.
pub const XCLIENT_ATTRIBUTES: &str = "ADDR NAME PORT PROTO HELO LOGIN DESTADDR DESTPORT";

/// Longest NAME, HELO or LOGIN value accepted, in octets after decoding.
pub const MAX_VALUE: usize = 255;

/// One attribute value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XclientValue<T> {
    /// A value.
    Known(T),
    /// `[UNAVAILABLE]`: the proxy does not have this information.
    Unavailable,
    /// `[TEMPUNAVAIL]`: the proxy could not get it (e.g. a DNS lookup failed for now).
    TempUnavailable,
}

impl<T> XclientValue<T> {
    /// The value, when there is one.
    pub fn known(self) -> Option<T> {
        match self {
            Self::Known(value) => Some(value),
            Self::Unavailable | Self::TempUnavailable => None,
        }
    }
}

/// The protocol the client spoke to the proxy (`PROTO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XclientProto {
    /// `SMTP`: the client said HELO.
    Smtp,
    /// `ESMTP`: the client said EHLO.
    Esmtp,
}

/// The attributes of one XCLIENT command; `None` for each one not given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XclientAttributes {
    /// `ADDR`: the client's IP address.
    pub addr: Option<XclientValue<IpAddr>>,
    /// `NAME`: the client's host name (as the proxy's reverse lookup found it).
    pub name: Option<XclientValue<String>>,
    /// `PORT`: the client's TCP port.
    pub port: Option<XclientValue<u16>>,
    /// `PROTO`: `SMTP` or `ESMTP`.
    pub proto: Option<XclientValue<XclientProto>>,
    /// `HELO`: the name the client gave in its HELO or EHLO.
    pub helo: Option<XclientValue<String>>,
    /// `LOGIN`: the name the client authenticated as (SASL) at the proxy.
    pub login: Option<XclientValue<String>>,
    /// `DESTADDR`: the address the client connected to (the proxy's).
    pub dest_addr: Option<XclientValue<IpAddr>>,
    /// `DESTPORT`: the port the client connected to.
    pub dest_port: Option<XclientValue<u16>>,
}

/// Why the arguments of an XCLIENT command were refused (each maps to `501 5.5.4`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XclientError {
    /// No attribute at all.
    Empty,
    /// A word without `=`, or with an empty name or value.
    NotAnAttribute(String),
    /// An attribute name Postern does not implement.
    UnknownAttribute(String),
    /// The same attribute twice in one command.
    Repeated(String),
    /// A value that is not valid xtext (RFC 3461 §4) or not UTF-8 once decoded.
    BadXtext(String),
    /// A value that is xtext but not what the attribute takes.
    BadValue {
        /// The attribute, upper case.
        attribute: &'static str,
        /// What was expected.
        why: &'static str,
    },
}

impl std::fmt::Display for XclientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => write!(f, "expected XCLIENT attribute=value ..."),
            Self::NotAnAttribute(word) => write!(f, "expected attribute=value, got '{word}'"),
            Self::UnknownAttribute(name) => write!(
                f,
                "unknown XCLIENT attribute '{name}'; expected one of {XCLIENT_ATTRIBUTES}"
            ),
            Self::Repeated(name) => write!(f, "XCLIENT attribute {name} given twice"),
            Self::BadXtext(attribute) => write!(f, "{attribute} is not valid xtext"),
            Self::BadValue { attribute, why } => write!(f, "bad {attribute}: {why}"),
        }
    }
}

impl std::error::Error for XclientError {}

/// Parses the arguments of `XCLIENT` (the text after the verb).
pub fn parse_xclient(args: &str) -> Result<XclientAttributes, XclientError> {
    let mut attributes = XclientAttributes::default();
    let mut any = false;
    for word in args.split_ascii_whitespace() {
        any = true;
        let (name, raw) = match word.split_once('=') {
            Some((name, raw)) if !name.is_empty() && !raw.is_empty() => (name, raw),
            _ => return Err(XclientError::NotAnAttribute(printable(word))),
        };
        let upper = name.to_ascii_uppercase();
        let repeated = || XclientError::Repeated(printable(&upper));
        match upper.as_str() {
            "ADDR" => set(&mut attributes.addr, value(raw, "ADDR", address)?, repeated)?,
            "NAME" => set(
                &mut attributes.name,
                value(raw, "NAME", host_name)?,
                repeated,
            )?,
            "PORT" => set(&mut attributes.port, value(raw, "PORT", port)?, repeated)?,
            "PROTO" => set(&mut attributes.proto, value(raw, "PROTO", proto)?, repeated)?,
            "HELO" => set(&mut attributes.helo, value(raw, "HELO", hello)?, repeated)?,
            "LOGIN" => set(&mut attributes.login, value(raw, "LOGIN", login)?, repeated)?,
            "DESTADDR" => set(
                &mut attributes.dest_addr,
                value(raw, "DESTADDR", address)?,
                repeated,
            )?,
            "DESTPORT" => set(
                &mut attributes.dest_port,
                value(raw, "DESTPORT", port)?,
                repeated,
            )?,
            _ => return Err(XclientError::UnknownAttribute(printable(name))),
        }
    }
    if any {
        Ok(attributes)
    } else {
        Err(XclientError::Empty)
    }
}

fn set<T>(
    slot: &mut Option<XclientValue<T>>,
    value: XclientValue<T>,
    repeated: impl FnOnce() -> XclientError,
) -> Result<(), XclientError> {
    if slot.is_some() {
        return Err(repeated());
    }
    *slot = Some(value);
    Ok(())
}

/// A value: one of the special values, or xtext decoded and then checked by `check`.
fn value<T>(
    raw: &str,
    attribute: &'static str,
    check: fn(String) -> Result<T, &'static str>,
) -> Result<XclientValue<T>, XclientError> {
    if raw.eq_ignore_ascii_case("[UNAVAILABLE]") {
        return Ok(XclientValue::Unavailable);
    }
    if raw.eq_ignore_ascii_case("[TEMPUNAVAIL]") {
        return Ok(XclientValue::TempUnavailable);
    }
    let text = decode_xtext(raw).ok_or_else(|| XclientError::BadXtext(attribute.into()))?;
    check(text)
        .map(XclientValue::Known)
        .map_err(|why| XclientError::BadValue { attribute, why })
}

/// Decodes RFC 3461 xtext: printable ASCII other than `+` and `=` stands for itself,
/// `+HH` for the octet with hex value HH. `None` when `text` is not xtext or does not
/// decode to UTF-8.
pub fn decode_xtext(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => {
                let hex = [bytes.next()?, bytes.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b'!'..=b'~' if b != b'=' => out.push(b),
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// `ADDR`/`DESTADDR`: dotted IPv4, or IPv6 after an `IPV6:` prefix.
fn address(text: String) -> Result<IpAddr, &'static str> {
    const WHY: &str = "expected an IPv4 address or IPV6: and an IPv6 address";
    match text.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("IPV6:") => text[5..]
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| WHY),
        _ => text.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| WHY),
    }
}

/// `PORT`/`DESTPORT`: a decimal TCP port.
fn port(text: String) -> Result<u16, &'static str> {
    const WHY: &str = "expected a port number from 0 to 65535";
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WHY);
    }
    text.parse().map_err(|_| WHY)
}

/// `PROTO`: `SMTP` or `ESMTP`.
fn proto(text: String) -> Result<XclientProto, &'static str> {
    match text.to_ascii_uppercase().as_str() {
        "SMTP" => Ok(XclientProto::Smtp),
        "ESMTP" => Ok(XclientProto::Esmtp),
        _ => Err("expected SMTP or ESMTP"),
    }
}

/// `NAME`: a host name (an address is not a name).
fn host_name(text: String) -> Result<String, &'static str> {
    const WHY: &str = "expected a host name such as client.example.com";
    if text.starts_with('[') || text.parse::<IpAddr>().is_ok() || !is_hello_name(&text) {
        return Err(WHY);
    }
    Ok(text)
}

/// `HELO`: what EHLO would accept (it goes into `Received:` and the records).
fn hello(text: String) -> Result<String, &'static str> {
    if is_hello_name(&text) {
        Ok(text)
    } else {
        Err("expected a domain name or an address literal such as [192.0.2.1]")
    }
}

/// `LOGIN`: a non-empty name of at most [`MAX_VALUE`] octets without control characters.
fn login(text: String) -> Result<String, &'static str> {
    if text.is_empty() || text.len() > MAX_VALUE || text.chars().any(char::is_control) {
        return Err("expected a login name without control characters");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_attribute_parses() {
        let got = parse_xclient(
            "ADDR=203.0.113.9 NAME=client.example PORT=4711 PROTO=esmtp HELO=[203.0.113.9] \
             LOGIN=tim+40example.org DESTADDR=IPV6:2001:db8::25 DESTPORT=587",
        )
        .unwrap();
        assert_eq!(
            got,
            XclientAttributes {
                addr: Some(XclientValue::Known(ip("203.0.113.9"))),
                name: Some(XclientValue::Known("client.example".into())),
                port: Some(XclientValue::Known(4711)),
                proto: Some(XclientValue::Known(XclientProto::Esmtp)),
                helo: Some(XclientValue::Known("[203.0.113.9]".into())),
                login: Some(XclientValue::Known("tim@example.org".into())),
                dest_addr: Some(XclientValue::Known(ip("2001:db8::25"))),
                dest_port: Some(XclientValue::Known(587)),
            }
        );
    }

    #[test]
    fn names_are_case_insensitive_and_only_given_ones_are_set() {
        let got = parse_xclient("addr=IPv6:::1 Proto=SMTP").unwrap();
        assert_eq!(got.addr, Some(XclientValue::Known(ip("::1"))));
        assert_eq!(got.proto, Some(XclientValue::Known(XclientProto::Smtp)));
        assert_eq!((got.name, got.port, got.login), (None, None, None));
    }

    #[test]
    fn special_values() {
        let got =
            parse_xclient("NAME=[UNAVAILABLE] HELO=[TEMPUNAVAIL] ADDR=[UNAVAILABLE]").unwrap();
        assert_eq!(got.name, Some(XclientValue::Unavailable));
        assert_eq!(got.helo, Some(XclientValue::TempUnavailable));
        assert_eq!(got.addr.clone().unwrap().known(), None);
        assert_eq!(got.addr, Some(XclientValue::Unavailable));
    }

    #[test]
    fn xtext_decodes_hex_escapes_and_refuses_the_rest() {
        assert_eq!(decode_xtext("a+2Bb+3Dc").as_deref(), Some("a+b=c"));
        assert_eq!(decode_xtext("caf+C3+A9").as_deref(), Some("café"));
        assert_eq!(decode_xtext("plain").as_deref(), Some("plain"));
        for bad in [
            "a+2", "a+", "a+ZZ", "a=b", "a b", "a\u{7f}", "é", "+FF", "a\tb",
        ] {
            assert_eq!(decode_xtext(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn malformed_commands_are_refused_with_a_reason() {
        let cases: &[(&str, XclientError)] = &[
            ("", XclientError::Empty),
            ("   ", XclientError::Empty),
            ("ADDR", XclientError::NotAnAttribute("ADDR".into())),
            ("ADDR=", XclientError::NotAnAttribute("ADDR=".into())),
            ("=1.2.3.4", XclientError::NotAnAttribute("=1.2.3.4".into())),
            (
                "REVERSE_NAME=x.example",
                XclientError::UnknownAttribute("REVERSE_NAME".into()),
            ),
            (
                "ADDR=192.0.2.1 addr=192.0.2.2",
                XclientError::Repeated("ADDR".into()),
            ),
            ("NAME=a=b", XclientError::BadXtext("NAME".into())),
            (
                "LOGIN=a+0Ab",
                XclientError::BadValue {
                    attribute: "LOGIN",
                    why: "expected a login name without control characters",
                },
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(parse_xclient(args).as_ref(), Err(expected), "{args:?}");
        }
        for (args, attribute) in [
            ("ADDR=2001:db8::1", "ADDR"),
            ("ADDR=IPV6:192.0.2.1", "ADDR"),
            ("ADDR=192.0.2.256", "ADDR"),
            ("ADDR=mx.example", "ADDR"),
            ("DESTADDR=IPV6:", "DESTADDR"),
            ("PORT=65536", "PORT"),
            ("PORT=-1", "PORT"),
            ("PORT=+2B1", "PORT"),
            ("DESTPORT=0x19", "DESTPORT"),
            ("PROTO=LMTP", "PROTO"),
            ("NAME=192.0.2.1", "NAME"),
            ("NAME=[192.0.2.1]", "NAME"),
            ("NAME=bad_host..example", "NAME"),
            ("HELO=a+20b", "HELO"),
            ("HELO=a+28b+29", "HELO"),
        ] {
            match parse_xclient(args) {
                Err(XclientError::BadValue { attribute: a, .. }) => {
                    assert_eq!(a, attribute, "{args}");
                }
                other => panic!("{args}: {other:?}"),
            }
        }
        let long = format!("LOGIN={}", "a".repeat(MAX_VALUE + 1));
        assert!(matches!(
            parse_xclient(&long),
            Err(XclientError::BadValue {
                attribute: "LOGIN",
                ..
            })
        ));
    }

    #[test]
    fn errors_say_what_was_expected() {
        let text = parse_xclient("FOO=1").unwrap_err().to_string();
        assert!(
            text.contains("'FOO'") && text.contains(XCLIENT_ATTRIBUTES),
            "{text}"
        );
        let text = parse_xclient("PORT=x").unwrap_err().to_string();
        assert_eq!(text, "bad PORT: expected a port number from 0 to 65535");
    }
}
