//! Whole conversations with the [`Client`], no sockets: a script of server replies in,
//! the exact bytes the client would write out.

use super::*;
use crate::address::parse_mailbox;
use crate::reply_parser::parse_reply;

const EHLO_FULL: &str = "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n";
const EHLO_BASIC: &str = "250-mx.test\r\n250 SIZE\r\n";

fn config() -> ClientConfig {
    ClientConfig {
        ehlo_name: "relay.test".into(),
        starttls: StartTls::Never,
        implicit_tls: false,
        credentials: None,
    }
}

fn envelope(from: &str, to: &[&str]) -> Envelope {
    Envelope {
        sender: (!from.is_empty()).then(|| parse_mailbox(from).expect("a sender")),
        recipients: to
            .iter()
            .map(|r| parse_mailbox(r).expect("a recipient"))
            .collect(),
        smtputf8: false,
    }
}

fn reply(wire: &str) -> Reply {
    let (reply, used) = parse_reply(wire.as_bytes())
        .expect("a valid scripted reply")
        .expect("a complete scripted reply");
    assert_eq!(used, wire.len(), "one reply per script entry: {wire:?}");
    reply
}

/// What a scripted conversation produced.
#[derive(Debug, Default)]
struct Run {
    /// Everything written, with `<TLS>` for a handshake and `<BODY>` for the message.
    sent: String,
    /// The phase of every reply read, in order.
    phases: Vec<Phase>,
    outcomes: Vec<MessageOutcome>,
    error: Option<ClientError>,
    closed: bool,
}

/// Plays `server` against a client sending `messages`, then QUIT.
fn run(config: ClientConfig, messages: &[(Envelope, &[u8])], server: &[&str]) -> Run {
    let mut client = Client::new(config);
    let mut out = Run::default();
    let mut replies = server.iter();
    let mut messages = messages.iter();
    let mut step = client.start();
    loop {
        let phase = match step {
            Step::Send { bytes, phase } => {
                out.sent
                    .push_str(&String::from_utf8(bytes).expect("ASCII commands"));
                Some(phase)
            }
            Step::Read { phase } => Some(phase),
            Step::SendBody => {
                out.sent.push_str("<BODY>");
                Some(Phase::DataDot)
            }
            Step::StartTls => {
                out.sent.push_str("<TLS>");
                step = client.tls_established();
                continue;
            }
            Step::Done(outcome) => {
                out.outcomes.push(outcome);
                step = Step::Ready;
                continue;
            }
            Step::Ready if client.is_closed() => break,
            Step::Ready => match messages.next() {
                Some((envelope, body)) => match client.start_message(envelope, body) {
                    Ok(next) => {
                        step = next;
                        continue;
                    }
                    Err(e) => {
                        out.error = Some(e);
                        break;
                    }
                },
                None => {
                    step = client.quit();
                    continue;
                }
            },
            Step::Closed => {
                out.closed = true;
                break;
            }
        };
        let phase = phase.expect("a reply is due");
        out.phases.push(phase);
        let wire = replies
            .next()
            .unwrap_or_else(|| panic!("the script ran out at {phase}; sent so far:\n{}", out.sent));
        match client.on_reply(reply(wire)) {
            Ok(next) => step = next,
            Err(e) => {
                out.error = Some(e);
                break;
            }
        }
    }
    assert_eq!(
        replies.next(),
        None,
        "replies left over; sent:\n{}",
        out.sent
    );
    out
}

fn codes(outcome: &MessageOutcome) -> Vec<(u16, Stage)> {
    outcome
        .recipients
        .iter()
        .map(|r| (r.reply.code, r.stage))
        .collect()
}

