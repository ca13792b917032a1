//! Finding the next hops for a domain (RFC 5321 §5.1) or a smarthost's addresses.
//!
//! MX hosts are tried in order of preference, in random order among equal preferences;
//! a domain without MX records is its own implicit MX (its A/AAAA records); a null MX
//! (`MX 0 .`, RFC 7505) or NXDOMAIN is permanent; SERVFAIL, REFUSED and timeouts are
//! temporary. IPv4 and IPv6 addresses are both used, IPv4 first (most clusters route
//! IPv4 only).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::{Resolver, TokioResolver};
use postern_smtp::reply::Reply;
use rand::seq::SliceRandom;

/// Why a name gave no next hop.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN: the domain does not exist (permanent).
    #[error("{domain} does not exist (NXDOMAIN)")]
    NoSuchDomain {
        /// The name looked up.
        domain: String,
    },
    /// The domain publishes a null MX: it accepts no mail (RFC 7505, permanent).
    #[error("{domain} accepts no mail (null MX)")]
    NullMx {
        /// The domain.
        domain: String,
    },
    /// The domain exists but neither it nor any of its MX hosts has an address
    /// (permanent).
    #[error("{domain} has no usable MX, A or AAAA record")]
    NoAddress {
        /// The domain.
        domain: String,
    },
    /// Not a valid domain name (permanent).
    #[error("'{domain}' is not a valid domain name")]
    InvalidName {
        /// The text given.
        domain: String,
    },
    /// SERVFAIL, REFUSED, a timeout or a network error: try again later.
    #[error("DNS lookup for {domain} failed: {reason}")]
    Temporary {
        /// The name looked up.
        domain: String,
        /// What the resolver said.
        reason: String,
    },
}

impl DnsError {
    /// Whether trying again later cannot help.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::Temporary { .. })
    }

    /// The failure as a synthetic reply: `556 5.1.10` for a null MX (RFC 7505 §4.2),
    /// `550 5.1.2` for a domain that does not exist or is not valid, `550 5.4.4` for no
    /// address (unable to route), `451 4.4.3` for a temporary failure.
    pub fn to_reply(&self) -> Reply {
        let text = self.to_string();
        match self {
            Self::NullMx { .. } => Reply::new(556, "5.1.10", text),
            Self::NoSuchDomain { .. } | Self::InvalidName { .. } => Reply::new(550, "5.1.2", text),
            Self::NoAddress { .. } => Reply::new(550, "5.4.4", text),
            Self::Temporary { .. } => Reply::new(451, "4.4.3", text),
        }
    }
}

/// One host to try, with its addresses in the order to try them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// The host's name (no trailing dot), checked against its TLS certificate; an IP
    /// address for a literal.
    pub name: String,
    /// Its addresses, IPv4 first.
    pub addresses: Vec<IpAddr>,
}

impl NextHop {
    /// The socket addresses to try at `port`, in order.
    pub fn socket_addrs(&self, port: u16) -> impl Iterator<Item = SocketAddr> + '_ {
        self.addresses
            .iter()
            .map(move |ip| SocketAddr::new(*ip, port))
    }
}

/// Orders MX records (preference, host) as RFC 5321 §5.1 says: by preference, and
/// randomly among equal preferences (`shuffle` permutes each group of equals).
pub fn order_mx(
    mut records: Vec<(u16, String)>,
    mut shuffle: impl FnMut(&mut [(u16, String)]),
) -> Vec<(u16, String)> {
    records.sort_by_key(|(preference, _)| *preference);
    let mut start = 0;
    while start < records.len() {
        let preference = records[start].0;
        let end = start + records[start..].partition_point(|(p, _)| *p == preference);
        shuffle(&mut records[start..end]);
        start = end;
    }
    records
}

/// A DNS resolver for next hops.
#[derive(Clone)]
pub struct MxResolver {
    inner: TokioResolver,
    origin: String,
}

