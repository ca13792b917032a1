//! MX resolution against a real DNS server on loopback: MX order, implicit MX, null MX,
//! NXDOMAIN, SERVFAIL, IPv4 and IPv6.

mod support;

use std::net::IpAddr;

use postern_outbound::{DnsError, MxResolver, OutboundConnection, TlsClients, TlsMode};
use support::dns::{DnsServer, Entry, addresses, mx};
use support::peer::{EHLO_FULL, Peer, usual};
use support::{WAIT, envelope, options};

async fn zone() -> DnsServer {
    DnsServer::start(vec![
        (
            "mail.test",
            mx(&[(20, "mx2.mail.test"), (10, "mx1.mail.test")]),
        ),
        ("mx1.mail.test", addresses(&["127.0.0.1"])),
        ("mx2.mail.test", addresses(&["127.0.0.2", "::1"])),
        ("implicit.test", addresses(&["127.0.0.3", "::1"])),
        ("null.test", mx(&[(0, ".")])),
        ("broken.test", Entry::ServFail),
        ("dangling.test", mx(&[(10, "nowhere.dangling.test")])),
        (
            "halfbroken.test",
            mx(&[(10, "sick.halfbroken.test"), (20, "ok.halfbroken.test")]),
        ),
        ("sick.halfbroken.test", Entry::ServFail),
        ("ok.halfbroken.test", addresses(&["127.0.0.4"])),
        ("empty.test", addresses(&[])),
    ])
    .await
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|ip| ip.parse().expect("an IP")).collect()
}

fn resolver(server: &DnsServer) -> MxResolver {
    MxResolver::with_nameservers(&[server.addr], WAIT).expect("a resolver")
}

#[tokio::test]
async fn mx_hosts_come_in_preference_order_with_ipv4_and_ipv6_addresses() {
    let server = zone().await;
    let hops = resolver(&server)
        .mx_hosts("mail.test")
        .await
        .expect("MX hosts");
    let names: Vec<&str> = hops.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["mx1.mail.test", "mx2.mail.test"]);
    assert_eq!(hops[0].addresses, ips(&["127.0.0.1"]));
    assert_eq!(hops[1].addresses, ips(&["127.0.0.2", "::1"]));
}

#[tokio::test]
async fn a_domain_without_mx_is_its_own_implicit_mx() {
    let server = zone().await;
    let hops = resolver(&server)
        .mx_hosts("implicit.test")
        .await
        .expect("implicit MX");
    assert_eq!(hops.len(), 1);
    assert_eq!(hops[0].name, "implicit.test");
    assert_eq!(hops[0].addresses, ips(&["127.0.0.3", "::1"]));
}

#[tokio::test]
async fn null_mx_nxdomain_and_no_address_are_permanent() {
    let server = zone().await;
    let resolver = resolver(&server);
    let null = resolver.mx_hosts("null.test").await.expect_err("null MX");
    assert_eq!(
        null,
        DnsError::NullMx {
            domain: "null.test".into()
        }
    );
    assert_eq!(null.to_reply().code, 556);
    let gone = resolver.mx_hosts("gone.test").await.expect_err("NXDOMAIN");
    assert_eq!(
        gone,
        DnsError::NoSuchDomain {
            domain: "gone.test".into()
        }
    );
    let dangling = resolver
        .mx_hosts("dangling.test")
        .await
        .expect_err("no address");
    assert_eq!(
        dangling,
        DnsError::NoAddress {
            domain: "dangling.test".into()
        }
    );
    let empty = resolver
        .mx_hosts("empty.test")
        .await
        .expect_err("no MX, A or AAAA");
    assert_eq!(
        empty,
        DnsError::NoAddress {
            domain: "empty.test".into()
        }
    );
    for error in [null, gone, dangling, empty] {
        assert!(error.is_permanent(), "{error}");
    }
}

