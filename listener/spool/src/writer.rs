//! The single writer thread: batches queued message and progress records,
//! appends them (messages to the segment log, progress to the progress
//! log), makes them durable with one fsync per file touched, completes every
//! waiter, then unlinks the segments left with no incomplete message and
//! compacts the progress log when it has grown.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::index::Applied;
use crate::progress::{self, Progress};
use crate::record::{self, FileKey, FileKind, RecordKind, Unsealed};
use crate::segment::{self, Location, PROGRESS_LOG};
use crate::spool::Shared;
use crate::{MessageId, SpoolError};

/// What a waiter is told when its batch is done.
pub(crate) type Completion = oneshot::Sender<Result<(), SpoolError>>;

/// A request to the writer.
pub(crate) enum Request {
    /// Append a record and complete `done` once it is durable.
    Write(WriteRequest),
    /// Write what is queued, stop, release the lock, then signal.
    Shutdown(oneshot::Sender<()>),
}

/// What a record is about.
pub(crate) enum What {
    /// A message with this many recipients, for the segment log.
    Message {
        /// Recipients in its envelope.
        recipients: u32,
    },
    /// Progress of a message, for the progress log.
    Progress(Progress),
}

/// One encoded record waiting to be appended.
pub(crate) struct WriteRequest {
    /// The message id (also inside the record).
    pub id: MessageId,
    /// What it is.
    pub what: What,
    /// The encoded record, sealed by the writer with the file's key.
    pub record: Unsealed,
    /// Completed after the batch is durable (or has failed).
    pub done: Completion,
}

/// The writer's settings.
#[derive(Debug, Clone)]
pub(crate) struct WriterConfig {
    /// `{dir}`.
    pub dir: PathBuf,
    /// `{dir}/segments`.
    pub segments_dir: PathBuf,
    /// Sequence number of the next segment to create.
    pub next_seq: u64,
    /// Rotate before a segment would grow past this.
    pub max_segment_bytes: u64,
    /// At most this many records per batch.
    pub max_batch_messages: usize,
    /// At most this many bytes per batch (a single larger record still goes).
    pub max_batch_bytes: usize,
    /// `false`: one record per batch, i.e. one fsync per message.
    pub group_commit: bool,
    /// Compact the progress log once it is larger than this and twice its
    /// size after the last compaction.
    pub compact_progress_bytes: u64,
}

/// An open file of the log being appended to.
struct Appending {
    file: File,
    path: PathBuf,
    key: FileKey,
    len: u64,
    /// Length before the batch in progress.
    start_len: u64,
}

impl Appending {
    /// The batch in progress wrote to this file.
    fn touched(&self) -> bool {
        self.len > self.start_len
    }
}

/// A message segment being appended to.
struct ActiveSegment {
    seq: u64,
    out: Appending,
}

/// Why a batch failed: the file and the error.
struct Failure {
    path: PathBuf,
    error: io::Error,
}

impl Failure {
    fn at(path: &Path) -> impl FnOnce(io::Error) -> Failure + '_ {
        move |error| Failure {
            path: path.to_path_buf(),
            error,
        }
    }

    /// The error one waiter gets (each waiter gets its own copy).
    fn to_error(&self) -> SpoolError {
        // Keep the OS error code (ENOSPC, EROFS...) for the caller.
        let copy = match self.error.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(self.error.kind(), self.error.to_string()),
        };
        SpoolError::io(&self.path, copy)
    }
}

/// A segment the batch wrote to, for the index.
struct Written {
    seq: u64,
    key: FileKey,
    added: u64,
}

/// The writer thread's state.
pub(crate) struct Writer {
    config: WriterConfig,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Request>,
    carry: Option<WriteRequest>,
    current: Option<ActiveSegment>,
    progress: Appending,
    /// Size of the progress log after its last compaction.
    compacted_len: u64,
    _lock: File,
}

