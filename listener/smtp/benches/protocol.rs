//! Throughput of the pure SMTP protocol code: the DATA framer ([`frame`] and
//! [`DataFramer::feed`] in socket-sized chunks), the command parser
//! ([`parse_command`]) and the command-line splitter ([`split_line`]).
//!
//! `cargo bench -p postern-smtp --bench protocol`. divan reports bytes/s for
//! the framer and the splitter and items/s (lines/s) for the parser, and, with its
//! allocation profiler, the allocations and bytes allocated per call.
//!
//! Messages are realistic: a dozen header lines, then body lines of 76 characters
//! (as quoted-printable and base64 bodies are wrapped), one line in 20 starting
//! with a dot and so dot-stuffed on the wire. `split_line` is compared with a
//! `memchr`-based search for the same CRLF (the baseline a faster splitter would
//! reach); the results are in `docs/benchmarks.md`.

use std::hint::black_box;

use divan::{Bencher, counter::BytesCount, counter::ItemsCount};
use postern_smtp::{
    MAX_LINE,
    command::parse_command,
    data::{DataFramer, DataOutcome, frame},
    line::{Split, split_line},
};

/// Counts allocations, so the tables also show allocations and bytes per call.
#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

/// Size limit given to the framer: the listener's default `maxMessageSize` (20 MiB).
const MAX_SIZE: u64 = 20 * 1024 * 1024;

/// Size of one socket read in the connection driver (`connection::READ_CHUNK`).
const READ_CHUNK: usize = 64 * 1024;

/// Message sizes (unstuffed octets, approximately): 1 KiB, 100 KiB, 10 MiB.
const SIZES: [usize; 3] = [1024, 100 * 1024, 10 * 1024 * 1024];

