//! Which accepted connections are served: at most `maxConnections` per listener, and
//! never so many that the process runs out of file descriptors (the admin endpoint,
//! the spool and the record log keep a reserve, so `/livez` answers whatever SMTP
//! clients do). A connection over a limit is told
//! `421 4.3.2 {hostname} too many concurrent sessions. Try later` and closed.

use std::sync::Arc;

use tokio::{
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
};

/// File descriptors kept for everything but SMTP sessions: the admin endpoint and its
/// connections, the spool, the log, the runtime.
pub const FD_RESERVE: u64 = 256;

/// The process-wide limits every listener shares.
#[derive(Clone, Debug)]
pub struct ProcessLimits {
    sessions: Arc<Semaphore>,
    /// Sessions the file descriptor limit leaves room for.
    pub session_cap: usize,
}

/// The limit of one listener.
#[derive(Clone, Debug)]
pub struct ListenerLimit {
    process: ProcessLimits,
    listener: Arc<Semaphore>,
}

/// A served connection's place; freed when dropped.
#[derive(Debug)]
pub struct Admitted {
    _listener: OwnedSemaphorePermit,
    _process: OwnedSemaphorePermit,
}

impl ProcessLimits {
    /// Raises the soft file descriptor limit to the hard one, then leaves room for
    /// `wanted` sessions or, when the limit is lower, for as many as it allows.
    pub fn new(wanted: u64) -> Self {
        let fds = raise_fd_limit();
        let allowed = fds.saturating_sub(FD_RESERVE).max(1);
        if wanted > allowed {
            tracing::warn!(
                max_connections = wanted,
                fd_limit = fds,
                sessions = allowed,
                "the file descriptor limit allows fewer sessions than maxConnections; \
                 the rest will be refused with 421 4.3.2 (raise `ulimit -n`)"
            );
        }
        let cap = usize::try_from(wanted.min(allowed)).unwrap_or(usize::MAX);
        Self {
            sessions: Arc::new(Semaphore::new(cap)),
            session_cap: cap,
        }
    }

    /// The limit of a listener allowing `max_connections`.
    pub fn listener(&self, max_connections: u32) -> ListenerLimit {
        ListenerLimit {
            process: self.clone(),
            listener: Arc::new(Semaphore::new(max_connections as usize)),
        }
    }
}

impl ListenerLimit {
    /// A place for one more session, if there is one.
    pub fn admit(&self) -> Option<Admitted> {
        let listener = self.listener.clone().try_acquire_owned().ok()?;
        let process = self.process.sessions.clone().try_acquire_owned().ok()?;
        Some(Admitted {
            _listener: listener,
            _process: process,
        })
    }

    /// Tells a connection over the limit so and closes it at once. The reply goes into
    /// the fresh socket's empty send buffer without waiting, so a flood of refused
    /// connections holds no task and no descriptor.
    pub fn refuse(&self, socket: TcpStream, hostname: &str) {
        let reply = format!("421 4.3.2 {hostname} too many concurrent sessions. Try later\r\n");
        let _ = socket.try_write(reply.as_bytes());
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in force.
fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current.is_some_and(|soft| soft < hard)
    {
        limit.current = Some(hard);
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "could not raise the file descriptor limit");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_admits_up_to_its_limit_and_frees_places() {
        let process = ProcessLimits::new(3);
        let limit = process.listener(2);
        let a = limit.admit().expect("first");
        let _b = limit.admit().expect("second");
        assert!(limit.admit().is_none(), "over maxConnections");
        drop(a);
        assert!(limit.admit().is_some(), "a freed place is reused");
        let other = process.listener(5);
        let _c = other.admit().expect("the process has one place left");
        let _d = limit.admit();
        assert!(other.admit().is_none(), "over the process-wide cap");
    }
}
