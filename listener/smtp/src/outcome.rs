//! What became of one message's recipients in one SMTP transaction.

use crate::reply::Reply;

/// Where in the transaction a recipient's fate was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Decided by the client before anything was sent (e.g. SMTPUTF8 needed but not
    /// offered, or the message over the server's SIZE limit); the reply is synthetic.
    Local,
    /// The server refused MAIL FROM.
    Mail,
    /// The server refused this recipient's RCPT TO.
    Rcpt,
    /// The recipient was accepted, but the server refused the DATA command.
    Data,
    /// The recipient was accepted and the reply after the final dot decided it.
    Dot,
}

/// One recipient's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientOutcome {
    /// The server's reply to this recipient's RCPT TO, when one was sent and answered.
    pub rcpt: Option<Reply>,
    /// The reply that decides this recipient: 2xx delivered, 4xx try again, 5xx never.
    /// For an accepted recipient it is the reply to DATA or after the final dot.
    pub reply: Reply,
    /// Which step produced [`reply`](Self::reply).
    pub stage: Stage,
}

impl RecipientOutcome {
    /// Whether the server took responsibility for this recipient (2xx after the dot).
    pub fn is_delivered(&self) -> bool {
        self.stage == Stage::Dot && (200..300).contains(&self.reply.code)
    }
}

/// One message's result: the MAIL FROM reply and one outcome per recipient, in the
/// order of the envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageOutcome {
    /// The reply to MAIL FROM, when it was sent.
    pub mail: Option<Reply>,
    /// One entry per envelope recipient, same order.
    pub recipients: Vec<RecipientOutcome>,
}

impl MessageOutcome {
    /// Every recipient decided by the same reply at the same stage.
    pub(crate) fn all(count: usize, mail: Option<Reply>, reply: &Reply, stage: Stage) -> Self {
        Self {
            mail,
            recipients: (0..count)
                .map(|_| RecipientOutcome {
                    rcpt: None,
                    reply: reply.clone(),
                    stage,
                })
                .collect(),
        }
    }
}
