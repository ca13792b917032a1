//! A [`Dispatcher`] without sockets: scripted replies per recipient, and a record of
//! what was delivered over which connection. For tests of the runner.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use postern_smtp::reply::Reply;

use crate::{
    DispatchError,
    dispatcher::{Dispatcher, OutboundMessage, PeerInfo, RecipientResult, SendResult},
    route::Destination,
};

/// One message as a [`MemoryDispatcher`] delivered it to one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The destination site.
    pub site: String,
    /// The connection number (1 for the first opened).
    pub connection: u64,
    /// The envelope sender.
    pub sender: String,
    /// The recipient.
    pub recipient: String,
    /// The bytes.
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    replies: HashMap<String, VecDeque<Result<Reply, DispatchError>>>,
    connect_failures: HashMap<String, VecDeque<DispatchError>>,
    delivered: Vec<Delivered>,
    attempts: HashMap<String, u32>,
    opened: u64,
    open: HashMap<String, u32>,
    max_open: HashMap<String, u32>,
    messages_per_connection: HashMap<u64, u32>,
}

/// A dispatcher that answers from a script: each recipient's next scripted result,
/// else `250 2.0.0 OK`.
#[derive(Clone, Debug, Default)]
pub struct MemoryDispatcher {
    state: Arc<Mutex<State>>,
}

/// A connection of a [`MemoryDispatcher`].
#[derive(Debug)]
pub struct MemoryConnection {
    site: String,
    number: u64,
}

impl MemoryDispatcher {
    /// Scripts the results of the next attempts for `recipient`, in order.
    pub fn script(
        &self,
        recipient: &str,
        results: impl IntoIterator<Item = Result<Reply, DispatchError>>,
    ) {
        self.lock()
            .replies
            .entry(recipient.to_owned())
            .or_default()
            .extend(results);
    }

    /// Makes the next connects to `site` fail with these errors, in order.
    pub fn fail_connects(&self, site: &str, errors: impl IntoIterator<Item = DispatchError>) {
        self.lock()
            .connect_failures
            .entry(site.to_owned())
            .or_default()
            .extend(errors);
    }

    /// Everything delivered (2xx), in order.
    pub fn delivered(&self) -> Vec<Delivered> {
        self.lock().delivered.clone()
    }

    /// Attempts made for `recipient`.
    pub fn attempts(&self, recipient: &str) -> u32 {
        self.lock().attempts.get(recipient).copied().unwrap_or(0)
    }

    /// Connections opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.lock().opened
    }

    /// The most connections that were open at once to `site`.
    pub fn max_open(&self, site: &str) -> u32 {
        self.lock().max_open.get(site).copied().unwrap_or(0)
    }

    /// The most messages any one connection carried.
    pub fn max_messages_per_connection(&self) -> u32 {
        self.lock()
            .messages_per_connection
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Dispatcher for MemoryDispatcher {
    type Connection = MemoryConnection;

    async fn connect(&self, destination: &Destination) -> Result<MemoryConnection, DispatchError> {
        // Yield so that concurrent workers really overlap.
        tokio::task::yield_now().await;
        let mut state = self.lock();
        if let Some(error) = state
            .connect_failures
            .get_mut(&destination.site)
            .and_then(VecDeque::pop_front)
        {
            return Err(error);
        }
        state.opened += 1;
        let number = state.opened;
        let open = state.open.entry(destination.site.clone()).or_default();
        *open += 1;
        let open = *open;
        let max = state.max_open.entry(destination.site.clone()).or_default();
        *max = (*max).max(open);
        Ok(MemoryConnection {
            site: destination.site.clone(),
            number,
        })
    }

    fn peer(connection: &MemoryConnection) -> PeerInfo {
        PeerInfo {
            name: connection.site.clone(),
            addr: "192.0.2.25:25".into(),
            tls: None,
        }
    }

    async fn send(
        &self,
        connection: &mut MemoryConnection,
        message: OutboundMessage<'_>,
    ) -> SendResult {
        tokio::task::yield_now().await;
        let mut state = self.lock();
        *state
            .messages_per_connection
            .entry(connection.number)
            .or_default() += 1;
        let mut recipients = Vec::new();
        let mut reusable = true;
        for recipient in message.recipients {
            *state.attempts.entry(recipient.clone()).or_default() += 1;
            let result = state
                .replies
                .get_mut(recipient)
                .and_then(VecDeque::pop_front)
                .unwrap_or_else(|| Ok(Reply::new(250, "2.0.0", "OK queued")));
            if result.as_ref().is_ok_and(|r| r.code / 100 == 2) {
                state.delivered.push(Delivered {
                    site: connection.site.clone(),
                    connection: connection.number,
                    sender: message.sender.to_owned(),
                    recipient: recipient.clone(),
                    data: message.data.to_vec(),
                });
            }
            if result.is_err() {
                reusable = false;
            }
            recipients.push(RecipientResult {
                result,
                command: Some(".".into()),
            });
        }
        SendResult {
            recipients,
            reusable,
        }
    }

    async fn close(&self, connection: MemoryConnection) {
        let mut state = self.lock();
        if let Some(open) = state.open.get_mut(&connection.site) {
            *open -= 1;
        }
    }
}
