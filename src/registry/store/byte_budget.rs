//! A semaphore counted in bytes: how much memory the holders of byte buffers may have
//! outstanding together. Whoever holds a buffer also holds a permit for its size, and the
//! bytes return to the budget when the permit is dropped.
//!
//! Used for an upload's batches on their way to the hashing and writing threads (one budget for
//! the whole process) and for the body chunks the edge has read and the engine not yet taken
//! (one per upload).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct ByteBudget {
    units: Arc<Semaphore>,
    unit: usize,
    all: usize,
}

impl ByteBudget {
    /// `bytes` in all, counted in `unit`s.
    pub fn new(bytes: usize, unit: usize) -> ByteBudget {
        let all = bytes / unit;
        assert!(all > 0, "a budget of at least one unit");
        ByteBudget {
            units: Arc::new(Semaphore::new(all)),
            unit,
            all,
        }
    }

    /// Waits until `len` bytes fit, then holds them until the permit is dropped. Anything up to
    /// a unit takes a whole one; anything larger than the budget takes all of it, so it waits
    /// for the others instead of forever.
    pub async fn take(&self, len: usize) -> OwnedSemaphorePermit {
        let units = len.div_ceil(self.unit).clamp(1, self.all);
        Arc::clone(&self.units)
            .acquire_many_owned(u32::try_from(units).expect("bounded by the budget"))
            .await
            .expect("the budget's semaphore is never closed")
    }

    /// Units not held by anyone.
    #[cfg(test)]
    pub fn available_units(&self) -> usize {
        self.units.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_small_buffer_takes_one_unit_and_a_huge_one_takes_all() {
        let budget = ByteBudget::new(4 * 1024, 1024);
        let small = budget.take(1).await;
        assert_eq!(budget.available_units(), 3);
        let huge = budget.take(1 << 20);
        tokio::pin!(huge);
        assert!(
            huge.as_mut().now_or_never().is_none(),
            "waits for the small one"
        );
        drop(small);
        let huge = huge.await;
        assert_eq!(budget.available_units(), 0);
        drop(huge);
        assert_eq!(budget.available_units(), 4);
    }
}
