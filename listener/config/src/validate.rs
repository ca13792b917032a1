//! Rules that span fields, shared by the listener's file and the operator's CRD.

use std::collections::HashMap;

use crate::{
    CidrMap, ConfigError, DeliveryConfig, KeySource, ListenerConfig, OutboundTls, Smarthost,
    VaultAuth,
};

/// Where a listener configuration comes from; decides which key sources are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// A `postern-listener` YAML file: Kubernetes Secret sources cannot be resolved here.
    File,
    /// An `EsmtpListener` resource: the operator resolves Secret sources to mounted files.
    Kubernetes,
}

/// Validates every listener; `prefix` is the field path of the list, e.g. `listeners`.
pub fn validate_listeners(
    listeners: &[ListenerConfig],
    prefix: &str,
    context: Context,
) -> Result<(), ConfigError> {
    let mut seen = HashMap::new();
    for (i, listener) in listeners.iter().enumerate() {
        let at = format!("{prefix}[{i}]");
        validate_listener(listener, &at, context)?;
        validate_xclient_list(listener, &at)?;
        let addr = listener.listen.socket_addr();
        if addr.port() == 0 {
            continue;
        }
        if let Some(first) = seen.insert(addr, i) {
            return Err(ConfigError::invalid(
                format!("{at}.listen"),
                format!(
                    "'{addr}' is already used by {prefix}[{first}]; expected a unique address per listener"
                ),
            ));
        }
    }
    Ok(())
}

fn validate_listener(l: &ListenerConfig, at: &str, context: Context) -> Result<(), ConfigError> {
    for (field, value) in [
        (
            "maxMessagesPerConnection",
            u64::from(l.max_messages_per_connection),
        ),
        (
            "maxRecipientsPerMessage",
            u64::from(l.max_recipients_per_message),
        ),
        ("maxMessageSize", l.max_message_size),
        ("maxConnections", u64::from(l.max_connections)),
        ("lineLengthHardLimit", u64::from(l.line_length_hard_limit)),
    ] {
        if value == 0 {
            return Err(ConfigError::invalid(
                format!("{at}.{field}"),
                "'0' is not allowed; expected at least 1",
            ));
        }
    }
    if l.banner.contains(['\r', '\n']) {
        return Err(ConfigError::invalid(
            format!("{at}.banner"),
            "must be one line (no CR or LF)",
        ));
    }
    if let Some(host) = &l.hostname
        && !is_domain(host)
    {
        return Err(ConfigError::invalid(
            format!("{at}.hostname"),
            format!("'{host}' is not a host name; expected e.g. mx1.example.com"),
        ));
    }
    for key in l.domains.keys() {
        let name = key.strip_prefix("*.").unwrap_or(key);
        if !is_domain(name) {
            return Err(ConfigError::invalid(
                format!("{at}.domains"),
                format!("key '{key}' is not a domain; expected e.g. example.com or *.example.com"),
            ));
        }
    }
    let header = &l.trace_headers.header_name;
    if header.is_empty() || !header.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(ConfigError::invalid(
            format!("{at}.traceHeaders.headerName"),
            format!(
                "'{header}' is not a header field name; expected printable ASCII without ':' or spaces"
            ),
        ));
    }
    match (&l.tls_certificate, &l.tls_private_key) {
        (Some(_), None) | (None, Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{at}.tlsPrivateKey"),
                "tlsCertificate and tlsPrivateKey go together; set both or neither",
            ));
        }
        _ => {}
    }
    validate_edge(l, at)?;
    for (name, source) in [
        ("tlsCertificate", &l.tls_certificate),
        ("tlsPrivateKey", &l.tls_private_key),
        ("tlsRequiredClientCa", &l.tls_required_client_ca),
    ] {
        if let (Context::File, Some(source)) = (context, source) {
            check_file_context(source)
                .map_err(|m| ConfigError::invalid(format!("{at}.{name}"), m))?;
        }
    }
    for (domain, rules) in &l.domains {
        if rules
            .relay_from_authz
            .iter()
            .any(|id| id.is_empty() || id.contains(['\r', '\n', '\0']))
        {
            return Err(ConfigError::invalid(
                format!("{at}.domains[{domain}].relayFromAuthz"),
                "expected non-empty identities without CR, LF or NUL",
            ));
        }
    }
    if let (Context::File, Some(auth)) = (context, &l.auth) {
        check_file_context(&auth.credentials)
            .map_err(|m| ConfigError::invalid(format!("{at}.auth.credentials"), m))?;
    }
    validate_overlays(l, at, context)?;
    match &l.delivery {
        Some(delivery) => validate_delivery(delivery, &format!("{at}.delivery"), context),
        None => Ok(()),
    }
}

