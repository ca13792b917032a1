//! A configured source of PEM, whatever its kind.

use postern_config::KeySource;

use crate::error::{Field, TlsError};
use crate::metrics::SourceKind;
use crate::options::TlsOptions;
use crate::source_file::FileSource;
use crate::vault::{VaultReader, describe_unresolved};

/// Where one of `tlsCertificate` / `tlsPrivateKey` comes from.
pub(crate) enum Source {
    File(FileSource),
    Vault(Box<VaultReader>),
}

impl Source {
    /// Prepares a configured source; nothing is read yet.
    pub(crate) fn new(
        field: Field,
        config: &KeySource,
        options: &TlsOptions,
    ) -> Result<Self, TlsError> {
        match config {
            KeySource::File { path } => Ok(Self::File(FileSource::new(path))),
            KeySource::Vault(v) => VaultReader::new(v, options)
                .map(|r| Self::Vault(Box::new(r)))
                .map_err(|cause| TlsError::source(field, describe_unresolved(v), cause)),
            KeySource::Secret(s) => Err(TlsError::Unsupported(format!(
                "{field}: secretName '{}' is mounted by the operator and handed to the listener as a path; a listener cannot read Secrets itself",
                s.secret_name
            ))),
        }
    }

    /// The kind, for metrics.
    pub(crate) fn kind(&self) -> SourceKind {
        match self {
            Self::File(_) => SourceKind::File,
            Self::Vault(_) => SourceKind::Vault,
        }
    }

    /// The path, or `vault MOUNT/PATH at ADDRESS`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::File(f) => f.describe(),
            Self::Vault(v) => v.describe(),
        }
    }

    /// Reads the PEM bytes; the error names `field` and this source.
    pub(crate) async fn read(&self, field: Field) -> Result<Vec<u8>, TlsError> {
        let read = match self {
            Self::File(f) => f.read().await,
            Self::Vault(v) => v.read().await,
        };
        read.map_err(|cause| TlsError::source(field, self.describe(), cause))
    }
}
