//! A deterministic byte stream for large transfers, generated and verified in
//! chunks so neither side ever holds the whole body.
//!
//! Byte `i` of every stream is `BASE[i % PERIOD]`. `PERIOD` is prime, so chunk
//! boundaries never line up with it: a lost, duplicated or reordered chunk shows up
//! as a mismatch at its offset. Comparing every byte against the expected pattern is
//! stronger than a checksum and, being `memcmp`, fast even in debug builds.

use bytes::Bytes;
use futures_util::Stream;
use http_body_util::StreamBody;
use hyper::body::Frame;
use std::convert::Infallible;
use std::sync::OnceLock;

const PERIOD: usize = 1_048_573;
/// Size of each generated chunk.
pub const CHUNK: usize = 64 * 1024;

fn base() -> &'static Bytes {
    static BASE: OnceLock<Bytes> = OnceLock::new();
    // PERIOD + CHUNK long so any chunk is one contiguous slice.
    BASE.get_or_init(|| {
        (0..PERIOD + CHUNK)
            .map(|i| {
                let i = i % PERIOD;
                (i as u8) ^ ((i >> 8) as u8).rotate_left(3) ^ ((i >> 16) as u8)
            })
            .collect::<Vec<u8>>()
            .into()
    })
}

/// The `len` bytes at `offset` (at most `CHUNK`), without copying.
pub fn chunk(offset: u64, len: usize) -> Bytes {
    assert!(len <= CHUNK);
    let start = (offset % PERIOD as u64) as usize;
    base().slice(start..start + len)
}

/// `total` bytes of the pattern as a stream of `CHUNK`-sized data frames.
pub fn frames(total: u64) -> impl Stream<Item = Result<Frame<Bytes>, Infallible>> + Send {
    futures_util::stream::unfold(0u64, move |sent| async move {
        if sent >= total {
            return None;
        }
        let len = (total - sent).min(CHUNK as u64) as usize;
        Some((Ok(Frame::data(chunk(sent, len))), sent + len as u64))
    })
}

/// `total` bytes of the pattern as an HTTP body.
pub fn body(total: u64) -> StreamBody<impl Stream<Item = Result<Frame<Bytes>, Infallible>> + Send> {
    StreamBody::new(frames(total))
}

/// Checks received bytes against the pattern as they arrive.
#[derive(Debug, Default)]
pub struct Verifier {
    received: u64,
    first_mismatch: Option<u64>,
}

impl Verifier {
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = data.len().min(CHUNK);
            if self.first_mismatch.is_none() && data[..n] != chunk(self.received, n)[..] {
                let expected = chunk(self.received, n);
                let at = data.iter().zip(expected.iter()).position(|(a, b)| a != b);
                self.first_mismatch = Some(self.received + at.unwrap_or(0) as u64);
            }
            self.received += n as u64;
            data = &data[n..];
        }
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Offset of the first byte that differed from the pattern, if any.
    pub fn first_mismatch(&self) -> Option<u64> {
        self.first_mismatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_accepts_the_pattern_across_the_period_and_spots_a_flip() {
        let total = (PERIOD + 3 * CHUNK + 17) as u64;
        let mut v = Verifier::default();
        let mut off = 0;
        while off < total {
            let n = (total - off).min(CHUNK as u64) as usize;
            v.update(&chunk(off, n));
            off += n as u64;
        }
        assert_eq!(v.received(), total);
        assert_eq!(v.first_mismatch(), None);

        let mut bad = chunk(0, 100).to_vec();
        bad[42] ^= 1;
        let mut v = Verifier::default();
        v.update(&bad);
        assert_eq!(v.first_mismatch(), Some(42));
    }
}