/// Each `peer` and `via` entry must leave a valid listener once applied.
fn validate_overlays(l: &ListenerConfig, at: &str, context: Context) -> Result<(), ConfigError> {
    for (name, map) in [("peer", &l.peer), ("via", &l.via)] {
        if map.0.len() > crate::overlay::MAX_OVERLAY_ENTRIES {
            return Err(ConfigError::invalid(
                format!("{at}.{name}"),
                format!(
                    "{} entries; expected at most {}",
                    map.0.len(),
                    crate::overlay::MAX_OVERLAY_ENTRIES
                ),
            ));
        }
        for (key, overrides) in &map.0 {
            let mut applied = ListenerConfig {
                peer: CidrMap::default(),
                via: CidrMap::default(),
                delivery: None,
                ..l.clone()
            };
            overrides.apply_to(&mut applied);
            validate_listener(&applied, &format!("{at}.{name}[{key}]"), context)?;
        }
    }
    Ok(())
}

/// The PROXY protocol and XCLIENT trust a list of peers to tell the client's address:
/// switched on, the list must name someone, and (for the PROXY protocol) a list without
/// the switch is a mistake.
fn validate_edge(l: &ListenerConfig, at: &str) -> Result<(), ConfigError> {
    let given = !l.proxy_protocol_from.is_empty();
    if l.require_proxy_protocol && !given {
        return Err(ConfigError::invalid(
            format!("{at}.proxyProtocolFrom"),
            "requireProxyProtocol needs proxyProtocolFrom: the peers trusted to tell the client's address (any other peer could claim any address)",
        ));
    }
    if given && !l.require_proxy_protocol {
        return Err(ConfigError::invalid(
            format!("{at}.proxyProtocolFrom"),
            "proxyProtocolFrom is only used with requireProxyProtocol: true",
        ));
    }
    if l.allow_xclient && l.xclient_from.is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.xclientFrom"),
            "allowXclient needs xclientFrom: the proxies trusted to tell the client's address and login (any other peer could claim any address, or an identity allowed to relay)",
        ));
    }
    Ok(())
}

/// A list of XCLIENT proxies that nothing switches on is a mistake. Checked on the
/// listener as written (a `peer` or `via` entry may be what switches it on).
fn validate_xclient_list(l: &ListenerConfig, at: &str) -> Result<(), ConfigError> {
    let switched_on = l.allow_xclient
        || [&l.peer, &l.via]
            .iter()
            .flat_map(|map| map.0.values())
            .any(|o| o.allow_xclient == Some(true));
    if !l.xclient_from.is_empty() && !switched_on {
        return Err(ConfigError::invalid(
            format!("{at}.xclientFrom"),
            "xclientFrom is only used with allowXclient: true",
        ));
    }
    Ok(())
}

