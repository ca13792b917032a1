//! The [`Dispatcher`] over real SMTP: `postern-outbound` resolves the next hop,
//! connects (TLS per the route, AUTH with the smarthost's credentials) and sends;
//! this module maps its results to per-recipient results and its errors to
//! [`DispatchError`]s.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use postern_config::{KeySource, OutboundTls, Smarthost};
use postern_outbound::{
    ConnectOptions, Credentials, Envelope, MxResolver, OutboundConnection, OutboundError, Phase,
    Stage, Timeouts, TlsClients, TlsMode,
};
use postern_smtp::{address::parse_mailbox, reply::Reply};

use crate::{
    DispatchError,
    dispatcher::{Dispatcher, OutboundMessage, PeerInfo, RecipientResult, SendResult},
    route::{Destination, NextHop},
};

/// Delivers over SMTP with `postern-outbound`.
#[derive(Clone)]
pub struct SmtpDispatcher {
    resolver: Option<Arc<MxResolver>>,
    tls: Arc<TlsClients>,
    /// The TLS clients of each `caFile`, for the destinations that name one.
    trust: HashMap<PathBuf, Arc<TlsClients>>,
    timeouts: Timeouts,
}

impl std::fmt::Debug for SmtpDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpDispatcher")
            .field("resolver", &self.resolver.is_some())
            .field("ca_files", &self.trust.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// An open SMTP session with a next hop.
#[derive(Debug)]
pub struct SmtpConnection {
    connection: OutboundConnection,
    peer: PeerInfo,
}

impl SmtpDispatcher {
    /// A dispatcher resolving with `resolver` (None: MX routes fail temporarily, for
    /// a machine without a resolver configuration) and verifying TLS peers with `tls`
    /// (for destinations without a `caFile`).
    pub fn new(resolver: Option<MxResolver>, tls: TlsClients) -> Self {
        Self {
            resolver: resolver.map(Arc::new),
            tls: Arc::new(tls),
            trust: HashMap::new(),
            timeouts: Timeouts::default(),
        }
    }

    /// The same, verifying the TLS peers of destinations whose `ca_file` is `path`
    /// with the CA certificates read from it now (a bad file fails here, at start).
    pub fn with_ca_file(mut self, path: PathBuf) -> Result<Self, OutboundError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.trust.entry(path) {
            let clients = TlsClients::with_ca_file(slot.key())?;
            slot.insert(Arc::new(clients));
        }
        Ok(self)
    }

    /// The TLS clients that verify `destination`'s peers.
    fn tls_for(&self, destination: &Destination) -> Result<&TlsClients, DispatchError> {
        match &destination.ca_file {
            None => Ok(&self.tls),
            Some(path) => self.trust.get(path).map(|t| &**t).ok_or_else(|| {
                let error = OutboundError::TlsSetup(format!(
                    "CA file {} was not loaded at start",
                    path.display()
                ));
                transport(&error)
            }),
        }
    }

    /// The same, with other per-phase timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    fn resolver(&self, name: &str) -> Result<&MxResolver, DispatchError> {
        self.resolver.as_deref().ok_or_else(|| {
            DispatchError::Dns(format!(
                "cannot resolve {name}: no DNS resolver is configured on this machine"
            ))
        })
    }

    async fn open(&self, destination: &Destination) -> Result<OutboundConnection, DispatchError> {
        let (hops, options) = match &destination.hop {
            NextHop::Mx { domain, port } => {
                let hops = self
                    .resolver(domain)?
                    .mx_hosts(domain)
                    .await
                    .map_err(|e| transport(&OutboundError::Dns(e)))?;
                let options =
                    ConnectOptions::new(&destination.ehlo_name, *port, TlsMode::Opportunistic);
                (hops, options)
            }
            NextHop::Smarthost(smarthost) => {
                let hop = if let Ok(ip) = smarthost.host.parse::<std::net::IpAddr>() {
                    // An IP literal needs no resolver.
                    postern_outbound::NextHop {
                        name: ip.to_string(),
                        addresses: vec![ip],
                    }
                } else {
                    self.resolver(&smarthost.host)?
                        .host(&smarthost.host)
                        .await
                        .map_err(|e| transport(&OutboundError::Dns(e)))?
                };
                (
                    vec![hop],
                    smarthost_options(smarthost, &destination.ehlo_name).await?,
                )
            }
        };
        let options = ConnectOptions {
            timeouts: self.timeouts,
            ..options
        };
        OutboundConnection::connect(&hops, &options, self.tls_for(destination)?)
            .await
            .map_err(|e| transport(&e))
    }
}

