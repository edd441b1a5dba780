//! The batch format: what the batcher posts and a verifier decodes.
//!
//! Version 0: one version byte `0x00`, then a zstd frame holding the RLP list
//! of blocks; each block is `[number, timestamp, [tx, ...]]` with every
//! transaction in its EIP-2718 encoding. That is enough to rebuild the blocks
//! exactly: the base fee, gas limit, fee recipient and parent follow from the
//! chain config and the previous block.

use alloy_primitives::Bytes;
use alloy_rlp::{Decodable, Encodable, RlpDecodable, RlpEncodable};
use std::io::Read;

/// The batch format version this codec writes.
pub const BATCH_VERSION_0: u8 = 0;

/// The most a batch may decompress to (hostile input must not exhaust memory).
pub const MAX_DECOMPRESSED_BYTES: u64 = 64 * 1024 * 1024;

/// zstd level: level 3 is within 2% of level 19 on signed transactions and
/// hundreds of times faster (see `docs/decisions.md`).
const ZSTD_LEVEL: i32 = 3;

/// One L2 block inside a batch.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct BatchBlock {
    /// Block number.
    pub number: u64,
    /// Block timestamp (seconds).
    pub timestamp: u64,
    /// The block's transactions, EIP-2718 encoded, in order.
    pub transactions: Vec<Bytes>,
}

/// Errors decoding a batch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The batch is empty.
    #[error("empty batch")]
    Empty,
    /// The version byte is not one this build reads.
    #[error("unknown batch version {0}")]
    UnknownVersion(u8),
    /// The compressed payload is corrupt or too large.
    #[error("decompression failed: {0}")]
    Decompress(String),
    /// The payload is not the expected RLP.
    #[error("rlp: {0}")]
    Rlp(String),
    /// Blocks are missing, out of order, or there are none.
    #[error("blocks are not consecutive: {0}")]
    NotConsecutive(String),
}

/// Encodes blocks as a version-0 batch.
pub fn encode_batch(blocks: &[BatchBlock]) -> Bytes {
    let mut rlp = Vec::with_capacity(blocks.iter().map(|b| b.length()).sum::<usize>() + 8);
    blocks.to_vec().encode(&mut rlp);
    let compressed =
        zstd::bulk::compress(&rlp, ZSTD_LEVEL).expect("zstd compresses in-memory bytes");
    let mut out = Vec::with_capacity(compressed.len() + 1);
    out.push(BATCH_VERSION_0);
    out.extend_from_slice(&compressed);
    out.into()
}

/// Decodes a batch, checking that its blocks are consecutive.
pub fn decode_batch(data: &[u8]) -> Result<Vec<BatchBlock>, CodecError> {
    let (&version, payload) = data.split_first().ok_or(CodecError::Empty)?;
    if version != BATCH_VERSION_0 {
        return Err(CodecError::UnknownVersion(version));
    }
    let decoder = zstd::stream::read::Decoder::new(payload)
        .map_err(|e| CodecError::Decompress(e.to_string()))?;
    let mut rlp = Vec::new();
    decoder
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut rlp)
        .map_err(|e| CodecError::Decompress(e.to_string()))?;
    if rlp.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(CodecError::Decompress(format!("more than {MAX_DECOMPRESSED_BYTES} bytes")));
    }
    let mut slice = rlp.as_slice();
    let blocks =
        Vec::<BatchBlock>::decode(&mut slice).map_err(|e| CodecError::Rlp(e.to_string()))?;
    if !slice.is_empty() {
        return Err(CodecError::Rlp(format!("{} trailing bytes", slice.len())));
    }
    if blocks.is_empty() {
        return Err(CodecError::NotConsecutive("no blocks".into()));
    }
    for pair in blocks.windows(2) {
        if pair[1].number != pair[0].number + 1 {
            return Err(CodecError::NotConsecutive(format!(
                "block {} follows {}",
                pair[1].number, pair[0].number
            )));
        }
    }
    Ok(blocks)
}

