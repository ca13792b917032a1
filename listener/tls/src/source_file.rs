//! A PEM file source.
//!
//! The path is opened anew at every read, so a Kubernetes Secret volume, whose keys are
//! symlinks through `..data` to a timestamped directory that the kubelet swaps
//! atomically, is followed to its current target.

use std::path::{Path, PathBuf};

use crate::error::io_cause;

/// A PEM file named in the configuration.
#[derive(Debug)]
pub(crate) struct FileSource {
    path: PathBuf,
}

impl FileSource {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// The path, as errors and logs name it.
    pub(crate) fn describe(&self) -> String {
        self.path.display().to_string()
    }

    /// Reads the whole file.
    pub(crate) async fn read(&self) -> Result<Vec<u8>, String> {
        let bytes = tokio::fs::read(&self.path)
            .await
            .map_err(|e| io_cause(&e))?;
        if bytes.is_empty() {
            return Err("the file is empty".into());
        }
        Ok(bytes)
    }
}
