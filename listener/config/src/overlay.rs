//! KumoMTA's `peer` and `via` overlays: listener parameters that apply only to clients
//! from some networks (`peer`, keyed by the client's address) or to connections that
//! arrived on some local address (`via`), and the pure function that resolves them.

use std::{borrow::Cow, collections::BTreeMap, net::IpAddr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::{HumanDuration, InvalidLineEndings, IpNetwork, ListenerConfig, TraceHeaders};

/// Most entries one `peer` or `via` map may hold (bounds the cost of the CRD's rules).
pub const MAX_OVERLAY_ENTRIES: usize = 16;

/// A map keyed by IP addresses or CIDR blocks; a lookup finds the most specific block
/// that holds an address (the longest prefix), as KumoMTA's `CidrMap` does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CidrMap<V>(pub BTreeMap<IpNetwork, V>);

impl<V> Default for CidrMap<V> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<V> CidrMap<V> {
    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of the most specific block holding `ip`, with that block.
    pub fn lookup(&self, ip: IpAddr) -> Option<(&IpNetwork, &V)> {
        self.0
            .iter()
            .filter(|(net, _)| net.contains(ip))
            .max_by_key(|(net, _)| net.0.prefix_len())
    }
}

impl<V: JsonSchema> JsonSchema for CidrMap<V> {
    fn schema_name() -> Cow<'static, str> {
        format!("CidrMap_{}", V::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let value = generator.subschema_for::<V>();
        json_schema!({
            "type": "object",
            "description": "Keys are IP addresses or CIDR blocks with zero host bits; the most specific block holding an address applies.",
            "additionalProperties": value,
            "maxProperties": MAX_OVERLAY_ENTRIES,
            "x-kubernetes-validations": [{
                "rule": "self.all(k, isIP(k) || (isCIDR(k) && cidr(k).masked() == cidr(k)))",
                "message": "keys must be IP addresses such as 10.0.0.1 or CIDR blocks with zero host bits such as 10.0.0.0/24",
            }],
        })
    }
}

/// Listener parameters that a `peer` or `via` entry may override; each one given
/// replaces the listener's value whole (a `meta` map is not merged).
/// `listen`, `maxConnections`, `domains`, the TLS sources, `tls`, `auth`, `delivery`
/// and the trusted peer lists (`proxyProtocolFrom`, `xclientFrom`) belong to the
/// listener itself and cannot be overridden.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerOverrides {
    /// See the listener's `allowXclient` (switched on, the listener's `xclientFrom`
    /// must name someone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_xclient: Option<bool>,
    /// See the listener's `banner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
    /// See the listener's `clientTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_timeout: Option<HumanDuration>,
    /// See the listener's `commandTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_timeout: Option<HumanDuration>,
    /// See the listener's `dataTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_timeout: Option<HumanDuration>,
    /// See the listener's `dataProcessingTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_processing_timeout: Option<HumanDuration>,
    /// See the listener's `deferredSpool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_spool: Option<bool>,
    /// See the listener's `hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// See the listener's `invalidLineEndings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_line_endings: Option<InvalidLineEndings>,
    /// See the listener's `lineLengthHardLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub line_length_hard_limit: Option<u32>,
    /// See the listener's `maxMessagesPerConnection`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_messages_per_connection: Option<u32>,
    /// See the listener's `maxRecipientsPerMessage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_recipients_per_message: Option<u32>,
    /// See the listener's `maxMessageSize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_message_size: Option<u64>,
    /// See the listener's `meta` (replaces the whole map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<BTreeMap<String, String>>,
    /// See the listener's `relayHosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_hosts: Option<Vec<IpNetwork>>,
    /// See the listener's `traceHeaders`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_headers: Option<TraceHeaders>,
    /// See the listener's `writeTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_timeout: Option<HumanDuration>,
}

impl ListenerOverrides {
    /// Writes every parameter this entry gives over `config`'s.
    pub fn apply_to(&self, config: &mut ListenerConfig) {
        macro_rules! take {
            ($($field:ident),* $(,)?) => {
                $(if let Some(value) = &self.$field {
                    config.$field = value.clone();
                })*
            };
        }
        take!(
            allow_xclient,
            banner,
            client_timeout,
            command_timeout,
            data_timeout,
            data_processing_timeout,
            deferred_spool,
            invalid_line_endings,
            line_length_hard_limit,
            max_messages_per_connection,
            max_recipients_per_message,
            max_message_size,
            meta,
            relay_hosts,
            trace_headers,
            write_timeout,
        );
        if let Some(hostname) = &self.hostname {
            config.hostname = Some(hostname.clone());
        }
    }
}

