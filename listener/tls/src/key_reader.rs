//! Reading any other secret the listener needs (not a certificate) from the same kinds
//! of source as `tlsCertificate`: a file, re-opened at each read so a mounted Secret's
//! updates are followed, or a Vault KV version 2 field.

use postern_config::KeySource;

use crate::options::TlsOptions;
use crate::source_file::FileSource;
use crate::vault::{VaultReader, describe_unresolved};

/// A configured source of secret bytes, read on demand.
pub struct KeyReader {
    inner: Inner,
}

enum Inner {
    File(FileSource),
    Vault(Box<VaultReader>),
}

impl KeyReader {
    /// Prepares `source`; nothing is read yet. A Kubernetes Secret source is refused: the
    /// operator mounts it and hands the listener a file path.
    pub fn new(source: &KeySource, options: &TlsOptions) -> Result<Self, String> {
        let inner = match source {
            KeySource::File { path } => Inner::File(FileSource::new(path)),
            KeySource::Vault(v) => Inner::Vault(Box::new(
                VaultReader::new(v, options)
                    .map_err(|cause| format!("{}: {cause}", describe_unresolved(v)))?,
            )),
            KeySource::Secret(s) => {
                return Err(format!(
                    "secretName '{}' is mounted by the operator and handed to the listener as a path; a listener cannot read Secrets itself",
                    s.secret_name
                ));
            }
        };
        Ok(Self { inner })
    }

    /// The path, or `vault MOUNT/PATH at ADDRESS`.
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::File(f) => f.describe(),
            Inner::Vault(v) => v.describe(),
        }
    }

    /// Reads the bytes; the error is one line naming the source.
    pub async fn read(&self) -> Result<Vec<u8>, String> {
        let read = match &self.inner {
            Inner::File(f) => f.read().await,
            Inner::Vault(v) => v.read().await,
        };
        read.map_err(|cause| format!("{}: {cause}", self.describe()))
    }
}
