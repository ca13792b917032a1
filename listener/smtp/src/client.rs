//! The outbound SMTP client as a state machine with no I/O (RFC 5321 §3, §4.1).
//!
//! A driver owns the socket. It asks the [`Client`] what to do ([`Step`]), writes what it
//! is told, parses each reply with [`parse_reply`](crate::reply_parser::parse_reply) and
//! hands it to [`Client::on_reply`], using [`Step`]'s [`Phase`] to pick the timeout:
//!
//! banner → EHLO (HELO when EHLO gets a 5xx) → STARTTLS when wanted → EHLO again →
//! AUTH PLAIN or LOGIN (only over TLS) → ready; per message: [RSET] → MAIL FROM (with
//! `SIZE=`, `BODY=8BITMIME`, `SMTPUTF8` when needed and offered) → RCPT TO each → DATA
//! → the dot-stuffed body → final reply → ready again; QUIT at the end.
//!
//! With PIPELINING offered, [RSET,] MAIL, every RCPT and DATA go out in one write
//! (RFC 2920) and their replies are read in order. Without it, DATA is sent only once a
//! recipient was accepted. Every transaction after the first starts with RSET, so a
//! reused connection is known to be in step. A `421` reply at any point ends the
//! session: the recipients not yet decided get it, and the client is closed.

use std::collections::VecDeque;
use std::fmt;

use crate::address::Mailbox;
use crate::capabilities::Capabilities;
use crate::credentials::Credentials;
use crate::outcome::{MessageOutcome, RecipientOutcome, Stage};
use crate::reply::Reply;

/// Whether to upgrade a plaintext connection with STARTTLS (RFC 3207).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartTls {
    /// Never send STARTTLS (the connection is plaintext, or already TLS from the start).
    Never,
    /// Upgrade when the server offers STARTTLS; stay plaintext only when it does not.
    Opportunistic,
    /// Upgrade, or fail with [`ClientError::TlsNotOffered`].
    Required,
}

/// How a [`Client`] behaves.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The name sent in EHLO/HELO: this host's name.
    pub ehlo_name: String,
    /// STARTTLS policy.
    pub starttls: StartTls,
    /// The connection is TLS from its first byte (implicit TLS, RFC 8314).
    pub implicit_tls: bool,
    /// AUTH with these after TLS is up; never sent over plaintext.
    pub credentials: Option<Credentials>,
}

/// Which exchange the client waits for: the driver's key to a per-phase timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The server's greeting.
    Banner,
    /// EHLO or HELO.
    Ehlo,
    /// STARTTLS and the handshake after it.
    StartTls,
    /// AUTH.
    Auth,
    /// MAIL FROM.
    MailFrom,
    /// RCPT TO.
    RcptTo,
    /// The DATA command (until 354).
    Data,
    /// The body and the reply after the final dot.
    DataDot,
    /// RSET.
    Rset,
    /// QUIT.
    Quit,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Banner => "banner",
            Self::Ehlo => "EHLO",
            Self::StartTls => "STARTTLS",
            Self::Auth => "AUTH",
            Self::MailFrom => "MAIL FROM",
            Self::RcptTo => "RCPT TO",
            Self::Data => "DATA",
            Self::DataDot => "end of data",
            Self::Rset => "RSET",
            Self::Quit => "QUIT",
        })
    }
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write `bytes`, then read a reply for `phase` and pass it to [`Client::on_reply`].
    Send {
        /// The command line(s), CRLF-terminated.
        bytes: Vec<u8>,
        /// What the next reply answers.
        phase: Phase,
    },
    /// Read one more reply (more pipelined replies are due) and pass it on.
    Read {
        /// What the next reply answers.
        phase: Phase,
    },
    /// Do the TLS handshake on the socket now, then call [`Client::tls_established`].
    StartTls,
    /// Write the dot-stuffed message (see [`dot_stuff`](crate::dot_stuff)), then read the
    /// final reply for [`Phase::DataDot`].
    SendBody,
    /// The session is ready: call [`Client::start_message`] or [`Client::quit`].
    Ready,
    /// A message is finished; the session is ready again unless
    /// [`Client::is_closed`] (after a `421`).
    Done(MessageOutcome),
    /// The session is over (QUIT answered, or nothing more to say).
    Closed,
}

