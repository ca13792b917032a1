//! The spool handle: open (lock + recovery + writer), store, deferred
//! store, delivery progress, what is queued, space, close.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{mpsc, oneshot};

use crate::index::Index;
use crate::progress::{self, Progress, ProgressState, QueuedMessage};
use crate::record::{RecordKind, Unsealed};
use crate::recovery::{self, RecoveryReport};
use crate::segment::{self, CORRUPT_DIR, LOCK_FILE, SEGMENTS_DIR};
use crate::space::{self, SpaceReport};
use crate::writer::{Request, What, WriteRequest, Writer, WriterConfig};
use crate::{Envelope, MessageId, SpoolError, SpoolMetrics, reader};

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
    /// The progress log is rewritten (compacted) once it is larger than
    /// this and than twice its size after the last rewrite.
    pub compact_progress_bytes: u64,
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
            compact_progress_bytes: 1 << 20,
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

/// What progress does to a message held in memory.
enum HeldOutcome {
    /// Not held: look on disk.
    NotHeld,
    /// It completed the message, which was dropped.
    Completed,
    /// Taken out of memory: write it and its progress.
    MustWrite(Envelope, Vec<u8>),
}

/// State shared by the handles and the writer thread.
pub(crate) struct Shared {
    dir: PathBuf,
    segments_dir: PathBuf,
    index: Mutex<Index>,
    deferred: Mutex<Deferred>,
    progress_bytes: AtomicU64,
    pub(crate) metrics: SpoolMetrics,
}

/// Locks a mutex, going on after a panic elsewhere (the data stay consistent:
/// no critical section can panic half-way through an update).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The recipient count of an envelope, as indices are counted.
fn recipient_count(envelope: &Envelope) -> u32 {
    u32::try_from(envelope.recipients.len()).unwrap_or(u32::MAX)
}

impl Shared {
    fn new(dir: &Path, index: Index) -> Self {
        let shared = Shared {
            dir: dir.to_path_buf(),
            segments_dir: dir.join(SEGMENTS_DIR),
            index: Mutex::new(index),
            deferred: Mutex::default(),
            progress_bytes: AtomicU64::new(0),
            metrics: SpoolMetrics::default(),
        };
        shared.refresh_depth();
        shared
    }

    /// The index of messages on disk.
    pub(crate) fn index(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }

    /// Records the progress log's size.
    pub(crate) fn set_progress_bytes(&self, bytes: u64) {
        self.progress_bytes.store(bytes, Ordering::Relaxed);
    }

    fn depth(&self) -> u64 {
        let on_disk = self.index().incomplete();
        let in_memory = lock(&self.deferred).messages.len() as u64;
        on_disk + in_memory
    }

