//! Why a next hop could not be reached or a session failed: typed, so that the delivery
//! crate's `classify()` can decide per recipient, with [`OutboundError::to_reply`]
//! turning each into one SMTP reply for logs and records (KumoMTA's synthetic `421
//! 4.4.2` for a timeout).

use std::net::SocketAddr;

use postern_smtp::client::Phase;
use postern_smtp::reply::Reply;
use postern_smtp::reply_parser::ReplyError;

use crate::resolve::DnsError;

/// Why one TCP connect failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectFailure {
    /// The peer refused the connection (nothing listens).
    #[error("connection refused")]
    Refused,
    /// No answer within the connect timeout.
    #[error("connect timed out")]
    Timeout,
    /// Another socket error (unreachable network, reset, ...).
    #[error("{0}")]
    Other(String),
}

/// An outbound failure that is not a per-recipient reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The next hop's name could not be resolved.
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// Every address was tried and none accepted a TCP connection; the last failure.
    #[error("cannot connect to {address}: {failure}")]
    Connect {
        /// The last address tried.
        address: SocketAddr,
        /// Why it failed.
        failure: ConnectFailure,
    },
    /// There was no address to connect to.
    #[error("no address to connect to")]
    NoAddress,
    /// The TLS handshake failed (certificate not valid for the name, untrusted, or the
    /// handshake broke).
    #[error("TLS with {peer} failed: {reason}")]
    Tls {
        /// The remote address.
        peer: SocketAddr,
        /// rustls's reason.
        reason: String,
    },
    /// TLS is required but the server does not offer STARTTLS.
    #[error("TLS is required but {peer} does not offer STARTTLS")]
    TlsNotOffered {
        /// The remote address.
        peer: SocketAddr,
    },
    /// The TLS client could not be set up (bad CA file, bad name): a configuration error.
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    /// No reply, or a write not taken, within the phase's timeout.
    #[error("timed out waiting for {peer} in {phase}")]
    Timeout {
        /// What was waited for.
        phase: Phase,
        /// The remote address.
        peer: SocketAddr,
    },
    /// The peer closed or reset the connection in `phase` (in [`Phase::DataDot`]: the
    /// message may or may not have been taken).
    #[error("{peer} dropped the connection in {phase}: {reason}")]
    Dropped {
        /// What was under way.
        phase: Phase,
        /// The remote address.
        peer: SocketAddr,
        /// The socket's error, or "closed".
        reason: String,
    },
    /// The server refused the session: greeting, EHLO and HELO, STARTTLS, AUTH (`535`
    /// for wrong credentials) or RSET. `reply` is the server's own.
    #[error("{peer} refused {phase}: {} {}", reply.code, reply.content())]
    Rejected {
        /// The exchange refused.
        phase: Phase,
        /// The server's reply.
        reply: Reply,
        /// The remote address.
        peer: SocketAddr,
    },
    /// Credentials are configured but the server offers neither AUTH PLAIN nor LOGIN.
    #[error("{peer} offers no AUTH PLAIN or LOGIN for the configured credentials")]
    AuthNotOffered {
        /// The remote address.
        peer: SocketAddr,
    },
    /// Credentials are configured but the session is not TLS: they were not sent.
    #[error("credentials are configured but the session with {peer} is not TLS")]
    AuthWithoutTls {
        /// The remote address.
        peer: SocketAddr,
    },
    /// The server's bytes are not SMTP, or a reply cannot answer what was sent.
    #[error("protocol error with {peer} in {phase}: {reason}")]
    Protocol {
        /// What was under way.
        phase: Phase,
        /// The remote address.
        peer: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// The connection is closed (a `421`, an earlier failure, or QUIT): connect again.
    #[error("the connection is closed")]
    Closed,
}

impl OutboundError {
    /// The remote address, when a connection was made.
    pub fn peer(&self) -> Option<SocketAddr> {
        match self {
            Self::Connect { address, .. } => Some(*address),
            Self::Tls { peer, .. }
            | Self::TlsNotOffered { peer }
            | Self::Timeout { peer, .. }
            | Self::Dropped { peer, .. }
            | Self::Rejected { peer, .. }
            | Self::AuthNotOffered { peer }
            | Self::AuthWithoutTls { peer }
            | Self::Protocol { peer, .. } => Some(*peer),
            Self::Dns(_) | Self::NoAddress | Self::TlsSetup(_) | Self::Closed => None,
        }
    }