/// Opens the progress log (written whole by recovery) for appending.
pub(crate) fn open_progress_log(dir: &Path) -> Result<(File, u64), SpoolError> {
    let path = dir.join(PROGRESS_LOG);
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(SpoolError::at(&path))?;
    let len = file.metadata().map_err(SpoolError::at(&path))?.len();
    Ok((file, len))
}

impl Writer {
    /// A writer that holds `lock` (the spool lock) until it stops, appending
    /// progress to the log recovery wrote with `progress_key`.
    pub(crate) fn new(
        config: WriterConfig,
        shared: Arc<Shared>,
        rx: mpsc::Receiver<Request>,
        lock: File,
        progress_key: FileKey,
    ) -> Result<Self, SpoolError> {
        let path = config.dir.join(PROGRESS_LOG);
        let (file, len) = open_progress_log(&config.dir)?;
        shared.set_progress_bytes(len);
        Ok(Writer {
            config,
            shared,
            rx,
            carry: None,
            current: None,
            progress: Appending {
                file,
                path,
                key: progress_key,
                len,
                start_len: len,
            },
            compacted_len: len,
            _lock: lock,
        })
    }

    /// Starts the writer thread.
    pub(crate) fn spawn(self) -> io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name("postern-spool-writer".into())
            .spawn(move || self.run())
    }

    /// Serves until shutdown (or until every sender is gone), releases the
    /// lock, then tells whoever asked for the shutdown.
    fn run(mut self) {
        let closers = self.serve();
        drop(self);
        for closer in closers {
            let _ = closer.send(());
        }
    }

    /// The main loop; returns the shutdown requesters.
    fn serve(&mut self) -> Vec<oneshot::Sender<()>> {
        loop {
            let first = match self.carry.take() {
                Some(request) => request,
                None => match self.rx.blocking_recv() {
                    Some(Request::Write(request)) => request,
                    Some(Request::Shutdown(closer)) => return self.drain(vec![closer]),
                    None => return Vec::new(),
                },
            };
            let (batch, closer) = self.collect_batch(first);
            self.commit(batch);
            if let Some(closer) = closer {
                return self.drain(vec![closer]);
            }
        }
    }

    /// Takes `first` and whatever else is already queued, within the limits.
    fn collect_batch(
        &mut self,
        first: WriteRequest,
    ) -> (Vec<WriteRequest>, Option<oneshot::Sender<()>>) {
        let mut bytes = first.record.len();
        let mut batch = vec![first];
        while self.config.group_commit && batch.len() < self.config.max_batch_messages {
            match self.rx.try_recv() {
                Ok(Request::Write(request)) => {
                    if bytes + request.record.len() > self.config.max_batch_bytes {
                        self.carry = Some(request);
                        break;
                    }
                    bytes += request.record.len();
                    batch.push(request);
                }
                Ok(Request::Shutdown(closer)) => return (batch, Some(closer)),
                Err(_) => break,
            }
        }
        (batch, None)
    }

    /// After a shutdown request: refuses new requests, writes those already
    /// queued, and returns every shutdown requester.
    fn drain(&mut self, mut closers: Vec<oneshot::Sender<()>>) -> Vec<oneshot::Sender<()>> {
        self.rx.close();
        let mut pending: Vec<WriteRequest> = self.carry.take().into_iter().collect();
        while let Ok(request) = self.rx.try_recv() {
            match request {
                Request::Write(request) => pending.push(request),
                Request::Shutdown(closer) => closers.push(closer),
            }
        }
        while !pending.is_empty() {
            let rest = pending.split_off(pending.len().min(self.config.max_batch_messages));
            self.commit(pending);
            pending = rest;
        }
        closers
    }

    /// Appends and syncs one batch, then completes every waiter with the
    /// outcome (all succeed or all get the error), then reclaims space.
    fn commit(&mut self, mut batch: Vec<WriteRequest>) {
        match self.append(&mut batch) {
            Ok((locations, written)) => {
                // Reclaim and compact before answering, so that when
                // record_progress returns a finished segment is gone.
                if self.index_batch(&batch, locations, written) {
                    self.reclaim();
                }
                self.maybe_compact();
                for request in batch {
                    let _ = request.done.send(Ok(()));
                }
            }
            Err(failure) => {
                tracing::error!(
                    path = %failure.path.display(),
                    error = %failure.error,
                    records = batch.len(),
                    "spool write failed; every record of the batch is refused"
                );
                self.shared.metrics.record_errors(batch.len() as u64);
                for request in batch {
                    let _ = request.done.send(Err(failure.to_error()));
                }
            }
        }
    }

    /// Records a durable batch in the index and the metrics; returns whether
    /// a message was completed.
    fn index_batch(
        &self,
        batch: &[WriteRequest],
        locations: Vec<Option<Location>>,
        written: Vec<Written>,
    ) -> bool {
        let mut messages = 0;
        let mut progress_records = 0;
        let mut completed = 0;
        let bytes = batch.iter().map(|r| r.record.len() as u64).sum();
        {
            let mut index = self.shared.index();
            for segment in written {
                match index.segment(segment.seq) {
                    Some(_) => index.grow_segment(segment.seq, segment.added),
                    None => index.add_segment(segment.seq, segment.key, segment.added),
                }
            }
            for (request, location) in batch.iter().zip(locations) {
                match (&request.what, location) {
                    (What::Message { recipients }, Some(location)) => {
                        index.insert(request.id, location, *recipients);
                        messages += 1;
                    }
                    (What::Progress(progress), _) => {
                        progress_records += 1;
                        if let Applied::Completed { .. } = index.apply(request.id, progress) {
                            completed += 1;
                        }
                    }
                    (What::Message { .. }, None) => {}
                }
            }
        }
        let metrics = &self.shared.metrics;
        metrics.record_batch(messages, bytes);
        metrics.record_progress(progress_records, completed);
        self.shared.set_progress_bytes(self.progress.len);
        self.shared.refresh_depth();
        completed > 0
    }

    /// Unlinks every segment with no incomplete message left (the active one
    /// included: the next message starts a new segment), fsyncs the
    /// directory, then forgets them. The completions that allow this are
    /// already durable in the progress log.
    fn reclaim(&mut self) {
        let done = self.shared.index().done_segments();
        if done.is_empty() {
            return;
        }
        let mut removed = Vec::new();
        for seq in done {
            if self.current.as_ref().is_some_and(|c| c.seq == seq) {
                self.current = None;
            }
            let path = self.config.segments_dir.join(segment::segment_name(seq));
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(seq),
                Err(error) if error.kind() == io::ErrorKind::NotFound => removed.push(seq),
                Err(error) => tracing::warn!(
                    path = %path.display(),
                    %error,
                    "could not unlink a delivered segment; the next open retries"
                ),
            }
        }
        if let Err(error) = segment::sync_dir(&self.config.segments_dir) {
            tracing::warn!(%error, "could not fsync the segment directory after unlinking");
            return;
        }
        let mut index = self.shared.index();
        for &seq in &removed {
            index.remove_segment(seq);
        }
        drop(index);
        self.shared
            .metrics
            .record_segments_removed(removed.len() as u64);
    }

    /// Rewrites the progress log with one cumulative record per message that
    /// has progress (a fresh key, atomically) once it has grown enough, or
    /// once no segment is left (then it shrinks to its file header).
    fn maybe_compact(&mut self) {
        let threshold = self
            .config
            .compact_progress_bytes
            .max(self.compacted_len.saturating_mul(2));
        let drained =
            self.shared.index().is_empty() && self.progress.len > record::FILE_HEADER_LEN as u64;
        if self.progress.len <= threshold && !drained {
            return;
        }
        let snapshot = self.shared.index().progress_snapshot();
        match write_progress_log(&self.config.dir, &snapshot) {
            Ok((key, len)) => match open_progress_log(&self.config.dir) {
                Ok((file, _)) => {
                    tracing::debug!(
                        before = self.progress.len,
                        after = len,
                        "progress log compacted"
                    );
                    self.progress.file = file;
                    self.progress.key = key;
                    self.progress.len = len;
                    self.progress.start_len = len;
                    self.compacted_len = len;
                    self.shared.set_progress_bytes(len);
                }
                Err(error) => {
                    tracing::error!(%error, "could not reopen the compacted progress log")
                }
            },
            Err(error) => {
                tracing::warn!(%error, "could not compact the progress log; appending on");
                // Try again after as much growth again.
                self.compacted_len = self.progress.len;
            }
        }
    }

    /// Writes the batch and makes it durable; on failure undoes what it can.
    #[allow(clippy::type_complexity)]
    fn append(
        &mut self,
        batch: &mut [WriteRequest],
    ) -> Result<(Vec<Option<Location>>, Vec<Written>), Failure> {
        let mut finished = Vec::new();
        let mut created = false;
        if let Some(current) = &mut self.current {
            current.out.start_len = current.out.len;
        }
        self.progress.start_len = self.progress.len;
        let result = self
            .write_records(batch, &mut finished, &mut created)
            .and_then(|locations| self.sync(&finished, created).map(|()| locations));
        match result {
            Ok(locations) => {
                let written = finished
                    .iter()
                    .chain(&self.current)
                    .filter(|s| s.out.touched())
                    .map(|s| Written {
                        seq: s.seq,
                        key: s.out.key.clone(),
                        added: s.out.len - s.out.start_len,
                    })
                    .collect();
                Ok((locations, written))
            }
            Err(failure) => {
                self.roll_back(finished);
                Err(failure)
            }
        }
    }

    /// Appends each record to its file, rotating segments as needed;
    /// returns where each message went.
    fn write_records(
        &mut self,
        batch: &mut [WriteRequest],
        finished: &mut Vec<ActiveSegment>,
        created: &mut bool,
    ) -> Result<Vec<Option<Location>>, Failure> {
        let mut locations = Vec::with_capacity(batch.len());
        for request in batch {
            let len = request.record.len() as u64;
            if let What::Progress(_) = request.what {
                let out = &mut self.progress;
                let bytes = request.record.seal(&out.key);
                out.file.write_all(bytes).map_err(Failure::at(&out.path))?;
                out.len += len;
                locations.push(None);
                continue;
            }
            self.make_room(len, finished, created)?;
            let current = self.current.as_mut().expect("make_room opened a segment");
            let out = &mut current.out;
            let envelope_len = request.record.envelope_len();
            let bytes = request.record.seal(&out.key);
            out.file.write_all(bytes).map_err(Failure::at(&out.path))?;
            locations.push(Some(Location {
                seq: current.seq,
                offset: out.len,
                len,
                envelope_len,
            }));
            out.len += len;
        }
        Ok(locations)
    }

    /// Ensures the current segment can take `len` more bytes: rotates a full
    /// segment out (into `finished`, still to be synced) and opens a new one.
    fn make_room(
        &mut self,
        len: u64,
        finished: &mut Vec<ActiveSegment>,
        created: &mut bool,
    ) -> Result<(), Failure> {
        if let Some(current) = &self.current {
            let used = current.out.len - record::FILE_HEADER_LEN as u64;
            if used == 0 || current.out.len + len <= self.config.max_segment_bytes {
                return Ok(());
            }
        }
        if let Some(full) = self.current.take()
            && full.out.touched()
        {
            finished.push(full);
        }
        let segment = self.create_segment()?;
        *created = true;
        self.current = Some(segment);
        Ok(())
    }

    /// Creates the next segment file with its header and a fresh key. A
    /// segment created by a batch that fails is unlinked by the roll-back.
    fn create_segment(&mut self) -> Result<ActiveSegment, Failure> {
        let seq = self.config.next_seq;
        let path = self.config.segments_dir.join(segment::segment_name(seq));
        let key = FileKey::generate().map_err(Failure::at(&path))?;
        let mut file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(Failure::at(&path))?;
        self.config.next_seq += 1;
        let header = record::file_header(FileKind::Segment, &key);
        if let Err(error) = file.write_all(&header) {
            // Not yet current: the roll-back would not see it.
            remove_new_segment(&path);
            return Err(Failure { path, error });
        }
        Ok(ActiveSegment {
            seq,
            out: Appending {
                file,
                path,
                key,
                len: header.len() as u64,
                start_len: 0,
            },
        })
    }

    /// fdatasyncs every segment the batch wrote to, then the progress log
    /// (so a message's record is durable no later than its progress), then
    /// the segment directory when a segment was created.
    fn sync(&self, finished: &[ActiveSegment], created: bool) -> Result<(), Failure> {
        let started = Instant::now();
        let mut count = 0;
        let segments = finished.iter().chain(&self.current).map(|s| &s.out);
        for out in segments.chain([&self.progress]).filter(|o| o.touched()) {
            out.file.sync_data().map_err(Failure::at(&out.path))?;
            count += 1;
        }
        if created {
            let dir = &self.config.segments_dir;
            segment::sync_dir(dir).map_err(Failure::at(dir))?;
            count += 1;
        }
        let seconds = started.elapsed().as_secs_f64();
        self.shared.metrics.record_fsyncs(count, seconds);
        Ok(())
    }

    /// After a failed batch: unlinks every segment the batch created (so a
    /// refused batch leaves no empty file behind), cuts every other touched
    /// file back to its length before the batch, so no refused record can
    /// come back at recovery, and drops the current segment (the next batch
    /// starts a new one).
    fn roll_back(&mut self, finished: Vec<ActiveSegment>) {
        for segment in finished.into_iter().chain(self.current.take()) {
            let out = &segment.out;
            if out.start_len == 0 {
                remove_new_segment(&out.path);
            } else {
                cut_back(out);
            }
        }
        cut_back(&self.progress);
        self.progress.len = self.progress.start_len;
    }
}

