//! The spool handle: open (lock + recovery + writer), store, deferred
//! store, close.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{mpsc, oneshot};

use crate::recovery::{self, RecoveryReport};
use crate::segment::{self, CORRUPT_DIR, LOCK_FILE, Location, SEGMENTS_DIR};
use crate::writer::{Request, StoreRequest, Writer, WriterConfig};
use crate::{Envelope, MessageId, SpoolError, SpoolMetrics, reader, record};

/// Tuning of a [`Spool`]; `Default` gives sensible values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolOptions {
    /// A segment is closed and a new one started before it would grow past
    /// this many bytes (a single larger message gets a segment of its own).
    pub max_segment_bytes: u64,
    /// At most this many messages share one fsync.
    pub max_batch_messages: usize,
    /// At most this many bytes share one fsync (a larger message still goes alone).
    pub max_batch_bytes: usize,
    /// `false` makes every message its own batch: one fsync per message.
    /// Only useful as a baseline.
    pub group_commit: bool,
    /// Stores queued for the writer before `store` waits for room.
    pub queue_capacity: usize,
    /// Message bytes `deferredSpool` may hold in memory; past this,
    /// [`Spool::store_deferred`] writes durably instead, so memory stays bounded.
    pub max_deferred_bytes: u64,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            max_segment_bytes: 64 << 20,
            max_batch_messages: 1024,
            max_batch_bytes: 32 << 20,
            group_commit: true,
            queue_capacity: 4096,
            max_deferred_bytes: 256 << 20,
        }
    }
}

/// Messages held in memory only (`deferredSpool`).
#[derive(Default)]
struct Deferred {
    closed: bool,
    /// Set by [`Spool::persist_deferred`]: nothing more is held in memory.
    durable_only: bool,
    bytes: u64,
    messages: BTreeMap<MessageId, (Envelope, Vec<u8>)>,
}

/// Where [`Spool::store_deferred`] put a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// Held in memory, not yet on disk.
    Held,
    /// The memory budget was used up: written and fsynced like [`Spool::store`].
    Written,
}

/// State shared by the handles and the writer thread.
pub(crate) struct Shared {
    segments_dir: PathBuf,
    index: Mutex<HashMap<MessageId, Location>>,
    deferred: Mutex<Deferred>,
    pub(crate) metrics: SpoolMetrics,
}

/// Locks a mutex, going on after a panic elsewhere (the data stay consistent:
/// every critical section is a single insert or take).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn new(dir: &Path, index: HashMap<MessageId, Location>) -> Self {
        let shared = Shared {
            segments_dir: dir.join(SEGMENTS_DIR),
            index: Mutex::new(index),
            deferred: Mutex::default(),
            metrics: SpoolMetrics::default(),
        };
        shared.refresh_depth();
        shared
    }

    /// Records where newly durable messages are.
    pub(crate) fn add_locations(&self, items: impl Iterator<Item = (MessageId, Location)>) {
        lock(&self.index).extend(items);
        self.refresh_depth();
    }

    fn depth(&self) -> u64 {
        let on_disk = lock(&self.index).len();
        let in_memory = lock(&self.deferred).messages.len();
        (on_disk + in_memory) as u64
    }

    fn refresh_depth(&self) {
        self.metrics.set_depth(self.depth());
    }

    fn is_closed(&self) -> bool {
        lock(&self.deferred).closed
    }
}

/// What every clone of a [`Spool`] shares.
struct Inner {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Request>,
    max_deferred_bytes: u64,
}

