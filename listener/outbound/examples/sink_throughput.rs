//! Messages per second through `OutboundConnection` to an SMTP server on loopback
//! (postfix's `smtp-sink`, say): CONNECTIONS connections in parallel, each sending its
//! share of MESSAGES messages of SIZE octets to one recipient, reusing its connection.
//! Prints msg/s and the per-message send latency (p50, p99).
//!
//! ```text
//! /usr/sbin/smtp-sink -u nobody 127.0.0.1:2526 256 &
//! cargo run --release -p postern-outbound --example sink_throughput -- 127.0.0.1:2526 20000 4096 8
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use postern_outbound::{
    ConnectOptions, Envelope, NextHop, OutboundConnection, TlsClients, TlsMode,
};
use postern_smtp::address::parse_mailbox;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, messages, size, connections] = args.as_slice() else {
        eprintln!("usage: sink_throughput ADDR MESSAGES SIZE CONNECTIONS");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().expect("ADDR is ip:port");
    let messages: usize = messages.parse().expect("MESSAGES is a number");
    let size: usize = size.parse().expect("SIZE is a number");
    let connections: usize = connections.parse().expect("CONNECTIONS is a number");

    let mut body = b"Subject: throughput\r\n\r\n".to_vec();
    while body.len() < size {
        body.extend_from_slice(&[b'x'; 76]);
        body.extend_from_slice(b"\r\n");
    }
    let envelope = Envelope {
        sender: Some(parse_mailbox("bench@relay.test").expect("a mailbox")),
        recipients: vec![parse_mailbox("sink@sink.test").expect("a mailbox")],
        smtputf8: false,
    };
    let hops = vec![NextHop {
        name: addr.ip().to_string(),
        addresses: vec![addr.ip()],
    }];
    let options = ConnectOptions::new("relay.test", addr.port(), TlsMode::None);
    let tls = TlsClients::system_roots().expect("system roots");

    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let share = messages / connections + usize::from(i < messages % connections);
            let (hops, options, tls, envelope, body) = (
                hops.clone(),
                options.clone(),
                tls.clone(),
                envelope.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                let mut connection = OutboundConnection::connect(&hops, &options, &tls)
                    .await
                    .expect("a connection");
                let mut latencies = Vec::with_capacity(share);
                for _ in 0..share {
                    let sent = Instant::now();
                    let outcome = connection
                        .send(&envelope, &body)
                        .await
                        .expect("a transaction");
                    assert!(outcome.recipients[0].is_delivered(), "{outcome:?}");
                    latencies.push(sent.elapsed());
                }
                connection.quit().await;
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::with_capacity(messages);
    for task in tasks {
        latencies.extend(task.await.expect("a sending task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{messages} messages of {} octets over {connections} connections in {:.2} s: {:.0} msg/s, send latency p50 {:?} p99 {:?}",
        body.len(),
        elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64(),
        at(0.50),
        at(0.99),
    );
}
