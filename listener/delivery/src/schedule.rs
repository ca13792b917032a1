//! The retry schedule as arithmetic: KumoMTA's exponential backoff.
//!
//! After the `n`th failed attempt the next one is due `retryInterval × 2^(n-1)` later,
//! capped at `maxRetryInterval`; once that time would fall past `maxAge` after
//! reception, the message expires instead.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use postern_config::DeliveryConfig;

/// When to try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    /// Delay after the first failure.
    pub retry_interval: Duration,
    /// Cap on one delay.
    pub max_retry_interval: Option<Duration>,
    /// Time in queue after which the message expires.
    pub max_age: Duration,
}

impl RetrySchedule {
    /// The schedule of a `delivery` section.
    pub fn of(config: &DeliveryConfig) -> Self {
        Self {
            retry_interval: config.retry_interval.get(),
            max_retry_interval: config.max_retry_interval.map(|d| d.get()),
            max_age: config.max_age.get(),
        }
    }

    /// The delay after `failures` failed attempts (1 for the first failure).
    pub fn delay_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1);
        let delay = if doublings >= u32::BITS {
            Duration::MAX
        } else {
            self.retry_interval
                .checked_mul(1 << doublings)
                .unwrap_or(Duration::MAX)
        };
        match self.max_retry_interval {
            Some(cap) => delay.min(cap),
            None => delay,
        }
    }

    /// When the next attempt is due after the `failures`th failure at `now`, or `None`
    /// when that would be past `maxAge`: the message expires.
    pub fn next_due(
        &self,
        received_at: DateTime<Utc>,
        failures: u32,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let delay = TimeDelta::from_std(self.delay_after(failures)).ok()?;
        let due = now.checked_add_signed(delay)?;
        (due <= self.expires_at(received_at)?).then_some(due)
    }

    /// When a message received at `received_at` expires.
    pub fn expires_at(&self, received_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        received_at.checked_add_signed(TimeDelta::from_std(self.max_age).ok()?)
    }

    /// Whether a message received at `received_at` has expired at `now`.
    pub fn expired(&self, received_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.expires_at(received_at).is_none_or(|at| now >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;
    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;

    fn schedule(retry: u64, cap: Option<u64>, max_age: u64) -> RetrySchedule {
        RetrySchedule {
            retry_interval: Duration::from_secs(retry),
            max_retry_interval: cap.map(Duration::from_secs),
            max_age: Duration::from_secs(max_age),
        }
    }

    /// Every attempt time, in seconds after reception, when each attempt fails at
    /// once: the first at reception, the rest as due, until the schedule says expire.
    fn whole_schedule(s: &RetrySchedule) -> Vec<u64> {
        let received = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let mut attempts = vec![0];
        let mut now = received;
        for failures in 1.. {
            match s.next_due(received, failures, now) {
                Some(due) => {
                    attempts.push((due - received).num_seconds() as u64);
                    now = due;
                }
                None => break,
            }
        }
        attempts
    }

    #[test]
    fn kumomta_defaults_double_from_twenty_minutes_for_seven_days() {
        let s = schedule(20 * MIN, None, 7 * DAY);
        let minutes: Vec<u64> = whole_schedule(&s).iter().map(|t| t / MIN).collect();
        // 20, 40, 80, ... minutes apart; the next gap (5120 min) would end past 7 days.
        assert_eq!(
            minutes,
            [0, 20, 60, 140, 300, 620, 1260, 2540, 5100],
            "attempt times in minutes after reception"
        );
    }

    #[test]
    fn the_cap_bounds_each_gap() {
        let s = schedule(20 * MIN, Some(2 * HOUR), DAY);
        let minutes: Vec<u64> = whole_schedule(&s).iter().map(|t| t / MIN).collect();
        let mut expected = vec![0, 20, 60, 140];
        let mut t = 140;
        while t + 120 <= 24 * 60 {
            t += 120;
            expected.push(t);
        }
        assert_eq!(minutes, expected);
        assert_eq!(*minutes.last().unwrap(), 1340);
    }

    #[test]
    fn one_second_retries_for_tests() {
        let s = schedule(1, None, 60);
        assert_eq!(whole_schedule(&s), [0, 1, 3, 7, 15, 31]);
        let capped = schedule(1, Some(4), 20);
        assert_eq!(whole_schedule(&capped), [0, 1, 3, 7, 11, 15, 19]);
    }

    #[test]
    fn huge_attempt_counts_saturate_instead_of_overflowing() {
        let s = schedule(20 * MIN, None, 7 * DAY);
        assert_eq!(s.delay_after(200), Duration::MAX);
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(s.next_due(now, 200, now), None);
        let capped = schedule(20 * MIN, Some(HOUR), 7 * DAY);
        assert_eq!(capped.delay_after(200), Duration::from_secs(HOUR));
    }

    #[test]
    fn expiry_is_max_age_after_reception() {
        let s = schedule(MIN, None, HOUR);
        let received = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        assert!(!s.expired(received, received + TimeDelta::seconds(3599)));
        assert!(s.expired(received, received + TimeDelta::seconds(3600)));
    }
}
