//! Failed AUTH attempts per client address: after `maxFailures` within
//! `failureWindow`, the address may not try again until its oldest failure has left
//! the window. Pure: the time is passed in.
//!
//! Hand-written rather than `governor`'s keyed limiter: that one counts every check it
//! is asked (here only failures count, and the question "is this address blocked?"
//! must not itself use up an attempt) and has no way to look without taking.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    time::{Duration, Instant},
};

/// Addresses tracked at most; past this, addresses whose failures have all expired
/// are forgotten first, then the one with the oldest latest failure.
const MAX_TRACKED: usize = 65_536;

/// The failures of every address that failed recently.
#[derive(Debug)]
pub struct AuthFailures {
    max: usize,
    window: Duration,
    failures: HashMap<IpAddr, VecDeque<Instant>>,
}

impl AuthFailures {
    /// A limiter allowing `max` failures per address within `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max.max(1) as usize,
            window,
            failures: HashMap::new(),
        }
    }

    /// Whether `peer` has used up its failures at `now`.
    pub fn blocked(&mut self, peer: IpAddr, now: Instant) -> bool {
        let window = self.window;
        let Some(times) = self.failures.get_mut(&peer) else {
            return false;
        };
        expire(times, now, window);
        if times.is_empty() {
            self.failures.remove(&peer);
            return false;
        }
        times.len() >= self.max
    }

    /// Counts one failure of `peer` at `now`.
    pub fn record(&mut self, peer: IpAddr, now: Instant) {
        if !self.failures.contains_key(&peer) && self.failures.len() >= MAX_TRACKED {
            self.make_room(now);
        }
        let times = self.failures.entry(peer).or_default();
        expire(times, now, self.window);
        times.push_back(now);
        while times.len() > self.max {
            times.pop_front();
        }
    }

    /// How many addresses are tracked.
    pub fn tracked(&self) -> usize {
        self.failures.len()
    }

    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.failures.retain(|_, times| {
            expire(times, now, window);
            !times.is_empty()
        });
        if self.failures.len() >= MAX_TRACKED
            && let Some(oldest) = self
                .failures
                .iter()
                .min_by_key(|(_, times)| times.back().copied())
                .map(|(peer, _)| *peer)
        {
            self.failures.remove(&oldest);
        }
    }
}

fn expire(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_nth_failure_blocks_until_the_oldest_leaves_the_window() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut limit = AuthFailures::new(3, Duration::from_secs(60));
        let peer = ip("192.0.2.1");
        for (t, blocked_before) in [(0, false), (10, false), (20, false)] {
            assert_eq!(limit.blocked(peer, at(t)), blocked_before, "at {t}s");
            limit.record(peer, at(t));
        }
        assert!(
            limit.blocked(peer, at(21)),
            "three failures within a minute"
        );
        assert!(
            !limit.blocked(ip("192.0.2.2"), at(21)),
            "another peer is free"
        );
        assert!(limit.blocked(peer, at(59)));
        assert!(
            !limit.blocked(peer, at(60)),
            "the first failure left the window"
        );
        limit.record(peer, at(60));
        assert!(limit.blocked(peer, at(61)));
        assert!(!limit.blocked(peer, at(200)), "all expired");
        assert_eq!(limit.tracked(), 0, "expired peers are forgotten");
    }

    #[test]
    fn memory_is_bounded() {
        let now = Instant::now();
        let mut limit = AuthFailures::new(1, Duration::from_secs(60));
        for i in 0..(MAX_TRACKED as u32 + 10) {
            limit.record(IpAddr::from(i.to_be_bytes()), now);
        }
        assert_eq!(limit.tracked(), MAX_TRACKED);
    }
}