/// The connect options of a smarthost, its password read now (a mounted Secret may
/// have been rotated since the last connection).
async fn smarthost_options(
    smarthost: &Smarthost,
    ehlo_name: &str,
) -> Result<ConnectOptions, DispatchError> {
    let tls = match smarthost.tls {
        OutboundTls::Required => TlsMode::Required,
        OutboundTls::Opportunistic => TlsMode::Opportunistic,
        OutboundTls::Implicit => TlsMode::Implicit,
        OutboundTls::None => TlsMode::None,
    };
    let mut options = ConnectOptions::new(ehlo_name, smarthost.port, tls);
    if let Some(auth) = &smarthost.auth {
        let password = read_password(&auth.password).await?;
        options.credentials = Some(Credentials::new(auth.username.clone(), password));
    }
    Ok(options)
}

/// Reads a smarthost password: the file's text without surrounding whitespace.
async fn read_password(source: &KeySource) -> Result<String, DispatchError> {
    match source {
        KeySource::File { path } => tokio::fs::read_to_string(path)
            .await
            .map(|text| text.trim().to_owned())
            .map_err(|e| {
                DispatchError::Auth(format!(
                    "cannot read the smarthost password file {}: {e}",
                    path.display()
                ))
            }),
        KeySource::Vault(_) | KeySource::Secret(_) => Err(DispatchError::Auth(
            "smarthost passwords are read from files (a mounted Secret); this source is not supported"
                .into(),
        )),
    }
}

/// An outbound failure as a dispatch error: wrong or unusable credentials are
/// transient (an operator's mistake to fix); everything else keeps the reply that
/// `postern-outbound` gives it (the server's own, or a synthetic one whose class
/// says temporary or permanent).
fn transport(error: &OutboundError) -> DispatchError {
    match error {
        OutboundError::Rejected {
            phase: Phase::Auth, ..
        }
        | OutboundError::AuthNotOffered { .. }
        | OutboundError::AuthWithoutTls { .. } => DispatchError::Auth(error.to_string()),
        OutboundError::Timeout { .. } => DispatchError::Refused {
            reply: Reply::new(421, "4.4.2", error.to_string()),
            detail: error.to_string(),
        },
        _ => DispatchError::Refused {
            reply: error.to_reply(),
            detail: error.to_string(),
        },
    }
}

fn command_of(stage: Stage) -> Option<String> {
    match stage {
        Stage::Local => None,
        Stage::Mail => Some("MAIL".into()),
        Stage::Rcpt => Some("RCPT".into()),
        Stage::Data => Some("DATA".into()),
        Stage::Dot => Some(".".into()),
    }
}

impl Dispatcher for SmtpDispatcher {
    type Connection = SmtpConnection;

    async fn connect(&self, destination: &Destination) -> Result<SmtpConnection, DispatchError> {
        let connection = self.open(destination).await?;
        let peer = PeerInfo {
            name: connection.host().to_owned(),
            addr: connection.peer_address().to_string(),
            tls: connection.tls_session(),
        };
        Ok(SmtpConnection { connection, peer })
    }

    fn peer(connection: &SmtpConnection) -> PeerInfo {
        connection.peer.clone()
    }

    async fn send(
        &self,
        connection: &mut SmtpConnection,
        message: OutboundMessage<'_>,
    ) -> SendResult {
        let sender = if message.sender.is_empty() {
            None
        } else {
            match parse_mailbox(message.sender) {
                Ok(mailbox) => Some(mailbox),
                Err(e) => {
                    return SendResult::all_failed(
                        message.recipients.len(),
                        &DispatchError::Refused {
                            reply: Reply::new(553, "5.1.7", format!("bad sender address: {e}")),
                            detail: e,
                        },
                    );
                }
            }
        };
        let mut recipients = Vec::new();
        for recipient in message.recipients {
            match parse_mailbox(recipient) {
                Ok(mailbox) => recipients.push(mailbox),
                Err(e) => {
                    return SendResult::all_failed(
                        message.recipients.len(),
                        &DispatchError::Refused {
                            reply: Reply::new(
                                553,
                                "5.1.3",
                                format!("bad recipient address <{recipient}>: {e}"),
                            ),
                            detail: e,
                        },
                    );
                }
            }
        }
        let envelope = Envelope {
            sender,
            recipients,
            smtputf8: false,
        };
        match connection.connection.send(&envelope, message.data).await {
            Ok(outcome) => SendResult {
                recipients: outcome
                    .recipients
                    .into_iter()
                    .map(|r| RecipientResult {
                        result: Ok(r.reply),
                        command: command_of(r.stage),
                    })
                    .collect(),
                reusable: connection.connection.is_usable(),
            },
            Err(e) => SendResult::all_failed(message.recipients.len(), &transport(&e)),
        }
    }

    async fn close(&self, connection: SmtpConnection) {
        connection.connection.quit().await;
    }
}
