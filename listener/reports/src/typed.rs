//! Values of the `type; value` fields shared by DSNs and ARF reports
//! (Reporting-MTA, Remote-MTA, Final-Recipient, ...).

use serde::Serialize;

/// An MTA named in a report: `Reporting-MTA: dns; mx.example.net`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mta {
    /// The name type, lowercased; `dns` in practice. A value written
    /// without a type is taken as `dns`.
    pub mta_type: String,
    /// The MTA's name, as given.
    pub name: String,
}

impl Mta {
    /// Parses `type; name`.
    pub(crate) fn parse(value: &str) -> Mta {
        let (mta_type, name) = split_typed(value, "dns");
        Mta { mta_type, name }
    }
}

/// An address with its type: `Final-Recipient: rfc822; user@example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypedAddress {
    /// The address type, lowercased: `rfc822`, or `utf-8` (RFC 6533). A
    /// value written without a type is taken as `rfc822`.
    pub address_type: String,
    /// The address, without the type prefix and without surrounding angle
    /// brackets.
    pub address: String,
}

impl TypedAddress {
    /// Parses `type; address`.
    pub(crate) fn parse(value: &str) -> TypedAddress {
        let (address_type, address) = split_typed(value, "rfc822");
        TypedAddress {
            address_type,
            address: strip_angle_brackets(&address).to_owned(),
        }
    }
}

/// Splits `type; rest` into the lowercased type and the trimmed rest; with
/// no `;` (or a type that is not a single token) the whole value is the
/// rest and the type is `default_type`.
pub(crate) fn split_typed(value: &str, default_type: &str) -> (String, String) {
    match value.split_once(';') {
        Some((kind, rest)) if is_token(kind.trim()) => {
            (kind.trim().to_ascii_lowercase(), rest.trim().to_owned())
        }
        _ => (default_type.to_owned(), value.trim().to_owned()),
    }
}

/// Whether `s` is a non-empty run of visible ASCII without spaces.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

/// `<user@example.com>` → `user@example.com`; anything else unchanged.
pub(crate) fn strip_angle_brackets(value: &str) -> &str {
    let value = value.trim();
    value
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .map(str::trim)
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mta_with_and_without_type() {
        assert_eq!(
            Mta::parse("DNS; mx.example.net"),
            Mta {
                mta_type: "dns".into(),
                name: "mx.example.net".into()
            }
        );
        assert_eq!(
            Mta::parse("mx.example.net"),
            Mta {
                mta_type: "dns".into(),
                name: "mx.example.net".into()
            }
        );
    }

    #[test]
    fn address_prefix_and_brackets_are_removed() {
        assert_eq!(
            TypedAddress::parse("rfc822; <User@Example.com>"),
            TypedAddress {
                address_type: "rfc822".into(),
                address: "User@Example.com".into()
            }
        );
        assert_eq!(
            TypedAddress::parse("utf-8;δοκιμή@παράδειγμα.δοκιμή"),
            TypedAddress {
                address_type: "utf-8".into(),
                address: "δοκιμή@παράδειγμα.δοκιμή".into()
            }
        );
        assert_eq!(TypedAddress::parse("a@b").address_type, "rfc822");
        // a ';' inside the address with no type token before it
        assert_eq!(TypedAddress::parse("x y; z").address, "x y; z");
    }

    #[test]
    fn brackets_only_when_both_present() {
        assert_eq!(strip_angle_brackets(" <a@b> "), "a@b");
        assert_eq!(strip_angle_brackets("<a@b"), "<a@b");
        assert_eq!(strip_angle_brackets("<>"), "");
    }
}
