//! The relay decision, exactly as `start_esmtp_listener` describes it.
//!
//! A peer in `relayHosts` may relay anywhere. Otherwise the recipient's domain is looked
//! up in `domains` (an exact key beats a `*.` wildcard): `relayTo` lets anyone relay to it,
//! and `relayFrom` on the *sender's* domain lets listed peers relay anywhere. A client
//! that authenticated (SMTP AUTH) may relay anywhere when the listener's `auth.relay` is
//! on, or when the sender's domain lists its identity in `relayFromAuthz`. A recipient
//! is accepted at RCPT when it may be relayed or its domain logs OOB or ARF reports.

use std::net::IpAddr;

use postern_config::{DomainConfig, DomainMap, IpNetwork, ListenerConfig};

/// What a listener's rules say about one (peer, sender, recipient).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The message may be relayed to this recipient.
    pub relay: bool,
    /// The recipient's domain has `relayTo`.
    pub relay_to: bool,
    /// The recipient's domain logs RFC 3464 bounce reports.
    pub log_oob: bool,
    /// The recipient's domain logs RFC 5965 feedback reports.
    pub log_arf: bool,
}

impl Decision {
    /// Whether RCPT TO is accepted: relaying, or a report domain.
    pub const fn accepts(&self) -> bool {
        self.relay || self.log_oob || self.log_arf
    }
}

/// A listener's relay rules, with domain keys normalised for lookup.
#[derive(Clone, Debug)]
pub struct RelayPolicy {
    relay_hosts: Vec<IpNetwork>,
    domains: DomainMap<DomainConfig>,
    authenticated_relay: bool,
}

impl RelayPolicy {
    /// Builds the policy of one listener.
    pub fn new(config: &ListenerConfig) -> Self {
        Self {
            relay_hosts: config.relay_hosts.clone(),
            domains: DomainMap::new(config.domains.iter().map(|(k, d)| (k, d.clone()))),
            authenticated_relay: config.auth.as_ref().is_some_and(|a| a.relay),
        }
    }

    /// The rules for a (lowercase ASCII) domain: the exact entry, else the wildcard with
    /// the longest matching suffix. `*.example.com` matches `a.example.com` and
    /// `a.b.example.com`, never `example.com` itself.
    pub fn lookup(&self, domain: &str) -> Option<&DomainConfig> {
        self.domains.lookup(domain)
    }

    /// Whether the peer is one of `relayHosts`.
    pub fn is_relay_host(&self, peer: IpAddr) -> bool {
        self.relay_hosts.iter().any(|n| n.contains(peer))
    }

