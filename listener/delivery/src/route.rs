//! Routing: a recipient domain → its queue, its destination site and the next hop.

use std::{path::PathBuf, sync::Arc};

use postern_config::{DeliveryConfig, DomainMap, RouteConfig, Smarthost};

/// Where a destination's connections go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// The MX hosts of this domain (RFC 5321 §5.1; implicit MX when there is none).
    Mx {
        /// The recipient domain.
        domain: String,
        /// The TCP port of its MX hosts (`smtpPort`).
        port: u16,
    },
    /// A relay host.
    Smarthost(Smarthost),
}

/// One destination: a site with its own connections and limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The site name used in records and metrics: `host:port` of a smarthost, or
    /// `mx:` and the recipient domain.
    pub site: String,
    /// Where to connect.
    pub hop: NextHop,
    /// Concurrent connections to this site.
    pub connection_limit: u32,
    /// Messages per connection.
    pub max_messages_per_connection: u32,
    /// The name this relay gives in EHLO.
    pub ehlo_name: String,
    /// The CA certificates (PEM) that verify this destination's TLS certificate: the
    /// listener's `caFile`; `None` for the system's trust store.
    pub ca_file: Option<PathBuf>,
}

/// A recipient domain's route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The scheduled queue: the recipient domain, as the Reception record names it.
    pub queue: String,
    /// The destination.
    pub destination: Arc<Destination>,
}

/// A listener's routing table.
#[derive(Clone, Debug)]
pub struct Router {
    default: RouteConfig,
    routes: DomainMap<RouteConfig>,
    connection_limit: u32,
    max_messages_per_connection: u32,
    ehlo_name: String,
    ca_file: Option<PathBuf>,
    smtp_port: u16,
}

impl Router {
    /// The routes of a `delivery` section; `ehlo_name` is the listener's hostname.
    pub fn new(config: &DeliveryConfig, ehlo_name: &str) -> Self {
        Self {
            default: RouteConfig {
                smarthost: config.smarthost.clone(),
                connection_limit: None,
                max_messages_per_connection: None,
            },
            routes: DomainMap::new(config.routes.iter().map(|(k, r)| (k, r.clone()))),
            connection_limit: config.connection_limit,
            max_messages_per_connection: config.max_messages_per_connection,
            ehlo_name: ehlo_name.to_owned(),
            ca_file: config.ca_file.clone(),
            smtp_port: config.smtp_port,
        }
    }

    /// The route for a recipient domain (compared in lowercase).
    pub fn route(&self, domain: &str) -> Route {
        let domain = domain.to_ascii_lowercase();
        let route = self.routes.lookup(&domain).unwrap_or(&self.default);
        let (site, hop) = match &route.smarthost {
            Some(s) => (smarthost_site(s), NextHop::Smarthost(s.clone())),
            None => (
                format!("mx:{domain}"),
                NextHop::Mx {
                    domain: domain.clone(),
                    port: self.smtp_port,
                },
            ),
        };
        Route {
            queue: domain,
            destination: Arc::new(Destination {
                site,
                hop,
                connection_limit: route.connection_limit.unwrap_or(self.connection_limit),
                max_messages_per_connection: route
                    .max_messages_per_connection
                    .unwrap_or(self.max_messages_per_connection),
                ehlo_name: self.ehlo_name.clone(),
                ca_file: self.ca_file.clone(),
            }),
        }
    }
}

/// `host:port`, with brackets around an IPv6 literal.
fn smarthost_site(s: &Smarthost) -> String {
    if s.host.contains(':') {
        format!("[{}]:{}", s.host, s.port)
    } else {
        format!("{}:{}", s.host, s.port)
    }
}

/// The domain of an address (after the last `@`), lowercased; "" when there is none.
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(yaml: &str) -> Router {
        Router::new(&serde_yaml::from_str(yaml).unwrap(), "mx.postern.test")
    }

    const ROUTES: &str = r#"
smarthost: {host: relay.example.net, port: 2525, tls: none}
connectionLimit: 8
routes:
  example.org: {}
  "*.corp.example": {smarthost: {host: "2001:db8::25", port: 25, tls: required}, connectionLimit: 2, maxMessagesPerConnection: 10}
  mx.corp.example: {}
"#;

    #[test]
    fn table() {
        let r = router(ROUTES);
        for (domain, queue, site, limit, per_conn) in [
            ("gmail.com", "gmail.com", "relay.example.net:2525", 8, 1024),
            ("Example.ORG", "example.org", "mx:example.org", 8, 1024),
            (
                "a.corp.example",
                "a.corp.example",
                "[2001:db8::25]:25",
                2,
                10,
            ),
            (
                "x.y.corp.example",
                "x.y.corp.example",
                "[2001:db8::25]:25",
                2,
                10,
            ),
            (
                "mx.corp.example",
                "mx.corp.example",
                "mx:mx.corp.example",
                8,
                1024,
            ),
            (
                "corp.example",
                "corp.example",
                "relay.example.net:2525",
                8,
                1024,
            ),
        ] {
            let route = r.route(domain);
            assert_eq!(route.queue, queue, "{domain}");
            assert_eq!(route.destination.site, site, "{domain}");
            assert_eq!(route.destination.connection_limit, limit, "{domain}");
            assert_eq!(
                route.destination.max_messages_per_connection, per_conn,
                "{domain}"
            );
        }
        assert_eq!(
            r.route("example.org").destination.hop,
            NextHop::Mx {
                domain: "example.org".into(),
                port: 25
            }
        );
    }

    #[test]
    fn mx_routes_take_the_section_s_smtp_port_and_every_route_its_ca_file() {
        let r = router(
            "{smtpPort: 2526, caFile: /etc/postern/ca.pem, routes: {relay.test: {smarthost: {host: relay.test}}}}",
        );
        let mx = r.route("example.com").destination;
        assert_eq!(
            mx.hop,
            NextHop::Mx {
                domain: "example.com".into(),
                port: 2526
            }
        );
        let relay = r.route("relay.test").destination;
        assert_eq!(relay.site, "relay.test:25");
        for destination in [mx, relay] {
            assert_eq!(
                destination.ca_file.as_deref(),
                Some(std::path::Path::new("/etc/postern/ca.pem"))
            );
        }
        assert_eq!(router("{}").route("example.com").destination.ca_file, None);
    }

    #[test]
    fn without_a_smarthost_everything_goes_to_mx() {
        let route = router("{}").route("example.com");
        assert_eq!(route.destination.site, "mx:example.com");
        assert_eq!(route.destination.connection_limit, 32);
    }

    #[test]
    fn domains_of_addresses() {
        assert_eq!(domain_of("a@B.example"), "b.example");
        assert_eq!(domain_of("\"a@b\"@c.example"), "c.example");
        assert_eq!(domain_of("postmaster"), "");
    }
}
