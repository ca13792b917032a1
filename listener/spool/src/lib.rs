//! Postern listener: spool.
