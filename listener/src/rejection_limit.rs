//! How many rejection records one session may write: a burst, then one a second. A
//! client that sends megabytes of garbage commands gets every one answered, but only
//! a handful logged; the rest are counted (metric and the next record's
//! `rejections_suppressed`). Pure: the caller passes the time.

use std::time::{Duration, Instant};

/// Records a session may write at once.
pub const BURST: u32 = 10;
/// One more record may be written after each interval.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// A token bucket of rejection records.
#[derive(Debug)]
pub struct RejectionLimit {
    tokens: u32,
    refilled: Option<Instant>,
    suppressed: u64,
}

/// What to do with one rejection record.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it, noting how many were left out before it.
    Write {
        /// Records left out since the previous one written.
        suppressed_before: u64,
    },
    /// Leave it out (it is still counted).
    Suppress,
}

impl Default for RejectionLimit {
    fn default() -> Self {
        Self {
            tokens: BURST,
            refilled: None,
            suppressed: 0,
        }
    }
}

impl RejectionLimit {
    /// Decides about one record at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let since = *self.refilled.get_or_insert(now);
        let earned = now.saturating_duration_since(since).as_secs() / INTERVAL.as_secs();
        if earned > 0 {
            self.tokens = BURST.min(self.tokens.saturating_add(earned as u32));
            self.refilled = Some(since + INTERVAL * earned as u32);
        }
        if self.tokens == 0 {
            self.suppressed += 1;
            return Verdict::Suppress;
        }
        self.tokens -= 1;
        Verdict::Write {
            suppressed_before: std::mem::take(&mut self.suppressed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_a_second_with_the_gap_counted() {
        let start = Instant::now();
        let mut limit = RejectionLimit::default();
        for _ in 0..BURST {
            assert_eq!(
                limit.check(start),
                Verdict::Write {
                    suppressed_before: 0
                }
            );
        }
        for _ in 0..1000 {
            assert_eq!(limit.check(start), Verdict::Suppress);
        }
        assert_eq!(
            limit.check(start + Duration::from_millis(1500)),
            Verdict::Write {
                suppressed_before: 1000
            }
        );
        assert_eq!(
            limit.check(start + Duration::from_millis(1600)),
            Verdict::Suppress
        );
        let later = start + Duration::from_secs(3600);
        for _ in 0..BURST {
            assert!(matches!(limit.check(later), Verdict::Write { .. }));
        }
        assert_eq!(limit.check(later), Verdict::Suppress);
    }
}
