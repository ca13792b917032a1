//! The one error type of the spool.

use std::io;
use std::path::{Path, PathBuf};

use crate::MessageId;

/// Everything that can go wrong in the spool. Each message names the path
/// (or id) concerned and the cause.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Another process, or another open handle in this process, holds the spool.
    #[error(
        "spool directory {} is already in use by another process (lock file {} is held)",
        dir.display(),
        lock.display()
    )]
    Locked {
        /// The spool directory.
        dir: PathBuf,
        /// The lock file that could not be locked.
        lock: PathBuf,
    },
    /// An I/O operation on `path` failed.
    #[error("spool I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory the operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A stored record failed its checks.
    #[error("corrupt spool record in {} at offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the record in the segment.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// No stored message has this id.
    #[error("message {0} is not in the spool")]
    NotFound(MessageId),
    /// The spool was closed (or its writer stopped) before the request was served.
    #[error("the spool is closed")]
    Closed,
    /// The envelope cannot be stored as given.
    #[error("invalid envelope for message {id}: {reason}")]
    InvalidEnvelope {
        /// The message concerned.
        id: MessageId,
        /// Why it was refused.
        reason: String,
    },
    /// A progress record cannot be stored as given.
    #[error("invalid progress for message {id}: {reason}")]
    InvalidProgress {
        /// The message concerned.
        id: MessageId,
        /// Why it was refused.
        reason: String,
    },
    /// A string is not a message id.
    #[error("invalid message id {0:?}: expected 32 lowercase hexadecimal characters")]
    InvalidId(String),
}

impl SpoolError {
    /// Wraps an I/O error with the path it is about.
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        SpoolError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A closure for `map_err` that wraps an I/O error with `path`.
    pub(crate) fn at(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| SpoolError::io(path, source)
    }
}