    pub(crate) fn refresh_depth(&self) {
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

/// Waits for a queued write.
async fn wait(done: oneshot::Receiver<Result<(), SpoolError>>) -> Result<(), SpoolError> {
    done.await.unwrap_or(Err(SpoolError::Closed))
}

impl Spool {
    /// Takes an exclusive lock on `{dir}/lock` (a second process, or a second
    /// open in the same process, gets [`SpoolError::Locked`]), creates the
    /// directory, recovers it (honouring recorded progress; see
    /// [`RecoveryReport`]) and starts the writer thread.
    pub fn open(dir: &Path, opts: SpoolOptions) -> Result<(Spool, RecoveryReport), SpoolError> {
        segment::ensure_dir(dir)?;
        let lock = lock_spool(dir)?;
        segment::ensure_dir(&dir.join(SEGMENTS_DIR))?;
        segment::ensure_dir(&dir.join(CORRUPT_DIR))?;
        let recovered = recovery::recover(dir)?;
        let shared = Arc::new(Shared::new(dir, recovered.index));
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let config = WriterConfig {
            dir: dir.to_path_buf(),
            segments_dir: dir.join(SEGMENTS_DIR),
            next_seq: recovered.next_seq,
            max_segment_bytes: opts.max_segment_bytes,
            max_batch_messages: opts.max_batch_messages.max(1),
            max_batch_bytes: opts.max_batch_bytes,
            group_commit: opts.group_commit,
            compact_progress_bytes: opts.compact_progress_bytes,
        };
        Writer::new(config, shared.clone(), rx, lock, recovered.progress_key)?
            .spawn()
            .map_err(SpoolError::at(dir))?;
        let report = recovered.report;
        tracing::info!(
            dir = %dir.display(),
            messages = report.messages,
            truncated_tails = report.truncated_tails,
            corrupt_moved = report.corrupt_moved.len(),
            complete_segments_removed = report.complete_segments_removed,
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
    pub async fn store(&self, mut envelope: Envelope, data: Vec<u8>) -> Result<(), SpoolError> {
        if self.inner.shared.is_closed() {
            return Err(SpoolError::Closed);
        }
        envelope.size = data.len() as u64;
        // The encoded record holds its own copy: the caller's buffer is freed now,
        // not after the fsync, so a large message is not held twice while it waits.
        let (what, record) = encode_message(&envelope, &data)?;
        drop(data);
        wait(self.submit(envelope.id, what, record).await?).await
    }

    /// `deferredSpool`: keeps the message in memory only and returns at once,
    /// without a disk write. It is written durably by the first
    /// [`Spool::record_progress`] that does not complete it, or by
    /// [`Spool::close`]; a progress record that completes it just drops it
    /// (it never touches the disk); a crash loses it. Once
    /// `max_deferred_bytes` are held, messages are written durably instead
    /// (as [`Spool::store`]). Fails once the spool is closing.
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

    /// Records the outcome of a delivery attempt, durably on return (same
    /// writer and group commit as messages). `progress.finished` holds
    /// indices into `envelope.recipients` finished by this attempt; once
    /// every recipient is finished the message is complete: it leaves the
    /// index and [`Spool::depth`], and its segment is unlinked as soon as
    /// every other message in it is complete too.
    ///
    /// For a message held in memory (`deferredSpool`): progress that
    /// completes it drops it without a disk write; any other progress (its
    /// first transient failure) writes the message, then its progress,
    /// durably, before returning.
    ///
    /// Errors: [`SpoolError::NotFound`] for a message neither held nor
    /// incomplete on disk, [`SpoolError::InvalidProgress`] for an index out
    /// of range, [`SpoolError::Io`] when the write failed (nothing of this
    /// progress is kept; a held message stays held, unless it was written
    /// and only its progress failed).
    pub async fn record_progress(
        &self,
        id: &MessageId,
        progress: Progress,
    ) -> Result<(), SpoolError> {
        let shared = &self.inner.shared;
        match self.take_held(id, &progress)? {
            HeldOutcome::NotHeld => {}
            HeldOutcome::Completed => return Ok(()),
            HeldOutcome::MustWrite(envelope, data) => {
                return self.write_held(envelope, data, progress).await;
            }
        }
        let recipients = shared.index().get_incomplete(id).map(|e| e.recipients);
        let Some(recipients) = recipients else {
            return Err(if shared.is_closed() {
                SpoolError::Closed
            } else {
                SpoolError::NotFound(*id)
            });
        };
        progress::validate(*id, &progress, recipients)?;
        let done = self.submit_progress(*id, progress).await?;
        wait(done).await
    }

    /// Every incomplete message on disk with its delivery state, oldest
    /// first: what the delivery runner resumes after [`Spool::open`].
    /// Messages held in memory (`deferredSpool`) are not included.
    pub fn queued(&self) -> Result<Vec<QueuedMessage>, SpoolError> {
        let shared = &self.inner.shared;
        let entries: Vec<_> = {
            let index = shared.index();
            index
                .incomplete_entries()
                .into_iter()
                .filter_map(|(id, entry)| {
                    let key = index.segment(entry.location.seq)?.key.clone();
                    Some((id, entry, key))
                })
                .collect()
        };
        let mut out = Vec::with_capacity(entries.len());
        for (id, entry, key) in entries {
            match reader::read_envelope_at(&shared.segments_dir, entry.location, &key) {
                Ok(envelope) => out.push(QueuedMessage {
                    envelope,
                    finished: entry.progress.finished.iter().copied().collect(),
                    attempts: entry.progress.attempts,
                    next_due: entry.progress.next_due,
                }),
                // Completed (and its segment unlinked) since the snapshot.
                Err(_) if shared.index().get_incomplete(&id).is_none() => {}
                Err(error) => return Err(error),
            }
        }
        Ok(out)
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

    /// Messages not yet complete: on disk and in memory.
    pub fn depth(&self) -> u64 {
        self.inner.shared.depth()
    }

    /// The spool's disk use (segments and progress log), its file system's
    /// free and total space, and the queue depth. Cheap: one `statvfs(2)`.
    pub fn space(&self) -> Result<SpaceReport, SpoolError> {
        let shared = &self.inner.shared;
        let (fs_free_bytes, fs_total_bytes) =
            space::file_system_space(&shared.dir).map_err(SpoolError::at(&shared.dir))?;
        let segments = shared.index().segment_bytes();
        Ok(SpaceReport {
            spool_bytes: segments + shared.progress_bytes.load(Ordering::Relaxed),
            fs_free_bytes,
            fs_total_bytes,
            queue_depth: self.depth(),
        })
    }

    /// The spool's metrics.
    pub fn metrics(&self) -> &SpoolMetrics {
        &self.inner.shared.metrics
    }

    /// A message held in memory or on disk and not complete: its envelope
    /// and exact bytes.
    pub fn load(&self, id: &MessageId) -> Result<(Envelope, Vec<u8>), SpoolError> {
        let shared = &self.inner.shared;
        if let Some(held) = lock(&shared.deferred).messages.get(id) {
            return Ok(held.clone());
        }
        let found = {
            let index = shared.index();
            index.get_incomplete(id).and_then(|entry| {
                let key = index.segment(entry.location.seq)?.key.clone();
                Some((entry.location, key))
            })
        };
        let (location, key) = found.ok_or(SpoolError::NotFound(*id))?;
        reader::read_at(&shared.segments_dir, location, &key)
    }

    /// Takes a held message out of memory for `progress`, and says what
    /// to do with it.
    fn take_held(&self, id: &MessageId, progress: &Progress) -> Result<HeldOutcome, SpoolError> {
        let shared = &self.inner.shared;
        let mut deferred = lock(&shared.deferred);
        let Some((envelope, _)) = deferred.messages.get(id) else {
            return Ok(HeldOutcome::NotHeld);
        };
        let recipients = recipient_count(envelope);
        progress::validate(*id, progress, recipients)?;
        let mut state = ProgressState::default();
        state.apply(progress);
        let (envelope, data) = deferred.messages.remove(id).expect("held above");
        deferred.bytes -= envelope.size;
        drop(deferred);
        if state.is_complete(recipients) {
            shared.refresh_depth();
            shared.metrics.record_progress(0, 1);
            return Ok(HeldOutcome::Completed);
        }
        Ok(HeldOutcome::MustWrite(envelope, data))
    }

    /// Writes a held message, then its first progress, durably. If the
    /// message could not be written it is held again (unless the spool is
    /// closing: then it is lost, and logged).
    async fn write_held(
        &self,
        envelope: Envelope,
        data: Vec<u8>,
        progress: Progress,
    ) -> Result<(), SpoolError> {
        let id = envelope.id;
        let stored = match self.submit_message(&envelope, &data).await {
            Ok(done) => done,
            Err(error) => return self.hold_again(envelope, data, error),
        };
        let progressed = self.submit_progress(id, progress).await;
        let stored = wait(stored).await;
        let progressed = match progressed {
            Ok(done) => wait(done).await,
            Err(error) => Err(error),
        };
        match (stored, progressed) {
            (Ok(()), result) => result,
            (Err(error), _) => self.hold_again(envelope, data, error),
        }
    }

    /// Puts back a held message whose write failed; returns the error.
    fn hold_again(
        &self,
        envelope: Envelope,
        data: Vec<u8>,
        error: SpoolError,
    ) -> Result<(), SpoolError> {
        let mut deferred = lock(&self.inner.shared.deferred);
        if deferred.closed {
            drop(deferred);
            return Err(log_lost(envelope.id, error));
        }
        deferred.bytes += envelope.size;
        deferred.messages.insert(envelope.id, (envelope, data));
        Err(error)
    }

    /// Encodes a message and queues it for the writer; the receiver
    /// resolves once it is durable. `envelope.size` must be set.
    async fn submit_message(
        &self,
        envelope: &Envelope,
        data: &[u8],
    ) -> Result<oneshot::Receiver<Result<(), SpoolError>>, SpoolError> {
        let (what, record) = encode_message(envelope, data)?;
        self.submit(envelope.id, what, record).await
    }

    /// Encodes a progress record and queues it for the writer.
    async fn submit_progress(
        &self,
        id: MessageId,
        progress: Progress,
    ) -> Result<oneshot::Receiver<Result<(), SpoolError>>, SpoolError> {
        let json = progress::to_json(&progress);
        let record = Unsealed::new(RecordKind::Progress, id, &json, b"")
            .map_err(|reason| SpoolError::InvalidProgress { id, reason })?;
        self.submit(id, What::Progress(progress), record).await
    }

    /// Queues one record for the writer.
    async fn submit(
        &self,
        id: MessageId,
        what: What,
        record: Unsealed,
    ) -> Result<oneshot::Receiver<Result<(), SpoolError>>, SpoolError> {
        let (done, receiver) = oneshot::channel();
        let request = Request::Write(WriteRequest {
            id,
            what,
            record,
            done,
        });
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
            match self.submit_message(&envelope, &data).await {
                Ok(done) => waiting.push((id, done)),
                Err(error) => first_error = first_error.or(Some(log_lost(id, error))),
            }
        }
        for (id, done) in waiting {
            if let Err(error) = wait(done).await {
                first_error = first_error.or(Some(log_lost(id, error)));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Encodes a message record (JSON, copy and CRC: on the caller's task).
fn encode_message(envelope: &Envelope, data: &[u8]) -> Result<(What, Unsealed), SpoolError> {
    let id = envelope.id;
    let json = envelope.to_json()?;
    let record = Unsealed::new(RecordKind::Message, id, &json, data)
        .map_err(|reason| SpoolError::InvalidEnvelope { id, reason })?;
    let what = What::Message {
        recipients: recipient_count(envelope),
    };
    Ok((what, record))
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
