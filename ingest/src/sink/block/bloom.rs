//! A Bloom filter of user ids, one per block.

const BITS_PER_KEY: usize = 10;
const HASHES: u64 = 7;

#[derive(Debug, Clone)]
pub struct Bloom {
    words: Box<[u64]>,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser: user ids are often sequential, the bits must not be.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Bloom {
    /// A filter sized for `keys` distinct keys.
    pub fn with_capacity(keys: usize) -> Bloom {
        let words = (keys * BITS_PER_KEY).div_ceil(64).max(1);
        Bloom {
            words: vec![0; words].into_boxed_slice(),
        }
    }

    fn positions(bits: u64, key: u64) -> impl Iterator<Item = usize> {
        let h1 = mix(key);
        let h2 = mix(h1) | 1;
        // Multiply-shift maps a hash onto [0, bits) without a division.
        (0..HASHES).map(move |i| {
            let hash = h1.wrapping_add(i.wrapping_mul(h2));
            ((hash as u128 * bits as u128) >> 64) as usize
        })
    }

    pub fn insert(&mut self, key: u64) {
        for bit in Bloom::positions(self.bits(), key) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    pub fn may_contain(&self, key: u64) -> bool {
        Bloom::positions(self.bits(), key).all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    fn bits(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    pub fn byte_len(&self) -> usize {
        self.words.len() * 8
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        for word in self.words.iter() {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }

    /// Reads a filter written by [`Bloom::write_to`]; `None` if the length is not whole words.
    pub fn from_bytes(bytes: &[u8]) -> Option<Bloom> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(8) {
            return None;
        }
        let words = bytes
            .chunks_exact(8)
            .map(|chunk| u64::from_le_bytes(chunk.try_into().expect("chunks of 8")))
            .collect();
        Some(Bloom { words })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_are_always_found_and_others_rarely() {
        let mut bloom = Bloom::with_capacity(10_000);
        for user in 0..10_000u64 {
            bloom.insert(user * 3);
        }
        assert!((0..10_000u64).all(|user| bloom.may_contain(user * 3)));
        let false_positives = (0..100_000u64)
            .filter(|i| bloom.may_contain(1_000_000 + i))
            .count();
        assert!(
            false_positives < 2_000,
            "{false_positives} false positives in 100k"
        );
        let copy = Bloom::from_bytes(&{
            let mut bytes = Vec::new();
            bloom.write_to(&mut bytes);
            bytes
        })
        .unwrap();
        assert!((0..10_000u64).all(|user| copy.may_contain(user * 3)));
    }
}