    /// Whether the failure will not go away by trying again later: a DNS answer that the
    /// domain cannot receive mail (NXDOMAIN, null MX, no address), or a 5xx refusal of
    /// the session. Everything else (timeouts, refused connections, TLS, 4xx) is
    /// temporary.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Dns(dns) => dns.is_permanent(),
            Self::Rejected { reply, .. } => reply.code >= 500,
            _ => false,
        }
    }

    /// The failure as one SMTP reply: the server's own when it sent one, else a
    /// synthetic reply whose class says temporary (4xx) or permanent (5xx), like
    /// KumoMTA's `421 4.4.2` for a timeout. Used as the `response` of a record.
    pub fn to_reply(&self) -> Reply {
        let text = self.to_string();
        match self {
            Self::Rejected { reply, .. } => reply.clone(),
            Self::Dns(dns) => dns.to_reply(),
            Self::Connect { .. } | Self::NoAddress => Reply::new(421, "4.4.1", text),
            Self::Timeout { .. } | Self::Dropped { .. } => Reply::new(421, "4.4.2", text),
            Self::Tls { .. } | Self::TlsSetup(_) => Reply::new(421, "4.7.5", text),
            Self::TlsNotOffered { .. }
            | Self::AuthNotOffered { .. }
            | Self::AuthWithoutTls { .. } => Reply::new(421, "4.7.4", text),
            Self::Protocol { .. } => Reply::new(421, "4.5.0", text),
            Self::Closed => Reply::new(421, "4.4.2", text),
        }
    }

    pub(crate) fn protocol(phase: Phase, peer: SocketAddr, error: &ReplyError) -> Self {
        Self::Protocol {
            phase,
            peer,
            reason: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "192.0.2.1:25".parse().expect("an address")
    }

    #[test]
    fn every_error_becomes_a_reply_of_the_right_class() {
        let cases = [
            (
                OutboundError::Timeout {
                    phase: Phase::RcptTo,
                    peer: peer(),
                },
                421,
                "4.4.2",
                false,
            ),
            (
                OutboundError::Connect {
                    address: peer(),
                    failure: ConnectFailure::Refused,
                },
                421,
                "4.4.1",
                false,
            ),
            (
                OutboundError::Rejected {
                    phase: Phase::Auth,
                    reply: Reply::new(535, "5.7.8", "bad credentials"),
                    peer: peer(),
                },
                535,
                "5.7.8",
                true,
            ),
            (
                OutboundError::Rejected {
                    phase: Phase::Banner,
                    reply: Reply::new(421, "4.3.2", "busy"),
                    peer: peer(),
                },
                421,
                "4.3.2",
                false,
            ),
            (
                OutboundError::Dns(DnsError::NullMx {
                    domain: "x.test".into(),
                }),
                556,
                "5.1.10",
                true,
            ),
            (
                OutboundError::Dns(DnsError::NoSuchDomain {
                    domain: "x.test".into(),
                }),
                550,
                "5.1.2",
                true,
            ),
            (
                OutboundError::Dns(DnsError::Temporary {
                    domain: "x.test".into(),
                    reason: "SERVFAIL".into(),
                }),
                451,
                "4.4.3",
                false,
            ),
            (
                OutboundError::TlsNotOffered { peer: peer() },
                421,
                "4.7.4",
                false,
            ),
            (
                OutboundError::Tls {
                    peer: peer(),
                    reason: "bad name".into(),
                },
                421,
                "4.7.5",
                false,
            ),
        ];
        for (error, code, enhanced, permanent) in cases {
            let reply = error.to_reply();
            assert_eq!(reply.code, code, "{error}");
            assert_eq!(
                reply.enhanced.map(|e| e.to_string()).as_deref(),
                Some(enhanced)
            );
            assert_eq!(error.is_permanent(), permanent, "{error}");
            assert_eq!(reply.code >= 500, permanent, "{error}");
        }
    }

    #[test]
    fn the_peer_is_reported_when_there_was_one() {
        assert_eq!(
            OutboundError::TlsNotOffered { peer: peer() }.peer(),
            Some(peer())
        );
        assert_eq!(OutboundError::NoAddress.peer(), None);
    }
}
