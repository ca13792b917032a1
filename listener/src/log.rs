//! The record log: one JSON object per line, to stdout or appended to a file, written
//! in order by one task so that sessions never wait on log I/O while it keeps up.
//!
//! Memory is bounded: at most [`QUEUE_LINES`] lines wait for the writer. When the
//! queue is full a rejection record is dropped and counted
//! (`postern_log_records_dropped_total`), while a message record (`Reception`,
//! `Feedback`, `OOB`) waits for room, so the session waits before its 250 goes out:
//! accepted mail is never left without its record.
//!
//! A write error (EPIPE, ENOSPC, EIO …) is reported at once: a line on stderr,
//! `postern_log_write_errors_total`, and `/readyz` answers 503 until a write succeeds
//! again. The writer retries with backoff, reopening a file target, and writes the
//! lines it holds exactly once (what was written before the error is not repeated).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use std::io::Write;

use postern_config::LogTarget;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    metrics::Metrics,
    records::{LogRecord, RecordType},
};

/// Lines queued for the writer at most.
pub const QUEUE_LINES: usize = 16 * 1024;
/// The writer writes at most this much per write call.
const BATCH_BYTES: usize = 256 * 1024;
/// First wait before retrying a failed write; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A cheap handle for writing records.
#[derive(Clone, Debug)]
pub struct RecordLog {
    tx: mpsc::Sender<Vec<u8>>,
    metrics: Metrics,
}

/// The task that writes the log; [`LogWriter::finish`] flushes it.
#[derive(Debug)]
pub struct LogWriter {
    task: JoinHandle<std::io::Result<()>>,
}

/// Where lines go; written from a blocking thread, so an error is seen by the write
/// that met it, not later.
type Sink = Box<dyn Write + Send>;

impl RecordLog {
    /// Opens the target and starts the writer task. `healthy` turns false while the
    /// log cannot be written.
    pub async fn open(
        target: &LogTarget,
        metrics: Metrics,
        healthy: Arc<AtomicBool>,
    ) -> std::io::Result<(Self, LogWriter)> {
        let sink = open_sink(target).await?;
        healthy.store(true, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel(QUEUE_LINES);
        let writer = Writer {
            target: target.clone(),
            sink: Some(sink),
            metrics: metrics.clone(),
            healthy,
        };
        let task = tokio::spawn(writer.run(rx));
        Ok((Self { tx, metrics }, LogWriter { task }))
    }

    /// Queues one record. A message record waits for room in the queue; a rejection
    /// record finding the queue full is dropped and counted.
    pub async fn write(&self, record: &LogRecord) {
        let mut line = serde_json::to_vec(record).expect("log records serialize");
        line.push(b'\n');
        if record.kind == RecordType::Rejection {
            if self.tx.try_send(line).is_err() {
                self.metrics.log_records_dropped.inc();
            }
        } else {
            // The writer only stops after every handle is dropped.
            let _ = self.tx.send(line).await;
        }
    }
}

impl RecordLog {
    /// Queues any other record (a delivery record) from code that cannot wait: at once
    /// when there is room, else from a task that waits for room like a message record.
    pub fn write_or_queue(&self, record: &impl serde::Serialize) {
        let mut line = serde_json::to_vec(record).expect("log records serialize");
        line.push(b'\n');
        if let Err(mpsc::error::TrySendError::Full(line)) = self.tx.try_send(line) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(line).await;
            });
        }
    }
}

impl LogWriter {
    /// Waits until every queued record is written and flushed, for at most `within`
    /// (a log that cannot be written must not hold the exit). Call after the last
    /// [`RecordLog`] handle was dropped.
    pub async fn finish(mut self, within: Duration) -> std::io::Result<()> {
        match tokio::time::timeout(within, &mut self.task).await {
            Ok(joined) => joined.map_err(std::io::Error::other)?,
            Err(_) => {
                self.task.abort();
                Err(std::io::Error::other(format!(
                    "the record log could not be written within {within:?}; queued records are lost"
                )))
            }
        }
    }
}

async fn open_sink(target: &LogTarget) -> std::io::Result<Sink> {
    Ok(match target {
        LogTarget::Stdout => Box::new(std::io::stdout()),
        LogTarget::File(path) => {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("log file {}: {e}", path.display()))
                })?;
            Box::new(file.into_std().await)
        }
    })
}

/// Writes `bytes[from..]` and flushes, on a blocking thread; returns the sink, how far
/// it got, and the error that stopped it.
async fn write_blocking(
    mut sink: Sink,
    bytes: Arc<Vec<u8>>,
    mut from: usize,
) -> (Sink, usize, std::io::Result<()>) {
    let joined = tokio::task::spawn_blocking(move || {
        while from < bytes.len() {
            match sink.write(&bytes[from..]) {
                Ok(0) => return (sink, from, Err(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => from += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return (sink, from, Err(e)),
            }
        }
        let flushed = sink.flush();
        (sink, from, flushed)
    })
    .await;
    joined.unwrap_or_else(|e| {
        (
            Box::new(std::io::sink()),
            0,
            Err(std::io::Error::other(e.to_string())),
        )
    })
}

/// The writer task's state.
struct Writer {
    target: LogTarget,
    sink: Option<Sink>,
    metrics: Metrics,
    healthy: Arc<AtomicBool>,
}

impl Writer {
    /// Writes lines as they come; everything already queued goes out in one write.
    async fn run(mut self, mut rx: mpsc::Receiver<Vec<u8>>) -> std::io::Result<()> {
        while let Some(line) = rx.recv().await {
            let mut batch = line;
            while batch.len() < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            self.write_all(Arc::new(batch)).await;
        }
        Ok(())
    }

    /// Writes `bytes` completely, retrying after errors until it succeeds; what was
    /// written before an error is not written again.
    async fn write_all(&mut self, bytes: Arc<Vec<u8>>) {
        let mut written = 0;
        let mut backoff = FIRST_BACKOFF;
        let mut failing = false;
        loop {
            let result = match self.sink.take() {
                Some(sink) => {
                    let (sink, reached, result) =
                        write_blocking(sink, bytes.clone(), written).await;
                    self.sink = Some(sink);
                    written = reached;
                    result
                }
                None => match open_sink(&self.target).await {
                    Ok(sink) => {
                        self.sink = Some(sink);
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            let Err(error) = result else {
                break;
            };
            self.metrics.log_write_errors.inc();
            if !failing {
                failing = true;
                self.healthy.store(false, Ordering::SeqCst);
                tracing::error!(
                    target = %self.target,
                    %error,
                    "cannot write the record log; /readyz is failing and the write is retried"
                );
            }
            if matches!(self.target, LogTarget::File(_)) {
                self.sink = None;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        if failing {
            tracing::info!(target = %self.target, "the record log is written again");
        }
        self.healthy.store(true, Ordering::SeqCst);
    }
}