    /// Decides for one recipient. `authz` is the identity the client authenticated as,
    /// if it did; `sender_domain` is None for the null sender.
    pub fn decide(
        &self,
        peer: IpAddr,
        authz: Option<&str>,
        sender_domain: Option<&str>,
        recipient_domain: &str,
    ) -> Decision {
        let rcpt = self.lookup(recipient_domain).cloned().unwrap_or_default();
        let sender_rules = sender_domain.and_then(|d| self.lookup(d));
        let from_allowed = sender_rules.is_some_and(|d| {
            d.relay_from.iter().any(|n| n.contains(peer))
                || authz.is_some_and(|id| d.relay_from_authz.iter().any(|a| a == id))
        });
        let authenticated = authz.is_some() && self.authenticated_relay;
        Decision {
            relay: self.is_relay_host(peer) || from_allowed || rcpt.relay_to || authenticated,
            relay_to: rcpt.relay_to,
            log_oob: rcpt.log_oob,
            log_arf: rcpt.log_arf,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> RelayPolicy {
        let config: ListenerConfig = serde_yaml::from_str(yaml).unwrap();
        RelayPolicy::new(&config)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const SEED: &str = r#"
relayHosts: ["127.0.0.1", "::1"]
domains:
  example.com: {relayTo: true}
  bounce.example.com: {logOob: true}
  fbl.example.com: {logArf: true}
  send.example.com: {relayFrom: ["10.0.0.0/24"]}
  "*.example.com": {logOob: true, logArf: true, relayTo: true}
  www.example.com: {relayTo: false, logArf: false, logOob: false}
"#;

    #[test]
    fn relay_hosts_relay_anywhere() {
        let p = policy(SEED);
        assert!(
            p.decide(ip("127.0.0.1"), None, Some("x.org"), "gmail.com")
                .relay
        );
        assert!(p.decide(ip("::1"), None, None, "gmail.com").relay);
        assert!(
            !p.decide(ip("192.0.2.1"), None, Some("x.org"), "gmail.com")
                .accepts()
        );
    }

    #[test]
    fn relay_to_lets_anyone_send_to_the_domain() {
        let d = policy(SEED).decide(ip("192.0.2.1"), None, None, "example.com");
        assert!(d.relay && d.relay_to && !d.log_oob);
    }

    #[test]
    fn relay_from_needs_sender_domain_and_peer() {
        let p = policy(SEED);
        assert!(
            p.decide(ip("10.0.0.7"), None, Some("send.example.com"), "gmail.com")
                .relay
        );
        assert!(
            !p.decide(ip("10.0.1.7"), None, Some("send.example.com"), "gmail.com")
                .relay
        );
        assert!(
            !p.decide(ip("10.0.0.7"), None, Some("other.com"), "gmail.com")
                .relay
        );
    }

    #[test]
    fn report_domains_are_accepted_without_relaying() {
        let p = policy(SEED);
        let oob = p.decide(ip("192.0.2.1"), None, None, "bounce.example.com");
        assert!(oob.accepts() && oob.log_oob && !oob.relay);
        let arf = p.decide(ip("192.0.2.1"), None, None, "fbl.example.com");
        assert!(arf.accepts() && arf.log_arf && !arf.relay);
    }

    #[test]
    fn wildcards_match_subdomains_but_not_the_apex_and_exact_keys_win() {
        let p = policy(SEED);
        let sub = p.decide(ip("192.0.2.1"), None, None, "a.b.example.com");
        assert!(sub.relay && sub.log_oob && sub.log_arf);
        assert!(
            !p.decide(ip("192.0.2.1"), None, None, "www.example.com")
                .accepts()
        );
        let apex = policy("domains: {'*.example.org': {relayTo: true}}");
        assert!(
            !apex
                .decide(ip("192.0.2.1"), None, None, "example.org")
                .accepts()
        );
        assert!(
            apex.decide(ip("192.0.2.1"), None, None, "mx.example.org")
                .accepts()
        );
    }

    #[test]
    fn the_longest_wildcard_wins() {
        let p = policy(
            "domains: {'*.example.org': {relayTo: true}, '*.in.example.org': {logOob: true}}",
        );
        let d = p.decide(ip("192.0.2.1"), None, None, "x.in.example.org");
        assert!(d.log_oob && !d.relay_to);
    }

    #[test]
    fn ipv6_relay_hosts_and_mapped_peers() {
        let p = policy("relayHosts: ['2001:db8::/32', '10.0.0.0/8']");
        assert!(p.decide(ip("2001:db8::25"), None, None, "x.org").relay);
        assert!(!p.decide(ip("2001:db9::25"), None, None, "x.org").relay);
        assert!(p.decide(ip("::ffff:10.9.9.9"), None, None, "x.org").relay);
    }

    #[test]
    fn authenticated_clients_relay_by_auth_relay_or_relay_from_authz() {
        let open = policy("relayHosts: []\nauth: {credentials: /c}");
        assert!(
            open.decide(ip("192.0.2.1"), Some("app"), None, "x.org")
                .relay
        );
        assert!(!open.decide(ip("192.0.2.1"), None, None, "x.org").accepts());
        let by_domain = policy(
            "relayHosts: []\nauth: {credentials: /c, relay: false}\ndomains: {send.example.com: {relayFromAuthz: [app]}}",
        );
        let decide = |authz, sender| by_domain.decide(ip("192.0.2.1"), authz, sender, "x.org");
        assert!(decide(Some("app"), Some("send.example.com")).relay);
        assert!(!decide(Some("other"), Some("send.example.com")).relay);
        assert!(!decide(Some("app"), Some("elsewhere.org")).relay);
        assert!(!decide(None, Some("send.example.com")).relay);
    }

    #[test]
    fn keys_are_case_insensitive() {
        assert!(
            policy("domains: {Example.COM: {relayTo: true}}")
                .decide(ip("192.0.2.1"), None, None, "example.com")
                .relay
        );
    }
}
