//! The PROXY protocol header (HAProxy's, versions 1 and 2) that a load balancer sends
//! before any SMTP, as a pure function over the bytes received so far. The parsing
//! itself is the `ppp` crate's; this module says what the listener needs from it: how
//! many octets the header took and which client it names.

use std::net::SocketAddr;

use ppp::{PartialResult, v1, v2};

/// The longest header accepted: v2's 16 fixed octets and at most 65535 more.
pub const MAX_HEADER: usize = 16 + u16::MAX as usize;

/// What the first octets of a connection hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// Not a whole header yet: read more.
    Incomplete,
    /// Not a PROXY header, or a malformed one.
    Invalid(String),
    /// A whole header of `len` octets; the SMTP session starts after it.
    Complete {
        /// Octets the header took.
        len: usize,
        /// `1` (text) or `2` (binary).
        version: u8,
        /// The client and the address it connected to, as the balancer saw them;
        /// `None` when the header names no TCP addresses (v1 `UNKNOWN`, v2 `LOCAL`
        /// such as a health check, or a non-IP family): the connection's own
        /// addresses stand.
        addresses: Option<ProxiedAddresses>,
    },
}

/// The addresses a PROXY header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxiedAddresses {
    /// The client, as the balancer saw it.
    pub source: SocketAddr,
    /// The address the client connected to (the balancer's).
    pub destination: SocketAddr,
}

/// The longest v1 header, CRLF included (the protocol's limit).
const MAX_V1: usize = 107;

/// Parses the start of `input`: a v1 or v2 PROXY header, whole, partial or invalid.
pub fn parse_proxy_header(input: &[u8]) -> ProxyHeader {
    match input.first() {
        None => ProxyHeader::Incomplete,
        // The v2 signature begins with CR; a v1 header with `PROXY`.
        Some(b'\r') => v2_header(input),
        Some(_) => v1_header(input),
    }
}

/// A v1 header is one line: it is judged only once its CRLF is there (`ppp` alone
/// would call some prefixes malformed, e.g. one that ends inside the last port).
fn v1_header(input: &[u8]) -> ProxyHeader {
    let window = &input[..input.len().min(MAX_V1)];
    let Some(cr) = memchr::memmem::find(window, b"\r\n") else {
        let prefix = &window[..window.len().min(6)];
        return if window.len() < MAX_V1 && b"PROXY ".starts_with(prefix) {
            ProxyHeader::Incomplete
        } else {
            ProxyHeader::Invalid("not a PROXY protocol header".into())
        };
    };
    match v1::Header::try_from(&input[..cr + 2]) {
        Ok(header) => ProxyHeader::Complete {
            len: header.header.len(),
            version: 1,
            addresses: match header.addresses {
                v1::Addresses::Tcp4(a) => Some(ProxiedAddresses {
                    source: (a.source_address, a.source_port).into(),
                    destination: (a.destination_address, a.destination_port).into(),
                }),
                v1::Addresses::Tcp6(a) => Some(ProxiedAddresses {
                    source: (a.source_address, a.source_port).into(),
                    destination: (a.destination_address, a.destination_port).into(),
                }),
                v1::Addresses::Unknown => None,
            },
        },
        Err(e) => ProxyHeader::Invalid(format!("PROXY v1: {e}")),
    }
}

fn v2_header(input: &[u8]) -> ProxyHeader {
    let result = v2::Header::try_from(input);
    if result.is_incomplete() {
        return ProxyHeader::Incomplete;
    }
    match result {
        Ok(header) => ProxyHeader::Complete {
            len: header.len(),
            version: 2,
            addresses: match (header.command, header.addresses) {
                (v2::Command::Local, _) => None,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Some(ProxiedAddresses {
                    source: (a.source_address, a.source_port).into(),
                    destination: (a.destination_address, a.destination_port).into(),
                }),
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Some(ProxiedAddresses {
                    source: (a.source_address, a.source_port).into(),
                    destination: (a.destination_address, a.destination_port).into(),
                }),
                (v2::Command::Proxy, _) => None,
            },
        },
        Err(e) => ProxyHeader::Invalid(format!("PROXY v2: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(source: &str, destination: &str) -> Option<ProxiedAddresses> {
        Some(ProxiedAddresses {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
        })
    }

    #[test]
    fn v1_tcp4_and_tcp6_name_the_client() {
        let input = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO x\r\n";
        assert_eq!(
            parse_proxy_header(input),
            ProxyHeader::Complete {
                len: 44,
                version: 1,
                addresses: addrs("192.0.2.7:40000", "198.51.100.1:25"),
            }
        );
        assert_eq!(&input[44..], b"EHLO x\r\n");
        let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 25\r\n";
        assert_eq!(
            parse_proxy_header(v6),
            ProxyHeader::Complete {
                len: v6.len(),
                version: 1,
                addresses: addrs("[2001:db8::7]:40000", "[2001:db8::1]:25"),
            }
        );
    }

    #[test]
    fn v1_unknown_keeps_the_connection_addresses() {
        let input = b"PROXY UNKNOWN\r\n";
        assert_eq!(
            parse_proxy_header(input),
            ProxyHeader::Complete {
                len: input.len(),
                version: 1,
                addresses: None,
            }
        );
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n";
        let v2 = v2_header(v2::Command::Proxy);
        for header in [&v1[..], &v2[..]] {
            for end in 0..header.len() {
                assert_eq!(
                    parse_proxy_header(&header[..end]),
                    ProxyHeader::Incomplete,
                    "{:?}",
                    &header[..end]
                );
            }
        }
    }

    fn v2_header(command: v2::Command) -> Vec<u8> {
        let addresses: v2::Addresses = (
            "192.0.2.7:40000".parse::<SocketAddr>().unwrap(),
            "198.51.100.1:25".parse::<SocketAddr>().unwrap(),
        )
            .into();
        v2::Builder::with_addresses(v2::Version::Two | command, v2::Protocol::Stream, addresses)
            .write_tlv(v2::Type::NoOp, b"pad")
            .unwrap()
            .build()
            .unwrap()
    }

    #[test]
    fn v2_proxy_names_the_client_and_local_does_not() {
        let mut input = v2_header(v2::Command::Proxy);
        let len = input.len();
        input.extend_from_slice(b"EHLO x\r\n");
        assert_eq!(
            parse_proxy_header(&input),
            ProxyHeader::Complete {
                len,
                version: 2,
                addresses: addrs("192.0.2.7:40000", "198.51.100.1:25"),
            }
        );
        let local = v2_header(v2::Command::Local);
        assert!(matches!(
            parse_proxy_header(&local),
            ProxyHeader::Complete {
                version: 2,
                addresses: None,
                ..
            }
        ));
    }

    #[test]
    fn smtp_or_garbage_instead_of_a_header_is_invalid() {
        for input in [
            &b"EHLO client.example\r\n"[..],
            b"PROXY TCP4 not-an-ip 198.51.100.1 1 25\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 99999 25\r\n",
            b"PROXY TCP9 192.0.2.7 198.51.100.1 1 25\r\n",
            b"\r\n\r\n\0\r\nQUIT\nXXXXXXXXXXXXXXXXXXX",
        ] {
            assert!(
                matches!(parse_proxy_header(input), ProxyHeader::Invalid(_)),
                "{:?}: {:?}",
                String::from_utf8_lossy(input),
                parse_proxy_header(input)
            );
        }
    }

    #[test]
    fn a_v1_line_without_its_end_is_invalid_past_the_longest_header() {
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert!(matches!(parse_proxy_header(&long), ProxyHeader::Invalid(_)));
    }
}
