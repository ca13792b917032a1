//! How long each exchange with a next hop may take, named like KumoMTA's
//! `SmtpClientTimeouts` and with its defaults.

use std::time::Duration;

use postern_smtp::client::Phase;

/// One timeout per phase of an outbound session. Each applies to one wait: the TCP
/// connect, one write, or one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the TCP connection, per address (KumoMTA: 60 s).
    pub connect: Duration,
    /// The server's greeting (60 s).
    pub banner: Duration,
    /// EHLO or HELO (300 s).
    pub ehlo: Duration,
    /// STARTTLS, and the TLS handshake, implicit TLS's included (5 s).
    pub starttls: Duration,
    /// Each AUTH exchange (60 s).
    pub auth: Duration,
    /// MAIL FROM (300 s).
    pub mail_from: Duration,
    /// Each RCPT TO (300 s).
    pub rcpt_to: Duration,
    /// The DATA command until 354 (300 s).
    pub data: Duration,
    /// Writing the body, and the reply after the final dot (300 s).
    pub data_dot: Duration,
    /// RSET between messages (5 s).
    pub rset: Duration,
    /// QUIT (5 s).
    pub quit: Duration,
    /// How long a connection may stay unused before its owner should close it (5 s);
    /// see [`OutboundConnection::idle_for`](crate::OutboundConnection::idle_for).
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(60),
            banner: Duration::from_secs(60),
            ehlo: Duration::from_secs(300),
            starttls: Duration::from_secs(5),
            auth: Duration::from_secs(60),
            mail_from: Duration::from_secs(300),
            rcpt_to: Duration::from_secs(300),
            data: Duration::from_secs(300),
            data_dot: Duration::from_secs(300),
            rset: Duration::from_secs(5),
            quit: Duration::from_secs(5),
            idle: Duration::from_secs(5),
        }
    }
}

impl Timeouts {
    /// Every timeout set to `value` (tests, or a uniform policy).
    pub fn all(value: Duration) -> Self {
        Self {
            connect: value,
            banner: value,
            ehlo: value,
            starttls: value,
            auth: value,
            mail_from: value,
            rcpt_to: value,
            data: value,
            data_dot: value,
            rset: value,
            quit: value,
            idle: value,
        }
    }

    /// The timeout for one wait in `phase`.
    pub fn for_phase(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Banner => self.banner,
            Phase::Ehlo => self.ehlo,
            Phase::StartTls => self.starttls,
            Phase::Auth => self.auth,
            Phase::MailFrom => self.mail_from,
            Phase::RcptTo => self.rcpt_to,
            Phase::Data => self.data,
            Phase::DataDot => self.data_dot,
            Phase::Rset => self.rset,
            Phase::Quit => self.quit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_has_its_own_timeout() {
        let t = Timeouts::default();
        assert_eq!(t.for_phase(Phase::Banner), Duration::from_secs(60));
        assert_eq!(t.for_phase(Phase::DataDot), Duration::from_secs(300));
        assert_eq!(t.for_phase(Phase::Rset), Duration::from_secs(5));
        let short = Timeouts {
            rcpt_to: Duration::from_millis(7),
            ..Timeouts::default()
        };
        assert_eq!(short.for_phase(Phase::RcptTo), Duration::from_millis(7));
        assert_eq!(
            Timeouts::all(Duration::from_secs(1)).for_phase(Phase::Quit),
            Duration::from_secs(1)
        );
    }
}
