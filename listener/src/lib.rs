//! Postern listener.
