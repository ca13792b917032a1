//! The SMTP session as a state machine that does no I/O: command lines and DATA
//! outcomes go in, replies, log records and messages to store come out.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::{
    context::ListenerContext,
    received::{self, Received},
    records::{LogRecord, PeerAddress, RecordType, Response, recipient_value},
    rejection_limit::{RejectionLimit, Verdict},
    relay::Decision,
    smtp::{
        address::Mailbox,
        command::{Command, CommandError, MailParams, parse_command},
        data::DataOutcome,
        reply::Reply,
        sasl::{self, Claim, Mechanism, SaslError},
        xclient::{
            XCLIENT_ATTRIBUTES, XclientAttributes, XclientProto, XclientValue, parse_xclient,
        },
    },
};

/// The negotiated TLS facts of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// E.g. `TLSv1_3`.
    pub protocol: String,
    /// E.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// What the connection driver must do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the reply and read the next command.
    Reply(Reply),
    /// Send the reply and close the connection.
    Close(Reply),
    /// Send the 354 and frame the message data.
    StartData(Reply),
    /// Send the 220, throw away any buffered plaintext, and run the TLS handshake.
    StartTls(Reply),
    /// Check the claimed credentials (off the reactor: hashing is slow), then call
    /// [`Session::auth_finished`] and send its reply after its delay.
    Authenticate(Box<Claim>),
    /// XCLIENT was accepted: the session starts over for the client it names. Throw
    /// away anything pipelined after it (it was sent before this greeting), take
    /// [`Session::context`] again (overlays follow the new client address) and send
    /// the new `220` greeting.
    Restart(Reply),
}

/// Who the client authenticated as (SMTP AUTH).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The authorization identity (`authz_id`); always the authentication identity,
    /// since acting as another identity is refused.
    pub authz: String,
    /// The authentication identity (`authn_id`).
    pub authn: String,
}

/// Where an AUTH exchange stands while the client owes a response line.
#[derive(Debug)]
enum SaslStep {
    /// PLAIN without an initial response: the message comes next.
    Plain,
    /// LOGIN: the username comes next.
    LoginUser,
    /// LOGIN: the password for this username comes next.
    LoginPassword(String),
}

/// What happens after the message data.
#[derive(Debug)]
pub enum AfterData {
    /// Nothing to store: send this reply.
    Reply(Reply),
    /// Store this message, then call [`Session::delivery_finished`].
    Store(Box<Delivery>),
}

/// A message to write to the spool before the client hears 250.
#[derive(Debug)]
pub struct Delivery {
    /// The message id.
    pub id: String,
    /// The envelope sender ("" for the null sender).
    pub sender: String,
    /// The recipients to relay to.
    pub recipients: Vec<String>,
    /// The message with its trace headers (taken by the spool writer).
    pub data: Vec<u8>,
    /// Octets of the message with its trace headers.
    pub size: u64,
    /// Reception time.
    pub received_at: DateTime<Utc>,
    /// Metadata stored beside the message (meta, peer, EHLO, TLS).
    pub extra: Map<String, Value>,
    /// `deferredSpool`: hold in memory instead of writing to disk.
    pub deferred: bool,
    records: Vec<LogRecord>,
}

