//! The dispatcher trait: open a connection to a destination, send messages over it,
//! close it. SMTP is one implementation; [`MemoryDispatcher`](crate::MemoryDispatcher)
//! is another, for tests of the runner without sockets.

use std::future::Future;

use postern_outbound::TlsSession;
use postern_smtp::reply::Reply;

use crate::{DispatchError, route::Destination};

/// One message to send.
#[derive(Clone, Copy, Debug)]
pub struct OutboundMessage<'a> {
    /// The envelope sender ("" for the null sender).
    pub sender: &'a str,
    /// The recipients of this attempt.
    pub recipients: &'a [String],
    /// The bytes, exactly as received (CRLF line endings, not dot-stuffed).
    pub data: &'a [u8],
}

/// The remote end of a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The host name connected to.
    pub name: String,
    /// Its address, `ip:port`.
    pub addr: String,
    /// What the TLS session negotiated; `None` for a plaintext session.
    pub tls: Option<TlsSession>,
}

/// What became of one recipient in a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientResult {
    /// The reply that decided it (RCPT's when it failed, else the one after the data),
    /// or why there was none.
    pub result: Result<Reply, DispatchError>,
    /// The command the reply answered (`RCPT`, `DATA`, `.`...), when known.
    pub command: Option<String>,
}

/// The result of sending one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendResult {
    /// One result per recipient, in the order given.
    pub recipients: Vec<RecipientResult>,
    /// Whether the connection may carry another message.
    pub reusable: bool,
}

impl SendResult {
    /// The same error for every recipient, and a connection that is no longer usable.
    pub fn all_failed(recipients: usize, error: &DispatchError) -> Self {
        Self {
            recipients: (0..recipients)
                .map(|_| RecipientResult {
                    result: Err(error.clone()),
                    command: None,
                })
                .collect(),
            reusable: false,
        }
    }
}

/// Opens connections to destinations and sends messages over them.
pub trait Dispatcher: Send + Sync + 'static {
    /// An open connection.
    type Connection: Send + 'static;

    /// Opens a connection (DNS, TCP, greeting, EHLO, TLS, AUTH).
    fn connect(
        &self,
        destination: &Destination,
    ) -> impl Future<Output = Result<Self::Connection, DispatchError>> + Send;

    /// The remote end of a connection.
    fn peer(connection: &Self::Connection) -> PeerInfo;

    /// Sends one message; the result is per recipient.
    fn send(
        &self,
        connection: &mut Self::Connection,
        message: OutboundMessage<'_>,
    ) -> impl Future<Output = SendResult> + Send;

    /// Closes a connection politely (QUIT).
    fn close(&self, connection: Self::Connection) -> impl Future<Output = ()> + Send;
}
