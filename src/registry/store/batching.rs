//! An upload body's chunks go to the hashing and writing threads in batches
//! ([`crate::registry::store::batcher::Batcher`]): every chunk handed to those threads costs a wake-up of each.
//!
//! Batches on their way to those threads are counted against one budget for the whole process
//! ([`BatchBudget`]): one push alone gets queues deep enough to ride out a thread's turn off
//! the CPU, and many pushes together share the same few MiB instead of multiplying them.

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;

use crate::registry::store::byte_budget::ByteBudget;

/// Bytes of upload batches held between the request tasks and the hashing and writing threads,
/// summed over every upload in the process. One upload's queues hold at most ~2.5 MiB (see
/// `hashing::QUEUE` and the filesystem driver's `WRITE_QUEUE`, which share their batches), so
/// one upload runs at full depth, and 8 at once stay well within the edge's 64 MiB (8 MiB
/// gave the same speed and ~7 MiB more RSS: BENCHMARKS.md).
const BUDGET: usize = 4 * 1024 * 1024;
/// The budget is counted in these.
const UNIT: usize = 64 * 1024;

pub(super) struct BatchBudget {
    bytes: ByteBudget,
}

impl Default for BatchBudget {
    fn default() -> Self {
        BatchBudget {
            bytes: ByteBudget::new(BUDGET, UNIT),
        }
    }
}

impl BatchBudget {
    /// `batch`, uncopied, holding its share of the budget until the last of its clones (the
    /// hasher's and the writer's) is dropped. Waits while the budget is spent.
    pub(super) async fn hold(&self, batch: Bytes) -> Bytes {
        let permit = self.bytes.take(batch.len()).await;
        Bytes::from_owner(Held {
            batch,
            _permit: permit,
        })
    }
}

struct Held {
    batch: Bytes,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::store::batcher::BATCH;

    #[tokio::test]
    async fn a_held_batch_returns_its_share_of_the_budget_when_its_last_clone_goes() {
        let budget = BatchBudget::default();
        let all = budget.bytes.available_units();
        let batch = budget.hold(Bytes::from(vec![9u8; BATCH])).await;
        assert_eq!(&batch[..], &vec![9u8; BATCH][..]);
        assert_eq!(budget.bytes.available_units(), all - BATCH / UNIT);
        let clone = batch.clone();
        drop(batch);
        assert_eq!(budget.bytes.available_units(), all - BATCH / UNIT);
        drop(clone);
        assert_eq!(budget.bytes.available_units(), all);
    }

    #[tokio::test]
    async fn a_batch_waits_while_the_budget_is_spent() {
        use futures_util::FutureExt;
        let budget = BatchBudget::default();
        let spent = budget.hold(Bytes::from(vec![1u8; BUDGET])).await;
        let waiting = budget.hold(Bytes::from_static(b"x"));
        tokio::pin!(waiting);
        assert!(waiting.as_mut().now_or_never().is_none());
        drop(spent);
        assert_eq!(&waiting.await[..], b"x");
    }
}