#[test]
fn one_message_without_pipelining_one_command_at_a_time() {
    let run = run(
        config(),
        &[(envelope("a@x.test", &["b@y.test", "c@y.test"]), b"Hi\r\n")],
        &[
            "220 mx.test ESMTP\r\n",
            EHLO_BASIC,
            "250 2.1.0 ok\r\n",
            "250 2.1.5 ok\r\n",
            "250 2.1.5 ok\r\n",
            "354 go ahead\r\n",
            "250 2.0.0 queued as 1\r\n",
            "221 2.0.0 bye\r\n",
        ],
    );
    assert_eq!(
        run.sent,
        "EHLO relay.test\r\nMAIL FROM:<a@x.test> SIZE=4\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n<BODY>QUIT\r\n"
    );
    assert_eq!(
        run.phases,
        [
            Phase::Banner,
            Phase::Ehlo,
            Phase::MailFrom,
            Phase::RcptTo,
            Phase::RcptTo,
            Phase::Data,
            Phase::DataDot,
            Phase::Quit
        ]
    );
    assert!(run.closed && run.error.is_none());
    let outcome = &run.outcomes[0];
    assert_eq!(codes(outcome), [(250, Stage::Dot), (250, Stage::Dot)]);
    assert!(
        outcome
            .recipients
            .iter()
            .all(RecipientOutcome::is_delivered)
    );
    assert_eq!(
        outcome.recipients[0].rcpt.as_ref().map(|r| r.code),
        Some(250)
    );
    assert_eq!(outcome.recipients[0].reply.content(), "2.0.0 queued as 1");
}

#[test]
fn pipelining_sends_mail_rcpts_and_data_in_one_write_and_keeps_each_reply() {
    let run = run(
        config(),
        &[(
            envelope("a@x.test", &["b@y.test", "gone@y.test", "later@y.test"]),
            b"Hi\r\n",
        )],
        &[
            "220 mx.test\r\n",
            EHLO_FULL,
            "250 2.1.0 ok\r\n",
            "250 2.1.5 ok\r\n",
            "550 5.1.1 no such user\r\n",
            "451 4.3.0 try later\r\n",
            "354 go\r\n",
            "250 2.0.0 ok\r\n",
            "221 bye\r\n",
        ],
    );
    assert_eq!(
        run.sent,
        "EHLO relay.test\r\nMAIL FROM:<a@x.test> SIZE=4\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<gone@y.test>\r\nRCPT TO:<later@y.test>\r\nDATA\r\n<BODY>QUIT\r\n"
    );
    let outcome = &run.outcomes[0];
    assert_eq!(
        codes(outcome),
        [(250, Stage::Dot), (550, Stage::Rcpt), (451, Stage::Rcpt)]
    );
    assert_eq!(
        outcome.recipients[1].reply.enhanced,
        crate::reply::Enhanced::parse("5.1.1")
    );
    assert_eq!(outcome.mail.as_ref().map(|m| m.code), Some(250));
}

#[test]
fn ehlo_refused_with_5xx_falls_back_to_helo_without_extensions() {
    let run = run(
        config(),
        &[(envelope("a@x.test", &["b@y.test"]), b"x\r\n")],
        &[
            "220 old.test\r\n",
            "502 5.5.1 what\r\n",
            "250 old.test\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "250 ok\r\n",
            "221 bye\r\n",
        ],
    );
    assert!(
        run.sent.starts_with(
            "EHLO relay.test\r\nHELO relay.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n"
        ),
        "{}",
        run.sent
    );
    assert!(run.outcomes[0].recipients[0].is_delivered());
}

#[test]
fn ehlo_refused_with_4xx_is_a_session_failure() {
    let run = run(config(), &[], &["220 mx\r\n", "421 4.3.2 busy\r\n"]);
    assert!(matches!(
        run.error,
        Some(ClientError::Rejected { phase: Phase::Ehlo, ref reply }) if reply.code == 421
    ));
}

#[test]
fn a_refused_banner_is_a_session_failure() {
    let run = run(config(), &[], &["554 5.7.1 go away\r\n"]);
    assert!(matches!(
        run.error,
        Some(ClientError::Rejected { phase: Phase::Banner, ref reply }) if reply.code == 554
    ));
    assert_eq!(run.sent, "");
}

#[test]
fn required_tls_fails_when_starttls_is_not_offered() {
    let run = run(
        ClientConfig {
            starttls: StartTls::Required,
            ..config()
        },
        &[],
        &["220 mx\r\n", EHLO_FULL],
    );
    assert_eq!(run.error, Some(ClientError::TlsNotOffered));
    assert_eq!(run.sent, "EHLO relay.test\r\n");
}

