//! The one error type: a single line naming the configuration field, the source and the cause.

use std::fmt;

/// Which configuration field a source belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// `tlsCertificate`: the certificate chain.
    Certificate,
    /// `tlsPrivateKey`: the private key.
    PrivateKey,
    /// `tlsRequiredClientCa`: the CAs a client certificate must chain to.
    ClientCa,
}

impl Field {
    /// The field's name as written in the listener's configuration.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Certificate => "tlsCertificate",
            Self::PrivateKey => "tlsPrivateKey",
            Self::ClientCa => "tlsRequiredClientCa",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why TLS could not be set up or a certificate could not be (re)loaded.
///
/// `Display` is always exactly one line (causes are flattened), fit to be printed before
/// the process exits with status 2, e.g.
/// `tlsCertificate: /etc/tls/tls.crt: No such file or directory`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A configured source could not be read, or what it holds is not usable.
    #[error("{field}: {origin}: {cause}")]
    Source {
        /// The configuration field.
        field: Field,
        /// The source: a path, or `vault MOUNT/PATH at ADDRESS`.
        origin: String,
        /// What went wrong, on one line.
        cause: String,
    },
    /// The private key is not the one the certificate was issued for.
    #[error("tlsPrivateKey ({key}) does not match tlsCertificate ({certificate})")]
    KeyMismatch {
        /// Where the certificate came from.
        certificate: String,
        /// Where the key came from.
        key: String,
    },
    /// The configuration is not one this crate can serve (e.g. only one of the two fields
    /// set, or a Kubernetes Secret source that the operator should have resolved).
    #[error("{0}")]
    Unsupported(String),
    /// Generating the self-signed default certificate failed.
    #[error("self-signed certificate for '{hostname}': {cause}")]
    SelfSigned {
        /// The listener's hostname.
        hostname: String,
        /// What went wrong.
        cause: String,
    },
}

impl TlsError {
    pub(crate) fn source(field: Field, origin: impl Into<String>, cause: impl AsRef<str>) -> Self {
        Self::Source {
            field,
            origin: origin.into(),
            cause: one_line(cause.as_ref()),
        }
    }
}

/// Collapses whitespace runs (including newlines) so that a cause never spans lines.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An I/O error as people read it: `No such file or directory`, without `(os error 2)`.
pub(crate) fn io_cause(err: &std::io::Error) -> String {
    strip_os_error(&err.to_string())
}

/// Removes the ` (os error N)` suffix the standard library appends.
pub(crate) fn strip_os_error(text: &str) -> String {
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_lose_the_errno_suffix() {
        let err = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_cause(&err), "No such file or directory");
    }

    #[test]
    fn causes_are_one_line() {
        let e = TlsError::source(Field::PrivateKey, "/k", "bad\n  thing\r\nhere");
        assert_eq!(e.to_string(), "tlsPrivateKey: /k: bad thing here");
    }
}