impl std::fmt::Debug for MxResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MxResolver")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl MxResolver {
    /// The system's resolver configuration (`/etc/resolv.conf`).
    pub fn from_system_conf() -> Result<Self, DnsError> {
        let builder = Resolver::builder_tokio().map_err(|e| DnsError::Temporary {
            domain: "/etc/resolv.conf".into(),
            reason: e.to_string(),
        })?;
        let inner = builder.build().map_err(|e| DnsError::Temporary {
            domain: "/etc/resolv.conf".into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            inner,
            origin: "/etc/resolv.conf".into(),
        })
    }

    /// Queries the given nameservers (UDP, then TCP for truncated answers) with a
    /// per-query `timeout`, one attempt each: a loopback DNS server in tests, a cluster
    /// DNS service in production.
    pub fn with_nameservers(servers: &[SocketAddr], timeout: Duration) -> Result<Self, DnsError> {
        let name_servers = servers
            .iter()
            .map(|addr| {
                let mut config = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut config.connections {
                    connection.port = addr.port();
                }
                config
            })
            .collect();
        let mut options = ResolverOpts::default();
        options.timeout = timeout;
        options.attempts = 1;
        let inner = Resolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), name_servers),
            TokioRuntimeProvider::default(),
        )
        .with_options(options)
        .build()
        .map_err(|e| DnsError::Temporary {
            domain: "resolver".into(),
            reason: e.to_string(),
        })?;
        let origin = servers
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(",");
        Ok(Self { inner, origin })
    }

    /// The next hops for mail to `domain`: its MX hosts in order, each with addresses,
    /// or the domain itself when it has no MX records (implicit MX).
    pub async fn mx_hosts(&self, domain: &str) -> Result<Vec<NextHop>, DnsError> {
        let name = fqdn(domain)?;
        let records = match self.inner.mx_lookup(name).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            Err(e) if e.is_nx_domain() => {
                return Err(DnsError::NoSuchDomain {
                    domain: domain.into(),
                });
            }
            Err(e) if e.is_no_records_found() => Vec::new(),
            Err(e) => return Err(temporary(domain, &e)),
        };
        if records.iter().any(|(_, exchange)| exchange.is_root()) {
            return Err(DnsError::NullMx {
                domain: domain.into(),
            });
        }
        if records.is_empty() {
            return self.host(domain).await.map(|hop| vec![hop]);
        }
        let records = records
            .into_iter()
            .map(|(preference, exchange)| (preference, host_text(&exchange)))
            .collect();
        let ordered = order_mx(records, |equals| equals.shuffle(&mut rand::rng()));
        let mut hops = Vec::new();
        let mut temporary_failure = None;
        for (_, host) in ordered {
            match self.host(&host).await {
                Ok(hop) => hops.push(hop),
                Err(e @ DnsError::Temporary { .. }) => {
                    tracing::debug!(%domain, mx = %host, error = %e, "MX host lookup failed");
                    temporary_failure = Some(e);
                }
                Err(e) => {
                    tracing::debug!(%domain, mx = %host, error = %e, "MX host has no address")
                }
            }
        }
        match (hops.is_empty(), temporary_failure) {
            (false, _) => Ok(hops),
            (true, Some(e)) => Err(e),
            (true, None) => Err(DnsError::NoAddress {
                domain: domain.into(),
            }),
        }
    }

    /// The addresses of one host (a smarthost, or an MX host): A and AAAA, IPv4 first.
    /// An IP address, bracketed or not, is returned as it is.
    pub async fn host(&self, host: &str) -> Result<NextHop, DnsError> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let literal = literal.strip_prefix("IPv6:").unwrap_or(literal);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(NextHop {
                name: ip.to_string(),
                addresses: vec![ip],
            });
        }
        let name = fqdn(host)?;
        let (v4, v6) = tokio::join!(
            self.inner.ipv4_lookup(name.clone()),
            self.inner.ipv6_lookup(name)
        );
        let mut addresses = Vec::new();
        let mut errors = Vec::new();
        for result in [v4, v6] {
            match result {
                Ok(lookup) => {
                    addresses.extend(lookup.answers().iter().filter_map(|r| match &r.data {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                        _ => None,
                    }))
                }
                Err(e) if e.is_no_records_found() && !e.is_nx_domain() => {}
                Err(e) => errors.push(e),
            }
        }
        if !addresses.is_empty() {
            return Ok(NextHop {
                name: host.trim_end_matches('.').to_string(),
                addresses,
            });
        }
        if let Some(e) = errors.iter().find(|e| !e.is_nx_domain()) {
            return Err(temporary(host, e));
        }
        if !errors.is_empty() {
            return Err(DnsError::NoSuchDomain {
                domain: host.into(),
            });
        }
        Err(DnsError::NoAddress {
            domain: host.into(),
        })
    }
}

