//! Blob content: one deterministic pseudo-random buffer that every blob is a slice of, digests
//! computed before anything is timed, and the request body that streams a blob as `Bytes`
//! slices of that buffer (no copy, no hashing on the client while it sends).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest as _, Sha256};

/// How much of a blob one body frame carries.
const FRAME: usize = 1024 * 1024;

/// A blob the benchmark pushes: its bytes and their `sha256:<hex>` digest.
#[derive(Clone)]
pub struct Blob {
    pub digest: String,
    pub data: Bytes,
}

impl Blob {
    /// Hashes `data` once; the digest is then only sent, never recomputed.
    pub fn new(data: Bytes) -> Blob {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        Blob { digest, data }
    }

    pub fn len(&self) -> u64 {
        self.data.len() as u64
    }
}

/// `len` bytes from xorshift64* seeded with `seed`: incompressible and the same on every run.
pub fn pseudo_random(len: usize, seed: u64) -> Bytes {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Disjoint slices of `buffer` from `offset` on, `count` of `size` bytes each: distinct blobs
/// without new memory. Another `offset` gives other blobs (for another round).
pub fn slices(buffer: &Bytes, offset: usize, count: usize, size: usize) -> Vec<Blob> {
    assert!(
        offset + count * size <= buffer.len(),
        "the content buffer is too small"
    );
    (0..count)
        .map(|i| Blob::new(buffer.slice(offset + i * size..offset + (i + 1) * size)))
        .collect()
}

/// Every request body the client sends, with an exact length so hyper sends `Content-Length`.
pub enum ReqBody {
    Empty,
    /// Sent as `FRAME`-sized `Bytes::slice`s of the data.
    Stream {
        data: Bytes,
        offset: usize,
    },
}

impl ReqBody {
    pub fn stream(data: Bytes) -> ReqBody {
        ReqBody::Stream { data, offset: 0 }
    }

    fn remaining(&self) -> usize {
        match self {
            ReqBody::Empty => 0,
            ReqBody::Stream { data, offset } => data.len() - offset,
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Stream { data, offset } => {
                if *offset == data.len() {
                    return Poll::Ready(None);
                }
                let end = (*offset + FRAME).min(data.len());
                let frame = data.slice(*offset..end);
                *offset = end;
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining() as u64)
    }
}