fn validate_delivery(d: &DeliveryConfig, at: &str, context: Context) -> Result<(), ConfigError> {
    for (field, value) in [
        ("connectionLimit", d.connection_limit),
        ("maxMessagesPerConnection", d.max_messages_per_connection),
    ] {
        if value == 0 {
            return Err(ConfigError::invalid(
                format!("{at}.{field}"),
                "'0' is not allowed; expected at least 1",
            ));
        }
    }
    if d.max_queue_depth == Some(0) {
        return Err(ConfigError::invalid(
            format!("{at}.maxQueueDepth"),
            "'0' is not allowed; expected at least 1, or leave it out for no limit",
        ));
    }
    if !(1..=100).contains(&d.spool_high_water_percent) {
        return Err(ConfigError::invalid(
            format!("{at}.spoolHighWaterPercent"),
            format!(
                "'{}' is not a percentage; expected 1 to 100",
                d.spool_high_water_percent
            ),
        ));
    }
    if let Some(max) = d.max_retry_interval
        && max < d.retry_interval
    {
        return Err(ConfigError::invalid(
            format!("{at}.maxRetryInterval"),
            format!(
                "'{max}' is shorter than retryInterval '{}'; expected at least retryInterval",
                d.retry_interval
            ),
        ));
    }
    if d.max_age < d.retry_interval {
        return Err(ConfigError::invalid(
            format!("{at}.maxAge"),
            format!(
                "'{}' is shorter than retryInterval '{}'; no retry could ever happen",
                d.max_age, d.retry_interval
            ),
        ));
    }
    if let Some(smarthost) = &d.smarthost {
        validate_smarthost(smarthost, &format!("{at}.smarthost"), context)?;
    }
    for (key, route) in &d.routes {
        let name = key.strip_prefix("*.").unwrap_or(key);
        if !is_domain(name) {
            return Err(ConfigError::invalid(
                format!("{at}.routes"),
                format!("key '{key}' is not a domain; expected e.g. example.com or *.example.com"),
            ));
        }
        let route_at = format!("{at}.routes[{key}]");
        for (field, value) in [
            ("connectionLimit", route.connection_limit),
            (
                "maxMessagesPerConnection",
                route.max_messages_per_connection,
            ),
        ] {
            if value == Some(0) {
                return Err(ConfigError::invalid(
                    format!("{route_at}.{field}"),
                    "'0' is not allowed; expected at least 1",
                ));
            }
        }
        if let Some(smarthost) = &route.smarthost {
            validate_smarthost(smarthost, &format!("{route_at}.smarthost"), context)?;
        }
    }
    Ok(())
}

fn validate_smarthost(s: &Smarthost, at: &str, context: Context) -> Result<(), ConfigError> {
    if s.host.parse::<std::net::IpAddr>().is_err() && !is_domain(&s.host) {
        return Err(ConfigError::invalid(
            format!("{at}.host"),
            format!(
                "'{}' is not a host name or IP address; expected e.g. relay.example.com or 192.0.2.25",
                s.host
            ),
        ));
    }
    if s.port == 0 {
        return Err(ConfigError::invalid(
            format!("{at}.port"),
            "'0' is not allowed; expected a TCP port from 1 to 65535",
        ));
    }
    if let Some(auth) = &s.auth {
        if matches!(s.tls, OutboundTls::None | OutboundTls::Opportunistic) {
            return Err(ConfigError::invalid(
                format!("{at}.auth"),
                "credentials are only sent over verified TLS; set tls to required or implicit",
            ));
        }
        if auth.username.is_empty() || auth.username.contains(['\r', '\n', '\0']) {
            return Err(ConfigError::invalid(
                format!("{at}.auth.username"),
                "expected a non-empty user name without CR, LF or NUL",
            ));
        }
        if let KeySource::Vault(_) = auth.password {
            return Err(ConfigError::invalid(
                format!("{at}.auth.password"),
                "a smarthost password comes from a file path or (in an EsmtpListener) secretName; Vault is not supported for it",
            ));
        }
        if context == Context::File {
            check_file_context(&auth.password)
                .map_err(|m| ConfigError::invalid(format!("{at}.auth.password"), m))?;
        }
    }
    Ok(())
}

fn check_file_context(source: &KeySource) -> Result<(), String> {
    match source {
        KeySource::Secret(s) => Err(format!(
            "secretName '{}' only works in an EsmtpListener; in a file use a path or a Vault source",
            s.secret_name
        )),
        KeySource::Vault(v) if matches!(v.auth, VaultAuth::TokenSecret(_)) => Err(
            "vaultTokenSecret only works in an EsmtpListener; in a file use vaultTokenFile, vaultToken or vaultRole".into(),
        ),
        _ => Ok(()),
    }
}

/// A DNS name of letters, digits and hyphens in dot-separated labels.
fn is_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