/// A session-level failure: the connection cannot carry mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The server refused the greeting, EHLO and HELO, STARTTLS or AUTH (e.g. `535
    /// 5.7.8` for wrong credentials), or RSET.
    Rejected {
        /// The exchange refused.
        phase: Phase,
        /// The server's reply.
        reply: Reply,
    },
    /// TLS is required but the server does not offer STARTTLS.
    TlsNotOffered,
    /// Credentials are configured but the server offers neither AUTH PLAIN nor LOGIN.
    AuthNotOffered,
    /// Credentials are configured but the connection is not TLS: they are never sent.
    AuthWithoutTls,
    /// A reply that cannot answer what was sent (e.g. `354` to MAIL FROM, `334` outside
    /// AUTH).
    Unexpected {
        /// What the client waited for.
        phase: Phase,
        /// The reply that came.
        reply: Reply,
    },
    /// [`Client::start_message`] while the session is not ready for a message.
    NotReady,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected { phase, reply } => {
                write!(f, "{phase} refused: {} {}", reply.code, reply.content())
            }
            Self::TlsNotOffered => f.write_str("TLS is required but STARTTLS is not offered"),
            Self::AuthNotOffered => {
                f.write_str("credentials are configured but AUTH PLAIN/LOGIN is not offered")
            }
            Self::AuthWithoutTls => {
                f.write_str("credentials are configured but the connection is not TLS")
            }
            Self::Unexpected { phase, reply } => {
                write!(
                    f,
                    "unexpected reply to {phase}: {} {}",
                    reply.code,
                    reply.content()
                )
            }
            Self::NotReady => f.write_str("the session is not ready for a message"),
        }
    }
}

impl std::error::Error for ClientError {}

/// One message's envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse path; None for the null sender `<>` (bounces).
    pub sender: Option<Mailbox>,
    /// The forward paths, at least one.
    pub recipients: Vec<Mailbox>,
    /// The message was received with `SMTPUTF8` (UTF-8 headers): it needs SMTPUTF8 even
    /// when every address is ASCII.
    pub smtputf8: bool,
}

impl Envelope {
    /// Whether the transaction needs the server's SMTPUTF8: a UTF-8 address or message.
    pub fn needs_smtputf8(&self) -> bool {
        self.smtputf8
            || self.sender.as_ref().is_some_and(|s| !s.is_ascii())
            || self.recipients.iter().any(|r| !r.is_ascii())
    }
}

/// The synthetic reply for a message that needs SMTPUTF8 toward a server without it.
pub fn smtputf8_not_offered() -> Reply {
    Reply::new(
        550,
        "5.6.7",
        "the message needs SMTPUTF8 but the server does not offer it",
    )
}

/// The synthetic reply for a message over the server's announced SIZE limit.
pub fn over_size_limit(limit: u64) -> Reply {
    Reply::new(
        552,
        "5.3.4",
        format!("the message is larger than the server's limit of {limit} octets"),
    )
}

/// What the client waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Banner,
    Ehlo,
    Helo,
    StartTls,
    Handshake,
    AuthPlain,
    AuthLoginUser,
    AuthLoginPassword,
    AuthLoginDone,
    Ready,
    Transaction(Transaction),
    Quit,
    Closed,
}

/// A reply the transaction waits for, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Rset,
    Mail,
    Rcpt(usize),
    Data,
    Dot,
    /// The lone dot sent after a pipelined DATA got 354 with no recipient accepted.
    EmptyDot,
}

