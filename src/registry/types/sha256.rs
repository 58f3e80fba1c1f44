//! SHA-256 whose state can be saved and restored: an upload in a bucket is hashed while its
//! bytes go out as parts that cannot be read back, so the state between two chunks is stored
//! with the upload (a restarted node, or another one, continues from it). The rounds are
//! `sha2`'s (`compress256`, with its CPU-specific code); only the buffering and the padding
//! of FIPS 180-4 §5 are here.

use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;

const BLOCK: usize = 64;
const INITIAL: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
/// What `save` writes first: a version of the layout below.
const SAVED_TAG: &[u8; 8] = b"sha256s1";

#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    /// Bytes hashed, the pending ones included.
    length: u64,
    pending: [u8; BLOCK],
    pending_len: usize,
}

impl Default for Sha256 {
    fn default() -> Sha256 {
        Sha256 {
            state: INITIAL,
            length: 0,
            pending: [0; BLOCK],
            pending_len: 0,
        }
    }
}

fn compress(state: &mut [u32; 8], blocks: &[u8]) {
    debug_assert_eq!(blocks.len() % BLOCK, 0);
    // SAFETY: GenericArray<u8, U64> is a [u8; 64] (repr(transparent), alignment 1), and
    // `blocks` holds a whole number of them.
    let blocks = unsafe {
        std::slice::from_raw_parts(
            blocks.as_ptr().cast::<GenericArray<u8, U64>>(),
            blocks.len() / BLOCK,
        )
    };
    sha2::compress256(state, blocks);
}

impl Sha256 {
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.length += bytes.len() as u64;
        if self.pending_len > 0 {
            let take = (BLOCK - self.pending_len).min(bytes.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            if self.pending_len < BLOCK {
                return;
            }
            let block = self.pending;
            compress(&mut self.state, &block);
            self.pending_len = 0;
        }
        let whole = bytes.len() - bytes.len() % BLOCK;
        if whole > 0 {
            compress(&mut self.state, &bytes[..whole]);
        }
        let rest = &bytes[whole..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    pub fn finalize(mut self) -> [u8; 32] {
        let bits = self.length.wrapping_mul(8);
        let mut tail = [0u8; 2 * BLOCK];
        tail[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
        tail[self.pending_len] = 0x80;
        let end = if self.pending_len + 1 + 8 <= BLOCK {
            BLOCK
        } else {
            2 * BLOCK
        };
        tail[end - 8..end].copy_from_slice(&bits.to_be_bytes());
        compress(&mut self.state, &tail[..end]);
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// Bytes hashed so far.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The state as bytes, for [`Sha256::restore`].
    pub fn save(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 + 8 + self.pending_len);
        out.extend_from_slice(SAVED_TAG);
        for word in self.state {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out.extend_from_slice(&self.length.to_be_bytes());
        out.extend_from_slice(&self.pending[..self.pending_len]);
        out
    }

    /// A state [`Sha256::save`] wrote; `None` for anything else.
    pub fn restore(saved: &[u8]) -> Option<Sha256> {
        let rest = saved.strip_prefix(SAVED_TAG)?;
        if rest.len() < 40 || rest.len() >= 40 + BLOCK {
            return None;
        }
        let mut state = [0u32; 8];
        for (word, bytes) in state.iter_mut().zip(rest[..32].chunks_exact(4)) {
            *word = u32::from_be_bytes(bytes.try_into().ok()?);
        }
        let length = u64::from_be_bytes(rest[32..40].try_into().ok()?);
        let pending = &rest[40..];
        if length % BLOCK as u64 != pending.len() as u64 {
            return None;
        }
        let mut hasher = Sha256 {
            state,
            length,
            pending: [0; BLOCK],
            pending_len: pending.len(),
        };
        hasher.pending[..pending.len()].copy_from_slice(pending);
        Some(hasher)
    }
}

#[cfg(test)]
mod tests {
    use super::Sha256;
    use sha2::Digest as _;

    /// Every split of inputs around the block and padding boundaries, saved and restored
    /// midway, gives sha2's digest.
    #[test]
    fn matches_sha2_across_blocks_splits_and_a_save() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 129, 1000] {
            let input = &data[..len];
            let expected: [u8; 32] = sha2::Sha256::digest(input).into();
            for split in [0, 1.min(len), len / 3, len / 2, len.saturating_sub(1), len] {
                let mut hasher = Sha256::default();
                hasher.update(&input[..split]);
                let mut hasher = Sha256::restore(&hasher.save()).expect("restores");
                assert_eq!(hasher.length(), split as u64);
                hasher.update(&input[split..]);
                assert_eq!(hasher.finalize(), expected, "len {len} split {split}");
            }
        }
    }

    #[test]
    fn anything_else_is_not_a_saved_state() {
        assert!(Sha256::restore(b"").is_none());
        assert!(Sha256::restore(b"sha256s1short").is_none());
        let mut saved = Sha256::default().save();
        saved.push(1); // a pending byte the length does not account for
        assert!(Sha256::restore(&saved).is_none());
    }
}
