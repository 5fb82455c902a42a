//! QuickXorHash, the hash OneDrive for Business and SharePoint report in
//! `file.hashes.quickXorHash`, from Microsoft's "Code snippets: QuickXorHash algorithm"
//! (https://learn.microsoft.com/onedrive/developer/code-snippets/quickxorhash): byte `i` of the
//! input is XORed into a 160-bit block at bit `11 * i` (rotating), the block is written out
//! little-endian, and the input length (64-bit little-endian) is XORed into its last 8 bytes;
//! the digest is sent base64-encoded.
//!
//! Bytes 160 apart land on the same bits, so the input is first XOR-folded into 160 lanes
//! (fast even unoptimised), and only the 160 lanes are shifted into place.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const WIDTH_BITS: usize = 160;
const SHIFT: usize = 11;

/// The base64 QuickXorHash of `data`.
pub fn quickxorhash(data: &[u8]) -> String {
    // lanes[k] = XOR of data[i] for i ≡ k (mod 160).
    let mut words = [0u64; WIDTH_BITS / 8];
    let mut chunks = data.chunks_exact(WIDTH_BITS);
    for chunk in &mut chunks {
        for (word, bytes) in words.iter_mut().zip(chunk.chunks_exact(8)) {
            *word ^= u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        }
    }
    let mut lanes = [0u8; WIDTH_BITS];
    for (k, word) in words.iter().enumerate() {
        lanes[k * 8..k * 8 + 8].copy_from_slice(&word.to_le_bytes());
    }
    for (lane, byte) in lanes.iter_mut().zip(chunks.remainder()) {
        *lane ^= byte;
    }
    let mut block = [0u8; WIDTH_BITS / 8];
    for (k, lane) in lanes.iter().enumerate() {
        let position = k * SHIFT % WIDTH_BITS;
        for bit in 0..8 {
            if lane >> bit & 1 == 1 {
                let p = (position + bit) % WIDTH_BITS;
                block[p / 8] ^= 1 << (p % 8);
            }
        }
    }
    let length = (data.len() as u64).to_le_bytes();
    for (i, byte) in length.iter().enumerate() {
        block[WIDTH_BITS / 8 - 8 + i] ^= byte;
    }
    STANDARD.encode(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The algorithm as the page states it, one byte at a time.
    fn naive(data: &[u8]) -> String {
        let mut block = [0u8; 20];
        for (i, byte) in data.iter().enumerate() {
            for bit in 0..8 {
                if byte >> bit & 1 == 1 {
                    let p = (i * SHIFT + bit) % WIDTH_BITS;
                    block[p / 8] ^= 1 << (p % 8);
                }
            }
        }
        for (i, b) in (data.len() as u64).to_le_bytes().iter().enumerate() {
            block[12 + i] ^= b;
        }
        STANDARD.encode(block)
    }

    #[test]
    fn matches_the_published_value_and_the_plain_algorithm() {
        // The value other implementations publish for "hello world".
        assert_eq!(quickxorhash(b"hello world"), "aCgDG9jwBhDc4Q1yawMZAAAAAAA=");
        assert_eq!(quickxorhash(b""), "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        let data: Vec<u8> = (0..10_007u32).map(|i| (i * 7919 % 256) as u8).collect();
        for len in [1, 159, 160, 161, 320, 1000, 10_007] {
            assert_eq!(quickxorhash(&data[..len]), naive(&data[..len]), "{len}");
        }
    }
}
