//! The single writer thread: batches queued stores, appends them to the
//! segment log, makes them durable with one fsync and completes every waiter.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::segment::{self, Location};
use crate::spool::Shared;
use crate::{MessageId, SpoolError};

/// What a waiter is told when its batch is done.
pub(crate) type Completion = oneshot::Sender<Result<(), SpoolError>>;

/// A request to the writer.
pub(crate) enum Request {
    /// Append a record and complete `done` once it is durable.
    Store(StoreRequest),
    /// Write what is queued, stop, release the lock, then signal.
    Shutdown(oneshot::Sender<()>),
}

/// One encoded record waiting to be appended.
pub(crate) struct StoreRequest {
    /// The message id (also inside the record).
    pub id: MessageId,
    /// The encoded record.
    pub record: Vec<u8>,
    /// Completed after the batch is durable (or has failed).
    pub done: Completion,
}

/// The writer's settings.
#[derive(Debug, Clone)]
pub(crate) struct WriterConfig {
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
}

/// The segment being appended to.
struct ActiveSegment {
    file: File,
    path: PathBuf,
    seq: u64,
    len: u64,
}

/// A segment touched by the batch in progress and its length before it.
struct Touched {
    segment: ActiveSegment,
    start_len: u64,
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
        let copy = io::Error::new(self.error.kind(), self.error.to_string());
        SpoolError::io(&self.path, copy)
    }
}

/// The writer thread's state.
pub(crate) struct Writer {
    config: WriterConfig,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Request>,
    carry: Option<StoreRequest>,
    current: Option<Touched>,
    _lock: File,
}

impl Writer {
    /// A writer that holds `lock` (the spool lock) until it stops.
    pub(crate) fn new(
        config: WriterConfig,
        shared: Arc<Shared>,
        rx: mpsc::Receiver<Request>,
        lock: File,
    ) -> Self {
        Writer {
            config,
            shared,
            rx,
            carry: None,
            current: None,
            _lock: lock,
        }
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
                    Some(Request::Store(request)) => request,
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
        first: StoreRequest,
    ) -> (Vec<StoreRequest>, Option<oneshot::Sender<()>>) {
        let mut bytes = first.record.len();
        let mut batch = vec![first];
        while self.config.group_commit && batch.len() < self.config.max_batch_messages {
            match self.rx.try_recv() {
                Ok(Request::Store(request)) => {
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
        let mut pending: Vec<StoreRequest> = self.carry.take().into_iter().collect();
        while let Ok(request) = self.rx.try_recv() {
            match request {
                Request::Store(request) => pending.push(request),
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
    /// outcome: all succeed or all get the error.
    fn commit(&mut self, batch: Vec<StoreRequest>) {
        match self.append(&batch) {
            Ok(locations) => {
                let bytes = batch.iter().map(|r| r.record.len() as u64).sum();
                self.shared.metrics.record_batch(batch.len() as u64, bytes);
                let ids = batch.iter().map(|r| r.id);
                self.shared.add_locations(ids.zip(locations));
                for request in batch {
                    let _ = request.done.send(Ok(()));
                }
            }
            Err(failure) => {
                tracing::error!(
                    path = %failure.path.display(),
                    error = %failure.error,
                    messages = batch.len(),
                    "spool write failed; every message of the batch is refused"
                );
                self.shared.metrics.record_errors(batch.len() as u64);
                for request in batch {
                    let _ = request.done.send(Err(failure.to_error()));
                }
            }
        }
    }

    /// Writes the batch and makes it durable; on failure undoes what it can.
    fn append(&mut self, batch: &[StoreRequest]) -> Result<Vec<Location>, Failure> {
        let mut finished = Vec::new();
        let mut created = false;
        if let Some(current) = &mut self.current {
            current.start_len = current.segment.len;
        }
        let result = self
            .write_records(batch, &mut finished, &mut created)
            .and_then(|locations| self.sync(&finished, created).map(|()| locations));
        if result.is_err() {
            self.roll_back(finished);
        }
        result
    }

    /// Appends each record, rotating segments as needed; returns where each went.
    fn write_records(
        &mut self,
        batch: &[StoreRequest],
        finished: &mut Vec<Touched>,
        created: &mut bool,
    ) -> Result<Vec<Location>, Failure> {
        let mut locations = Vec::with_capacity(batch.len());
        for request in batch {
            let len = request.record.len() as u64;
            self.make_room(len, finished, created)?;
            let current = &mut self
                .current
                .as_mut()
                .expect("make_room opened a segment")
                .segment;
            current
                .file
                .write_all(&request.record)
                .map_err(Failure::at(&current.path))?;
            locations.push(Location {
                seq: current.seq,
                offset: current.len,
                len,
            });
            current.len += len;
        }
        Ok(locations)
    }

    /// Ensures the current segment can take `len` more bytes: rotates a full
    /// segment out (into `finished`, still to be synced) and opens a new one.
    fn make_room(
        &mut self,
        len: u64,
        finished: &mut Vec<Touched>,
        created: &mut bool,
    ) -> Result<(), Failure> {
        if let Some(current) = &self.current {
            let used = current.segment.len;
            if used == 0 || used + len <= self.config.max_segment_bytes {
                return Ok(());
            }
        }
        if let Some(full) = self.current.take()
            && full.segment.len > full.start_len
        {
            finished.push(full);
        }
        self.current = Some(self.create_segment()?);
        *created = true;
        Ok(())
    }

    /// Creates the next segment file.
    fn create_segment(&mut self) -> Result<Touched, Failure> {
        let seq = self.config.next_seq;
        let path = self.config.segments_dir.join(segment::segment_name(seq));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(Failure::at(&path))?;
        self.config.next_seq += 1;
        let segment = ActiveSegment {
            file,
            path,
            seq,
            len: 0,
        };
        Ok(Touched {
            segment,
            start_len: 0,
        })
    }

    /// fdatasyncs every segment the batch wrote to, then the directory when
    /// a segment was created.
    fn sync(&self, finished: &[Touched], created: bool) -> Result<(), Failure> {
        let started = Instant::now();
        let written = finished
            .iter()
            .chain(&self.current)
            .filter(|t| t.segment.len > t.start_len);
        let mut count = 0;
        for touched in written {
            let segment = &touched.segment;
            segment
                .file
                .sync_data()
                .map_err(Failure::at(&segment.path))?;
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

    /// After a failed batch: cuts every touched segment back to its length
    /// before the batch, so no refused message can come back at recovery,
    /// and drops the current segment (the next batch starts a new one).
    fn roll_back(&mut self, finished: Vec<Touched>) {
        for touched in finished.into_iter().chain(self.current.take()) {
            let segment = &touched.segment;
            let result = segment
                .file
                .set_len(touched.start_len)
                .and_then(|()| segment.file.sync_data());
            if let Err(error) = result {
                tracing::warn!(
                    path = %segment.path.display(),
                    length = touched.start_len,
                    %error,
                    "could not cut a failed batch off a segment; recovery may keep refused messages"
                );
            }
        }
    }
}