impl Expect {
    fn phase(self) -> Phase {
        match self {
            Self::Rset => Phase::Rset,
            Self::Mail => Phase::MailFrom,
            Self::Rcpt(_) => Phase::RcptTo,
            Self::Data => Phase::Data,
            Self::Dot | Self::EmptyDot => Phase::DataDot,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Transaction {
    /// `RCPT TO:<..>` lines not yet sent (without PIPELINING, one per round trip).
    rcpt_lines: VecDeque<Vec<u8>>,
    expect: VecDeque<Expect>,
    /// MAIL FROM line, when sent after an RSET round trip (no PIPELINING).
    mail_line: Option<Vec<u8>>,
    mail: Option<Reply>,
    rcpt: Vec<Option<Reply>>,
    data: Option<Reply>,
    /// DATA went out in the pipelined batch.
    data_sent: bool,
}

/// The client side of one SMTP session.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    state: State,
    caps: Capabilities,
    tls: bool,
    /// A transaction happened on this session: the next one starts with RSET.
    used: bool,
}

impl Client {
    /// A client for a new connection; its first step is to read the banner.
    pub fn new(config: ClientConfig) -> Self {
        let tls = config.implicit_tls;
        Self {
            config,
            state: State::Banner,
            caps: Capabilities::default(),
            tls,
            used: false,
        }
    }

    /// The first step: read the banner.
    pub fn start(&self) -> Step {
        Step::Read {
            phase: Phase::Banner,
        }
    }

    /// What the server offered in its last EHLO reply.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Whether the session runs over TLS (implicit or after STARTTLS).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Whether the session is ready for [`start_message`](Self::start_message).
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Whether the session is over (QUIT, or the server said `421`).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The TLS handshake after STARTTLS succeeded: EHLO again.
    pub fn tls_established(&mut self) -> Step {
        self.tls = true;
        self.caps = Capabilities::default();
        self.send_ehlo()
    }

    /// Starts a message. `body` is the message as the spool holds it (CRLF line ends,
    /// not dot-stuffed); it gives the `SIZE=` and whether `BODY=8BITMIME` applies.
    ///
    /// Returns [`Step::Done`] at once, with nothing to send, when the message cannot go
    /// to this server: SMTPUTF8 needed but not offered (`550 5.6.7`), or larger than the
    /// server's SIZE limit (`552 5.3.4`).
    pub fn start_message(&mut self, envelope: &Envelope, body: &[u8]) -> Result<Step, ClientError> {
        if self.state != State::Ready || envelope.recipients.is_empty() {
            return Err(ClientError::NotReady);
        }
        let count = envelope.recipients.len();
        let smtputf8 = envelope.needs_smtputf8();
        if smtputf8 && !self.caps.smtputf8 {
            let reply = smtputf8_not_offered();
            return Ok(Step::Done(MessageOutcome::all(
                count,
                None,
                &reply,
                Stage::Local,
            )));
        }
        let size = body.len() as u64;
        if let Some(limit) = self.caps.size.filter(|&l| l > 0 && size > l) {
            let reply = over_size_limit(limit);
            return Ok(Step::Done(MessageOutcome::all(
                count,
                None,
                &reply,
                Stage::Local,
            )));
        }
        let mail_line = self.mail_line(envelope, size, !body.is_ascii(), smtputf8);
        let rcpt_lines: VecDeque<Vec<u8>> = envelope
            .recipients
            .iter()
            .map(|r| format!("RCPT TO:<{r}>\r\n").into_bytes())
            .collect();
        let rset = std::mem::replace(&mut self.used, true);
        let mut tx = Transaction {
            rcpt_lines,
            expect: VecDeque::new(),
            mail_line: None,
            mail: None,
            rcpt: vec![None; count],
            data: None,
            data_sent: false,
        };
        let step = if self.caps.pipelining {
            let mut bytes = Vec::new();
            if rset {
                bytes.extend_from_slice(b"RSET\r\n");
                tx.expect.push_back(Expect::Rset);
            }
            bytes.extend_from_slice(&mail_line);
            tx.expect.push_back(Expect::Mail);
            for (i, line) in tx.rcpt_lines.drain(..).enumerate() {
                bytes.extend_from_slice(&line);
                tx.expect.push_back(Expect::Rcpt(i));
            }
            bytes.extend_from_slice(b"DATA\r\n");
            tx.expect.push_back(Expect::Data);
            tx.data_sent = true;
            let phase = tx.expect[0].phase();
            Step::Send { bytes, phase }
        } else if rset {
            tx.mail_line = Some(mail_line);
            tx.expect.push_back(Expect::Rset);
            Step::Send {
                bytes: b"RSET\r\n".to_vec(),
                phase: Phase::Rset,
            }
        } else {
            tx.expect.push_back(Expect::Mail);
            Step::Send {
                bytes: mail_line,
                phase: Phase::MailFrom,
            }
        };
        self.state = State::Transaction(tx);
        Ok(step)
    }

    /// Ends the session politely: QUIT (or [`Step::Closed`] when already closed).
    pub fn quit(&mut self) -> Step {
        if self.state == State::Closed {
            return Step::Closed;
        }
        self.state = State::Quit;
        Step::Send {
            bytes: b"QUIT\r\n".to_vec(),
            phase: Phase::Quit,
        }
    }

    /// Takes the next reply from the server.
    pub fn on_reply(&mut self, reply: Reply) -> Result<Step, ClientError> {
        let state = std::mem::replace(&mut self.state, State::Closed);
        match state {
            State::Banner => self.on_banner(reply),
            State::Ehlo => self.on_ehlo(reply),
            State::Helo => self.on_helo(reply),
            State::StartTls => self.on_starttls(reply),
            State::AuthPlain | State::AuthLoginDone => self.on_auth_done(reply),
            State::AuthLoginUser => self.on_auth_login(reply, true),
            State::AuthLoginPassword => self.on_auth_login(reply, false),
            State::Transaction(tx) => self.on_transaction(tx, reply),
            State::Quit => Ok(Step::Closed),
            State::Handshake | State::Ready | State::Closed => {
                let phase = match state {
                    State::Handshake => Phase::StartTls,
                    _ => Phase::Quit,
                };
                self.state = state;
                Err(ClientError::Unexpected { phase, reply })
            }
        }
    }

    fn on_banner(&mut self, reply: Reply) -> Result<Step, ClientError> {
        match reply.code {
            220 => Ok(self.send_ehlo()),
            _ if reply.is_failure() => Err(ClientError::Rejected {
                phase: Phase::Banner,
                reply,
            }),
            _ => Err(ClientError::Unexpected {
                phase: Phase::Banner,
                reply,
            }),
        }
    }

    fn send_ehlo(&mut self) -> Step {
        self.state = State::Ehlo;
        Step::Send {
            bytes: format!("EHLO {}\r\n", self.config.ehlo_name).into_bytes(),
            phase: Phase::Ehlo,
        }
    }

    fn on_ehlo(&mut self, reply: Reply) -> Result<Step, ClientError> {
        match reply.code {
            250 => {
                self.caps = Capabilities::from_ehlo(&reply);
                self.after_ehlo()
            }
            500..=599 => {
                self.state = State::Helo;
                Ok(Step::Send {
                    bytes: format!("HELO {}\r\n", self.config.ehlo_name).into_bytes(),
                    phase: Phase::Ehlo,
                })
            }
            _ => Err(self.refused(Phase::Ehlo, reply)),
        }
    }

    fn on_helo(&mut self, reply: Reply) -> Result<Step, ClientError> {
        if reply.code != 250 {
            return Err(self.refused(Phase::Ehlo, reply));
        }
        self.caps = Capabilities::default();
        self.after_ehlo()
    }

    fn after_ehlo(&mut self) -> Result<Step, ClientError> {
        if !self.tls {
            let offered = self.caps.starttls;
            match self.config.starttls {
                StartTls::Required if !offered => return Err(ClientError::TlsNotOffered),
                StartTls::Required | StartTls::Opportunistic if offered => {
                    self.state = State::StartTls;
                    return Ok(Step::Send {
                        bytes: b"STARTTLS\r\n".to_vec(),
                        phase: Phase::StartTls,
                    });
                }
                _ => {}
            }
        }
        let Some(credentials) = &self.config.credentials else {
            self.state = State::Ready;
            return Ok(Step::Ready);
        };
        if !self.tls {
            return Err(ClientError::AuthWithoutTls);
        }
        let (state, bytes) = if self.caps.auth_plain {
            let line = format!("AUTH PLAIN {}\r\n", credentials.plain_response());
            (State::AuthPlain, line.into_bytes())
        } else if self.caps.auth_login {
            (State::AuthLoginUser, b"AUTH LOGIN\r\n".to_vec())
        } else {
            return Err(ClientError::AuthNotOffered);
        };
        self.state = state;
        Ok(Step::Send {
            bytes,
            phase: Phase::Auth,
        })
    }

    fn on_starttls(&mut self, reply: Reply) -> Result<Step, ClientError> {
        if reply.code != 220 {
            return Err(self.refused(Phase::StartTls, reply));
        }
        self.state = State::Handshake;
        Ok(Step::StartTls)
    }

    fn on_auth_login(&mut self, reply: Reply, username: bool) -> Result<Step, ClientError> {
        if reply.code != 334 {
            return Err(self.refused(Phase::Auth, reply));
        }
        let credentials = self
            .config
            .credentials
            .as_ref()
            .expect("AUTH LOGIN only starts with credentials");
        let (state, line) = if username {
            (State::AuthLoginPassword, credentials.login_username())
        } else {
            (State::AuthLoginDone, credentials.login_password())
        };
        self.state = state;
        Ok(Step::Send {
            bytes: format!("{line}\r\n").into_bytes(),
            phase: Phase::Auth,
        })
    }

    fn on_auth_done(&mut self, reply: Reply) -> Result<Step, ClientError> {
        if reply.code != 235 {
            return Err(self.refused(Phase::Auth, reply));
        }
        self.state = State::Ready;
        Ok(Step::Ready)
    }

    /// A refusal (4xx/5xx) or, for any other code, an unexpected reply.
    fn refused(&self, phase: Phase, reply: Reply) -> ClientError {
        if reply.is_failure() {
            ClientError::Rejected { phase, reply }
        } else {
            ClientError::Unexpected { phase, reply }
        }
    }

    fn mail_line(
        &self,
        envelope: &Envelope,
        size: u64,
        eight_bit: bool,
        smtputf8: bool,
    ) -> Vec<u8> {
        let mut line = match &envelope.sender {
            Some(sender) => format!("MAIL FROM:<{sender}>"),
            None => "MAIL FROM:<>".to_string(),
        };
        if self.caps.size.is_some() {
            line.push_str(&format!(" SIZE={size}"));
        }
        if eight_bit && self.caps.eight_bit_mime {
            line.push_str(" BODY=8BITMIME");
        }
        if smtputf8 {
            line.push_str(" SMTPUTF8");
        }
        line.push_str("\r\n");
        line.into_bytes()
    }

    fn on_transaction(&mut self, mut tx: Transaction, reply: Reply) -> Result<Step, ClientError> {
        let expect = tx
            .expect
            .pop_front()
            .expect("a transaction always waits for a reply");
        let phase = expect.phase();
        if reply.code == 334 || reply.code == 354 && expect != Expect::Data {
            return Err(ClientError::Unexpected { phase, reply });
        }
        if reply.code == 421 {
            return Ok(self.closed_by(tx, expect, reply));
        }
        match expect {
            Expect::Rset => {
                if reply.is_failure() && !self.caps.pipelining {
                    return Err(ClientError::Rejected { phase, reply });
                }
                if let Some(mail) = tx.mail_line.take() {
                    tx.expect.push_back(Expect::Mail);
                    self.state = State::Transaction(tx);
                    return Ok(Step::Send {
                        bytes: mail,
                        phase: Phase::MailFrom,
                    });
                }
            }
            Expect::Mail => {
                tx.mail = Some(reply);
                if !self.caps.pipelining {
                    return Ok(self.next_unpipelined(tx));
                }
            }
            Expect::Rcpt(i) => {
                tx.rcpt[i] = Some(reply);
                if !self.caps.pipelining {
                    return Ok(self.next_unpipelined(tx));
                }
            }
            Expect::Data => {
                if reply.code == 354 {
                    let accepted = accepted(&tx);
                    tx.data = Some(reply);
                    if accepted {
                        tx.expect.push_back(Expect::Dot);
                        self.state = State::Transaction(tx);
                        return Ok(Step::SendBody);
                    }
                    tx.expect.push_back(Expect::EmptyDot);
                    self.state = State::Transaction(tx);
                    return Ok(Step::Send {
                        bytes: b".\r\n".to_vec(),
                        phase: Phase::DataDot,
                    });
                }
                if !reply.is_failure() {
                    return Err(ClientError::Unexpected { phase, reply });
                }
                tx.data = Some(reply);
                return Ok(self.finish(tx, None));
            }
            Expect::Dot => return Ok(self.finish(tx, Some(reply))),
            Expect::EmptyDot => return Ok(self.finish(tx, None)),
        }
        match tx.expect.front() {
            Some(next) => {
                let phase = next.phase();
                self.state = State::Transaction(tx);
                Ok(Step::Read { phase })
            }
            None => Ok(self.finish(tx, None)),
        }
    }

    /// Without PIPELINING: the next command after a MAIL or RCPT reply.
    fn next_unpipelined(&mut self, mut tx: Transaction) -> Step {
        if tx.mail.as_ref().is_some_and(Reply::is_failure) {
            return self.finish(tx, None);
        }
        if let Some(line) = tx.rcpt_lines.pop_front() {
            let i = tx.rcpt.len() - tx.rcpt_lines.len() - 1;
            tx.expect.push_back(Expect::Rcpt(i));
            self.state = State::Transaction(tx);
            return Step::Send {
                bytes: line,
                phase: Phase::RcptTo,
            };
        }
        if !accepted(&tx) {
            return self.finish(tx, None);
        }
        tx.expect.push_back(Expect::Data);
        tx.data_sent = true;
        self.state = State::Transaction(tx);
        Step::Send {
            bytes: b"DATA\r\n".to_vec(),
            phase: Phase::Data,
        }
    }

    /// The server said 421 while `expect` was due: every recipient not yet decided gets
    /// it, and the session is closed.
    fn closed_by(&mut self, mut tx: Transaction, expect: Expect, reply: Reply) -> Step {
        let mut dot = None;
        match expect {
            Expect::Rset | Expect::Mail => tx.mail = Some(reply.clone()),
            Expect::Rcpt(i) => tx.rcpt[i] = Some(reply.clone()),
            Expect::Data | Expect::EmptyDot => tx.data = Some(reply.clone()),
            Expect::Dot => dot = Some(reply.clone()),
        }
        let step = self.finish_with(tx, dot, Some(reply));
        self.state = State::Closed;
        step
    }

    fn finish(&mut self, tx: Transaction, dot: Option<Reply>) -> Step {
        self.finish_with(tx, dot, None)
    }

    /// Decides every recipient; `closing` is a 421 that decides those still open.
    fn finish_with(&mut self, tx: Transaction, dot: Option<Reply>, closing: Option<Reply>) -> Step {
        self.state = State::Ready;
        let count = tx.rcpt.len();
        let Some(mail) = tx.mail.clone() else {
            let reply = closing.expect("only a 421 ends a transaction before MAIL's reply");
            return Step::Done(MessageOutcome::all(count, None, &reply, Stage::Mail));
        };
        if mail.is_failure() {
            return Step::Done(MessageOutcome::all(
                count,
                Some(mail.clone()),
                &mail,
                Stage::Mail,
            ));
        }
        let recipients = tx
            .rcpt
            .into_iter()
            .map(|rcpt| {
                let (reply, stage) = match (&rcpt, &dot, &tx.data, &closing) {
                    (Some(r), ..) if r.is_failure() => (r.clone(), Stage::Rcpt),
                    (Some(_), Some(dot), ..) => (dot.clone(), Stage::Dot),
                    (Some(_), None, Some(data), _) if data.is_failure() => {
                        (data.clone(), Stage::Data)
                    }
                    (_, _, _, Some(closing)) => (closing.clone(), Stage::Rcpt),
                    (rcpt, ..) => {
                        let reply = rcpt.clone().unwrap_or_else(|| mail.clone());
                        (reply, Stage::Rcpt)
                    }
                };
                RecipientOutcome { rcpt, reply, stage }
            })
            .collect();
        Step::Done(MessageOutcome {
            mail: Some(mail),
            recipients,
        })
    }
}

/// Whether MAIL FROM and at least one RCPT TO got a 2xx.
fn accepted(tx: &Transaction) -> bool {
    let ok = |r: &Reply| (200..300).contains(&r.code);
    tx.mail.as_ref().is_some_and(ok) && tx.rcpt.iter().any(|r| r.as_ref().is_some_and(ok))
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
