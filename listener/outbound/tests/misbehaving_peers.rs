//! A scripted loopback SMTP server doing what real servers do badly: 451 then 250,
//! 550, mixed per-recipient replies, a drop mid-DATA, silence, TLS required but not
//! offered, no PIPELINING, no SMTPUTF8, 421, garbage.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use postern_outbound::{
    ConnectFailure, ConnectOptions, NextHop, OutboundConnection, OutboundError, Phase, Stage,
    Timeouts, TlsClients, TlsMode,
};
use postern_smtp::address::parse_mailbox;
use support::peer::{DROP, EHLO_BARE, EHLO_FULL, Peer, usual};
use support::{envelope, options};

fn hop(addr: SocketAddr) -> Vec<NextHop> {
    vec![NextHop {
        name: "mx.test".into(),
        addresses: vec![addr.ip()],
    }]
}

fn tls() -> TlsClients {
    TlsClients::system_roots().expect("system roots")
}

async fn connect(peer: &Peer, tls_mode: TlsMode) -> Result<OutboundConnection, OutboundError> {
    connect_with(peer, options(peer.addr.port(), tls_mode)).await
}

async fn connect_with(
    peer: &Peer,
    options: ConnectOptions,
) -> Result<OutboundConnection, OutboundError> {
    OutboundConnection::connect(&hop(peer.addr), &options, &tls()).await
}

const BODY: &[u8] = b"Subject: test\r\n\r\nhello\r\n.dot line\r\n";

fn codes(outcome: &postern_outbound::MessageOutcome) -> Vec<(u16, Stage)> {
    outcome
        .recipients
        .iter()
        .map(|r| (r.reply.code, r.stage))
        .collect()
}

#[tokio::test]
async fn a_451_then_a_250_on_the_next_attempt() {
    let peer = Peer::start(|session| {
        let first = session.index() == 0;
        session.serve(move |line| {
            if first && line.starts_with("RCPT") {
                "451 4.7.1 greylisted, come back later\r\n".into()
            } else {
                usual(line, EHLO_FULL)
            }
        })
    })
    .await;
    let env = envelope("a@relay.test", &["b@mx.test"]);

    let mut first = connect(&peer, TlsMode::None).await.expect("a connection");
    let outcome = first.send(&env, BODY).await.expect("a transaction");
    assert_eq!(codes(&outcome), [(451, Stage::Rcpt)]);
    assert_eq!(
        outcome.recipients[0].reply.content(),
        "4.7.1 greylisted, come back later"
    );
    first.quit().await;

    let mut second = connect(&peer, TlsMode::None).await.expect("a connection");
    let outcome = second.send(&env, BODY).await.expect("a transaction");
    assert!(outcome.recipients[0].is_delivered());
    second.quit().await;

    let log = peer.log();
    // The peer answered 354 though no recipient was accepted: only a lone dot went.
    assert!(
        !log[0]
            .iter()
            .any(|l| l.starts_with("<body") && l != "<body 0 octets>"),
        "{log:?}"
    );
    assert!(
        log[1].contains(&format!("<body {} octets>", BODY.len() + 1 + 3)),
        "{log:?}"
    );
}

#[tokio::test]
async fn mixed_per_recipient_replies_are_kept_apart() {
    for ehlo in [EHLO_FULL, EHLO_BARE] {
        let peer = Peer::start(move |session| {
            session.serve(move |line| match line {
                l if l.contains("<gone@") => "550 5.1.1 no such user\r\n".into(),
                l if l.contains("<full@") => "452 4.2.2 mailbox full\r\n".into(),
                l => usual(l, ehlo),
            })
        })
        .await;
        let mut connection = connect(&peer, TlsMode::None).await.expect("a connection");
        let outcome = connection
            .send(
                &envelope(
                    "a@relay.test",
                    &["ok@mx.test", "gone@mx.test", "full@mx.test"],
                ),
                BODY,
            )
            .await
            .expect("a transaction");
        assert_eq!(
            codes(&outcome),
            [(250, Stage::Dot), (550, Stage::Rcpt), (452, Stage::Rcpt)],
            "{ehlo:?}"
        );
        assert_eq!(outcome.recipients[1].reply.content(), "5.1.1 no such user");
        assert!(outcome.recipients[0].is_delivered());
        connection.quit().await;
    }
}