#[tokio::test]
async fn servfail_is_temporary_but_a_working_mx_host_is_still_used() {
    let server = zone().await;
    let resolver = resolver(&server);
    let broken = resolver
        .mx_hosts("broken.test")
        .await
        .expect_err("SERVFAIL");
    assert!(matches!(broken, DnsError::Temporary { .. }), "{broken:?}");
    assert!(!broken.is_permanent());
    assert_eq!(broken.to_reply().code, 451);
    let hops = resolver
        .mx_hosts("halfbroken.test")
        .await
        .expect("the healthy MX host");
    assert_eq!(hops.len(), 1);
    assert_eq!(hops[0].name, "ok.halfbroken.test");
}

#[tokio::test]
async fn an_unreachable_nameserver_is_temporary() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("a silent UDP socket");
    let resolver = MxResolver::with_nameservers(
        &[silent.local_addr().expect("an address")],
        std::time::Duration::from_millis(300),
    )
    .expect("a resolver");
    let error = resolver.mx_hosts("mail.test").await.expect_err("no answer");
    assert!(matches!(error, DnsError::Temporary { .. }), "{error:?}");
}

#[tokio::test]
async fn smarthost_names_and_literals_resolve() {
    let server = zone().await;
    let resolver = resolver(&server);
    let hop = resolver.host("mx2.mail.test").await.expect("addresses");
    assert_eq!(hop.addresses, ips(&["127.0.0.2", "::1"]));
    let literal = resolver.host("[127.0.0.9]").await.expect("a literal");
    assert_eq!(literal.addresses, ips(&["127.0.0.9"]));
    let v6 = resolver.host("[IPv6:::1]").await.expect("an IPv6 literal");
    assert_eq!(v6.addresses, ips(&["::1"]));
}

#[tokio::test]
async fn mail_reaches_the_mx_host_the_dns_names() {
    let peer = Peer::start(|session| session.serve(|line| usual(line, EHLO_FULL))).await;
    let server = DnsServer::start(vec![
        (
            "dest.test",
            mx(&[(10, "down.dest.test"), (20, "up.dest.test")]),
        ),
        // Nothing listens on 127.0.0.5 at the peer's port: refused, so the next MX.
        ("down.dest.test", addresses(&["127.0.0.5"])),
        ("up.dest.test", addresses(&["127.0.0.1"])),
    ])
    .await;
    let hops = resolver(&server)
        .mx_hosts("dest.test")
        .await
        .expect("MX hosts");
    let tls = TlsClients::system_roots().expect("system roots");
    let mut connection = OutboundConnection::connect(
        &hops,
        &options(peer.addr.port(), TlsMode::Opportunistic),
        &tls,
    )
    .await
    .expect("the second MX host answers");
    assert_eq!(connection.host(), "up.dest.test");
    assert_eq!(connection.peer_address(), peer.addr);
    let outcome = connection
        .send(
            &envelope("a@relay.test", &["b@dest.test"]),
            b"Subject: hi\r\n\r\nhello\r\n",
        )
        .await
        .expect("a transaction");
    assert!(outcome.recipients[0].is_delivered());
    connection.quit().await;
}

#[tokio::test]
async fn an_ipv6_only_mx_host_is_reached_over_ipv6() {
    let peer = Peer::start_on("[::1]:0", None, |session| {
        session.serve(|line| usual(line, EHLO_FULL))
    })
    .await;
    let server = DnsServer::start(vec![
        ("six.test", mx(&[(10, "mx.six.test")])),
        ("mx.six.test", addresses(&["::1"])),
    ])
    .await;
    let hops = resolver(&server)
        .mx_hosts("six.test")
        .await
        .expect("MX hosts");
    assert_eq!(hops[0].addresses, ips(&["::1"]));
    let tls = TlsClients::system_roots().expect("system roots");
    let mut connection =
        OutboundConnection::connect(&hops, &options(peer.addr.port(), TlsMode::None), &tls)
            .await
            .expect("a connection over IPv6");
    assert_eq!(connection.peer_address(), peer.addr);
    assert!(connection.peer_address().is_ipv6());
    let outcome = connection
        .send(&envelope("a@relay.test", &["b@six.test"]), b"hi\r\n")
        .await
        .expect("a transaction");
    assert!(outcome.recipients[0].is_delivered());
    connection.quit().await;
}
