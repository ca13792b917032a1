//! The one-line configuration error.

use std::path::PathBuf;

/// Why a configuration was refused. Its `Display` is one line that names the field,
/// the value and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML did not fit the schema (unknown key, wrong type, bad value).
    #[error("{field}: {message}")]
    Parse {
        /// Dotted path of the offending field, e.g. `listeners[0].relayHosts[1]`.
        field: String,
        /// What was wrong and what is expected.
        message: String,
    },
    /// The values parse but do not make sense together.
    #[error("{field}: {message}")]
    Invalid {
        /// Dotted path of the offending field.
        field: String,
        /// What was wrong and what is expected.
        message: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
