//! Postern listener: config.