#[test]
fn opportunistic_tls_stays_plaintext_only_when_starttls_is_not_offered() {
    let opportunistic = ClientConfig {
        starttls: StartTls::Opportunistic,
        ..config()
    };
    let plain = run(
        opportunistic.clone(),
        &[],
        &["220 mx\r\n", EHLO_FULL, "221 bye\r\n"],
    );
    assert_eq!(plain.sent, "EHLO relay.test\r\nQUIT\r\n");
    assert!(plain.error.is_none());

    let upgraded = run(
        opportunistic.clone(),
        &[],
        &[
            "220 mx\r\n",
            "250-mx\r\n250 STARTTLS\r\n",
            "220 2.0.0 ready\r\n",
            "250-mx\r\n250 PIPELINING\r\n",
            "221 bye\r\n",
        ],
    );
    assert_eq!(
        upgraded.sent,
        "EHLO relay.test\r\nSTARTTLS\r\n<TLS>EHLO relay.test\r\nQUIT\r\n"
    );

    let refused = run(
        opportunistic,
        &[],
        &[
            "220 mx\r\n",
            "250-mx\r\n250 STARTTLS\r\n",
            "454 4.7.0 TLS not available\r\n",
        ],
    );
    assert!(matches!(
        refused.error,
        Some(ClientError::Rejected { phase: Phase::StartTls, ref reply }) if reply.code == 454
    ));
}

#[test]
fn auth_plain_after_starttls() {
    let run = run(
        ClientConfig {
            starttls: StartTls::Required,
            credentials: Some(Credentials::new("tim", "tanstaaftanstaaf")),
            ..config()
        },
        &[],
        &[
            "220 smarthost\r\n",
            "250-smarthost\r\n250 STARTTLS\r\n",
            "220 go\r\n",
            "250-smarthost\r\n250 AUTH LOGIN PLAIN\r\n",
            "235 2.7.0 ok\r\n",
            "221 bye\r\n",
        ],
    );
    assert_eq!(
        run.sent,
        "EHLO relay.test\r\nSTARTTLS\r\n<TLS>EHLO relay.test\r\nAUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\nQUIT\r\n"
    );
    assert!(run.error.is_none());
}

#[test]
fn auth_login_over_implicit_tls() {
    let run = run(
        ClientConfig {
            implicit_tls: true,
            credentials: Some(Credentials::new("tim", "tanstaaftanstaaf")),
            ..config()
        },
        &[],
        &[
            "220 smarthost\r\n",
            "250-smarthost\r\n250 AUTH LOGIN\r\n",
            "334 VXNlcm5hbWU6\r\n",
            "334 UGFzc3dvcmQ6\r\n",
            "235 2.7.0 ok\r\n",
            "221 bye\r\n",
        ],
    );
    assert_eq!(
        run.sent,
        "EHLO relay.test\r\nAUTH LOGIN\r\ndGlt\r\ndGFuc3RhYWZ0YW5zdGFhZg==\r\nQUIT\r\n"
    );
}

#[test]
fn wrong_credentials_are_a_rejected_auth() {
    let run = run(
        ClientConfig {
            implicit_tls: true,
            credentials: Some(Credentials::new("tim", "wrong")),
            ..config()
        },
        &[],
        &[
            "220 smarthost\r\n",
            "250-smarthost\r\n250 AUTH PLAIN\r\n",
            "535 5.7.8 Authentication credentials invalid\r\n",
        ],
    );
    assert!(matches!(
        run.error,
        Some(ClientError::Rejected { phase: Phase::Auth, ref reply }) if reply.code == 535
    ));
}

