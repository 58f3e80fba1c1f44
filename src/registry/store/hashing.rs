//! Hashing of an upload body while it streams to storage.
//!
//! SHA-256 is the most expensive step of a push (≈ 0.6 s of CPU per GiB here, more than the
//! socket and the page-cache copy together). Done on the request task it serialises with
//! receiving; so once a body proves large, the hasher moves to a blocking thread of its own and
//! receiving, hashing and writing each get a core. Chunks are `Bytes`, shared with the writer,
//! never copied. Small bodies (manifests, small layers) stay inline: a thread hop would cost more
//! than their hash.

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::registry::types::Hasher;

/// Bytes hashed inline before the hasher moves to its own thread.
const INLINE_BYTES: u64 = 4 * 1024 * 1024;
/// Chunks (256 KiB batches, see `batching`) waiting for the hashing thread. Deep enough that
/// the thread's turns off the CPU do not stall the push (2 measurably slowed an edge push);
/// what many uploads hold together is bounded by
/// `batching::BatchBudget`, not by this.
const QUEUE: usize = 8;

pub(super) struct StreamHasher {
    stage: Stage,
}

enum Stage {
    Inline {
        hasher: Hasher,
        hashed: u64,
    },
    Threaded {
        chunks: mpsc::Sender<Bytes>,
        thread: JoinHandle<Hasher>,
    },
}

impl StreamHasher {
    pub(super) fn new(hasher: Hasher) -> StreamHasher {
        StreamHasher {
            stage: Stage::Inline { hasher, hashed: 0 },
        }
    }

    pub(super) async fn update(&mut self, chunk: &Bytes) {
        if let Stage::Inline { hasher, hashed } = &mut self.stage {
            if *hashed < INLINE_BYTES {
                hasher.update(chunk);
                *hashed += chunk.len() as u64;
                return;
            }
            // The body is large: hand the state (a few hundred bytes) to a thread of its own.
            let hasher = hasher.clone();
            let (chunks, queue) = mpsc::channel(QUEUE);
            let thread = tokio::task::spawn_blocking(move || hash_on_this_thread(hasher, queue));
            self.stage = Stage::Threaded { chunks, thread };
        }
        if let Stage::Threaded { chunks, .. } = &self.stage {
            // The thread only stops once the sender is dropped, so a send cannot fail.
            let _ = chunks.send(chunk.clone()).await;
        }
    }

    /// The hasher, having consumed every chunk given to `update`.
    pub(super) async fn finish(self) -> Hasher {
        match self.stage {
            Stage::Inline { hasher, .. } => hasher,
            Stage::Threaded { chunks, thread } => {
                drop(chunks);
                match thread.await {
                    Ok(hasher) => hasher,
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            }
        }
    }
}

fn hash_on_this_thread(mut hasher: Hasher, mut queue: mpsc::Receiver<Bytes>) -> Hasher {
    while let Some(chunk) = queue.blocking_recv() {
        hasher.update(&chunk);
    }
    hasher
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::types::Algorithm;

    fn digest_of(content: &[u8]) -> String {
        let mut hasher = Algorithm::Sha256.hasher();
        hasher.update(content);
        hasher.finish().to_string()
    }

    async fn hash_in_chunks(content: &[u8], chunk: usize) -> String {
        let mut hasher = StreamHasher::new(Algorithm::Sha256.hasher());
        for piece in content.chunks(chunk) {
            hasher.update(&Bytes::copy_from_slice(piece)).await;
        }
        hasher.finish().await.finish().to_string()
    }

    #[tokio::test]
    async fn a_body_hashed_on_a_thread_gets_the_same_digest_as_one_hashed_inline() {
        let content: Vec<u8> = (0..(INLINE_BYTES as usize * 3 + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let expected = digest_of(&content);
        assert_eq!(hash_in_chunks(&content, 64 * 1024).await, expected);
        assert_eq!(hash_in_chunks(&content, 1_000_003).await, expected);
        assert_eq!(
            hash_in_chunks(&content[..1000], 100).await,
            digest_of(&content[..1000])
        );
    }
}