impl ListenerConfig {
    /// The parameters for one connection from `peer` to `local`: the listener's, then
    /// the most specific `peer` entry holding the client's address, then the most
    /// specific `via` entry holding the local address (KumoMTA's order: via after
    /// peer). Borrowed when no entry applies.
    pub fn for_connection(&self, peer: IpAddr, local: IpAddr) -> Cow<'_, ListenerConfig> {
        let by_peer = self.peer.lookup(peer).map(|(_, o)| o);
        let by_via = self.via.lookup(local).map(|(_, o)| o);
        if by_peer.is_none() && by_via.is_none() {
            return Cow::Borrowed(self);
        }
        let mut config = self.clone();
        for overrides in by_peer.into_iter().chain(by_via) {
            overrides.apply_to(&mut config);
        }
        Cow::Owned(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const LISTENER: &str = r#"
banner: base
hostname: mx.base.test
relayHosts: ["127.0.0.1"]
maxMessageSize: 1000
peer:
  10.0.0.0/8: {banner: ten, maxMessageSize: 2000}
  10.1.0.0/16: {banner: ten-one}
  10.1.2.3: {hostname: host.peer.test}
  ::1: {banner: six}
via:
  192.0.2.25: {hostname: mx.via.test, banner: via}
  0.0.0.0/0: {relayHosts: []}
"#;

    /// (peer, local) → (banner, hostname, maxMessageSize, relayHosts count).
    #[test]
    fn peer_then_via_most_specific_first() {
        let config: ListenerConfig = serde_yaml::from_str(LISTENER).unwrap();
        let cases = [
            // Only the catch-all via entry, which empties relayHosts.
            ("192.0.2.1", "198.51.100.1", "base", "mx.base.test", 1000, 0),
            // The /8 peer entry (two fields), then the via catch-all.
            ("10.9.9.9", "198.51.100.1", "ten", "mx.base.test", 2000, 0),
            // The /16 beats the /8: only its banner; maxMessageSize stays the base's.
            (
                "10.1.9.9",
                "198.51.100.1",
                "ten-one",
                "mx.base.test",
                1000,
                0,
            ),
            // The host entry beats both: only its hostname.
            (
                "10.1.2.3",
                "198.51.100.1",
                "base",
                "host.peer.test",
                1000,
                0,
            ),
            // via after peer: the via entry's banner and hostname win; the host entry
            // beats the catch-all, so relayHosts stays the listener's.
            ("10.1.2.3", "192.0.2.25", "via", "mx.via.test", 1000, 1),
            // An IPv4-mapped peer matches IPv4 entries.
            (
                "::ffff:10.2.0.1",
                "198.51.100.1",
                "ten",
                "mx.base.test",
                2000,
                0,
            ),
            // IPv6 peer, IPv6 local: no via entry covers ::1.
            ("::1", "::1", "six", "mx.base.test", 1000, 1),
        ];
        for (peer, local, banner, hostname, size, relay_hosts) in cases {
            let got = config.for_connection(ip(peer), ip(local));
            assert_eq!(
                (
                    got.banner.as_str(),
                    got.hostname.as_deref().unwrap(),
                    got.max_message_size,
                    got.relay_hosts.len()
                ),
                (banner, hostname, size, relay_hosts),
                "peer {peer} via {local}"
            );
        }
    }

    #[test]
    fn no_entry_borrows_the_listener() {
        let config: ListenerConfig =
            serde_yaml::from_str("peer: {10.0.0.0/8: {banner: x}}").unwrap();
        assert!(matches!(
            config.for_connection(ip("192.0.2.1"), ip("127.0.0.1")),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn keys_are_strict_cidrs_and_fields_are_known() {
        for bad in [
            "peer: {10.0.0.1/8: {banner: x}}",
            "peer: {example.com: {banner: x}}",
            "via: {10.0.0.0/8: {listen: '0:25'}}",
            "via: {10.0.0.0/8: {maxConnections: 5}}",
        ] {
            assert!(
                serde_yaml::from_str::<ListenerConfig>(bad).is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn an_entry_that_breaks_a_rule_is_named() {
        let config: ListenerConfig =
            serde_yaml::from_str("via: {10.0.0.0/8: {banner: \"two\\nlines\"}}").unwrap();
        let err = crate::validate_listeners(&[config], "listeners", crate::Context::File)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("listeners[0].via[10.0.0.0/8].banner:"),
            "{err}"
        );
    }

    #[test]
    fn round_trips() {
        let config: ListenerConfig = serde_yaml::from_str(LISTENER).unwrap();
        let text = serde_yaml::to_string(&config).unwrap();
        assert_eq!(
            serde_yaml::from_str::<ListenerConfig>(&text).unwrap(),
            config
        );
    }
}