/// The name with a trailing dot, so no search domain is ever appended.
fn fqdn(domain: &str) -> Result<Name, DnsError> {
    let text = if domain.ends_with('.') {
        domain.to_string()
    } else {
        format!("{domain}.")
    };
    Name::from_ascii(&text).map_err(|_| DnsError::InvalidName {
        domain: domain.into(),
    })
}

fn host_text(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_string()
}

fn temporary(domain: &str, error: &NetError) -> DnsError {
    DnsError::Temporary {
        domain: domain.into(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(list: &[(u16, &str)]) -> Vec<(u16, String)> {
        list.iter().map(|(p, h)| (*p, h.to_string())).collect()
    }

    #[test]
    fn mx_records_are_ordered_by_preference() {
        let ordered = order_mx(records(&[(20, "b"), (10, "a"), (30, "c")]), |_| {});
        assert_eq!(ordered, records(&[(10, "a"), (20, "b"), (30, "c")]));
    }

    #[test]
    fn only_equal_preferences_are_shuffled() {
        let mut groups = Vec::new();
        let ordered = order_mx(
            records(&[(20, "b1"), (10, "a"), (20, "b2"), (20, "b3"), (30, "c")]),
            |equals| {
                groups.push(equals.len());
                equals.reverse();
            },
        );
        assert_eq!(groups, [1, 3, 1]);
        assert_eq!(
            ordered,
            records(&[(10, "a"), (20, "b3"), (20, "b2"), (20, "b1"), (30, "c")])
        );
    }

    #[test]
    fn a_random_shuffle_keeps_the_preference_order() {
        let input = records(&[
            (10, "a1"),
            (10, "a2"),
            (10, "a3"),
            (5, "first"),
            (50, "last"),
        ]);
        let mut seen_first = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let ordered = order_mx(input.clone(), |e| e.shuffle(&mut rand::rng()));
            assert_eq!(ordered[0].1, "first");
            assert_eq!(ordered[4].1, "last");
            seen_first.insert(ordered[1].1.clone());
        }
        assert_eq!(seen_first.len(), 3, "each equal host comes first sometimes");
    }

    #[test]
    fn dns_failures_map_to_replies() {
        let null = DnsError::NullMx {
            domain: "x.test".into(),
        };
        assert_eq!(null.to_reply().code, 556);
        assert!(null.is_permanent());
        let temp = DnsError::Temporary {
            domain: "x.test".into(),
            reason: "SERVFAIL".into(),
        };
        assert!(!temp.is_permanent());
        assert_eq!(
            temp.to_reply().content(),
            "4.4.3 DNS lookup for x.test failed: SERVFAIL"
        );
    }

    #[test]
    fn names_are_fully_qualified_and_checked() {
        assert_eq!(
            fqdn("example.test").map(|n| n.to_ascii()).ok().as_deref(),
            Some("example.test.")
        );
        assert!(matches!(
            fqdn("bad..name"),
            Err(DnsError::InvalidName { .. })
        ));
    }
}
