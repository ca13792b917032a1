//! Postern listener: tls.