/// The DATA stream of a message of about `size` octets as a client sends it:
/// dot-stuffed, CRLF line endings, ended by `CRLF . CRLF`.
fn wire_message(size: usize) -> Vec<u8> {
    let mut wire = Vec::with_capacity(size + size / 20 + 64);
    for header in [
        "Received: from client.example.net (client.example.net [192.0.2.10])",
        "\tby relay.example.com with ESMTP id 0123456789; Thu, 26 Nov 2026 15:00:00 +0000",
        "From: Sender Name <sender@example.com>",
        "To: Recipient Name <recipient@example.org>",
        "Subject: Benchmark message with a realistic header block",
        "Date: Thu, 26 Nov 2026 15:00:00 +0000",
        "Message-ID: <0123456789.abcdef@example.com>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
    ] {
        wire.extend_from_slice(header.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    // A small deterministic generator, so every line differs and runs are repeatable.
    let mut seed: u32 = 0x2545_f491;
    let alphabet = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789,.=";
    let mut line = 0usize;
    while wire.len() < size {
        if line % 20 == 7 {
            // A line that starts with a dot: the client doubles it (RFC 5321 §4.5.2).
            wire.extend_from_slice(b"..");
        }
        for _ in 0..76 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            wire.push(alphabet[seed as usize % alphabet.len()]);
        }
        wire.extend_from_slice(b"\r\n");
        line += 1;
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

/// Checks once, outside the measured loop, that the input frames as intended.
fn check(wire: &[u8]) {
    match frame(wire, MAX_SIZE) {
        Some((used, DataOutcome::Complete(body))) => {
            assert_eq!(used, wire.len(), "the framer stopped early");
            assert!(body.len() < wire.len(), "no dot-stuffing was undone");
        }
        other => panic!("benchmark input does not frame: {other:?}"),
    }
}

/// `frame()` over the whole message at once (one allocation-growing body buffer).
#[divan::bench(args = SIZES)]
fn frame_whole(bencher: Bencher, size: usize) {
    let wire = wire_message(size);
    check(&wire);
    bencher
        .counter(BytesCount::of_slice(&wire))
        .bench(|| frame(black_box(&wire), MAX_SIZE));
}

/// `DataFramer::feed` in 64 KiB pieces, as the connection driver feeds it.
#[divan::bench(args = SIZES)]
fn frame_chunked(bencher: Bencher, size: usize) {
    let wire = wire_message(size);
    check(&wire);
    bencher.counter(BytesCount::of_slice(&wire)).bench(|| {
        let mut framer = DataFramer::new(MAX_SIZE);
        for chunk in black_box(&wire).chunks(READ_CHUNK) {
            let (_, outcome) = framer.feed(chunk);
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
        unreachable!("the message ends with CRLF . CRLF")
    });
}

/// Command lines a relay sees in every transaction.
const COMMANDS: [&str; 5] = [
    "EHLO client.example.net",
    "MAIL FROM:<bounce-1234567@mailer.example.com> SIZE=102400 BODY=8BITMIME",
    "MAIL FROM:<sender@example.com>",
    "RCPT TO:<first.last@recipient.example.org>",
    "DATA",
];

/// `parse_command` on one line; items/s are lines/s.
#[divan::bench(args = COMMANDS)]
fn parse(bencher: Bencher, line: &str) {
    parse_command(line.as_bytes()).expect("benchmark command parses");
    bencher
        .counter(ItemsCount::new(1usize))
        .bench(|| parse_command(black_box(line.as_bytes())));
}

/// A pipelined command burst (RFC 2920): MAIL, RCPT, DATA in one read.
fn pipelined_burst() -> Vec<u8> {
    let mut burst = Vec::new();
    for line in &COMMANDS[1..] {
        burst.extend_from_slice(line.as_bytes());
        burst.extend_from_slice(b"\r\n");
    }
    burst
}

/// Splits every line off a pipelined burst, as `next_line` does.
fn split_all(mut buf: &[u8], split: fn(&[u8]) -> Split) -> usize {
    let mut lines = 0;
    while let Split::Line { len } = split(buf) {
        buf = &buf[len + 2..];
        lines += 1;
    }
    lines
}

/// The baseline: the same contract as `split_line`, searching with `memchr`.
fn split_line_memchr(buf: &[u8]) -> Split {
    let window = &buf[..buf.len().min(MAX_LINE + 2)];
    match memchr::memmem::find(window, b"\r\n") {
        Some(len) => Split::Line { len },
        None if buf.len() >= MAX_LINE + 2 => Split::TooLong,
        None => Split::Incomplete,
    }
}

/// Inputs for the splitters: a pipelined burst, a 998-octet line, and a line
/// still arriving (no CRLF yet, scanned again on every read).
fn split_inputs(kind: &str) -> Vec<u8> {
    match kind {
        "pipelined" => pipelined_burst(),
        "longest_line" => {
            let mut line = vec![b'a'; MAX_LINE];
            line.extend_from_slice(b"\r\n");
            line
        }
        "incomplete_900" => vec![b'a'; 900],
        _ => unreachable!("unknown input {kind}"),
    }
}

const SPLIT_KINDS: [&str; 3] = ["pipelined", "longest_line", "incomplete_900"];

/// `split_line` (the listener's), on each input.
#[divan::bench(args = SPLIT_KINDS)]
fn split(bencher: Bencher, kind: &str) {
    let buf = split_inputs(kind);
    assert_eq!(
        split_all(&buf, split_line),
        split_all(&buf, split_line_memchr)
    );
    bencher
        .counter(BytesCount::of_slice(&buf))
        .bench(|| split_all(black_box(&buf), split_line));
}

/// Baseline for [`split`]: the same splitting with `memchr::memmem`.
#[divan::bench(args = SPLIT_KINDS)]
fn split_baseline_memchr(bencher: Bencher, kind: &str) {
    let buf = split_inputs(kind);
    bencher
        .counter(BytesCount::of_slice(&buf))
        .bench(|| split_all(black_box(&buf), split_line_memchr));
}
