//! Gathers a body's chunks into batches of [`BATCH`] bytes.
//!
//! Whoever hands chunks to another task or thread pays a wake-up per chunk, and a client's
//! chunks are small: 64 KiB from pingora's HTTP/1.1 reads, 16 KiB DATA frames from most h2
//! clients. Copying them into 256 KiB batches costs one `memcpy` per byte and saves most of the
//! wake-ups (BENCHMARKS.md). A chunk that is already that large passes through uncopied, and so
//! does a body of one chunk. The edge gathers an upload's body before handing it to the engine,
//! and the engine gathers whatever reaches it before its hashing and writing threads, so a body
//! that came through the edge is copied once, not twice.

use bytes::{Bytes, BytesMut};

/// Below glibc's mmap threshold as `main` sets it (1 MiB), so batch buffers are recycled from
/// the heap; a queue of a few of them per upload keeps memory flat.
pub const BATCH: usize = 256 * 1024;

#[derive(Default)]
pub struct Batcher {
    /// The first chunk of a batch, held uncopied: most bodies of manifests and small layers are
    /// one chunk, and copying them would only cost.
    first: Option<Bytes>,
    gathered: BytesMut,
}

impl Batcher {
    /// Adds `chunk`; returns a batch once one is full.
    pub fn add(&mut self, chunk: Bytes) -> Option<Bytes> {
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
    pub fn rest(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        (!self.gathered.is_empty()).then(|| std::mem::take(&mut self.gathered).freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
