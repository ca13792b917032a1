//! One pure decision for every recipient: delivered, retry later, or bounce.
//!
//! Errors without a reply become synthetic replies (a timeout is `421 4.4.2`, as
//! KumoMTA does) so that records and retries only ever see replies.

use postern_smtp::reply::{Enhanced, Reply};

use crate::DispatchError;

/// What became of one recipient in one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The remote took responsibility (2xx).
    Delivered,
    /// Try again later (4xx, or a failure that may pass).
    Transient,
    /// Give up now (5xx, or a failure that will not pass).
    Permanent,
}

/// The outcome of a reply by its code: 2xx delivered, 5xx permanent, anything else
/// (4xx, and the 1xx/3xx a confused server may send) transient.
pub fn classify_reply(reply: &Reply) -> Outcome {
    match reply.code {
        200..=299 => Outcome::Delivered,
        500..=599 => Outcome::Permanent,
        _ => Outcome::Transient,
    }
}

/// The reply that stands for an error in records and bounces.
///
/// Connection, TLS, timeout, DNS-temporary and authentication failures are transient
/// (a wrong smarthost password is an operator's mistake to fix, not the sender's);
/// NXDOMAIN, null MX, missing SMTPUTF8 or 8BITMIME and an oversized message are
/// permanent.
pub fn synthetic_reply(error: &DispatchError) -> Reply {
    let (code, enhanced) = match error {
        DispatchError::Refused { reply, .. } => return reply.clone(),
        DispatchError::Timeout(_) => (421, "4.4.2"),
        DispatchError::Connect(_) => (421, "4.4.1"),
        DispatchError::ConnectionLost { .. } => (421, "4.4.2"),
        DispatchError::Tls(_) => (421, "4.7.5"),
        DispatchError::Auth(_) => (454, "4.7.0"),
        DispatchError::NoSuchDomain(_) => (550, "5.1.2"),
        DispatchError::NullMx(_) => (556, "5.1.10"),
        DispatchError::Dns(_) => (451, "4.4.3"),
        DispatchError::Smtputf8Unsupported => (553, "5.6.7"),
        DispatchError::EightBitUnsupported => (554, "5.6.3"),
        DispatchError::TooBig { .. } => (552, "5.3.4"),
        DispatchError::Protocol(_) => (421, "4.5.0"),
        DispatchError::Local(_) => (451, "4.3.0"),
    };
    Reply {
        code,
        enhanced: Enhanced::parse(enhanced),
        lines: vec![error.to_string()],
    }
}

/// The outcome and the reply to record for one recipient's result.
pub fn classify(result: &Result<Reply, DispatchError>) -> (Outcome, Reply) {
    match result {
        Ok(reply) => (classify_reply(reply), reply.clone()),
        Err(error) => {
            let reply = synthetic_reply(error);
            (classify_reply(&reply), reply)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Phase;

    fn reply(code: u16, enhanced: &str) -> Reply {
        Reply::new(code, enhanced, "text")
    }

    #[test]
    fn replies_by_code() {
        for (code, expected) in [
            (250, Outcome::Delivered),
            (251, Outcome::Delivered),
            (421, Outcome::Transient),
            (450, Outcome::Transient),
            (451, Outcome::Transient),
            (452, Outcome::Transient),
            (354, Outcome::Transient),
            (500, Outcome::Permanent),
            (550, Outcome::Permanent),
            (552, Outcome::Permanent),
            (554, Outcome::Permanent),
        ] {
            let r = Reply::plain(code, vec!["x".into()]);
            assert_eq!(classify(&Ok(r)).0, expected, "{code}");
        }
    }

    #[test]
    fn the_remote_reply_is_kept_exactly() {
        let remote = Reply {
            code: 550,
            enhanced: Enhanced::parse("5.1.1"),
            lines: vec!["<x@y> no such user".into(), "see https://err".into()],
        };
        let (outcome, kept) = classify(&Ok(remote.clone()));
        assert_eq!((outcome, kept), (Outcome::Permanent, remote));
        assert_eq!(reply(451, "4.3.0").code, 451);
    }

    #[test]
    fn errors_become_synthetic_replies() {
        let cases = [
            (
                DispatchError::Timeout(Phase::DataDot),
                Outcome::Transient,
                421,
                "4.4.2",
            ),
            (
                DispatchError::Timeout(Phase::Banner),
                Outcome::Transient,
                421,
                "4.4.2",
            ),
            (
                DispatchError::Connect("refused".into()),
                Outcome::Transient,
                421,
                "4.4.1",
            ),
            (
                DispatchError::ConnectionLost {
                    phase: Phase::DataDot,
                    detail: "closed".into(),
                },
                Outcome::Transient,
                421,
                "4.4.2",
            ),
            (
                DispatchError::Tls("STARTTLS not offered".into()),
                Outcome::Transient,
                421,
                "4.7.5",
            ),
            (
                DispatchError::Auth("535 5.7.8".into()),
                Outcome::Transient,
                454,
                "4.7.0",
            ),
            (
                DispatchError::NoSuchDomain("nx.test".into()),
                Outcome::Permanent,
                550,
                "5.1.2",
            ),
            (
                DispatchError::NullMx("null.test".into()),
                Outcome::Permanent,
                556,
                "5.1.10",
            ),
            (
                DispatchError::Dns("SERVFAIL".into()),
                Outcome::Transient,
                451,
                "4.4.3",
            ),
            (
                DispatchError::Smtputf8Unsupported,
                Outcome::Permanent,
                553,
                "5.6.7",
            ),
            (
                DispatchError::EightBitUnsupported,
                Outcome::Permanent,
                554,
                "5.6.3",
            ),
            (
                DispatchError::TooBig { size: 10, limit: 5 },
                Outcome::Permanent,
                552,
                "5.3.4",
            ),
            (
                DispatchError::Protocol("garbage".into()),
                Outcome::Transient,
                421,
                "4.5.0",
            ),
            (
                DispatchError::Local("spool".into()),
                Outcome::Transient,
                451,
                "4.3.0",
            ),
        ];
        for (error, outcome, code, enhanced) in cases {
            let (got, reply) = classify(&Err(error.clone()));
            assert_eq!(got, outcome, "{error}");
            assert_eq!(reply.code, code, "{error}");
            assert_eq!(
                reply.enhanced.map(|e| e.to_string()).as_deref(),
                Some(enhanced)
            );
            assert_eq!(reply.lines, [error.to_string()]);
        }
    }
}
