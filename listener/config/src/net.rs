//! Network values of the configuration: relay networks and listen addresses.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    str::FromStr,
};

use ipnet::IpNet;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_with::{DeserializeFromStr, SerializeDisplay};

/// An IP literal (`127.0.0.1`, `::1`) or a CIDR block (`10.0.0.0/24`, `2001:db8::/32`).
///
/// CIDR blocks are strict: host bits must be zero, so a typo such as `10.0.0.1/24`
/// is refused instead of silently widening or narrowing a relay rule.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, SerializeDisplay, DeserializeFromStr,
)]
pub struct IpNetwork(pub IpNet);

impl IpNetwork {
    /// Whether `ip` lies inside this network. An IPv4 peer and its IPv4-mapped IPv6
    /// form (`10.0.0.1`, `::ffff:10.0.0.1`) are one peer: each matches networks written
    /// in either family (`10.0.0.0/8`, `::ffff:0:0/96`, `::/0`).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v4, mapped) = match ip {
            IpAddr::V4(v4) => (Some(v4), Some(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => (v6.to_ipv4_mapped(), Some(v6)),
        };
        match self.0 {
            IpNet::V4(net) => v4.is_some_and(|v4| net.contains(&v4)),
            IpNet::V6(net) => mapped.is_some_and(|v6| net.contains(&v6)),
        }
    }
}

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected an IP address or CIDR block such as 127.0.0.1, ::1 or 10.0.0.0/24";
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self(IpNet::from(ip)));
        }
        let net: IpNet = s
            .parse()
            .map_err(|_| format!("'{s}' is not valid; {expected}"))?;
        if net.trunc() != net {
            return Err(format!(
                "'{s}' has host bits set; did you mean {}?",
                net.trunc()
            ));
        }
        Ok(Self(net))
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            self.0.addr().fmt(f)
        } else {
            self.0.fmt(f)
        }
    }
}

impl JsonSchema for IpNetwork {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IpNetwork".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "An IP address or a CIDR block with zero host bits, e.g. 127.0.0.1, ::1, 10.0.0.0/24.",
            "maxLength": 43,
            "x-kubernetes-validations": [{
                "rule": "isIP(self) || (isCIDR(self) && cidr(self).masked() == cidr(self))",
                "message": "must be an IP address such as 10.0.0.1 or a CIDR block with zero host bits such as 10.0.0.0/24",
            }],
        })
    }
}

/// The address a listener binds: `IP:PORT`, `[v6]:PORT`, or `0:PORT` for every IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, SerializeDisplay, DeserializeFromStr)]
pub struct ListenAddr(pub SocketAddr);

impl ListenAddr {
    /// The socket address to bind.
    pub const fn socket_addr(self) -> SocketAddr {
        self.0
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("'{s}' is not a listen address; expected IP:PORT, [IPv6]:PORT or 0:PORT");
        if let Some(port) = s.strip_prefix("0:") {
            let port: u16 = port.parse().map_err(|_| bad())?;
            return Ok(Self(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)));
        }
        s.parse().map(Self).map_err(|_| bad())
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl JsonSchema for ListenAddr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ListenAddr".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "IP:PORT, [IPv6]:PORT, or 0:PORT for all IPv4 addresses, e.g. 0.0.0.0:2525.",
            "maxLength": 47,
            "pattern": "^(0|[0-9.]+|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}$",
            "x-kubernetes-validations": [{
                "rule": "self.startsWith('0:') || (self.startsWith('[') ? isIP(self.substring(1, self.lastIndexOf(']'))) && ip(self.substring(1, self.lastIndexOf(']'))).family() == 6 : isIP(self.substring(0, self.lastIndexOf(':'))) && ip(self.substring(0, self.lastIndexOf(':'))).family() == 4)",
                "message": "the address must be an IPv4 address, [IPv6] in brackets, or 0, e.g. 0.0.0.0:25 or [::]:25",
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_become_host_networks() {
        let n: IpNetwork = "127.0.0.1".parse().unwrap();
        assert!(n.contains("127.0.0.1".parse().unwrap()));
        assert!(!n.contains("127.0.0.2".parse().unwrap()));
        assert_eq!(n.to_string(), "127.0.0.1");
        let v6: IpNetwork = "::1".parse().unwrap();
        assert!(v6.contains("::1".parse().unwrap()));
    }

    #[test]
    fn cidr_is_strict_and_says_what_was_meant() {
        let n: IpNetwork = "10.0.0.0/24".parse().unwrap();
        assert!(n.contains("10.0.0.200".parse().unwrap()));
        let err = "10.0.0.1/24".parse::<IpNetwork>().unwrap_err();
        assert!(err.contains("did you mean 10.0.0.0/24"), "{err}");
        assert!("10.0.0.0/33".parse::<IpNetwork>().is_err());
        assert!("example.com".parse::<IpNetwork>().is_err());
    }

    #[test]
    fn mapped_ipv6_peers_match_ipv4_rules() {
        let n: IpNetwork = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!n.contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn ipv6_forms_of_ipv4_networks_match_both_forms_of_a_peer() {
        for net in ["::ffff:0:0/96", "::/0", "::ffff:10.0.0.0/104"] {
            let n: IpNetwork = net.parse().unwrap();
            assert!(n.contains("10.1.2.3".parse().unwrap()), "{net}");
            assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()), "{net}");
        }
        let mapped: IpNetwork = "::ffff:0:0/96".parse().unwrap();
        assert!(!mapped.contains("2001:db8::1".parse().unwrap()));
        assert!(!mapped.contains("::1".parse().unwrap()));
        let all: IpNetwork = "::/0".parse().unwrap();
        assert!(all.contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn listen_forms() {
        assert_eq!(
            "0:25".parse::<ListenAddr>().unwrap().to_string(),
            "0.0.0.0:25"
        );
        assert_eq!(
            "[::1]:2525".parse::<ListenAddr>().unwrap().to_string(),
            "[::1]:2525"
        );
        assert_eq!(
            "127.0.0.1:2525".parse::<ListenAddr>().unwrap().0.port(),
            2525
        );
        for bad in ["localhost:25", "127.0.0.1", "0:99999", "::1:25"] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }
}