#[test]
fn credentials_are_never_sent_without_tls() {
    for starttls in [StartTls::Never, StartTls::Opportunistic] {
        let run = run(
            ClientConfig {
                starttls,
                credentials: Some(Credentials::new("u", "p")),
                ..config()
            },
            &[],
            &["220 mx\r\n", "250-mx\r\n250 AUTH PLAIN LOGIN\r\n"],
        );
        assert_eq!(run.error, Some(ClientError::AuthWithoutTls));
        assert_eq!(run.sent, "EHLO relay.test\r\n");
    }
    let run = run(
        ClientConfig {
            implicit_tls: true,
            credentials: Some(Credentials::new("u", "p")),
            ..config()
        },
        &[],
        &["220 mx\r\n", "250-mx\r\n250 AUTH CRAM-MD5\r\n"],
    );
    assert_eq!(run.error, Some(ClientError::AuthNotOffered));
}

#[test]
fn smtputf8_needed_but_not_offered_fails_with_5_6_7_before_mail() {
    let mut utf8 = envelope("a@x.test", &["b@y.test"]);
    utf8.recipients[0] = parse_mailbox("josé@y.test").expect("a UTF-8 mailbox");
    let mut flagged = envelope("a@x.test", &["b@y.test", "c@y.test"]);
    flagged.smtputf8 = true;
    let run = run(
        config(),
        &[(utf8, b"x\r\n"), (flagged, b"x\r\n")],
        &["220 mx\r\n", EHLO_BASIC, "221 bye\r\n"],
    );
    assert_eq!(run.sent, "EHLO relay.test\r\nQUIT\r\n");
    assert_eq!(run.outcomes.len(), 2);
    for outcome in &run.outcomes {
        assert!(outcome.mail.is_none());
        for r in &outcome.recipients {
            assert_eq!((r.reply.code, r.stage), (550, Stage::Local));
            assert_eq!(
                r.reply.enhanced.map(|e| e.to_string()).as_deref(),
                Some("5.6.7")
            );
        }
    }
}

#[test]
fn mail_parameters_follow_what_is_offered_and_needed() {
    let mut utf8 = envelope("", &["josé@y.test"]);
    utf8.smtputf8 = true;
    let run = run(
        config(),
        &[(utf8, "caf\u{e9}\r\n".as_bytes())],
        &[
            "220 mx\r\n",
            EHLO_FULL,
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "250 ok\r\n",
            "221 bye\r\n",
        ],
    );
    assert!(
        run.sent
            .contains("MAIL FROM:<> SIZE=7 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<josé@y.test>\r\n"),
        "{}",
        run.sent
    );
}

#[test]
fn a_message_over_the_servers_size_limit_fails_before_mail() {
    let run = run(
        config(),
        &[(envelope("a@x.test", &["b@y.test"]), &[b'x'; 1001])],
        &["220 mx\r\n", EHLO_FULL, "221 bye\r\n"],
    );
    assert_eq!(run.sent, "EHLO relay.test\r\nQUIT\r\n");
    assert_eq!(codes(&run.outcomes[0]), [(552, Stage::Local)]);
}

#[test]
fn a_refused_sender_decides_every_recipient_and_the_next_message_starts_with_rset() {
    let run = run(
        config(),
        &[
            (envelope("bad@x.test", &["b@y.test", "c@y.test"]), b"1\r\n"),
            (envelope("good@x.test", &["b@y.test"]), b"2\r\n"),
        ],
        &[
            "220 mx\r\n",
            EHLO_BASIC,
            "553 5.7.1 sender rejected\r\n",
            "250 2.0.0 flushed\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "250 ok\r\n",
            "221 bye\r\n",
        ],
    );
    assert_eq!(
        run.sent,
        "EHLO relay.test\r\nMAIL FROM:<bad@x.test> SIZE=3\r\nRSET\r\nMAIL FROM:<good@x.test> SIZE=3\r\nRCPT TO:<b@y.test>\r\nDATA\r\n<BODY>QUIT\r\n"
    );
    assert_eq!(
        codes(&run.outcomes[0]),
        [(553, Stage::Mail), (553, Stage::Mail)]
    );
    assert_eq!(codes(&run.outcomes[1]), [(250, Stage::Dot)]);
}

