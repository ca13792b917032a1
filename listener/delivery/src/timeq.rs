//! A timer queue that pops what is due or says how long to sleep; `now` is passed in.

use std::{cmp::Ordering, collections::BinaryHeap, time::Duration};

use chrono::{DateTime, Utc};

/// What [`TimerQueue::poll`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll<T> {
    /// These items are due, earliest first.
    Ready(Vec<T>),
    /// Nothing is due; the earliest item is due after this long.
    Sleep(Duration),
    /// The queue is empty.
    Empty,
}

struct Timed<T> {
    due: DateTime<Utc>,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Timed<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl<T> Eq for Timed<T> {}
impl<T> PartialOrd for Timed<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Timed<T> {
    /// Reversed, so that the max-heap yields the earliest item (ties in insertion order).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// Items ordered by due time; equal times come out in insertion order.
pub struct TimerQueue<T> {
    heap: BinaryHeap<Timed<T>>,
    seq: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> std::fmt::Debug for TimerQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerQueue")
            .field("len", &self.heap.len())
            .finish()
    }
}

impl<T> TimerQueue<T> {
    /// Schedules `item` at `due`.
    pub fn insert(&mut self, due: DateTime<Utc>, item: T) {
        self.seq += 1;
        self.heap.push(Timed {
            due,
            seq: self.seq,
            item,
        });
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Pops every item due at `now`, or says how long until the next one.
    pub fn poll(&mut self, now: DateTime<Utc>) -> Poll<T> {
        let mut ready = Vec::new();
        while self.heap.peek().is_some_and(|t| t.due <= now) {
            ready.push(self.heap.pop().expect("peeked").item);
        }
        if !ready.is_empty() {
            return Poll::Ready(ready);
        }
        match self.heap.peek() {
            Some(next) => Poll::Sleep((next.due - now).to_std().unwrap_or_default()),
            None => Poll::Empty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn pops_what_is_due_in_order_and_says_how_long_to_sleep() {
        let mut q = TimerQueue::default();
        assert_eq!(q.poll(at(0)), Poll::Empty);
        q.insert(at(10), "c");
        q.insert(at(5), "a");
        q.insert(at(5), "b");
        q.insert(at(60), "d");
        assert_eq!(q.poll(at(0)), Poll::Sleep(Duration::from_secs(5)));
        assert_eq!(q.poll(at(4)), Poll::Sleep(Duration::from_secs(1)));
        assert_eq!(q.poll(at(10)), Poll::Ready(vec!["a", "b", "c"]));
        assert_eq!(q.len(), 1);
        assert_eq!(
            q.poll(at(10) + TimeDelta::milliseconds(500)),
            Poll::Sleep(Duration::from_millis(49_500))
        );
        assert_eq!(q.poll(at(3600)), Poll::Ready(vec!["d"]));
        assert!(q.is_empty());
    }

    #[test]
    fn items_due_in_the_past_are_ready_at_once() {
        let mut q = TimerQueue::default();
        q.insert(at(-100), 1);
        assert_eq!(q.poll(at(0)), Poll::Ready(vec![1]));
    }
}