/// Cuts a file back to its length before the failed batch (always: a
/// write that failed half-way is not counted in `len`).
fn cut_back(out: &Appending) {
    let result = out
        .file
        .set_len(out.start_len)
        .and_then(|()| out.file.sync_data());
    if let Err(error) = result {
        tracing::warn!(
            path = %out.path.display(),
            length = out.start_len,
            %error,
            "could not cut a failed batch off a file; recovery may keep refused records"
        );
    }
}

/// Unlinks a segment created by a batch that failed.
fn remove_new_segment(path: &Path) {
    if let Err(error) = segment::unlink_durably(path) {
        tracing::warn!(
            path = %path.display(),
            %error,
            "could not remove the segment of a failed batch; recovery removes it"
        );
    }
}

/// Writes a whole new progress log (file header and one record per entry)
/// atomically, with a fresh key; returns the key and the file's length.
pub(crate) fn write_progress_log(
    dir: &Path,
    entries: &[(MessageId, Progress)],
) -> Result<(FileKey, u64), SpoolError> {
    let path = dir.join(PROGRESS_LOG);
    let key = FileKey::generate().map_err(SpoolError::at(&path))?;
    let mut bytes = record::file_header(FileKind::Progress, &key).to_vec();
    for (id, entry) in entries {
        let body = progress::to_json(entry);
        let encoded = record::encode(&key, RecordKind::Progress, *id, &body, b"")
            .map_err(|reason| SpoolError::InvalidProgress { id: *id, reason })?;
        bytes.extend_from_slice(&encoded);
    }
    segment::write_atomically(dir, PROGRESS_LOG, &bytes)?;
    Ok((key, bytes.len() as u64))
}