#[test]
fn without_pipelining_data_is_sent_only_after_an_accepted_recipient() {
    let run = run(
        config(),
        &[(envelope("a@x.test", &["b@y.test", "c@y.test"]), b"1\r\n")],
        &[
            "220 mx\r\n",
            EHLO_BASIC,
            "250 ok\r\n",
            "550 5.1.1 no\r\n",
            "452 4.2.2 full\r\n",
            "221 bye\r\n",
        ],
    );
    assert!(!run.sent.contains("DATA"), "{}", run.sent);
    assert_eq!(
        codes(&run.outcomes[0]),
        [(550, Stage::Rcpt), (452, Stage::Rcpt)]
    );
}

#[test]
fn pipelined_data_after_no_accepted_recipient() {
    let refused = run(
        config(),
        &[(envelope("a@x.test", &["b@y.test"]), b"1\r\n")],
        &[
            "220 mx\r\n",
            EHLO_FULL,
            "250 ok\r\n",
            "550 5.1.1 no\r\n",
            "554 5.5.1 no valid recipients\r\n",
            "221 bye\r\n",
        ],
    );
    assert_eq!(codes(&refused.outcomes[0]), [(550, Stage::Rcpt)]);

    // A server that answers 354 anyway gets an empty message it must not deliver to
    // anyone: the lone dot ends it.
    let sloppy = run(
        config(),
        &[(envelope("a@x.test", &["b@y.test"]), b"1\r\n")],
        &[
            "220 mx\r\n",
            EHLO_FULL,
            "250 ok\r\n",
            "550 5.1.1 no\r\n",
            "354 go\r\n",
            "554 5.5.1 no recipients\r\n",
            "221 bye\r\n",
        ],
    );
    assert!(
        sloppy.sent.ends_with("DATA\r\n.\r\nQUIT\r\n"),
        "{}",
        sloppy.sent
    );
    assert_eq!(codes(&sloppy.outcomes[0]), [(550, Stage::Rcpt)]);
}

#[test]
fn data_refusals_and_final_replies_decide_the_accepted_recipients() {
    let refused = run(
        config(),
        &[(envelope("a@x.test", &["b@y.test", "c@y.test"]), b"1\r\n")],
        &[
            "220 mx\r\n",
            EHLO_BASIC,
            "250 ok\r\n",
            "250 ok\r\n",
            "550 5.1.1 no\r\n",
            "451 4.3.0 not now\r\n",
            "221 bye\r\n",
        ],
    );
    assert_eq!(
        codes(&refused.outcomes[0]),
        [(451, Stage::Data), (550, Stage::Rcpt)]
    );

    let deferred = run(
        config(),
        &[(envelope("a@x.test", &["b@y.test", "c@y.test"]), b"1\r\n")],
        &[
            "220 mx\r\n",
            EHLO_FULL,
            "250 ok\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "451 4.7.1 greylisted\r\n",
            "221 bye\r\n",
        ],
    );
    assert_eq!(
        codes(&deferred.outcomes[0]),
        [(451, Stage::Dot), (451, Stage::Dot)]
    );
    assert!(!deferred.outcomes[0].recipients[0].is_delivered());
}

#[test]
fn a_421_decides_the_open_recipients_and_closes_the_session() {
    let run = run(
        config(),
        &[
            (
                envelope("a@x.test", &["b@y.test", "c@y.test", "d@y.test"]),
                b"1\r\n",
            ),
            (envelope("a@x.test", &["e@y.test"]), b"2\r\n"),
        ],
        &[
            "220 mx\r\n",
            EHLO_BASIC,
            "250 ok\r\n",
            "550 5.1.1 no\r\n",
            "421 4.3.2 shutting down\r\n",
        ],
    );
    assert_eq!(
        codes(&run.outcomes[0]),
        [(550, Stage::Rcpt), (421, Stage::Rcpt), (421, Stage::Rcpt)]
    );
    assert_eq!(
        run.outcomes.len(),
        1,
        "no second message on a closed session"
    );
    assert!(!run.sent.contains("QUIT"));
}