/// How many of `blocks` (a prefix, at least one) go in one batch of at most
/// `max_bytes`, with that batch's bytes (`blocks` must not be empty). An oversized attempt shrinks the
/// prefix in proportion to its overshoot, so a long backlog costs a couple of
/// encodings, not one per halving.
pub fn fit_batch(blocks: &[BatchBlock], max_bytes: usize) -> (usize, Bytes) {
    let mut count = blocks.len();
    loop {
        let data = encode_batch(&blocks[..count]);
        if data.len() <= max_bytes || count <= 1 {
            return (count, data);
        }
        // 10% below the proportional estimate, and at least one block less.
        let estimate = count as u128 * max_bytes as u128 * 9 / (data.len() as u128 * 10);
        count = usize::try_from(estimate).unwrap_or(1).clamp(1, count - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks() -> Vec<BatchBlock> {
        vec![
            BatchBlock {
                number: 7,
                timestamp: 100,
                transactions: vec![Bytes::from_static(b"\x02abc")],
            },
            BatchBlock { number: 8, timestamp: 100, transactions: vec![] },
            BatchBlock {
                number: 9,
                timestamp: 101,
                transactions: vec![Bytes::from(vec![1u8; 300]), Bytes::from(vec![2u8; 5])],
            },
        ]
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let encoded = encode_batch(&blocks());
        assert_eq!(encoded[0], BATCH_VERSION_0);
        assert_eq!(encoded, encode_batch(&blocks()));
        assert_eq!(decode_batch(&encoded).unwrap(), blocks());
    }

    #[test]
    fn rejects_hostile_input() {
        assert_eq!(decode_batch(&[]), Err(CodecError::Empty));
        assert_eq!(decode_batch(&[9, 1, 2]), Err(CodecError::UnknownVersion(9)));
        assert!(matches!(decode_batch(&[0, 1, 2, 3]), Err(CodecError::Decompress(_))));

        let mut gap = blocks();
        gap.remove(1);
        assert!(matches!(decode_batch(&encode_batch(&gap)), Err(CodecError::NotConsecutive(_))));
        assert!(matches!(decode_batch(&encode_batch(&[])), Err(CodecError::NotConsecutive(_))));

        // Valid zstd of bytes that are not RLP of blocks.
        let mut junk = vec![0u8];
        junk.extend(zstd::bulk::compress(b"\xff\xff\xff", 3).unwrap());
        assert!(matches!(decode_batch(&junk), Err(CodecError::Rlp(_))));

        // A zstd bomb: 100 MiB of zeros compresses to a few KiB.
        let bomb = zstd::bulk::compress(&vec![0u8; 100 * 1024 * 1024], 3).unwrap();
        let mut data = vec![0u8];
        data.extend(bomb);
        assert!(matches!(decode_batch(&data), Err(CodecError::Decompress(_))));
    }

    #[test]
    fn batches_shrink_to_fit_in_a_few_encodings() {
        // Incompressible transactions: about 2 KB per block.
        let blocks: Vec<BatchBlock> = (0..500u64)
            .map(|number| BatchBlock {
                number,
                timestamp: number,
                transactions: (0..4u64)
                    .map(|i| {
                        Bytes::from(
                            alloy_primitives::keccak256((number * 4 + i).to_be_bytes()).repeat(16),
                        )
                    })
                    .collect(),
            })
            .collect();
        for max_bytes in [1, 5_000, 120_000, 10_000_000] {
            let (count, data) = fit_batch(&blocks, max_bytes);
            assert!(count >= 1 && count <= blocks.len());
            assert_eq!(data, encode_batch(&blocks[..count]));
            assert!(data.len() <= max_bytes || count == 1, "{max_bytes}: {} bytes", data.len());
            if count < blocks.len() {
                // Not far below what fits: twice as many would not.
                let doubled = (count * 2).min(blocks.len());
                assert!(encode_batch(&blocks[..doubled]).len() > max_bytes, "{max_bytes}: {count}");
            }
        }
        assert_eq!(fit_batch(&blocks[..1], 1).0, 1, "one block always goes, even oversized");
    }

    #[test]
    fn truncated_batches_fail_cleanly() {
        let encoded = encode_batch(&blocks());
        for len in 1..encoded.len() {
            assert!(decode_batch(&encoded[..len]).is_err(), "prefix of {len} bytes decoded");
        }
    }
}
