//! Why an attempt failed without a reply from the remote for a recipient.

use std::fmt;

/// The SMTP phase a timeout or a drop happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Opening the TCP connection.
    Connect,
    /// Waiting for the 220 greeting.
    Banner,
    /// EHLO or HELO.
    Ehlo,
    /// STARTTLS or the TLS handshake.
    Tls,
    /// AUTH.
    Auth,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// DATA and its 354.
    Data,
    /// The message data and the reply to the final dot.
    DataDot,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Banner => "banner",
            Self::Ehlo => "EHLO",
            Self::Tls => "STARTTLS",
            Self::Auth => "AUTH",
            Self::Mail => "MAIL",
            Self::Rcpt => "RCPT",
            Self::Data => "DATA",
            Self::DataDot => "end of data",
        })
    }
}

/// A typed failure of a connection or a send, decided into an outcome by
/// [`classify`](crate::classify::classify).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// The remote did not answer in time.
    #[error("timed out waiting for the remote at {0}")]
    Timeout(Phase),
    /// No TCP connection could be opened to any address of the destination.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection closed or failed during a phase.
    #[error("connection lost at {phase}: {detail}")]
    ConnectionLost {
        /// When.
        phase: Phase,
        /// The I/O error or "closed by the remote".
        detail: String,
    },
    /// TLS is required but the remote did not offer STARTTLS, or the handshake or
    /// certificate verification failed.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The smarthost refused the credentials, or no usable AUTH mechanism was offered.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The recipient domain does not exist (NXDOMAIN).
    #[error("domain {0} does not exist")]
    NoSuchDomain(String),
    /// The recipient domain publishes a null MX (RFC 7505): it accepts no mail.
    #[error("domain {0} accepts no mail (null MX)")]
    NullMx(String),
    /// DNS failed in a way that may pass (SERVFAIL, timeout).
    #[error("DNS lookup failed: {0}")]
    Dns(String),
    /// The message needs SMTPUTF8 and the remote does not offer it.
    #[error("the message needs SMTPUTF8, which the remote does not support")]
    Smtputf8Unsupported,
    /// The message carries 8-bit data and the remote offers no 8BITMIME.
    #[error("the message has 8-bit data and the remote does not offer 8BITMIME")]
    EightBitUnsupported,
    /// The message is larger than the remote's advertised SIZE.
    #[error("the message of {size} octets exceeds the remote's limit of {limit}")]
    TooBig {
        /// The message size.
        size: u64,
        /// The remote's SIZE.
        limit: u64,
    },
    /// The remote spoke something that is not SMTP.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The transport already expressed the failure as a reply: the server's own
    /// refusal of the session, or a synthetic reply whose class says temporary or
    /// permanent.
    #[error("{detail}")]
    Refused {
        /// The reply to record.
        reply: postern_smtp::reply::Reply,
        /// What happened.
        detail: String,
    },
    /// A local failure: the message could not be read from the spool.
    #[error("local error: {0}")]
    Local(String),
}