impl Delivery {
    /// A delivery with no records yet.
    pub fn new(
        id: String,
        sender: String,
        recipients: Vec<String>,
        data: Vec<u8>,
        received_at: DateTime<Utc>,
        extra: Map<String, Value>,
        deferred: bool,
    ) -> Self {
        Self {
            id,
            sender,
            recipients,
            size: data.len() as u64,
            data,
            received_at,
            extra,
            deferred,
            records: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Helo {
    name: String,
    esmtp: bool,
}

/// What a trusted proxy said about its client with XCLIENT. Each attribute stays until a
/// later XCLIENT changes it; the address and ports live in the session's `peer` and
/// `local`.
#[derive(Clone, Debug)]
struct Forwarded {
    /// The proxy: the connection's own peer (after any PROXY header).
    proxy: SocketAddr,
    /// `NAME`: the client's host name, when the proxy knew it.
    name: Option<String>,
    /// `HELO`: `None` when not told (the proxy's own EHLO after XCLIENT stands);
    /// `Some(None)` when the proxy said it does not know.
    helo: Option<Option<String>>,
    /// `PROTO`: whether the client spoke ESMTP, when told.
    esmtp: Option<bool>,
    /// `LOGIN`: who the client authenticated as at the proxy.
    login: Option<String>,
}

impl Forwarded {
    /// The client counts as authenticated as its `LOGIN` (Postfix's semantics).
    fn authenticated(&self) -> Option<Authenticated> {
        self.login.clone().map(|login| Authenticated {
            authz: login.clone(),
            authn: login,
        })
    }
}

#[derive(Debug)]
struct Transaction {
    sender: Option<Mailbox>,
    params: MailParams,
    recipients: Vec<(Mailbox, Decision)>,
}

/// One client connection's SMTP state.
#[derive(Debug)]
pub struct Session {
    /// The listener's own context, for choosing overlays again after XCLIENT.
    base: Arc<ListenerContext>,
    /// The context for this client (the listener's, or one its overlays made).
    ctx: Arc<ListenerContext>,
    /// The client: the connection's peer, or the one XCLIENT named.
    peer: SocketAddr,
    local: SocketAddr,
    helo: Option<Helo>,
    tls: Option<TlsInfo>,
    transaction: Option<Transaction>,
    messages: u32,
    draining: bool,
    records: Vec<LogRecord>,
    rejections: RejectionLimit,
    sasl: Option<SaslStep>,
    checking: Option<(Mechanism, Authenticated)>,
    authenticated: Option<Authenticated>,
    /// The peer is in `xclientFrom` on a listener (or overlay) with `allowXclient`.
    xclient_allowed: bool,
    /// What XCLIENT said, once it was accepted.
    forwarded: Option<Forwarded>,
}

impl Session {
    /// A new session for a connection from `peer` to `local` on the listener of `base`;
    /// its `peer` and `via` overlays are applied here.
    pub fn new(base: Arc<ListenerContext>, peer: SocketAddr, local: SocketAddr) -> Self {
        let ctx = base.for_connection(peer.ip(), local.ip());
        let xclient_allowed = ctx.config.allow_xclient
            && ctx
                .config
                .xclient_from
                .iter()
                .any(|n| n.contains(peer.ip()));
        Self {
            base,
            ctx,
            peer,
            local,
            helo: None,
            tls: None,
            transaction: None,
            messages: 0,
            draining: false,
            records: Vec::new(),
            rejections: RejectionLimit::default(),
            sasl: None,
            checking: None,
            authenticated: None,
            xclient_allowed,
            forwarded: None,
        }
    }

    /// The context of the client: the listener's parameters with the overlays for its
    /// address (chosen again when XCLIENT names another client).
    pub fn context(&self) -> &Arc<ListenerContext> {
        &self.ctx
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Who the client authenticated as, if it did.
    pub fn authenticated(&self) -> Option<&Authenticated> {
        self.authenticated.as_ref()
    }

    /// The 220 greeting.
    pub fn greeting(&self) -> Reply {
        Reply::plain(
            220,
            vec![format!("{} {}", self.ctx.hostname, self.ctx.config.banner)],
        )
    }

    /// The reply when the client sent nothing within `clientTimeout`.
    pub fn timeout_reply(&self) -> Reply {
        Reply::new(
            421,
            "4.4.2",
            format!(
                "{} timeout waiting for client input; closing",
                self.ctx.hostname
            ),
        )
    }

    /// The reply when the data budget had no room for this session in time.
    pub fn budget_reply(&self) -> Reply {
        Reply::new(
            421,
            "4.3.1",
            format!(
                "{} too much message data in flight; try again later",
                self.ctx.hostname
            ),
        )
    }

    /// The reply to a command after shutdown began.
    pub fn shutdown_reply(&self) -> Reply {
        Reply::new(
            421,
            "4.3.2",
            format!(
                "{} service shutting down; try again later",
                self.ctx.hostname
            ),
        )
    }

    /// The reply to a command line longer than `lineLengthHardLimit`.
    pub fn line_too_long(&mut self) -> Reply {
        let reply = Reply::new(
            500,
            "5.5.2",
            format!(
                "line too long; the limit is {} octets plus CRLF",
                self.ctx.config.line_length_hard_limit
            ),
        );
        self.reject(&reply, Some("(line too long)".into()));
        reply
    }

    /// Shutdown began: finish the current transaction, refuse new ones.
    pub fn begin_draining(&mut self) {
        self.draining = true;
    }

    /// The client's `SIZE=` estimate for the current transaction.
    pub fn size_hint(&self) -> Option<u64> {
        self.transaction.as_ref().and_then(|t| t.params.size)
    }

    /// Whether a transaction (MAIL given) is under way.
    pub fn in_transaction(&self) -> bool {
        self.transaction.is_some()
    }

    /// Records produced so far, to be written to the log.
    pub fn take_records(&mut self) -> Vec<LogRecord> {
        std::mem::take(&mut self.records)
    }

    /// The TLS handshake completed: the session starts over (RFC 3207 §4.2). A client
    /// named by XCLIENT stays (the proxy is trusted by its address, not by what it
    /// sent in plaintext), with its `LOGIN`; an AUTH of the session's own is dropped.
    pub fn tls_established(&mut self, tls: TlsInfo) {
        self.tls = Some(tls);
        self.helo = None;
        self.transaction = None;
        self.authenticated = self.forwarded.as_ref().and_then(Forwarded::authenticated);
    }

    /// Handles one command line (without CRLF).
    pub fn command(&mut self, line: &[u8]) -> Action {
        if let Some(step) = self.sasl.take() {
            return self.sasl_response(step, line);
        }
        let command = match parse_command(line) {
            Ok(command) => command,
            Err(error) => return Action::Reply(self.refuse(line, error_reply(&error))),
        };
        if self.draining && !self.in_transaction() && command != Command::Quit {
            return Action::Close(self.shutdown_reply());
        }
        match command {
            Command::Ehlo(name) => Action::Reply(self.hello(name, true)),
            Command::Helo(name) => Action::Reply(self.hello(name, false)),
            Command::Mail { from, params } => Action::Reply(self.mail(line, from, params)),
            Command::Rcpt { to } => Action::Reply(self.rcpt(line, to)),
            Command::Data => self.data(line),
            Command::Rset => {
                self.transaction = None;
                Action::Reply(Reply::new(250, "2.0.0", "reset"))
            }
            Command::Noop => Action::Reply(Reply::new(250, "2.0.0", "OK")),
            Command::Quit => Action::Close(Reply::new(
                221,
                "2.0.0",
                format!("{} closing connection", self.ctx.hostname),
            )),
            Command::Vrfy => Action::Reply(Reply::new(
                252,
                "2.5.0",
                "cannot VRFY user, but will accept message and attempt delivery",
            )),
            Command::Help => Action::Reply(Reply::new(
                214,
                "2.0.0",
                "commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS",
            )),
            Command::StartTls => self.starttls(line),
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial.as_deref()),
            Command::Xclient(args) => self.xclient(line, &args),
            Command::NotImplemented(verb) => Action::Reply(self.refuse(
                line,
                Reply::new(502, "5.5.1", format!("{verb} not implemented")),
            )),
        }
    }

    fn hello(&mut self, name: String, esmtp: bool) -> Reply {
        self.transaction = None;
        let greeting = format!("{} Hello {name}", self.ctx.hostname);
        self.helo = Some(Helo { name, esmtp });
        if !esmtp {
            return Reply::plain(250, vec![greeting]);
        }
        let mut lines = vec![
            greeting,
            "PIPELINING".into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            format!("SIZE {}", self.ctx.config.max_message_size),
        ];
        if self.tls.is_none() {
            lines.push("STARTTLS".into());
        } else if self.ctx.auth.is_some() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        if self.xclient_allowed {
            lines.push(format!("XCLIENT {XCLIENT_ATTRIBUTES}"));
        }
        Reply::plain(250, lines)
    }

    /// `XCLIENT attribute=value ...` (Postfix's extension): only from a peer in
    /// `xclientFrom` on a listener with `allowXclient` (any other peer is told
    /// `550 5.7.0` and the session goes on), only outside a mail transaction. Accepted,
    /// the named client stands for the peer from then on (relay rules, overlays, trace
    /// headers, records), the session starts over and a new `220` greeting is sent:
    /// the client must say EHLO again. TLS stays as it was.
    fn xclient(&mut self, line: &[u8], args: &str) -> Action {
        if !self.xclient_allowed {
            let reply = Reply::new(550, "5.7.0", "insufficient authorization");
            return Action::Reply(self.refuse(line, reply));
        }
        if self.transaction.is_some() {
            let reply = Reply::new(
                503,
                "5.5.1",
                "XCLIENT not permitted inside a mail transaction; send RSET first",
            );
            return Action::Reply(self.refuse(line, reply));
        }
        let attributes = match parse_xclient(args) {
            Ok(attributes) => attributes,
            Err(error) => {
                let reply = Reply::new(501, "5.5.4", format!("syntax error: {error}"));
                return Action::Reply(self.refuse(line, reply));
            }
        };
        let (peer, local) = match self.forwarded_addresses(&attributes) {
            Ok(addresses) => addresses,
            Err(why) => {
                let reply = Reply::new(501, "5.5.4", why);
                return Action::Reply(self.refuse(line, reply));
            }
        };
        let mut forwarded = self.forwarded.take().unwrap_or(Forwarded {
            proxy: self.peer,
            name: None,
            helo: None,
            esmtp: None,
            login: None,
        });
        if let Some(name) = attributes.name {
            forwarded.name = name.known();
        }
        if let Some(helo) = attributes.helo {
            forwarded.helo = Some(helo.known());
        }
        if let Some(proto) = attributes.proto {
            forwarded.esmtp = proto.known().map(|p| p == XclientProto::Esmtp);
        }
        if let Some(login) = attributes.login {
            forwarded.login = login.known();
        }
        tracing::info!(
            proxy = %forwarded.proxy,
            client = %peer,
            name = forwarded.name.as_deref().unwrap_or(""),
            login = forwarded.login.is_some(),
            "XCLIENT accepted"
        );
        self.peer = peer;
        self.local = local;
        self.ctx = self.base.for_connection(peer.ip(), local.ip());
        self.helo = None;
        self.transaction = None;
        self.authenticated = forwarded.authenticated();
        self.forwarded = Some(forwarded);
        Action::Restart(self.greeting())
    }

    /// The client and the address it connected to after `attributes`: a new address
    /// without a port leaves the port unknown (0). An address the proxy does not know
    /// is refused: relaying is judged on it, and the proxy's own must not stand in.
    fn forwarded_addresses(
        &self,
        attributes: &XclientAttributes,
    ) -> Result<(SocketAddr, SocketAddr), &'static str> {
        let mut peer = self.peer;
        let mut local = self.local;
        for (addr, port, at, what) in [
            (&attributes.addr, &attributes.port, &mut peer, "ADDR"),
            (
                &attributes.dest_addr,
                &attributes.dest_port,
                &mut local,
                "DESTADDR",
            ),
        ] {
            match addr {
                Some(XclientValue::Known(ip)) => *at = SocketAddr::new(ip.to_canonical(), 0),
                Some(_) if what == "ADDR" => {
                    return Err("ADDR must name the client's address: relaying is judged on it");
                }
                Some(_) => {
                    return Err("DESTADDR must name an address when given");
                }
                None => {}
            }
            if let Some(port) = port {
                at.set_port(port.clone().known().unwrap_or(0));
            }
        }
        Ok((peer, local))
    }

    /// The client's HELO name and whether it spoke ESMTP: what XCLIENT said (`HELO`,
    /// `PROTO`), else what the session heard. No name before any HELO, or when the
    /// proxy said it does not know the client's; ESMTP unless known otherwise.
    fn client_hello(&self) -> (Option<&str>, bool) {
        let own_name = self.helo.as_ref().map(|h| h.name.as_str());
        let own_esmtp = self.helo.as_ref().is_none_or(|h| h.esmtp);
        let Some(forwarded) = &self.forwarded else {
            return (own_name, own_esmtp);
        };
        let name = match &forwarded.helo {
            Some(told) => told.as_deref(),
            None => own_name,
        };
        (name, forwarded.esmtp.unwrap_or(own_esmtp))
    }

    fn mail(&mut self, line: &[u8], from: Option<Mailbox>, params: MailParams) -> Reply {
        let reply = if self.helo.is_none() {
            Reply::new(503, "5.5.1", "send EHLO or HELO first")
        } else if self.transaction.is_some() {
            Reply::new(503, "5.5.1", "MAIL already given; send RSET first")
        } else if self.messages >= self.ctx.config.max_messages_per_connection {
            Reply::new(
                452,
                "4.5.3",
                "too many messages on this connection; reconnect to send more",
            )
        } else if let Some(why) = self.ctx.refusal() {
            Reply::new(
                452,
                "4.3.1",
                format!("insufficient system storage ({why}); try again later"),
            )
        } else if params
            .size
            .is_some_and(|s| s > self.ctx.config.max_message_size)
        {
            Reply::new(
                552,
                "5.3.4",
                format!(
                    "message size exceeds the limit of {} octets",
                    self.ctx.config.max_message_size
                ),
            )
        } else if from.as_ref().is_some_and(|f| !f.is_ascii()) && !params.smtputf8 {
            Reply::new(
                553,
                "5.6.7",
                "a non-ASCII address needs the SMTPUTF8 parameter",
            )
        } else {
            self.messages += 1;
            self.transaction = Some(Transaction {
                sender: from,
                params,
                recipients: Vec::new(),
            });
            return Reply::new(250, "2.1.0", "sender OK");
        };
        self.refuse(line, reply)
    }

    fn rcpt(&mut self, line: &[u8], to: Mailbox) -> Reply {
        let Some(transaction) = &self.transaction else {
            return self.refuse(line, Reply::new(503, "5.5.1", "send MAIL first"));
        };
        let sender_domain = transaction.sender.as_ref().map(Mailbox::lookup_domain);
        let decision = self.ctx.policy.decide(
            self.peer.ip(),
            self.authenticated.as_ref().map(|a| a.authz.as_str()),
            sender_domain.as_deref(),
            &to.lookup_domain(),
        );
        let reply = if !to.is_ascii() && !transaction.params.smtputf8 {
            Reply::new(
                553,
                "5.6.7",
                "a non-ASCII address needs the SMTPUTF8 parameter on MAIL",
            )
        } else if !decision.accepts() {
            Reply::new(
                550,
                "5.7.1",
                format!("relaying to <{to}> denied for {}", self.peer.ip()),
            )
        } else if transaction.recipients.len()
            >= self.ctx.config.max_recipients_per_message as usize
        {
            Reply::new(452, "4.5.3", "too many recipients")
        } else {
            let transaction = self.transaction.as_mut().expect("checked above");
            transaction.recipients.push((to, decision));
            return Reply::new(250, "2.1.5", "recipient OK");
        };
        self.refuse(line, reply)
    }

    fn data(&mut self, line: &[u8]) -> Action {
        let reply = match &self.transaction {
            None => Reply::new(503, "5.5.1", "send MAIL first"),
            Some(t) if t.recipients.is_empty() => Reply::new(503, "5.5.1", "send RCPT first"),
            Some(_) => {
                return Action::StartData(Reply::plain(
                    354,
                    vec!["end data with <CR><LF>.<CR><LF>".into()],
                ));
            }
        };
        Action::Reply(self.refuse(line, reply))
    }

    fn starttls(&mut self, line: &[u8]) -> Action {
        if self.tls.is_some() {
            return Action::Reply(
                self.refuse(line, Reply::new(503, "5.5.1", "TLS is already active")),
            );
        }
        Action::StartTls(Reply::new(220, "2.0.0", "ready to start TLS"))
    }

    /// `AUTH mechanism [initial-response]`: only on a listener with `auth`, only over
    /// TLS, once per session, outside a transaction, and not from a client that used up
    /// its failed attempts.
    fn auth(&mut self, mechanism: &str, initial: Option<&str>) -> Action {
        let command = format!("AUTH {}", printable_command(mechanism.as_bytes()));
        let offered = Mechanism::parse(mechanism);
        let refusal = match &self.ctx.auth {
            None => Some(Reply::new(
                502,
                "5.5.1",
                "AUTH not available on this listener",
            )),
            Some(_) if self.tls.is_none() => Some(Reply::new(
                538,
                "5.7.11",
                "encryption required for requested authentication mechanism; use STARTTLS first",
            )),
            Some(_) if self.authenticated.is_some() => {
                Some(Reply::new(503, "5.5.1", "already authenticated"))
            }
            Some(_) if self.helo.is_none() => Some(Reply::new(503, "5.5.1", "send EHLO first")),
            Some(_) if self.transaction.is_some() => Some(Reply::new(
                503,
                "5.5.1",
                "AUTH not permitted inside a transaction",
            )),
            Some(_) if offered.is_none() => Some(Reply::new(
                504,
                "5.5.4",
                "unrecognized authentication mechanism; use PLAIN or LOGIN",
            )),
            Some(auth) if auth.blocked(self.peer.ip()) => Some(Reply::new(
                454,
                "4.7.0",
                "too many failed authentication attempts; try again later",
            )),
            Some(_) => None,
        };
        if let Some(reply) = refusal {
            self.reject(&reply, Some(command));
            return Action::Reply(reply);
        }
        let step = match offered.expect("checked above") {
            Mechanism::Plain => SaslStep::Plain,
            Mechanism::Login => SaslStep::LoginUser,
        };
        match initial {
            Some(initial) => self.sasl_response(step, initial.as_bytes()),
            None => self.challenge(step),
        }
    }

    /// Sends the `334` that asks for the next response line.
    fn challenge(&mut self, step: SaslStep) -> Action {
        let text = match &step {
            SaslStep::Plain => String::new(),
            SaslStep::LoginUser => sasl::login_prompt(false),
            SaslStep::LoginPassword(_) => sasl::login_prompt(true),
        };
        self.sasl = Some(step);
        Action::Reply(Reply::plain(334, vec![text]))
    }

    /// One response line of an AUTH exchange (or its initial response).
    fn sasl_response(&mut self, step: SaslStep, line: &[u8]) -> Action {
        let mechanism = match step {
            SaslStep::Plain => Mechanism::Plain,
            _ => Mechanism::Login,
        };
        let decoded = std::str::from_utf8(line)
            .map_err(|_| SaslError::BadBase64)
            .and_then(sasl::decode_line);
        let claim = decoded.and_then(|decoded| match step {
            SaslStep::Plain => sasl::parse_plain(&decoded).map(Some),
            SaslStep::LoginUser => sasl::parse_login_username(&decoded).map(|user| {
                self.sasl = Some(SaslStep::LoginPassword(user));
                None
            }),
            SaslStep::LoginPassword(user) => sasl::parse_login_password(user, &decoded).map(Some),
        });
        match claim {
            Ok(Some(claim)) => self.check(mechanism, claim),
            Ok(None) => {
                let step = self.sasl.take().expect("the LOGIN step was just set");
                self.challenge(step)
            }
            Err(error) => {
                let reply = match error {
                    SaslError::Cancelled => Reply::new(501, "5.7.0", "AUTH cancelled"),
                    SaslError::BadBase64 => {
                        Reply::new(501, "5.5.2", "invalid base64 in AUTH response")
                    }
                    SaslError::Malformed | SaslError::BadUtf8 => {
                        Reply::new(501, "5.5.2", "malformed AUTH response")
                    }
                };
                self.reject(&reply, Some(format!("AUTH {}", mechanism_name(mechanism))));
                Action::Reply(reply)
            }
        }
    }

    /// Hands a complete claim to the driver for checking; acting as another identity
    /// (a PLAIN authzid that differs from the authcid) is refused outright.
    fn check(&mut self, mechanism: Mechanism, claim: Claim) -> Action {
        if claim.authz != claim.authn {
            let reply = Reply::new(
                535,
                "5.7.8",
                "authentication credentials invalid (acting as another identity is not supported)",
            );
            self.reject(&reply, Some(format!("AUTH {}", mechanism_name(mechanism))));
            return Action::Reply(reply);
        }
        self.checking = Some((
            mechanism,
            Authenticated {
                authz: claim.authz.clone(),
                authn: claim.authn.clone(),
            },
        ));
        Action::Authenticate(Box::new(claim))
    }

    /// The check of an [`Action::Authenticate`] claim came back: the reply, and how long
    /// to wait before sending it (a failure waits `auth.failureDelay`).
    pub fn auth_finished(&mut self, ok: bool) -> (Reply, Duration) {
        let (mechanism, who) = self
            .checking
            .take()
            .expect("auth_finished follows Action::Authenticate");
        if ok {
            tracing::info!(peer = %self.peer, authn_id = %who.authn, "client authenticated");
            self.authenticated = Some(who);
            return (
                Reply::new(235, "2.7.0", "authentication succeeded"),
                Duration::ZERO,
            );
        }
        tracing::info!(peer = %self.peer, authn_id = %who.authn, "authentication failed");
        let reply = Reply::new(535, "5.7.8", "authentication credentials invalid");
        self.reject(&reply, Some(format!("AUTH {}", mechanism_name(mechanism))));
        let delay = self
            .ctx
            .auth
            .as_ref()
            .map_or(Duration::ZERO, |a| a.failure_delay());
        (reply, delay)
    }

    /// Handles the end of DATA. `id` is the id to give the message.
    pub fn data_received(
        &mut self,
        outcome: DataOutcome,
        id: String,
        now: DateTime<Utc>,
    ) -> AfterData {
        let transaction = self
            .transaction
            .take()
            .expect("DATA is only started inside a transaction");
        let body = match outcome {
            DataOutcome::Complete(body) => body,
            failure => {
                let reply = match failure {
                    DataOutcome::TooBig => Reply::new(
                        552,
                        "5.3.4",
                        format!(
                            "message size exceeds the limit of {} octets",
                            self.ctx.config.max_message_size
                        ),
                    ),
                    DataOutcome::BareLineEnding => Reply::new(
                        552,
                        "5.6.0",
                        "bare CR or LF in message data; lines must end with CRLF",
                    ),
                    _ => Reply::new(
                        500,
                        "5.5.2",
                        format!(
                            "message line too long; the limit is {} octets plus CRLF",
                            self.ctx.config.line_length_hard_limit
                        ),
                    ),
                };
                self.reject_message(&transaction, &reply);
                return AfterData::Reply(reply);
            }
        };
        let (helo, esmtp) = self.client_hello();
        let received = Received {
            ctx: &self.ctx,
            id,
            now,
            peer: self.peer,
            local: self.local,
            helo,
            esmtp,
            client_name: self.forwarded.as_ref().and_then(|f| f.name.as_deref()),
            xclient_from: self.forwarded.as_ref().map(|f| f.proxy),
            tls: self.tls.as_ref(),
            auth: self.authenticated.as_ref(),
            sender: transaction
                .sender
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            recipients: &transaction.recipients,
            body,
        };
        let (delivery, records) = received::process(received);
        match delivery {
            Some(delivery) => AfterData::Store(Box::new(Delivery {
                records,
                ..delivery
            })),
            None => {
                self.records.extend(records);
                AfterData::Reply(Reply::new(250, "2.0.0", "OK logged"))
            }
        }
    }

    /// The spool answered for `delivery`; returns the reply for the client.
    pub fn delivery_finished(&mut self, delivery: Delivery, result: Result<(), String>) -> Reply {
        match result {
            Ok(()) => {
                self.records.extend(delivery.records);
                Reply::new(250, "2.0.0", format!("OK id={}", delivery.id))
            }
            Err(cause) => {
                let reply = Reply::new(
                    451,
                    "4.3.0",
                    "temporary local problem storing the message; try again later",
                );
                tracing::error!(id = %delivery.id, %cause, "spool write failed; answered 451");
                let mut record = self.record(RecordType::Rejection, &reply, Some("DATA".into()));
                record.id = Some(delivery.id);
                record.sender = delivery.sender;
                record.recipient = recipient_value(&delivery.recipients);
                record.size = delivery.size;
                self.records.push(record);
                reply
            }
        }
    }

    fn reject_message(&mut self, transaction: &Transaction, reply: &Reply) {
        let mut record = self.record(RecordType::Rejection, reply, Some("DATA".into()));
        record.sender = transaction
            .sender
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let recipients: Vec<String> = transaction
            .recipients
            .iter()
            .map(|(m, _)| m.to_string())
            .collect();
        record.recipient = recipient_value(&recipients);
        self.records.push(record);
    }

    /// The message took longer than `dataProcessingTimeout` to store: the client is
    /// told to retry (the spool may still finish the write, so it may be relayed twice,
    /// never lost).
    pub fn delivery_timed_out(&mut self, delivery: Delivery) -> Reply {
        let reply = Reply::new(
            451,
            "4.4.5",
            "data_processing_timeout exceeded; try again later",
        );
        tracing::warn!(id = %delivery.id, "dataProcessingTimeout exceeded; answered 451");
        let mut record = self.record(RecordType::Rejection, &reply, Some("DATA".into()));
        record.id = Some(delivery.id);
        record.sender = delivery.sender;
        record.recipient = recipient_value(&delivery.recipients);
        record.size = delivery.size;
        self.records.push(record);
        reply
    }

    /// Logs a refused command and returns its reply.
    fn refuse(&mut self, line: &[u8], reply: Reply) -> Reply {
        self.reject(&reply, Some(printable_command(line)));
        reply
    }

    /// A rejection record, rate-limited per session: every one is counted, a burst and
    /// then one a second are written.
    fn reject(&mut self, reply: &Reply, command: Option<String>) {
        let mut record = self.record(RecordType::Rejection, reply, command);
        match self.rejections.check(std::time::Instant::now()) {
            Verdict::Write { suppressed_before } => {
                record.rejections_suppressed = (suppressed_before > 0).then_some(suppressed_before);
            }
            Verdict::Suppress => record.suppressed = true,
        }
        if let Some(t) = &self.transaction {
            record.sender = t
                .sender
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
        }
        self.records.push(record);
    }

    fn record(&self, kind: RecordType, reply: &Reply, command: Option<String>) -> LogRecord {
        let (name, esmtp) = self.client_hello();
        let mut record = received::base_record(
            kind,
            Response::of(reply, command),
            PeerAddress {
                name: name.unwrap_or_default().to_owned(),
                addr: self.peer.ip().to_string(),
            },
            self.local,
            self.tls.as_ref(),
            esmtp,
        );
        record.xclient_from = self.forwarded.as_ref().map(|f| f.proxy.to_string());
        record
    }
}

/// The reply for a command line that did not parse.
fn error_reply(error: &CommandError) -> Reply {
    match error {
        CommandError::InvalidUtf8 => Reply::new(500, "5.5.2", "invalid UTF-8 in command"),
        CommandError::Unrecognized(verb) => {
            Reply::new(500, "5.5.2", format!("command unrecognized: {verb}"))
        }
        CommandError::Syntax(why) => Reply::new(501, "5.5.4", format!("syntax error: {why}")),
        CommandError::BadSender(why) => {
            Reply::new(501, "5.1.7", format!("bad sender address: {why}"))
        }
        CommandError::BadRecipient(why) => {
            Reply::new(501, "5.1.3", format!("bad recipient address: {why}"))
        }
        CommandError::UnsupportedParameter(p) => {
            Reply::new(555, "5.5.4", format!("parameter not supported: {p}"))
        }
    }
}

fn mechanism_name(mechanism: Mechanism) -> &'static str {
    match mechanism {
        Mechanism::Plain => "PLAIN",
        Mechanism::Login => "LOGIN",
    }
}

/// The command as logged: printable, at most 128 characters. An AUTH line is cut
/// after its mechanism: the initial response holds a password.
fn printable_command(line: &[u8]) -> String {
    let line = match line.get(..5) {
        Some(verb) if verb.eq_ignore_ascii_case(b"AUTH ") => {
            let end = line[5..]
                .iter()
                .position(|&b| b == b' ')
                .map_or(line.len(), |p| p + 5);
            &line[..end]
        }
        _ => line,
    };
    String::from_utf8_lossy(line)
        .chars()
        .take(128)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_config::ListenerConfig;

    fn session() -> Session {
        let config = ListenerConfig {
            hostname: Some("mx.test".into()),
            ..Default::default()
        };
        let ctx = Arc::new(ListenerContext::new(config));
        Session::new(
            ctx,
            "192.0.2.1:4000".parse().unwrap(),
            "192.0.2.2:25".parse().unwrap(),
        )
    }

    fn code(action: Action) -> u16 {
        match action {
            Action::Reply(r) | Action::Close(r) | Action::StartData(r) | Action::StartTls(r) => {
                r.code
            }
            Action::Authenticate(_) => 0,
            Action::Restart(r) => r.code,
        }
    }

    #[test]
    fn a_transaction_runs_to_data_without_any_io() {
        let mut s = session();
        assert_eq!(code(s.command(b"EHLO c.test")), 250);
        assert_eq!(code(s.command(b"MAIL FROM:<a@b.test>")), 250);
        // 192.0.2.1 is not a relay host and there are no domains: relaying is denied.
        assert_eq!(code(s.command(b"RCPT TO:<x@y.test>")), 550);
        assert!(matches!(s.command(b"DATA"), Action::Reply(r) if r.code == 503));
        let records = s.take_records();
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| r.kind == RecordType::Rejection));
    }

    #[test]
    fn starttls_asks_the_driver_and_the_handshake_resets_the_session() {
        let mut s = session();
        s.command(b"EHLO c.test");
        s.command(b"MAIL FROM:<a@b.test>");
        assert!(matches!(s.command(b"STARTTLS"), Action::StartTls(r) if r.code == 220));
        s.tls_established(TlsInfo {
            protocol: "TLSv1_3".into(),
            cipher: "X".into(),
        });
        assert!(!s.in_transaction());
        assert_eq!(code(s.command(b"MAIL FROM:<a@b.test>")), 503);
        assert_eq!(code(s.command(b"STARTTLS")), 503);
    }

    #[test]
    fn draining_refuses_new_transactions_but_finishes_the_current_one() {
        let mut s = session();
        s.command(b"EHLO c.test");
        s.command(b"MAIL FROM:<a@b.test>");
        s.begin_draining();
        assert_eq!(
            code(s.command(b"NOOP")),
            250,
            "inside a transaction the session goes on"
        );
        s.command(b"RSET");
        assert!(matches!(s.command(b"NOOP"), Action::Close(r) if r.code == 421));
        assert!(matches!(s.command(b"QUIT"), Action::Close(r) if r.code == 221));
    }

    #[test]
    fn backpressure_refuses_mail_with_452_and_clears_by_itself() {
        let config = ListenerConfig {
            hostname: Some("mx.test".into()),
            delivery: Some(serde_yaml::from_str("{maxQueueDepth: 2}").unwrap()),
            ..Default::default()
        };
        let ctx = Arc::new(ListenerContext::new(config));
        let mut s = Session::new(
            ctx.clone(),
            "192.0.2.1:4000".parse().unwrap(),
            "192.0.2.2:25".parse().unwrap(),
        );
        s.command(b"EHLO c.test");
        ctx.load.set_queue_depth(2);
        match s.command(b"MAIL FROM:<a@b.test>") {
            Action::Reply(r) => {
                assert_eq!(
                    (r.code, r.enhanced.unwrap().to_string()),
                    (452, "4.3.1".into())
                );
                assert!(r.lines[0].contains("2 messages queued"), "{:?}", r.lines);
            }
            other => panic!("{other:?}"),
        }
        ctx.load.set_queue_depth(1);
        assert_eq!(code(s.command(b"MAIL FROM:<a@b.test>")), 250);
    }

    fn auth_session(peer: &str) -> Session {
        let config: ListenerConfig = serde_yaml::from_str(
            "{hostname: mx.test, relayHosts: [], auth: {credentials: /unused, failureDelay: 2s, maxFailures: 2}}",
        )
        .unwrap();
        let auth = crate::authenticator::Authenticator::new(
            config.auth.as_ref().unwrap(),
            crate::credential_store::CredentialStore::default(),
        );
        let ctx = Arc::new(ListenerContext::new(config).with_auth(Some(Arc::new(auth))));
        Session::new(ctx, peer.parse().unwrap(), "192.0.2.2:587".parse().unwrap())
    }

    fn encrypted(s: &mut Session) {
        s.tls_established(TlsInfo {
            protocol: "TLSv1_3".into(),
            cipher: "X".into(),
        });
    }

    fn reply_of(action: Action) -> Reply {
        match action {
            Action::Reply(r) => r,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn auth_is_refused_in_plaintext_and_offered_over_tls() {
        let mut s = auth_session("192.0.2.1:4000");
        let ehlo = reply_of(s.command(b"EHLO c.test"));
        assert!(
            !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
            "{ehlo:?}"
        );
        let refused = reply_of(s.command(b"AUTH PLAIN AHRpbQBwdw=="));
        assert_eq!(
            (refused.code, refused.enhanced.unwrap().to_string()),
            (538, "5.7.11".into())
        );
        encrypted(&mut s);
        let ehlo = reply_of(s.command(b"EHLO c.test"));
        assert!(
            ehlo.lines.contains(&"AUTH PLAIN LOGIN".to_string()),
            "{ehlo:?}"
        );
        let records = s.take_records();
        assert_eq!(records[0].response.command.as_deref(), Some("AUTH PLAIN"));
        let logged = serde_json::to_string(&records).unwrap();
        assert!(
            !logged.contains("AHRpbQBwdw=="),
            "the initial response is never logged"
        );
    }

    #[test]
    fn plain_and_login_exchanges_end_in_a_claim_to_check() {
        let mut s = auth_session("192.0.2.1:4000");
        encrypted(&mut s);
        s.command(b"EHLO c.test");
        assert_eq!(code(s.command(b"AUTH CRAM-MD5")), 504);
        // PLAIN without an initial response: an empty 334, then the message.
        assert_eq!(reply_of(s.command(b"AUTH PLAIN")).lines, [""]);
        assert_eq!(code(s.command(b"not base64!")), 501);
        assert_eq!(reply_of(s.command(b"AUTH LOGIN")).lines, ["VXNlcm5hbWU6"]);
        assert_eq!(reply_of(s.command(b"dGlt")).lines, ["UGFzc3dvcmQ6"]);
        match s.command(b"cHc=") {
            Action::Authenticate(claim) => {
                assert_eq!(
                    (claim.authn.as_str(), claim.password.expose()),
                    ("tim", "pw")
                );
            }
            other => panic!("{other:?}"),
        }
        let (reply, delay) = s.auth_finished(false);
        assert_eq!((reply.code, delay), (535, Duration::from_secs(2)));
        assert!(s.authenticated().is_none());
        // Acting as another identity is refused before any check.
        assert_eq!(code(s.command(b"AUTH PLAIN dXJzZWwAdGltAHB3")), 535);
        assert!(matches!(
            s.command(b"AUTH PLAIN AHRpbQBwdw=="),
            Action::Authenticate(_)
        ));
        let (reply, delay) = s.auth_finished(true);
        assert_eq!((reply.code, delay), (235, Duration::ZERO));
        assert_eq!(s.authenticated().unwrap().authn, "tim");
        assert_eq!(code(s.command(b"AUTH PLAIN AHRpbQBwdw==")), 503);
        // Authenticated: relaying is allowed (auth.relay defaults to true).
        s.command(b"MAIL FROM:<a@b.test>");
        assert_eq!(code(s.command(b"RCPT TO:<x@y.test>")), 250);
    }

    #[test]
    fn a_peer_that_used_up_its_failures_gets_454() {
        let s = auth_session("192.0.2.9:4000");
        let auth = s.ctx.auth.clone().unwrap();
        let mut s = s;
        encrypted(&mut s);
        s.command(b"EHLO c.test");
        for _ in 0..2 {
            assert!(matches!(
                s.command(b"AUTH PLAIN AHRpbQBwdw=="),
                Action::Authenticate(_)
            ));
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let claim = sasl::parse_plain(b"\0tim\0pw").unwrap();
            assert!(!rt.block_on(auth.check(claim, s.peer().ip())));
            s.auth_finished(false);
        }
        assert_eq!(code(s.command(b"AUTH PLAIN AHRpbQBwdw==")), 454);
    }

    #[test]
    fn failed_data_clears_the_transaction() {
        let mut s = session();
        s.command(b"EHLO c.test");
        s.command(b"MAIL FROM:<a@b.test>");
        s.transaction.as_mut().unwrap().recipients.push((
            crate::smtp::address::parse_mailbox("x@y.test").unwrap(),
            Decision {
                relay: true,
                ..Decision::default()
            },
        ));
        let after = s.data_received(DataOutcome::BareLineEnding, "id".into(), Utc::now());
        assert!(matches!(after, AfterData::Reply(r) if r.code == 552));
        assert!(!s.in_transaction());
    }

    /// A listener that trusts 192.0.2.1 with XCLIENT and lets 203.0.113.0/24 relay.
    fn xclient_session(peer: &str, extra: &str) -> Session {
        let config: ListenerConfig = serde_yaml::from_str(&format!(
            "{{hostname: mx.test, allowXclient: true, xclientFrom: [192.0.2.1], \
             relayHosts: [203.0.113.0/24], {extra}}}"
        ))
        .unwrap();
        Session::new(
            Arc::new(ListenerContext::new(config)),
            peer.parse().unwrap(),
            "192.0.2.2:25".parse().unwrap(),
        )
    }

    fn advertises_xclient(s: &mut Session) -> bool {
        reply_of(s.command(b"EHLO proxy.test"))
            .lines
            .iter()
            .any(|l| l == "XCLIENT ADDR NAME PORT PROTO HELO LOGIN DESTADDR DESTPORT")
    }

    fn restarted(action: Action) -> Reply {
        match action {
            Action::Restart(r) => r,
            other => panic!("expected a new greeting, got {other:?}"),
        }
    }

    #[test]
    fn xclient_from_a_trusted_peer_names_the_client_everywhere() {
        let mut s = xclient_session("192.0.2.1:4000", "");
        assert!(advertises_xclient(&mut s));
        // The proxy itself may not relay.
        s.command(b"MAIL FROM:<a@b.test>");
        assert_eq!(code(s.command(b"RCPT TO:<x@y.test>")), 550);
        s.command(b"RSET");
        let greeting = restarted(s.command(
            b"XCLIENT ADDR=203.0.113.9 PORT=40000 NAME=client.example HELO=orig.example \
              PROTO=ESMTP LOGIN=tim DESTADDR=198.51.100.25 DESTPORT=587",
        ));
        assert_eq!(greeting.code, 220);
        assert_eq!(greeting.lines, ["mx.test Postern ESMTP"]);
        assert_eq!(s.peer(), "203.0.113.9:40000".parse().unwrap());
        assert_eq!(s.authenticated().unwrap().authn, "tim");
        // A new session: EHLO again before MAIL.
        assert_eq!(code(s.command(b"MAIL FROM:<a@b.test>")), 503);
        assert!(advertises_xclient(&mut s), "still the trusted proxy");
        assert_eq!(code(s.command(b"MAIL FROM:<a@b.test>")), 250);
        assert_eq!(code(s.command(b"RCPT TO:<x@y.test>")), 250);
        let after = s.data_received(
            DataOutcome::Complete(b"Subject: x\r\n\r\nbody\r\n".to_vec()),
            "id1".into(),
            Utc::now(),
        );
        let AfterData::Store(delivery) = after else {
            panic!("not stored: {after:?}");
        };
        let text = String::from_utf8_lossy(&delivery.data);
        assert!(
            text.contains("Received: from orig.example (client.example [203.0.113.9])"),
            "{text}"
        );
        // LOGIN: authenticated, so RFC 3848's ESMTPA.
        assert!(text.contains("(Postern) with ESMTPA"), "{text}");
        assert_eq!(delivery.extra["peer_address"], "203.0.113.9:40000");
        assert_eq!(delivery.extra["xclient_from"], "192.0.2.1:4000");
        let meta = &delivery.extra["meta"];
        assert_eq!(meta["received_from"], "203.0.113.9:40000");
        assert_eq!(meta["received_via"], "198.51.100.25:587");
        assert_eq!(meta["ehlo_domain"], "orig.example");
        assert_eq!(meta["authn_id"], "tim");
        assert_eq!(meta["client_name"], "client.example");
        let reception = &delivery.records[0];
        assert_eq!(reception.peer_address.addr, "203.0.113.9");
        assert_eq!(reception.peer_address.name, "orig.example");
        assert_eq!(reception.xclient_from.as_deref(), Some("192.0.2.1:4000"));
        // The first refusal, before XCLIENT, names the proxy and no xclient_from.
        let records = s.take_records();
        assert_eq!(records[0].peer_address.addr, "192.0.2.1");
        assert_eq!(records[0].xclient_from, None);
    }

    #[test]
    fn relaying_is_judged_on_the_named_client_not_the_proxy() {
        // The proxy may relay by itself; the client it names may not.
        let config: ListenerConfig = serde_yaml::from_str(
            "{hostname: mx.test, allowXclient: true, xclientFrom: [192.0.2.1], relayHosts: [192.0.2.1]}",
        )
        .unwrap();
        let mut s = Session::new(
            Arc::new(ListenerContext::new(config)),
            "192.0.2.1:4000".parse().unwrap(),
            "192.0.2.2:25".parse().unwrap(),
        );
        s.command(b"EHLO proxy.test");
        s.command(b"MAIL FROM:<a@b.test>");
        assert_eq!(code(s.command(b"RCPT TO:<x@y.test>")), 250);
        s.command(b"RSET");
        restarted(s.command(b"XCLIENT ADDR=198.51.100.7"));
        s.command(b"EHLO proxy.test");
        s.command(b"MAIL FROM:<a@b.test>");
        let refused = reply_of(s.command(b"RCPT TO:<x@y.test>"));
        assert_eq!(refused.code, 550);
        assert!(
            refused.lines[0].ends_with("denied for 198.51.100.7"),
            "{refused:?}"
        );
        // A new address without a port: the port is unknown.
        assert_eq!(s.peer(), "198.51.100.7:0".parse().unwrap());
    }

    #[test]
    fn an_untrusted_peer_or_a_listener_without_xclient_gets_550_and_goes_on() {
        for mut s in [xclient_session("192.0.2.9:4000", ""), session()] {
            assert!(!advertises_xclient(&mut s));
            let refused = reply_of(s.command(b"XCLIENT ADDR=203.0.113.9"));
            assert_eq!(
                (refused.code, refused.enhanced.unwrap().to_string()),
                (550, "5.7.0".into())
            );
            assert_eq!(refused.lines, ["insufficient authorization"]);
            // Malformed arguments tell an untrusted peer nothing more.
            assert_eq!(code(s.command(b"XCLIENT FOO=bar")), 550);
            assert_eq!(code(s.command(b"NOOP")), 250);
            assert_ne!(
                s.peer().ip(),
                "203.0.113.9".parse::<std::net::IpAddr>().unwrap()
            );
        }
    }

    #[test]
    fn xclient_is_refused_inside_a_transaction_and_when_malformed() {
        let mut s = xclient_session("192.0.2.1:4000", "");
        s.command(b"EHLO proxy.test");
        s.command(b"MAIL FROM:<a@b.test>");
        assert_eq!(code(s.command(b"XCLIENT ADDR=203.0.113.9")), 503);
        assert!(s.in_transaction(), "the transaction goes on");
        s.command(b"RSET");
        for bad in [
            &b"XCLIENT"[..],
            b"XCLIENT FOO=bar",
            b"XCLIENT ADDR=2001:db8::1",
            b"XCLIENT ADDR=[UNAVAILABLE]",
            b"XCLIENT DESTADDR=[TEMPUNAVAIL]",
            b"XCLIENT PORT=99999",
        ] {
            let reply = reply_of(s.command(bad));
            assert_eq!(
                (reply.code, reply.enhanced.unwrap().to_string()),
                (501, "5.5.4".into()),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            s.peer(),
            "192.0.2.1:4000".parse().unwrap(),
            "nothing changed"
        );
    }

    #[test]
    fn xclient_keeps_tls_and_overlays_follow_the_named_client() {
        let mut s = xclient_session(
            "192.0.2.1:4000",
            "peer: {203.0.113.0/24: {banner: for-clients, maxMessageSize: 1000}}",
        );
        encrypted(&mut s);
        let greeting =
            restarted(s.command(b"XCLIENT ADDR=203.0.113.9 HELO=[UNAVAILABLE] PROTO=SMTP"));
        assert_eq!(greeting.lines, ["mx.test for-clients"]);
        assert_eq!(s.context().config.max_message_size, 1000);
        let ehlo = reply_of(s.command(b"EHLO proxy.test"));
        assert!(ehlo.lines.contains(&"SIZE 1000".to_string()), "{ehlo:?}");
        assert!(
            !ehlo.lines.contains(&"STARTTLS".to_string()),
            "TLS stays on"
        );
        s.command(b"MAIL FROM:<a@b.test>");
        s.command(b"RCPT TO:<x@y.test>");
        let AfterData::Store(delivery) = s.data_received(
            DataOutcome::Complete(b"\r\nbody\r\n".to_vec()),
            "id2".into(),
            Utc::now(),
        ) else {
            panic!("not stored");
        };
        let text = String::from_utf8_lossy(&delivery.data);
        // HELO unknown, PROTO=SMTP over TLS: "with SMTP", the TLS facts kept.
        assert!(
            text.contains("Received: from unknown ([203.0.113.9])"),
            "{text}"
        );
        assert!(text.contains("with SMTP (TLSv1_3:X)"), "{text}");
        // STARTTLS cannot come again, and a second XCLIENT from the proxy is allowed.
        assert_eq!(code(s.command(b"STARTTLS")), 503);
        restarted(s.command(b"XCLIENT ADDR=IPV6:2001:db8::9"));
        assert_eq!(
            s.peer().ip(),
            "2001:db8::9".parse::<std::net::IpAddr>().unwrap()
        );
    }
}
