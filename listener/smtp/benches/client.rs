//! Cost of the outbound client's pure parts, per message: parsing replies
//! ([`parse_reply`]), one whole pipelined transaction through the [`Client`] state
//! machine, and dot-stuffing bodies ([`dot_stuff_into`]).
//!
//! `cargo bench -p postern-smtp --bench client`. divan reports items/s (replies or
//! transactions) and bytes/s (dot-stuffing), and with its allocation profiler the
//! allocations per call. Results are in `docs/outbound.md`.

use std::hint::black_box;

use divan::{Bencher, counter::BytesCount, counter::ItemsCount};
use postern_smtp::{
    address::parse_mailbox,
    client::{Client, ClientConfig, Envelope, StartTls, Step},
    dot_stuff::dot_stuff_into,
    reply_parser::parse_reply,
};

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

const EHLO: &[u8] = b"250-mx.example.org Hello relay.example.com [192.0.2.10]\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n";

/// The replies to a pipelined RSET, MAIL, 3 × RCPT, DATA, then the final reply.
const BATCH: &[&[u8]] = &[
    b"250 2.0.0 Ok\r\n",
    b"250 2.1.0 Ok\r\n",
    b"250 2.1.5 Ok\r\n",
    b"250 2.1.5 Ok\r\n",
    b"550 5.1.1 <c@example.org>: Recipient address rejected: User unknown\r\n",
    b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"250 2.0.0 Ok: queued as 4Xyz1234\r\n",
];

#[divan::bench]
fn parse_ehlo_reply(bencher: Bencher) {
    bencher.counter(ItemsCount::new(1usize)).bench(|| {
        parse_reply(black_box(EHLO))
            .expect("valid")
            .expect("complete")
    });
}

#[divan::bench]
fn parse_pipelined_replies(bencher: Bencher) {
    let wire: Vec<u8> = BATCH.concat();
    bencher.counter(ItemsCount::new(BATCH.len())).bench(|| {
        let mut at = 0;
        while let Some((reply, used)) = parse_reply(black_box(&wire[at..])).expect("valid") {
            black_box(reply);
            at += used;
        }
    });
}

/// A ready, reused session (so the transaction starts with RSET) toward a server
/// offering PIPELINING, then one message to three recipients, one refused.
#[divan::bench]
fn pipelined_transaction(bencher: Bencher) {
    let envelope = Envelope {
        sender: Some(parse_mailbox("sender@example.com").expect("a mailbox")),
        recipients: ["a@example.org", "b@example.org", "c@example.org"]
            .iter()
            .map(|r| parse_mailbox(r).expect("a mailbox"))
            .collect(),
        smtputf8: false,
    };
    let replies: Vec<_> = BATCH
        .iter()
        .map(|wire| parse_reply(wire).expect("valid").expect("complete").0)
        .collect();
    let body = vec![b'x'; 4096];
    let ready = || {
        let mut client = Client::new(ClientConfig {
            ehlo_name: "relay.example.com".into(),
            starttls: StartTls::Never,
            implicit_tls: false,
            credentials: None,
        });
        let _ = client.on_reply(parse_reply(b"220 mx\r\n").expect("ok").expect("ok").0);
        let _ = client.on_reply(parse_reply(EHLO).expect("ok").expect("ok").0);
        // A first message, so the measured one is a reuse with RSET.
        let _ = client.start_message(&envelope, &body);
        for reply in &replies[1..] {
            let _ = client.on_reply(reply.clone());
        }
        assert!(client.is_ready());
        client
    };
    bencher
        .counter(ItemsCount::new(1usize))
        .with_inputs(ready)
        .bench_local_values(|mut client| {
            let mut step = client.start_message(&envelope, &body).expect("ready");
            for reply in &replies {
                step = client.on_reply(reply.clone()).expect("a step");
            }
            assert!(matches!(step, Step::Done(_)));
            step
        });
}

/// Bodies of 76-character lines, one in 20 starting with a dot.
fn body(size: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(size + 80);
    let mut n = 0;
    while body.len() < size {
        if n % 20 == 0 {
            body.push(b'.');
        }
        body.extend_from_slice(&[b'q'; 75]);
        body.extend_from_slice(b"\r\n");
        n += 1;
    }
    body
}

#[divan::bench(args = [1024, 100 * 1024, 10 * 1024 * 1024])]
fn dot_stuff(bencher: Bencher, size: usize) {
    let body = body(size);
    let mut out = Vec::with_capacity(size * 2);
    bencher
        .counter(BytesCount::new(body.len()))
        .bench_local(|| {
            out.clear();
            dot_stuff_into(black_box(&body), &mut out);
            black_box(out.len())
        });
}
