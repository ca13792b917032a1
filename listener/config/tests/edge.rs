//! The fields of a listener at the edge: PROXY protocol and client certificates.

use postern_config::{Config, KeySource};

fn error_of(yaml: &str) -> String {
    Config::parse(yaml).unwrap_err().to_string()
}

#[test]
fn edge_fields_parse_and_default_off() {
    let config = Config::parse(
        r#"
listeners:
  - requireProxyProtocol: true
    proxyProtocolFrom: ["10.0.0.0/8", "::1"]
    tlsRequiredClientCa: /etc/postern/client-ca.pem
"#,
    )
    .unwrap();
    let l = &config.listeners[0];
    assert!(l.require_proxy_protocol);
    let from: Vec<String> = l
        .proxy_protocol_from
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(from, ["10.0.0.0/8", "::1"]);
    assert_eq!(
        l.tls_required_client_ca,
        Some(KeySource::File {
            path: "/etc/postern/client-ca.pem".into()
        })
    );
    let default = &Config::parse("{}").unwrap().listeners[0];
    assert!(!default.require_proxy_protocol && default.proxy_protocol_from.is_empty());
    assert_eq!(default.tls_required_client_ca, None);
}

#[test]
fn the_proxy_switch_needs_its_list_and_the_list_needs_its_switch() {
    for (yaml, field, says) in [
        (
            "listeners: [{requireProxyProtocol: true}]",
            "listeners[0].proxyProtocolFrom",
            "requireProxyProtocol needs proxyProtocolFrom",
        ),
        (
            "listeners: [{proxyProtocolFrom: [10.0.0.1]}]",
            "listeners[0].proxyProtocolFrom",
            "only used with requireProxyProtocol: true",
        ),
        (
            "listeners: [{requireProxyProtocol: true, proxyProtocolFrom: ['10.0.0.1/8']}]",
            "listeners[0].proxyProtocolFrom[0]",
            "did you mean 10.0.0.0/8",
        ),
    ] {
        let error = error_of(yaml);
        assert!(error.contains(field), "{yaml}: {error}");
        assert!(error.contains(says), "{yaml}: {error}");
    }
}

#[test]
fn a_client_ca_secret_only_works_in_kubernetes() {
    let error = error_of("listeners: [{tlsRequiredClientCa: {secretName: client-ca}}]");
    assert!(
        error.contains("listeners[0].tlsRequiredClientCa"),
        "{error}"
    );
    assert!(error.contains("only works in an EsmtpListener"), "{error}");
}

#[test]
fn xclient_is_off_by_default_and_takes_a_list_of_proxies() {
    let default = &Config::parse("{}").unwrap().listeners[0];
    assert!(!default.allow_xclient && default.xclient_from.is_empty());
    let config = Config::parse(
        "listeners: [{allowXclient: true, xclientFrom: ['10.0.0.0/8', '::1'], relayHosts: []}]",
    )
    .unwrap();
    let l = &config.listeners[0];
    assert!(l.allow_xclient);
    let from: Vec<String> = l.xclient_from.iter().map(ToString::to_string).collect();
    assert_eq!(from, ["10.0.0.0/8", "::1"]);
    // IPv4-mapped peers match IPv4 entries, as in relayHosts.
    assert!(l.xclient_from[0].contains("::ffff:10.1.2.3".parse().unwrap()));
    // Round trip: written out and read back, the same.
    let yaml = serde_yaml::to_string(&config).unwrap();
    assert_eq!(Config::parse(&yaml).unwrap(), config);
}

#[test]
fn the_xclient_switch_needs_its_list_and_the_list_needs_a_switch() {
    for (yaml, field, says) in [
        (
            "listeners: [{allowXclient: true}]",
            "listeners[0].xclientFrom",
            "allowXclient needs xclientFrom",
        ),
        (
            "listeners: [{xclientFrom: [10.0.0.1]}]",
            "listeners[0].xclientFrom",
            "only used with allowXclient: true",
        ),
        (
            "listeners: [{allowXclient: true, xclientFrom: ['10.0.0.1/8']}]",
            "listeners[0].xclientFrom[0]",
            "did you mean 10.0.0.0/8",
        ),
        // An overlay that switches it on where the listener has no list.
        (
            "listeners: [{peer: {10.0.0.0/8: {allowXclient: true}}}]",
            "listeners[0].peer[10.0.0.0/8].xclientFrom",
            "allowXclient needs xclientFrom",
        ),
    ] {
        let error = error_of(yaml);
        assert!(error.contains(field), "{yaml}: {error}");
        assert!(error.contains(says), "{yaml}: {error}");
    }
    // Switched on by an overlay only (for the peers of one network, say) is fine, and
    // so is an overlay that switches it off.
    for yaml in [
        "listeners: [{xclientFrom: [10.0.0.1], via: {192.0.2.25: {allowXclient: true}}}]",
        "listeners: [{allowXclient: true, xclientFrom: [10.0.0.1], peer: {10.0.0.0/8: {allowXclient: false}}}]",
    ] {
        Config::parse(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    }
}
