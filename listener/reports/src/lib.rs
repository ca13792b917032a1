//! Postern listener: reports.
