//! Gathers an upload body's chunks into batches before they go to the hashing and writing
//! threads.
//!
//! Every chunk handed to those threads costs a wake-up of each, and a client's chunks are
//! small: 64 KiB from the edge's TLS reads, 16 KiB DATA frames over h2. Copying them into
//! 256 KiB batches costs one `memcpy` per byte and saves most of the wake-ups (BENCHMARKS.md).
//! A chunk that is already that large passes through uncopied, and so does a body of one chunk.
//!
//! Batches on their way to those threads are counted against one budget for the whole process
//! ([`BatchBudget`]): one push alone gets queues deep enough to ride out a thread's turn off
//! the CPU, and many pushes together share the same few MiB instead of multiplying them.

use bytes::{Bytes, BytesMut};
use tokio::sync::OwnedSemaphorePermit;

use crate::byte_budget::ByteBudget;

/// Below glibc's mmap threshold as `main` sets it (1 MiB), so batch buffers are recycled from
/// the heap; a queue of a few of them per upload keeps memory flat.
pub(super) const BATCH: usize = 256 * 1024;

#[derive(Default)]
pub(super) struct Batcher {
    /// The first chunk of a batch, held uncopied: most bodies of manifests and small layers are
    /// one chunk, and copying them would only cost.
    first: Option<Bytes>,
    gathered: BytesMut,
}

impl Batcher {
    /// Adds `chunk`; returns a batch once one is full.
    pub(super) fn add(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.gathered.is_empty() {
            let Some(first) = self.first.take() else {
                if chunk.len() >= BATCH {
                    return Some(chunk);
                }
                self.first = Some(chunk);
                return None;
            };
            self.gathered.reserve(BATCH);
            self.gathered.extend_from_slice(&first);
        }
        self.gathered.extend_from_slice(&chunk);
        (self.gathered.len() >= BATCH).then(|| std::mem::take(&mut self.gathered).freeze())
    }

    /// What is gathered and not yet returned, at the end of the body or when it fails.
    pub(super) fn rest(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        (!self.gathered.is_empty()).then(|| std::mem::take(&mut self.gathered).freeze())
    }
}

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

    #[test]
    fn small_chunks_come_out_in_full_batches_and_a_rest() {
        let mut batcher = Batcher::default();
        let chunk = Bytes::from(vec![7u8; 100 * 1024]);
        let mut out = Vec::new();
        for _ in 0..6 {
            out.extend(batcher.add(chunk.clone()));
        }
        out.extend(batcher.rest());
        let sizes: Vec<usize> = out.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [300 * 1024, 300 * 1024]);
        assert!(batcher.rest().is_none());
    }

    #[test]
    fn a_large_chunk_passes_through_uncopied_when_nothing_is_gathered() {
        let mut batcher = Batcher::default();
        let big = Bytes::from(vec![1u8; BATCH]);
        let out = batcher.add(big.clone()).unwrap();
        assert_eq!(out.as_ptr(), big.as_ptr());
        assert_eq!(batcher.add(Bytes::from_static(b"abc")), None);
        assert_eq!(batcher.rest().unwrap(), Bytes::from_static(b"abc"));
    }

    #[test]
    fn a_body_of_one_small_chunk_is_not_copied() {
        let mut batcher = Batcher::default();
        let chunk = Bytes::from(vec![3u8; 16 * 1024]);
        assert_eq!(batcher.add(chunk.clone()), None);
        let out = batcher.rest().unwrap();
        assert_eq!(out.as_ptr(), chunk.as_ptr());
        assert!(batcher.rest().is_none());
    }

    #[test]
    fn bytes_keep_their_order() {
        let mut batcher = Batcher::default();
        let mut out = Vec::new();
        for i in 0..1000u32 {
            let chunk = Bytes::from(vec![(i % 251) as u8; 1000 + (i as usize % 7)]);
            out.extend(batcher.add(chunk));
        }
        out.extend(batcher.rest());
        let joined: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        let expected: Vec<u8> = (0..1000u32)
            .flat_map(|i| std::iter::repeat_n((i % 251) as u8, 1000 + (i as usize % 7)))
            .collect();
        assert_eq!(joined, expected);
    }
}