/// The durable spool. Cheap to clone; all clones are one spool.
///
/// Dropping every clone without [`Spool::close`] stops the writer too, but
/// loses the deferred messages and does not wait for the lock to be released.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("segments_dir", &self.inner.shared.segments_dir)
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Takes an exclusive lock on `{dir}/lock` (a second process, or a second
    /// open in the same process, gets [`SpoolError::Locked`]), creates the
    /// directory, recovers it and starts the writer thread.
    pub fn open(dir: &Path, opts: SpoolOptions) -> Result<(Spool, RecoveryReport), SpoolError> {
        segment::ensure_dir(dir)?;
        let lock = lock_spool(dir)?;
        segment::ensure_dir(&dir.join(SEGMENTS_DIR))?;
        segment::ensure_dir(&dir.join(CORRUPT_DIR))?;
        let recovered = recovery::recover(dir)?;
        let shared = Arc::new(Shared::new(dir, recovered.index));
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let config = WriterConfig {
            segments_dir: dir.join(SEGMENTS_DIR),
            next_seq: recovered.next_seq,
            max_segment_bytes: opts.max_segment_bytes,
            max_batch_messages: opts.max_batch_messages.max(1),
            max_batch_bytes: opts.max_batch_bytes,
            group_commit: opts.group_commit,
        };
        Writer::new(config, shared.clone(), rx, lock)
            .spawn()
            .map_err(SpoolError::at(dir))?;
        let report = recovered.report;
        tracing::info!(
            dir = %dir.display(),
            messages = report.messages,
            truncated_tails = report.truncated_tails,
            corrupt_moved = report.corrupt_moved.len(),
            "spool recovered"
        );
        let inner = Arc::new(Inner {
            shared,
            tx,
            max_deferred_bytes: opts.max_deferred_bytes,
        });
        Ok((Spool { inner }, report))
    }

    /// Durable on return: the data and envelope are written and fsynced
    /// (the segment and, when a new segment was created, its directory)
    /// before this resolves. Concurrent callers share fsyncs (group commit).
    ///
    /// `envelope.size` is set to `data.len()`. On error nothing of the
    /// message is kept: answer with a transient failure (451). Dropping the
    /// future does not cancel a write already queued.
    pub async fn store(&self, envelope: Envelope, data: Vec<u8>) -> Result<(), SpoolError> {
        if self.inner.shared.is_closed() {
            return Err(SpoolError::Closed);
        }
        // The encoded record holds its own copy: the caller's buffer is freed now,
        // not after the fsync, so a large message is not held twice while it waits.
        let done = self.submit(envelope, data).await?;
        done.await.unwrap_or(Err(SpoolError::Closed))
    }

    /// `deferredSpool`: keeps the message in memory only and returns at once,
    /// without a disk write. [`Spool::close`] writes it durably; a crash
    /// loses it. Once `max_deferred_bytes` are held, messages are written
    /// durably instead (as [`Spool::store`]). Fails once the spool is closing.
    pub async fn store_deferred(
        &self,
        mut envelope: Envelope,
        data: Vec<u8>,
    ) -> Result<Deferral, SpoolError> {
        envelope.size = data.len() as u64;
        envelope.to_json()?;
        {
            let mut deferred = lock(&self.inner.shared.deferred);
            if deferred.closed {
                return Err(SpoolError::Closed);
            }
            if !deferred.durable_only
                && deferred.bytes + envelope.size <= self.inner.max_deferred_bytes
            {
                deferred.bytes += envelope.size;
                deferred.messages.insert(envelope.id, (envelope, data));
                drop(deferred);
                self.inner.shared.refresh_depth();
                return Ok(Deferral::Held);
            }
        }
        self.store(envelope, data).await.map(|()| Deferral::Written)
    }

    /// The first step of a shutdown: writes every message held in memory durably
    /// (sharing fsyncs) and makes [`Spool::store_deferred`] write durably from now on,
    /// so that nothing acknowledged is lost if the process is killed while sessions
    /// finish. Stores go on working. Returns the first error, after logging each
    /// message that could not be written.
    pub async fn persist_deferred(&self) -> Result<(), SpoolError> {
        let held = {
            let mut deferred = lock(&self.inner.shared.deferred);
            deferred.durable_only = true;
            deferred.bytes = 0;
            std::mem::take(&mut deferred.messages)
        };
        let result = self.store_all(held.into_values()).await;
        self.inner.shared.refresh_depth();
        result
    }

    /// Graceful shutdown: writes the deferred messages durably, then writes
    /// whatever is queued, stops the writer and releases the lock. Stores
    /// started after this get [`SpoolError::Closed`]. Returns the first error
    /// met writing the deferred messages.
    pub async fn close(self) -> Result<(), SpoolError> {
        let held = {
            let mut deferred = lock(&self.inner.shared.deferred);
            deferred.closed = true;
            deferred.bytes = 0;
            std::mem::take(&mut deferred.messages)
        };
        let result = self.store_all(held.into_values()).await;
        self.inner.shared.refresh_depth();
        let (closed_tx, closed_rx) = oneshot::channel();
        if self
            .inner
            .tx
            .send(Request::Shutdown(closed_tx))
            .await
            .is_ok()
        {
            let _ = closed_rx.await;
        }
        result
    }

    /// Messages held: on disk and in memory.
    pub fn depth(&self) -> u64 {
        self.inner.shared.depth()
    }

    /// The spool's metrics.
    pub fn metrics(&self) -> &SpoolMetrics {
        &self.inner.shared.metrics
    }

    /// A held message (in memory or on disk): its envelope and exact bytes.
    pub fn load(&self, id: &MessageId) -> Result<(Envelope, Vec<u8>), SpoolError> {
        let shared = &self.inner.shared;
        if let Some(held) = lock(&shared.deferred).messages.get(id) {
            return Ok(held.clone());
        }
        let location = lock(&shared.index).get(id).copied();
        let location = location.ok_or(SpoolError::NotFound(*id))?;
        reader::read_at(&shared.segments_dir, location)
    }

    /// Encodes a message and queues it for the writer; the receiver
    /// resolves once it is durable.
    async fn submit(
        &self,
        mut envelope: Envelope,
        data: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<(), SpoolError>>, SpoolError> {
        envelope.size = data.len() as u64;
        let id = envelope.id;
        let json = envelope.to_json()?;
        let record = record::encode(id, &json, &data)
            .map_err(|reason| SpoolError::InvalidEnvelope { id, reason })?;
        drop(data);
        let (done, receiver) = oneshot::channel();
        let request = Request::Store(StoreRequest { id, record, done });
        self.inner
            .tx
            .send(request)
            .await
            .map_err(|_| SpoolError::Closed)?;
        Ok(receiver)
    }

    /// Stores every message (sharing fsyncs); returns the first error, after
    /// logging each message that could not be written.
    async fn store_all(
        &self,
        messages: impl Iterator<Item = (Envelope, Vec<u8>)>,
    ) -> Result<(), SpoolError> {
        let mut waiting = Vec::new();
        let mut first_error = None;
        for (envelope, data) in messages {
            let id = envelope.id;
            match self.submit(envelope, data).await {
                Ok(done) => waiting.push((id, done)),
                Err(error) => first_error = first_error.or(Some(log_lost(id, error))),
            }
        }
        for (id, done) in waiting {
            if let Err(error) = done.await.unwrap_or(Err(SpoolError::Closed)) {
                first_error = first_error.or(Some(log_lost(id, error)));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Logs a deferred message that could not be written at close.
fn log_lost(id: MessageId, error: SpoolError) -> SpoolError {
    tracing::error!(%id, %error, "deferred message could not be written at close and is lost");
    error
}

/// Opens and exclusively locks `{dir}/lock`.
fn lock_spool(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(SpoolError::at(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(SpoolError::Locked {
            dir: dir.to_path_buf(),
            lock: path,
        }),
        Err(TryLockError::Error(error)) => Err(SpoolError::io(&path, error)),
    }
}
