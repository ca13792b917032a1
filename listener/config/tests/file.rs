//! The YAML file: defaults, the seed's examples, and one-line errors for bad input.

use postern_config::{BounceMode, Config, ConfigError, KeySource, LogTarget, OutboundTls};

fn error_of(yaml: &str) -> String {
    Config::parse(yaml).unwrap_err().to_string()
}

#[test]
fn the_empty_file_is_the_embedded_default() {
    let config = Config::parse("{}").unwrap();
    assert_eq!(config, Config::embedded_default());
    let l = &config.listeners[0];
    assert_eq!(l.listen.to_string(), "127.0.0.1:2525");
    assert_eq!(l.client_timeout.get().as_secs(), 60);
    assert_eq!(l.max_messages_per_connection, 10_000);
    assert_eq!(l.max_recipients_per_message, 1024);
    assert_eq!(l.max_message_size, 20 * 1024 * 1024);
    assert_eq!(l.trace_headers.header_name, "X-KumoRef");
    assert!(l.trace_headers.received_header && l.trace_headers.supplemental_header);
    let relay: Vec<String> = l.relay_hosts.iter().map(ToString::to_string).collect();
    assert_eq!(relay, ["127.0.0.1", "::1"]);
    assert_eq!(config.spool.path.to_str(), Some("./postern-spool"));
    assert_eq!(config.log, LogTarget::Stdout);
}

#[test]
fn every_seed_parameter_has_a_field() {
    let config = Config::parse(
        r#"
listeners:
  - banner: Welcome
    clientTimeout: 30s
    deferredSpool: true
    hostname: mx.example.com
    listen: "0:25"
    maxMessagesPerConnection: 5
    maxRecipientsPerMessage: 2
    maxMessageSize: 1000
    meta: {tenant: acme}
    relayHosts: ["10.0.0.0/8", "2001:db8::/32"]
    tlsCertificate: /tls/tls.crt
    tlsPrivateKey: {vaultMount: secret, vaultPath: tls/mx.key}
    traceHeaders: {receivedHeader: false, supplementalHeader: true, headerName: X-Ref, includeMetaNames: [tenant]}
    domains:
      example.com: {relayTo: true}
      bounce.example.com: {logOob: true}
      fbl.example.com: {logArf: true}
      send.example.com: {relayFrom: ["10.0.0.0/24"]}
      "*.example.com": {logOob: true, logArf: true, relayTo: true}
      www.example.com: {relayTo: false, logArf: false, logOob: false}
log: /var/log/postern.jsonl
spool: {path: /spool}
admin: {listen: "0.0.0.0:8025"}
"#,
    )
    .unwrap();
    let l = &config.listeners[0];
    assert_eq!(l.listen.to_string(), "0.0.0.0:25");
    assert_eq!(l.domains.len(), 6);
    assert!(matches!(l.tls_certificate, Some(KeySource::File { .. })));
    assert!(matches!(l.tls_private_key, Some(KeySource::Vault(_))));
    assert_eq!(config.log, LogTarget::File("/var/log/postern.jsonl".into()));
}

#[test]
fn errors_name_the_field_the_value_and_what_is_expected() {
    let cases = [
        (
            "listeners: [{relayHosts: ['10.0.0.1/24']}]",
            "listeners[0].relayHosts[0]",
            "did you mean 10.0.0.0/24",
        ),
        (
            "listeners: [{relayHosts: [nope]}]",
            "listeners[0].relayHosts[0]",
            "'nope' is not valid",
        ),
        (
            "listeners: [{clientTimeout: soon}]",
            "listeners[0].clientTimeout",
            "'soon' is not a duration",
        ),
        (
            "listeners: [{listen: 'localhost:25'}]",
            "listeners[0].listen",
            "expected IP:PORT",
        ),
        (
            "listeners: [{colour: blue}]",
            "listeners[0]",
            "unknown field `colour`",
        ),
        (
            "spool: {path: /x, size: 3}",
            "spool",
            "unknown field `size`",
        ),
        (
            "listeners: [{listen: '127.0.0.1:25'}, {listen: '127.0.0.1:25'}]",
            "listeners[1].listen",
            "already used by listeners[0]",
        ),
        (
            "listeners: [{domains: {'*example.com': {relayTo: true}}}]",
            "listeners[0].domains",
            "'*example.com'",
        ),
        (
            "listeners: [{tlsCertificate: /a}]",
            "listeners[0].tlsPrivateKey",
            "set both or neither",
        ),
        (
            "listeners: [{tlsCertificate: {secretName: a}, tlsPrivateKey: {secretName: a}}]",
            "listeners[0].tlsCertificate",
            "only works in an EsmtpListener",
        ),
        ("listeners: []", "listeners", "at least one"),
        (
            "listeners: [{maxRecipientsPerMessage: 0}]",
            "listeners[0].maxRecipientsPerMessage",
            "expected at least 1",
        ),
        (
            "admin: {listen: nope}",
            "admin.listen",
            "'nope' is not a listen address",
        ),
        ("spool:\n  path: /x\n bad", "config", "line 3"),
    ];
    for (yaml, field, expected) in cases {
        let message = error_of(yaml);
        assert!(message.starts_with(field), "{yaml}: {message}");
        assert!(message.contains(expected), "{yaml}: {message}");
        assert!(!message.contains('\n'), "one line: {message}");
        assert_eq!(
            message.matches(field).count(),
            1,
            "the field is named once: {message}"
        );
    }
}

#[test]
fn missing_file_is_a_read_error() {
    let err = Config::load("/nonexistent/postern.yaml".as_ref()).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/postern.yaml"));
}

