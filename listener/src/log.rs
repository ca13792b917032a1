//! The record log: one JSON object per line, to stdout or appended to a file, written
//! in order by one task so that sessions never wait on log I/O.

use postern_config::LogTarget;
use tokio::{
    io::{AsyncWrite, AsyncWriteExt, BufWriter},
    sync::mpsc,
    task::JoinHandle,
};

/// A cheap handle for writing records.
#[derive(Clone, Debug)]
pub struct RecordLog {
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

/// The task that writes the log; [`LogWriter::finish`] flushes it.
#[derive(Debug)]
pub struct LogWriter {
    task: JoinHandle<std::io::Result<()>>,
}

impl RecordLog {
    /// Opens the target and starts the writer task.
    pub async fn open(target: &LogTarget) -> std::io::Result<(Self, LogWriter)> {
        let sink: Box<dyn AsyncWrite + Send + Unpin> = match target {
            LogTarget::Stdout => Box::new(tokio::io::stdout()),
            LogTarget::File(path) => Box::new(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map_err(|e| {
                        std::io::Error::new(e.kind(), format!("log file {}: {e}", path.display()))
                    })?,
            ),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_lines(BufWriter::new(sink), rx));
        Ok((Self { tx }, LogWriter { task }))
    }

    /// Queues one record (a reception-side [`LogRecord`](crate::records::LogRecord) or a delivery record).
    pub fn write(&self, record: &impl serde::Serialize) {
        let mut line = serde_json::to_vec(record).expect("log records serialize");
        line.push(b'\n');
        // The writer only stops after every handle is dropped.
        let _ = self.tx.send(line);
    }
}

impl LogWriter {
    /// Waits until every queued record is written and flushed. Call after the last
    /// [`RecordLog`] handle was dropped.
    pub async fn finish(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Writes lines as they come; everything already queued goes out in one flush.
async fn write_lines(
    mut sink: BufWriter<Box<dyn AsyncWrite + Send + Unpin>>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) -> std::io::Result<()> {
    while let Some(line) = rx.recv().await {
        sink.write_all(&line).await?;
        while let Ok(more) = rx.try_recv() {
            sink.write_all(&more).await?;
        }
        sink.flush().await?;
    }
    sink.flush().await
}