#[test]
fn a_421_after_the_dot_is_a_dot_stage_reply() {
    let run = run(
        config(),
        &[(envelope("a@x.test", &["b@y.test"]), b"1\r\n")],
        &[
            "220 mx\r\n",
            EHLO_FULL,
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "421 4.4.2 timeout\r\n",
        ],
    );
    assert_eq!(codes(&run.outcomes[0]), [(421, Stage::Dot)]);
}

#[test]
fn reuse_with_pipelining_puts_rset_in_front_of_the_batch() {
    let run = run(
        config(),
        &[
            (envelope("a@x.test", &["b@y.test"]), b"1\r\n"),
            (envelope("a@x.test", &["c@y.test"]), b"2\r\n"),
        ],
        &[
            "220 mx\r\n",
            EHLO_FULL,
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "250 ok 1\r\n",
            "250 flushed\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "250 ok 2\r\n",
            "221 bye\r\n",
        ],
    );
    assert!(
        run.sent.contains(
            "<BODY>RSET\r\nMAIL FROM:<a@x.test> SIZE=3\r\nRCPT TO:<c@y.test>\r\nDATA\r\n<BODY>"
        ),
        "{}",
        run.sent
    );
    assert_eq!(run.outcomes.len(), 2);
    assert_eq!(run.outcomes[1].recipients[0].reply.lines, ["ok 2"]);
    assert_eq!(run.phases[6], Phase::Rset);
}

#[test]
fn replies_that_cannot_answer_the_command_are_protocol_errors() {
    let run = run(
        config(),
        &[(envelope("a@x.test", &["b@y.test"]), b"1\r\n")],
        &["220 mx\r\n", EHLO_BASIC, "354 go\r\n"],
    );
    assert!(matches!(
        run.error,
        Some(ClientError::Unexpected {
            phase: Phase::MailFrom,
            ..
        })
    ));
    let mut client = Client::new(config());
    assert_eq!(
        client.start_message(&envelope("a@x.test", &["b@y.test"]), b""),
        Err(ClientError::NotReady)
    );
    assert!(client.on_reply(reply("220 mx\r\n")).is_ok());
    assert!(matches!(
        client.on_reply(reply("334 what\r\n")),
        Err(ClientError::Unexpected { .. })
    ));
}

#[test]
fn any_sequence_of_replies_ends_in_a_step_or_an_error_never_a_panic() {
    const POOL: &[&str] = &[
        "220 hi\r\n",
        "221 bye\r\n",
        "235 ok\r\n",
        "250 ok\r\n",
        "250-x\r\n250-PIPELINING\r\n250-STARTTLS\r\n250-SMTPUTF8\r\n250 AUTH PLAIN LOGIN\r\n",
        "334 next\r\n",
        "354 go\r\n",
        "421 4.3.2 closing\r\n",
        "451 4.3.0 later\r\n",
        "500 5.5.1 what\r\n",
        "550 5.1.1 no\r\n",
    ];
    // A fixed linear congruential generator: the same 20 000 conversations every run.
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    let env = envelope("a@x.test", &["b@y.test", "c@y.test", "d@y.test"]);
    let mut finished = 0;
    for _ in 0..20_000 {
        let mut client = Client::new(ClientConfig {
            starttls: [StartTls::Never, StartTls::Opportunistic, StartTls::Required][next() % 3],
            credentials: (next() % 2 == 0).then(|| Credentials::new("u", "p")),
            implicit_tls: next() % 2 == 0,
            ..config()
        });
        for _ in 0..30 {
            if client.is_ready() {
                match client.start_message(&env, b"x\r\n") {
                    Ok(Step::Done(outcome)) => assert_eq!(outcome.recipients.len(), 3),
                    Ok(_) => {}
                    Err(e) => panic!("a ready client refused a message: {e}"),
                }
                continue;
            }
            match client.on_reply(reply(POOL[next() % POOL.len()])) {
                Ok(Step::Done(outcome)) => {
                    assert_eq!(outcome.recipients.len(), 3);
                    finished += 1;
                }
                Ok(Step::StartTls) => {
                    client.tls_established();
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    assert!(
        finished > 50,
        "few random conversations reached an outcome: {finished}"
    );
}
