//! The process-wide budget of message data in memory (`maxDataInFlight`).
//!
//! A session in DATA holds a share of the budget at least as large as the memory its
//! message buffer and read buffer take, and takes more *before* it reads more. When
//! the budget is used up the session stops reading, so TCP flow control slows the
//! client down; if no room comes within its deadline the session is closed with
//! `421 4.3.1`. Memory for message data is therefore bounded by the budget, whatever
//! the number of sessions or the size they announce. Waiters are served in arrival
//! order (the semaphore is fair), so one large message cannot starve the others.

use std::sync::Arc;

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use crate::metrics::Metrics;

/// The shared budget. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DataBudget {
    semaphore: Arc<Semaphore>,
    total: usize,
    metrics: Metrics,
}

/// Why a share could not grow.
#[derive(Debug, PartialEq, Eq)]
pub enum BudgetError {
    /// No room came before the deadline.
    TimedOut,
    /// More was asked than the whole budget.
    TooLarge,
}

/// What one session holds of the budget; given back when dropped.
#[derive(Debug)]
pub struct Share {
    budget: DataBudget,
    permit: Option<OwnedSemaphorePermit>,
}

impl DataBudget {
    /// A budget of `total` octets.
    pub fn new(total: u64, metrics: Metrics) -> Self {
        let total = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        metrics.data_budget_bytes.set(total as i64);
        Self {
            semaphore: Arc::new(Semaphore::new(total)),
            total,
            metrics,
        }
    }

    /// An empty share.
    pub fn share(&self) -> Share {
        Share {
            budget: self.clone(),
            permit: None,
        }
    }

    /// Octets held by all sessions now.
    pub fn in_use(&self) -> usize {
        self.total - self.semaphore.available_permits()
    }

    fn publish(&self) {
        self.metrics.data_in_flight_bytes.set(self.in_use() as i64);
    }
}

impl Share {
    /// Octets held.
    pub fn held(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Grows the share to at least `bytes`, waiting for room until `deadline`.
    pub async fn grow_to(&mut self, bytes: usize, deadline: Instant) -> Result<(), BudgetError> {
        let held = self.held();
        if bytes <= held {
            return Ok(());
        }
        if bytes > self.budget.total {
            return Err(BudgetError::TooLarge);
        }
        let more = u32::try_from(bytes - held).map_err(|_| BudgetError::TooLarge)?;
        let semaphore = self.budget.semaphore.clone();
        let permit = match semaphore.clone().try_acquire_many_owned(more) {
            Ok(permit) => permit,
            Err(_) => {
                self.budget.metrics.data_budget_waits.inc();
                match tokio::time::timeout_at(deadline, semaphore.acquire_many_owned(more)).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) | Err(_) => {
                        self.budget.metrics.data_budget_timeouts.inc();
                        return Err(BudgetError::TimedOut);
                    }
                }
            }
        };
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
        self.budget.publish();
        Ok(())
    }

    /// Gives back everything over `bytes`.
    pub fn shrink_to(&mut self, bytes: usize) {
        let Some(permit) = &mut self.permit else {
            return;
        };
        let excess = permit.num_permits().saturating_sub(bytes);
        if excess > 0 {
            drop(permit.split(excess));
            self.budget.publish();
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if self.permit.take().is_some() {
            self.budget.publish();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn shares_wait_for_room_and_give_it_back() {
        let budget = DataBudget::new(100, Metrics::default());
        let mut a = budget.share();
        let mut b = budget.share();
        let soon = Instant::now() + Duration::from_millis(50);
        a.grow_to(80, soon).await.unwrap();
        assert_eq!(budget.in_use(), 80);
        assert_eq!(b.grow_to(30, soon).await, Err(BudgetError::TimedOut));
        a.shrink_to(60);
        b.grow_to(30, soon).await.unwrap();
        assert_eq!(budget.in_use(), 90);
        assert_eq!(a.grow_to(101, soon).await, Err(BudgetError::TooLarge));
        drop(a);
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }
}