#[test]
fn listeners_on_port_zero_may_repeat() {
    Config::parse("listeners: [{listen: '127.0.0.1:0'}, {listen: '127.0.0.1:0'}]").unwrap();
}

#[test]
fn the_minimal_delivery_form_works_as_written() {
    let config = Config::parse(
        "listeners: [{delivery: {smarthost: {host: 127.0.0.1, port: 2527, tls: none}, retryInterval: 1s}}]",
    )
    .unwrap();
    let d = config.listeners[0].delivery.as_ref().unwrap();
    let s = d.smarthost.as_ref().unwrap();
    assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 2527));
    assert_eq!(s.tls, OutboundTls::None);
    assert_eq!(d.retry_interval.get().as_secs(), 1);
    assert_eq!(d.max_age.get().as_secs(), 7 * 24 * 3600);
}

#[test]
fn a_full_delivery_section() {
    let config = Config::parse(
        r#"
listeners:
  - delivery:
      smarthost:
        host: relay.example.net
        port: 465
        tls: implicit
        auth: {username: postern, password: /etc/postern/relay-password}
      routes:
        example.org: {}
        "*.corp.example": {smarthost: {host: 10.1.2.3, port: 2525, tls: required}, connectionLimit: 4}
      retryInterval: 5m
      maxRetryInterval: 2h
      maxAge: 3d
      connectionLimit: 8
      maxMessagesPerConnection: 100
      bounces: notifySender
      caFile: /etc/postern/ca.pem
      maxQueueDepth: 100000
      spoolHighWaterPercent: 80
"#,
    )
    .unwrap();
    let d = config.listeners[0].delivery.as_ref().unwrap();
    assert_eq!(d.routes.len(), 2);
    assert_eq!(d.routes["*.corp.example"].connection_limit, Some(4));
    assert_eq!(d.bounces, BounceMode::NotifySender);
    let shown = format!("{config:?}");
    assert!(
        shown.contains("file /etc/postern/relay-password"),
        "{shown}"
    );
}

#[test]
fn the_resolver_and_the_mx_port_for_private_networks() {
    let config = Config::parse(
        r#"
listeners:
  - delivery: {smtpPort: 2526}
dns:
  nameservers: ["127.0.0.1:5353", "::1", "10.0.0.53"]
  timeout: 2s
"#,
    )
    .unwrap();
    assert_eq!(
        config.listeners[0].delivery.as_ref().unwrap().smtp_port,
        2526
    );
    let servers: Vec<String> = config
        .dns
        .nameservers
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(servers, ["127.0.0.1:5353", "[::1]:53", "10.0.0.53:53"]);
    assert_eq!(config.dns.timeout.get().as_secs(), 2);
    // The defaults: /etc/resolv.conf, port 25, and nothing written out for them.
    let default = Config::parse("listeners: [{delivery: {}}]").unwrap();
    assert!(default.dns.nameservers.is_empty());
    assert_eq!(
        default.listeners[0].delivery.as_ref().unwrap().smtp_port,
        25
    );
    let written = serde_yaml::to_string(&default).unwrap();
    assert!(!written.contains("dns"), "{written}");
    assert_eq!(Config::parse(&written).unwrap(), default);
    let error = Config::parse("dns: {nameservers: [resolver.example]}").unwrap_err();
    assert!(error.to_string().contains("dns.nameservers"), "{error}");
}

#[test]
fn delivery_errors_name_the_field() {
    let cases = [
        (
            "listeners: [{delivery: {smarthost: {host: 'bad host', tls: none}}}]",
            "listeners[0].delivery.smarthost.host",
            "'bad host'",
        ),
        (
            "listeners: [{delivery: {smarthost: {host: r.example, tls: none, auth: {username: u, password: /p}}}}]",
            "listeners[0].delivery.smarthost.auth",
            "only sent over verified TLS",
        ),
        (
            "listeners: [{delivery: {smarthost: {host: r.example, tls: required, auth: {username: u, password: {secretName: relay}}}}}]",
            "listeners[0].delivery.smarthost.auth.password",
            "only works in an EsmtpListener",
        ),
        (
            "listeners: [{delivery: {smarthost: {host: r.example, tls: sometimes}}}]",
            "listeners[0].delivery.smarthost.tls",
            "unknown variant `sometimes`",
        ),
        (
            "listeners: [{delivery: {retryInterval: 1h, maxRetryInterval: 5m}}]",
            "listeners[0].delivery.maxRetryInterval",
            "shorter than retryInterval",
        ),
        (
            "listeners: [{delivery: {retryInterval: 1h, maxAge: 5m}}]",
            "listeners[0].delivery.maxAge",
            "no retry could ever happen",
        ),
        (
            "listeners: [{delivery: {connectionLimit: 0}}]",
            "listeners[0].delivery.connectionLimit",
            "expected at least 1",
        ),
        (
            "listeners: [{delivery: {routes: {'*example.org': {}}}}]",
            "listeners[0].delivery.routes",
            "'*example.org'",
        ),
        (
            "listeners: [{delivery: {routes: {example.org: {maxMessagesPerConnection: 0}}}}]",
            "listeners[0].delivery.routes[example.org].maxMessagesPerConnection",
            "expected at least 1",
        ),
        (
            "listeners: [{delivery: {spoolHighWaterPercent: 101}}]",
            "listeners[0].delivery.spoolHighWaterPercent",
            "expected 1 to 100",
        ),
        (
            "listeners: [{delivery: {retryInterval: 1}}]",
            "listeners[0].delivery.retryInterval",
            "expected e.g.",
        ),
    ];
    for (yaml, field, expected) in cases {
        let message = error_of(yaml);
        assert!(message.starts_with(field), "{yaml}: {message}");
        assert!(message.contains(expected), "{yaml}: {message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }
}