#[tokio::test]
async fn without_pipelining_data_waits_for_an_accepted_recipient() {
    let peer = Peer::start(|session| {
        session.serve(|line| match line {
            l if l.starts_with("RCPT") => "550 5.1.1 nobody here\r\n".into(),
            l => usual(l, EHLO_BARE),
        })
    })
    .await;
    let mut connection = connect(&peer, TlsMode::None).await.expect("a connection");
    assert!(!connection.capabilities().pipelining);
    let outcome = connection
        .send(&envelope("a@relay.test", &["x@mx.test", "y@mx.test"]), BODY)
        .await
        .expect("a transaction");
    assert_eq!(codes(&outcome), [(550, Stage::Rcpt), (550, Stage::Rcpt)]);
    connection.quit().await;
    assert!(
        !peer.log()[0].iter().any(|l| l == "DATA"),
        "{:?}",
        peer.log()
    );
}

#[tokio::test]
async fn a_drop_mid_data_is_a_dropped_connection_in_the_data_phase() {
    let peer = Peer::start(|mut session| async move {
        session.send("220 mx.test\r\n").await;
        while let Some(line) = session.line().await {
            let reply = usual(&line, EHLO_BARE);
            session.send(&reply).await;
            if line == "DATA" {
                // Read a little of the message, then vanish.
                let _ = session.line().await;
                session.drop_connection();
                return;
            }
        }
    })
    .await;
    let mut connection = connect(&peer, TlsMode::None).await.expect("a connection");
    let big =
        b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n".repeat(40_000);
    let error = connection
        .send(&envelope("a@relay.test", &["b@mx.test"]), &big)
        .await
        .expect_err("the peer dropped the connection");
    assert!(
        matches!(
            error,
            OutboundError::Dropped {
                phase: Phase::DataDot,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.to_reply().code, 421);
    assert!(!connection.is_usable());
    assert!(matches!(
        connection
            .send(&envelope("a@relay.test", &["b@mx.test"]), BODY)
            .await,
        Err(OutboundError::Closed)
    ));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_in_the_banner() {
    let peer = Peer::start(|session| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(session);
    })
    .await;
    let mut options = options(peer.addr.port(), TlsMode::None);
    options.timeouts = Timeouts {
        banner: Duration::from_millis(200),
        ..options.timeouts
    };
    let error = connect_with(&peer, options).await.expect_err("silence");
    assert!(
        matches!(
            error,
            OutboundError::Timeout {
                phase: Phase::Banner,
                ..
            }
        ),
        "{error:?}"
    );
    let reply = error.to_reply();
    assert_eq!(
        (reply.code, reply.enhanced.map(|e| e.to_string())),
        (421, Some("4.4.2".into()))
    );
    assert_eq!(error.peer(), Some(peer.addr));
}

#[tokio::test]
async fn a_server_silent_after_the_dot_times_out_in_data_dot() {
    let peer = Peer::start(|session| {
        session.serve(|line| match line {
            "<dot>" => String::new(),
            l => usual(l, EHLO_FULL),
        })
    })
    .await;
    let mut options = options(peer.addr.port(), TlsMode::None);
    options.timeouts.data_dot = Duration::from_millis(200);
    let mut connection = connect_with(&peer, options).await.expect("a connection");
    let error = connection
        .send(&envelope("a@relay.test", &["b@mx.test"]), BODY)
        .await
        .expect_err("no final reply");
    assert!(
        matches!(
            error,
            OutboundError::Timeout {
                phase: Phase::DataDot,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn tls_required_but_not_offered_sends_no_mail() {
    let peer = Peer::start(|session| session.serve(|line| usual(line, EHLO_FULL))).await;
    let error = connect(&peer, TlsMode::Required)
        .await
        .expect_err("no STARTTLS");
    assert!(
        matches!(error, OutboundError::TlsNotOffered { .. }),
        "{error:?}"
    );
    assert!(!error.is_permanent());
    let log = peer.log();
    assert_eq!(log[0], ["EHLO relay.test"], "{log:?}");

    // Opportunistic TLS goes on in plaintext when STARTTLS is not offered.
    let mut plain = connect(&peer, TlsMode::Opportunistic)
        .await
        .expect("plaintext");
    assert!(!plain.is_tls());
    let outcome = plain
        .send(&envelope("a@relay.test", &["b@mx.test"]), BODY)
        .await
        .expect("a transaction");
    assert!(outcome.recipients[0].is_delivered());
    plain.quit().await;
}

#[tokio::test]
async fn smtputf8_needed_toward_a_server_without_it_fails_with_5_6_7() {
    let peer = Peer::start(|session| session.serve(|line| usual(line, EHLO_BARE))).await;
    let mut connection = connect(&peer, TlsMode::None).await.expect("a connection");
    let mut env = envelope("a@relay.test", &["b@mx.test"]);
    env.recipients[0] = parse_mailbox("josé@mx.test").expect("a UTF-8 mailbox");
    let outcome = connection.send(&env, BODY).await.expect("an outcome");
    assert_eq!(codes(&outcome), [(550, Stage::Local)]);
    assert_eq!(
        outcome.recipients[0].reply.content().split(' ').next(),
        Some("5.6.7")
    );
    assert!(
        connection.is_usable(),
        "the connection can carry other messages"
    );
    connection.quit().await;
    assert!(
        !peer.log()[0].iter().any(|l| l.starts_with("MAIL")),
        "{:?}",
        peer.log()
    );
}

#[tokio::test]
async fn one_connection_carries_several_messages_with_rset_between() {
    let peer = Peer::start(|session| session.serve(|line| usual(line, EHLO_FULL))).await;
    let mut connection = connect(&peer, TlsMode::None).await.expect("a connection");
    for n in 0..3 {
        let outcome = connection
            .send(&envelope("a@relay.test", &[&format!("r{n}@mx.test")]), BODY)
            .await
            .expect("a transaction");
        assert!(outcome.recipients[0].is_delivered());
    }
    connection.quit().await;
    assert_eq!(peer.connections(), 1);
    let log = &peer.log()[0];
    let commands: Vec<&str> = log
        .iter()
        .map(|l| l.split([' ', ':']).next().unwrap_or(""))
        .filter(|verb| ["MAIL", "RSET", "QUIT"].contains(verb))
        .collect();
    assert_eq!(commands, ["MAIL", "RSET", "MAIL", "RSET", "MAIL", "QUIT"]);
}

#[tokio::test]
async fn a_421_closes_the_connection_and_decides_the_open_recipients() {
    let peer = Peer::start(|session| {
        let rcpts = AtomicUsize::new(0);
        session.serve(move |line| {
            if line.starts_with("RCPT") && rcpts.fetch_add(1, Ordering::SeqCst) == 1 {
                return "421 4.3.2 shutting down\r\n".into();
            }
            usual(line, EHLO_BARE)
        })
    })
    .await;
    let mut connection = connect(&peer, TlsMode::None).await.expect("a connection");
    let outcome = connection
        .send(
            &envelope("a@relay.test", &["a@mx.test", "b@mx.test", "c@mx.test"]),
            BODY,
        )
        .await
        .expect("an outcome");
    assert_eq!(
        codes(&outcome),
        [(421, Stage::Rcpt), (421, Stage::Rcpt), (421, Stage::Rcpt)]
    );
    assert!(!connection.is_usable());
}

#[tokio::test]
async fn a_refused_greeting_and_garbage_are_typed() {
    let refusing = Peer::start(|session| {
        session.serve(|line| match line {
            "<connect>" => "554 5.7.1 no service for you\r\n".into(),
            l => usual(l, EHLO_FULL),
        })
    })
    .await;
    let error = connect(&refusing, TlsMode::None)
        .await
        .expect_err("refused");
    assert!(
        matches!(
            error,
            OutboundError::Rejected {
                phase: Phase::Banner,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_permanent());
    assert_eq!(error.to_reply().code, 554);

    let garbage = Peer::start(|session| {
        session.serve(|line| match line {
            "<connect>" => "HTTP/1.1 400 Bad Request\r\n".into(),
            _ => DROP.into(),
        })
    })
    .await;
    let error = connect(&garbage, TlsMode::None)
        .await
        .expect_err("not SMTP");
    assert!(
        matches!(
            error,
            OutboundError::Protocol {
                phase: Phase::Banner,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn refused_addresses_are_skipped_and_the_last_failure_reported() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let closed_port = closed.local_addr().expect("an address").port();
    drop(closed);
    let hops = vec![NextHop {
        name: "down.test".into(),
        addresses: vec!["127.0.0.1".parse().expect("an IP")],
    }];
    let error = OutboundConnection::connect(&hops, &options(closed_port, TlsMode::None), &tls())
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(
            error,
            OutboundError::Connect {
                failure: ConnectFailure::Refused,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.to_reply().code, 421);
    assert!(matches!(
        OutboundConnection::connect(&[], &options(closed_port, TlsMode::None), &tls()).await,
        Err(OutboundError::NoAddress)
    ));
}

#[tokio::test]
async fn a_connect_that_gets_no_answer_times_out() {
    // A listener that never accepts, its backlog filled: the kernel drops further SYNs,
    // so a connect gets no answer at all (the loopback stand-in for a blackholed host).
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("bind");
    let listener = socket.listen(1).expect("listen");
    let addr = listener.local_addr().expect("an address");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(stream);
        }
    }
    let mut options = options(addr.port(), TlsMode::None);
    options.timeouts.connect = Duration::from_millis(300);
    let error = OutboundConnection::connect(&hop(addr), &options, &tls())
        .await
        .expect_err("no answer");
    assert!(
        matches!(
            error,
            OutboundError::Connect {
                failure: ConnectFailure::Timeout,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.to_reply().code, 421);
    drop(listener);
}
